//! A feature model's run from data to report: the split, fitting the towers' inputs on the
//! training side, the epochs, evaluation with a query per test interaction, and saving in
//! model folder format 2. What `twotower train --towers FILE` calls.

use std::time::Instant;

use twotower_data::{random_split, Dataset, SplitSpec};

use crate::checkpoint::DatasetInfo;
use crate::eval::Metrics;
use crate::feature_folder::{FeatureCard, SavedFeatureModel};
use crate::feature_model::{FeatureFiles, FeatureModel, FeatureTrainer};
use crate::pipeline::{FitEvent, SplitEval};
use crate::report::TrainReport;
use crate::spec::TowersSpec;
use crate::trainer::EpochStats;
use crate::{ModelError, Result, TrainConfig};

/// A feature model with its trainer and evaluation split: the [`crate::Experiment`] of
/// feature towers.
pub struct FeatureExperiment {
    pub model: FeatureModel,
    pub trainer: FeatureTrainer,
    pub split: SplitEval,
    /// The time of each test interaction, in `split.test` order.
    pub test_times: Vec<i64>,
    pub dataset: DatasetInfo,
    pub history: Vec<EpochStats>,
}

impl FeatureExperiment {
    /// Splits `ml` by `split` (with `validation`, a seeded fraction of the training side
    /// becomes the test side) and fits `towers` on the training side; `files` are the
    /// users' and items' feature files, typed by the spec.
    pub fn prepare(
        ml: &Dataset,
        split: &SplitSpec,
        validation: Option<f64>,
        config: TrainConfig,
        towers: TowersSpec,
        files: FeatureFiles,
    ) -> Result<Self> {
        let (mut train, mut test) = ml.split(split)?;
        let mut label = split.label();
        if let Some(f) = validation {
            (train, test) = random_split(&train, f, config.seed)
                .map_err(|e| ModelError::Config(format!("validation fraction {f}: {e}")))?;
            label = format!("{label} training side, validation fraction {f}");
        }
        let (model, trainer) = FeatureModel::new(config, towers, ml, &train, files)?;
        let mut dataset = DatasetInfo::of(ml, &train, test.len());
        dataset.split = label;
        Ok(FeatureExperiment {
            split: SplitEval::new(ml, &train, &test)?,
            test_times: test.iter().map(|r| r.timestamp).collect(),
            model,
            trainer,
            dataset,
            history: Vec::new(),
        })
    }

    /// Trains for the configured epochs, reporting each epoch's start and end.
    pub fn fit(&mut self, report: &mut dyn FnMut(FitEvent)) -> Result<()> {
        let epochs = self.model.config.epochs;
        for epoch in 1..=epochs {
            report(FitEvent::EpochStart {
                epoch,
                epochs,
                examples: self.trainer.examples.len(),
            });
            let stats = self.trainer.run_epoch(&mut self.model)?;
            self.history.push(stats);
            if let Some(last) = self.history.last() {
                report(FitEvent::EpochEnd(last));
            }
        }
        Ok(())
    }

    /// Both protocols on the test side, each test interaction under its own query.
    pub fn evaluate(&self) -> Result<Metrics> {
        let scorer = self.model.scorer(&self.split.test, &self.test_times)?;
        Ok(crate::eval::evaluate(
            &scorer,
            self.model.catalogue.len(),
            &self.split.test,
            &self.split.seen,
        ))
    }

    /// The report of a run that took `train_seconds`: the model's and popularity's metrics.
    pub fn report(&self, train_seconds: f64) -> Result<TrainReport<'_>> {
        let start = Instant::now();
        let metrics = self.evaluate()?;
        Ok(TrainReport {
            metrics,
            popularity: self.split.popularity(),
            train_seconds,
            eval_seconds: start.elapsed().as_secs_f64(),
            preset: self.model.config.preset.clone(),
            config: &self.model.config,
            dataset: &self.dataset,
            history: &self.history,
            recommendations: None,
            shown_k: 0,
            model_dir: None,
            max_examples: None,
            eval_sample: None,
        })
    }

    /// Saves the model (format 2) with `report`'s metrics and the history to `out`.
    pub fn save(&self, report: &TrainReport, out: &std::path::Path) -> Result<()> {
        let mut card =
            FeatureCard::describe(&self.model, self.dataset.clone(), report.train_seconds);
        card.metrics =
            serde_json::json!({ "model": report.metrics, "popularity": report.popularity });
        SavedFeatureModel {
            model: self.model.clone(),
            card,
            history: self.history.clone(),
            warnings: Vec::new(),
        }
        .save(out)
    }
}
