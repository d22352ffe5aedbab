//! Maximum-inner-product search over a matrix of vectors: ids in, ids and scores out.
//!
//! This crate knows nothing of users, movies or models. Its principal type is
//! [`BruteForceIndex`], the exact index (every query scored against every row with a blocked
//! matrix product); [`kernels`] holds the matrix products the whole project shares.
//!
//! ```
//! use twotower_index::BruteForceIndex;
//! let index = BruteForceIndex::new(vec![1.0, 0.0, 0.0, 1.0, 0.7, 0.7], 2).unwrap();
//! let top = index.search(&[1.0, 0.1], 2, &[]);
//! assert_eq!(top[0].id, 0);
//! assert_eq!(top[1].id, 2);
//! ```

mod brute_force;
pub mod kernels;
mod topk;

pub use brute_force::BruteForceIndex;
pub use topk::{top_k, Neighbor};

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vector matrix of {len} floats is not a whole number of rows of dimension {dim}")]
    Shape { len: usize, dim: usize },
    #[error("query has dimension {got}, the index has {expected}")]
    QueryDim { got: usize, expected: usize },
}
