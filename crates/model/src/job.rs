//! One training run as its callers ask for it — a preset or a tower spec, overrides,
//! feature tables and a split — turned into the experiment of the right kind ([`Run`]):
//! id towers ([`Experiment`]) or feature towers ([`FeatureExperiment`]), fitted, reported,
//! saved, or kept in memory as a model that answers queries ([`AnyModel`]). What both
//! `twotower train` and the Python package's `train` call, so that they cannot differ.
//!
//! ```no_run
//! use twotower_data::{Dataset, SplitSpec};
//! use twotower_model::job::TrainJob;
//! let ml = Dataset::open("../shared/data/ml-100k").unwrap();
//! let mut run = TrainJob::new("tfrs").prepare(ml, &SplitSpec::Fold("u1".into())).unwrap();
//! run.fit(false, &mut |_| {}).unwrap();
//! let report = run.report(0.0, None).unwrap();
//! println!("{:?}", report.metrics.factorized_top_k);
//! ```

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use twotower_data::feature_table::FeatureTable;
use twotower_data::{Dataset, Format, SplitSpec};

use crate::feature_answer::AnyModel;
use crate::feature_experiment::FeatureExperiment;
use crate::feature_model::FeatureFiles;
use crate::report::{EvalSample, TrainReport};
use crate::spec::TowersSpec;
use crate::{Experiment, FitEvent, ModelError, Overrides, Result, TrainConfig};

/// What to train: everything but the data and the split.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// `default`, `ids`, `tfrs`, `tfrs-context`, `tfrs-deep` (see [`crate::PRESETS`]).
    pub preset: String,
    /// Feature towers from a spec instead of the preset's (`--towers`).
    pub towers: Option<TowersSpec>,
    pub overrides: Overrides,
    /// With `tfrs-context` / `tfrs-deep`: give the query the interaction's time.
    pub timestamps: bool,
    /// Evaluate on this seeded fraction of the training side instead of the test side.
    pub validation: Option<f64>,
    /// Evaluate on a seeded sample of this many test interactions.
    pub eval_sample: Option<usize>,
    /// Stop after this many examples in all.
    pub max_examples: Option<usize>,
    /// The users' and the items' feature tables (with `towers`).
    pub user_features: Option<FeatureTable>,
    pub item_features: Option<FeatureTable>,
}

impl TrainJob {
    /// The preset `preset` as it stands.
    pub fn new(preset: &str) -> Self {
        TrainJob {
            preset: preset.to_string(),
            towers: None,
            overrides: Overrides::default(),
            timestamps: true,
            validation: None,
            eval_sample: None,
            max_examples: None,
            user_features: None,
            item_features: None,
        }
    }

    /// The training configuration for a catalogue of `candidates` rows, overrides applied:
    /// an unknown preset or a bad value is an error before any data is read (pass
    /// `usize::MAX` when the catalogue is not known yet).
    pub fn config(&self, candidates: usize) -> Result<TrainConfig> {
        let preset = if self.als_by_data(candidates) {
            TrainConfig::default_als()
        } else {
            let mut c =
                TrainConfig::preset_in_regime(&self.preset, candidates, self.overrides.negatives)?;
            if self.towers_by_data() {
                c.warm_start = Some(crate::config::DEFAULT_FEATURE_ALS);
            }
            c
        };
        preset.with_overrides(&self.overrides)
    }

    /// Whether the towers are chosen by the data: the default preset without a spec.
    fn towers_by_data(&self) -> bool {
        self.towers.is_none() && self.preset == "default"
    }

    /// Whether the default preset answers a catalogue of `candidates` with id towers that
    /// ALS fits ([`TrainConfig::default_als`]): towers by data, more candidates than a full
    /// softmax takes, and no regime chosen by hand (`negatives`).
    fn als_by_data(&self, candidates: usize) -> bool {
        self.towers_by_data()
            && self.overrides.negatives.is_none()
            && candidates != usize::MAX
            && candidates > crate::config::FULL_SOFTMAX_MAX_ITEMS
    }

    /// Whether the preset is one of the tutorials' feature presets (`tfrs-context`,
    /// `tfrs-deep`), the ones `timestamps` applies to.
    pub fn tutorial_features(&self) -> bool {
        TowersSpec::preset(&self.preset, self.timestamps).is_some()
    }

    /// Whether this job trains feature towers (a spec, a feature preset, or the default
    /// preset's towers by data), whose sizes come from the spec rather than `dim`.
    pub fn feature_towers(&self) -> bool {
        self.towers.is_some() || self.tutorial_features() || self.towers_by_data()
    }

    /// Checks what can be checked without the data: the configuration, and that the
    /// options fit the kind of towers (`dim` sizes id towers only; `timestamps` belongs to
    /// the tutorials' feature presets).
    pub fn check(&self) -> Result<()> {
        self.config(usize::MAX)?;
        if !self.timestamps && !self.tutorial_features() {
            return Err(ModelError::Config(
                "timestamps applies to the tfrs-context and tfrs-deep presets".into(),
            ));
        }
        if self.overrides.embedding_dim.is_some() && self.feature_towers() {
            return Err(ModelError::Config(
                "dim sets the size of id towers; feature towers take their sizes from the \
                 spec (the default preset's are in towers/; the `ids` preset trains id towers \
                 of that dim)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The feature towers this job trains on `ml`, or `None` for id towers. The default
    /// preset chooses by what the data offers: id towers fitted by ALS for a large
    /// catalogue, else a history before each interaction when it has times, the user's
    /// other items when it has none.
    pub fn towers_for(&self, ml: &Dataset) -> Result<Option<TowersSpec>> {
        if let Some(t) = &self.towers {
            return Ok(Some(t.clone()));
        }
        if self.als_by_data(ml.movies.len()) {
            return Ok(None);
        }
        if self.towers_by_data() {
            let has_time = ml.format != (Format::Log { has_time: false });
            return TowersSpec::default_for(has_time).map(Some);
        }
        TowersSpec::preset(&self.preset, self.timestamps).transpose()
    }

    /// Splits `ml` by `split`, builds the model and its trainer: the run, ready to fit.
    pub fn prepare(&self, ml: Dataset, split: &SplitSpec) -> Result<Run> {
        self.check()?;
        let config = self.config(ml.movies.len())?;
        let (kind, sampled) = match self.towers_for(&ml)? {
            Some(towers) => {
                let files = FeatureFiles::typed(
                    &towers,
                    self.user_features.as_ref(),
                    self.item_features.as_ref(),
                )?;
                let mut exp =
                    FeatureExperiment::prepare(&ml, split, self.validation, config, towers, files)?;
                let sampled = self.eval_sample.and_then(|n| exp.sample_test(n));
                exp.trainer.set_example_budget(self.max_examples);
                (Kind::Features(Box::new(exp)), sampled)
            }
            None => {
                let mut exp = Experiment::prepare(ml, split, self.validation, config)?;
                let sampled = self.eval_sample.and_then(|n| exp.sample_test(n));
                exp.trainer.set_example_budget(self.max_examples);
                (Kind::Ids(Box::new(exp)), sampled)
            }
        };
        Ok(Run {
            kind,
            sampled,
            max_examples: self.max_examples,
        })
    }
}

enum Kind {
    Ids(Box<Experiment>),
    Features(Box<FeatureExperiment>),
}

/// A prepared training run of either kind of towers.
pub struct Run {
    kind: Kind,
    sampled: Option<EvalSample>,
    max_examples: Option<usize>,
}

impl Run {
    /// Epochs the run trains for.
    pub fn epochs(&self) -> usize {
        match &self.kind {
            Kind::Ids(e) => e.model.config.epochs,
            Kind::Features(e) => e.model.config.epochs,
        }
    }

    /// Training examples per epoch.
    pub fn examples(&self) -> usize {
        match &self.kind {
            Kind::Ids(e) => e.trainer.len(),
            Kind::Features(e) => e.trainer.len(),
        }
    }

    /// Stops training before its next batch once `flag` is raised (from another thread);
    /// [`Run::fit`] then returns [`ModelError::Interrupted`].
    pub fn set_stop_flag(&mut self, flag: Arc<AtomicBool>) {
        match &mut self.kind {
            Kind::Ids(e) => e.trainer.budget.set_stop_flag(flag),
            Kind::Features(e) => e.trainer.budget.set_stop_flag(flag),
        }
    }

    /// Trains for the configured epochs, reporting as it goes; with `eval_every_epoch`,
    /// each epoch's metrics go into its history entry.
    pub fn fit(&mut self, eval_every_epoch: bool, report: &mut dyn FnMut(FitEvent)) -> Result<()> {
        match &mut self.kind {
            Kind::Ids(e) => e.fit(eval_every_epoch, report),
            Kind::Features(e) => e.fit(eval_every_epoch, report),
        }
    }

    /// Evaluates (both protocols, popularity and the split's baselines) and shows `show`'s
    /// `k` items: the report of a run that took `train_seconds`.
    pub fn report(
        &self,
        train_seconds: f64,
        show: Option<(&str, usize)>,
    ) -> Result<TrainReport<'_>> {
        let mut report = match &self.kind {
            Kind::Ids(e) => e.report(train_seconds, show),
            Kind::Features(e) => e.report(train_seconds, show)?,
        };
        report.max_examples = self.max_examples;
        report.eval_sample = self.sampled;
        Ok(report)
    }

    /// Saves the model with `report`'s metrics and the history to `out` (format 1 for id
    /// towers, 2 for feature towers), replacing only a model folder, atomically.
    pub fn save(&self, report: &TrainReport, out: &Path) -> Result<()> {
        match &self.kind {
            Kind::Ids(e) => e.saved(report).save(out),
            Kind::Features(e) => e.saved(report).save(out),
        }
    }

    /// The trained model in memory, as [`Run::save`] would write it and [`AnyModel::load`]
    /// read it back.
    pub fn model(&self, report: &TrainReport) -> AnyModel {
        match &self.kind {
            Kind::Ids(e) => AnyModel::Ids(Box::new(e.saved(report))),
            Kind::Features(e) => AnyModel::Features(Box::new(e.saved(report))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_FEATURE_ALS;

    #[test]
    fn the_default_towers_start_from_their_als_warm_start() {
        let job = TrainJob::new("default");
        let small = job.config(1682).unwrap();
        assert_eq!(small.warm_start, Some(DEFAULT_FEATURE_ALS));
        // Switched off by hand; a tower spec of one's own or another preset has none.
        let mut off = TrainJob::new("default");
        off.overrides.als_iterations = Some(0);
        assert_eq!(off.config(1682).unwrap().warm_start, None);
        let mut spec = TrainJob::new("default");
        spec.towers = Some(TowersSpec::default_for(true).unwrap());
        assert_eq!(spec.config(1682).unwrap().warm_start, None);
        assert_eq!(TrainJob::new("ids").config(1682).unwrap().warm_start, None);
        // Over a full softmax's catalogue, the id towers' ALS regime.
        let large = job.config(20_000).unwrap();
        assert_eq!(large.warm_start, TrainConfig::default_als().warm_start);
    }
}
