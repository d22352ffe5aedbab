//! Evaluation of a [`FeatureModel`]: exact scores for [`crate::evaluate`] (a query per test
//! interaction when the query depends on the time, the softmax marginalised over a user's
//! timeline for per-user rankings), with the query's columns that read the user alone
//! scored once per user, and the same queries answered through an approximate index.

use std::collections::HashMap;

use crate::eval::Scorer;
use crate::fastexp::exp_affine;
use crate::feature_model::FeatureModel;
use crate::query_data::Query;
use crate::spec::FeatureSpec;
use crate::Result;

impl FeatureModel {
    /// True when a query reads the time itself (not only the history before it).
    fn reads_time(&self) -> bool {
        self.spec
            .query
            .features
            .iter()
            .any(|f| reads_time(f.get_ref()))
    }

    /// A scorer for [`crate::evaluate`] over test interactions `test` (user, row) at
    /// `times`: each interaction's query at its time, each user's query after their last
    /// training interaction.
    pub fn scorer<'a>(
        &'a self,
        test: &'a [(u32, u32)],
        times: &'a [i64],
    ) -> Result<FeatureScorer<'a>> {
        let vectors = self.candidate_vectors()?;
        Ok(FeatureScorer {
            model: self,
            by_user: ByUser::of(self, &vectors),
            candidates: twotower_index::BruteForceIndex::new(
                vectors,
                self.candidate.tower.output_width(),
            )?,
            test,
            times,
            visitors: None,
        })
    }
}

/// How many of a user's training times a time-dependent model's per-user scores average
/// over (see [`FeatureScorer`]'s `scores`).
pub const TIME_POINTS: usize = 16;

/// The query's output columns split by what they read: the user alone (their id and
/// features: the same at every time, so scored once per user) or the time (the history
/// before it, the timestamp: scored per query), each with the candidates' facing columns.
/// For towers whose outputs are their features side by side (no dense layers, no
/// normalisation) with columns of both kinds.
struct ByUser {
    user_cols: Vec<usize>,
    time_cols: Vec<usize>,
    users: twotower_index::BruteForceIndex,
    times: twotower_index::BruteForceIndex,
}

impl ByUser {
    fn of(model: &FeatureModel, candidates: &[f32]) -> Option<Self> {
        if model.spec.normalize || !model.query.tower.layers.is_empty() {
            return None;
        }
        let (mut user_cols, mut time_cols) = (Vec::new(), Vec::new());
        for (f, cols) in model
            .spec
            .query
            .features
            .iter()
            .zip(model.query.feature_columns())
        {
            let f = f.get_ref();
            let timed = matches!(f, FeatureSpec::History { .. }) || reads_time(f);
            if timed {
                &mut time_cols
            } else {
                &mut user_cols
            }
            .extend(cols);
        }
        let d = model.query.tower.output_width();
        if user_cols.is_empty() || time_cols.is_empty() || user_cols.len() + time_cols.len() != d {
            return None;
        }
        let index = |cols: &[usize]| {
            twotower_index::BruteForceIndex::new(
                pick(candidates, d, cols, 0..candidates.len() / d),
                cols.len(),
            )
            .ok()
        };
        Some(ByUser {
            users: index(&user_cols)?,
            times: index(&time_cols)?,
            user_cols,
            time_cols,
        })
    }
}

/// True when query feature `f` reads the interaction's time itself.
fn reads_time(f: &FeatureSpec) -> bool {
    matches!(f, FeatureSpec::Timestamp { .. })
}

/// Columns `cols` of rows `rows` of the row-major `m` of width `d`, row-major.
fn pick(m: &[f32], d: usize, cols: &[usize], rows: impl Iterator<Item = usize>) -> Vec<f32> {
    rows.flat_map(|r| cols.iter().map(move |&c| m[r * d + c]))
        .collect()
}

/// Scores for evaluation (see [`FeatureModel::scorer`]).
pub struct FeatureScorer<'a> {
    model: &'a FeatureModel,
    candidates: twotower_index::BruteForceIndex,
    /// The query's columns by what they read, when the towers allow scoring them apart.
    by_user: Option<ByUser>,
    test: &'a [(u32, u32)],
    times: &'a [i64],
    /// Users described by a given history instead of training (a cold-users split).
    visitors: Option<&'a crate::pipeline::Visitors>,
}

impl<'a> FeatureScorer<'a> {
    /// Asks about the users of `visitors` with their given histories.
    pub fn with_visitors(mut self, visitors: Option<&'a crate::pipeline::Visitors>) -> Self {
        self.visitors = visitors;
        self
    }

    /// User `user`'s query at `time`: with their given history if they have one.
    fn query(&self, user: u32, time: i64) -> Query<'a> {
        match self.visitors.and_then(|v| v.rows.get(&user)) {
            Some(rows) => Query {
                given: Some(rows),
                ..Query::at(user, time)
            },
            None => Query::at(user, time),
        }
    }

    /// Every candidate's score for each query of `q` (row-major), the `i`-th asked by user
    /// `owners[i]`: with the columns split by what they read, the user's columns once per
    /// user and the time's per query, summed.
    fn score(&self, q: &[f32], owners: &[u32]) -> Vec<f32> {
        let Some(by) = &self.by_user else {
            return self.candidates.scores(q).expect("the towers' widths agree");
        };
        let d = self.candidates.dim();
        let n = self.candidates.len();
        let mut out = by
            .times
            .scores(&pick(q, d, &by.time_cols, 0..owners.len()))
            .expect("the towers' widths agree");
        let mut slot: HashMap<u32, usize> = HashMap::new();
        let mut first = Vec::new();
        let slots: Vec<usize> = owners
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                *slot.entry(u).or_insert_with(|| {
                    first.push(i);
                    first.len() - 1
                })
            })
            .collect();
        let per_user = by
            .users
            .scores(&pick(q, d, &by.user_cols, first.into_iter()))
            .expect("the towers' widths agree");
        for (row, &s) in out.chunks_mut(n.max(1)).zip(&slots) {
            for (o, x) in row.iter_mut().zip(&per_user[s * n..(s + 1) * n]) {
                *o += x;
            }
        }
        out
    }

    /// What `user`'s query at `time` depends on beside the user: two queries of a user with
    /// the same key are the same query (the time itself when the query reads it; else how
    /// much of their history lies before it; nothing for a visitor, whose history is given).
    fn query_key(&self, user: u32, time: i64) -> i64 {
        let model = self.model;
        if model.reads_time() {
            time
        } else if self.visitors.is_some_and(|v| v.rows.contains_key(&user)) {
            -1
        } else if model.per_interaction() {
            model.data.before(user, time) as i64
        } else {
            0
        }
    }

    /// The times a user's per-user scores ask at: after their last interaction (training
    /// or given) when the query does not depend on the time or the user is a visitor;
    /// else up to [`TIME_POINTS`] of their training times.
    fn user_times(&self, user: u32) -> Vec<i64> {
        let data = &self.model.data;
        if let Some(t) = self.visitors.and_then(|v| v.last_time.get(&user)) {
            return vec![t + 1];
        }
        if !self.model.per_interaction() {
            return vec![data.last_time(user) + 1];
        }
        data.time_points(user, TIME_POINTS)
    }
}

impl Scorer for FeatureScorer<'_> {
    /// A user's scores. When queries depend on the time, a user's interactions are spread
    /// over their timeline, so the user's scores are the model's softmax marginalised over
    /// it: the mean of the softmax probabilities of the queries at up to
    /// [`TIME_POINTS`] of their training times (evenly spaced), each query being what
    /// training saw at that time. Otherwise, the one query after their last interaction
    /// (a visitor's: after the last of their given history).
    fn scores(&self, users: &[u32]) -> Vec<f32> {
        if !self.model.per_interaction() {
            let (q, owners): (Vec<Query>, Vec<u32>) = users
                .iter()
                .flat_map(|&u| {
                    self.user_times(u)
                        .into_iter()
                        .map(move |t| (self.query(u, t), u))
                })
                .unzip();
            let v = self.model.query_vectors(&q).expect("users encode");
            return self.score(&v, &owners);
        }
        let n = self.model.movies.len();
        let temperature = self
            .model
            .spec
            .temperature
            .unwrap_or(self.model.config.temperature);
        let mut out = vec![0f32; users.len() * n];
        // A few users at a time: their queries' logits are users × points × catalogue.
        for (block, block_out) in users.chunks(16).zip(out.chunks_mut(16 * n.max(1))) {
            // Each distinct query once, weighed by how many of the times ask it.
            let mut queries = Vec::new();
            let mut owner = Vec::new();
            for (k, &u) in block.iter().enumerate() {
                let mut keys: Vec<(i64, i64)> = Vec::new();
                for t in self.user_times(u) {
                    let key = self.query_key(u, t);
                    match keys.iter_mut().find(|(x, _)| *x == key) {
                        Some((_, m)) => *m += 1,
                        None => {
                            keys.push((key, 1));
                            queries.push(self.query(u, t));
                        }
                    }
                }
                owner.extend(keys.iter().map(|&(_, m)| (k, m as f32)));
            }
            let v = self.model.query_vectors(&queries).expect("users encode");
            let askers: Vec<u32> = owner.iter().map(|&(k, _)| block[k]).collect();
            let mut logits = self.score(&v, &askers);
            let mut points = vec![0f32; block.len()];
            for (row, &(k, m)) in logits.chunks_mut(n.max(1)).zip(&owner) {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                exp_affine(row, 1.0 / temperature, &[], max / temperature);
                let w = m / row.iter().sum::<f32>();
                for (o, p) in block_out[k * n..(k + 1) * n].iter_mut().zip(row.iter()) {
                    *o += w * p;
                }
                points[k] += m;
            }
            for (k, &m) in points.iter().enumerate() {
                for o in &mut block_out[k * n..(k + 1) * n] {
                    *o /= m.max(1.0);
                }
            }
        }
        out
    }

    fn per_interaction(&self) -> bool {
        self.model.per_interaction()
    }

    fn same_query_as(&self) -> Vec<usize> {
        let mut first: HashMap<(u32, i64), usize> = HashMap::new();
        self.test
            .iter()
            .zip(self.times)
            .enumerate()
            .map(|(i, (&(u, _), &t))| *first.entry((u, self.query_key(u, t))).or_insert(i))
            .collect()
    }

    fn interaction_scores(&self, interactions: &[usize]) -> Vec<f32> {
        let q: Vec<Query> = interactions
            .iter()
            .map(|&i| self.query(self.test[i].0, self.times[i]))
            .collect();
        let v = self.model.query_vectors(&q).expect("interactions encode");
        let owners: Vec<u32> = interactions.iter().map(|&i| self.test[i].0).collect();
        self.score(&v, &owners)
    }
}

/// A feature model's answers through an approximate index, for evaluation (see
/// [`crate::eval::evaluate_retrieved`]): Protocol 1 ranks each test interaction by its
/// position among the index's top 100 for the interaction's query. Protocol 2 takes the
/// index's top 20 (training rows excluded) for the user's query — for a time-dependent
/// model, for each of the queries its per-user scores average over, ordered by those
/// scores (the exact ranking, restricted to what the index returns).
pub struct FeatureRetriever<'a> {
    scorer: FeatureScorer<'a>,
    index: &'a twotower_index::AnnIndex,
}

impl<'a> FeatureScorer<'a> {
    /// Ranks through `index` instead of by exact scores.
    pub fn through(self, index: &'a twotower_index::AnnIndex) -> FeatureRetriever<'a> {
        FeatureRetriever {
            scorer: self,
            index,
        }
    }
}

impl FeatureRetriever<'_> {
    fn search(&self, queries: &[Query<'_>], k: usize, exclude: &[u32]) -> Vec<Vec<u32>> {
        let dim = self.index.dim().max(1);
        let v = self
            .scorer
            .model
            .query_vectors(queries)
            .expect("queries encode");
        v.chunks(dim)
            .map(|q| {
                self.index
                    .search(q, k, exclude)
                    .iter()
                    .map(|n| n.id)
                    .collect()
            })
            .collect()
    }
}

impl crate::eval::Retriever for FeatureRetriever<'_> {
    fn retrieve(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32> {
        let points: Vec<Query> = (self.scorer.user_times(user).into_iter())
            .map(|t| self.scorer.query(user, t))
            .collect();
        if points.len() == 1 {
            return self.search(&points, k, exclude).concat();
        }
        let mut found = self.search(&points, k, exclude).concat();
        found.sort_unstable();
        found.dedup();
        let scores = self.scorer.scores(&[user]);
        let score = |r: u32| scores.get(r as usize).copied().unwrap_or(f32::NEG_INFINITY);
        found.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
        found.truncate(k);
        found
    }

    fn per_interaction(&self) -> bool {
        self.scorer.per_interaction()
    }

    fn retrieve_interactions(&self, interactions: &[usize], k: usize) -> Vec<Vec<u32>> {
        let queries: Vec<Query> = interactions
            .iter()
            .map(|&i| {
                self.scorer
                    .query(self.scorer.test[i].0, self.scorer.times[i])
            })
            .collect();
        self.search(&queries, k, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_model::tests::{tiny, trained};
    use crate::feature_model::FeatureFiles;
    use crate::spec::TowersSpec;
    use crate::TrainConfig;

    /// With the user's columns scored once per user and the history's per query, every
    /// score is still the dot product of the whole query with the candidate.
    #[test]
    fn scores_split_by_user_and_time_are_the_dot_products() {
        let ml = tiny();
        let spec = TowersSpec::default_for(true).unwrap();
        let cfg = TrainConfig::preset("default").unwrap();
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec, &ml, &ml.ratings, FeatureFiles::default()).unwrap();
        trainer.run_epoch(&mut model).unwrap();
        let test: Vec<(u32, u32)> = ml.ratings.iter().map(|r| (r.user, r.item - 1)).collect();
        let times: Vec<i64> = ml.ratings.iter().map(|r| r.timestamp).collect();
        let scorer = model.scorer(&test, &times).unwrap();
        assert!(scorer.by_user.is_some());
        let c = model.candidate_vectors().unwrap();
        let d = model.candidate.tower.output_width();
        let n = c.len() / d;
        let asked: Vec<usize> = (0..test.len()).rev().step_by(3).collect();
        let got = scorer.interaction_scores(&asked);
        let queries: Vec<Query> = asked
            .iter()
            .map(|&i| Query::at(test[i].0, times[i]))
            .collect();
        let q = model.query_vectors(&queries).unwrap();
        for (qv, row) in q.chunks(d).zip(got.chunks(n)) {
            for (cv, g) in c.chunks(d).zip(row) {
                let want: f32 = qv.iter().zip(cv).map(|(a, b)| a * b).sum();
                assert!((g - want).abs() < 1e-5, "{g} against {want}");
            }
        }
    }

    /// A time-dependent model's per-user scores are its softmax averaged over the user's
    /// queries at their time points.
    #[test]
    fn per_user_scores_marginalise_the_time() {
        let (model, _) = trained();
        assert!(model.per_interaction());
        let scorer = model.scorer(&[], &[]).unwrap();
        // More users than one scoring block, in no particular order.
        let users: Vec<u32> = (0..20).map(|i| [4, 2, 9, 1, 7][i % 5]).collect();
        let got = scorer.scores(&users);
        let c = model.candidate_vectors().unwrap();
        let d = model.candidate.tower.output_width();
        let n = c.len() / d;
        assert_eq!(got.len(), users.len() * n);
        for (&u, got) in users.iter().zip(got.chunks(n)) {
            let times = model.data.time_points(u, TIME_POINTS);
            assert!(times.len() > 1);
            let queries: Vec<Query> = times.iter().map(|&t| Query::at(u, t)).collect();
            let q = model.query_vectors(&queries).unwrap();
            let mut want = vec![0f64; n];
            for qv in q.chunks(d) {
                let logits: Vec<f64> = c
                    .chunks(d)
                    .map(|cv| qv.iter().zip(cv).map(|(a, b)| (a * b) as f64).sum())
                    .collect();
                let z: f64 = logits.iter().map(|l| l.exp()).sum();
                for (w, l) in want.iter_mut().zip(&logits) {
                    *w += l.exp() / z / times.len() as f64;
                }
            }
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-5, "user {u}: {g} against {w}");
            }
        }
    }

    /// A cold user (a visitor with a given history) is scored from that history, after
    /// its last item; without it, they would be an unknown user with no history.
    #[test]
    fn cold_users_are_scored_from_their_given_history() {
        let (model, _) = trained();
        let mut visitors = crate::pipeline::Visitors::default();
        visitors.rows.insert(77, vec![2, 5, 8]);
        visitors.last_time.insert(77, 1_050);
        let plain = model.scorer(&[], &[]).unwrap();
        let with = model
            .scorer(&[], &[])
            .unwrap()
            .with_visitors(Some(&visitors));
        let q = Query {
            given: Some(&[2, 5, 8]),
            ..Query::at(77, 1_051)
        };
        let v = model.query_vectors(&[q]).unwrap();
        // The query depends on the time: per-user scores are softmax probabilities (of one
        // query here, the visitor's after their last given item).
        assert!(model.per_interaction());
        let logits = model.exact_index().unwrap().scores(&v).unwrap();
        let t = model.spec.temperature.unwrap_or(model.config.temperature);
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let e: Vec<f32> = logits.iter().map(|&x| ((x - max) / t).exp()).collect();
        let z: f32 = e.iter().sum();
        let want: Vec<f32> = e.iter().map(|x| x / z).collect();
        let close = |a: &[f32]| a.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(
            close(&with.scores(&[77])),
            "{:?} vs {want:?}",
            with.scores(&[77])
        );
        assert!(!close(&plain.scores(&[77])));
    }
}
