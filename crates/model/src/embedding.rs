//! Embedding tables: a row per vocabulary entry, read by gathering rows and trained by
//! sparse row updates.

use rand::Rng;
use rayon::prelude::*;

/// A `rows × dim` row-major f32 table.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embedding {
    /// Keras' default initialiser: uniform in [-0.05, 0.05).
    pub fn uniform(rows: usize, dim: usize, rng: &mut impl Rng) -> Self {
        let data = (0..rows * dim)
            .map(|_| rng.gen_range(-0.05f32..0.05))
            .collect();
        Embedding { rows, dim, data }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Row `i`, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Columns `cols` of every row, as a table of their own.
    pub fn columns(&self, cols: std::ops::Range<usize>) -> Embedding {
        Embedding {
            rows: self.rows,
            dim: cols.len(),
            data: (self.data.chunks_exact(self.dim.max(1)))
                .flat_map(|r| &r[cols.clone()])
                .copied()
                .collect(),
        }
    }

    /// The rows `ids`, stacked into a new row-major matrix (in parallel: the reads are
    /// random rows of a table larger than the caches).
    pub fn gather(&self, ids: &[u32]) -> Vec<f32> {
        let mut out = vec![0.0f32; ids.len() * self.dim];
        self.gather_into(ids, &mut out);
        out
    }

    /// [`Embedding::gather`] into `out` (`ids.len() × dim`, row-major).
    pub fn gather_into(&self, ids: &[u32], out: &mut [f32]) {
        const PART: usize = 512;
        if self.dim == 0 {
            return;
        }
        out.par_chunks_mut(PART * self.dim)
            .zip(ids.par_chunks(PART))
            .for_each(|(o, ids)| {
                for (o, &i) in o.chunks_exact_mut(self.dim).zip(ids) {
                    o.copy_from_slice(self.row(i as usize));
                }
            });
    }
}

/// Maps the ids of a batch to dense local slots `0..n` (first-seen order) and counts them,
/// without any per-batch cost proportional to the vocabulary.
#[derive(Debug, Default)]
pub struct UniqueIds {
    slot: Vec<u32>,
    /// The distinct ids, in first-seen order.
    pub ids: Vec<u32>,
    /// How often each distinct id occurred.
    pub counts: Vec<u32>,
}

const EMPTY: u32 = u32::MAX;

impl UniqueIds {
    /// A mapper for ids below `vocab`.
    pub fn new(vocab: usize) -> Self {
        UniqueIds {
            slot: vec![EMPTY; vocab],
            ids: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Forgets the previous batch (touching only the ids it held).
    pub fn clear(&mut self) {
        for &i in &self.ids {
            self.slot[i as usize] = EMPTY;
        }
        self.ids.clear();
        self.counts.clear();
    }

    /// The local slot of `id`, adding it if new.
    pub fn insert(&mut self, id: u32) -> u32 {
        let s = &mut self.slot[id as usize];
        if *s == EMPTY {
            *s = self.ids.len() as u32;
            self.ids.push(id);
            self.counts.push(0);
        }
        self.counts[*s as usize] += 1;
        *s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn uniform_init_is_seeded_and_in_range() {
        let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let a = Embedding::uniform(100, 8, &mut r1);
        assert_eq!(a, Embedding::uniform(100, 8, &mut r2));
        assert!(a.data.iter().all(|v| (-0.05..0.05).contains(v)));
        let spread = a.data.iter().cloned().fold(f32::MIN, f32::max);
        assert!(spread > 0.04);
    }

    #[test]
    fn gather_stacks_the_rows_in_order() {
        let t = Embedding {
            rows: 2000,
            dim: 3,
            data: (0..6000).map(|x| x as f32).collect(),
        };
        // Longer than one parallel part, with repeats.
        let ids: Vec<u32> = (0..1500).map(|k| (k * 7919 % 2000) as u32).collect();
        let got = t.gather(&ids);
        assert_eq!(got.len(), ids.len() * 3);
        for (k, &i) in ids.iter().enumerate() {
            assert_eq!(&got[k * 3..k * 3 + 3], t.row(i as usize));
        }
        assert!(t.gather(&[]).is_empty());
    }

    #[test]
    fn unique_ids_count_and_reset() {
        let mut u = UniqueIds::new(10);
        let slots: Vec<u32> = [7, 3, 7, 7, 0].iter().map(|&i| u.insert(i)).collect();
        assert_eq!(slots, vec![0, 1, 0, 0, 2]);
        assert_eq!(u.ids, vec![7, 3, 0]);
        assert_eq!(u.counts, vec![3, 1, 1]);
        u.clear();
        assert_eq!(u.insert(3), 0);
        assert_eq!(u.ids, vec![3]);
    }
}
