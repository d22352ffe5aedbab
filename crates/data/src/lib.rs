//! Datasets for twotower: reading MovieLens and interaction logs, coding ids, splitting,
//! downloading.
//!
//! This crate is the first layer of the system. Its principal types are [`Dataset`] (all
//! interactions, the item catalogue and, where the folder has them, the users' features
//! ([`User`]), from a MovieLens folder — 100K, 1M or the CSV family — or from a generic
//! CSV/TSV/Parquet log), [`Vocabulary`] (string → index with
//! index 0 for out-of-vocabulary, like Keras `StringLookup(mask_token=None)`) and
//! [`SplitSpec`] (official folds, seeded random fractions, explicit files, temporal
//! leave-last-n-out and time cuts). It owns every reader and its errors (file, line,
//! problem; values escaped with [`shown`]), finding the data folder, the download cache
//! (the `download` feature), Parquet (the `parquet` feature) and synthetic logs. It knows
//! nothing of models, indexes or HTTP.
//!
//! ```no_run
//! use twotower_data::{Dataset, SplitSpec};
//! let ml = Dataset::open("../shared/data/ml-100k").unwrap();
//! let (train, test) = ml.split(&SplitSpec::Fold("u1".into())).unwrap();
//! assert_eq!(train.len() + test.len(), 100_000);
//! ```

mod columns;
mod dataset;
#[cfg(feature = "download")]
pub mod download;
mod error;
pub mod feature_table;
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

pub use dataset::{Dataset, Format};
pub use error::{escaped, shown, DataError, Result};
pub use locate::{resolve_data_dir, DataDirSource};
pub use movielens::{read_interactions, read_movies, read_users};
pub use record::{Interaction, Movie, User, GENRES};
pub use split::{
    cold_items, cold_users, first_per_user, last_per_user, random_split, time_cut, SplitParams,
    SplitSpec, FOLDS,
};
pub use vocab::{Vocabulary, OOV_TOKEN};
