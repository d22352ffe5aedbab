//! The auto-tuner: the fastest search setting that reaches a target recall@k on held-out
//! sample queries.
//!
//! For each re-rank size (k, 2k, 40, 80, … 1,280) it finds the fewest leaves that reach the
//! target (a doubling search, then bisection; recall grows with leaves, and a larger
//! re-rank never needs more leaves, which bounds the next search). Each feasible pair is
//! then timed one query at a time on one thread, and the fastest kept.

use std::time::Instant;

use serde::Serialize;

use rand::SeedableRng;

use crate::{AnnIndex, BuildOptions, IndexError, SearchParams};

/// One measured setting.
#[derive(Debug, Clone, Serialize)]
pub struct TuneTrial {
    pub leaves_to_search: usize,
    pub reorder: usize,
    pub recall: f64,
    /// Mean microseconds per query, one thread, one query at a time.
    pub micros_per_query: f64,
}

/// What the tuner chose and why.
#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    pub target_recall: f64,
    pub k: usize,
    pub queries: usize,
    /// False when no setting reached the target (the most accurate one is kept).
    pub reached: bool,
    pub chosen: TuneTrial,
    /// Every timed candidate (each the fewest leaves reaching the target for its re-rank).
    pub candidates: Vec<TuneTrial>,
}

/// Fraction of each query's true `k` best found among its `k` results.
pub fn recall_at(found: &[Vec<crate::Neighbor>], truth: &[Vec<u32>], k: usize) -> f64 {
    let mut hits = 0usize;
    let mut total = 0usize;
    for (f, t) in found.iter().zip(truth) {
        let t = &t[..k.min(t.len())];
        total += t.len();
        hits += f.iter().take(k).filter(|n| t.contains(&n.id)).count();
    }
    if total == 0 {
        1.0
    } else {
        hits as f64 / total as f64
    }
}

/// How [`AnnIndex::build_tuned`] sets the search setting.
#[derive(Debug, Clone)]
pub enum Setting {
    /// As given.
    Fixed(SearchParams),
    /// The fastest reaching `target_recall` on `queries` (row-major), or on sampled rows.
    Tuned {
        target_recall: f64,
        queries: Option<Vec<f32>>,
    },
}

impl AnnIndex {
    /// Builds an index over `vectors` (see [`AnnIndex::build`]) and sets how it searches:
    /// as `setting` gives it, or tuned to the fastest setting whose recall@10 reaches the
    /// target on the tuning queries (by default 1,000 rows of `vectors` sampled with the
    /// build seed) against their exact top 10. `progress` hears each stage.
    pub fn build_tuned(
        vectors: Vec<f32>,
        dim: usize,
        opts: &BuildOptions,
        setting: Setting,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(Self, Option<TuneReport>), IndexError> {
        if let Setting::Tuned { target_recall, .. } = setting {
            if !(0.0..=1.0).contains(&target_recall) {
                return Err(IndexError::Invalid(format!(
                    "the target recall must be between 0 and 1, got {target_recall}"
                )));
            }
        }
        let mut index = AnnIndex::build(&vectors, dim, opts, progress)?;
        let (target, queries) = match setting {
            Setting::Fixed(p) => {
                index.set_params(p);
                return Ok((index, None));
            }
            Setting::Tuned {
                target_recall,
                queries,
            } => (target_recall, queries),
        };
        let queries = queries.unwrap_or_else(|| {
            let n = vectors.len() / dim;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed ^ 1);
            rand::seq::index::sample(&mut rng, n, n.min(1000))
                .iter()
                .flat_map(|i| vectors[i * dim..(i + 1) * dim].iter().copied())
                .collect()
        });
        opts.check_stop()?;
        progress(&format!(
            "tuning for recall@10 ≥ {target} on {} queries",
            queries.len() / dim
        ));
        let truth = crate::brute_force::exact_truth(vectors, dim, &queries, 10)?;
        opts.check_stop()?;
        let report = index.tune(&queries, &truth, 10, target)?;
        Ok((index, Some(report)))
    }

    /// Chooses and stores the fastest setting whose recall@`k` on `queries` (row-major,
    /// with exact top-`k` ids `truth`) reaches `target` with 95% confidence (its one-sided
    /// lower bound over the queries, so that unseen queries tend to reach it too).
    /// Queries of another dimension, or a truth row count that differs, are an error.
    pub fn tune(
        &mut self,
        queries: &[f32],
        truth: &[Vec<u32>],
        k: usize,
        target: f64,
    ) -> Result<TuneReport, IndexError> {
        let d = self.dim();
        if queries.is_empty()
            || !queries.len().is_multiple_of(d)
            || queries.len() / d != truth.len()
        {
            return Err(IndexError::Invalid(format!(
                "tuning needs whole queries of dimension {d} and one truth row each ({} floats, \
                 {} truth rows)",
                queries.len(),
                truth.len()
            )));
        }
        let nq = queries.len() / d;
        let leaves = self.leaves();
        // Mean recall and its one-sided 95% lower confidence bound over the queries: a
        // setting is feasible when the bound reaches the target, so that the target tends
        // to hold on queries the tuner did not see.
        let recall = |p: SearchParams| -> (f64, f64) {
            let found = self
                .search_batch(queries, k, p)
                .expect("dimension checked above");
            let per: Vec<f64> = found
                .iter()
                .zip(truth)
                .map(|(f, t)| recall_at(std::slice::from_ref(f), std::slice::from_ref(t), k))
                .collect();
            let n = per.len().max(1) as f64;
            let mean = per.iter().sum::<f64>() / n;
            let var = per.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            (mean, mean - 1.645 * (var / n).sqrt())
        };
        let ok = |r: (f64, f64)| r.1 >= target;
        let mut reorders: Vec<usize> = [k, 2 * k, 40, 80, 160, 320, 640, 1280]
            .into_iter()
            .filter(|&r| r >= k && r <= self.len().max(k))
            .collect();
        reorders.sort_unstable();
        reorders.dedup();

        let mut feasible = Vec::new();
        let mut hi_bound = leaves;
        let mut best_effort = (
            f64::NEG_INFINITY,
            SearchParams {
                leaves_to_search: leaves,
                reorder: k,
            },
        );
        for &reorder in &reorders {
            let at = |nl: usize| {
                recall(SearchParams {
                    leaves_to_search: nl,
                    reorder,
                })
            };
            let top = at(hi_bound);
            if top.0 > best_effort.0 {
                best_effort = (
                    top.0,
                    SearchParams {
                        leaves_to_search: hi_bound,
                        reorder,
                    },
                );
            }
            if !ok(top) {
                continue;
            }
            // Doubling search for a feasible count, then bisection below it.
            let mut lo = 0; // largest count known to fail (0: none tried)
            let mut hi = 1;
            let mut hi_recall;
            loop {
                if hi >= hi_bound {
                    hi = hi_bound;
                    hi_recall = top;
                    break;
                }
                let r = at(hi);
                if ok(r) {
                    hi_recall = r;
                    break;
                }
                lo = hi;
                hi *= 2;
            }
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                let r = at(mid);
                if ok(r) {
                    hi = mid;
                    hi_recall = r;
                } else {
                    lo = mid;
                }
            }
            feasible.push((
                SearchParams {
                    leaves_to_search: hi,
                    reorder,
                },
                hi_recall.0,
            ));
            hi_bound = hi;
        }

        let time = |p: SearchParams| -> f64 {
            let mut best = f64::INFINITY;
            for _ in 0..2 {
                let t = Instant::now();
                for q in queries.chunks_exact(d) {
                    std::hint::black_box(self.search_with(q, k, &[], p));
                }
                best = best.min(t.elapsed().as_secs_f64() * 1e6 / nq.max(1) as f64);
            }
            best
        };
        let candidates: Vec<TuneTrial> = feasible
            .iter()
            .map(|&(p, r)| TuneTrial {
                leaves_to_search: p.leaves_to_search,
                reorder: p.reorder,
                recall: r,
                micros_per_query: time(p),
            })
            .collect();
        let (reached, chosen) = match candidates
            .iter()
            .min_by(|a, b| a.micros_per_query.total_cmp(&b.micros_per_query))
        {
            Some(c) => (true, c.clone()),
            None => {
                let p = best_effort.1;
                (
                    false,
                    TuneTrial {
                        leaves_to_search: p.leaves_to_search,
                        reorder: p.reorder,
                        recall: best_effort.0,
                        micros_per_query: time(p),
                    },
                )
            }
        };
        self.set_params(SearchParams {
            leaves_to_search: chosen.leaves_to_search,
            reorder: chosen.reorder,
        });
        let report = TuneReport {
            target_recall: target,
            k,
            queries: nq,
            reached,
            chosen,
            candidates,
        };
        self.set_tuning(
            serde_json::to_value(&report).expect("report serialises"),
            queries,
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use crate::synth::{generate, SynthOptions};
    use crate::{AnnIndex, BruteForceIndex, BuildOptions};

    #[test]
    fn reaches_the_target_on_held_out_queries() {
        let set = generate(&SynthOptions {
            items: 20_000,
            queries: 400,
            dim: 32,
            clusters: 100,
            seed: 11,
        });
        let (tune_q, test_q) = set.queries.split_at(200 * 32);
        let exact = BruteForceIndex::new(set.items.clone(), 32).unwrap();
        let truth = |q: &[f32]| -> Vec<Vec<u32>> {
            exact
                .search_batch(q, 10)
                .unwrap()
                .iter()
                .map(|r| r.iter().map(|n| n.id).collect())
                .collect()
        };
        let mut index =
            AnnIndex::build(&set.items, 32, &BuildOptions::default(), &mut |_| {}).unwrap();
        let report = index.tune(tune_q, &truth(tune_q), 10, 0.95).unwrap();
        assert!(report.reached && report.chosen.recall >= 0.95, "{report:?}");
        assert!(
            report.chosen.leaves_to_search < index.leaves(),
            "{report:?}"
        );
        let found = index.search_batch(test_q, 10, index.params()).unwrap();
        let r = super::recall_at(&found, &truth(test_q), 10);
        assert!(r >= 0.92, "held-out recall {r} with {:?}", index.params());
    }
}
