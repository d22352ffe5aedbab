//! Datasets for twotower: reading MovieLens, coding ids, splitting, downloading.
//!
//! This crate is the first layer of the system and knows nothing of models. Its principal
//! types are [`MovieLens`] (a loaded MovieLens 100K folder: ratings plus the movie
//! catalogue), [`Vocabulary`] (string → index with index 0 for out-of-vocabulary, like
//! Keras `StringLookup(mask_token=None)`) and [`SplitSpec`] (official folds, seeded random
//! fractions, explicit files).
//!
//! ```no_run
//! use twotower_data::{MovieLens, SplitSpec};
//! let ml = MovieLens::open("../shared/data/ml-100k").unwrap();
//! let (train, test) = ml.split(&SplitSpec::Fold("u1".into())).unwrap();
//! assert_eq!(train.len() + test.len(), 100_000);
//! ```

mod error;
pub mod fetch;
mod movielens;
mod split;
mod vocab;

pub use error::{DataError, Result};
pub use fetch::{resolve_data_dir, DataDirSource};
pub use movielens::{read_interactions, read_movies, Interaction, Movie, MovieLens, GENRES};
pub use split::{random_split, SplitSpec, FOLDS};
pub use vocab::{Vocabulary, OOV_TOKEN};
