//! The exact index: every query against every row, as one matrix product.

use crate::kernels::matmul_nt;
use crate::{top_k, IndexError, Neighbor};

/// Exact maximum-inner-product search over a row-major f32 matrix.
#[derive(Debug, Clone)]
pub struct BruteForceIndex {
    vectors: Vec<f32>,
    dim: usize,
}

impl BruteForceIndex {
    /// Wraps `vectors` (row-major, `len / dim` rows).
    pub fn new(vectors: Vec<f32>, dim: usize) -> Result<Self, IndexError> {
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(IndexError::Shape {
                len: vectors.len(),
                dim,
            });
        }
        Ok(BruteForceIndex { vectors, dim })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }

    /// True when the index holds no rows.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `id`.
    pub fn vector(&self, id: usize) -> &[f32] {
        &self.vectors[id * self.dim..(id + 1) * self.dim]
    }

    /// Scores of every row for every query: `queries.len() / dim` rows of `len()` scores.
    pub fn scores(&self, queries: &[f32]) -> Result<Vec<f32>, IndexError> {
        if !queries.len().is_multiple_of(self.dim) {
            return Err(IndexError::QueryDim {
                got: queries.len(),
                expected: self.dim,
            });
        }
        let nq = queries.len() / self.dim;
        Ok(matmul_nt(queries, nq, &self.vectors, self.len(), self.dim))
    }

    /// The `k` best rows for one query, skipping `exclude`.
    ///
    /// # Panics
    /// When `query.len() != dim()`; callers own their dimensions.
    pub fn search(&self, query: &[f32], k: usize, exclude: &[u32]) -> Vec<Neighbor> {
        assert_eq!(query.len(), self.dim, "query dimension");
        let scores = self.scores(query).expect("dimension checked");
        top_k(&scores, k, exclude)
    }

    /// The `k` best rows for each of many queries (row-major), in one blocked product.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>, IndexError> {
        let scores = self.scores(queries)?;
        let n = self.len();
        Ok(scores
            .chunks(n.max(1))
            .map(|row| top_k(row, k, &[]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_a_naive_scan() {
        let dim = 8;
        let n = 500;
        let v: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 31 % 113) as f32).sin())
            .collect();
        let q: Vec<f32> = (0..3 * dim).map(|i| ((i * 17 % 29) as f32).cos()).collect();
        let index = BruteForceIndex::new(v.clone(), dim).unwrap();
        let batch = index.search_batch(&q, 10).unwrap();
        for (qi, got) in batch.iter().enumerate() {
            let query = &q[qi * dim..(qi + 1) * dim];
            let mut naive: Vec<(f32, u32)> = (0..n)
                .map(|r| {
                    let s: f32 = (0..dim).map(|d| query[d] * v[r * dim + d]).sum();
                    (s, r as u32)
                })
                .collect();
            naive.sort_by(|a, b| b.0.total_cmp(&a.0));
            let want: Vec<u32> = naive[..10].iter().map(|x| x.1).collect();
            let ids: Vec<u32> = got.iter().map(|x| x.id).collect();
            assert_eq!(ids, want);
            assert_eq!(index.search(query, 10, &[]), *got);
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(BruteForceIndex::new(vec![1.0; 5], 2).is_err());
        let index = BruteForceIndex::new(vec![1.0; 4], 2).unwrap();
        assert!(index.scores(&[1.0; 3]).is_err());
    }
}
