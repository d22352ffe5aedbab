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

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::config::Negatives;
use crate::embedding::UniqueIds;
use crate::loss::{InBatchSoftmax, SoftmaxBatch};
use crate::optimizer::OptimizerState;
use crate::towers::TwoTowerModel;
use crate::{ModelError, Result};

/// Progress inside an epoch, reported after every batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchProgress {
    pub epoch: usize,
    pub examples_done: usize,
    pub examples_total: usize,
    /// Mean loss per example so far in this epoch.
    pub mean_loss: f64,
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
    /// Evaluation after the epoch, when the caller ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
}

/// Trains a [`TwoTowerModel`] on `(user index, candidate index)` examples.
pub struct Trainer {
    examples: Vec<(u32, u32)>,
    order: Vec<usize>,
    rng: rand_chacha::ChaCha8Rng,
    query_opt: OptimizerState,
    cand_opt: OptimizerState,
    users: UniqueIds,
    cands: UniqueIds,
    /// −ln(sampling probability) per candidate index, for the logQ correction.
    logq_bias: Vec<f32>,
    epoch: usize,
}

impl Trainer {
    /// Prepares optimizer state and the shuffling order; checks the examples fit the model.
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
        let mut logq_bias = Vec::new();
        if cfg.logq_correction {
            let mut counts = vec![0f64; nc];
            for &(_, c) in &examples {
                counts[c as usize] += 1.0;
            }
            let total = examples.len() as f64;
            logq_bias = counts
                .iter()
                .map(|&n| if n > 0.0 { -(n / total).ln() as f32 } else { 0.0 })
                .collect();
        }
        Ok(Trainer {
            order: (0..examples.len()).collect(),
            examples,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_5eed),
            query_opt: OptimizerState::new(cfg.optimizer, &model.query.embedding),
            cand_opt: OptimizerState::new(cfg.optimizer, &model.candidate.embedding),
            users: UniqueIds::new(nq),
            cands: UniqueIds::new(nc),
            logq_bias,
            epoch: 0,
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
        self.order.shuffle(&mut self.rng);
        let cfg = model.config.clone();
        let softmax = InBatchSoftmax {
            temperature: cfg.temperature,
            remove_accidental_hits: cfg.remove_accidental_hits,
        };
        let n_cands = model.candidate.vocab.len();
        // Full softmax: every known candidate (index ≥ 1) is a column, once.
        let full_cols: Vec<u32> = (1..n_cands as u32).collect();
        let full_mult = vec![1.0f32; full_cols.len()];
        let mut total = 0.0f64;
        let mut done = 0usize;
        let mut rows = Vec::with_capacity(cfg.batch_size);
        for chunk in self.order.chunks(cfg.batch_size) {
            self.users.clear();
            self.cands.clear();
            rows.clear();
            for &i in chunk {
                let (q, c) = self.examples[i];
                let qs = self.users.insert(q);
                let cs = match cfg.negatives {
                    Negatives::InBatch => self.cands.insert(c),
                    Negatives::Full => {
                        self.cands.insert(c);
                        c - 1
                    }
                };
                rows.push((qs, cs));
            }
            let (cols, mult): (&[u32], Vec<f32>) = match cfg.negatives {
                Negatives::InBatch => (
                    &self.cands.ids,
                    self.cands.counts.iter().map(|&n| n as f32).collect(),
                ),
                Negatives::Full => (&full_cols, full_mult.clone()),
            };
            let bias: Vec<f32> = if self.logq_bias.is_empty() {
                Vec::new()
            } else {
                cols.iter().map(|&c| self.logq_bias[c as usize]).collect()
            };
            let queries = model.query.embedding.gather(&self.users.ids);
            let candidates = model.candidate.embedding.gather(cols);
            let mut out = softmax.forward_backward(&SoftmaxBatch {
                queries: &queries,
                candidates: &candidates,
                dim: cfg.embedding_dim,
                rows: &rows,
                multiplicity: &mult,
                bias: &bias,
            });
            if cfg.l2 > 0.0 {
                add_l2(&mut out.grad_queries, &queries, &self.users.counts, cfg.l2);
                let col_counts: Vec<u32> = match cfg.negatives {
                    Negatives::InBatch => self.cands.counts.clone(),
                    Negatives::Full => {
                        let mut c = vec![0u32; cols.len()];
                        for (id, n) in self.cands.ids.iter().zip(&self.cands.counts) {
                            c[*id as usize - 1] = *n;
                        }
                        c
                    }
                };
                add_l2(&mut out.grad_candidates, &candidates, &col_counts, cfg.l2);
            }
            self.query_opt
                .apply(&mut model.query.embedding, &self.users.ids, &out.grad_queries);
            self.cand_opt
                .apply(&mut model.candidate.embedding, cols, &out.grad_candidates);
            total += out.loss;
            done += chunk.len();
            on_batch(BatchProgress {
                epoch: self.epoch,
                examples_done: done,
                examples_total: self.examples.len(),
                mean_loss: total / done as f64,
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        EpochStats {
            epoch: self.epoch,
            loss: total,
            mean_loss: total / done as f64,
            seconds,
            examples_per_second: done as f64 / seconds.max(1e-9),
            metrics: None,
        }
    }
}

/// Adds the gradient of `l2 · count · ‖w‖²` for each row.
fn add_l2(grad: &mut [f32], weights: &[f32], counts: &[u32], l2: f32) {
    let dim = grad.len() / counts.len().max(1);
    for (k, &n) in counts.iter().enumerate() {
        let f = 2.0 * l2 * n as f32;
        for d in k * dim..(k + 1) * dim {
            grad[d] += f * weights[d];
        }
    }
}
