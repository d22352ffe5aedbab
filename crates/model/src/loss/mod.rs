//! The retrieval loss: softmax cross-entropy of each example's positive against a set of
//! candidate columns, reduction SUM (TFRS `Retrieval`).
//!
//! A batch is handed over deduplicated: `U` distinct queries and `C` distinct candidate
//! columns, each column with a multiplicity `n_c` (how many rows of the in-batch logits
//! matrix are that candidate). `n` identical columns of the logits are one column with
//! `ln n` added, and rows of the same query share their log-partition, so the B×B logits of
//! TFRS shrink to U×C without changing the loss or its gradient.
//!
//! [`InBatchSoftmax::forward_backward_with`] dispatches between the two paths that compute
//! it: `fused` (x86-64 with AVX2 and FMA, dimensions of whole 16-lane tiles: blocks of
//! queries whose logits never leave the cache) and `portable` (any CPU, the whole logits
//! matrix), which the tests hold to each other and to the plain B×B definition.

#[cfg(target_arch = "x86_64")]
pub mod fused;
mod portable;

/// Set to any value to force the portable path (to compare the two in benchmarks).
pub const PORTABLE_ENV: &str = "TWOTOWER_PORTABLE_SOFTMAX";

/// Options of the softmax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InBatchSoftmax {
    pub temperature: f32,
    pub remove_accidental_hits: bool,
}

/// One deduplicated batch.
pub struct SoftmaxBatch<'a> {
    /// `U × dim` query embeddings.
    pub queries: &'a [f32],
    /// `C × dim` candidate embeddings.
    pub candidates: &'a [f32],
    pub dim: usize,
    /// Per example: its query slot (< U) and its positive's column (< C).
    pub rows: &'a [(u32, u32)],
    /// Per column: multiplicity `n_c` (≥ 1).
    pub multiplicity: &'a [f32],
    /// Per column: an additive logit bias (e.g. −log sampling probability), or empty.
    pub bias: &'a [f32],
}

/// Loss and gradients of a batch.
pub struct SoftmaxOutput {
    pub loss: f64,
    /// `U × dim`.
    pub grad_queries: Vec<f32>,
    /// `C × dim`.
    pub grad_candidates: Vec<f32>,
    /// Floating-point operations of the three matrix products (logits and both gradients).
    pub product_flops: f64,
    /// Seconds spent in those products.
    pub product_seconds: f64,
}

impl InBatchSoftmax {
    /// Forward and backward for one batch.
    pub fn forward_backward(&self, b: &SoftmaxBatch) -> SoftmaxOutput {
        self.forward_backward_with(b, &mut Vec::new())
    }

    /// [`InBatchSoftmax::forward_backward`] reusing `scratch` for the U×C logits of the
    /// portable path, so a training loop allocates (and page-faults) that matrix once, not
    /// once per batch. Where the CPU allows it, the fused path (`loss::fused`) runs
    /// instead and needs no U×C matrix at all.
    pub fn forward_backward_with(&self, b: &SoftmaxBatch, scratch: &mut Vec<f32>) -> SoftmaxOutput {
        #[cfg(target_arch = "x86_64")]
        if fused::available(b.dim) && std::env::var_os(PORTABLE_ENV).is_none() {
            return fused::forward_backward(self, b);
        }
        self.forward_backward_portable(b, scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain B×B TFRS formulation, in f64: one row per example, one column per example.
    fn reference_loss(
        q: &[f64],
        c: &[f64],
        d: usize,
        rows: &[(u32, u32)],
        bias: &[f64],
        temp: f64,
        remove_hits: bool,
    ) -> f64 {
        let mut loss = 0.0;
        for (r, &(qi, ci)) in rows.iter().enumerate() {
            let logit = |col: usize| {
                let cj = rows[col].1 as usize;
                let dot: f64 = (0..d).map(|k| q[qi as usize * d + k] * c[cj * d + k]).sum();
                dot / temp + bias.get(cj).copied().unwrap_or(0.0)
            };
            let mut z = 0.0;
            for (col, &(_, cj)) in rows.iter().enumerate() {
                if remove_hits && col != r && cj == ci {
                    continue;
                }
                z += logit(col).exp();
            }
            loss += z.ln() - logit(r);
        }
        loss
    }

    fn check(temp: f32, remove_hits: bool, with_bias: bool) {
        let d = 3;
        // 7 examples over 3 distinct queries and 4 distinct candidates, with repeats.
        let rows: Vec<(u32, u32)> = vec![(0, 0), (1, 1), (0, 1), (2, 2), (1, 0), (2, 3), (0, 0)];
        let q: Vec<f32> = (0..3 * d).map(|i| ((i as f32) * 0.7).sin()).collect();
        let c: Vec<f32> = (0..4 * d).map(|i| ((i as f32) * 1.3).cos()).collect();
        let mut mult = vec![0.0f32; 4];
        for &(_, ci) in &rows {
            mult[ci as usize] += 1.0;
        }
        let bias: Vec<f32> = if with_bias {
            vec![0.3, -0.2, 0.5, 0.1]
        } else {
            vec![]
        };
        let sm = InBatchSoftmax {
            temperature: temp,
            remove_accidental_hits: remove_hits,
        };
        let out = sm.forward_backward(&SoftmaxBatch {
            queries: &q,
            candidates: &c,
            dim: d,
            rows: &rows,
            multiplicity: &mult,
            bias: &bias,
        });
        let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let (q64, c64, b64) = (to64(&q), to64(&c), to64(&bias));
        let f =
            |q: &[f64], c: &[f64]| reference_loss(q, c, d, &rows, &b64, temp as f64, remove_hits);
        let want = f(&q64, &c64);
        assert!(
            (out.loss - want).abs() < 1e-4 * want.abs().max(1.0),
            "{} vs {want}",
            out.loss
        );
        // Finite differences, central, in f64 on the reference.
        let h = 1e-5;
        for i in 0..q64.len() {
            let (mut p, mut m) = (q64.clone(), q64.clone());
            p[i] += h;
            m[i] -= h;
            let num = (f(&p, &c64) - f(&m, &c64)) / (2.0 * h);
            assert!(
                (out.grad_queries[i] as f64 - num).abs() < 1e-3,
                "dQ[{i}] {} vs {num}",
                out.grad_queries[i]
            );
        }
        for i in 0..c64.len() {
            let (mut p, mut m) = (c64.clone(), c64.clone());
            p[i] += h;
            m[i] -= h;
            let num = (f(&q64, &p) - f(&q64, &m)) / (2.0 * h);
            assert!(
                (out.grad_candidates[i] as f64 - num).abs() < 1e-3,
                "dC[{i}] {} vs {num}",
                out.grad_candidates[i]
            );
        }
    }

    #[test]
    fn deduplicated_loss_equals_full_in_batch_softmax_with_matching_gradients() {
        check(1.0, false, false);
    }

    #[test]
    fn temperature_is_exact() {
        check(0.3, false, false);
    }

    #[test]
    fn accidental_hit_removal_is_exact() {
        check(1.0, true, false);
        check(0.5, true, true);
    }

    #[test]
    fn logit_bias_is_exact() {
        check(1.0, false, true);
    }
}
