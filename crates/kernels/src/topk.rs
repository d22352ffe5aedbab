//! Selecting the k best-scoring ids out of a score vector.

/// One search result: a row id and its inner-product score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub id: u32,
    pub score: f32,
}

/// The `k` highest scores, best first; equal scores are ordered by id. Ids in `exclude`
/// (any order) are skipped.
pub fn top_k(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<Neighbor> {
    let mut skip = exclude.to_vec();
    skip.sort_unstable();
    let mut all: Vec<Neighbor> = scores
        .iter()
        .enumerate()
        .filter(|(i, _)| skip.binary_search(&(*i as u32)).is_err())
        .map(|(i, &score)| Neighbor {
            id: i as u32,
            score,
        })
        .collect();
    let better = |a: &Neighbor, b: &Neighbor| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id));
    if k < all.len() {
        all.select_nth_unstable_by(k, better);
        all.truncate(k);
    }
    all.sort_unstable_by(better);
    all
}

/// The `k` best of a stream of `(id, score)` pairs, kept in a binary min-heap so that each
/// pair costs one comparison against the current worst unless it enters.
///
/// Order is score descending, then id ascending, as in [`top_k`].
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: Vec<Neighbor>,
}

/// The most entries a selection reserves before any arrive.
const INITIAL_CAPACITY: usize = 4096;

/// True when `a` ranks before `b`.
#[inline]
fn better(a: &Neighbor, b: &Neighbor) -> bool {
    a.score > b.score || (a.score == b.score && a.id < b.id)
}

impl TopK {
    /// An empty selection of at most `k` entries.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            // The heap grows as entries come: a huge `k` reserves nothing up front.
            heap: Vec::with_capacity(k.min(INITIAL_CAPACITY)),
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// True once `k` entries are held.
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// The score a new entry must beat to enter: the worst held score once full, else −∞.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.is_full() {
            self.heap.first().map_or(f32::INFINITY, |w| w.score)
        } else {
            f32::NEG_INFINITY
        }
    }

    /// Offers one entry; returns true when it was kept.
    #[inline]
    pub fn push(&mut self, id: u32, score: f32) -> bool {
        let n = Neighbor { id, score };
        if self.k == 0 {
            return false;
        }
        if !self.is_full() {
            self.heap.push(n);
            let mut i = self.heap.len() - 1;
            while i > 0 {
                let parent = (i - 1) / 2;
                if better(&self.heap[parent], &self.heap[i]) {
                    self.heap.swap(parent, i);
                    i = parent;
                } else {
                    break;
                }
            }
            return true;
        }
        if !better(&n, &self.heap[0]) {
            return false;
        }
        self.heap[0] = n;
        let len = self.heap.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut worst = i;
            if l < len && better(&self.heap[worst], &self.heap[l]) {
                worst = l;
            }
            if r < len && better(&self.heap[worst], &self.heap[r]) {
                worst = r;
            }
            if worst == i {
                break;
            }
            self.heap.swap(i, worst);
            i = worst;
        }
        true
    }

    /// The entries held, in no particular order.
    pub fn entries(&self) -> &[Neighbor] {
        &self.heap
    }

    /// The entries held, best first.
    pub fn into_sorted(mut self) -> Vec<Neighbor> {
        self.heap
            .sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        self.heap
    }
}

/// An approximate-order selection of the `k` best of a stream, cheaper per entry than
/// [`TopK`]: entries above the threshold are appended, and when `2k` are held the best
/// `k` are selected in linear time and the threshold raised to the worst of them.
#[derive(Debug, Clone)]
pub struct Reservoir {
    k: usize,
    buf: Vec<Neighbor>,
    threshold: f32,
}

impl Reservoir {
    /// An empty selection of the `k` best.
    pub fn new(k: usize) -> Self {
        Reservoir {
            k,
            buf: Vec::with_capacity(k.clamp(8, INITIAL_CAPACITY) * 2),
            threshold: f32::NEG_INFINITY,
        }
    }

    /// A score that an entry must beat to be kept (−∞ until the first selection).
    #[inline]
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Offers one entry.
    #[inline]
    pub fn push(&mut self, id: u32, score: f32) {
        if score > self.threshold && self.k > 0 {
            self.buf.push(Neighbor { id, score });
            if self.buf.len() >= self.k.max(8).saturating_mul(2) {
                self.compact();
            }
        }
    }

    fn compact(&mut self) {
        if self.buf.len() > self.k {
            let order = |a: &Neighbor, b: &Neighbor| b.score.total_cmp(&a.score);
            self.buf.select_nth_unstable_by(self.k - 1, order);
            self.buf.truncate(self.k);
            self.threshold = self.buf[self.k - 1].score;
        }
    }

    /// The best `k` entries held (at most `k`), in no particular order.
    pub fn finish(mut self) -> Vec<Neighbor> {
        self.compact();
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoir_keeps_the_best() {
        let scores: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919 % 4999) as f32).cos())
            .collect();
        for k in [1, 7, 64, 5000] {
            let mut r = Reservoir::new(k);
            for (i, &s) in scores.iter().enumerate() {
                r.push(i as u32, s);
            }
            let mut got: Vec<f32> = r.finish().iter().map(|n| n.score).collect();
            got.sort_by(|a, b| b.total_cmp(a));
            let want: Vec<f32> = top_k(&scores, k, &[]).iter().map(|n| n.score).collect();
            assert_eq!(got, want, "k={k}");
        }
    }

    #[test]
    fn streaming_selection_equals_sorting() {
        let scores: Vec<f32> = (0..1000).map(|i| ((i * 7919 % 211) as f32).sin()).collect();
        for k in [0, 1, 5, 50, 999, 1000, 2000] {
            let mut t = TopK::new(k);
            for (i, &s) in scores.iter().enumerate() {
                t.push(i as u32, s);
            }
            assert_eq!(t.into_sorted(), top_k(&scores, k, &[]), "k={k}");
        }
    }

    #[test]
    fn picks_best_breaks_ties_by_id_and_skips_excluded() {
        let s = [0.5, 2.0, 1.0, 2.0, -1.0];
        let ids: Vec<u32> = top_k(&s, 3, &[]).iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        let ids: Vec<u32> = top_k(&s, 2, &[3, 1]).iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![2, 0]);
        assert_eq!(top_k(&s, 10, &[]).len(), 5);
        assert!(top_k(&s, 0, &[]).is_empty());
    }
}
