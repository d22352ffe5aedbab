//! A feature model's run from data to report: the split, fitting the towers' inputs on the
//! training side, the epochs, evaluation with a query per test interaction, and saving in
//! model folder format 2. What `twotower train --towers FILE` calls.

use std::time::Instant;

use twotower_data::{random_split, Dataset, SplitSpec};

use crate::checkpoint::DatasetInfo;
use crate::eval::Metrics;
use crate::feature_answer::feature_user;
use crate::feature_folder::{FeatureCard, SavedFeatureModel};
use crate::feature_model::{FeatureFiles, FeatureModel, FeatureTrainer};
use crate::pipeline::{FitEvent, SplitEval};
use crate::report::{EvalSample, TrainReport};
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
    /// Whether the configuration's ALS warm start has run.
    warm_started: bool,
    /// GFLOP of the warm start's products, once it has run.
    pub warm_start_gflop: Option<f64>,
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
        let (mut train, test) = ml.split(split)?;
        let held_out = crate::pipeline::cold_rows(ml, split, &test);
        let (mut given, mut test) = crate::pipeline::given_histories(split, test);
        let mut label = split.label();
        if let Some(f) = validation {
            (train, test) = random_split(&train, f, config.seed)
                .map_err(|e| ModelError::Config(format!("validation fraction {f}: {e}")))?;
            label = format!("{label} training side, validation fraction {f}");
            given.clear();
        }
        let held: &[u32] = held_out.as_deref().unwrap_or_default();
        let (model, trainer) = FeatureModel::new_without(config, towers, ml, &train, files, held)?;
        let mut dataset = DatasetInfo::of(ml, &train, test.len());
        dataset.split = label;
        let mut eval_split = SplitEval::new(ml, &train, &test)?;
        eval_split.mark_cold(ml, split, validation);
        eval_split.mark_visitors(ml, &given)?;
        Ok(FeatureExperiment {
            split: eval_split,
            test_times: test.iter().map(|r| r.timestamp).collect(),
            model,
            trainer,
            dataset,
            history: Vec::new(),
            warm_started: false,
            warm_start_gflop: None,
        })
    }

    /// Trains for the configured epochs, reporting each epoch's start and end; with
    /// `eval_every_epoch`, each epoch's metrics go into its history entry.
    pub fn fit(&mut self, eval_every_epoch: bool, report: &mut dyn FnMut(FitEvent)) -> Result<()> {
        self.warm_start(report)?;
        let epochs = self.model.config.epochs;
        for epoch in 1..=epochs {
            if self.trainer.budget_spent() {
                break;
            }
            report(FitEvent::EpochStart {
                epoch,
                epochs,
                examples: self.trainer.len(),
            });
            let mut stats = self.trainer.run_epoch(&mut self.model)?;
            if eval_every_epoch {
                stats.metrics = Some(
                    serde_json::to_value(self.evaluate()?)
                        .map_err(|e| ModelError::Config(format!("metrics as JSON: {e}")))?,
                );
            }
            self.history.push(stats);
            if let Some(last) = self.history.last() {
                report(FitEvent::EpochEnd(last));
            }
        }
        self.trainer.budget.check_stopped()
    }

    /// The ALS warm start of the configuration, once (see [`crate::feature_warm`]),
    /// stopping between sweeps when the trainer's stop flag is raised.
    fn warm_start(&mut self, report: &mut dyn FnMut(FitEvent)) -> Result<()> {
        let Some(als) = self.model.config.warm_start.filter(|_| !self.warm_started) else {
            return Ok(());
        };
        let start = Instant::now();
        report(FitEvent::WarmStart {
            iterations: als.iterations,
        });
        let stop = self.trainer.budget.stop_flag();
        let stop = || {
            stop.as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        };
        let (used, gflop) =
            crate::feature_warm::warm_start(&mut self.model, &self.trainer.examples, &als, &stop)?;
        self.model.config.warm_start = Some(used);
        self.warm_started = true;
        self.warm_start_gflop = Some(gflop);
        if self.trainer.budget.stop_requested() {
            return Err(ModelError::Interrupted);
        }
        let finite = self.model.query.tower.is_finite() && self.model.candidate.tower.is_finite();
        crate::pipeline::warm_start_ended(report, start, finite)
    }

    /// Evaluates on a seeded random sample of `n` test interactions from now on (their
    /// times kept beside them); says how many of how many when that is fewer than all.
    pub fn sample_test(&mut self, n: usize) -> Option<EvalSample> {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let of = self.split.test.len();
        if n >= of {
            return None;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.model.config.seed);
        let mut order: Vec<usize> = (0..of).collect();
        order.shuffle(&mut rng);
        order.truncate(n);
        self.split.test = order.iter().map(|&i| self.split.test[i]).collect();
        self.test_times = order.iter().map(|&i| self.test_times[i]).collect();
        Some(EvalSample { evaluated: n, of })
    }

    /// Both protocols on the test side, each test interaction under its own query.
    pub fn evaluate(&self) -> Result<Metrics> {
        let scorer = self
            .model
            .scorer(&self.split.test, &self.test_times)?
            .with_visitors(self.split.visitors.as_ref());
        Ok(crate::eval::evaluate(
            &scorer,
            self.model.catalogue.len(),
            &self.split.test,
            &self.split.seen,
        ))
    }

    /// The report of a run that took `train_seconds`: the model's and popularity's metrics,
    /// and `show`'s `k` movies now (a user id; `None` for none).
    pub fn report(
        &self,
        train_seconds: f64,
        show: Option<(&str, usize)>,
    ) -> Result<TrainReport<'_>> {
        let start = Instant::now();
        let metrics = self.evaluate()?;
        let scorer = self
            .model
            .scorer(&self.split.test, &self.test_times)?
            .with_visitors(self.split.visitors.as_ref());
        let cold_items = self.split.cold_report(&scorer);
        let eval_seconds = start.elapsed().as_secs_f64();
        let recommendations = match show {
            Some((user, k)) => {
                let r = self.model.recommend(feature_user(user)?, k, false)?;
                Some(self.model.user_items(user, &r))
            }
            None => None,
        };
        Ok(TrainReport {
            metrics,
            popularity: self.split.popularity(),
            train_seconds,
            eval_seconds,
            preset: self.model.config.preset.clone(),
            config: &self.model.config,
            dataset: &self.dataset,
            history: &self.history,
            recommendations,
            shown_k: show.map_or(0, |(_, k)| k),
            model_dir: None,
            max_examples: None,
            eval_sample: None,
            auc: cold_items.as_ref().map(|c| c.model.auc),
            cold_items,
            item_knn: self.split.item_knn(),
            warm_start_gflop: self.warm_start_gflop,
        })
    }

    /// Saves the model (format 2) with `report`'s metrics and the history to `out`.
    pub fn save(&self, report: &TrainReport, out: &std::path::Path) -> Result<()> {
        self.saved(report).save(out)
    }

    /// The trained model with its card (holding `report`'s metrics) and history, as
    /// [`FeatureExperiment::save`] writes it.
    pub fn saved(&self, report: &TrainReport) -> SavedFeatureModel {
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
    }
}
