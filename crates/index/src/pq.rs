//! Product quantization of residuals with 16 codewords (4 bits) per subspace, and the
//! score-aware ("anisotropic") code assignment of ScaNN.
//!
//! A residual `r = x − c` (row minus its partition centre) is split into `m` contiguous
//! subspaces and each part replaced by the nearest of 16 codewords. ScaNN's observation is
//! that for inner-product search the error *along* `x` matters more than the error across
//! it: with `e` the quantization error and `x̂ = x / ‖x‖`, codes are chosen to minimise
//! `‖e‖² + (η − 1)(e · x̂)²`, where `η = (d − 1) T² / (1 − T²)` for ScaNN's threshold `T`
//! (T = 0.2 gives η ≈ 2.6 at d = 64). Codebooks are trained by k-means on residuals; the
//! assignment is then refined by coordinate descent over subspaces under that loss.

use rayon::prelude::*;

use crate::kmeans::{kmeans, Init};

/// Codewords per subspace.
pub const CODEWORDS: usize = 16;

/// A trained product quantizer.
#[derive(Debug, Clone)]
pub struct ProductQuantizer {
    pub dim: usize,
    pub subspaces: usize,
    /// `codebooks[16 * start(m) + c * width(m) ..]`: codeword `c` of subspace `m`.
    pub codebooks: Vec<f32>,
    /// The same numbers with each subspace's block transposed (`[t][c]`), so that the 16
    /// entries of a table are one vectorised loop.
    transposed: Vec<f32>,
}

/// The η of ScaNN's anisotropic loss for threshold `t` in dimension `dim` (1 for `t = 0`).
pub fn eta(t: f32, dim: usize) -> f32 {
    if t <= 0.0 {
        return 1.0;
    }
    let t2 = (t * t).min(0.99);
    ((dim as f32 - 1.0) * t2 / (1.0 - t2)).max(1.0)
}

impl ProductQuantizer {
    /// A quantizer with the given codebooks (layout of [`ProductQuantizer::codebooks`]).
    pub fn new(dim: usize, subspaces: usize, codebooks: Vec<f32>) -> Self {
        let mut pq = ProductQuantizer {
            dim,
            subspaces,
            codebooks,
            transposed: Vec::new(),
        };
        pq.transpose();
        pq
    }

    fn transpose(&mut self) {
        let mut t = vec![0.0f32; self.codebooks.len()];
        for m in 0..self.subspaces {
            let (s, w) = (self.start(m), self.width(m));
            for c in 0..CODEWORDS {
                for d in 0..w {
                    t[CODEWORDS * s + d * CODEWORDS + c] =
                        self.codebooks[CODEWORDS * s + c * w + d];
                }
            }
        }
        self.transposed = t;
    }

    /// First dimension of subspace `m` (subspaces are as equal as `dim` allows).
    pub fn start(&self, m: usize) -> usize {
        m * self.dim / self.subspaces
    }

    /// Width of subspace `m`.
    pub fn width(&self, m: usize) -> usize {
        self.start(m + 1) - self.start(m)
    }

    fn codeword(&self, m: usize, c: usize) -> &[f32] {
        let (s, w) = (self.start(m), self.width(m));
        &self.codebooks[CODEWORDS * s + c * w..CODEWORDS * s + (c + 1) * w]
    }

    /// Trains codebooks on `residuals` (row-major, `dim` wide).
    pub fn train(residuals: &[f32], dim: usize, subspaces: usize, iters: usize, seed: u64) -> Self {
        assert!(subspaces >= 1 && subspaces <= dim);
        let n = residuals.len() / dim;
        let mut pq = ProductQuantizer::new(dim, subspaces, vec![0.0; CODEWORDS * dim]);
        for m in 0..subspaces {
            let (s, w) = (pq.start(m), pq.width(m));
            let part: Vec<f32> = residuals
                .chunks_exact(dim)
                .flat_map(|r| r[s..s + w].iter().copied())
                .collect();
            let k = CODEWORDS.min(n);
            let found = if k == 0 {
                vec![0.0; w]
            } else {
                kmeans(
                    &part,
                    w,
                    k,
                    iters,
                    seed.wrapping_add(m as u64),
                    Init::PlusPlus,
                    None,
                )
            };
            let book = &mut pq.codebooks[CODEWORDS * s..CODEWORDS * (s + w)];
            for c in 0..CODEWORDS {
                // Fewer rows than codewords: the spare codewords repeat the first.
                let from = if c < k { c } else { 0 };
                book[c * w..(c + 1) * w].copy_from_slice(&found[from * w..(from + 1) * w]);
            }
        }
        pq.transpose();
        pq
    }

    /// Refines the codebooks for ScaNN's anisotropic loss with weight `eta`: alternately
    /// encodes the sample under the loss and solves for the codebooks that minimise it with
    /// those codes fixed. The loss is quadratic in the codebooks, so each solve is one
    /// linear system of size `16 · dim` (normal equations, Cholesky), damped towards the
    /// previous codebooks so that unused codewords stay put.
    ///
    /// `rows` are the original rows and `residuals` their residuals, both `dim` wide.
    pub fn refine_anisotropic(&mut self, rows: &[f32], residuals: &[f32], eta: f32, rounds: usize) {
        if eta == 1.0 {
            return;
        }
        let d = self.dim;
        let n = rows.len() / d;
        let p = CODEWORDS * d;
        let w = (eta - 1.0) as f64;
        for _ in 0..rounds {
            let (mut a, mut b) = rows
                .par_chunks(d * 1024)
                .zip(residuals.par_chunks(d * 1024))
                .fold(
                    || (vec![0.0f64; p * p], vec![0.0f64; p]),
                    |(mut a, mut b), (xs, rs)| {
                        let mut codes = vec![0u8; self.subspaces];
                        let mut idx = vec![0usize; d];
                        let mut xh = vec![0.0f64; d];
                        for (x, r) in xs.chunks_exact(d).zip(rs.chunks_exact(d)) {
                            self.encode(x, r, eta, &mut codes);
                            for (m, &code) in codes.iter().enumerate() {
                                let (s, wd) = (self.start(m), self.width(m));
                                for t in 0..wd {
                                    idx[s + t] = CODEWORDS * s + code as usize * wd + t;
                                }
                            }
                            let norm = x.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt();
                            if norm == 0.0 {
                                continue;
                            }
                            xh.iter_mut()
                                .zip(x)
                                .for_each(|(h, &v)| *h = v as f64 / norm);
                            let par: f64 = xh.iter().zip(r).map(|(h, &v)| h * v as f64).sum();
                            for i in 0..d {
                                let row = idx[i] * p;
                                a[row + idx[i]] += 1.0;
                                let wi = w * xh[i];
                                for j in 0..d {
                                    a[row + idx[j]] += wi * xh[j];
                                }
                                b[idx[i]] += r[i] as f64 + w * par * xh[i];
                            }
                        }
                        (a, b)
                    },
                )
                .reduce(
                    || (vec![0.0f64; p * p], vec![0.0f64; p]),
                    |(mut a, mut b), (a2, b2)| {
                        a.iter_mut().zip(&a2).for_each(|(x, y)| *x += y);
                        b.iter_mut().zip(&b2).for_each(|(x, y)| *x += y);
                        (a, b)
                    },
                );
            // Damping towards the current codebooks: λ‖c − c₀‖².
            let lambda = 1e-3 * (n as f64 / p as f64).max(1.0);
            for i in 0..p {
                a[i * p + i] += lambda;
                b[i] += lambda * self.codebooks[i] as f64;
            }
            if cholesky_solve(&mut a, &mut b, p) {
                for (c, v) in self.codebooks.iter_mut().zip(&b) {
                    *c = *v as f32;
                }
                self.transpose();
            }
        }
    }

    /// Codes of residual `r` of row `x` under the anisotropic loss with weight `eta`
    /// (`eta = 1` is plain nearest-codeword assignment).
    pub fn encode(&self, x: &[f32], r: &[f32], eta: f32, codes: &mut [u8]) {
        let m_count = self.subspaces;
        let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        let mut sq = [[0.0f32; CODEWORDS]; 256];
        let mut par = [[0.0f32; CODEWORDS]; 256];
        debug_assert!(m_count <= 256);
        for m in 0..m_count {
            let (s, w) = (self.start(m), self.width(m));
            let mut best = (f32::INFINITY, 0u8);
            for c in 0..CODEWORDS {
                let cw = self.codeword(m, c);
                let (mut e2, mut ep) = (0.0f32, 0.0f32);
                for t in 0..w {
                    let e = r[s + t] - cw[t];
                    e2 += e * e;
                    if norm > 0.0 {
                        ep += e * x[s + t] / norm;
                    }
                }
                sq[m][c] = e2;
                par[m][c] = ep;
                if e2 < best.0 {
                    best = (e2, c as u8);
                }
            }
            codes[m] = best.1;
        }
        if eta == 1.0 || norm == 0.0 {
            return;
        }
        let w = eta - 1.0;
        let mut total: f32 = (0..m_count).map(|m| par[m][codes[m] as usize]).sum();
        for _ in 0..3 {
            let mut changed = false;
            for m in 0..m_count {
                let rest = total - par[m][codes[m] as usize];
                let mut best = (f32::INFINITY, codes[m]);
                for c in 0..CODEWORDS {
                    let p = rest + par[m][c];
                    let loss = sq[m][c] + w * p * p;
                    if loss < best.0 {
                        best = (loss, c as u8);
                    }
                }
                if best.1 != codes[m] {
                    changed = true;
                    codes[m] = best.1;
                }
                total = rest + par[m][codes[m] as usize];
            }
            if !changed {
                break;
            }
        }
    }

    /// The inner products of `query` with every codeword: `out[m * 16 + c]`.
    pub fn tables(&self, query: &[f32], out: &mut [f32]) {
        for (m, table) in out
            .chunks_exact_mut(CODEWORDS)
            .enumerate()
            .take(self.subspaces)
        {
            let (s, w) = (self.start(m), self.width(m));
            table.fill(0.0);
            for d in 0..w {
                let q = query[s + d];
                let row = &self.transposed[CODEWORDS * s + d * CODEWORDS..][..CODEWORDS];
                for (o, &c) in table.iter_mut().zip(row) {
                    *o += q * c;
                }
            }
        }
    }

    /// Adds the decoded residual of `codes` to `out`.
    #[cfg(test)]
    pub fn decode_add(&self, codes: &[u8], out: &mut [f32]) {
        for (m, &c) in codes.iter().enumerate().take(self.subspaces) {
            let s = self.start(m);
            for (o, v) in out[s..].iter_mut().zip(self.codeword(m, c as usize)) {
                *o += v;
            }
        }
    }
}

/// Solves `a · x = b` in place (`x` into `b`) for a symmetric positive-definite `a`
/// (`n × n`, row-major; overwritten by its Cholesky factor). False if `a` is not
/// positive definite.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut diag = a[j * n + j];
        for k in 0..j {
            diag -= a[j * n + k] * a[j * n + k];
        }
        if diag <= 0.0 || !diag.is_finite() {
            return false;
        }
        let diag = diag.sqrt();
        a[j * n + j] = diag;
        for i in j + 1..n {
            let mut v = a[i * n + j];
            for k in 0..j {
                v -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = v / diag;
        }
    }
    for i in 0..n {
        let mut v = b[i];
        for k in 0..i {
            v -= a[i * n + k] * b[k];
        }
        b[i] = v / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut v = b[i];
        for k in i + 1..n {
            v -= a[k * n + i] * b[k];
        }
        b[i] = v / a[i * n + i];
    }
    true
}

/// Float tables quantized to bytes for the SIMD scan: entry `1 + round((t − min_m) / scale)`
/// in `1..=127`, so that a sum `acc` of `m` entries estimates `bias + scale · (acc − m)`.
pub struct QuantizedTables {
    pub bytes: Vec<u8>,
    pub bias: f32,
    pub scale: f32,
}

/// Quantizes `tables` (16 per subspace) with one scale for all subspaces.
pub fn quantize_tables(tables: &[f32], subspaces: usize) -> QuantizedTables {
    let mut bias = 0.0f32;
    let mut range = 0.0f32;
    let mut mins = vec![0.0f32; subspaces];
    for (t, lo_out) in tables.chunks_exact(CODEWORDS).zip(mins.iter_mut()) {
        let lo = t.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = t.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        *lo_out = lo;
        bias += lo;
        range = range.max(hi - lo);
    }
    let scale = if range > 0.0 { range / 126.0 } else { 1.0 };
    let inv = 1.0 / scale;
    let mut bytes = vec![0u8; subspaces * CODEWORDS];
    for ((t, out), &lo) in tables
        .chunks_exact(CODEWORDS)
        .zip(bytes.chunks_exact_mut(CODEWORDS))
        .zip(&mins)
    {
        for (o, &v) in out.iter_mut().zip(t) {
            // Round half up; v ≥ lo, so the value is never negative.
            *o = 1 + ((v - lo) * inv + 0.5).min(126.0) as u8;
        }
    }
    QuantizedTables { bytes, bias, scale }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Squared total and parallel quantization errors of `row` (as its own residual).
    fn errors(pq: &ProductQuantizer, row: &[f32], eta: f32) -> (f32, f32) {
        let mut codes = vec![0u8; pq.subspaces];
        pq.encode(row, row, eta, &mut codes);
        let mut dec = vec![0.0f32; row.len()];
        pq.decode_add(&codes, &mut dec);
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        let e: Vec<f32> = row.iter().zip(&dec).map(|(a, b)| a - b).collect();
        let p: f32 = e.iter().zip(row).map(|(a, b)| a * b / norm).sum();
        (e.iter().map(|v| v * v).sum(), p * p)
    }

    #[test]
    fn anisotropic_codes_cut_the_parallel_error() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let dim = 16;
        let n = 2000;
        let x: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let pq = ProductQuantizer::train(&x, dim, 8, 10, 1);
        let (mut par_plain, mut par_aniso, mut tot_plain, mut tot_aniso) = (0.0, 0.0, 0.0, 0.0);
        for row in x.chunks_exact(dim) {
            for (eta, par, tot) in [
                (1.0, &mut par_plain, &mut tot_plain),
                (eta(0.2, 64), &mut par_aniso, &mut tot_aniso),
            ] {
                let (t, p) = errors(&pq, row, eta);
                *par += p as f64;
                *tot += t as f64;
            }
        }
        assert!(par_aniso < 0.7 * par_plain, "{par_aniso} vs {par_plain}");
        assert!(
            tot_aniso >= tot_plain,
            "plain codes minimise the total error"
        );
    }

    #[test]
    fn cholesky_solves_a_small_system() {
        let mut a = vec![4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let orig = a.clone();
        let mut b = vec![1.0, 2.0, 3.0];
        assert!(cholesky_solve(&mut a, &mut b, 3));
        for i in 0..3 {
            let v: f64 = (0..3).map(|j| orig[i * 3 + j] * b[j]).sum();
            assert!((v - [1.0, 2.0, 3.0][i]).abs() < 1e-12);
        }
        let mut not_pd = vec![1.0, 2.0, 2.0, 1.0];
        assert!(!cholesky_solve(&mut not_pd, &mut [1.0, 1.0], 2));
    }

    #[test]
    fn refined_codebooks_lower_the_anisotropic_loss() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
        let dim = 8;
        let x: Vec<f32> = (0..3000 * dim)
            .map(|i| rng.gen_range(-1.0..1.0) * if i % dim < 2 { 3.0 } else { 1.0 })
            .collect();
        let e = eta(0.3, 64);
        let loss = |pq: &ProductQuantizer| -> f64 {
            x.chunks_exact(dim)
                .map(|row| {
                    let (t, p) = errors(pq, row, e);
                    (t + (e - 1.0) * p) as f64
                })
                .sum()
        };
        let mut pq = ProductQuantizer::train(&x, dim, 4, 10, 2);
        let before = loss(&pq);
        pq.refine_anisotropic(&x, &x, e, 3);
        let after = loss(&pq);
        assert!(after < 0.97 * before, "{after} vs {before}");
    }

    #[test]
    fn quantized_tables_estimate_the_sum() {
        let tables: Vec<f32> = (0..4 * 16)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 3.0)
            .collect();
        let q = quantize_tables(&tables, 4);
        let codes = [3usize, 15, 0, 7];
        let exact: f32 = codes
            .iter()
            .enumerate()
            .map(|(m, &c)| tables[m * 16 + c])
            .sum();
        let acc: u32 = codes
            .iter()
            .enumerate()
            .map(|(m, &c)| q.bytes[m * 16 + c] as u32)
            .sum();
        let est = q.bias + q.scale * (acc as f32 - 4.0);
        assert!((est - exact).abs() <= 4.0 * q.scale / 2.0 + 1e-5);
        assert!(q.bytes.iter().all(|&b| (1..=127).contains(&b)));
    }
}
