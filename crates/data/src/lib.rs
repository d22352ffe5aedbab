//! Datasets for twotower: reading MovieLens, coding ids, splitting, downloading.
//!
//! This crate is the first layer of the system and knows nothing of models. Its principal
//! types are [`MovieLens`] (a loaded MovieLens folder — 100K, 1M or the CSV family —
//! ratings plus the movie catalogue), [`Vocabulary`] (string → index with index 0 for out-of-vocabulary, like
//! Keras `StringLookup(mask_token=None)`) and [`SplitSpec`] (official folds, seeded random
//! fractions, explicit files, temporal leave-last-n-out and time cuts).
//!
//! ```no_run
//! use twotower_data::{MovieLens, SplitSpec};
//! let ml = MovieLens::open("../shared/data/ml-100k").unwrap();
//! let (train, test) = ml.split(&SplitSpec::Fold("u1".into())).unwrap();
//! assert_eq!(train.len() + test.len(), 100_000);
//! ```

mod columns;
#[cfg(feature = "download")]
pub mod download;
mod error;
pub mod fetch;
mod locate;
pub mod log;
mod movielens;
pub mod movielens_1m;
pub mod movielens_csv;
#[cfg(feature = "parquet")]
pub mod parquet_log;
mod primitives;
mod record;
mod split;
pub mod synth;
mod vocab;

pub use error::{escaped, shown, DataError, Result};
pub use locate::{resolve_data_dir, DataDirSource};
pub use movielens::{read_interactions, read_movies, Format, MovieLens};
pub use record::{Interaction, Movie, GENRES};
pub use split::{last_per_user, random_split, time_cut, SplitSpec, FOLDS};
pub use vocab::{Vocabulary, OOV_TOKEN};
