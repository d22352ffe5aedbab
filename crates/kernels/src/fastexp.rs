//! A fast `exp` for the softmax: the logits pass of in-batch training evaluates one
//! exponential per (query, candidate) pair, which costs as much as the matrix products at
//! embedding dimension 32. libm's `expf` is scalar; this one is branch-free (Cephes'
//! polynomial on a range-reduced argument, relative error below 2e-7). Where the CPU has
//! AVX2 and FMA the row functions run it eight lanes at a time with intrinsics
//! ([`exp_affine`], and [`exp_affine_dot`], which also sums the row against weights in the
//! same pass); elsewhere a plain loop. Tests hold both paths to `f64::exp`.

/// `exp(x)` to within 2e-7 relative error on [-87.3, 88.7]; 0 below (where f32 turns
/// subnormal: nothing a softmax sum can see), exp(88.7) above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let underflow = x < -87.3;
    let x = x.clamp(-87.3, 88.7);
    let n = (x * std::f32::consts::LOG2_E).round();
    // ln 2 split in two for an exact-enough range reduction.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5e-1;
    let y = p * r2 + r + 1.0;
    let y = f32::from_bits(y.to_bits().wrapping_add(((n as i32) << 23) as u32));
    if underflow {
        0.0
    } else {
        y
    }
}

#[inline(always)]
fn affine_generic(row: &mut [f32], scale: f32, bias: &[f32], shift: f32) {
    if bias.is_empty() {
        for v in row.iter_mut() {
            *v = exp(*v * scale - shift);
        }
    } else {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = exp(*v * scale + b - shift);
        }
    }
}

/// `Σ_j row[j]·weights[j]`, in f32 over runs of 256 and the runs in f64.
fn weighted_sum(row: &[f32], weights: &[f32]) -> f64 {
    row.chunks(256)
        .zip(weights.chunks(256))
        .map(|(r, w)| r.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() as f64)
        .sum()
}

/// [`exp`] on eight lanes, with AVX2 and FMA: the same polynomial, with the float-to-int
/// step done in one vector instruction (the scalar code's saturating `as i32` does not
/// vectorise, and cost more than the rest of the function).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let lo = _mm256_set1_ps(-87.3);
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
    // max/min return their second operand when either is NaN: a NaN stays NaN.
    let x = _mm256_min_ps(_mm256_set1_ps(88.7), _mm256_max_ps(lo, x));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.121_944_4e-4), r);
    let r2 = _mm256_mul_ps(r, r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5e-1,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    let e = _mm256_slli_epi32::<23>(_mm256_cvtps_epi32(n));
    let y = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), e));
    _mm256_andnot_ps(under, y)
}

/// The AVX2 body of [`exp_affine_dot`]: eight lanes at a time, the tail in scalar code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn affine_avx2(
    row: &mut [f32],
    scale: f32,
    bias: &[f32],
    shift: f32,
    weights: Option<&[f32]>,
) -> f64 {
    use std::arch::x86_64::*;
    let n8 = row.len() / 8 * 8;
    let (vs, vshift) = (_mm256_set1_ps(scale), _mm256_set1_ps(shift));
    let mut total = 0.0f64;
    let mut lanes = _mm256_setzero_ps();
    let p = row.as_mut_ptr();
    let mut j = 0;
    while j < n8 {
        // SAFETY: j + 8 ≤ n8 ≤ row.len(), and bias/weights are as long as row (checked
        // by the caller).
        // Rounded in the scalar code's order (scale, bias, shift), so both paths agree.
        let mut x = _mm256_mul_ps(_mm256_loadu_ps(p.add(j)), vs);
        if !bias.is_empty() {
            x = _mm256_add_ps(x, _mm256_loadu_ps(bias.as_ptr().add(j)));
        }
        let x = _mm256_sub_ps(x, vshift);
        let e = exp8(x);
        _mm256_storeu_ps(p.add(j), e);
        if let Some(w) = weights {
            lanes = _mm256_fmadd_ps(e, _mm256_loadu_ps(w.as_ptr().add(j)), lanes);
            if (j + 8) % 256 == 0 {
                total += hsum(lanes);
                lanes = _mm256_setzero_ps();
            }
        }
        j += 8;
    }
    total += hsum(lanes);
    affine_generic(&mut row[n8..], scale, bias.get(n8..).unwrap_or(&[]), shift);
    if let Some(w) = weights {
        total += weighted_sum(&row[n8..], &w[n8..]);
    }
    total
}

/// The sum of eight lanes, in f64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: std::arch::x86_64::__m256) -> f64 {
    let mut a = [0.0f32; 8];
    std::arch::x86_64::_mm256_storeu_ps(a.as_mut_ptr(), v);
    a.iter().map(|&x| x as f64).sum()
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `row[j] = exp(row[j] · scale + bias[j] − shift)` in place (`bias` empty for none).
pub fn exp_affine(row: &mut [f32], scale: f32, bias: &[f32], shift: f32) {
    assert!(bias.is_empty() || bias.len() == row.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features; bias is empty or as long as row.
        unsafe { affine_avx2(row, scale, bias, shift, None) };
        return;
    }
    affine_generic(row, scale, bias, shift)
}

/// [`exp_affine`], returning `Σ_j weights[j] · row[j]` of the new values (summed in f32
/// over runs of 256, the runs in f64) from the same pass over the row. Meant for softmax
/// rows shifted by their maximum, where every term is at most its weight.
pub fn exp_affine_dot(
    row: &mut [f32],
    scale: f32,
    bias: &[f32],
    shift: f32,
    weights: &[f32],
) -> f64 {
    assert!(bias.is_empty() || bias.len() == row.len());
    assert_eq!(weights.len(), row.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features; bias and weights are as long as row.
        return unsafe { affine_avx2(row, scale, bias, shift, Some(weights)) };
    }
    affine_generic(row, scale, bias, shift);
    weighted_sum(row, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_scalar_reference() {
        let xs: Vec<f32> = (0..200_001)
            .map(|i| -87.0 + i as f32 * (175.0 / 200_000.0))
            .collect();
        for &x in &xs {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!(
                ((got - want) / want).abs() < 2e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(-200.0), 0.0);
        let bias: Vec<f32> = xs.iter().map(|x| (x * 0.01).sin()).collect();
        let weights: Vec<f32> = (0..xs.len()).map(|i| 1.0 + (i % 7) as f32).collect();
        // Lengths off the 8-lane and 256-run boundaries, with and without a bias.
        for len in [xs.len(), 5, 263] {
            for b in [&[][..], &bias[..len]] {
                let start: Vec<f32> = xs[..len].iter().map(|x| x * 0.5).collect();
                let mut fast = start.clone();
                exp_affine(&mut fast, 2.0, b, 1.5);
                let mut dotted = start.clone();
                exp_affine_dot(&mut dotted, 2.0, b, 1.5, &weights[..len]);
                let mut generic = start.clone();
                affine_generic(&mut generic, 2.0, b, 1.5);
                for i in 0..len {
                    let arg = xs[i] * 0.5 * 2.0 + b.get(i).copied().unwrap_or(0.0) - 1.5;
                    let want = (arg as f64).exp();
                    for (path, got) in [
                        ("fast", fast[i]),
                        ("dot", dotted[i]),
                        ("generic", generic[i]),
                    ] {
                        if arg < -87.0 {
                            assert!(got < 2e-38, "{path} {i}: exp({arg}) = {got}");
                        } else {
                            let rel = (got as f64 - want) / want;
                            assert!(rel.abs() < 3e-7, "{path} {i}: {got} vs {want}");
                        }
                    }
                }
                // The sum as a softmax takes it: shifted by the maximum, every term ≤ weight.
                let arg = |i: usize| start[i] * 2.0 + b.get(i).copied().unwrap_or(0.0);
                let shift = (0..len).map(arg).fold(f32::MIN, f32::max);
                let mut dotted = start.clone();
                let sum = exp_affine_dot(&mut dotted, 2.0, b, shift, &weights[..len]);
                let want_sum: f64 = (0..len)
                    .map(|i| ((arg(i) - shift) as f64).exp() * weights[i] as f64)
                    .sum();
                // Terms below f32's normal range (≈1e-38) count as 0.
                let err = (sum - want_sum).abs();
                assert!(
                    err <= 1e-5 * want_sum + 1e-36,
                    "len {len}: sum {sum} vs {want_sum}"
                );
            }
        }
    }

    #[test]
    fn nan_stays_nan_and_extremes_saturate() {
        let mut row = vec![
            f32::NAN,
            -1e30,
            1e30,
            0.0,
            1.0,
            -100.0,
            100.0,
            0.5,
            f32::NAN,
        ];
        let generic = {
            let mut r = row.clone();
            affine_generic(&mut r, 1.0, &[], 0.0);
            r
        };
        exp_affine(&mut row, 1.0, &[], 0.0);
        for (got, want) in [(row[0], generic[0]), (row[8], generic[8])] {
            assert!(got.is_nan() && want.is_nan());
        }
        assert_eq!(row[1], 0.0);
        assert_eq!(row[5], 0.0);
        assert!(row[2] > 1e38 && row[2].is_finite());
        assert_eq!(row[3], 1.0);
        assert!((row[4] - std::f32::consts::E).abs() < 1e-6);
    }
}
