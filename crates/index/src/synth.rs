//! A reproducible maximum-inner-product benchmark set shaped like trained two-tower
//! embeddings: a mixture of Gaussian clusters with power-law sizes, uneven spread across
//! dimensions (variance `exp(−2i/23)` along axis `i`, an effective dimension near 23 at
//! d = 64) hidden by a random rotation, and log-normal item norms that grow with the
//! popularity of the item's cluster. Queries come from the same mixture, picked by
//! cluster popularity.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::kernels::{gemm, MatRef};

/// What a benchmark set folder (`twotower index synth --out`) is, for the `--out` rule:
/// `synth.json` (format `twotower-vector-synth`) beside the arrays.
pub const FOLDER: twotower_folder::Kind = twotower_folder::Kind::new(
    "a vector benchmark folder",
    "synth.json",
    "twotower-vector-synth",
    &["items.npy", "queries.npy", "tune_queries.npy", "gt.npy"],
);

/// Shape of a synthetic set.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub items: usize,
    pub queries: usize,
    pub dim: usize,
    pub clusters: usize,
    pub seed: u64,
}

/// Item and query vectors, row-major.
pub struct SynthSet {
    pub items: Vec<f32>,
    pub queries: Vec<f32>,
    pub dim: usize,
}

/// Rows generated per seeded chunk (the output does not depend on the thread count).
const CHUNK: usize = 16_384;
/// Spread of items and queries around their cluster centre, relative to the centres'.
const WITHIN: f32 = 0.6;

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    StandardNormal.sample(rng)
}

/// Generates the set for `opts` (deterministic for a seed).
pub fn generate(opts: &SynthOptions) -> SynthSet {
    let d = opts.dim;
    let k = opts.clusters.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let spread: Vec<f32> = (0..d).map(|i| (-(i as f32) / 23.0).exp()).collect();
    let centres: Vec<f32> = (0..k * d)
        .map(|i| spread[i % d] * normal(&mut rng))
        .collect();
    // Power-law cluster weights; popularity ranks in random order of the centres.
    let weights: Vec<f64> = (0..k).map(|j| 1.0 / (j as f64 + 1.0).powf(0.9)).collect();
    let total: f64 = weights.iter().sum();
    let mean = total / k as f64;
    let cumulative: Vec<f64> = weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w / total;
            Some(*acc)
        })
        .collect();
    let rotation = random_rotation(d, &mut rng);
    let items_seed: u64 = rng.gen();
    let queries_seed: u64 = rng.gen();

    let draw = |rows: usize, seed: u64, with_norms: bool| -> Vec<f32> {
        let mut out = vec![0.0f32; rows * d];
        out.par_chunks_mut(CHUNK * d)
            .enumerate()
            .for_each(|(c, block)| {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                );
                for row in block.chunks_exact_mut(d) {
                    let u: f64 = rng.gen();
                    let j = cumulative.partition_point(|&c| c < u).min(k - 1);
                    for (t, x) in row.iter_mut().enumerate() {
                        *x = centres[j * d + t] + WITHIN * spread[t] * normal(&mut rng);
                    }
                    if with_norms {
                        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                        let target =
                            (0.25 * normal(&mut rng) + 0.2 * (weights[j] / mean).ln() as f32).exp();
                        row.iter_mut().for_each(|x| *x *= target / norm);
                    }
                }
            });
        let mut rotated = vec![0.0f32; rows * d];
        gemm(
            MatRef::new(&out, rows, d),
            MatRef::new(&rotation, d, d),
            0.0,
            &mut rotated,
        );
        rotated
    };
    SynthSet {
        items: draw(opts.items, items_seed, true),
        queries: draw(opts.queries, queries_seed, false),
        dim: d,
    }
}

/// A uniformly random orthogonal `d × d` matrix (Gram–Schmidt on Gaussian rows).
fn random_rotation(d: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut m: Vec<f64> = (0..d * d).map(|_| StandardNormal.sample(rng)).collect();
    for i in 0..d {
        for j in 0..i {
            let dotp: f64 = (0..d).map(|t| m[i * d + t] * m[j * d + t]).sum();
            for t in 0..d {
                m[i * d + t] -= dotp * m[j * d + t];
            }
        }
        let norm = (0..d).map(|t| m[i * d + t].powi(2)).sum::<f64>().sqrt();
        for t in 0..d {
            m[i * d + t] /= norm;
        }
    }
    m.into_iter().map(|x| x as f32).collect()
}

/// Writes a benchmark set into folder `out` (replaced only when it is one, see
/// [`FOLDER`]): `items.npy`, `queries.npy` (`queries` rows), `tune_queries.npy` (`tune`
/// rows) from [`generate`], and `gt.npy`, the exact top-`truth_k` ids of each query, with
/// `synth.json` describing them. `progress` hears when generation is done.
pub fn write_set(
    out: &std::path::Path,
    opts: &SynthOptions,
    queries: usize,
    truth_k: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<WrittenSet, crate::IndexError> {
    use crate::npy;
    if opts.items == 0 || opts.dim == 0 || queries == 0 || queries > opts.queries {
        return Err(crate::IndexError::Invalid(format!(
            "a benchmark set needs items, dimension and queries of at least 1 (and no more \
             test queries than generated): {} items, dimension {}, {queries} of {} queries",
            opts.items, opts.dim, opts.queries
        )));
    }
    twotower_folder::check_replaceable(out, &FOLDER)?;
    let set = generate(opts);
    let (d, k) = (opts.dim, truth_k.min(opts.items));
    let tune_n = opts.queries - queries;
    twotower_folder::replace(
        out,
        &FOLDER,
        |tmp| {
            let (test, tune) = set.queries.split_at(queries * d);
            npy::write_f32(&tmp.join("items.npy"), &set.items, opts.items, d)?;
            npy::write_f32(&tmp.join("queries.npy"), test, queries, d)?;
            npy::write_f32(&tmp.join("tune_queries.npy"), tune, tune_n, d)?;
            progress(&format!("computing the exact top-{k} of {queries} queries"));
            let truth = crate::brute_force::exact_truth(set.items, d, test, k)?;
            let flat: Vec<i32> = truth.iter().flatten().map(|&x| x as i32).collect();
            npy::write_i32(&tmp.join("gt.npy"), &flat, queries, k)?;
            let manifest = serde_json::json!({
                "format": FOLDER.format,
                "items": opts.items, "queries": queries, "tune_queries": tune_n,
                "dim": d, "clusters": opts.clusters, "seed": opts.seed, "truth_k": k,
            });
            let path = tmp.join(FOLDER.manifest);
            std::fs::write(&path, manifest.to_string()).map_err(|e| crate::IndexError::io(&path, e))
        },
        crate::IndexError::Folder,
    )?;
    Ok(WrittenSet {
        out: out.to_path_buf(),
        items: opts.items,
        dim: d,
        queries,
        tune_queries: tune_n,
        truth_k: k,
    })
}

/// What [`write_set`] wrote; `Display` lists the files.
pub struct WrittenSet {
    pub out: std::path::PathBuf,
    pub items: usize,
    pub dim: usize,
    pub queries: usize,
    pub tune_queries: usize,
    pub truth_k: usize,
}

impl std::fmt::Display for WrittenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (items.npy {} × {}, queries.npy {}, tune_queries.npy {}, gt.npy top-{})",
            self.out.display(),
            self.items,
            self.dim,
            self.queries,
            self.tune_queries,
            self.truth_k
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed_and_shaped_as_asked() {
        let o = SynthOptions {
            items: 40_000,
            queries: 10,
            dim: 16,
            clusters: 50,
            seed: 2,
        };
        let a = generate(&o);
        let b = generate(&o);
        assert_eq!(a.items, b.items);
        assert_eq!(a.queries, b.queries);
        assert_eq!(a.items.len(), 40_000 * 16);
        let c = generate(&SynthOptions { seed: 3, ..o });
        assert_ne!(a.items, c.items);
        let rot = random_rotation(8, &mut ChaCha8Rng::seed_from_u64(1));
        for i in 0..8 {
            for j in 0..8 {
                let dotp: f32 = (0..8).map(|t| rot[i * 8 + t] * rot[j * 8 + t]).sum();
                assert!((dotp - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5);
            }
        }
    }
}
