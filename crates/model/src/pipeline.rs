//! An experiment on MovieLens: model, training examples and test set built from a split,
//! so that `train`, `eval` and the tests share one path from data to metrics.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use twotower_data::{random_split, Dataset, Interaction, SplitSpec, Vocabulary};
use twotower_index::AnnIndex;

use crate::checkpoint::DatasetInfo;
use crate::eval::{evaluate, Metrics, ModelScorer, Popularity};
use crate::towers::{Catalogue, SeenItems, TwoTowerModel};
use crate::trainer::{BatchProgress, EpochStats, Trainer};
use crate::{ModelError, Result, TrainConfig};

impl DatasetInfo {
    /// Where a model's data came from: `ml`'s name, a SHA-256 over the training
    /// (user, item) pairs in order, and the sizes (the split label is set by the caller).
    pub fn of(ml: &Dataset, train: &[Interaction], test_interactions: usize) -> Self {
        let mut hasher = Sha256::new();
        for r in train {
            hasher.update(r.user.to_le_bytes());
            hasher.update(r.item.to_le_bytes());
        }
        DatasetInfo {
            name: ml.name(),
            split: String::new(),
            fingerprint: hex::encode(hasher.finalize()),
            train_interactions: train.len(),
            test_interactions,
        }
    }
}

/// A split ready for evaluation: test pairs, each user's training rows (excluded in
/// Protocol 2), and training rows for the popularity baseline.
pub struct SplitEval {
    /// Test interactions as (user id, catalogue row).
    pub test: Vec<(u32, u32)>,
    /// Training rows of each user id.
    pub seen: HashMap<u32, Vec<u32>>,
    /// Every training interaction's row.
    pub train_rows: Vec<u32>,
    n_rows: usize,
    /// On a cold-items split, the cold rows (every test row) and the genre-match
    /// baseline (see [`SplitEval::mark_cold`]).
    cold: Option<(Vec<u32>, crate::cold::GenreMatch)>,
    /// On a cold-users split, the users' given histories (see [`SplitEval::mark_visitors`]).
    pub visitors: Option<Visitors>,
    /// Each training user's rows, for the item-kNN baseline of cold users.
    knn: Option<crate::cold::ItemKnn>,
}

/// Cold users' given histories: each user's rows, oldest first, and the time of the last.
#[derive(Debug, Clone, Default)]
pub struct Visitors {
    pub rows: HashMap<u32, Vec<u32>>,
    pub last_time: HashMap<u32, i64>,
}

/// On a cold-users split, its test side divided into each user's given history and their
/// test interactions: `(given, test)` (`given` empty for other splits).
pub(crate) fn given_histories(
    spec: &SplitSpec,
    test: Vec<Interaction>,
) -> (Vec<Interaction>, Vec<Interaction>) {
    match spec {
        SplitSpec::ColdUsers { history, .. } => twotower_data::first_per_user(&test, *history),
        _ => (Vec::new(), test),
    }
}

/// On a cold-items split, the catalogue rows of its held-out items (those of `test`, the
/// split's test side): training leaves them out of its softmax, so it never sees them.
pub(crate) fn cold_rows(ml: &Dataset, spec: &SplitSpec, test: &[Interaction]) -> Option<Vec<u32>> {
    if !matches!(spec, SplitSpec::ColdItems { .. }) {
        return None;
    }
    let row_of = ml.row_of_id();
    let mut rows: Vec<u32> = test
        .iter()
        .filter_map(|r| row_of.get(&r.item).map(|&x| x as u32))
        .collect();
    rows.sort_unstable();
    rows.dedup();
    Some(rows)
}

/// Refuses data whose catalogue is not the model's `catalogue` (rows and ids alike).
pub(crate) fn same_catalogue(catalogue: &Catalogue, ml: &Dataset) -> Result<()> {
    let same = catalogue.len() == ml.movies.len()
        && ml
            .movies
            .iter()
            .zip(&catalogue.ids)
            .all(|(m, id)| m.id.to_string() == *id);
    if !same {
        return Err(ModelError::Mismatch(format!(
            "the model's catalogue ({} movies) is not the catalogue of {} ({} movies)",
            catalogue.len(),
            ml.dir.display(),
            ml.movies.len()
        )));
    }
    Ok(())
}

impl SplitEval {
    /// Maps a split onto catalogue rows.
    pub fn new(ml: &Dataset, train: &[Interaction], test: &[Interaction]) -> Result<Self> {
        let row_of = ml.row_of_id();
        let row = |r: &Interaction| {
            row_of.get(&r.item).map(|&x| x as u32).ok_or_else(|| {
                ModelError::Config(format!("movie id {} is not in the catalogue", r.item))
            })
        };
        let mut seen: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut train_rows = Vec::with_capacity(train.len());
        for r in train {
            let x = row(r)?;
            seen.entry(r.user).or_default().push(x);
            train_rows.push(x);
        }
        let test = test
            .iter()
            .map(|r| row(r).map(|x| (r.user, x)))
            .collect::<Result<_>>()?;
        Ok(SplitEval {
            test,
            seen,
            train_rows,
            n_rows: ml.movies.len(),
            cold: None,
            visitors: None,
            knn: None,
        })
    }

    /// Gives the test users the histories `given` (a cold-users split): Protocol 2 then
    /// excludes those rows instead of training ones, a feature model's queries read them,
    /// and the item-kNN baseline scores from them.
    pub fn mark_visitors(&mut self, ml: &Dataset, given: &[Interaction]) -> Result<()> {
        if given.is_empty() {
            return Ok(());
        }
        let row_of = ml.row_of_id();
        let mut ordered: Vec<&Interaction> = given.iter().collect();
        ordered.sort_by_key(|r| (r.user, r.timestamp, r.item));
        let mut v = Visitors::default();
        for r in ordered {
            let row = row_of.get(&r.item).map(|&x| x as u32).ok_or_else(|| {
                ModelError::Config(format!("movie id {} is not in the catalogue", r.item))
            })?;
            v.rows.entry(r.user).or_default().push(row);
            v.last_time.insert(r.user, r.timestamp);
        }
        self.knn = Some(crate::cold::ItemKnn::new(self.n_rows, &self.seen, &v.rows));
        for (u, rows) in &v.rows {
            self.seen.insert(*u, rows.clone());
        }
        self.visitors = Some(v);
        Ok(())
    }

    /// On a cold-users split, the item-kNN baseline's metrics.
    pub fn item_knn(&self) -> Option<Metrics> {
        let knn = self.knn.as_ref()?;
        Some(evaluate(knn, self.n_rows, &self.test, &self.seen))
    }

    /// Marks the test rows as cold items (a `cold-items` split, evaluated on its test
    /// side: `spec` is the split and `validation` the carve, if any); `ml` gives the
    /// genres of the genre-match baseline.
    pub fn mark_cold(&mut self, ml: &Dataset, spec: &SplitSpec, validation: Option<f64>) {
        if !matches!(spec, SplitSpec::ColdItems { .. }) || validation.is_some() {
            return;
        }
        let mut rows: Vec<u32> = self.test.iter().map(|&(_, r)| r).collect();
        rows.sort_unstable();
        rows.dedup();
        let baseline = crate::cold::GenreMatch::new(&ml.movies, &self.seen);
        self.cold = Some((rows, baseline));
    }

    /// On a cold-items split, `scorer`'s cold-item metrics beside popularity's and the
    /// genre-match baseline's.
    pub fn cold_report(&self, scorer: &dyn crate::eval::Scorer) -> Option<crate::cold::ColdReport> {
        use crate::cold::evaluate_cold;
        let (rows, genre_match) = self.cold.as_ref()?;
        let popularity = Popularity::new(self.n_rows, self.train_rows.iter().copied());
        let on = |s: &dyn crate::eval::Scorer| evaluate_cold(s, self.n_rows, &self.test, rows);
        Some(crate::cold::ColdReport {
            candidates: rows.len(),
            model: on(scorer),
            popularity: on(&popularity),
            genre_match: on(genre_match),
        })
    }

    /// `spec`'s split of `ml` for evaluating `model`, which must have been trained on
    /// `ml`'s catalogue (the same ids in the same order).
    pub fn for_model(model: &TwoTowerModel, ml: &Dataset, spec: &SplitSpec) -> Result<Self> {
        let (train, test) = ml.split(spec)?;
        same_catalogue(&model.catalogue, ml)?;
        SplitEval::new(ml, &train, &test)
    }

    /// The same split evaluated on a seeded random sample of `n` test interactions (all of
    /// them when there are no more than `n`).
    pub fn sample(&mut self, n: usize, seed: u64) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        if n < self.test.len() {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            self.test.shuffle(&mut rng);
            self.test.truncate(n);
        }
    }

    /// A model's metrics (both protocols) on the test side.
    pub fn model(&self, model: &TwoTowerModel) -> Metrics {
        evaluate(
            &ModelScorer::new(model),
            self.n_rows,
            &self.test,
            &self.seen,
        )
    }

    /// A model's metrics through an approximate index over its catalogue: ranks are read
    /// from the retrieved ids (see [`crate::eval::evaluate_retrieved`]).
    pub fn model_approximate(&self, model: &TwoTowerModel, ann: &AnnIndex) -> Metrics {
        struct Approx<'a>(&'a TwoTowerModel, &'a AnnIndex);
        impl crate::eval::Retriever for Approx<'_> {
            fn retrieve(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32> {
                let (q, _) = self.0.query.embed(&user.to_string());
                self.1.search(&q, k, exclude).iter().map(|n| n.id).collect()
            }
        }
        crate::eval::evaluate_retrieved(&Approx(model, ann), &self.test, &self.seen)
    }

    /// The popularity baseline's metrics on the same split.
    pub fn popularity(&self) -> Metrics {
        let pop = Popularity::new(self.n_rows, self.train_rows.iter().copied());
        evaluate(&pop, self.n_rows, &self.test, &self.seen)
    }
}

/// What [`Experiment::fit`] reports as it goes, for progress bars and logs (as JSON, an
/// object whose `event` is `epoch_start`, `batch` or `epoch_end` beside the fields).
#[derive(Debug, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FitEvent<'a> {
    /// Epoch `epoch` of `epochs` starts, over `examples` examples.
    EpochStart {
        epoch: usize,
        epochs: usize,
        examples: usize,
    },
    /// A batch of epoch `epoch` is done.
    Batch {
        epoch: usize,
        progress: BatchProgress,
    },
    /// An epoch ended (with its metrics when evaluation after each epoch was asked for).
    EpochEnd(&'a EpochStats),
    /// The ALS warm start of the id tables begins (`iterations` sweeps).
    WarmStart { iterations: usize },
    /// The warm start ended after `seconds`.
    WarmStartEnd { seconds: f64 },
}

/// The end of an ALS warm start begun at `start`: tables no longer `finite` are an error
/// (training stops there), else the end is reported.
pub(crate) fn warm_start_ended(
    report: &mut dyn FnMut(FitEvent),
    start: std::time::Instant,
    finite: bool,
) -> Result<()> {
    if !finite {
        return Err(ModelError::Diverged(
            "the ALS warm start's tables became infinite or NaN; try a larger \
             --als-regularization"
                .into(),
        ));
    }
    report(FitEvent::WarmStartEnd {
        seconds: start.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// A model with its training examples and evaluation split.
pub struct Experiment {
    pub model: TwoTowerModel,
    pub trainer: Trainer,
    pub split: SplitEval,
    pub dataset: DatasetInfo,
    pub history: Vec<EpochStats>,
    /// Whether the configuration's ALS warm start has run.
    warm_started: bool,
    /// GFLOP of the warm start's products, once it has run.
    pub warm_start_gflop: Option<f64>,
}

impl Experiment {
    /// Splits `ml` by `spec` and builds the experiment; with `validation`, a seeded
    /// fraction of the training side becomes the test side (for tuning without test data).
    ///
    /// The vocabulary takes users from all ratings (see [`Experiment::new`]). When the split
    /// partitions them (not explicit files, no validation carve), train and test hold every
    /// one of those users, so the full copy is dropped first: 600 MB on a 25M-interaction
    /// log.
    pub fn prepare(
        mut ml: Dataset,
        spec: &SplitSpec,
        validation: Option<f64>,
        config: TrainConfig,
    ) -> Result<Self> {
        let (mut train, test) = ml.split(spec)?;
        let held_out = cold_rows(&ml, spec, &test);
        let (mut given, mut test) = given_histories(spec, test);
        if validation.is_none() && !matches!(spec, SplitSpec::Files { .. }) {
            ml.ratings = Vec::new();
        }
        let mut label = spec.label();
        if let Some(f) = validation {
            (train, test) = random_split(&train, f, config.seed)
                .map_err(|e| ModelError::Config(format!("validation fraction {f}: {e}")))?;
            label = format!("{label} training side, validation fraction {f}");
            given.clear();
        }
        let mut exp = Experiment::new(&ml, train, test, config)?;
        exp.dataset.split = label;
        exp.split.mark_cold(&ml, spec, validation);
        exp.split.mark_visitors(&ml, &given)?;
        if let Some(rows) = held_out {
            let keys: Vec<u32> = rows
                .iter()
                .map(|&r| exp.model.row_keys[r as usize])
                .collect();
            let n = exp.model.candidate.vocab.len();
            exp.trainer.exclude_candidates(keys, n);
        }
        Ok(exp)
    }

    /// Trains for the configured epochs (fewer when the trainer's example budget runs
    /// out), evaluating after each epoch when `eval_every_epoch` (the metrics go into the
    /// epoch's history entry), and reports progress to `report`.
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
            self.run_epoch(&mut |progress| report(FitEvent::Batch { epoch, progress }))?;
            if eval_every_epoch {
                let m = serde_json::to_value(self.evaluate())
                    .map_err(|e| ModelError::Config(format!("metrics as JSON: {e}")))?;
                if let Some(last) = self.history.last_mut() {
                    last.metrics = Some(m);
                }
            }
            if let Some(last) = self.history.last() {
                report(FitEvent::EpochEnd(last));
            }
        }
        self.trainer.budget.check_stopped()
    }

    /// Builds the vocabularies (users from all ratings and both sides of the split, as the
    /// tutorial does from the whole ratings set), the model and the examples.
    pub fn new(
        ml: &Dataset,
        train: Vec<Interaction>,
        test: Vec<Interaction>,
        config: TrainConfig,
    ) -> Result<Self> {
        // Distinct ids first: one string per user, not one per interaction.
        let distinct: std::collections::HashSet<u32> = ml
            .ratings
            .iter()
            .chain(&train)
            .chain(&test)
            .map(|r| r.user)
            .collect();
        let users = Vocabulary::from_tokens(distinct.iter().map(|u| u.to_string()));
        let catalogue = Catalogue::from_movies(&ml.movies);
        let mut model = TwoTowerModel::new(config, users, catalogue)?;
        let split = SplitEval::new(ml, &train, &test)?;
        let mut examples = Vec::with_capacity(train.len());
        let mut triples = Vec::with_capacity(train.len());
        let user_index: HashMap<u32, u32> = distinct
            .iter()
            .map(|&u| (u, model.query.vocab.lookup(&u.to_string()) as u32))
            .collect();
        for (r, &row) in train.iter().zip(&split.train_rows) {
            let q = user_index[&r.user];
            examples.push((q, model.row_keys[row as usize]));
            triples.push((q, row, r.rating));
        }
        model.seen = SeenItems::build(model.query.vocab.len(), triples);
        let trainer = Trainer::new(&model, examples)?;
        let dataset = DatasetInfo::of(ml, &train, test.len());
        Ok(Experiment {
            model,
            trainer,
            split,
            dataset,
            history: Vec::new(),
            warm_started: false,
            warm_start_gflop: None,
        })
    }

    /// On a cold-users split, gives each held-out user the query row ALS computes from
    /// their given history against the fitted item table (their fold-in: no retraining, no
    /// use of their test interactions); their rows were never trained.
    fn fold_in_visitors(&mut self, als: &crate::als::Als) -> Result<()> {
        let Some(visitors) = &self.split.visitors else {
            return Ok(());
        };
        let m = &mut self.model;
        let (users, histories): (Vec<u32>, Vec<Vec<u32>>) = visitors
            .rows
            .iter()
            .map(|(&u, rows)| {
                let keys = rows.iter().map(|&r| m.row_keys[r as usize]).collect();
                (m.query.vocab.lookup(&u.to_string()) as u32, keys)
            })
            .unzip();
        let vectors = als.fold_in(self.trainer.examples(), m.candidate.embedding(), &histories)?;
        let table = m.query.embedding_mut();
        for (&u, v) in users.iter().zip(vectors) {
            table.row_mut(u as usize).copy_from_slice(&v);
        }
        Ok(())
    }

    /// The ALS warm start of the configuration, once: both id tables fitted to the training
    /// pairs (stopping between sweeps when the trainer's stop flag is raised).
    fn warm_start(&mut self, report: &mut dyn FnMut(FitEvent)) -> Result<()> {
        let Some(als) = self.model.config.warm_start.filter(|_| !self.warm_started) else {
            return Ok(());
        };
        let start = std::time::Instant::now();
        report(FitEvent::WarmStart {
            iterations: als.iterations,
        });
        let stop = self.trainer.budget.stop_flag();
        let stop = || stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed));
        let (q, c) = (&mut self.model.query, &mut self.model.candidate);
        let used = als.fit(
            self.trainer.examples(),
            q.embedding_mut(),
            c.embedding_mut(),
            &stop,
        )?;
        let (users, items) = (q.embedding_mut(), c.embedding_mut());
        self.warm_start_gflop = Some(used.gflop(
            self.trainer.examples().len(),
            users.rows,
            items.rows,
            users.dim,
        ));
        // The settings as used: a coarse part's weight chosen on held-out pairs.
        self.model.config.warm_start = Some(used);
        self.warm_started = true;
        if self.trainer.budget.stop_requested() {
            return Err(ModelError::Interrupted);
        }
        self.fold_in_visitors(&used)?;
        let finite = self.model.query.is_finite() && self.model.candidate.is_finite();
        warm_start_ended(report, start, finite)
    }

    /// One epoch; its statistics are appended to the history.
    ///
    /// A loss or weight that is no longer finite ends training with an error naming the
    /// epoch and the learning rate, so a diverged model is never evaluated or saved.
    pub fn run_epoch(
        &mut self,
        on_batch: &mut dyn FnMut(BatchProgress),
    ) -> Result<&mut EpochStats> {
        let stats = self.trainer.run_epoch(&mut self.model, on_batch);
        let m = &self.model;
        crate::trainer::check_converging(
            stats.epoch,
            stats.loss,
            stats.mean_loss,
            m.query.is_finite() && m.candidate.is_finite(),
            m.config.optimizer.learning_rate(),
        )?;
        self.history.push(stats);
        Ok(self.history.last_mut().expect("just pushed"))
    }

    /// The model's metrics on the test set.
    pub fn evaluate(&self) -> Metrics {
        self.split.model(&self.model)
    }

    /// The popularity baseline's metrics on the same split.
    pub fn evaluate_popularity(&self) -> Metrics {
        self.split.popularity()
    }
}
