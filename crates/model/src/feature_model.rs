//! A two-tower model whose towers read features, as a [`TowersSpec`] describes them: the
//! query tower sees the user (id, age, gender, occupation, zip), the interaction's time and
//! the user's history strictly before it; the candidate tower sees the item (id, title,
//! genres, year). Each training example is its own query when the spec reads the time or
//! the history, so batches are not deduplicated by user; candidates are (the in-batch
//! softmax with multiplicities, as for id towers).
//!
//! The L2 penalty applies to the towers' outputs (for id towers: the id model's penalty on
//! the rows a batch touches); with `normalize = true` both outputs are scaled to unit
//! length before the dot product (then a temperature below 1 sharpens the softmax). [`FeatureModel::scorer`] evaluates with a query per test interaction.

use std::collections::HashMap;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use twotower_data::feature_table::FeatureTable;
use twotower_data::{Dataset, Interaction, Movie};

use crate::config::{Negatives, TrainConfig};
use crate::feature_files::FeatureColumns;
use crate::features::{Column, FeatureTower, Key};
use crate::loss::{InBatchSoftmax, SoftmaxBatch};
use crate::nn::{
    l2_normalize, l2_normalize_backward, Encoder, FeatureBatch, SparseGrad, TowerGrads,
};
use crate::optimizer::TowerOptimizer;
use crate::query_data::{Query, QueryData};
use crate::spec::{Columns, FeatureSpec, HistoryFrom, TowersSpec};
use crate::towers::{year_of, Catalogue};
use crate::trainer::{add_l2, exclude, logq_bias, Budget, EpochStats};
use crate::{ModelError, Result};

/// The columns `ml` offers: the users' features where it has them, genres and years where
/// its catalogue has them, the time where its interactions have one.
fn columns_of(ml: &Dataset) -> Columns {
    let mut c = Columns::movielens_100k();
    if ml.users.is_empty() {
        c.query.retain(|(n, _)| n == "user_id");
    }
    if ml.movies.iter().all(|m| m.genres.is_empty()) {
        c.candidate.retain(|(n, _)| n != "genres");
    }
    if ml.movies.iter().all(|m| year_of(&m.title).is_none()) {
        c.candidate.retain(|(n, _)| n != "year");
    }
    c.time = ml.format != (twotower_data::Format::Log { has_time: false });
    c
}

/// `key` of catalogue item `m`, whose `--item-features` columns are `features` (an item
/// has no time or history: none).
pub fn item_value(m: &Movie, features: &FeatureColumns, key: Key<'_>) -> Column {
    let Key::Column(column) = key else {
        return Column::Number(None);
    };
    if column == "item_id" {
        return Column::Str(m.id.to_string());
    }
    // A declared `--item-features` column is that column, whatever its name.
    if let Some(v) = features.value(m.id, column) {
        return v;
    }
    match column {
        "title" => Column::Text(m.title.clone()),
        "genres" => Column::Strs(m.genres.clone()),
        "year" => Column::Number(year_of(&m.title).map(|y| y as f32)),
        _ => Column::Number(None),
    }
}

/// The feature files of a generic log, typed by the spec (empty when none).
#[derive(Debug, Clone, Default)]
pub struct FeatureFiles {
    pub users: FeatureColumns,
    pub items: FeatureColumns,
}

impl FeatureFiles {
    /// Types `--user-features` and `--item-features` tables as `spec` declares; a table
    /// without declared columns, or declared columns without a table, is an error.
    pub fn typed(
        spec: &TowersSpec,
        users: Option<&FeatureTable>,
        items: Option<&FeatureTable>,
    ) -> Result<Self> {
        let side = |user: bool, table: Option<&FeatureTable>| {
            let (flag, section) = if user {
                ("--user-features", "[user_columns]")
            } else {
                ("--item-features", "[item_columns]")
            };
            match (table, spec.declared(user).is_empty()) {
                (None, true) => Ok(FeatureColumns::default()),
                (Some(t), false) => FeatureColumns::from_table(spec, user, t),
                (Some(t), true) => Err(ModelError::Spec(format!(
                    "{flag} {}: declare the columns to read, with their kinds, in the spec's \
                     {section}",
                    t.path.display()
                ))),
                (None, false) => Err(spec.declared_error(
                    user,
                    format!("{section} declares columns, but no {flag} file was given"),
                )),
            }
        };
        Ok(FeatureFiles {
            users: side(true, users)?,
            items: side(false, items)?,
        })
    }
}

/// A trained (or new) feature model over a catalogue.
#[derive(Debug, Clone)]
pub struct FeatureModel {
    pub config: TrainConfig,
    pub spec: TowersSpec,
    pub query: FeatureTower,
    pub candidate: FeatureTower,
    pub catalogue: Catalogue,
    pub(crate) movies: Vec<Movie>,
    /// The items' columns from `--item-features`.
    pub item_features: FeatureColumns,
    pub data: QueryData,
}

/// Training a [`FeatureModel`]: examples `(user, catalogue row, time)` and optimizer state.
pub struct FeatureTrainer {
    pub(crate) examples: Vec<(u32, u32, i64)>,
    rng: rand_chacha::ChaCha8Rng,
    query_opt: TowerOptimizer,
    cand_opt: TowerOptimizer,
    /// −log of each catalogue row's share of the positives, with the logQ correction, and
    /// `trainer::EXCLUDED` for rows left out of training (empty: no bias).
    logq_bias: Vec<f32>,
    /// Histories that read the candidate tower's item table.
    ties: Vec<Tie>,
    epoch: usize,
    /// The example cap and stop flag.
    pub budget: Budget,
}

impl FeatureModel {
    /// Fits the features on `ml`'s catalogue and the training interactions `train`, and
    /// returns the model with its trainer.
    pub fn new(
        config: TrainConfig,
        spec: TowersSpec,
        ml: &Dataset,
        train: &[Interaction],
        files: FeatureFiles,
    ) -> Result<(Self, FeatureTrainer)> {
        Self::new_without(config, spec, ml, train, files, &[])
    }

    /// [`FeatureModel::new`] for a catalogue whose rows `held_out` training must never
    /// see (a cold-items split): the candidate tower's preprocessing (vocabularies, text
    /// tokens, statistics) is fitted on the other rows, so a held-out item's id is out of
    /// vocabulary, and the softmax leaves those rows out.
    pub fn new_without(
        config: TrainConfig,
        spec: TowersSpec,
        ml: &Dataset,
        train: &[Interaction],
        files: FeatureFiles,
        held_out: &[u32],
    ) -> Result<(Self, FeatureTrainer)> {
        spec.check(&spec.with_declared(columns_of(ml))?)?;
        let config = config.for_catalogue(ml.movies.len());
        config.validate()?;
        let row_of = ml.row_of_id();
        let examples: Vec<(u32, u32, i64)> = train
            .iter()
            .map(|r| {
                row_of
                    .get(&r.item)
                    .map(|&row| (r.user, row as u32, r.timestamp))
                    .ok_or_else(|| {
                        ModelError::Config(format!("movie id {} is not in the catalogue", r.item))
                    })
            })
            .collect::<Result<_>>()?;
        if examples.is_empty() {
            return Err(ModelError::Config("no training examples".into()));
        }
        let mut data = QueryData::new(&ml.users, &examples);
        data.features = files.users;
        let item_features = files.items;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
        let movies = ml.movies.clone();
        let n = movies.len();
        let mut cold = vec![false; n];
        for &r in held_out {
            if let Some(c) = cold.get_mut(r as usize) {
                *c = true;
            }
        }
        let known: Vec<usize> = (0..n).filter(|&r| !cold[r]).collect();
        let candidate = FeatureTower::fit(
            &spec.candidate,
            known.len(),
            &|i, c| item_value(&movies[known[i]], &item_features, c),
            n,
            &mut rng,
        )?;
        let query = FeatureTower::fit(
            &spec.query,
            examples.len(),
            &|i, c| data.value(&Query::of_example(&examples[i]), c),
            n,
            &mut rng,
        )?;
        let mut model =
            FeatureModel::from_parts(config, spec, query, candidate, movies, item_features, data);
        let ties = Tie::all(&mut model)?;
        let mut logit_bias =
            if model.config.logq_correction && model.config.negatives != Negatives::Full {
                logq_bias(
                    examples.iter().map(|&(_, row, _)| row),
                    n,
                    model.config.logq_weight,
                )
            } else {
                Vec::new()
            };
        if !held_out.is_empty() {
            exclude(&mut logit_bias, held_out.iter().copied(), n);
        }
        let config = &model.config;
        let trainer = FeatureTrainer {
            ties,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_5eed),
            query_opt: TowerOptimizer::new(config.optimizer, &model.query.tower),
            cand_opt: TowerOptimizer::new(config.optimizer, &model.candidate.tower),
            logq_bias: logit_bias,
            examples,
            epoch: 0,
            budget: Budget::default(),
        };
        Ok((model, trainer))
    }

    /// A model from its parts (as a model folder holds them); the catalogue is `movies`.
    pub fn from_parts(
        config: TrainConfig,
        spec: TowersSpec,
        query: FeatureTower,
        candidate: FeatureTower,
        movies: Vec<Movie>,
        item_features: FeatureColumns,
        data: QueryData,
    ) -> Self {
        FeatureModel {
            catalogue: Catalogue::from_movies(&movies),
            config,
            spec,
            query,
            candidate,
            movies,
            item_features,
            data,
        }
    }

    /// The candidate vectors of every catalogue row, row-major.
    pub fn candidate_vectors(&self) -> Result<Vec<f32>> {
        let n = self.movies.len();
        let v = self.candidate.vectors(n, &|r, c| {
            item_value(&self.movies[r], &self.item_features, c)
        })?;
        Ok(self.normalized(v))
    }

    /// `v` with unit-length rows when the spec asks for normalised outputs.
    fn normalized(&self, mut v: Vec<f32>) -> Vec<f32> {
        if self.spec.normalize {
            l2_normalize(&mut v, self.candidate.tower.output_width());
        }
        v
    }

    /// Query vectors of `queries`, row-major.
    pub fn query_vectors(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
        let v = self
            .query
            .vectors(queries.len(), &|i, c| self.data.value(&queries[i], c))?;
        Ok(self.normalized(v))
    }

    /// True when a query depends on more than the user: on the time, or on the history
    /// before it.
    pub fn per_interaction(&self) -> bool {
        self.spec.query.features.iter().any(|f| {
            matches!(
                f.get_ref(),
                FeatureSpec::Timestamp { .. }
                    | FeatureSpec::History {
                        from: HistoryFrom::Past,
                        ..
                    }
            )
        })
    }

    /// True when each training example is its own query: it is per interaction, or its
    /// history leaves out the example's own item.
    fn per_example(&self) -> bool {
        self.per_interaction()
            || self
                .spec
                .query
                .features
                .iter()
                .any(|f| matches!(f.get_ref(), FeatureSpec::History { .. }))
    }
}

impl FeatureTrainer {
    /// Number of training examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True when there are no examples (never, after [`FeatureModel::new`]).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Stops training after `max_examples` examples in all (`None`: no cap); the epoch
    /// that reaches it is cut short.
    pub fn set_example_budget(&mut self, max_examples: Option<usize>) {
        self.budget.set_cap(max_examples);
    }

    /// Whether no more batches will run (the cap is used up or training was stopped).
    pub fn budget_spent(&self) -> bool {
        self.budget.spent()
    }

    /// One pass over the shuffled examples (up to the example budget).
    pub fn run_epoch(&mut self, model: &mut FeatureModel) -> Result<EpochStats> {
        let start = Instant::now();
        self.epoch += 1;
        let mut examples = std::mem::take(&mut self.examples);
        examples.shuffle(&mut self.rng);
        let cfg = model.config.clone();
        let softmax = InBatchSoftmax {
            temperature: model.spec.temperature.unwrap_or(cfg.temperature),
            remove_accidental_hits: cfg.remove_accidental_hits,
        };
        let (mut total, mut done) = (0.0f64, 0usize);
        let (mut flops, mut product_seconds) = (0.0f64, 0.0f64);
        let mut result = Ok(());
        let schedule = crate::trainer::Schedule::new(&cfg, self.epoch, examples.len());
        for batch in examples.chunks(cfg.batch_size) {
            let Some(batch) = self.budget.take(batch) else {
                break;
            };
            if let Some(lr) = schedule.rate(done) {
                self.query_opt.set_learning_rate(lr);
                self.cand_opt.set_learning_rate(lr);
            }
            match self.step(model, batch, &softmax) {
                Ok((loss, (f, s))) => {
                    total += loss;
                    flops += f;
                    product_seconds += s;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            done += batch.len();
        }
        self.examples = examples;
        result?;
        let seconds = start.elapsed().as_secs_f64();
        crate::trainer::check_converging(
            self.epoch,
            total,
            total / done.max(1) as f64,
            model.query.tower.is_finite() && model.candidate.tower.is_finite(),
            cfg.optimizer.learning_rate(),
        )?;
        Ok(EpochStats {
            epoch: self.epoch,
            loss: total,
            mean_loss: total / done.max(1) as f64,
            seconds,
            examples_per_second: done as f64 / seconds.max(1e-9),
            product_seconds,
            product_gflops_per_second: flops / product_seconds.max(1e-12) / 1e9,
            metrics: None,
        })
    }

    /// Loss of one batch; both towers take an optimizer step (a shared table once, with
    /// the gradient of both its readers).
    fn step(
        &mut self,
        model: &mut FeatureModel,
        batch: &[(u32, u32, i64)],
        softmax: &InBatchSoftmax,
    ) -> Result<(f64, (f64, f64))> {
        let (loss, mut q_grads, mut c_grads, products) =
            Self::gradients(model, batch, softmax, &self.logq_bias)?;
        for tie in &self.ties {
            tie.merge(&mut q_grads, &mut c_grads);
        }
        self.query_opt.step(&mut model.query.tower, &q_grads);
        self.cand_opt.step(&mut model.candidate.tower, &c_grads);
        for tie in &self.ties {
            tie.mirror(model, &c_grads);
        }
        Ok((loss, products))
    }

    /// Loss of one batch and both towers' gradients (each table's own), and the FLOPs and
    /// seconds of the loss's matrix products.
    fn gradients(
        model: &FeatureModel,
        batch: &[(u32, u32, i64)],
        softmax: &InBatchSoftmax,
        logq_bias: &[f32],
    ) -> Result<(f64, TowerGrads, TowerGrads, (f64, f64))> {
        // Query slots: one per example when queries differ, else one per user (the
        // softmax shares a user's log-partition across their rows, as for id towers).
        let per_example = model.per_example();
        let mut qslot: HashMap<u32, u32> = HashMap::new();
        let mut queries: Vec<Query> = Vec::new();
        let mut query_counts: Vec<u32> = Vec::new();
        // Candidate columns: the batch's distinct positives (or the whole catalogue).
        let mut slot: HashMap<u32, u32> = HashMap::new();
        let mut cols: Vec<u32> = Vec::new();
        let mut counts: Vec<f32> = Vec::new();
        let full = model.config.negatives == Negatives::Full;
        if full {
            cols = (0..model.movies.len() as u32).collect();
            counts = vec![1.0; cols.len()];
        }
        let rows: Vec<(u32, u32)> = batch
            .iter()
            .map(|example| {
                let &(user, row, _) = example;
                let q = if per_example {
                    queries.push(Query::of_example(example));
                    query_counts.push(1);
                    (queries.len() - 1) as u32
                } else {
                    let q = *qslot.entry(user).or_insert_with(|| {
                        queries.push(Query::of_example(example));
                        query_counts.push(0);
                        (queries.len() - 1) as u32
                    });
                    query_counts[q as usize] += 1;
                    q
                };
                let s = if full {
                    row
                } else {
                    *slot.entry(row).or_insert_with(|| {
                        cols.push(row);
                        counts.push(0.0);
                        (cols.len() - 1) as u32
                    })
                };
                if !full {
                    counts[s as usize] += 1.0;
                }
                (q, s)
            })
            .collect();
        let n = queries.len();
        let data = &model.data;
        let (movies, features) = (&model.movies, &model.item_features);
        let q_in = model.query.encode(n, &|i, c| data.value(&queries[i], c));
        let c_in = model.candidate.encode(cols.len(), &|i, c| {
            item_value(&movies[cols[i] as usize], features, c)
        });
        let q_pass = model.query.tower.forward(&q_in, n)?;
        let c_pass = model.candidate.tower.forward(&c_in, cols.len())?;
        let dim = model.query.tower.output_width();
        // Normalised outputs (when the spec asks): the softmax sees unit rows.
        let (mut queries, mut candidates) = (q_pass.output().to_vec(), c_pass.output().to_vec());
        let norms = model.spec.normalize.then(|| {
            (
                l2_normalize(&mut queries, dim),
                l2_normalize(&mut candidates, dim),
            )
        });
        let bias: Vec<f32> = if logq_bias.is_empty() {
            Vec::new()
        } else {
            cols.iter().map(|&c| logq_bias[c as usize]).collect()
        };
        let mut out = softmax.forward_backward(&SoftmaxBatch {
            queries: &queries,
            candidates: &candidates,
            dim,
            rows: &rows,
            multiplicity: &counts,
            bias: &bias,
        });
        let mut loss = out.loss;
        let l2 = model.config.l2;
        if l2 > 0.0 {
            // The penalty on the towers' outputs, each counted as often as it is a query or
            // a positive in the batch: for id towers, the id model's penalty on touched rows.
            let mut positives = vec![0u32; cols.len()];
            for &(_, c) in &rows {
                positives[c as usize] += 1;
            }
            loss += add_l2(&mut out.grad_queries, &queries, &query_counts, l2);
            loss += add_l2(&mut out.grad_candidates, &candidates, &positives, l2);
        }
        if let Some((qn, cn)) = &norms {
            l2_normalize_backward(&mut out.grad_queries, &queries, qn, dim);
            l2_normalize_backward(&mut out.grad_candidates, &candidates, cn, dim);
        }
        let q_grads = model.query.tower.backward(&q_in, &q_pass, out.grad_queries);
        let c_grads = model
            .candidate
            .tower
            .backward(&c_in, &c_pass, out.grad_candidates);
        Ok((
            loss,
            q_grads,
            c_grads,
            (out.product_flops, out.product_seconds),
        ))
    }
}

/// A history that reads the candidate tower's `item_id` table (`share_candidate_table`).
/// The query tower keeps its own copy of that table (the model folder saves it like any
/// table, so a loaded model needs nothing more), kept equal to the candidate's: each step
/// moves the history's gradient onto the candidate table's rows, updates that table once,
/// and copies the rows it changed back into the query's copy.
#[derive(Debug, Clone)]
struct Tie {
    /// The history's table: its encoder index and position among the query's tables.
    query: (usize, usize),
    /// The candidate's `item_id` table, likewise.
    candidate: (usize, usize),
    /// The candidate table's row of each catalogue row (the history's row).
    row_of: Vec<u32>,
    /// The catalogue rows that read each candidate row.
    readers: HashMap<u32, Vec<u32>>,
}

impl Tie {
    /// The ties `spec` asks for in `model` (whose towers are fitted); each query copy is
    /// set equal to the candidate table.
    fn all(model: &mut FeatureModel) -> Result<Vec<Tie>> {
        let mut ties = Vec::new();
        let shared: Vec<usize> = (model.spec.query.features.iter().enumerate())
            .filter(|(_, f)| {
                matches!(
                    f.get_ref(),
                    FeatureSpec::History {
                        share_candidate_table: true,
                        ..
                    }
                )
            })
            .map(|(k, _)| k)
            .collect();
        for k in shared {
            let missing = || ModelError::Config("share_candidate_table: no table to share".into());
            let query = model.query.table_of_feature(k).ok_or_else(missing)?;
            let (item, _) = model.spec.candidate_item_id().ok_or_else(missing)?;
            let candidate = model.candidate.table_of_feature(item).ok_or_else(missing)?;
            let n = model.movies.len();
            let (movies, features) = (&model.movies, &model.item_features);
            let encoded = model
                .candidate
                .encode(n, &|r, c| item_value(&movies[r], features, c));
            let Some(FeatureBatch::Ids(ids)) = encoded.get(candidate.0) else {
                return Err(missing());
            };
            let row_of = ids.ids.clone();
            let mut readers: HashMap<u32, Vec<u32>> = HashMap::new();
            for (r, &c) in row_of.iter().enumerate() {
                readers.entry(c).or_default().push(r as u32);
            }
            let tie = Tie {
                query,
                candidate,
                row_of,
                readers,
            };
            let all: Vec<u32> = tie.readers.keys().copied().collect();
            tie.copy_rows(model, &all);
            ties.push(tie);
        }
        Ok(ties)
    }

    /// Moves the history table's gradient onto the candidate table's (rows mapped, rows
    /// read by both summed); the history's own gradient is left empty.
    fn merge(&self, q: &mut TowerGrads, c: &mut TowerGrads) {
        let (Some(from), Some(to)) = (
            q.sparse.get_mut(self.query.1),
            c.sparse.get_mut(self.candidate.1),
        ) else {
            return;
        };
        let from = std::mem::replace(
            from,
            SparseGrad {
                rows: Vec::new(),
                grads: Vec::new(),
            },
        );
        let dim = if from.rows.is_empty() {
            return;
        } else {
            from.grads.len() / from.rows.len()
        };
        let mut slot: HashMap<u32, usize> =
            to.rows.iter().enumerate().map(|(i, &r)| (r, i)).collect();
        for (k, &r) in from.rows.iter().enumerate() {
            let target = self.row_of[r as usize];
            let s = *slot.entry(target).or_insert_with(|| {
                to.rows.push(target);
                to.grads.extend(std::iter::repeat_n(0.0, dim));
                to.rows.len() - 1
            });
            for (a, g) in to.grads[s * dim..(s + 1) * dim]
                .iter_mut()
                .zip(&from.grads[k * dim..(k + 1) * dim])
            {
                *a += g;
            }
        }
    }

    /// Copies the candidate rows the last step changed into the query's copy.
    fn mirror(&self, model: &mut FeatureModel, c: &TowerGrads) {
        if let Some(g) = c.sparse.get(self.candidate.1) {
            self.copy_rows(model, &g.rows);
        }
    }

    /// Copies candidate rows `rows` to every query row that reads them.
    fn copy_rows(&self, model: &mut FeatureModel, rows: &[u32]) {
        let (Some(Encoder::Bag(from)), Some(Encoder::Bag(to))) = (
            model.candidate.tower.encoders.get(self.candidate.0),
            model.query.tower.encoders.get_mut(self.query.0),
        ) else {
            return;
        };
        let dim = from.table.dim;
        for r in rows {
            let source = from.table.row(*r as usize);
            for &q in self.readers.get(r).map_or(&[][..], Vec::as_slice) {
                let q = q as usize;
                to.table.data[q * dim..(q + 1) * dim].copy_from_slice(source);
            }
        }
    }
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod spec_sizes;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use twotower_data::feature_table::Numbering;
    use twotower_data::Format;
    use twotower_data::User;

    pub(crate) fn tiny() -> Dataset {
        let genres = ["Action", "Drama", "Comedy"];
        let movies: Vec<Movie> = (1..=12)
            .map(|i| Movie {
                id: i,
                title: format!("Film {i} ({})", 1980 + i),
                release_date: String::new(),
                genres: vec![genres[(i % 3) as usize].to_string()],
            })
            .collect();
        let occupations = ["a", "b", "c"];
        let users: Vec<User> = (1..=9)
            .map(|u| User {
                id: u,
                age: 20 + u,
                gender: if u % 2 == 0 { "M" } else { "F" }.into(),
                occupation: occupations[(u % 3) as usize].into(),
                zip: "00000".into(),
            })
            .collect();
        // Each user watches the films of "their" genre (user % 3), in order.
        let mut ratings = Vec::new();
        for u in 1..=9u32 {
            for (k, m) in (1..=12u32).filter(|m| m % 3 == u % 3).enumerate() {
                ratings.push(Interaction {
                    user: u,
                    item: m,
                    rating: 4.0,
                    timestamp: 1000 + 10 * k as i64 + u as i64,
                });
            }
        }
        Dataset {
            dir: "tiny".into(),
            format: Format::Ml100k,
            ratings,
            movies,
            users,
        }
    }

    pub(crate) const SPEC: &str = r#"
[query]
features = [
  { kind = "id", column = "user_id", dim = 8 },
  { kind = "categorical", column = "occupation", dim = 4 },
]
layers = [16, 8]
[candidate]
features = [
  { kind = "id", column = "item_id", dim = 8 },
  { kind = "multi", column = "genres", dim = 4 },
  { kind = "text", column = "title", dim = 4 },
]
layers = [8]
"#;

    /// A history sharing the candidate tower's item table: the query's copy stays equal to
    /// that table through training, and the table's gradient — both towers' — matches
    /// finite differences of the batch loss when a row moves in both towers at once.
    #[test]
    fn a_shared_item_table_takes_both_towers_gradients() {
        let ml = tiny();
        let mut cfg = TrainConfig::preset("default").unwrap();
        cfg.batch_size = 8;
        cfg.l2 = 0.05;
        let spec = TowersSpec::parse(
            "t.toml",
            r#"
[query]
features = [
  { kind = "id", column = "user_id", dim = 4 },
  { kind = "history", last = 3, dim = 4, share_candidate_table = true },
]
[candidate]
features = [
  { kind = "id", column = "item_id", dim = 4 },
  { kind = "multi", column = "genres", dim = 4 },
]
"#,
        )
        .unwrap();
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec, &ml, &ml.ratings, FeatureFiles::default()).unwrap();
        trainer.run_epoch(&mut model).unwrap();
        let tie = trainer.ties[0].clone();
        let table = |m: &FeatureModel, query: bool| {
            let (tower, at) = if query {
                (&m.query.tower, tie.query.0)
            } else {
                (&m.candidate.tower, tie.candidate.0)
            };
            let Some(Encoder::Bag(b)) = tower.encoders.get(at) else {
                panic!("no table at {at}");
            };
            b.table.clone()
        };
        let (copy, shared) = (table(&model, true), table(&model, false));
        for (r, &c) in tie.row_of.iter().enumerate() {
            assert_eq!(copy.row(r), shared.row(c as usize), "catalogue row {r}");
        }
        // The trained table moved from its initialisation, so the copy followed updates.
        let softmax = InBatchSoftmax {
            temperature: 1.0,
            remove_accidental_hits: false,
        };
        let batch: Vec<(u32, u32, i64)> = trainer.examples[..8].to_vec();
        let (_, mut q, mut c, _) =
            FeatureTrainer::gradients(&model, &batch, &softmax, &[]).unwrap();
        let read: Vec<u32> = q.sparse[tie.query.1]
            .rows
            .iter()
            .map(|&r| tie.row_of[r as usize])
            .collect();
        assert!(!read.is_empty(), "the batch reads some history");
        tie.merge(&mut q, &mut c);
        assert!(q.sparse[tie.query.1].rows.is_empty());
        let g = &c.sparse[tie.candidate.1];
        let dim = shared.dim;
        let loss = |m: &FeatureModel| {
            FeatureTrainer::gradients(m, &batch, &softmax, &[])
                .unwrap()
                .0
        };
        let h = 1e-2f32;
        for &row in &read {
            let k = g.rows.iter().position(|&r| r == row).unwrap();
            for d in 0..dim {
                let moved = |by: f32| {
                    let mut m = model.clone();
                    if let Some(Encoder::Bag(b)) =
                        m.candidate.tower.encoders.get_mut(tie.candidate.0)
                    {
                        b.table.data[row as usize * dim + d] += by;
                    }
                    tie.copy_rows(&mut m, &[row]);
                    loss(&m)
                };
                let numeric = (moved(h) - moved(-h)) / (2.0 * h as f64);
                let analytic = g.grads[k * dim + d] as f64;
                assert!(
                    (analytic - numeric).abs() < 1e-2 * (1.0 + numeric.abs()),
                    "row {row}, column {d}: analytic {analytic}, numeric {numeric}"
                );
            }
        }
    }

    /// A model with every feature kind of the tiny data (its history sharing the item
    /// table), trained for a few epochs.
    pub(crate) fn trained() -> (FeatureModel, FeatureTrainer) {
        let ml = tiny();
        let mut cfg = TrainConfig::preset("default").unwrap();
        cfg.batch_size = 8;
        let spec = SPEC.replace(
            "{ kind = \"categorical\", column = \"occupation\", dim = 4 },",
            "{ kind = \"categorical\", column = \"occupation\", dim = 4 },\n  \
             { kind = \"history\", last = 5, dim = 8, share_candidate_table = true },\n  \
             { kind = \"timestamp\", buckets = 7, dim = 2 },\n  \
             { kind = \"numeric\", column = \"age\", buckets = 3, dim = 2 },",
        );
        let spec = TowersSpec::parse("t.toml", &spec).unwrap();
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec, &ml, &ml.ratings, FeatureFiles::default()).unwrap();
        for _ in 0..3 {
            trainer.run_epoch(&mut model).unwrap();
        }
        (model, trainer)
    }

    #[test]
    fn normalised_towers_train_and_give_unit_vectors() {
        let ml = tiny();
        let mut cfg = TrainConfig::preset("default").unwrap();
        cfg.batch_size = 8;
        cfg.l2 = 0.0;
        let spec = format!("normalize = true\ntemperature = 0.1\n{SPEC}");
        let spec = TowersSpec::parse("t.toml", &spec).unwrap();
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec, &ml, &ml.ratings, FeatureFiles::default()).unwrap();
        let first = trainer.run_epoch(&mut model).unwrap().mean_loss;
        let mut last = first;
        for _ in 0..30 {
            last = trainer.run_epoch(&mut model).unwrap().mean_loss;
        }
        assert!(last < 0.8 * first, "mean loss {first} → {last}");
        let c = model.candidate_vectors().unwrap();
        let d = model.candidate.tower.output_width();
        for row in c.chunks(d) {
            let n: f32 = row.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-4, "{n}");
        }
    }

    /// The tiny data's genre given again as a declared item column `shelf`, and the users'
    /// occupation as a declared user column `team`, through feature tables.
    pub(crate) fn feature_files(spec: &TowersSpec) -> FeatureFiles {
        let ml = tiny();
        let table = |columns: &[&str], rows: Vec<(u32, Vec<String>)>| FeatureTable {
            path: "t.csv".into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .into_iter()
                .map(|(id, v)| (id, (id as usize + 1, v)))
                .collect(),
            numbering: Numbering::Lines,
        };
        let items = table(
            &["shelf", "price"],
            ml.movies
                .iter()
                .map(|m| (m.id, vec![m.genres[0].clone(), format!("{}.5", m.id)]))
                .collect(),
        );
        let users = table(
            &["team"],
            ml.users
                .iter()
                .map(|u| (u.id, vec![u.occupation.clone()]))
                .collect(),
        );
        FeatureFiles::typed(spec, Some(&users), Some(&items)).unwrap()
    }

    pub(crate) const FILES_SPEC: &str = r#"
[user_columns]
team = "categorical"
[item_columns]
shelf = "categorical"
price = "number"
[query]
features = [{ kind = "categorical", column = "team", dim = 8 }]
[candidate]
features = [
  { kind = "categorical", column = "shelf", dim = 4 },
  { kind = "numeric", column = "price", buckets = 3, dim = 3 },
]
"#;

    /// Every tiny user's top 4 are the 4 films of their genre.
    fn assert_each_user_prefers_their_genre(model: &FeatureModel) {
        let queries: Vec<Query> = (1..=9).map(|u| Query::at(u, 10_000)).collect();
        let q = model.query_vectors(&queries).unwrap();
        let c = model.candidate_vectors().unwrap();
        let d = model.candidate.tower.output_width();
        for (k, u) in (1..=9u32).enumerate() {
            let mut s: Vec<(f32, u32)> = (0..12)
                .map(|r| {
                    let dot = (0..d).map(|j| q[k * d + j] * c[r * d + j]).sum();
                    (dot, r as u32 + 1)
                })
                .collect();
            s.sort_by(|a, b| b.0.total_cmp(&a.0));
            assert!(
                s[..4].iter().all(|&(_, m)| m % 3 == u % 3),
                "user {u}: {:?}",
                &s[..4]
            );
        }
    }

    /// A model of `spec` with feature `files`, trained for a few epochs on the tiny data.
    pub(crate) fn trained_with(spec: &TowersSpec, files: FeatureFiles) -> FeatureModel {
        let ml = tiny();
        let mut cfg = TrainConfig::preset("default").unwrap();
        cfg.batch_size = 8;
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec.clone(), &ml, &ml.ratings, files).unwrap();
        for _ in 0..3 {
            trainer.run_epoch(&mut model).unwrap();
        }
        model
    }

    /// A generic log's `--user-features` column named `zip` and `--item-features` column
    /// named `genres` are those columns (not MovieLens's empty fields): learned, saved and
    /// loaded back.
    #[test]
    fn declared_columns_named_like_movielens_fields_are_those_columns() {
        let mut ml = tiny();
        let spec_text = r#"
[user_columns]
zip = "categorical"
[item_columns]
genres = "categorical"
[query]
features = [{ kind = "categorical", column = "zip", dim = 8 }]
[candidate]
features = [{ kind = "categorical", column = "genres", dim = 8 }]
"#;
        let spec = TowersSpec::parse("t.toml", spec_text).unwrap();
        let table = |column: &str, rows: Vec<(u32, Vec<String>)>| FeatureTable {
            path: "t.csv".into(),
            columns: vec![column.to_string()],
            rows: rows
                .into_iter()
                .map(|(id, v)| (id, (id as usize + 1, v)))
                .collect(),
            numbering: Numbering::Lines,
        };
        let users = table(
            "zip",
            ml.users
                .iter()
                .map(|u| (u.id, vec![u.occupation.clone()]))
                .collect(),
        );
        let items = table(
            "genres",
            ml.movies
                .iter()
                .map(|m| (m.id, vec![m.genres[0].clone()]))
                .collect(),
        );
        let files = FeatureFiles::typed(&spec, Some(&users), Some(&items)).unwrap();
        // A generic log: no MovieLens user fields, no catalogue genres.
        ml.users.clear();
        for m in &mut ml.movies {
            m.genres.clear();
        }
        let mut cfg = TrainConfig::preset("default").unwrap();
        cfg.batch_size = 8;
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec, &ml, &ml.ratings, files).unwrap();
        for _ in 0..60 {
            trainer.run_epoch(&mut model).unwrap();
        }
        assert_each_user_prefers_their_genre(&model);
        let card = crate::feature_folder::FeatureCard::describe(
            &model,
            crate::checkpoint::DatasetInfo::default(),
            1.0,
        );
        let dir = std::env::temp_dir().join(format!("tt-declared-ml-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::feature_folder::SavedFeatureModel {
            model,
            card,
            history: Vec::new(),
            warnings: Vec::new(),
        }
        .save(&dir)
        .unwrap();
        let back = crate::feature_folder::SavedFeatureModel::load(&dir).unwrap();
        assert_each_user_prefers_their_genre(&back.model);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn declared_columns_of_feature_files_are_read_and_learned() {
        let ml = tiny();
        let mut cfg = TrainConfig::preset("default").unwrap();
        cfg.batch_size = 8;
        let spec = TowersSpec::parse("t.toml", FILES_SPEC).unwrap();
        let files = feature_files(&spec);
        assert_eq!(
            files.items.value(4, "price"),
            Some(Column::Number(Some(4.5)))
        );
        assert_eq!(
            files.items.value(99, "shelf"),
            Some(Column::Str(String::new()))
        );
        assert_eq!(files.users.value(1, "shelf"), None);
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec.clone(), &ml, &ml.ratings, files).unwrap();
        for _ in 0..60 {
            trainer.run_epoch(&mut model).unwrap();
        }
        // Users of a team watch one genre: only the files' columns can tell.
        assert_each_user_prefers_their_genre(&model);
        // The model folder's text of the columns reads back the same.
        let back = FeatureColumns::from_tsv(
            &spec,
            false,
            std::path::Path::new("i.tsv"),
            &model.item_features.to_tsv(),
        )
        .unwrap();
        assert_eq!(back, model.item_features);
        // Mistakes: a value of the wrong kind names the file's line; a missing column or
        // table, the spec's.
        let mut bad = FeatureTable {
            path: "items.csv".into(),
            columns: vec!["shelf".into(), "price".into()],
            rows: [(1, (7, vec!["a".into(), "cheap".into()]))].into(),
            numbering: Numbering::Lines,
        };
        let e = FeatureColumns::from_table(&spec, false, &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("items.csv:7") && e.contains("cheap"), "{e}");
        bad.columns[1] = "cost".into();
        let e = FeatureColumns::from_table(&spec, false, &bad)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:4:") && e.contains("\"price\""), "{e}");
        let e = FeatureFiles::typed(&spec, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:2:") && e.contains("--user-features"),
            "{e}"
        );
        let plain = TowersSpec::parse("t.toml", SPEC).unwrap();
        let e = FeatureFiles::typed(&plain, None, Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[item_columns]"), "{e}");
    }

    /// A visitor described by a training user's features and history gets exactly that
    /// user's query; unknown features and values are errors naming them.
    #[test]
    fn a_visitor_with_a_users_features_and_history_is_that_user() {
        // A history of the last items, and one of the first (the visitor's given history
        // is all the user's items: the query reads its first 3 as the user's does).
        for history in ["last = 5", "from = \"first\", last = 3, within = 6"] {
            a_visitor_is_that_user(history);
        }
    }

    fn a_visitor_is_that_user(history: &str) {
        let ml = tiny();
        let mut cfg = TrainConfig::preset("default").unwrap();
        cfg.batch_size = 8;
        let spec = TowersSpec::parse(
            "t.toml",
            &format!(
                r#"
[query]
features = [
  {{ kind = "categorical", column = "occupation", dim = 4 }},
  {{ kind = "numeric", column = "age", buckets = 3, dim = 3 }},
  {{ kind = "history", {history}, dim = 8 }},
]
[candidate]
features = [
  {{ kind = "id", column = "item_id", dim = 8 }},
  {{ kind = "multi", column = "genres", dim = 8 }},
]
"#
            ),
        )
        .unwrap();
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec, &ml, &ml.ratings, FeatureFiles::default()).unwrap();
        trainer.run_epoch(&mut model).unwrap();
        let user = &ml.users[4];
        let pairs = |p: &[(&str, String)]| -> Vec<(String, String)> {
            p.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
        };
        let given = pairs(&[
            ("occupation", user.occupation.clone()),
            ("age", user.age.to_string()),
        ]);
        let described = model.describe(&given).unwrap();
        let rows = model.data.rows_of(user.id);
        let now = model.data.latest_time() + 1;
        let as_user = model
            .query_vectors(&[Query::at(user.id, model.data.last_time(user.id) + 1)])
            .unwrap();
        let as_visitor = model
            .query_vectors(&[Query::visitor(&rows, &described, now)])
            .unwrap();
        assert_eq!(as_user, as_visitor, "{history}");
        let bare = model
            .query_vectors(&[Query::visitor(&rows, &[], now)])
            .unwrap();
        assert_ne!(bare, as_visitor, "the features move the query");
        for (bad, needle) in [
            (pairs(&[("shoe", "9".into())]), "shoe"),
            (pairs(&[("user_id", "3".into())]), "user_id"),
            (pairs(&[("occupation", "astronaut".into())]), "astronaut"),
            (pairs(&[("age", "old".into())]), "not a number"),
            (
                pairs(&[("age", "3".into()), ("age", "4".into())]),
                "given twice",
            ),
        ] {
            let e = model.describe(&bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn a_feature_model_learns_what_its_features_say() {
        let ml = tiny();
        let mut cfg = TrainConfig::preset("default").unwrap();
        cfg.batch_size = 8;
        cfg.embedding_dim = 8;
        // With the history, each example is its own query.
        let with_history = SPEC.replace(
            "{ kind = \"categorical\", column = \"occupation\", dim = 4 },",
            "{ kind = \"history\", last = 5, dim = 8 },",
        );
        let spec = TowersSpec::parse("t.toml", &with_history).unwrap();
        let (mut model, mut trainer) =
            FeatureModel::new(cfg.clone(), spec, &ml, &ml.ratings, FeatureFiles::default())
                .unwrap();
        assert!(model.per_interaction());
        let first = trainer.run_epoch(&mut model).unwrap().mean_loss;
        let mut last = first;
        for _ in 0..30 {
            last = trainer.run_epoch(&mut model).unwrap().mean_loss;
        }
        assert!(last < 0.8 * first, "mean loss {first} → {last}");
        // Without it, one query per user.
        let spec = TowersSpec::parse("t.toml", SPEC).unwrap();
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec, &ml, &ml.ratings, FeatureFiles::default()).unwrap();
        assert!(!model.per_interaction());
        let first = trainer.run_epoch(&mut model).unwrap().mean_loss;
        let mut last = first;
        for _ in 0..60 {
            last = trainer.run_epoch(&mut model).unwrap().mean_loss;
        }
        assert!(last < 0.8 * first, "mean loss {first} → {last}");
        // Every user's top 4 are the 4 films of their genre.
        assert_each_user_prefers_their_genre(&model);
    }
}
