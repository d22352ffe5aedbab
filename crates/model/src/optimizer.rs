//! Sparse optimizers: state is kept per table row and only the rows a batch touches are
//! read or written, with TensorFlow's semantics for sparse (IndexedSlices) gradients.

use rayon::prelude::*;

use crate::config::OptimizerConfig;
use crate::embedding::Embedding;
use crate::nn::{Encoder, Tower, TowerGrads};

/// One Adagrad step on `w` with accumulators `acc` (TensorFlow's formula).
#[inline]
fn adagrad(w: &mut [f32], acc: &mut [f32], g: &[f32], learning_rate: f32, epsilon: f32) {
    for ((w, a), g) in w.iter_mut().zip(acc).zip(g) {
        *a += g * g;
        *w -= learning_rate * g / (a.sqrt() + epsilon);
    }
}

/// One Adam step on `w` with moments `m` and `v`, at the bias-corrected rate `lr_t`.
#[inline]
fn adam(
    w: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    lr_t: f32,
    (beta1, beta2): (f32, f32),
    epsilon: f32,
) {
    for (((w, m), v), g) in w.iter_mut().zip(m).zip(v).zip(g) {
        *m = beta1 * *m + (1.0 - beta1) * g;
        *v = beta2 * *v + (1.0 - beta2) * g * g;
        *w -= lr_t * *m / (v.sqrt() + epsilon);
    }
}

/// Per-table optimizer state.
#[derive(Debug, Clone)]
pub struct OptimizerState {
    config: OptimizerConfig,
    /// Adagrad: accumulators. Adam: first moments.
    slot_a: Vec<f32>,
    /// Adam: second moments (empty for Adagrad).
    slot_b: Vec<f32>,
    step: u64,
}

impl OptimizerState {
    /// Fresh state for a table shaped like `table`.
    pub fn new(config: OptimizerConfig, table: &Embedding) -> Self {
        Self::for_len(config, table.data.len())
    }

    /// Fresh state for a parameter of `n` values.
    pub fn for_len(config: OptimizerConfig, n: usize) -> Self {
        let (slot_a, slot_b) = match config {
            OptimizerConfig::Adagrad {
                initial_accumulator,
                ..
            } => (vec![initial_accumulator; n], Vec::new()),
            OptimizerConfig::Adam { .. } => (vec![0.0; n], vec![0.0; n]),
        };
        OptimizerState {
            config,
            slot_a,
            slot_b,
            step: 0,
        }
    }

    /// Adam's bias-corrected learning rate at the current step.
    fn adam_rate(&self, learning_rate: f32, beta1: f32, beta2: f32) -> f32 {
        let t = self.step as i32;
        learning_rate * (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t))
    }

    /// Applies one step to a dense parameter `w` with gradient `grad` (every value).
    pub fn apply_dense(&mut self, w: &mut [f32], grad: &[f32]) {
        self.step += 1;
        match self.config {
            OptimizerConfig::Adagrad {
                learning_rate,
                epsilon,
                ..
            } => adagrad(w, &mut self.slot_a, grad, learning_rate, epsilon),
            OptimizerConfig::Adam {
                learning_rate,
                beta1,
                beta2,
                epsilon,
            } => {
                let lr_t = self.adam_rate(learning_rate, beta1, beta2);
                adam(
                    w,
                    &mut self.slot_a,
                    &mut self.slot_b,
                    grad,
                    lr_t,
                    (beta1, beta2),
                    epsilon,
                )
            }
        }
    }

    /// Applies one step. `rows` must be distinct (duplicates summed beforehand, as TF's
    /// `_resource_apply_sparse_duplicate_indices` does); `grads` holds one gradient row each.
    ///
    /// The table is cut into contiguous row ranges updated in parallel; each range walks the
    /// row list and takes its own rows, so no two threads ever touch one row.
    pub fn apply(&mut self, table: &mut Embedding, rows: &[u32], grads: &[f32]) {
        let dim = table.dim;
        assert_eq!(
            grads.len(),
            rows.len() * dim,
            "one gradient row per table row"
        );
        self.step += 1;
        // A few ranges per thread (row popularity is skewed), none for tiny updates.
        let ranges = if rows.len() < 256 {
            1
        } else {
            4 * rayon::current_num_threads()
        };
        let span = table.rows.div_ceil(ranges).max(1) * dim;
        let in_range = |lo: usize| {
            let (lo, hi) = (lo / dim, (lo + span) / dim);
            rows.iter().enumerate().filter_map(move |(k, &r)| {
                let r = r as usize;
                (lo <= r && r < hi).then(|| ((r - lo) * dim, &grads[k * dim..(k + 1) * dim]))
            })
        };
        match self.config {
            OptimizerConfig::Adagrad {
                learning_rate,
                epsilon,
                ..
            } => table
                .data
                .par_chunks_mut(span)
                .zip(self.slot_a.par_chunks_mut(span))
                .enumerate()
                .for_each(|(p, (w, acc))| {
                    for (base, g) in in_range(p * span) {
                        let w = &mut w[base..base + dim];
                        let acc = &mut acc[base..base + dim];
                        adagrad(w, acc, g, learning_rate, epsilon);
                    }
                }),
            OptimizerConfig::Adam {
                learning_rate,
                beta1,
                beta2,
                epsilon,
            } => {
                let lr_t = self.adam_rate(learning_rate, beta1, beta2);
                table
                    .data
                    .par_chunks_mut(span)
                    .zip(self.slot_a.par_chunks_mut(span))
                    .zip(self.slot_b.par_chunks_mut(span))
                    .enumerate()
                    .for_each(|(p, ((w, m), v))| {
                        for (base, g) in in_range(p * span) {
                            let w = &mut w[base..base + dim];
                            let m = &mut m[base..base + dim];
                            let v = &mut v[base..base + dim];
                            adam(w, m, v, g, lr_t, (beta1, beta2), epsilon);
                        }
                    })
            }
        }
    }
}

/// Optimizer state for every parameter of a [`Tower`]: row updates for its embedding
/// tables, dense updates for its layers.
#[derive(Debug, Clone)]
pub struct TowerOptimizer {
    tables: Vec<OptimizerState>,
    /// Kernel, then bias, of each layer.
    layers: Vec<(OptimizerState, OptimizerState)>,
}

impl TowerOptimizer {
    /// Fresh state for `tower`'s parameters.
    pub fn new(config: OptimizerConfig, tower: &Tower) -> Self {
        TowerOptimizer {
            tables: tower
                .encoders
                .iter()
                .filter_map(|e| match e {
                    Encoder::Bag(b) => Some(OptimizerState::new(config, &b.table)),
                    Encoder::Numeric(_) => None,
                })
                .collect(),
            layers: tower
                .layers
                .iter()
                .map(|l| {
                    (
                        OptimizerState::for_len(config, l.weight.len()),
                        OptimizerState::for_len(config, l.bias.len()),
                    )
                })
                .collect(),
        }
    }

    /// Sets the learning rate of every parameter's updates from now on (a schedule's).
    pub fn set_learning_rate(&mut self, learning_rate: f32) {
        let states = self.tables.iter_mut().chain(
            self.layers
                .iter_mut()
                .flat_map(|(kernel, bias)| [kernel, bias]),
        );
        for s in states {
            s.config = s.config.with_learning_rate(learning_rate);
        }
    }

    /// Applies `grads` (from [`Tower::backward`] of this tower) to `tower`.
    pub fn step(&mut self, tower: &mut Tower, grads: &TowerGrads) {
        let tables = tower.encoders.iter_mut().filter_map(|e| match e {
            Encoder::Bag(b) => Some(&mut b.table),
            Encoder::Numeric(_) => None,
        });
        for ((state, table), g) in self.tables.iter_mut().zip(tables).zip(&grads.sparse) {
            state.apply(table, &g.rows, &g.grads);
        }
        for (((kernel, bias), layer), g) in self
            .layers
            .iter_mut()
            .zip(&mut tower.layers)
            .zip(&grads.dense)
        {
            kernel.apply_dense(&mut layer.weight, &g.weight);
            bias.apply_dense(&mut layer.bias, &g.bias);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adagrad_matches_tensorflow_formula_and_leaves_other_rows() {
        let mut t = Embedding {
            rows: 3,
            dim: 2,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        let mut opt = OptimizerState::new(OptimizerConfig::adagrad(0.1), &t);
        opt.apply(&mut t, &[1], &[0.5, -1.0]);
        let want0 = 3.0 - 0.1 * 0.5 / ((0.1f32 + 0.25).sqrt() + 1e-7);
        let want1 = 4.0 + 0.1 * 1.0 / ((0.1f32 + 1.0).sqrt() + 1e-7);
        assert!((t.data[2] - want0).abs() < 1e-6);
        assert!((t.data[3] - want1).abs() < 1e-6);
        assert_eq!(&t.data[..2], &[1.0, 2.0]);
        assert_eq!(&t.data[4..], &[5.0, 6.0]);
        // Second step sees the accumulated squares.
        opt.apply(&mut t, &[1], &[0.5, 0.0]);
        let want0b = want0 - 0.1 * 0.5 / ((0.1f32 + 0.5).sqrt() + 1e-7);
        assert!((t.data[2] - want0b).abs() < 1e-6);
    }

    /// The parallel ranges give what a plain loop over the rows gives, for both optimizers,
    /// on rows spread over the whole table and an update large enough to be split.
    #[test]
    fn parallel_ranges_match_a_plain_loop() {
        let (n, dim) = (5000, 4);
        let start = Embedding {
            rows: n,
            dim,
            data: (0..n * dim)
                .map(|x| ((x * 37 % 101) as f32 - 50.0) / 100.0)
                .collect(),
        };
        let rows: Vec<u32> = (0..1200).map(|k| (k * 4099 % n) as u32).collect();
        let grads: Vec<f32> = (0..rows.len() * dim)
            .map(|x| ((x * 13 % 29) as f32 - 14.0) / 10.0)
            .collect();
        for config in [OptimizerConfig::adagrad(0.1), OptimizerConfig::adam(0.01)] {
            let mut t = start.clone();
            let mut opt = OptimizerState::new(config, &t);
            // Plain loop: slot values and weights, row by row.
            let mut want = start.clone();
            let (mut a, mut b) = (opt.slot_a.clone(), vec![0.0f32; n * dim]);
            for step in 1..=2 {
                opt.apply(&mut t, &rows, &grads);
                for (k, &r) in rows.iter().enumerate() {
                    for d in 0..dim {
                        let (i, g) = (r as usize * dim + d, grads[k * dim + d]);
                        match config {
                            OptimizerConfig::Adagrad {
                                learning_rate,
                                epsilon,
                                ..
                            } => {
                                a[i] += g * g;
                                want.data[i] -= learning_rate * g / (a[i].sqrt() + epsilon);
                            }
                            OptimizerConfig::Adam {
                                learning_rate,
                                beta1,
                                beta2,
                                epsilon,
                            } => {
                                let lr_t = learning_rate * (1.0 - beta2.powi(step)).sqrt()
                                    / (1.0 - beta1.powi(step));
                                a[i] = beta1 * a[i] + (1.0 - beta1) * g;
                                b[i] = beta2 * b[i] + (1.0 - beta2) * g * g;
                                want.data[i] -= lr_t * a[i] / (b[i].sqrt() + epsilon);
                            }
                        }
                    }
                }
            }
            assert_eq!(t, want, "{config:?}");
            assert_eq!(opt.slot_a, a);
        }
    }

    /// A tower with a table and two layers learns a toy target: the loss falls, and
    /// dense Adam's first step moves every weight with a gradient by the learning rate.
    #[test]
    fn a_tower_optimizer_trains_tables_and_layers() {
        use crate::nn::{Activation, Dense, EmbeddingBag, IdBatch, Pooling};
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut tower = Tower::new(
            vec![Encoder::Bag(EmbeddingBag::new(
                8,
                4,
                Pooling::Mean,
                &mut rng,
            ))],
            vec![
                Dense::new(4, 8, Activation::Relu, &mut rng),
                Dense::new(8, 1, Activation::Linear, &mut rng),
            ],
        )
        .unwrap();
        let ids = [IdBatch::single((0..8).collect())];
        let target: Vec<f32> = (0..8)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let loss = |t: &Tower| -> f32 {
            let p = t.forward(&ids, 8).unwrap();
            p.output()
                .iter()
                .zip(&target)
                .map(|(o, y)| (o - y) * (o - y))
                .sum()
        };
        let before = tower.clone();
        let mut opt = TowerOptimizer::new(OptimizerConfig::adam(0.005), &tower);
        // A schedule's rate replaces the configured one for every parameter.
        opt.set_learning_rate(0.01);
        let first = loss(&tower);
        for step in 0..300 {
            let p = tower.forward(&ids, 8).unwrap();
            let grad: Vec<f32> = p
                .output()
                .iter()
                .zip(&target)
                .map(|(o, y)| 2.0 * (o - y))
                .collect();
            let g = tower.backward(&ids, &p, grad);
            opt.step(&mut tower, &g);
            if step == 0 {
                let moved = |a: &[f32], b: &[f32], g: &[f32]| {
                    a.iter()
                        .zip(b)
                        .zip(g)
                        .all(|((a, b), g)| *g == 0.0 || ((a - b).abs() - 0.01).abs() < 1e-4)
                };
                let (l, l0) = (&tower.layers[1], &before.layers[1]);
                assert!(moved(&l.weight, &l0.weight, &g.dense[1].weight));
                assert!(moved(&l.bias, &l0.bias, &g.dense[1].bias));
            }
        }
        let last = loss(&tower);
        assert!(last < 0.05 * first, "loss {first} → {last}");
    }

    #[test]
    fn adam_first_step_moves_by_learning_rate() {
        let mut t = Embedding {
            rows: 2,
            dim: 1,
            data: vec![0.0, 0.0],
        };
        let mut opt = OptimizerState::new(OptimizerConfig::adam(0.01), &t);
        opt.apply(&mut t, &[0], &[3.0]);
        // With bias correction the first step is lr · sign(g) (up to ε).
        assert!((t.data[0] + 0.01).abs() < 1e-5, "{}", t.data[0]);
        assert_eq!(t.data[1], 0.0);
    }
}
