//! Lloyd's k-means under squared Euclidean distance, with the assignment step done as a
//! blocked matrix product (`argmax_c x·c − ‖c‖²/2`). It trains the partitions of the
//! approximate index and the codebooks of its product quantizer.

use std::sync::atomic::{AtomicBool, Ordering};

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::kernels::{gemm, MatRef};

/// Rows assigned per matrix product.
const CHUNK: usize = 4096;

/// The nearest of `centroids` (row-major, `dim` wide) for every row of `data`.
pub fn assign(data: &[f32], dim: usize, centroids: &[f32]) -> Vec<u32> {
    let k = centroids.len() / dim;
    let half_norms: Vec<f32> = centroids
        .chunks_exact(dim)
        .map(|c| 0.5 * c.iter().map(|x| x * x).sum::<f32>())
        .collect();
    let n = data.len() / dim;
    let mut out = vec![0u32; n];
    let mut scores = vec![0.0f32; CHUNK.min(n.max(1)) * k];
    for (c, labels) in out.chunks_mut(CHUNK).enumerate() {
        let rows = labels.len();
        let block = &data[c * CHUNK * dim..(c * CHUNK + rows) * dim];
        let s = &mut scores[..rows * k];
        gemm(
            MatRef::new(block, rows, dim),
            MatRef::new(centroids, k, dim).t(),
            0.0,
            s,
        );
        labels
            .par_iter_mut()
            .zip(s.par_chunks(k))
            .for_each(|(label, row)| {
                let mut best = (f32::NEG_INFINITY, 0u32);
                for (j, (&v, &h)) in row.iter().zip(&half_norms).enumerate() {
                    let score = v - h;
                    if score > best.0 {
                        best = (score, j as u32);
                    }
                }
                *label = best.1;
            });
    }
    out
}

/// k-means++ seeding (each new centre drawn with probability proportional to the squared
/// distance to the nearest one so far) on a random subset of at most `8k` rows.
fn seed_plus_plus(data: &[f32], dim: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = data.len() / dim;
    let pool: Vec<usize> = sample(rng, n, n.min(8 * k).max(k)).into_vec();
    let row = |i: usize| &data[pool[i] * dim..(pool[i] + 1) * dim];
    let mut centroids = Vec::with_capacity(k * dim);
    centroids.extend_from_slice(row(rng.gen_range(0..pool.len())));
    let mut nearest = vec![f32::INFINITY; pool.len()];
    for c in 1..k {
        let last = &centroids[(c - 1) * dim..c * dim];
        nearest.par_iter_mut().enumerate().for_each(|(i, d)| {
            let dist: f32 = row(i)
                .iter()
                .zip(last)
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            *d = d.min(dist);
        });
        let total: f64 = nearest.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 {
            let mut u = rng.gen::<f64>() * total;
            nearest
                .iter()
                .position(|&d| {
                    u -= d as f64;
                    u <= 0.0
                })
                .unwrap_or(pool.len() - 1)
        } else {
            rng.gen_range(0..pool.len())
        };
        centroids.extend_from_slice(row(pick));
    }
    centroids
}

/// How k-means picks its first centroids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// `k` distinct random rows: balanced partitions of large data (k-means++ favours
    /// outliers, which become tiny leaves while the bulk shares a few large ones).
    Random,
    /// k-means++: spread-out starts for few clusters (codebooks).
    PlusPlus,
}

impl std::str::FromStr for Init {
    type Err = String;

    /// `random` or `plusplus`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Init::Random),
            "plusplus" => Ok(Init::PlusPlus),
            _ => Err(format!(
                "unknown k-means start {s:?}: expected random or plusplus"
            )),
        }
    }
}

/// `k` centroids of the rows of `data` after `iters` Lloyd iterations from `init` (fewer
/// once `stop` is raised). A centroid left without rows is moved next to the largest one.
/// Needs at least `k` rows.
pub fn kmeans(
    data: &[f32],
    dim: usize,
    k: usize,
    iters: usize,
    seed: u64,
    init: Init,
    stop: Option<&AtomicBool>,
) -> Vec<f32> {
    let n = data.len() / dim;
    assert!(k >= 1 && n >= k, "k-means of {n} rows into {k} clusters");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut centroids = match init {
        Init::PlusPlus => seed_plus_plus(data, dim, k, &mut rng),
        Init::Random => sample(&mut rng, n, k)
            .iter()
            .flat_map(|i| data[i * dim..(i + 1) * dim].iter().copied())
            .collect(),
    };
    for _ in 0..iters {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            break;
        }
        let labels = assign(data, dim, &centroids);
        let (sums, counts) = data
            .par_chunks(dim * CHUNK)
            .zip(labels.par_chunks(CHUNK))
            .fold(
                || (vec![0.0f64; k * dim], vec![0usize; k]),
                |(mut sums, mut counts), (rows, labels)| {
                    for (row, &l) in rows.chunks_exact(dim).zip(labels) {
                        let l = l as usize;
                        counts[l] += 1;
                        for (s, &x) in sums[l * dim..(l + 1) * dim].iter_mut().zip(row) {
                            *s += x as f64;
                        }
                    }
                    (sums, counts)
                },
            )
            .reduce(
                || (vec![0.0f64; k * dim], vec![0usize; k]),
                |(mut a, mut ca), (b, cb)| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    ca.iter_mut().zip(&cb).for_each(|(x, y)| *x += y);
                    (a, ca)
                },
            );
        for j in 0..k {
            if counts[j] > 0 {
                for d in 0..dim {
                    centroids[j * dim + d] = (sums[j * dim + d] / counts[j] as f64) as f32;
                }
            }
        }
        let largest = (0..k).max_by_key(|&j| counts[j]).unwrap_or(0);
        for j in 0..k {
            if counts[j] == 0 {
                for d in 0..dim {
                    let c = centroids[largest * dim + d];
                    centroids[j * dim + d] = c + rng.gen_range(-1e-3..1e-3) * (c.abs() + 1e-3);
                }
            }
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_well_separated_clusters() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let centres = [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let mut data = Vec::new();
        for i in 0..300 {
            let c = centres[i % 3];
            data.push(c[0] + rng.gen_range(-0.5..0.5));
            data.push(c[1] + rng.gen_range(-0.5..0.5));
        }
        let found = kmeans(&data, 2, 3, 10, 7, Init::PlusPlus, None);
        for c in centres {
            let nearest = found
                .chunks_exact(2)
                .map(|f| (f[0] - c[0]).powi(2) + (f[1] - c[1]).powi(2))
                .fold(f32::INFINITY, f32::min);
            assert!(nearest < 0.1, "no centroid near {c:?}: {found:?}");
        }
        let labels = assign(&data, 2, &found);
        for i in 0..300 {
            assert_eq!(labels[i], labels[i % 3], "row {i}");
        }
    }
}
