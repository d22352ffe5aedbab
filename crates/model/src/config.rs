//! Training configuration and the named presets (`tfrs`, `default`).

use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// What a movie is keyed by in the candidate tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CandidateKey {
    /// The movie title (the TFRS tutorial: 18 titles are shared by two ids).
    Title,
    /// The movie id.
    Id,
}

/// Which candidates each example's softmax runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Negatives {
    /// The other positives of the batch (TFRS `Retrieval` task).
    InBatch,
    /// Every candidate of the catalogue (affordable for small catalogues).
    Full,
    /// `Full` for catalogues of at most [`FULL_SOFTMAX_MAX_ITEMS`] candidates, otherwise
    /// `InBatch` with the logQ correction, so no step costs more than a constant times the
    /// batch. Decided when the model is made ([`TrainConfig::for_catalogue`]).
    Auto,
}

impl std::str::FromStr for Negatives {
    type Err = String;

    /// `in-batch`, `full` or `auto`, as the command line and `config.json` spell them.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.into()))
            .map_err(|_| format!("unknown negatives {s:?}: expected in-batch, full or auto"))
    }
}

/// How the learning rate changes over training: from the configured rate at the first step
/// to 0 at the last (`linear`, `cosine`), or not at all (`constant`). Applied per batch,
/// by the fraction of all epochs' examples done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    #[default]
    Constant,
    Linear,
    Cosine,
}

impl LrDecay {
    /// The factor on the learning rate when `progress` (0 to 1) of training is done.
    pub fn factor(self, progress: f64) -> f32 {
        let p = progress.clamp(0.0, 1.0);
        match self {
            LrDecay::Constant => 1.0,
            LrDecay::Linear => (1.0 - p) as f32,
            LrDecay::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * p).cos())) as f32,
        }
    }
}

impl std::str::FromStr for LrDecay {
    type Err = String;

    /// `constant`, `linear` or `cosine`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| {
            format!("unknown learning-rate decay {s:?}: expected constant, linear or cosine")
        })
    }
}

/// The largest catalogue that `Negatives::Auto` trains with a full softmax.
pub const FULL_SOFTMAX_MAX_ITEMS: usize = 4096;

/// The optimizer and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// TensorFlow's Adagrad: `acc += g²; w -= lr · g / (√acc + ε)`.
    Adagrad {
        learning_rate: f32,
        initial_accumulator: f32,
        epsilon: f32,
    },
    /// Adam with bias correction by the global step, updating only the rows a batch touches
    /// (TF Addons' LazyAdam semantics).
    Adam {
        learning_rate: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
    },
}

impl OptimizerConfig {
    /// Keras defaults for Adagrad at a learning rate.
    pub fn adagrad(learning_rate: f32) -> Self {
        OptimizerConfig::Adagrad {
            learning_rate,
            initial_accumulator: 0.1,
            epsilon: 1e-7,
        }
    }

    /// Keras defaults for Adam at a learning rate.
    pub fn adam(learning_rate: f32) -> Self {
        OptimizerConfig::Adam {
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// The learning rate.
    pub fn learning_rate(&self) -> f32 {
        match *self {
            OptimizerConfig::Adagrad { learning_rate, .. }
            | OptimizerConfig::Adam { learning_rate, .. } => learning_rate,
        }
    }

    /// The same optimizer at another learning rate.
    pub fn with_learning_rate(self, lr: f32) -> Self {
        match self {
            OptimizerConfig::Adagrad {
                initial_accumulator,
                epsilon,
                ..
            } => OptimizerConfig::Adagrad {
                learning_rate: lr,
                initial_accumulator,
                epsilon,
            },
            OptimizerConfig::Adam {
                beta1,
                beta2,
                epsilon,
                ..
            } => OptimizerConfig::Adam {
                learning_rate: lr,
                beta1,
                beta2,
                epsilon,
            },
        }
    }
}

/// Everything that decides what training does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The preset this configuration started from.
    pub preset: String,
    pub candidate_key: CandidateKey,
    pub embedding_dim: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    /// The learning rate's schedule (older model folders: constant).
    #[serde(default)]
    pub lr_decay: LrDecay,
    pub negatives: Negatives,
    /// Logits are divided by this.
    pub temperature: f32,
    /// Mask in-batch columns holding the row's own positive (TFRS `remove_accidental_hits`).
    pub remove_accidental_hits: bool,
    /// Subtract log sampling probability from in-batch logits (TFRS
    /// `candidate_sampling_probability`), estimated from training frequencies.
    pub logq_correction: bool,
    /// The logQ correction's weight: 1 subtracts the log sampling probability exactly;
    /// above 1 leaves more of each item's popularity in the learned scores (older model
    /// folders: 1).
    #[serde(default = "one")]
    pub logq_weight: f32,
    /// L2 penalty on the embedding rows a batch touches, per occurrence.
    pub l2: f32,
    /// Fixes initialisation and shuffling.
    pub seed: u64,
    /// Id tables fitted by alternating least squares before the softmax epochs (id towers
    /// only; older model folders: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<crate::als::Als>,
}

fn one() -> f32 {
    1.0
}

/// The coarse ALS part of the default preset's large-catalogue regime: 16 columns with a
/// flat penalty of 50 and α 20 (implicit's ALS tuned on Last.fm, made coarse), its weight
/// chosen per log on held-out training pairs.
pub const DEFAULT_COARSE: crate::als::Coarse = crate::als::Coarse {
    dim: 16,
    regularization: 50.0,
    alpha: 20.0,
    weight: None,
};

/// The ALS warm start of the default preset's own feature towers (a catalogue a full
/// softmax takes): 8 sweeps, a flat penalty of 100, α 15, which fit the user-id table and
/// start the history as item-item similarity (see [`crate::feature_warm`]). Chosen on a
/// 10% validation carve of u1.base: the first scores rank better than ALS alone, and after
/// the softmax epochs the model is where it was without the start.
pub const DEFAULT_FEATURE_ALS: crate::als::Als = crate::als::Als {
    iterations: 8,
    regularization: 100.0,
    alpha: 15.0,
    cg_steps: 3,
    reg_exponent: 0.0,
    popularity_exponent: 0.0,
    coarse: None,
};

/// The names accepted by [`TrainConfig::preset`].
pub const PRESETS: [&str; 5] = ["default", "ids", "tfrs", "tfrs-context", "tfrs-deep"];

impl TrainConfig {
    /// A named preset: `tfrs` (the tutorial, exactly), `ids` (id towers tuned for quality),
    /// `default` (the training of the default feature towers: `ids` with 10 epochs of Adam
    /// from 0.03 under a cosine decay), or
    /// the training of TFRS's context-features (`tfrs-context`: batch 2,048, 3 epochs) and
    /// deep-retrieval (`tfrs-deep`: 300 epochs) tutorials, whose towers
    /// [`crate::spec::TowersSpec::preset`] gives.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tfrs-context" | "tfrs-deep" => Ok(TrainConfig {
                preset: name.into(),
                batch_size: 2048,
                epochs: if name == "tfrs-deep" { 300 } else { 3 },
                ..Self::preset("tfrs")?
            }),
            "tfrs" => Ok(TrainConfig {
                preset: "tfrs".into(),
                candidate_key: CandidateKey::Title,
                embedding_dim: 32,
                epochs: 3,
                batch_size: 8192,
                optimizer: OptimizerConfig::adagrad(0.1),
                lr_decay: LrDecay::Constant,
                negatives: Negatives::InBatch,
                temperature: 1.0,
                remove_accidental_hits: false,
                logq_correction: false,
                logq_weight: 1.0,
                l2: 0.0,
                seed: 42,
                warm_start: None,
            }),
            "default" => Ok(TrainConfig {
                // The towers (`TowersSpec::default_for`) and this schedule were chosen on a
                // 10% validation carve of u1.base: 10 epochs from 0.03 with a cosine decay
                // match 60 at a constant 0.003 in a sixth of the time; see the README.
                preset: "default".into(),
                epochs: 10,
                optimizer: OptimizerConfig::adam(0.03),
                lr_decay: LrDecay::Cosine,
                ..Self::preset("ids")?
            }),
            "ids" => Ok(TrainConfig {
                // Tuned on a 10% validation carve of u1.base (seed = model seed), selected by
                // Protocol 1 top-100; see the README for the sweep.
                preset: "ids".into(),
                candidate_key: CandidateKey::Id,
                embedding_dim: 64,
                epochs: 20,
                batch_size: 1024,
                optimizer: OptimizerConfig::adam(0.003),
                lr_decay: LrDecay::Constant,
                // Full softmax on small catalogues (MovieLens 100K/1M), in-batch + logQ on
                // large ones.
                negatives: Negatives::Auto,
                temperature: 1.0,
                remove_accidental_hits: false,
                logq_correction: false,
                logq_weight: 1.0,
                l2: 0.08,
                seed: 42,
                warm_start: None,
            }),
            other => Err(ModelError::Config(format!(
                "unknown preset {other:?}; known presets: {}",
                PRESETS.join(", ")
            ))),
        }
    }

    /// The `default` preset on a catalogue of more than [`FULL_SOFTMAX_MAX_ITEMS`] when the
    /// towers are its own choice: id towers whose tables alternating least squares fits —
    /// 64 fine columns (15 sweeps, α 60, a penalty of 0.03 scaled by each row's frequency,
    /// negatives weighted by popularity to the power 0.15) beside the 16 of
    /// [`DEFAULT_COARSE`] — and no softmax epochs. Chosen on 10% validation carves (3 seeds)
    /// of Last.fm 2k and a 10,000-item synthetic log, where it beat the softmax regimes at
    /// every K in a seventh of the time (see the README).
    pub fn default_als() -> Self {
        let mut c =
            Self::preset_in_regime("default", usize::MAX, None).expect("the default preset exists");
        c.embedding_dim = 64;
        c.epochs = 0;
        c.warm_start = Some(crate::als::Als {
            iterations: 15,
            regularization: 0.03,
            alpha: 60.0,
            cg_steps: 3,
            reg_exponent: 1.0,
            popularity_exponent: 0.15,
            coarse: Some(DEFAULT_COARSE),
        });
        c.embedding_dim += DEFAULT_COARSE.dim;
        c
    }

    /// A preset for a catalogue of `candidates` rows. The `default` preset has two
    /// regimes: up to [`FULL_SOFTMAX_MAX_ITEMS`] candidates a full softmax (tuned on
    /// MovieLens 100K); beyond, in-batch negatives with the logQ correction, batch 512,
    /// Adam 0.01 and 3 epochs (chosen by time to quality on a 5M-interaction synthetic log,
    /// see the README), so a step costs the same whatever the catalogue's size.
    pub fn preset_for(name: &str, candidates: usize) -> Result<Self> {
        Self::preset_in_regime(name, candidates, None)
    }

    /// [`TrainConfig::preset_for`] in the regime `negatives` names (`None` or `Auto`: the
    /// preset's choice for the catalogue's size), taken as a whole: `Full` is a full
    /// softmax with neither the logQ correction nor accidental-hit removal, with the
    /// preset's full-softmax settings; `InBatch` is the preset's in-batch regime (for a
    /// preset that chooses by size, the large-catalogue settings, logQ included).
    pub fn preset_in_regime(
        name: &str,
        candidates: usize,
        negatives: Option<Negatives>,
    ) -> Result<Self> {
        let mut c = Self::preset(name)?;
        let chosen = match negatives.unwrap_or(Negatives::Auto) {
            Negatives::Auto => c.clone().for_catalogue(candidates).negatives,
            explicit => explicit,
        };
        if c.negatives == Negatives::Auto && chosen == Negatives::InBatch {
            c.batch_size = 512;
            c.optimizer = OptimizerConfig::adam(0.01);
            c.lr_decay = LrDecay::Constant;
            c.epochs = 3;
            c.logq_correction = true;
            if name == "default" {
                // The feature towers, chosen on a 10% validation carve of Last.fm 2k's
                // training side: 10 cosine-decayed epochs reach a higher top-100 than 3
                // constant ones, and a logQ weight of 1.25 keeps the top-10 where 3 epochs
                // had it (see the README).
                c.epochs = 10;
                c.lr_decay = LrDecay::Cosine;
                c.logq_weight = 1.25;
            }
        }
        if chosen == Negatives::Full {
            c.logq_correction = false;
            c.remove_accidental_hits = false;
        }
        c.negatives = chosen;
        Ok(c)
    }

    /// Settles [`Negatives::Auto`] for a catalogue of `candidates` rows: a full softmax up
    /// to [`FULL_SOFTMAX_MAX_ITEMS`], otherwise in-batch negatives with the logQ correction.
    pub fn for_catalogue(mut self, candidates: usize) -> Self {
        if self.negatives == Negatives::Auto {
            if candidates <= FULL_SOFTMAX_MAX_ITEMS {
                self.negatives = Negatives::Full;
            } else {
                self.negatives = Negatives::InBatch;
                self.logq_correction = true;
            }
        }
        self
    }

    /// Checks the values a user may have overridden.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(ModelError::Config(m.into()));
        if self.embedding_dim == 0 || self.embedding_dim > crate::spec::limits::DIM {
            return fail(&format!(
                "embedding dimension must be 1 to {}, got {}",
                crate::spec::limits::DIM,
                self.embedding_dim
            ));
        }
        if self.batch_size == 0 {
            return fail("batch size must be at least 1");
        }
        if let Some(als) = &self.warm_start {
            als.validate()?;
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return fail("temperature must be a positive number");
        }
        let lr = self.optimizer.learning_rate();
        if !(lr > 0.0 && lr.is_finite()) {
            return fail("learning rate must be a positive number");
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return fail("l2 must be zero or positive");
        }
        if !(self.logq_weight > 0.0 && self.logq_weight.is_finite()) {
            return fail("the logQ weight must be a positive number (--logq false turns it off)");
        }
        if self.negatives == Negatives::Full
            && (self.remove_accidental_hits || self.logq_correction)
        {
            return fail(
                "accidental-hit removal and the logQ correction apply to in-batch negatives \
                 only: a full softmax has every candidate in each row (pass --negatives \
                 in-batch, or leave --logq and --remove-accidental-hits out)",
            );
        }
        Ok(())
    }
}

/// The optimizer families a preset's optimizer can be switched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    Adagrad,
    Adam,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;

    /// `adagrad` or `adam`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "adagrad" => Ok(OptimizerKind::Adagrad),
            "adam" => Ok(OptimizerKind::Adam),
            _ => Err(format!("unknown optimizer {s:?}: expected adagrad or adam")),
        }
    }
}

/// Changes to a preset, as the command line and other front ends take them: every `None`
/// keeps the preset's value. `negatives` chooses the regime as a whole (see
/// [`TrainConfig::preset_in_regime`]), applied before the others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub embedding_dim: Option<usize>,
    /// Another optimizer family, keeping the learning rate (unless that is overridden too).
    pub optimizer: Option<OptimizerKind>,
    pub learning_rate: Option<f32>,
    pub lr_decay: Option<LrDecay>,
    pub negatives: Option<Negatives>,
    pub temperature: Option<f32>,
    pub l2: Option<f32>,
    pub seed: Option<u64>,
    pub remove_accidental_hits: Option<bool>,
    pub logq_correction: Option<bool>,
    pub logq_weight: Option<f32>,
    /// ALS sweeps of the warm start (0: none).
    pub als_iterations: Option<usize>,
    pub als_regularization: Option<f32>,
    pub als_alpha: Option<f32>,
    pub als_reg_exponent: Option<f32>,
    pub als_popularity_exponent: Option<f32>,
    /// Columns of the coarse ALS part (0: none); the fine part keeps its columns.
    pub als_coarse_dim: Option<usize>,
    /// The coarse part's weight (open: chosen on held-out training pairs).
    pub als_coarse_weight: Option<f32>,
}

impl TrainConfig {
    /// This configuration with `o` applied, validated.
    pub fn with_overrides(mut self, o: &Overrides) -> Result<Self> {
        self.epochs = o.epochs.unwrap_or(self.epochs);
        self.batch_size = o.batch_size.unwrap_or(self.batch_size);
        self.embedding_dim = o.embedding_dim.unwrap_or(self.embedding_dim);
        if let Some(kind) = o.optimizer {
            let lr = self.optimizer.learning_rate();
            self.optimizer = match kind {
                OptimizerKind::Adagrad => OptimizerConfig::adagrad(lr),
                OptimizerKind::Adam => OptimizerConfig::adam(lr),
            };
        }
        if let Some(v) = o.learning_rate {
            self.optimizer = self.optimizer.with_learning_rate(v);
        }
        self.lr_decay = o.lr_decay.unwrap_or(self.lr_decay);
        self.temperature = o.temperature.unwrap_or(self.temperature);
        self.l2 = o.l2.unwrap_or(self.l2);
        self.seed = o.seed.unwrap_or(self.seed);
        self.remove_accidental_hits = o
            .remove_accidental_hits
            .unwrap_or(self.remove_accidental_hits);
        self.logq_correction = o.logq_correction.unwrap_or(self.logq_correction);
        self.logq_weight = o.logq_weight.unwrap_or(self.logq_weight);
        if o.als_iterations.is_some()
            || o.als_regularization.is_some()
            || o.als_alpha.is_some()
            || o.als_reg_exponent.is_some()
            || o.als_popularity_exponent.is_some()
            || o.als_coarse_dim.is_some()
            || o.als_coarse_weight.is_some()
        {
            let mut als = self.warm_start.unwrap_or_default();
            als.iterations = o.als_iterations.unwrap_or(als.iterations);
            als.regularization = o.als_regularization.unwrap_or(als.regularization);
            als.alpha = o.als_alpha.unwrap_or(als.alpha);
            als.reg_exponent = o.als_reg_exponent.unwrap_or(als.reg_exponent);
            als.popularity_exponent = o.als_popularity_exponent.unwrap_or(als.popularity_exponent);
            let before = als.coarse.map_or(0, |c| c.dim);
            if let Some(dim) = o.als_coarse_dim {
                let c = als.coarse.unwrap_or(DEFAULT_COARSE);
                als.coarse = (dim > 0).then_some(crate::als::Coarse { dim, ..c });
            }
            if let Some(w) = o.als_coarse_weight {
                let c = als.coarse.unwrap_or(DEFAULT_COARSE);
                als.coarse = Some(crate::als::Coarse {
                    weight: Some(w),
                    ..c
                });
            }
            let after = als
                .coarse
                .filter(|_| als.iterations > 0)
                .map_or(0, |c| c.dim);
            // The fine part keeps its columns; the tables grow or shrink by the coarse part
            // (none when the warm start is switched off).
            self.embedding_dim = (self.embedding_dim + after).saturating_sub(before);
            self.warm_start = (als.iterations > 0).then_some(als);
        }
        self.validate()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_preset_has_a_regime_for_large_catalogues() {
        // MovieLens 100K: the full softmax the preset was tuned with.
        let small = TrainConfig::preset_for("default", 1682).unwrap();
        assert_eq!(small.negatives, Negatives::Full);
        assert!(!small.logq_correction);
        assert_eq!((small.batch_size, small.epochs), (1024, 10));
        assert_eq!(small.lr_decay, LrDecay::Cosine);
        let ids = TrainConfig::preset_for("ids", 1682).unwrap();
        assert_eq!((ids.negatives, ids.epochs), (Negatives::Full, 20));
        assert_eq!(
            small,
            TrainConfig::preset("default").unwrap().for_catalogue(1682)
        );
        // Beyond the threshold: in-batch + logQ, so no step touches the whole catalogue.
        let large = TrainConfig::preset_for("default", FULL_SOFTMAX_MAX_ITEMS + 1).unwrap();
        assert_eq!(large.negatives, Negatives::InBatch);
        assert!(large.logq_correction);
        assert_eq!((large.batch_size, large.epochs), (512, 10));
        assert_eq!((large.lr_decay, large.logq_weight), (LrDecay::Cosine, 1.25));
        assert_eq!(large.optimizer, OptimizerConfig::adam(0.01));
        large.validate().unwrap();
        // The id towers keep the regime the Scale figures were measured with.
        let large_ids = TrainConfig::preset_for("ids", FULL_SOFTMAX_MAX_ITEMS + 1).unwrap();
        assert_eq!((large_ids.epochs, large_ids.logq_weight), (3, 1.0));
        assert_eq!(large_ids.lr_decay, LrDecay::Constant);
        // The tutorial's preset is the tutorial's whatever the catalogue.
        let tfrs = TrainConfig::preset("tfrs").unwrap();
        assert_eq!(TrainConfig::preset_for("tfrs", 1_000_000).unwrap(), tfrs);
        // An explicit choice is kept.
        let full = TrainConfig {
            negatives: Negatives::Full,
            ..large.clone()
        };
        assert_eq!(full.clone().for_catalogue(10_000_000), full);
    }
}

#[cfg(test)]
mod override_tests {
    use super::*;

    #[test]
    fn overrides_change_only_what_they_name_and_are_validated() {
        let base = TrainConfig::preset("tfrs").unwrap();
        assert_eq!(
            base.clone().with_overrides(&Overrides::default()).unwrap(),
            base
        );
        let o = Overrides {
            epochs: Some(7),
            optimizer: Some(OptimizerKind::Adam),
            remove_accidental_hits: Some(true),
            ..Overrides::default()
        };
        let c = base.clone().with_overrides(&o).unwrap();
        assert_eq!(c.epochs, 7);
        // A new optimizer family keeps the preset's learning rate.
        assert_eq!(
            c.optimizer,
            OptimizerConfig::adam(base.optimizer.learning_rate())
        );
        assert!(c.remove_accidental_hits);
        assert_eq!(c.batch_size, base.batch_size);
        let o = Overrides {
            learning_rate: Some(-1.0),
            ..Overrides::default()
        };
        let e = base.with_overrides(&o).unwrap_err().to_string();
        assert!(e.contains("learning rate must be a positive number"), "{e}");
    }

    #[test]
    fn learning_rate_decays_from_the_rate_to_zero() {
        assert_eq!(LrDecay::Constant.factor(0.7), 1.0);
        assert_eq!(LrDecay::Linear.factor(0.0), 1.0);
        assert_eq!(LrDecay::Linear.factor(0.25), 0.75);
        assert!((LrDecay::Cosine.factor(0.5) - 0.5).abs() < 1e-6);
        assert!(LrDecay::Cosine.factor(1.0).abs() < 1e-6);
        assert_eq!(LrDecay::Linear.factor(2.0), 0.0);
        assert_eq!("cosine".parse::<LrDecay>(), Ok(LrDecay::Cosine));
        assert!("step"
            .parse::<LrDecay>()
            .unwrap_err()
            .contains("constant, linear or cosine"));
        // Older config.json files have no decay: constant.
        let mut v = serde_json::to_value(TrainConfig::preset("tfrs").unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("lr_decay");
        let c: TrainConfig = serde_json::from_value(v).unwrap();
        assert_eq!(c.lr_decay, LrDecay::Constant);
    }

    #[test]
    fn an_explicit_regime_is_taken_as_a_whole() {
        let big = 17_632;
        let regime = |n: Option<Negatives>, logq: Option<bool>| {
            let o = Overrides {
                negatives: n,
                logq_correction: logq,
                ..Overrides::default()
            };
            TrainConfig::preset_in_regime("default", big, o.negatives)
                .and_then(|c| c.with_overrides(&o))
        };
        // A full softmax on a large catalogue: no logQ, the full-softmax settings.
        let full = regime(Some(Negatives::Full), None).unwrap();
        assert_eq!(full.negatives, Negatives::Full);
        assert!(!full.logq_correction && !full.remove_accidental_hits);
        assert_eq!(
            full.batch_size,
            TrainConfig::preset("default").unwrap().batch_size
        );
        // In-batch on a small one: the in-batch regime, logQ on unless switched off.
        let small = |logq| {
            let o = Overrides {
                negatives: Some(Negatives::InBatch),
                logq_correction: logq,
                ..Overrides::default()
            };
            TrainConfig::preset_in_regime("ids", 1682, o.negatives)
                .and_then(|c| c.with_overrides(&o))
                .unwrap()
        };
        assert!(small(None).logq_correction);
        assert_eq!(small(None).batch_size, 512);
        assert!(!small(Some(false)).logq_correction);
        // The default regime for the size, with logQ switched off.
        let plain = regime(None, Some(false)).unwrap();
        assert_eq!(plain.negatives, Negatives::InBatch);
        assert!(!plain.logq_correction);
        // logQ asked for with a full softmax is a contradiction, said as such.
        let e = regime(Some(Negatives::Full), Some(true))
            .unwrap_err()
            .to_string();
        assert!(e.contains("in-batch negatives only"), "{e}");
        // The tutorial keeps its regime; `full` drops nothing else.
        let tfrs = TrainConfig::preset_in_regime("tfrs", big, Some(Negatives::Full)).unwrap();
        assert_eq!((tfrs.negatives, tfrs.batch_size), (Negatives::Full, 8192));
    }

    #[test]
    fn the_coarse_part_adds_its_columns_to_the_fine_ones() {
        let c = TrainConfig::default_als();
        let coarse = c.warm_start.and_then(|a| a.coarse);
        assert_eq!((c.embedding_dim, coarse), (80, Some(DEFAULT_COARSE)));
        let with = |o: Overrides| TrainConfig::default_als().with_overrides(&o).unwrap();
        let off = with(Overrides {
            als_coarse_dim: Some(0),
            ..Overrides::default()
        });
        assert_eq!(off.embedding_dim, 64);
        assert!(off.warm_start.is_some_and(|a| a.coarse.is_none()));
        let softmax = with(Overrides {
            als_iterations: Some(0),
            ..Overrides::default()
        });
        assert_eq!((softmax.embedding_dim, softmax.warm_start), (64, None));
        let wide = with(Overrides {
            als_coarse_dim: Some(32),
            als_coarse_weight: Some(0.5),
            ..Overrides::default()
        });
        let coarse = wide.warm_start.and_then(|a| a.coarse).unwrap();
        assert_eq!(
            (wide.embedding_dim, coarse.dim, coarse.weight),
            (96, 32, Some(0.5))
        );
        // On an id preset without one, a weight brings the default coarse part.
        let ids = TrainConfig::preset_for("ids", 1682)
            .unwrap()
            .with_overrides(&Overrides {
                embedding_dim: Some(16),
                als_coarse_weight: Some(1.0),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(ids.embedding_dim, 32);
    }
}
