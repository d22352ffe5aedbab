//! The training loop: shuffled batches, deduplicated in-batch (or full) softmax, sparse
//! optimizer steps on the rows each batch touches.
//!
//! ```no_run
//! # use twotower_model::{Trainer, TwoTowerModel};
//! # fn run(model: &mut TwoTowerModel, examples: Vec<(u32, u32)>) {
//! let mut trainer = Trainer::new(model, examples).unwrap();
//! for _ in 0..model.config.epochs {
//!     let stats = trainer.run_epoch(model, &mut |_| {});
//!     println!("loss {}", stats.loss);
//! }
//! # }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::config::Negatives;
use crate::embedding::UniqueIds;
use crate::loss::{InBatchSoftmax, SoftmaxBatch};
use crate::nn::TowerGrads;
use crate::optimizer::TowerOptimizer;
use crate::towers::TwoTowerModel;
use crate::{ModelError, Result};

/// Progress inside an epoch, reported after every batch.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BatchProgress {
    pub epoch: usize,
    pub examples_done: usize,
    pub examples_total: usize,
    /// Mean loss per example so far in this epoch.
    pub mean_loss: f64,
}

/// A mean softmax loss above this many nats per example means the true item scores
/// that far below the best: no learning curve passes it (a softmax over a million
/// uniform candidates starts at 14), only a model whose updates overshoot.
pub const DIVERGED_MEAN_LOSS: f64 = 1e4;

/// An error when an epoch's training diverged: its loss or weights are no longer finite,
/// or its mean loss is above [`DIVERGED_MEAN_LOSS`] (finite, but no model to keep).
pub(crate) fn check_converging(
    epoch: usize,
    total_loss: f64,
    mean_loss: f64,
    weights_finite: bool,
    learning_rate: f32,
) -> crate::Result<()> {
    let problem = if !total_loss.is_finite() {
        format!("the loss became {total_loss}")
    } else if !weights_finite {
        "the weights became infinite or NaN".to_string()
    } else if mean_loss > DIVERGED_MEAN_LOSS {
        format!(
            "the mean loss is {mean_loss:.3e} per example, above {DIVERGED_MEAN_LOSS:e}: the \
             updates overshoot"
        )
    } else {
        return Ok(());
    };
    Err(crate::ModelError::Diverged(format!(
        "training diverged in epoch {epoch}: {problem} (learning rate {learning_rate}); try a \
         smaller learning rate (--lr, or learning_rate=)"
    )))
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Summed loss over the epoch's examples (TFRS reports the SUM-reduced loss per batch).
    pub loss: f64,
    pub mean_loss: f64,
    pub seconds: f64,
    pub examples_per_second: f64,
    /// Seconds of the epoch spent in the loss's matrix products.
    #[serde(default)]
    pub product_seconds: f64,
    /// Achieved speed of those products, in GFLOP/s.
    #[serde(default)]
    pub product_gflops_per_second: f64,
    /// Evaluation after the epoch, when the caller ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
}

impl std::fmt::Display for EpochStats {
    /// `loss 1234.5 (mean 5.6789), 250000 examples/s, 0.32 s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss {:.1} (mean {:.4}), {:.0} examples/s, {:.2} s",
            self.loss, self.mean_loss, self.examples_per_second, self.seconds
        )
    }
}

/// Trains a [`TwoTowerModel`] on `(user index, candidate index)` examples.
pub struct Trainer {
    /// The examples, shuffled in place each epoch (a batch reads a contiguous run: no
    /// random access into a 40 MB array on the step's serial path).
    examples: Vec<(u32, u32)>,
    rng: rand_chacha::ChaCha8Rng,
    query_opt: TowerOptimizer,
    cand_opt: TowerOptimizer,
    users: UniqueIds,
    cands: UniqueIds,
    /// −ln(sampling probability) per candidate index, for the logQ correction, and
    /// [`EXCLUDED`] for candidates left out of training (empty: no bias).
    logq_bias: Vec<f32>,
    /// Scratch for the batch's logits matrix, reused across batches.
    logits: Vec<f32>,
    epoch: usize,
    /// The example cap (`--max-examples`) and stop flag.
    pub budget: Budget,
}

/// The learning rate of each batch under the configuration's decay.
pub(crate) struct Schedule {
    base: f32,
    decay: crate::LrDecay,
    /// Examples before this epoch, and in all epochs.
    before: usize,
    total: usize,
}

impl Schedule {
    /// The schedule of epoch `epoch` (1-based) of `per_epoch` examples.
    pub(crate) fn new(cfg: &crate::TrainConfig, epoch: usize, per_epoch: usize) -> Self {
        Schedule {
            base: cfg.optimizer.learning_rate(),
            decay: cfg.lr_decay,
            before: epoch.saturating_sub(1) * per_epoch,
            total: (cfg.epochs * per_epoch).max(1),
        }
    }

    /// The rate for the batch after `done` examples of the epoch (`None`: constant, leave
    /// the optimizer as it is).
    pub(crate) fn rate(&self, done: usize) -> Option<f32> {
        if self.decay == crate::LrDecay::Constant {
            return None;
        }
        let progress = (self.before + done) as f64 / self.total as f64;
        Some(self.base * self.decay.factor(progress))
    }
}

/// How much more a trainer may train: an example cap (`--max-examples`) and a stop flag
/// another thread can raise (the Python package's Ctrl-C), both checked before each batch.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Examples still allowed in total (`None`: no cap).
    left: Option<usize>,
    stop: Option<Arc<AtomicBool>>,
    stopped: bool,
}

impl Budget {
    /// The part of `chunk` the budget still allows, the budget reduced by it; `None` once
    /// the cap is spent or the stop flag raised.
    pub(crate) fn take<'a, T>(&mut self, chunk: &'a [T]) -> Option<&'a [T]> {
        if self.stop_requested() {
            return None;
        }
        match self.left {
            Some(0) => None,
            Some(left) => {
                let take = left.min(chunk.len());
                self.left = Some(left - take);
                chunk.get(..take)
            }
            None => Some(chunk),
        }
    }

    /// Whether the stop flag is raised (then the budget counts as stopped): for work
    /// outside batches, such as the ALS warm start's sweeps.
    pub fn stop_requested(&mut self) -> bool {
        if self
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            self.stopped = true;
        }
        self.stopped
    }

    /// The stop flag, when one was set.
    pub fn stop_flag(&self) -> Option<Arc<AtomicBool>> {
        self.stop.clone()
    }

    /// Caps the examples from now on (`None` lifts the cap).
    pub fn set_cap(&mut self, max_examples: Option<usize>) {
        self.left = max_examples;
    }

    /// Stops training before the next batch once `flag` is raised.
    pub fn set_stop_flag(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    /// Whether no more batches will run: the cap is used up or training was stopped.
    pub fn spent(&self) -> bool {
        self.left == Some(0) || self.stopped
    }

    /// `Err(Interrupted)` when the stop flag ended training.
    pub fn check_stopped(&self) -> Result<()> {
        if self.stopped {
            return Err(ModelError::Interrupted);
        }
        Ok(())
    }
}

/// The logit bias of a candidate excluded from training's softmax: its probability is 0
/// (the fast `exp` is exactly 0 this far below the positive's logit), so it gets no
/// gradient, as if it were not in the catalogue.
pub(crate) const EXCLUDED: f32 = -1e4;

/// Sets `bias` (empty, or one entry per candidate) to [`EXCLUDED`] at `ids`, for a
/// catalogue of `n` candidates.
pub(crate) fn exclude(bias: &mut Vec<f32>, ids: impl IntoIterator<Item = u32>, n: usize) {
    if bias.is_empty() {
        *bias = vec![0.0; n];
    }
    for id in ids {
        if let Some(b) = bias.get_mut(id as usize) {
            *b = EXCLUDED;
        }
    }
}

/// The logQ correction of each of `rows` candidate rows: −`weight`·log of its share of
/// `positives` (0 for a row never seen), added to its logits in the in-batch softmax.
pub(crate) fn logq_bias(
    positives: impl Iterator<Item = u32>,
    rows: usize,
    weight: f32,
) -> Vec<f32> {
    let mut counts = vec![0f64; rows];
    let mut total = 0f64;
    for c in positives {
        if let Some(n) = counts.get_mut(c as usize) {
            *n += 1.0;
            total += 1.0;
        }
    }
    counts
        .iter()
        .map(|&n| {
            if n > 0.0 {
                -(n / total).ln() as f32 * weight
            } else {
                0.0
            }
        })
        .collect()
}

impl Trainer {
    /// Prepares optimizer state; checks the examples fit the model.
    pub fn new(model: &TwoTowerModel, examples: Vec<(u32, u32)>) -> Result<Self> {
        if examples.is_empty() {
            return Err(ModelError::Config("no training examples".into()));
        }
        let (nq, nc) = (model.query.vocab.len(), model.candidate.vocab.len());
        if let Some(bad) = examples
            .iter()
            .find(|&&(q, c)| q as usize >= nq || c as usize >= nc)
        {
            return Err(ModelError::Config(format!(
                "example {bad:?} is outside the vocabularies ({nq} users, {nc} candidates)"
            )));
        }
        let cfg = &model.config;
        let logq_bias = if cfg.logq_correction {
            logq_bias(examples.iter().map(|&(_, c)| c), nc, cfg.logq_weight)
        } else {
            Vec::new()
        };
        Ok(Trainer {
            examples,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_5eed),
            query_opt: TowerOptimizer::new(cfg.optimizer, model.query.tower()),
            cand_opt: TowerOptimizer::new(cfg.optimizer, model.candidate.tower()),
            users: UniqueIds::new(nq),
            cands: UniqueIds::new(nc),
            logq_bias,
            logits: Vec::new(),
            epoch: 0,
            budget: Budget::default(),
        })
    }

    /// Number of training examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True when there are no examples (never, after [`Trainer::new`]).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// One pass over the shuffled examples.
    pub fn run_epoch(
        &mut self,
        model: &mut TwoTowerModel,
        on_batch: &mut dyn FnMut(BatchProgress),
    ) -> EpochStats {
        let start = Instant::now();
        self.epoch += 1;
        // Shuffling the examples themselves gives the same sequence as shuffling an index
        // order would: each epoch composes one more permutation drawn from the same stream.
        let mut examples = std::mem::take(&mut self.examples);
        examples.shuffle(&mut self.rng);
        let cfg = model.config.clone();
        let mut total = 0.0f64;
        let mut done = 0usize;
        let (mut flops, mut product_seconds) = (0.0f64, 0.0f64);
        let schedule = Schedule::new(&cfg, self.epoch, examples.len());
        for chunk in examples.chunks(cfg.batch_size) {
            let Some(chunk) = self.budget.take(chunk) else {
                break;
            };
            if let Some(lr) = schedule.rate(done) {
                self.query_opt.set_learning_rate(lr);
                self.cand_opt.set_learning_rate(lr);
            }
            let step = self.gradients(model, chunk);
            // The two towers' parameters and optimizer states are disjoint: update them at once.
            let (query_opt, cand_opt) = (&mut self.query_opt, &mut self.cand_opt);
            let (query, candidate) = (model.query.tower_mut(), model.candidate.tower_mut());
            rayon::join(
                || query_opt.step(query, &step.query),
                || cand_opt.step(candidate, &step.candidate),
            );
            total += step.loss;
            flops += step.product_flops;
            product_seconds += step.product_seconds;
            done += chunk.len();
            on_batch(BatchProgress {
                epoch: self.epoch,
                examples_done: done,
                examples_total: examples.len(),
                mean_loss: total / done as f64,
            });
        }
        self.examples = examples;
        let seconds = start.elapsed().as_secs_f64();
        EpochStats {
            epoch: self.epoch,
            loss: total,
            mean_loss: total / done as f64,
            seconds,
            examples_per_second: done as f64 / seconds.max(1e-9),
            product_seconds,
            product_gflops_per_second: flops / product_seconds.max(1e-12) / 1e9,
            metrics: None,
        }
    }

    /// Leaves the candidates `ids` (vocabulary indices, of `n`) out of training: never a
    /// negative (a cold-items split's held-out items, which training must not see).
    pub fn exclude_candidates(&mut self, ids: impl IntoIterator<Item = u32>, n: usize) {
        exclude(&mut self.logq_bias, ids, n);
    }

    /// The `(user index, candidate index)` training examples (in the last epoch's order).
    pub fn examples(&self) -> &[(u32, u32)] {
        &self.examples
    }

    /// Caps the examples trained on from now on, over all epochs (the last batch is cut
    /// short); `None` lifts the cap.
    pub fn set_example_budget(&mut self, max_examples: Option<usize>) {
        self.budget.set_cap(max_examples);
    }

    /// Whether no more batches will run (the cap of [`Trainer::set_example_budget`] is
    /// used up, or the budget's stop flag was raised).
    pub fn budget_spent(&self) -> bool {
        self.budget.spent()
    }

    /// Loss and gradients of one batch of `(user index, candidate index)` examples, on
    /// distinct table rows.
    pub fn gradients(&mut self, model: &TwoTowerModel, batch: &[(u32, u32)]) -> StepGradients {
        let cfg = &model.config;
        let softmax = InBatchSoftmax {
            temperature: cfg.temperature,
            remove_accidental_hits: cfg.remove_accidental_hits,
        };
        self.users.clear();
        self.cands.clear();
        let mut rows = Vec::with_capacity(batch.len());
        for &(q, c) in batch {
            let qs = self.users.insert(q);
            let cs = self.cands.insert(c);
            // Full softmax: every known candidate (index ≥ 1) is a column, once.
            rows.push((
                qs,
                if cfg.negatives == Negatives::Full {
                    c - 1
                } else {
                    cs
                },
            ));
        }
        let (cols, mult, col_counts): (Vec<u32>, Vec<f32>, Vec<u32>) = match cfg.negatives {
            // `Auto` is settled when the model is made; it trains as in-batch if ever seen.
            Negatives::InBatch | Negatives::Auto => (
                self.cands.ids.clone(),
                self.cands.counts.iter().map(|&n| n as f32).collect(),
                self.cands.counts.clone(),
            ),
            Negatives::Full => {
                let n = model.candidate.vocab.len() - 1;
                let mut counts = vec![0u32; n];
                for (id, k) in self.cands.ids.iter().zip(&self.cands.counts) {
                    counts[*id as usize - 1] = *k;
                }
                ((1..=n as u32).collect(), vec![1.0; n], counts)
            }
        };
        let bias: Vec<f32> = if self.logq_bias.is_empty() {
            Vec::new()
        } else {
            cols.iter().map(|&c| self.logq_bias[c as usize]).collect()
        };
        let (query_pass, candidate_pass) = rayon::join(
            || model.query.forward(&self.users.ids),
            || model.candidate.forward(&cols),
        );
        let (queries, candidates) = (query_pass.output(), candidate_pass.output());
        let mut out = softmax.forward_backward_with(
            &SoftmaxBatch {
                queries,
                candidates,
                dim: cfg.embedding_dim,
                rows: &rows,
                multiplicity: &mult,
                bias: &bias,
            },
            &mut self.logits,
        );
        let mut loss = out.loss;
        if cfg.l2 > 0.0 {
            loss += add_l2(&mut out.grad_queries, queries, &self.users.counts, cfg.l2);
            loss += add_l2(&mut out.grad_candidates, candidates, &col_counts, cfg.l2);
        }
        let users = &self.users.ids;
        let (grad_queries, grad_candidates) = (out.grad_queries, out.grad_candidates);
        let (query, candidate) = rayon::join(
            || model.query.backward(users, &query_pass, grad_queries),
            || {
                model
                    .candidate
                    .backward(&cols, &candidate_pass, grad_candidates)
            },
        );
        StepGradients {
            loss,
            query,
            candidate,
            product_flops: out.product_flops,
            product_seconds: out.product_seconds,
        }
    }
}

/// The loss of one batch and the gradients of both towers' parameters (embedding tables
/// as one row per distinct table row, duplicates summed).
#[derive(Debug, Clone)]
pub struct StepGradients {
    pub loss: f64,
    pub query: TowerGrads,
    pub candidate: TowerGrads,
    /// Floating-point operations and seconds of the batch's matrix products.
    pub product_flops: f64,
    pub product_seconds: f64,
}

/// Adds the gradient of `l2 · count · ‖w‖²` for each row; returns that penalty.
pub(crate) fn add_l2(grad: &mut [f32], weights: &[f32], counts: &[u32], l2: f32) -> f64 {
    let dim = grad.len() / counts.len().max(1);
    let mut penalty = 0.0f64;
    for (k, &n) in counts.iter().enumerate() {
        let f = 2.0 * l2 * n as f32;
        for d in k * dim..(k + 1) * dim {
            grad[d] += f * weights[d];
            penalty += (l2 * n as f32 * weights[d] * weights[d]) as f64;
        }
    }
    penalty
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use crate::towers::Catalogue;
    use twotower_data::Vocabulary;

    #[test]
    fn the_schedule_decays_over_all_epochs() {
        let mut cfg = TrainConfig::preset("tfrs").unwrap();
        cfg.epochs = 2;
        assert_eq!(Schedule::new(&cfg, 1, 100).rate(0), None);
        cfg.lr_decay = crate::LrDecay::Linear;
        let lr = cfg.optimizer.learning_rate();
        assert_eq!(Schedule::new(&cfg, 1, 100).rate(0), Some(lr));
        let late = Schedule::new(&cfg, 2, 100).rate(50).unwrap();
        assert!((late - 0.25 * lr).abs() < 1e-7, "{late}");
    }

    fn tiny(negatives: Negatives, l2: f32) -> (TwoTowerModel, Vec<(u32, u32)>) {
        let mut cfg = TrainConfig::preset("tfrs").unwrap();
        cfg.candidate_key = crate::CandidateKey::Id;
        cfg.embedding_dim = 3;
        cfg.negatives = negatives;
        cfg.l2 = l2;
        let users = Vocabulary::from_tokens(["1", "2", "3"]);
        let ids: Vec<String> = (1..=4).map(|i| i.to_string()).collect();
        let catalogue = Catalogue {
            titles: ids.iter().map(|i| format!("Movie {i}")).collect(),
            genres: vec![vec![]; 4],
            release_dates: vec![String::new(); 4],
            ids,
        };
        let mut model = TwoTowerModel::new(cfg, users, catalogue).unwrap();
        // Larger weights than the initialiser's, so the softmax is far from uniform.
        for (i, v) in model.query.embedding_mut().data.iter_mut().enumerate() {
            *v = ((i as f32) * 0.9).sin();
        }
        for (i, v) in model.candidate.embedding_mut().data.iter_mut().enumerate() {
            *v = ((i as f32) * 1.7).cos();
        }
        let examples = vec![(1, 1), (2, 2), (1, 2), (3, 3), (2, 1), (3, 4), (1, 1)];
        (model, examples)
    }

    /// The plain definition over whole tables, in f64: per example, softmax over the batch's
    /// positives (in-batch) or every known candidate (full), plus the L2 penalty.
    fn reference(q: &[f64], c: &[f64], ex: &[(u32, u32)], neg: Negatives, l2: f64) -> f64 {
        let d = 3;
        let dot = |u: u32, i: u32| -> f64 {
            (0..d)
                .map(|k| q[u as usize * d + k] * c[i as usize * d + k])
                .sum()
        };
        let cols: Vec<u32> = match neg {
            Negatives::InBatch | Negatives::Auto => ex.iter().map(|e| e.1).collect(),
            Negatives::Full => (1..5).collect(),
        };
        let mut loss = 0.0;
        for &(u, i) in ex {
            let z: f64 = cols.iter().map(|&j| dot(u, j).exp()).sum();
            loss += z.ln() - dot(u, i);
            let sq = |t: &[f64], r: u32| (0..d).map(|k| t[r as usize * d + k].powi(2)).sum::<f64>();
            loss += l2 * (sq(q, u) + sq(c, i));
        }
        loss
    }

    fn check(negatives: Negatives, l2: f32) {
        let (model, examples) = tiny(negatives, l2);
        let mut trainer = Trainer::new(&model, examples.clone()).unwrap();
        let g = trainer.gradients(&model, &examples);
        let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let q = to64(&model.query.embedding().data);
        let c = to64(&model.candidate.embedding().data);
        let l2 = l2 as f64;
        let want = reference(&q, &c, &examples, negatives, l2);
        assert!((g.loss - want).abs() < 1e-4, "{} vs {want}", g.loss);
        let h = 1e-5;
        let dense = |rows: &[u32], grads: &[f32], n: usize| {
            let mut out = vec![0.0f64; n];
            for (k, &r) in rows.iter().enumerate() {
                for j in 0..3 {
                    out[r as usize * 3 + j] = grads[k * 3 + j] as f64;
                }
            }
            out
        };
        let (gq, gc) = (&g.query.sparse[0], &g.candidate.sparse[0]);
        let (query_rows, candidate_rows) = (&gq.rows, &gc.rows);
        let gq = dense(&gq.rows, &gq.grads, q.len());
        let gc = dense(&gc.rows, &gc.grads, c.len());
        for i in 0..q.len() {
            let (mut p, mut m) = (q.clone(), q.clone());
            p[i] += h;
            m[i] -= h;
            let num = (reference(&p, &c, &examples, negatives, l2)
                - reference(&m, &c, &examples, negatives, l2))
                / (2.0 * h);
            assert!((gq[i] - num).abs() < 1e-3, "query[{i}]: {} vs {num}", gq[i]);
        }
        for i in 0..c.len() {
            let (mut p, mut m) = (c.clone(), c.clone());
            p[i] += h;
            m[i] -= h;
            let num = (reference(&q, &p, &examples, negatives, l2)
                - reference(&q, &m, &examples, negatives, l2))
                / (2.0 * h);
            assert!(
                (gc[i] - num).abs() < 1e-3,
                "candidate[{i}]: {} vs {num}",
                gc[i]
            );
        }
        // Rows never touched (the OOV rows) get no update.
        assert!(!query_rows.contains(&0));
        assert!(!candidate_rows.contains(&0));
    }

    #[test]
    fn in_batch_table_gradients_match_finite_differences() {
        check(Negatives::InBatch, 0.0);
    }

    #[test]
    fn full_softmax_table_gradients_match_finite_differences() {
        check(Negatives::Full, 0.0);
    }

    #[test]
    fn l2_penalty_gradients_match_finite_differences() {
        check(Negatives::InBatch, 0.05);
        check(Negatives::Full, 0.05);
    }

    #[test]
    fn training_lowers_the_loss_and_is_reproducible() {
        let run = || {
            let (mut model, examples) = tiny(Negatives::InBatch, 0.0);
            model.config.batch_size = 3;
            let mut t = Trainer::new(&model, examples).unwrap();
            let first = t.run_epoch(&mut model, &mut |_| {}).loss;
            let mut last = first;
            for _ in 0..20 {
                last = t.run_epoch(&mut model, &mut |_| {}).loss;
            }
            (first, last, model.query.embedding().data.clone())
        };
        let (first, last, w1) = run();
        assert!(last < first, "{last} !< {first}");
        assert_eq!(w1, run().2);
    }
}
