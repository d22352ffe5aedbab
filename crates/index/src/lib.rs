//! Maximum-inner-product search over a matrix of vectors: ids in, ids and scores out.
//!
//! This crate knows nothing of users, movies or models. Its principal types are
//! [`BruteForceIndex`], the exact index (every query scored against every row with a blocked
//! matrix product), and [`AnnIndex`], the ScaNN-style approximate index (k-means leaves,
//! anisotropic 4-bit product quantization, exact re-ranking) with its tuner. It owns index
//! folders ([`store`]), `.npy` files ([`npy`]), benchmark sets ([`synth`]) and the
//! benchmark harness ([`mod@bench`]); the arithmetic comes from `twotower-kernels` (re-exported
//! as [`kernels`] and [`simd`]), and the folder rules from `twotower-folder`.
//!
//! ```
//! use twotower_index::BruteForceIndex;
//! let index = BruteForceIndex::new(vec![1.0, 0.0, 0.0, 1.0, 0.7, 0.7], 2).unwrap();
//! let top = index.search(&[1.0, 0.1], 2, &[]);
//! assert_eq!(top[0].id, 0);
//! assert_eq!(top[1].id, 2);
//! ```

#[cfg(target_endian = "big")]
compile_error!("index files are little-endian arrays; big-endian hosts are not supported");

mod ann;
pub mod bench;
mod brute_force;
pub mod build;
pub mod kmeans;
pub mod npy;
mod pq;
pub mod store;
pub mod synth;
mod tune;

pub use ann::{AnnIndex, BuildOptions, SearchParams};
pub use brute_force::BruteForceIndex;
pub use kmeans::Init as KmeansInit;
// The shared kernels, under the paths this crate has always offered them at.
pub use tune::{recall_at, Setting, TuneReport, TuneTrial};
pub use twotower_kernels::gemm as kernels;
pub use twotower_kernels::{simd, top_k, Neighbor, Reservoir, TopK};

use std::path::{Path, PathBuf};

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vector matrix of {len} floats is not a whole number of rows of dimension {dim}")]
    Shape { len: usize, dim: usize },
    #[error("query has dimension {got}, the index has {expected}")]
    QueryDim { got: usize, expected: usize },
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        /// The I/O error, in the message (not a source, so that a chain of
        /// errors does not print it twice).
        error: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Npy { path: PathBuf, problem: String },
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("{0}")]
    Invalid(String),
    /// The build's stop flag ([`BuildOptions::stop`]) was raised.
    #[error("interrupted: the index build was stopped before it ended")]
    Interrupted,
    #[error(transparent)]
    Folder(#[from] twotower_folder::FolderError),
}

/// Refuses rows that are not finite or so large that their dot products overflow float32
/// (a squared norm above `f32::MAX`): scores of such rows are infinite or NaN, and every
/// ranking over them is wrong.
pub(crate) fn check_rows(vectors: &[f32], dim: usize) -> Result<(), IndexError> {
    for (i, row) in vectors.chunks_exact(dim.max(1)).enumerate() {
        let norm2: f64 = row.iter().map(|&x| x as f64 * x as f64).sum();
        if norm2.is_nan() || norm2 > f32::MAX as f64 {
            return Err(IndexError::Invalid(format!(
                "row {i} has a squared norm of {norm2:e}: not finite, or too large for float32 \
                 dot products (at most {:e}); scale the vectors down",
                f32::MAX
            )));
        }
    }
    Ok(())
}

impl IndexError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }

    pub(crate) fn format(path: &Path, problem: impl Into<String>) -> Self {
        IndexError::Format {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// Search settings used instead of an approximate index's stored ones (`None`: stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchOverrides {
    pub leaves_to_search: Option<usize>,
    pub reorder: Option<usize>,
}

/// An index of either kind, as loaded from a folder: [`Index::load`] reads `index.json`
/// to tell which.
#[allow(clippy::large_enum_variant)] // one per process; boxing buys nothing
pub enum Index {
    Exact(BruteForceIndex),
    Approximate(AnnIndex),
}

impl Index {
    /// Loads the index folder `dir` with `overrides` of an approximate index's stored
    /// search setting (any override of an exact index is an error).
    pub fn load_with(dir: &Path, overrides: SearchOverrides) -> Result<Index, IndexError> {
        let mut index = Index::load(dir)?;
        match &mut index {
            Index::Approximate(a) => {
                let stored = a.params();
                a.set_params(SearchParams {
                    leaves_to_search: overrides
                        .leaves_to_search
                        .unwrap_or(stored.leaves_to_search),
                    reorder: overrides.reorder.unwrap_or(stored.reorder),
                });
            }
            Index::Exact(_) if overrides != SearchOverrides::default() => {
                return Err(IndexError::Invalid(
                    "--leaves-to-search and --reorder apply to approximate indexes only".into(),
                ))
            }
            Index::Exact(_) => {}
        }
        Ok(index)
    }

    /// Loads the index folder `dir`, whichever its kind.
    pub fn load(dir: &Path) -> Result<Index, IndexError> {
        #[derive(serde::Deserialize)]
        struct Kind {
            kind: String,
        }
        let k: Kind = store::read_manifest(dir)?;
        match k.kind.as_str() {
            "exact" => Ok(Index::Exact(BruteForceIndex::load(dir)?)),
            "ann" => Ok(Index::Approximate(AnnIndex::load(dir)?)),
            other => Err(IndexError::format(
                &dir.join(store::MANIFEST),
                format!("unknown index kind {other:?}"),
            )),
        }
    }

    /// Writes the index folder `dir` (replacing only an index folder, atomically).
    pub fn save(&self, dir: &Path) -> Result<(), IndexError> {
        match self {
            Index::Exact(i) => i.save(dir),
            Index::Approximate(i) => i.save(dir),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Index::Exact(i) => i.len(),
            Index::Approximate(i) => i.len(),
        }
    }

    /// True when the index holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        match self {
            Index::Exact(i) => i.dim(),
            Index::Approximate(i) => i.dim(),
        }
    }

    /// The `k` best rows for one query (approximate indexes use their stored settings).
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Neighbor> {
        match self {
            Index::Exact(i) => i.search(query, k, &[]),
            Index::Approximate(i) => i.search(query, k, &[]),
        }
    }

    /// The `k` best rows for every query of a row-major batch, on all threads.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>, IndexError> {
        match self {
            Index::Exact(i) => i.search_batch(queries, k),
            Index::Approximate(i) => i.search_batch(queries, k, i.params()),
        }
    }

    /// The `k` best ids and scores of every query of a row-major batch, as two row-major
    /// `queries × k` tables (best first; id -1 and score -∞ where fewer than `k` exist).
    /// `k` is capped at the number of rows: the tables are `queries × min(k, len)`.
    pub fn search_table(
        &self,
        queries: &[f32],
        k: usize,
    ) -> Result<(Vec<i32>, Vec<f32>), IndexError> {
        let k = k.min(self.len());
        let results = self.search_batch(queries, k)?;
        let mut ids = vec![-1i32; results.len() * k];
        let mut scores = vec![f32::NEG_INFINITY; results.len() * k];
        for (r, found) in results.iter().enumerate() {
            for (j, n) in found.iter().take(k).enumerate() {
                ids[r * k + j] = n.id as i32;
                scores[r * k + j] = n.score;
            }
        }
        Ok((ids, scores))
    }

    /// Bytes of the index structure, not counting original vectors kept for re-ranking.
    pub fn index_bytes(&self) -> usize {
        match self {
            Index::Exact(i) => i.len() * i.dim() * 4,
            Index::Approximate(i) => i.index_bytes(),
        }
    }
}
