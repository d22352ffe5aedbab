//! Measuring an index as ANN benchmarks do: recall@k against exact ground truth, queries
//! per second one at a time on one thread and in batches on all threads, what the first
//! query after a load costs, and a sweep of search settings with the fastest one at each
//! recall level. `twotower index bench` prints what these functions return.
//!
//! ```
//! use twotower_index::bench::{exact_truth, measure};
//! use twotower_index::{BruteForceIndex, Index};
//! let vectors: Vec<f32> = (0..200 * 4).map(|i| ((i * 7) % 13) as f32).collect();
//! let queries = vectors[..5 * 4].to_vec();
//! let truth = exact_truth(vectors.clone(), 4, &queries, 10).unwrap();
//! let index = Index::Exact(BruteForceIndex::new(vectors, 4).unwrap());
//! let report = measure(&index, &queries, &truth, 10, 1, 5).unwrap();
//! assert_eq!(report.recall, 1.0);
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::{npy, recall_at, AnnIndex, Index, IndexError, Neighbor, SearchOverrides, SearchParams};

pub use crate::brute_force::exact_truth;

/// The first `k` ids of each of `rows` rows of a ground-truth table (`cols` ids a row,
/// best first), checked: the shape must fit the queries and every id must be a row of an
/// index of `len` rows. Errors say what is wrong; the caller names the file.
pub fn truth_rows(
    ids: &[i64],
    rows: usize,
    cols: usize,
    queries: usize,
    k: usize,
    len: usize,
) -> Result<Vec<Vec<u32>>, IndexError> {
    if rows != queries || cols < k {
        return Err(IndexError::Invalid(format!(
            "shape ({rows}, {cols}), expected ({queries}, ≥{k}) for these queries"
        )));
    }
    if let Some(bad) = ids.iter().position(|&x| x < 0 || x as usize >= len) {
        return Err(IndexError::Invalid(format!(
            "row {} holds id {}, outside 0..{len}",
            bad / cols.max(1),
            ids[bad]
        )));
    }
    Ok(ids
        .chunks_exact(cols.max(1))
        .map(|r| r[..k].iter().map(|&x| x as u32).collect())
        .collect())
}

/// What [`measure`] found.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub kind: &'static str,
    pub vectors: usize,
    pub dim: usize,
    pub queries: usize,
    pub k: usize,
    /// Recall@k of the batched search over every query.
    pub recall: f64,
    pub single_thread_qps: f64,
    pub single_thread_queries: usize,
    pub single_thread_recall: f64,
    pub batch_qps: f64,
    pub batch_threads: usize,
    /// The first query's time, then the median of the next 99, then the first again.
    pub first_query_us: f64,
    pub median_next_99_us: f64,
    pub first_query_again_us: f64,
    pub first_query_page_faults: i64,
    pub build_seconds: Option<f64>,
    pub search: Option<SearchParams>,
    pub index_bytes: usize,
    pub vector_bytes: usize,
    pub peak_rss_mib: f64,
    pub repeats: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// This process's minor page faults and peak resident memory in MiB (zero where the
/// platform has no `getrusage`).
#[cfg(unix)]
pub fn self_usage() -> (i64, f64) {
    // SAFETY: rusage is plain data; getrusage fills it for this process.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    // Linux reports ru_maxrss in KiB.
    (u.ru_minflt, u.ru_maxrss as f64 / 1024.0)
}

#[cfg(not(unix))]
pub fn self_usage() -> (i64, f64) {
    (0, 0.0)
}

/// Benchmarks `index` on `queries` (row-major) against `truth` (the exact top ids of each
/// query): the first 100 queries timed alone (the first after a load, the median of the
/// rest, the first again), then `single_queries` of them one at a time on one thread and
/// all of them in one batch, each `repeats` times (medians).
pub fn measure(
    index: &Index,
    queries: &[f32],
    truth: &[Vec<u32>],
    k: usize,
    repeats: usize,
    single_queries: usize,
) -> Result<BenchReport, IndexError> {
    let d = index.dim();
    let nq = queries.len() / d.max(1);
    if nq == 0 || !queries.len().is_multiple_of(d) || truth.len() != nq || repeats == 0 {
        return Err(IndexError::Invalid(format!(
            "a benchmark needs whole queries of dimension {d}, one truth row each, and at \
             least one repeat ({nq} queries, {} truth rows, {repeats} repeats)",
            truth.len()
        )));
    }
    let mut first_faults = 0;
    let faults_before = self_usage().0;
    let mut lat = Vec::new();
    for (i, row) in queries.chunks_exact(d).take(100).enumerate() {
        if i == 1 {
            first_faults = self_usage().0 - faults_before;
        }
        let t = Instant::now();
        std::hint::black_box(index.search(row, k));
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let first_query_us = lat[0];
    let median_next_99_us = if lat.len() > 1 {
        median(lat[1..].to_vec())
    } else {
        lat[0]
    };
    let t = Instant::now();
    std::hint::black_box(index.search(&queries[..d], k));
    let first_query_again_us = t.elapsed().as_secs_f64() * 1e6;

    let single_n = single_queries.clamp(1, nq);
    let mut single = Vec::new();
    let mut found: Vec<Vec<Neighbor>> = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        found = queries[..single_n * d]
            .chunks_exact(d)
            .map(|row| index.search(row, k))
            .collect();
        single.push(single_n as f64 / t.elapsed().as_secs_f64());
    }
    let mut batch = Vec::new();
    let mut batch_found = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        batch_found = index.search_batch(queries, k)?;
        batch.push(nq as f64 / t.elapsed().as_secs_f64());
    }
    let (kind, build_seconds, search, vector_bytes) = match index {
        Index::Exact(_) => ("exact", None, None, 0),
        Index::Approximate(x) => (
            "ann",
            Some(x.build_seconds()),
            Some(x.params()),
            x.vector_bytes(),
        ),
    };
    Ok(BenchReport {
        kind,
        vectors: index.len(),
        dim: d,
        queries: nq,
        k,
        recall: recall_at(&batch_found, truth, k),
        single_thread_qps: median(single),
        single_thread_queries: single_n,
        single_thread_recall: recall_at(&found, &truth[..single_n], k),
        batch_qps: median(batch),
        batch_threads: rayon::current_num_threads(),
        first_query_us,
        median_next_99_us,
        first_query_again_us,
        first_query_page_faults: first_faults,
        build_seconds,
        search,
        index_bytes: index.index_bytes(),
        vector_bytes,
        peak_rss_mib: self_usage().1,
        repeats,
    })
}

/// An index folder loaded for a benchmark, with its queries and their checked truth.
pub struct Workload {
    pub index: Index,
    pub index_dir: PathBuf,
    /// Seconds [`Index::load_with`] took.
    pub load_seconds: f64,
    /// Row-major queries of the index's dimension.
    pub queries: Vec<f32>,
    /// Each query's true top `k` ids.
    pub truth: Vec<Vec<u32>>,
    pub k: usize,
}

impl Workload {
    /// Reads `queries` and `truth` (the first `k` ids of each row are kept) and then loads
    /// the index at `dir` with `overrides`, so that nothing runs between the load and the
    /// first query; the files are checked against the index, errors naming them.
    pub fn open(
        dir: &Path,
        overrides: SearchOverrides,
        queries: &Path,
        truth: &Path,
        k: usize,
    ) -> Result<Self, IndexError> {
        let q = npy::read_f32(queries)?;
        let gt = npy::read_ids(truth)?;
        let load_start = Instant::now();
        let index = Index::load_with(dir, overrides)?;
        let load_seconds = load_start.elapsed().as_secs_f64();
        if q.cols != index.dim() {
            return Err(IndexError::format(
                queries,
                format!(
                    "queries have dimension {}, the index has {}",
                    q.cols,
                    index.dim()
                ),
            ));
        }
        if q.rows == 0 {
            return Err(IndexError::format(queries, "holds no queries"));
        }
        let truth_ids = truth_rows(&gt.data, gt.rows, gt.cols, q.rows, k, index.len())
            .map_err(|e| IndexError::format(truth, e.to_string()))?;
        Ok(Workload {
            index,
            index_dir: dir.to_path_buf(),
            load_seconds,
            queries: q.data,
            truth: truth_ids,
            k,
        })
    }

    /// The first `n` queries (all of them when there are fewer) and their truth.
    pub fn first(&self, n: usize) -> (&[f32], &[Vec<u32>]) {
        let n = n.clamp(1, self.truth.len());
        (&self.queries[..n * self.index.dim()], &self.truth[..n])
    }

    /// [`measure`] on this workload: `single_queries` of them (default all) one at a time.
    pub fn measure(
        &self,
        repeats: usize,
        single_queries: Option<usize>,
    ) -> Result<FolderReport, IndexError> {
        let single = single_queries.unwrap_or(self.truth.len());
        Ok(FolderReport {
            report: measure(
                &self.index,
                &self.queries,
                &self.truth,
                self.k,
                repeats,
                single,
            )?,
            index: self.index_dir.clone(),
            load_seconds: self.load_seconds,
        })
    }
}

/// A [`BenchReport`] of an index folder, with the folder and its load time: JSON through
/// `Serialize`, the table `twotower index bench` prints through `Display`.
#[derive(Debug, Clone, Serialize)]
pub struct FolderReport {
    #[serde(flatten)]
    pub report: BenchReport,
    pub index: PathBuf,
    pub load_seconds: f64,
}

impl fmt::Display for FolderReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        writeln!(
            f,
            "index            {} ({}, {} × {})",
            self.index.display(),
            r.kind,
            r.vectors,
            r.dim
        )?;
        if let Some(p) = r.search {
            writeln!(
                f,
                "setting          {} leaves to search, re-rank {}",
                p.leaves_to_search, p.reorder
            )?;
        }
        writeln!(
            f,
            "recall@{:<2}        {:.4} over {} queries",
            r.k, r.recall, r.queries
        )?;
        writeln!(
            f,
            "single thread    {:.0} queries/s (one at a time, {} queries, median of {})",
            r.single_thread_qps, r.single_thread_queries, r.repeats
        )?;
        writeln!(
            f,
            "batch            {:.0} queries/s ({} threads)",
            r.batch_qps, r.batch_threads
        )?;
        writeln!(
            f,
            "first query      {:.0} µs after a {:.2} s load with {} page faults (the same query \
             after 100 others: {:.0} µs; median of those: {:.0} µs)",
            r.first_query_us,
            self.load_seconds,
            r.first_query_page_faults,
            r.first_query_again_us,
            r.median_next_99_us
        )?;
        if let Some(b) = r.build_seconds {
            writeln!(f, "build            {b:.1} s")?;
        }
        writeln!(
            f,
            "index bytes      {:.1} MB (+{:.1} MB of vectors kept for re-ranking)",
            r.index_bytes as f64 / 1e6,
            r.vector_bytes as f64 / 1e6
        )?;
        writeln!(f, "peak memory      {:.0} MiB", r.peak_rss_mib)
    }
}

/// One setting of a [`sweep`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SweepPoint {
    pub leaves_to_search: usize,
    pub reorder: usize,
    pub recall: f64,
    pub single_thread_qps: f64,
}

/// The fastest setting reaching a recall level, if any did.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Best {
    pub recall_at_least: f64,
    pub best: Option<SweepPoint>,
}

/// The settings a [`sweep`] tries: every pair of these.
#[derive(Debug, Clone, Copy)]
pub struct Grid<'a> {
    pub leaves_to_search: &'a [usize],
    pub reorder: &'a [usize],
}

/// Single-thread queries per second and recall@k of every setting of `grid` (medians of
/// `repeats`), each reported to `on_point` as it is measured.
pub fn sweep(
    ann: &AnnIndex,
    queries: &[f32],
    truth: &[Vec<u32>],
    k: usize,
    grid: Grid,
    repeats: usize,
    on_point: &mut dyn FnMut(&SweepPoint),
) -> Vec<SweepPoint> {
    let d = ann.dim();
    let nq = queries.len() / d;
    let mut points = Vec::new();
    for &l in grid.leaves_to_search {
        for &reorder in grid.reorder {
            let p = SearchParams {
                leaves_to_search: l.clamp(1, ann.leaves()),
                reorder,
            };
            let mut qps = Vec::new();
            let mut found = Vec::new();
            for _ in 0..repeats.max(1) {
                let t = Instant::now();
                found = queries
                    .chunks_exact(d)
                    .map(|row| ann.search_with(row, k, &[], p))
                    .collect();
                qps.push(nq as f64 / t.elapsed().as_secs_f64());
            }
            let point = SweepPoint {
                leaves_to_search: p.leaves_to_search,
                reorder,
                recall: recall_at(&found, truth, k),
                single_thread_qps: median(qps),
            };
            on_point(&point);
            points.push(point);
        }
    }
    points
}

/// The fastest point reaching recall 0.90, 0.95 and 0.99.
pub fn best_per_level(points: &[SweepPoint]) -> Vec<Best> {
    [0.90, 0.95, 0.99]
        .iter()
        .map(|&level| Best {
            recall_at_least: level,
            best: points
                .iter()
                .filter(|p| p.recall >= level)
                .max_by(|x, y| x.single_thread_qps.total_cmp(&y.single_thread_qps))
                .copied(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_rows_are_checked_and_cut_to_k() {
        let ids = [3i64, 1, 2, 0, 4, 1];
        assert_eq!(
            truth_rows(&ids, 2, 3, 2, 2, 5).unwrap(),
            vec![vec![3, 1], vec![0, 4]]
        );
        let e = truth_rows(&ids, 2, 3, 3, 2, 5).unwrap_err().to_string();
        assert!(e.contains("expected (3, ≥2)"), "{e}");
        let e = truth_rows(&ids, 2, 3, 2, 2, 4).unwrap_err().to_string();
        assert!(e.contains("row 1 holds id 4, outside 0..4"), "{e}");
    }

    #[test]
    fn the_best_point_per_level_is_the_fastest_that_reaches_it() {
        let p = |recall, qps| SweepPoint {
            leaves_to_search: 1,
            reorder: 1,
            recall,
            single_thread_qps: qps,
        };
        let best = best_per_level(&[p(0.91, 100.0), p(0.96, 50.0), p(0.97, 40.0)]);
        assert_eq!(best[0].best.unwrap().single_thread_qps, 100.0);
        assert_eq!(best[1].best.unwrap().single_thread_qps, 50.0);
        assert!(best[2].best.is_none());
    }
}
