//! The approximate index, after ScaNN's design in three stages:
//!
//! 1. **Partitioning.** k-means splits the rows into `leaves`; a query scores every leaf
//!    centre and visits the best `leaves_to_search` of them.
//! 2. **Compressed scoring.** Each row is stored as its leaf and 4-bit product-quantization
//!    codes of its residual, chosen under ScaNN's anisotropic loss ([`crate::pq`]). Codes
//!    sit in blocks of 32 rows, scanned with byte lookup tables in AVX2 registers
//!    ([`crate::simd::scan`]); a row's estimate is `q·centre + Σ table entries`. Only rows
//!    whose estimate can enter the best `reorder` are taken out of the registers.
//! 3. **Re-ranking.** Those `reorder` candidates are scored exactly against the original
//!    vectors (kept in leaf order), and the best `k` returned.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kmeans::{assign, kmeans, Init};
use crate::pq::{eta, quantize_tables, ProductQuantizer, CODEWORDS};
use crate::simd::{self, block_bytes, pack_block, Luts, BLOCK};
use crate::store::{self, Buf, FileEntry};
use crate::{IndexError, Neighbor, Reservoir, TopK};

/// Id of the padding slots that fill a leaf's last block.
const PAD: u32 = u32::MAX;

/// How many leaves to visit and how many candidates to re-rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchParams {
    pub leaves_to_search: usize,
    pub reorder: usize,
}

/// Settings of [`AnnIndex::build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Partitions; `None` chooses about 2·√n.
    pub leaves: Option<usize>,
    /// Product-quantization subspaces (even, at most 256); `None` chooses dim / 2.
    pub subspaces: Option<usize>,
    /// ScaNN's anisotropic threshold T (0 for plain nearest-codeword codes).
    pub anisotropic_threshold: f32,
    /// Rows sampled to train the partitions (per leaf).
    pub sample_per_leaf: usize,
    /// Lloyd iterations of the partition k-means.
    pub kmeans_iters: usize,
    /// How the partition k-means starts: random rows give balanced leaves (best at
    /// moderate recall); k-means++ isolates outlying, large-norm rows in small leaves of
    /// their own, which the highest recall levels need.
    pub kmeans_init: Init,
    pub seed: u64,
    /// Raised from another thread (Ctrl-C in Python), it ends the build with
    /// [`IndexError::Interrupted`] at the next stage or tuning step.
    pub stop: Option<Arc<AtomicBool>>,
}

impl BuildOptions {
    /// `Err(Interrupted)` once the stop flag is raised.
    pub(crate) fn check_stop(&self) -> Result<(), IndexError> {
        match &self.stop {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(IndexError::Interrupted),
            _ => Ok(()),
        }
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            leaves: None,
            subspaces: None,
            anisotropic_threshold: 0.2,
            sample_per_leaf: 128,
            kmeans_iters: 12,
            kmeans_init: Init::Random,
            seed: 0,
            stop: None,
        }
    }
}

/// What `index.json` says of an approximate index.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    head: store::Head,
    leaves: usize,
    subspaces: usize,
    blocks: usize,
    anisotropic_threshold: f32,
    search: SearchParams,
    #[serde(default)]
    build_seconds: f64,
    #[serde(default)]
    tuning: Option<serde_json::Value>,
    files: BTreeMap<String, FileEntry>,
}

/// A ScaNN-style approximate maximum-inner-product index (see the module documentation).
#[derive(Debug, Clone)]
pub struct AnnIndex {
    dim: usize,
    len: usize,
    pq: ProductQuantizer,
    anisotropic_threshold: f32,
    centroids: Buf<f32>,
    /// The centres in half precision, for leaf scoring where the CPU converts halves in
    /// SIMD (F16C): half the memory traffic of the per-query centre scan. Empty otherwise.
    centroids_f16: Vec<u16>,
    /// Leaf `l` owns blocks `leaf_blocks[l]..leaf_blocks[l + 1]`.
    leaf_blocks: Buf<u32>,
    /// Row id of every slot (32 per block), `PAD` for padding.
    ids: Buf<u32>,
    codes: Buf<u8>,
    /// Original rows in slot order (zeros for padding), for re-ranking.
    vectors: Buf<f32>,
    params: SearchParams,
    build_seconds: f64,
    tuning: Option<serde_json::Value>,
    /// A few held-out queries kept by the tuner and run at load (see `warm_up`).
    warm_queries: Vec<f32>,
}

/// Tuning queries kept for warming up a loaded index.
const WARM_QUERIES: usize = 64;

fn invalid(msg: impl Into<String>) -> IndexError {
    IndexError::Invalid(msg.into())
}

impl AnnIndex {
    /// Builds the index over `vectors` (row-major, `dim` wide), reporting each stage to
    /// `progress`.
    pub fn build(
        vectors: &[f32],
        dim: usize,
        opts: &BuildOptions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Self, IndexError> {
        let start = Instant::now();
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(IndexError::Shape {
                len: vectors.len(),
                dim,
            });
        }
        let n = vectors.len() / dim;
        if n == 0 {
            return Err(invalid("cannot build an approximate index over no vectors"));
        }
        crate::check_rows(vectors, dim)?;
        if n > PAD as usize {
            return Err(invalid(format!("{n} rows exceed the index's 32-bit ids")));
        }
        let leaves = opts
            .leaves
            .unwrap_or_else(|| ((2.0 * (n as f64).sqrt()).round() as usize).max(1))
            .min(n);
        if leaves == 0 {
            return Err(invalid("--leaves must be at least 1"));
        }
        if dim < 2 {
            return Err(invalid(format!(
                "an approximate index needs vectors of dimension 2 or more (these have {dim}); \
                 use an exact index"
            )));
        }
        let subspaces = opts.subspaces.unwrap_or((dim / 2).max(2));
        let subspaces = subspaces + subspaces % 2;
        if subspaces < 2 || subspaces > dim || subspaces > 256 {
            return Err(invalid(format!(
                "{subspaces} subspaces for dimension {dim}: use an even count from 2 to min(dim, 256)"
            )));
        }
        if !(0.0..1.0).contains(&opts.anisotropic_threshold) {
            return Err(invalid("the anisotropic threshold must be in [0, 1)"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);

        opts.check_stop()?;
        progress(&format!("partitioning {n} rows into {leaves} leaves"));
        let sample_n = (leaves * opts.sample_per_leaf.max(1)).clamp(leaves, n);
        let rows = sample(&mut rng, n, sample_n).into_vec();
        let train: Vec<f32> = rows
            .iter()
            .flat_map(|&i| vectors[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let centroids = kmeans(
            &train,
            dim,
            leaves,
            opts.kmeans_iters,
            opts.seed,
            opts.kmeans_init,
            opts.stop.as_deref(),
        );
        opts.check_stop()?;
        let labels = assign(vectors, dim, &centroids);

        opts.check_stop()?;
        progress("training the product quantizer");
        let pq_n = n.min(65_536);
        let pq_rows = sample(&mut rng, n, pq_n).into_vec();
        let c = &centroids;
        let residuals: Vec<f32> = pq_rows
            .iter()
            .flat_map(|&i| {
                let l = labels[i] as usize;
                (0..dim).map(move |d| vectors[i * dim + d] - c[l * dim + d])
            })
            .collect();
        let mut pq = ProductQuantizer::train(&residuals, dim, subspaces, 12, opts.seed ^ 0x5eed);
        let eta = eta(opts.anisotropic_threshold, dim);
        if eta != 1.0 {
            opts.check_stop()?;
            progress("fitting the codebooks to the anisotropic loss");
            let originals: Vec<f32> = pq_rows
                .iter()
                .flat_map(|&i| vectors[i * dim..(i + 1) * dim].iter().copied())
                .collect();
            pq.refine_anisotropic(&originals, &residuals, eta, 3);
        }

        opts.check_stop()?;
        progress("encoding rows");
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); leaves];
        for (i, &l) in labels.iter().enumerate() {
            members[l as usize].push(i as u32);
        }
        let mut leaf_blocks = Vec::with_capacity(leaves + 1);
        leaf_blocks.push(0u32);
        for m in &members {
            let last = *leaf_blocks.last().expect("starts with 0");
            leaf_blocks.push(last + m.len().div_ceil(BLOCK) as u32);
        }
        let blocks = *leaf_blocks.last().expect("non-empty") as usize;
        let bb = block_bytes(subspaces);
        // Every leaf's blocks are encoded on their own, in parallel.
        let per_leaf: Vec<(Vec<u32>, Vec<u8>, Vec<f32>)> = members
            .par_iter()
            .enumerate()
            .map(|(l, m)| {
                let nb = m.len().div_ceil(BLOCK);
                let mut ids = vec![PAD; nb * BLOCK];
                ids[..m.len()].copy_from_slice(m);
                let mut codes = vec![0u8; nb * bb];
                let mut vecs = vec![0.0f32; nb * BLOCK * dim];
                let centre = &centroids[l * dim..(l + 1) * dim];
                let mut item_codes = vec![0u8; BLOCK * subspaces];
                let mut r = vec![0.0f32; dim];
                for b in 0..nb {
                    let chunk = &m[b * BLOCK..m.len().min((b + 1) * BLOCK)];
                    for (j, &id) in chunk.iter().enumerate() {
                        let x = &vectors[id as usize * dim..(id as usize + 1) * dim];
                        for d in 0..dim {
                            r[d] = x[d] - centre[d];
                        }
                        pq.encode(
                            x,
                            &r,
                            eta,
                            &mut item_codes[j * subspaces..(j + 1) * subspaces],
                        );
                        vecs[(b * BLOCK + j) * dim..(b * BLOCK + j + 1) * dim].copy_from_slice(x);
                    }
                    let refs: Vec<&[u8]> = item_codes
                        .chunks_exact(subspaces)
                        .take(chunk.len())
                        .collect();
                    pack_block(&refs, subspaces, &mut codes[b * bb..(b + 1) * bb]);
                }
                (ids, codes, vecs)
            })
            .collect();
        let mut ids = Vec::with_capacity(blocks * BLOCK);
        let mut codes = Vec::with_capacity(blocks * bb);
        let mut vecs = Vec::with_capacity(blocks * BLOCK * dim);
        for (i, c, v) in per_leaf {
            ids.extend_from_slice(&i);
            codes.extend_from_slice(&c);
            vecs.extend_from_slice(&v);
        }
        let params = SearchParams {
            leaves_to_search: leaves.div_ceil(20).max(1),
            reorder: 100,
        };
        Ok(AnnIndex {
            dim,
            len: n,
            pq,
            anisotropic_threshold: opts.anisotropic_threshold,
            centroids_f16: simd::to_f16(&centroids),
            centroids: centroids.into(),
            leaf_blocks: leaf_blocks.into(),
            ids: ids.into(),
            codes: codes.into(),
            vectors: vecs.into(),
            params,
            build_seconds: start.elapsed().as_secs_f64(),
            tuning: None,
            warm_queries: Vec::new(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Runs queries before the caller's first one, so that code paths, branch predictors
    /// and the CPU caches hold what queries touch (the pages are already resident): the
    /// tuner's kept queries, which follow the real query distribution, else the centres
    /// of the 32 largest leaves.
    fn warm_up(&self) {
        let d = self.dim;
        let mut queries = self.warm_queries.clone();
        if queries.is_empty() {
            let mut by_size: Vec<usize> = (0..self.leaves()).collect();
            by_size.sort_unstable_by_key(|&l| {
                std::cmp::Reverse(self.leaf_blocks[l + 1] - self.leaf_blocks[l])
            });
            for &l in by_size.iter().take(32) {
                queries.extend_from_slice(&self.centroids[l * d..(l + 1) * d]);
            }
        }
        for q in queries.chunks_exact(d) {
            std::hint::black_box(self.search(q, 10, &[]));
        }
    }

    /// True when the index holds no rows (never, for a built index).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of partitions.
    pub fn leaves(&self) -> usize {
        self.leaf_blocks.len() - 1
    }

    /// Product-quantization subspaces.
    pub fn subspaces(&self) -> usize {
        self.pq.subspaces
    }

    /// The stored search settings.
    pub fn params(&self) -> SearchParams {
        self.params
    }

    /// Replaces the stored search settings, each brought into its range: 1 to the number
    /// of leaves, 1 to the number of rows (a larger reorder re-ranks nothing more).
    pub fn set_params(&mut self, p: SearchParams) {
        self.params = SearchParams {
            leaves_to_search: p.leaves_to_search.clamp(1, self.leaves()),
            reorder: p.reorder.clamp(1, self.len.max(1)),
        };
    }

    /// Seconds the build took (as recorded at build time).
    pub fn build_seconds(&self) -> f64 {
        self.build_seconds
    }

    /// The tuner's record, if the index was tuned.
    pub fn tuning(&self) -> Option<&serde_json::Value> {
        self.tuning.as_ref()
    }

    pub(crate) fn set_tuning(&mut self, t: serde_json::Value, queries: &[f32]) {
        self.tuning = Some(t);
        self.warm_queries = queries[..queries.len().min(WARM_QUERIES * self.dim)].to_vec();
    }

    /// Bytes of the index proper: centres (and their half-precision copy), codebooks, leaf
    /// table, ids and codes (not the original vectors kept for re-ranking).
    pub fn index_bytes(&self) -> usize {
        self.centroids.len() * 4
            + self.centroids_f16.len() * 2
            + self.pq.codebooks.len() * 4
            + self.leaf_blocks.len() * 4
            + self.ids.len() * 4
            + self.codes.len()
    }

    /// True when the index was built from exactly `vectors` (row-major, `len() × dim()`):
    /// every row's kept copy equals the row. Binds an index to the vectors it answers for,
    /// so one copied from another matrix of the same shape is caught.
    pub fn holds_vectors(&self, vectors: &[f32]) -> bool {
        let d = self.dim;
        if vectors.len() != self.len * d {
            return false;
        }
        self.ids.iter().enumerate().all(|(slot, &id)| {
            id == PAD
                || self.vectors[slot * d..(slot + 1) * d]
                    .iter()
                    .zip(&vectors[id as usize * d..(id as usize + 1) * d])
                    .all(|(a, b)| a.to_bits() == b.to_bits())
        })
    }

    /// Bytes of the original vectors kept for re-ranking.
    pub fn vector_bytes(&self) -> usize {
        self.vectors.len() * 4
    }

    /// The `k` best rows for `query` with the stored settings, skipping `exclude`.
    ///
    /// # Panics
    /// When `query.len() != dim()`.
    pub fn search(&self, query: &[f32], k: usize, exclude: &[u32]) -> Vec<Neighbor> {
        self.search_with(query, k, exclude, self.params)
    }

    /// The `k` best rows for `query` with settings `p`, skipping `exclude` (any order).
    ///
    /// # Panics
    /// When `query.len() != dim()`.
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        exclude: &[u32],
        p: SearchParams,
    ) -> Vec<Neighbor> {
        assert_eq!(query.len(), self.dim, "query dimension");
        let k = k.min(self.len);
        let leaves = self.leaves();
        let mut skip = exclude.to_vec();
        skip.sort_unstable();

        // Stage 1: the best leaves, best first.
        let mut centre_scores = vec![0.0f32; leaves];
        if self.centroids_f16.is_empty() {
            simd::dot_rows(query, &self.centroids, &mut centre_scores);
        } else {
            simd::dot_rows_f16(query, &self.centroids_f16, &mut centre_scores);
        }
        let visit = p.leaves_to_search.clamp(1, leaves);
        let order: Vec<Neighbor> = if visit * 64 <= leaves {
            // Few leaves: a heap that most centres never enter (one comparison each).
            let mut best = TopK::new(visit);
            let mut worst = f32::NEG_INFINITY;
            for (l, &s) in centre_scores.iter().enumerate() {
                if s >= worst {
                    best.push(l as u32, s);
                    worst = best.threshold();
                }
            }
            best.into_sorted()
        } else {
            // Many: a linear-time selection, cheaper than that many heap sifts.
            let mut all: Vec<Neighbor> = (0..leaves as u32)
                .map(|id| Neighbor {
                    id,
                    score: centre_scores[id as usize],
                })
                .collect();
            let by_score = |a: &Neighbor, b: &Neighbor| b.score.total_cmp(&a.score);
            if visit < leaves {
                all.select_nth_unstable_by(visit, by_score);
                all.truncate(visit);
            }
            all.sort_unstable_by(by_score);
            all
        };

        // Stage 2: compressed scores; keep the best `reorder` estimates.
        let m = self.pq.subspaces;
        let mut tables = vec![0.0f32; m * CODEWORDS];
        self.pq.tables(query, &mut tables);
        let qt = quantize_tables(&tables, m);
        let luts = Luts::new(&qt.bytes, m);
        let bb = block_bytes(m);
        let reorder = p.reorder.max(k).min(self.len);
        let mut cand = Reservoir::new(reorder);
        let offset = m as f32;
        // Rows offered to the candidates so far (those not excluded).
        let mut offered = 0usize;
        // Scans one leaf into `cand`; the number of rows it offered.
        let scan_leaf = |leaf: usize, cand: &mut Reservoir| -> usize {
            let mut offered = 0;
            // The part of a row's estimate its whole leaf shares.
            let base = centre_scores[leaf] + qt.bias;
            let (b0, b1) = (
                self.leaf_blocks[leaf] as usize,
                self.leaf_blocks[leaf + 1] as usize,
            );
            // The smallest table sum whose estimate beats `threshold` (None: none can).
            let to_u16 = |threshold: f32| -> Option<u16> {
                if threshold == f32::NEG_INFINITY {
                    return Some(0);
                }
                let t = ((threshold - base) / qt.scale + offset).floor();
                if t >= u16::MAX as f32 {
                    None
                } else {
                    Some(t.max(0.0) as u16)
                }
            };
            let Some(start) = to_u16(cand.threshold()) else {
                return 0;
            };
            let ids = &self.ids[b0 * BLOCK..b1 * BLOCK];
            let mut last = (cand.threshold(), start);
            simd::scan(&self.codes[b0 * bb..b1 * bb], m, &luts, start, |i, acc| {
                let id = ids[i];
                if id != PAD && (skip.is_empty() || skip.binary_search(&id).is_err()) {
                    offered += 1;
                    let est = base + qt.scale * (acc as f32 - offset);
                    cand.push((b0 * BLOCK + i) as u32, est);
                    if cand.threshold() != last.0 {
                        last = (
                            cand.threshold(),
                            to_u16(cand.threshold()).unwrap_or(u16::MAX),
                        );
                    }
                }
                last.1
            });
            offered
        };
        for leaf in &order {
            offered += scan_leaf(leaf.id as usize, &mut cand);
        }
        // The leaves probed held fewer than k rows (empty leaves, ties among centres, or
        // most rows excluded): probe on, best centre first, until k rows are found.
        if offered < k && order.len() < leaves {
            let mut seen = vec![false; leaves];
            for l in &order {
                seen[l.id as usize] = true;
            }
            let mut rest: Vec<Neighbor> = (0..leaves as u32)
                .filter(|&l| !seen[l as usize])
                .map(|id| Neighbor {
                    id,
                    score: centre_scores[id as usize],
                })
                .collect();
            rest.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
            for leaf in rest {
                if offered >= k {
                    break;
                }
                offered += scan_leaf(leaf.id as usize, &mut cand);
            }
        }

        // Stage 3: exact scores of the candidates.
        let cands = cand.finish();
        let slots: Vec<u32> = cands.iter().map(|c| c.id).collect();
        let mut exact = vec![0.0f32; slots.len()];
        simd::dot_gather(query, &self.vectors, &slots, &mut exact);
        let mut top = TopK::new(k);
        let mut worst = f32::NEG_INFINITY;
        for (&slot, &score) in slots.iter().zip(&exact) {
            if score >= worst {
                top.push(self.ids[slot as usize], score);
                worst = top.threshold();
            }
        }
        top.into_sorted()
    }

    /// [`search_with`](Self::search_with) for every query of a row-major batch, on all
    /// threads.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        p: SearchParams,
    ) -> Result<Vec<Vec<Neighbor>>, IndexError> {
        if !queries.len().is_multiple_of(self.dim) {
            return Err(IndexError::QueryDim {
                got: queries.len(),
                expected: self.dim,
            });
        }
        Ok(queries
            .par_chunks(self.dim)
            .map(|q| self.search_with(q, k, &[], p))
            .collect())
    }

    /// Writes the index as a folder (see [`store`]).
    pub fn save(&self, dir: &Path) -> Result<(), IndexError> {
        let head = Manifest {
            head: store::Head::new("ann", self.dim, self.len),
            leaves: self.leaves(),
            subspaces: self.pq.subspaces,
            blocks: self.codes.len() / block_bytes(self.pq.subspaces),
            anisotropic_threshold: self.anisotropic_threshold,
            search: self.params,
            build_seconds: self.build_seconds,
            tuning: self.tuning.clone(),
            files: BTreeMap::new(),
        };
        store::write_folder(
            dir,
            &[
                ("centroids.f32", store::bytes_of(&self.centroids)),
                ("codebooks.f32", store::bytes_of(&self.pq.codebooks)),
                ("leaf_blocks.u32", store::bytes_of(&self.leaf_blocks)),
                ("ids.u32", store::bytes_of(&self.ids)),
                ("codes.u8", &self.codes),
                ("vectors.f32", store::bytes_of(&self.vectors)),
                ("warm_queries.f32", store::bytes_of(&self.warm_queries)),
            ],
            |files| serde_json::to_value(Manifest { files, ..head }).expect("manifest serialises"),
        )
    }

    /// Loads a folder written by [`save`](Self::save): arrays are mapped and read in
    /// whole, checked against their sizes and checksums, and the structure is validated.
    pub fn load(dir: &Path) -> Result<Self, IndexError> {
        let mf: Manifest = store::read_manifest(dir)?;
        let store::Head { kind, dim, len, .. } = mf.head.clone();
        let manifest_path = dir.join(store::MANIFEST);
        let bad = |p: String| IndexError::format(&manifest_path, p);
        if kind != "ann" {
            return Err(bad(format!("kind {:?} is not an approximate index", kind)));
        }
        if dim == 0
            || mf.leaves == 0
            || mf.subspaces < 2
            || mf.subspaces % 2 == 1
            || mf.subspaces > dim
            || mf.subspaces > 256
            || len == 0
            || len > PAD as usize
        {
            return Err(bad(format!(
                "inconsistent shape: dim {}, len {}, leaves {}, subspaces {}",
                dim, len, mf.leaves, mf.subspaces
            )));
        }
        let slots = mf
            .blocks
            .checked_mul(BLOCK)
            .filter(|s| s.checked_mul(dim).is_some())
            .ok_or_else(|| bad("block count overflows".into()))?;
        let f = &mf.files;
        let centroids = store::map_file::<f32>(dir, "centroids.f32", f, mf.leaves * dim)?;
        let codebooks = store::map_file::<f32>(dir, "codebooks.f32", f, CODEWORDS * dim)?;
        let leaf_blocks = store::map_file::<u32>(dir, "leaf_blocks.u32", f, mf.leaves + 1)?;
        let ids = store::map_file::<u32>(dir, "ids.u32", f, slots)?;
        let codes =
            store::map_file::<u8>(dir, "codes.u8", f, mf.blocks * block_bytes(mf.subspaces))?;
        let vectors = store::map_file::<f32>(dir, "vectors.f32", f, slots * dim)?;
        let warm = f
            .get("warm_queries.f32")
            .map_or(0, |e| e.bytes as usize / 4);
        let warm_queries = if !f.contains_key("warm_queries.f32") {
            Vec::new() // written before warm-up queries were kept
        } else if warm.is_multiple_of(dim) && warm / dim <= WARM_QUERIES {
            store::map_file::<f32>(dir, "warm_queries.f32", f, warm)?.to_vec()
        } else {
            return Err(bad(format!(
                "warm_queries.f32 is not whole queries of dimension {dim}"
            )));
        };
        if leaf_blocks[0] != 0
            || leaf_blocks.windows(2).any(|w| w[0] > w[1])
            || leaf_blocks[mf.leaves] as usize != mf.blocks
        {
            return Err(bad(
                "the leaf table is not an ordered cover of the blocks".into()
            ));
        }
        let mut seen = vec![false; len];
        for (slot, &id) in ids.iter().enumerate() {
            if id == PAD {
                continue;
            }
            let ok = (id as usize) < len && !std::mem::replace(&mut seen[id as usize], true);
            if !ok {
                return Err(bad(format!(
                    "slot {slot} holds id {id}, out of range or repeated"
                )));
            }
        }
        if seen.iter().any(|s| !s) {
            return Err(bad("some rows are missing from the index".into()));
        }
        if codebooks
            .iter()
            .chain(centroids.iter())
            .any(|x| !x.is_finite())
        {
            return Err(bad("centres or codebooks hold non-finite values".into()));
        }
        // The stored setting sizes every search's buffers: it must fit the index.
        let SearchParams {
            leaves_to_search,
            reorder,
        } = mf.search;
        if leaves_to_search == 0 || leaves_to_search > mf.leaves {
            return Err(bad(format!(
                "search.leaves_to_search is {leaves_to_search}, outside 1 to the index's {} \
                 leaves",
                mf.leaves
            )));
        }
        if reorder == 0 || reorder > len {
            return Err(bad(format!(
                "search.reorder is {reorder}, outside 1 to the index's {len} rows"
            )));
        }
        let pq = ProductQuantizer::new(dim, mf.subspaces, codebooks.to_vec());
        let mut index = AnnIndex {
            dim,
            len,
            pq,
            anisotropic_threshold: mf.anisotropic_threshold,
            centroids_f16: simd::to_f16(&centroids),
            centroids,
            leaf_blocks,
            ids,
            codes,
            vectors,
            params: mf.search,
            build_seconds: mf.build_seconds,
            tuning: mf.tuning,
            warm_queries,
        };
        index.set_params(mf.search);
        index.warm_up();
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{generate, SynthOptions};
    use crate::BruteForceIndex;

    fn recall(index: &AnnIndex, exact: &BruteForceIndex, q: &[f32], p: SearchParams) -> f64 {
        let got = index.search_batch(q, 10, p).unwrap();
        let want = exact.search_batch(q, 10).unwrap();
        let hits: usize = got
            .iter()
            .zip(&want)
            .map(|(g, w)| g.iter().filter(|x| w.iter().any(|y| y.id == x.id)).count())
            .sum();
        hits as f64 / (10 * want.len()) as f64
    }

    fn small() -> (Vec<f32>, Vec<f32>, usize) {
        let set = generate(&SynthOptions {
            items: 20_000,
            queries: 200,
            dim: 32,
            clusters: 100,
            seed: 5,
        });
        (set.items, set.queries, 32)
    }

    #[test]
    fn a_raised_stop_flag_ends_the_build_at_the_next_stage() {
        let (items, _, dim) = small();
        let flag = Arc::new(AtomicBool::new(false));
        let opts = BuildOptions {
            leaves: Some(20),
            stop: Some(flag.clone()),
            ..BuildOptions::default()
        };
        let mut stages = Vec::new();
        let got = AnnIndex::build(&items, dim, &opts, &mut |s| {
            stages.push(s.to_string());
            if s.starts_with("training") {
                flag.store(true, Ordering::Relaxed);
            }
        });
        assert!(
            matches!(got, Err(IndexError::Interrupted)),
            "{:?}",
            got.err()
        );
        assert_eq!(stages.len(), 2, "{stages:?}");
        // Unraised, the same options build.
        flag.store(false, Ordering::Relaxed);
        assert!(AnnIndex::build(&items, dim, &opts, &mut |_| {}).is_ok());
    }

    #[test]
    fn recall_on_a_small_synthetic_set_is_above_a_floor() {
        let (items, queries, dim) = small();
        let index = AnnIndex::build(&items, dim, &BuildOptions::default(), &mut |_| {}).unwrap();
        let exact = BruteForceIndex::new(items, dim).unwrap();
        let p = SearchParams {
            leaves_to_search: 30,
            reorder: 100,
        };
        let r = recall(&index, &exact, &queries, p);
        assert!(r >= 0.95, "recall@10 {r}");
        // Every leaf with a large re-rank is exact.
        let all = SearchParams {
            leaves_to_search: index.leaves(),
            reorder: 20_000,
        };
        assert_eq!(recall(&index, &exact, &queries, all), 1.0);
        // Fewer leaves cost recall: the knob is live.
        let few = SearchParams {
            leaves_to_search: 1,
            reorder: 10,
        };
        assert!(recall(&index, &exact, &queries, few) < r);
    }

    #[test]
    fn exclusions_are_honoured() {
        let (items, queries, dim) = small();
        let index = AnnIndex::build(&items, dim, &BuildOptions::default(), &mut |_| {}).unwrap();
        let q = &queries[..dim];
        let first = index.search(q, 5, &[]);
        let skip: Vec<u32> = first[..2].iter().map(|n| n.id).collect();
        let second = index.search(q, 5, &skip);
        assert!(second.iter().all(|n| !skip.contains(&n.id)));
        assert_eq!(second[0].id, first[2].id);
    }

    #[test]
    fn save_load_gives_identical_results_and_damage_is_detected() {
        let (items, queries, dim) = small();
        let index = AnnIndex::build(&items, dim, &BuildOptions::default(), &mut |_| {}).unwrap();
        let dir = std::env::temp_dir().join(format!("twotower-ann-{}", std::process::id()));
        index.save(&dir).unwrap();
        let loaded = AnnIndex::load(&dir).unwrap();
        let p = index.params();
        assert_eq!(
            loaded.search_batch(&queries, 10, p).unwrap(),
            index.search_batch(&queries, 10, p).unwrap()
        );

        // A flipped byte in the codes: a checksum error naming the file.
        let codes = dir.join("codes.u8");
        let mut bytes = std::fs::read(&codes).unwrap();
        bytes[7] ^= 0x10;
        std::fs::write(&codes, &bytes).unwrap();
        let e = AnnIndex::load(&dir).unwrap_err().to_string();
        assert!(e.contains("codes.u8") && e.contains("checksum"), "{e}");
        // A truncated file: a size error naming it.
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&codes, &bytes).unwrap();
        let e = AnnIndex::load(&dir).unwrap_err().to_string();
        assert!(e.contains("codes.u8") && e.contains("truncated"), "{e}");
        // A missing file and a damaged manifest.
        std::fs::remove_file(&codes).unwrap();
        assert!(AnnIndex::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("codes.u8"));
        std::fs::write(dir.join("index.json"), "{\"format\": 3").unwrap();
        let e = AnnIndex::load(&dir).unwrap_err().to_string();
        assert!(e.contains("index.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_index_of_zero_vectors_returns_rows_as_the_exact_index_does() {
        let dim = 8;
        let items = vec![0.0f32; 500 * dim];
        let index = AnnIndex::build(&items, dim, &BuildOptions::default(), &mut |_| {}).unwrap();
        let exact = BruteForceIndex::new(items.clone(), dim).unwrap();
        let q = vec![0.5f32; dim];
        let got = index.search(&q, 10, &[]);
        assert_eq!(got.len(), exact.search(&q, 10, &[]).len());
        assert!(got.iter().all(|n| n.score == 0.0), "{got:?}");
    }

    #[test]
    fn stored_search_settings_outside_the_index_are_refused_and_k_is_capped() {
        let (items, queries, dim) = small();
        let index = AnnIndex::build(&items, dim, &BuildOptions::default(), &mut |_| {}).unwrap();
        let dir = std::env::temp_dir().join(format!("twotower-ann-p-{}", std::process::id()));
        index.save(&dir).unwrap();
        let manifest = dir.join("index.json");
        let good: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        for (field, value, said) in [
            ("reorder", 1_000_000_000_000u64, "reorder"),
            ("reorder", 0, "reorder"),
            ("leaves_to_search", 0, "leaves_to_search"),
            ("leaves_to_search", 1 << 40, "leaves_to_search"),
        ] {
            let mut m = good.clone();
            m["search"][field] = value.into();
            std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
            let e = AnnIndex::load(&dir).unwrap_err().to_string();
            assert!(
                e.contains("index.json") && e.contains(said),
                "{field} {value}: {e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // A k far beyond the index reserves nothing: the answer is every row at most.
        let q = &queries[..dim];
        let all = index.search(q, usize::MAX, &[]);
        assert!(!all.is_empty() && all.len() <= index.len());
        let mut wide = index.params();
        wide.reorder = usize::MAX;
        let all = index.search_with(q, 1 << 40, &[], wide);
        assert!(all.len() <= index.len());
    }
}
