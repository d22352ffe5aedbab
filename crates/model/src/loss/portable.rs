//! The portable path of the in-batch softmax: the whole U×C logits matrix, then the passes
//! over it, with the products spread over cores by the shared GEMM. Any CPU, any dimension;
//! the reference the fused path is held to.

use rayon::prelude::*;
use twotower_kernels::gemm::{gemm, MatRef};

use super::{InBatchSoftmax, SoftmaxBatch, SoftmaxOutput};

impl InBatchSoftmax {
    /// The plain formulation: the whole U×C logits matrix, then the passes over it, with
    /// the products spread over cores by [`gemm`]. Runs on any CPU and any dimension.
    pub fn forward_backward_portable(
        &self,
        b: &SoftmaxBatch,
        scratch: &mut Vec<f32>,
    ) -> SoftmaxOutput {
        let d = b.dim;
        let u = b.queries.len() / d;
        let c = b.candidates.len() / d;
        let inv_t = 1.0 / self.temperature;
        let bias = |j: usize| b.bias.get(j).copied().unwrap_or(0.0);
        // S = Q·Cᵀ (beta 0: the old contents of the scratch are never read).
        if scratch.len() < u * c {
            scratch.resize(u * c, 0.0);
        }
        let e = &mut scratch[..u * c];
        let t0 = std::time::Instant::now();
        gemm(
            MatRef::new(b.queries, u, d),
            MatRef::new(b.candidates, c, d).t(),
            0.0,
            e,
        );
        let mut product_seconds = t0.elapsed().as_secs_f64();
        // Per query: the max logit l = S/τ + bias.
        let maxes: Vec<f32> = e
            .par_chunks(c)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold(f32::NEG_INFINITY, |m, (j, &s)| m.max(s * inv_t + bias(j)))
            })
            .collect();
        // The positives' logits, read before the matrix is overwritten.
        let pos: Vec<f32> = b
            .rows
            .iter()
            .map(|&(qi, ci)| e[qi as usize * c + ci as usize] * inv_t + bias(ci as usize))
            .collect();
        // E = exp(l − max) in place, Z = Σ n·E per query.
        let z: Vec<f64> = e
            .par_chunks_mut(c)
            .zip(maxes.par_iter())
            .map(|(row, &mx)| {
                crate::fastexp::exp_affine(row, inv_t, b.bias, mx);
                row.iter()
                    .zip(b.multiplicity)
                    .map(|(&v, &n)| (v * n) as f64)
                    .sum::<f64>()
            })
            .collect();
        // Per example: its own partition Z_r (accidental hits keep one copy of the positive).
        let mut a = vec![0.0f64; u];
        let mut loss = 0.0f64;
        let mut hit_fix = Vec::new();
        for (&(qi, ci), &l) in b.rows.iter().zip(&pos) {
            let (qi, ci) = (qi as usize, ci as usize);
            let e_pos = ((l - maxes[qi]) as f64).exp();
            let mut zr = z[qi];
            if self.remove_accidental_hits {
                zr -= (b.multiplicity[ci] as f64 - 1.0) * e_pos;
                hit_fix.push(e_pos * (b.multiplicity[ci] as f64 - 1.0) / zr);
            }
            a[qi] += 1.0 / zr;
            loss += zr.ln() - (l - maxes[qi]) as f64;
        }
        // dL/dS = (n_c · E · Σ_r 1/Z_r − [positives] − accidental-hit corrections) / τ.
        let g = e;
        g.par_chunks_mut(c)
            .zip(a.par_iter())
            .for_each(|(row, &au)| {
                let f = au * inv_t as f64;
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (*v as f64 * b.multiplicity[j] as f64 * f) as f32;
                }
            });
        for (k, &(qi, ci)) in b.rows.iter().enumerate() {
            let fix = hit_fix.get(k).copied().unwrap_or(0.0);
            g[qi as usize * c + ci as usize] -= ((1.0 + fix) * inv_t as f64) as f32;
        }
        let mut grad_queries = vec![0.0f32; u * d];
        let mut grad_candidates = vec![0.0f32; c * d];
        let t1 = std::time::Instant::now();
        gemm(
            MatRef::new(g, u, c),
            MatRef::new(b.candidates, c, d),
            0.0,
            &mut grad_queries,
        );
        gemm(
            MatRef::new(g, u, c).t(),
            MatRef::new(b.queries, u, d),
            0.0,
            &mut grad_candidates,
        );
        product_seconds += t1.elapsed().as_secs_f64();
        SoftmaxOutput {
            loss,
            grad_queries,
            grad_candidates,
            product_flops: 6.0 * u as f64 * c as f64 * d as f64,
            product_seconds,
        }
    }
}
