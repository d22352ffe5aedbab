//! An experiment on MovieLens: model, training examples and test set built from a split,
//! so that `train`, `eval` and the tests share one path from data to metrics.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use twotower_data::{Interaction, MovieLens, Vocabulary};

use crate::checkpoint::{seen_by_user, DatasetInfo};
use crate::eval::{evaluate, Metrics, ModelScorer, Popularity};
use crate::towers::{Catalogue, SeenItems, TwoTowerModel};
use crate::trainer::{BatchProgress, EpochStats, Trainer};
use crate::{ModelError, Result, TrainConfig};

/// A model with its training examples and test set.
pub struct Experiment {
    pub model: TwoTowerModel,
    pub trainer: Trainer,
    /// Test interactions as (user id, catalogue row).
    pub test: Vec<(u32, u32)>,
    /// Training interactions as catalogue rows (for popularity).
    pub train_rows: Vec<u32>,
    pub dataset: DatasetInfo,
    pub history: Vec<EpochStats>,
}

/// Test interactions as (user id, catalogue row), checked against the catalogue.
pub fn test_pairs(ml: &MovieLens, test: &[Interaction]) -> Result<Vec<(u32, u32)>> {
    let row_of = ml.row_of_id();
    test.iter()
        .map(|r| {
            row_of
                .get(&r.item)
                .map(|&row| (r.user, row as u32))
                .ok_or_else(|| {
                    ModelError::Config(format!("movie id {} is not in the catalogue", r.item))
                })
        })
        .collect()
}

impl Experiment {
    /// Builds the vocabularies (users from all ratings and both sides of the split, as the
    /// tutorial does from the whole ratings set), the model and the examples.
    pub fn new(
        ml: &MovieLens,
        train: Vec<Interaction>,
        test: Vec<Interaction>,
        config: TrainConfig,
    ) -> Result<Self> {
        let users = Vocabulary::from_tokens(
            ml.ratings
                .iter()
                .chain(&train)
                .chain(&test)
                .map(|r| r.user.to_string()),
        );
        let catalogue = Catalogue::from_movies(&ml.movies);
        let mut model = TwoTowerModel::new(config, users, catalogue)?;
        let row_of = ml.row_of_id();
        let mut examples = Vec::with_capacity(train.len());
        let mut triples = Vec::with_capacity(train.len());
        let mut train_rows = Vec::with_capacity(train.len());
        let mut hasher = Sha256::new();
        for r in &train {
            let row = *row_of.get(&r.item).ok_or_else(|| {
                ModelError::Config(format!("movie id {} is not in the catalogue", r.item))
            })?;
            let q = model.query.vocab.lookup(&r.user.to_string()) as u32;
            examples.push((q, model.row_keys[row]));
            triples.push((q, row as u32, r.rating));
            train_rows.push(row as u32);
            hasher.update(r.user.to_le_bytes());
            hasher.update(r.item.to_le_bytes());
        }
        model.seen = SeenItems::build(model.query.vocab.len(), triples);
        let trainer = Trainer::new(&model, examples)?;
        let dataset = DatasetInfo {
            name: "movielens-100k".into(),
            split: String::new(),
            fingerprint: hex::encode(hasher.finalize()),
            train_interactions: train.len(),
            test_interactions: test.len(),
        };
        Ok(Experiment {
            test: test_pairs(ml, &test)?,
            model,
            trainer,
            train_rows,
            dataset,
            history: Vec::new(),
        })
    }

    /// One epoch; its statistics are appended to the history.
    pub fn run_epoch(&mut self, on_batch: &mut dyn FnMut(BatchProgress)) -> &mut EpochStats {
        let stats = self.trainer.run_epoch(&mut self.model, on_batch);
        self.history.push(stats);
        self.history.last_mut().expect("just pushed")
    }

    /// The model's metrics on the test set.
    pub fn evaluate(&self) -> Metrics {
        evaluate_model(&self.model, &self.test)
    }

    /// The popularity baseline's metrics on the same split.
    pub fn evaluate_popularity(&self) -> Metrics {
        let seen = seen_by_user(&self.model);
        let pop = Popularity::new(self.model.catalogue.len(), self.train_rows.iter().copied());
        evaluate(&pop, self.model.catalogue.len(), &self.test, &seen)
    }
}

/// A model's metrics on test pairs, excluding its stored training items in Protocol 2.
pub fn evaluate_model(model: &TwoTowerModel, test: &[(u32, u32)]) -> Metrics {
    let seen: HashMap<u32, Vec<u32>> = seen_by_user(model);
    evaluate(&ModelScorer::new(model), model.catalogue.len(), test, &seen)
}
