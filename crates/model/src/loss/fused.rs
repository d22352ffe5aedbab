//! The in-batch softmax fused over row blocks, with AVX2+FMA micro-kernels.
//!
//! The plain formulation writes the whole U×C logits matrix, reads it back for the
//! exponentials, writes the gradient over it and reads it twice more for the two gradient
//! products: at embedding dimension 32 those passes over 268 MB (U = C = 8,192) cost as much
//! as the arithmetic. Here each rayon task takes a block of [`ROWS`] queries and does all of
//! it while the block's logits sit in the core's cache: logits, row maxima, exponentials,
//! the gradient of the logits, that block's query gradient, and its share of the candidate
//! gradient (summed per task, added up at the end).
//!
//! Every product runs through one register-blocked kernel, `tile6x16`: a 6×16 output
//! tile in twelve AVX registers, one broadcast per row and two loads per step of the inner
//! dimension. The three products only differ in the strides they hand it. The candidate
//! matrix is packed once per batch into 16-column panels for the logits.
//!
//! Compiled on x86-64 only; used when the CPU has AVX2 and FMA and the dimension is a multiple of 16; otherwise
//! [`crate::loss`] runs its portable path. Tests hold this path to that one.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::{InBatchSoftmax, SoftmaxBatch, SoftmaxOutput};

/// Queries per task: a block's logits (`ROWS × C` floats) stay in cache between the passes.
pub const ROWS: usize = 24;
/// Candidates per step of the query-gradient product (the slice of `C` kept in L1/L2).
const KC: usize = 256;
/// Candidate columns are padded to a multiple of this (16 for the logits panels, 6 for the
/// candidate-gradient tiles).
const COL_PAD: usize = 48;

/// Whether the fused path can run: AVX2 and FMA on this CPU, and `dim % 16 == 0`.
pub fn available(dim: usize) -> bool {
    dim.is_multiple_of(16)
        && dim > 0
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
}

/// `out[i][0..16] (+)= Σ_k a(i, k) · b[k][0..16]` for i < 6, where `a(i, k)` is
/// `a[i·a_rs + k·a_cs]`, `b[k]` starts at `b + k·ldb` and `out[i]` at `out + i·ldo`.
///
/// # Safety
/// AVX2 and FMA must be present, and every address named above must be in bounds.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile6x16(
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    kdim: usize,
    b: *const f32,
    ldb: usize,
    out: *mut f32,
    ldo: usize,
    accumulate: bool,
) {
    let mut acc = [_mm256_setzero_ps(); 12];
    for k in 0..kdim {
        let b0 = _mm256_loadu_ps(b.add(k * ldb));
        let b1 = _mm256_loadu_ps(b.add(k * ldb + 8));
        let ak = a.add(k * a_cs);
        for i in 0..6 {
            let x = _mm256_broadcast_ss(&*ak.add(i * a_rs));
            acc[2 * i] = _mm256_fmadd_ps(x, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm256_fmadd_ps(x, b1, acc[2 * i + 1]);
        }
    }
    for i in 0..6 {
        let o = out.add(i * ldo);
        let (mut v0, mut v1) = (acc[2 * i], acc[2 * i + 1]);
        if accumulate {
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(o));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(o.add(8)));
        }
        _mm256_storeu_ps(o, v0);
        _mm256_storeu_ps(o.add(8), v1);
    }
}

/// `max_j row[j]·scale + bias[j]` (`bias` empty for none), eight lanes at a time.
#[target_feature(enable = "avx2,fma")]
unsafe fn row_max(row: &[f32], scale: f32, bias: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    let lanes = |m: &mut [f32; 8], v: &[f32], b: Option<&[f32]>| {
        for l in 0..8 {
            let x = v[l] * scale + b.map_or(0.0, |b| b[l]);
            m[l] = if x > m[l] { x } else { m[l] };
        }
    };
    let n8 = row.len() / 8 * 8;
    if bias.is_empty() {
        for ch in row[..n8].chunks_exact(8) {
            lanes(&mut m, ch, None);
        }
    } else {
        for (ch, b) in row[..n8].chunks_exact(8).zip(bias[..n8].chunks_exact(8)) {
            lanes(&mut m, ch, Some(b));
        }
    }
    let mut mx = m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for (j, &v) in row.iter().enumerate().skip(n8) {
        mx = mx.max(v * scale + bias.get(j).copied().unwrap_or(0.0));
    }
    mx
}

/// `row[j] *= n[j] · f`.
#[target_feature(enable = "avx2,fma")]
unsafe fn scale_row(row: &mut [f32], n: &[f32], f: f32) {
    for (v, &w) in row.iter_mut().zip(n) {
        *v *= w * f;
    }
}

/// Per-thread buffers and sums.
#[derive(Default)]
struct Acc {
    grad_candidates: Vec<f32>,
    logits: Vec<f32>,
    queries: Vec<f32>,
    block_dq: Vec<f32>,
    /// A row's positives: their shifted logits and accidental-hit corrections.
    pos: Vec<f32>,
    fixes: Vec<f64>,
    loss: f64,
    product_seconds: f64,
    /// Whether a block of the current call has used this accumulator (it is zeroed first).
    used: bool,
}

/// Buffers kept between calls on one thread, so a training loop does not map, fault in and
/// zero megabytes of fresh pages for every batch.
#[derive(Default)]
struct Workspace {
    cpad: Vec<f32>,
    panels: Vec<f32>,
    accs: Vec<std::sync::Mutex<Acc>>,
}

thread_local! {
    /// The calling thread's workspace (taken out during a call, so a nested call on the
    /// same thread simply starts an empty one).
    static WORKSPACE: std::cell::RefCell<Workspace> = std::cell::RefCell::default();
}

/// The fused forward and backward pass; see the module docs. Same result as
/// [`InBatchSoftmax::forward_backward`] up to rounding.
///
/// # Panics
/// If [`available`] is false for `b.dim`.
pub fn forward_backward(sm: &InBatchSoftmax, b: &SoftmaxBatch) -> SoftmaxOutput {
    assert!(
        available(b.dim),
        "fused softmax needs AVX2, FMA and dim % 16 == 0"
    );
    let d = b.dim;
    let u = b.queries.len() / d;
    let c = b.candidates.len() / d;
    let cp = c.div_ceil(COL_PAD) * COL_PAD;
    let inv_t = 1.0 / sm.temperature;
    let bias = |j: usize| b.bias.get(j).copied().unwrap_or(0.0);

    let mut ws = WORKSPACE.with(|w| std::mem::take(&mut *w.borrow_mut()));
    // The candidates zero-padded to `cp` rows, and packed into 16-column panels
    // (panel p, step k: candidates 16p..16p+16 of dimension k).
    ws.cpad.resize(cp * d, 0.0);
    let cpad = &mut ws.cpad[..cp * d];
    cpad[..c * d].copy_from_slice(b.candidates);
    cpad[c * d..].fill(0.0);
    let cpad = &*cpad;
    ws.panels.resize(cp * d, 0.0);
    ws.panels[..cp * d]
        .par_chunks_mut(16 * d)
        .enumerate()
        .for_each(|(p, panel)| {
            for k in 0..d {
                for j in 0..16 {
                    panel[k * 16 + j] = cpad[(p * 16 + j) * d + k];
                }
            }
        });
    let panels = &ws.panels[..cp * d];
    // The examples grouped by query (CSR), so a block finds its own.
    let mut start = vec![0u32; u + 1];
    for &(qi, _) in b.rows {
        start[qi as usize + 1] += 1;
    }
    for i in 0..u {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut cols = vec![0u32; b.rows.len()];
    for &(qi, ci) in b.rows {
        cols[fill[qi as usize] as usize] = ci;
        fill[qi as usize] += 1;
    }

    let mut grad_queries = vec![0.0f32; u * d];
    let threads = rayon::current_num_threads().max(1);
    // One accumulator per worker thread (indexed by rayon's thread index, so each lock is
    // only ever taken by its own thread): blocks are handed out one by one for balance,
    // without an accumulator per task to zero and add up. Each is sized here and zeroed by
    // its own thread, in the parallel region, when its first block arrives.
    ws.accs.resize_with(threads, Default::default);
    for m in &mut ws.accs {
        let acc = m.get_mut().unwrap_or_else(|e| e.into_inner());
        acc.grad_candidates.resize(cp * d, 0.0);
        acc.logits.resize(ROWS * cp, 0.0);
        acc.queries.resize(ROWS * d, 0.0);
        acc.block_dq.resize(ROWS * d, 0.0);
        acc.used = false;
    }
    let accs = &ws.accs;
    grad_queries
        .par_chunks_mut(ROWS * d)
        .enumerate()
        .for_each(|(blk, dq)| {
            let slot = rayon::current_thread_index().unwrap_or(0) % threads;
            let mut guard = accs[slot].lock().unwrap_or_else(|e| e.into_inner());
            let acc = &mut *guard;
            let r0 = blk * ROWS;
            let rows = dq.len() / d;
            let Acc {
                grad_candidates,
                logits,
                queries,
                block_dq,
                pos,
                fixes,
                loss,
                product_seconds,
                used,
            } = acc;
            let grad_candidates = &mut grad_candidates[..cp * d];
            let logits = &mut logits[..ROWS * cp];
            if !*used {
                grad_candidates.fill(0.0);
                (*loss, *product_seconds, *used) = (0.0, 0.0, true);
            }
            queries[..rows * d].copy_from_slice(&b.queries[r0 * d..(r0 + rows) * d]);
            queries[rows * d..].fill(0.0);
            let t0 = std::time::Instant::now();
            // Logits of the block: S = Q·Cᵀ, panel by panel.
            // SAFETY: `available` checked AVX2+FMA; queries is ROWS×d, panels cp/16 panels
            // of 16×d, logits ROWS×cp; every tile stays inside them.
            unsafe {
                for p in 0..cp / 16 {
                    for g in 0..ROWS / 6 {
                        tile6x16(
                            queries.as_ptr().add(g * 6 * d),
                            d,
                            1,
                            d,
                            panels.as_ptr().add(p * 16 * d),
                            16,
                            logits.as_mut_ptr().add(g * 6 * cp + p * 16),
                            cp,
                            false,
                        );
                    }
                }
            }
            *product_seconds += t0.elapsed().as_secs_f64();
            // Softmax and the gradient of the logits, row by row.
            for (i, row) in logits.chunks_mut(cp).enumerate() {
                if i >= rows {
                    row.fill(0.0);
                    continue;
                }
                let q = r0 + i;
                let (s, e) = (start[q] as usize, start[q + 1] as usize);
                let live = &mut row[..c];
                // SAFETY: `available` checked AVX2+FMA.
                let mx = unsafe { row_max(live, inv_t, b.bias) };
                pos.clear();
                pos.extend(
                    cols[s..e]
                        .iter()
                        .map(|&ci| live[ci as usize] * inv_t + bias(ci as usize) - mx),
                );
                let z = crate::fastexp::exp_affine_dot(live, inv_t, b.bias, mx, b.multiplicity);
                let mut a = 0.0f64;
                fixes.clear();
                for (&ci, &l) in cols[s..e].iter().zip(pos.iter()) {
                    let mut zr = z;
                    let mut fix = 0.0;
                    if sm.remove_accidental_hits {
                        let extra = b.multiplicity[ci as usize] as f64 - 1.0;
                        let e_pos = (l as f64).exp();
                        zr -= extra * e_pos;
                        fix = e_pos * extra / zr;
                    }
                    a += 1.0 / zr;
                    *loss += zr.ln() - l as f64;
                    fixes.push(fix);
                }
                // SAFETY: as above.
                unsafe { scale_row(live, b.multiplicity, (a * inv_t as f64) as f32) };
                for (&ci, &fix) in cols[s..e].iter().zip(fixes.iter()) {
                    live[ci as usize] -= ((1.0 + fix) * inv_t as f64) as f32;
                }
                row[c..].fill(0.0);
            }
            let t1 = std::time::Instant::now();
            // SAFETY: as above; block_dq is ROWS×d, cpad cp×d, grad_candidates cp×d.
            unsafe {
                block_gradients(logits, queries, cpad, d, cp, block_dq, grad_candidates);
            }
            dq.copy_from_slice(&block_dq[..rows * d]);
            *product_seconds += t1.elapsed().as_secs_f64();
        });
    let mut grad_candidates = vec![0.0f32; c * d];
    let (mut loss, mut core_seconds) = (0.0f64, 0.0f64);
    for m in accs {
        let acc = m.lock().unwrap_or_else(|e| e.into_inner());
        if acc.used {
            for (a, b) in grad_candidates.iter_mut().zip(&acc.grad_candidates) {
                *a += b;
            }
            loss += acc.loss;
            core_seconds += acc.product_seconds;
        }
    }
    WORKSPACE.with(|w| *w.borrow_mut() = ws);
    SoftmaxOutput {
        loss,
        grad_queries,
        grad_candidates,
        product_flops: 6.0 * u as f64 * c as f64 * d as f64,
        // Core-seconds over the worker count: the wall time of the products on all cores.
        product_seconds: core_seconds / threads as f64,
    }
}

/// `dq = G·C` (overwritten) and `dc += Gᵀ·Q` for one block: `g` is ROWS×cp, `q` ROWS×d,
/// `cpad` cp×d, `dq` ROWS×d, `dc` cp×d.
///
/// # Safety
/// AVX2 and FMA must be present; the slices must have the sizes above, `d % 16 == 0`,
/// `cp % COL_PAD == 0`.
unsafe fn block_gradients(
    g: &[f32],
    q: &[f32],
    cpad: &[f32],
    d: usize,
    cp: usize,
    dq: &mut [f32],
    dc: &mut [f32],
) {
    debug_assert!(g.len() >= ROWS * cp && q.len() >= ROWS * d && cpad.len() >= cp * d);
    debug_assert!(dq.len() >= ROWS * d && dc.len() >= cp * d);
    {
        // dQ = G·C, blocked over KC candidates so the slice of C stays in cache.
        for k0 in (0..cp).step_by(KC) {
            let kn = KC.min(cp - k0);
            for gi in 0..ROWS / 6 {
                for h in 0..d / 16 {
                    tile6x16(
                        g.as_ptr().add(gi * 6 * cp + k0),
                        cp,
                        1,
                        kn,
                        cpad.as_ptr().add(k0 * d + h * 16),
                        d,
                        dq.as_mut_ptr().add(gi * 6 * d + h * 16),
                        d,
                        k0 > 0,
                    );
                }
            }
        }
        // dC += Gᵀ·Q: six candidates by sixteen dimensions per tile, the block's rows as
        // the inner dimension.
        for j in 0..cp / 6 {
            for h in 0..d / 16 {
                tile6x16(
                    g.as_ptr().add(j * 6),
                    1,
                    cp,
                    ROWS,
                    q.as_ptr().add(h * 16),
                    d,
                    dc.as_mut_ptr().add(j * 6 * d + h * 16),
                    d,
                    true,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn compare(u: usize, c: usize, d: usize, temp: f32, hits: bool, with_bias: bool) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64((u * 31 + c * 7 + d) as u64);
        let q: Vec<f32> = (0..u * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let cand: Vec<f32> = (0..c * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // Every query and candidate used at least once, plus repeats.
        let mut rows: Vec<(u32, u32)> = (0..u.max(c))
            .map(|i| ((i % u) as u32, (i % c) as u32))
            .collect();
        for _ in 0..u {
            rows.push((rng.gen_range(0..u) as u32, rng.gen_range(0..c) as u32));
        }
        let mut mult = vec![0.0f32; c];
        for &(_, ci) in &rows {
            mult[ci as usize] += 1.0;
        }
        let bias: Vec<f32> = if with_bias {
            (0..c).map(|_| rng.gen_range(-2.0..0.0)).collect()
        } else {
            vec![]
        };
        let sm = InBatchSoftmax {
            temperature: temp,
            remove_accidental_hits: hits,
        };
        let batch = SoftmaxBatch {
            queries: &q,
            candidates: &cand,
            dim: d,
            rows: &rows,
            multiplicity: &mult,
            bias: &bias,
        };
        let want = sm.forward_backward_portable(&batch, &mut Vec::new());
        let got = forward_backward(&sm, &batch);
        assert!(
            (got.loss - want.loss).abs() <= 1e-4 * want.loss.abs(),
            "loss {} vs {}",
            got.loss,
            want.loss
        );
        for (name, g, w) in [
            ("dQ", &got.grad_queries, &want.grad_queries),
            ("dC", &got.grad_candidates, &want.grad_candidates),
        ] {
            assert_eq!(g.len(), w.len(), "{name} size");
            let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
                assert!((a - b).abs() <= 2e-4 * scale, "{name}[{i}] {a} vs {b}");
            }
        }
        assert_eq!(got.product_flops, want.product_flops);
    }

    #[test]
    fn fused_path_matches_the_portable_one() {
        if !available(16) {
            // Written past the test harness's capture, so that the skip shows in the run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "fused_path_matches_the_portable_one: SKIPPED (no AVX2+FMA on this CPU)"
            );
            return;
        }
        // Sizes off every tile and padding boundary, several blocks, every option.
        compare(1, 1, 16, 1.0, false, false);
        compare(37, 101, 32, 1.0, false, false);
        compare(61, 50, 64, 0.5, true, true);
        compare(24, 48, 16, 1.0, true, false);
        compare(130, 300, 32, 0.2, false, true);
        compare(50, 700, 48, 1.0, false, false);
    }

    #[test]
    fn only_dimensions_of_whole_tiles_are_offered() {
        assert!(!available(0));
        assert!(!available(24));
        assert!(!available(33));
    }
}
