//! A vectorisable `exp` for the softmax: the logits pass of in-batch training evaluates one
//! exponential per (query, candidate) pair, which costs more than the matrix products at
//! embedding dimension 32. libm's `expf` is scalar; this one is branch-free (Cephes'
//! polynomial on a range-reduced argument, relative error below 2e-7) so LLVM vectorises
//! it, and an AVX2+FMA build of the loop is chosen at run time where the CPU has it. The
//! test checks it against `f32::exp` (the scalar reference) on both paths.

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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn affine_avx2(row: &mut [f32], scale: f32, bias: &[f32], shift: f32) {
    affine_generic(row, scale, bias, shift)
}

/// `row[j] = exp(row[j] · scale + bias[j] − shift)` in place (`bias` empty for none).
pub fn exp_affine(row: &mut [f32], scale: f32, bias: &[f32], shift: f32) {
    debug_assert!(bias.is_empty() || bias.len() == row.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { affine_avx2(row, scale, bias, shift) };
    }
    affine_generic(row, scale, bias, shift)
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
        for b in [&[][..], &bias[..]] {
            let mut fast = xs.iter().map(|x| x * 0.5).collect::<Vec<f32>>();
            exp_affine(&mut fast, 2.0, b, 1.5);
            let mut generic = xs.iter().map(|x| x * 0.5).collect::<Vec<f32>>();
            affine_generic(&mut generic, 2.0, b, 1.5);
            for (i, (f, g)) in fast.iter().zip(&generic).enumerate() {
                let arg = xs[i] * 0.5 * 2.0 + b.get(i).copied().unwrap_or(0.0) - 1.5;
                if arg < -87.0 {
                    assert!(*f < 2e-38, "{i}: exp({arg}) = {f}");
                    continue;
                }
                let want = (arg as f64).exp();
                let rel = (*f as f64 - want) / want;
                assert!(rel.abs() < 3e-7, "{i}: {f} vs {want}");
                assert_eq!(f, g, "dispatch paths differ at {i}");
            }
        }
    }
}
