//! The two-tower model: towers, the retrieval loss, sparse optimizers, the trainer,
//! evaluation and the model folder.
//!
//! The principal type is [`TwoTowerModel`]: a [`QueryTower`] (user id → vector) and a
//! [`CandidateTower`] (movie title or id → vector) over a [`Catalogue`], each an [`IdTower`]:
//! a [`nn::Tower`] (feature encoders and dense layers with forward and backward passes and
//! named parameters) keyed by one id. [`Trainer`] fits it
//! with the in-batch softmax of TensorFlow Recommenders ([`InBatchSoftmax`]), computed on the
//! deduplicated batch; [`Experiment`] joins a split, a model and its trainer and runs
//! [`Experiment::fit`]; [`eval`] measures over the full catalogue; [`SavedModel`] writes and
//! reads the model folder (checksummed, only ever replacing a model folder); [`mod@bench`]
//! times whole training runs. It also owns answering queries (recommendations, similar
//! items, [`TitleIndex`] for titles), [`ItemView`], the one way an item is shown, and [`report`],
//! the one way results are printed. It
//! knows data types, the indexes and the kernels; nothing of HTTP or the command line.
//!
//! ```no_run
//! use twotower_data::{Dataset, SplitSpec};
//! use twotower_model::{Experiment, TrainConfig};
//! let ml = Dataset::open("../shared/data/ml-100k").unwrap();
//! let config = TrainConfig::preset("tfrs").unwrap();
//! let mut exp = Experiment::prepare(ml, &SplitSpec::Fold("u1".into()), None, config).unwrap();
//! exp.fit(false, &mut |_| {}).unwrap();
//! println!("{:?}", exp.evaluate().factorized_top_k);
//! ```

pub mod als;
pub mod answer;
pub mod bench;
pub mod checkpoint;
pub mod cold;
pub mod config;
pub mod embedding;
mod error;
pub mod eval;
pub mod feature_answer;
pub mod feature_experiment;
pub mod feature_files;
pub mod feature_folder;
pub mod feature_model;
pub mod feature_scorer;
pub mod feature_warm;
pub mod features;
pub mod job;
pub use twotower_kernels::fastexp;
pub mod loss;
pub mod nn;
pub mod optimizer;
mod pipeline;
pub mod preprocess;
pub mod quality_bench;
pub mod query_data;
pub mod report;
mod retrieve;
pub mod spec;
mod titles;
pub mod towers;
pub mod trainer;

pub use checkpoint::{DatasetInfo, IndexedModel, ModelCard, SavedModel};
pub use config::{
    CandidateKey, LrDecay, Negatives, OptimizerConfig, OptimizerKind, Overrides, TrainConfig,
    PRESETS,
};
pub use error::{ModelError, Result};
pub use eval::{evaluate, Metrics, ModelScorer, Popularity, Scorer};
pub use loss::InBatchSoftmax;
pub use pipeline::{Experiment, FitEvent, SplitEval, Visitors};
pub use report::{MetricsTable, Ranked, SimilarItems, TrainReport, UserItems};
pub use retrieve::Recommendations;
pub use titles::{TitleIndex, MAX_QUERY_CHARS};
pub use towers::{
    year_of, CandidateTower, Catalogue, IdTower, ItemView, QueryTower, SeenItems, TwoTowerModel,
};
pub use trainer::{BatchProgress, EpochStats, Trainer};
