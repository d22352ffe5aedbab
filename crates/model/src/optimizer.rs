//! Sparse optimizers: state is kept per table row and only the rows a batch touches are
//! read or written, with TensorFlow's semantics for sparse (IndexedSlices) gradients.

use crate::config::OptimizerConfig;
use crate::embedding::Embedding;

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
        let n = table.data.len();
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

    /// Applies one step. `rows` must be distinct (duplicates summed beforehand, as TF's
    /// `_resource_apply_sparse_duplicate_indices` does); `grads` holds one gradient row each.
    pub fn apply(&mut self, table: &mut Embedding, rows: &[u32], grads: &[f32]) {
        let dim = table.dim;
        debug_assert_eq!(grads.len(), rows.len() * dim);
        self.step += 1;
        match self.config {
            OptimizerConfig::Adagrad {
                learning_rate,
                epsilon,
                ..
            } => {
                for (k, &r) in rows.iter().enumerate() {
                    let base = r as usize * dim;
                    let g = &grads[k * dim..(k + 1) * dim];
                    let w = &mut table.data[base..base + dim];
                    let acc = &mut self.slot_a[base..base + dim];
                    for d in 0..dim {
                        acc[d] += g[d] * g[d];
                        w[d] -= learning_rate * g[d] / (acc[d].sqrt() + epsilon);
                    }
                }
            }
            OptimizerConfig::Adam {
                learning_rate,
                beta1,
                beta2,
                epsilon,
            } => {
                let t = self.step as i32;
                let lr_t = learning_rate * (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t));
                for (k, &r) in rows.iter().enumerate() {
                    let base = r as usize * dim;
                    let g = &grads[k * dim..(k + 1) * dim];
                    let w = &mut table.data[base..base + dim];
                    let m = &mut self.slot_a[base..base + dim];
                    let v = &mut self.slot_b[base..base + dim];
                    for d in 0..dim {
                        m[d] = beta1 * m[d] + (1.0 - beta1) * g[d];
                        v[d] = beta2 * v[d] + (1.0 - beta2) * g[d] * g[d];
                        w[d] -= lr_t * m[d] / (v[d].sqrt() + epsilon);
                    }
                }
            }
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
