//! The exact index: every query against every row. One query is a streamed SIMD scan;
//! a batch is a blocked matrix product (a block of queries against a block of rows at a
//! time, so the score matrix never exists whole) feeding a streaming top-k per query.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kernels::{gemm, matmul_nt, MatRef};
use crate::store::{self, Buf, FileEntry};
use crate::{simd, IndexError, Neighbor, TopK};

/// Queries per task of a batched search.
const QUERY_BLOCK: usize = 64;
/// Rows scored per matrix product of a batched search (64 × 2,048 scores fit in L2).
const ROW_BLOCK: usize = 2048;

/// Exact maximum-inner-product search over a row-major f32 matrix.
#[derive(Debug, Clone)]
pub struct BruteForceIndex {
    vectors: Buf<f32>,
    dim: usize,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    head: store::Head,
    files: std::collections::BTreeMap<String, FileEntry>,
}

impl BruteForceIndex {
    /// Wraps `vectors` (row-major, `len / dim` rows).
    pub fn new(vectors: Vec<f32>, dim: usize) -> Result<Self, IndexError> {
        Self::from_buf(vectors.into(), dim)
    }

    fn from_buf(vectors: Buf<f32>, dim: usize) -> Result<Self, IndexError> {
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(IndexError::Shape {
                len: vectors.len(),
                dim,
            });
        }
        crate::check_rows(&vectors, dim)?;
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

    /// All rows, row-major.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Scores of every row for every query: `queries.len() / dim` rows of `len()` scores.
    pub fn scores(&self, queries: &[f32]) -> Result<Vec<f32>, IndexError> {
        self.check(queries)?;
        let nq = queries.len() / self.dim;
        Ok(matmul_nt(queries, nq, &self.vectors, self.len(), self.dim))
    }

    fn check(&self, queries: &[f32]) -> Result<(), IndexError> {
        if !queries.len().is_multiple_of(self.dim) {
            return Err(IndexError::QueryDim {
                got: queries.len(),
                expected: self.dim,
            });
        }
        Ok(())
    }

    /// The `k` best rows for one query, skipping `exclude` (`k` is capped at the number of
    /// rows, so no request can size an allocation beyond the index).
    ///
    /// # Panics
    /// When `query.len() != dim()`; callers own their dimensions.
    pub fn search(&self, query: &[f32], k: usize, exclude: &[u32]) -> Vec<Neighbor> {
        assert_eq!(query.len(), self.dim, "query dimension");
        let k = k.min(self.len());
        let mut skip = exclude.to_vec();
        skip.sort_unstable();
        let mut top = TopK::new(k);
        let mut scores = vec![0.0f32; ROW_BLOCK];
        for (b, rows) in self.vectors.chunks(ROW_BLOCK * self.dim).enumerate() {
            let s = &mut scores[..rows.len() / self.dim];
            simd::dot_rows(query, rows, s);
            push_row(&mut top, s, b * ROW_BLOCK, &skip);
        }
        top.into_sorted()
    }

    /// The `k` best rows for each of many queries (row-major): blocks of queries on all
    /// threads, each scored against blocks of rows by matrix products.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>, IndexError> {
        self.search_batch_excluding(queries, k, &[])
    }

    /// [`search_batch`](Self::search_batch) where query `i` skips the sorted rows
    /// `exclude[i]` (queries past the end of `exclude` skip nothing). Memory stays at one
    /// block of scores per thread, however many queries and rows there are.
    pub fn search_batch_excluding(
        &self,
        queries: &[f32],
        k: usize,
        exclude: &[&[u32]],
    ) -> Result<Vec<Vec<Neighbor>>, IndexError> {
        self.check(queries)?;
        let d = self.dim;
        let k = k.min(self.len());
        if queries.len() == d {
            // One query: the SIMD scan, without the blocking of a matrix product.
            return Ok(vec![self.search(
                queries,
                k,
                exclude.first().copied().unwrap_or(&[]),
            )]);
        }
        let n = self.len();
        let blocks: Vec<Vec<Vec<Neighbor>>> = queries
            .par_chunks(QUERY_BLOCK * d)
            .enumerate()
            .map(|(bi, qb)| {
                let nq = qb.len() / d;
                // Sorted copies: `push_row` looks ids up by binary search, and callers
                // pass lists in their own order (a user's items by time).
                let skips: Vec<Vec<u32>> = (0..nq)
                    .map(|i| {
                        let mut s = exclude
                            .get(bi * QUERY_BLOCK + i)
                            .copied()
                            .unwrap_or(&[])
                            .to_vec();
                        s.sort_unstable();
                        s
                    })
                    .collect();
                let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
                let mut scores = vec![0.0f32; nq * ROW_BLOCK];
                for r0 in (0..n).step_by(ROW_BLOCK) {
                    let rows = ROW_BLOCK.min(n - r0);
                    let s = &mut scores[..nq * rows];
                    gemm(
                        MatRef::new(qb, nq, d),
                        MatRef::new(&self.vectors[r0 * d..(r0 + rows) * d], rows, d).t(),
                        0.0,
                        s,
                    );
                    for ((top, row), skip) in tops.iter_mut().zip(s.chunks_exact(rows)).zip(&skips)
                    {
                        push_row(top, row, r0, skip);
                    }
                }
                tops.into_iter().map(TopK::into_sorted).collect()
            })
            .collect();
        Ok(blocks.into_iter().flatten().collect())
    }

    /// Writes the index as a folder (see [`store`]).
    pub fn save(&self, dir: &Path) -> Result<(), IndexError> {
        let (dim, len) = (self.dim, self.len());
        store::write_folder(
            dir,
            &[("vectors.f32", store::bytes_of(&self.vectors))],
            |files| {
                serde_json::to_value(Manifest {
                    head: store::Head::new("exact", dim, len),
                    files,
                })
                .expect("manifest serialises")
            },
        )
    }

    /// Loads a folder written by [`save`](Self::save), mapping the vectors.
    pub fn load(dir: &Path) -> Result<Self, IndexError> {
        let Manifest { head: m, files } = store::read_manifest(dir)?;
        if m.kind != "exact" || m.dim == 0 {
            return Err(IndexError::format(
                &dir.join(store::MANIFEST),
                format!(
                    "not an exact index of positive dimension (kind {:?}, dim {})",
                    m.kind, m.dim
                ),
            ));
        }
        let count = m
            .len
            .checked_mul(m.dim)
            .ok_or_else(|| IndexError::format(&dir.join(store::MANIFEST), "shape overflows"))?;
        let vectors = store::map_file(dir, "vectors.f32", &files, count)?;
        Self::from_buf(vectors, m.dim)
    }
}

/// Offers the scores of rows `first..` to `top`, skipping the sorted ids in `skip`.
#[inline]
fn push_row(top: &mut TopK, scores: &[f32], first: usize, skip: &[u32]) {
    let mut threshold = top.threshold();
    for (j, &s) in scores.iter().enumerate() {
        if s >= threshold {
            let id = (first + j) as u32;
            if skip.is_empty() || skip.binary_search(&id).is_err() {
                top.push(id, s);
                threshold = top.threshold();
            }
        }
    }
}

/// The exact top-`k` ids of each query (the vectors are moved into an exact index, not
/// copied).
pub fn exact_truth(
    vectors: Vec<f32>,
    dim: usize,
    queries: &[f32],
    k: usize,
) -> Result<Vec<Vec<u32>>, IndexError> {
    Ok(BruteForceIndex::new(vectors, dim)?
        .search_batch(queries, k)?
        .iter()
        .map(|r| r.iter().map(|n| n.id).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_exclusions_in_any_order_equal_single_searches() {
        let dim = 4;
        let v: Vec<f32> = (0..300 * dim)
            .map(|i| ((i * 37 % 101) as f32).sin())
            .collect();
        let q: Vec<f32> = (0..3 * dim).map(|i| ((i * 13 % 17) as f32).cos()).collect();
        let index = BruteForceIndex::new(v, dim).unwrap();
        // The best rows of each query, excluded in descending (unsorted) order.
        let plain = index.search_batch(&q, 6).unwrap();
        let skips: Vec<Vec<u32>> = plain
            .iter()
            .map(|r| r.iter().take(3).map(|n| n.id).rev().collect())
            .collect();
        let refs: Vec<&[u32]> = skips.iter().map(Vec::as_slice).collect();
        let batch = index.search_batch_excluding(&q, 5, &refs).unwrap();
        for (i, got) in batch.iter().enumerate() {
            let one = index.search(&q[i * dim..(i + 1) * dim], 5, refs[i]);
            let ids = |r: &[Neighbor]| r.iter().map(|n| n.id).collect::<Vec<_>>();
            assert_eq!(ids(got), ids(&one), "query {i}");
            assert!(got.iter().all(|n| !skips[i].contains(&n.id)), "query {i}");
        }
    }

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
            // The single-query scan sums in another order than the matrix product.
            let single = index.search(query, 10, &[]);
            for (a, b) in single.iter().zip(got) {
                assert_eq!(a.id, b.id);
                assert!((a.score - b.score).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn batched_search_crosses_block_boundaries_and_round_trips() {
        let dim = 4;
        let n = 2 * ROW_BLOCK + 17;
        let v: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 7 % 1013) as f32).sin())
            .collect();
        let q: Vec<f32> = (0..(QUERY_BLOCK + 3) * dim)
            .map(|i| ((i * 13 % 71) as f32).cos())
            .collect();
        let index = BruteForceIndex::new(v, dim).unwrap();
        let batch = index.search_batch(&q, 5).unwrap();
        assert_eq!(batch.len(), QUERY_BLOCK + 3);
        for (qi, got) in batch.iter().enumerate() {
            let scores = index.scores(&q[qi * dim..(qi + 1) * dim]).unwrap();
            let want = crate::top_k(&scores, 5, &[]);
            assert_eq!(
                got.iter().map(|x| x.id).collect::<Vec<_>>(),
                want.iter().map(|x| x.id).collect::<Vec<_>>()
            );
        }
        let dir = std::env::temp_dir().join(format!("twotower-exact-{}", std::process::id()));
        index.save(&dir).unwrap();
        let loaded = BruteForceIndex::load(&dir).unwrap();
        assert_eq!(loaded.search_batch(&q, 5).unwrap(), batch);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(BruteForceIndex::new(vec![1.0; 5], 2).is_err());
        let index = BruteForceIndex::new(vec![1.0; 4], 2).unwrap();
        assert!(index.scores(&[1.0; 3]).is_err());
    }
}
