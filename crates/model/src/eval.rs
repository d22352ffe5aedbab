//! Retrieval metrics over the full catalogue, exactly as `shared/docs/EVALUATION.md` defines
//! them: factorized top-K accuracy (Protocol 1, TFRS `FactorizedTopK`) and top-N
//! Recall/NDCG with training items excluded (Protocol 2).
//!
//! Scoring is abstract: a [`Scorer`] returns one row of catalogue scores per user, so the
//! same code evaluates a model and the popularity baseline.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use twotower_index::top_k;

use crate::towers::TwoTowerModel;

/// The K of factorized top-K accuracy.
pub const TOP_KS: [usize; 5] = [1, 5, 10, 50, 100];
/// The K of Recall@K.
pub const RECALL_KS: [usize; 2] = [10, 20];
/// The K of NDCG@K.
pub const NDCG_KS: [usize; 1] = [10];

/// Rows ranked for Protocol 2 (the largest N of Recall@N and NDCG@N).
const PROTOCOL2_N: usize = 20;
const _: () = assert!(PROTOCOL2_N >= RECALL_KS[1] && PROTOCOL2_N >= NDCG_KS[0]);

/// Users evaluated per scoring block (bounds memory on large catalogues).
const USERS_PER_BLOCK: usize = 256;

/// Scores every catalogue row for a block of users (and, for models whose query depends on
/// more than the user — the time, the history before the interaction — for a block of test
/// interactions).
pub trait Scorer: Sync {
    /// `users.len()` rows of `n_rows` scores, row-major: each user's query as it stands
    /// after training (Protocol 2, and Protocol 1 when queries are per user).
    fn scores(&self, users: &[u32]) -> Vec<f32>;

    /// True when each test interaction has a query of its own; Protocol 1 then ranks each
    /// with [`Scorer::interaction_scores`].
    fn per_interaction(&self) -> bool {
        false
    }

    /// The one row of scores every user gets, when the scorer gives all the same one
    /// (popularity): both protocols then rank from one sort of it.
    fn shared_scores(&self) -> Option<&[f32]> {
        None
    }

    /// For each test interaction, the position of the first one asked with the same query
    /// (Protocol 1 scores each distinct query once). Called only when
    /// [`Scorer::per_interaction`] is true; by default every interaction is its own.
    fn same_query_as(&self) -> Vec<usize> {
        Vec::new()
    }

    /// One row of `n_rows` scores for each of `interactions` (positions in the test list),
    /// each under the query of that interaction. Called only when
    /// [`Scorer::per_interaction`] is true.
    fn interaction_scores(&self, interactions: &[usize]) -> Vec<f32> {
        let _ = interactions;
        Vec::new()
    }
}

/// Ranks rows by how often they were interacted with in training.
pub struct Popularity {
    counts: Vec<f32>,
}

impl Popularity {
    /// From training interactions given as catalogue rows.
    pub fn new(n_rows: usize, train_rows: impl IntoIterator<Item = u32>) -> Self {
        let mut counts = vec![0f32; n_rows];
        for r in train_rows {
            counts[r as usize] += 1.0;
        }
        Popularity { counts }
    }
}

impl Scorer for Popularity {
    fn scores(&self, users: &[u32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(users.len() * self.counts.len());
        for _ in users {
            out.extend_from_slice(&self.counts);
        }
        out
    }

    fn shared_scores(&self) -> Option<&[f32]> {
        Some(&self.counts)
    }
}

/// Scores with a model: dot products of the user's query vector with every row's candidate
/// vector, through the exact index.
pub struct ModelScorer<'a> {
    model: &'a TwoTowerModel,
    index: twotower_index::BruteForceIndex,
}

impl<'a> ModelScorer<'a> {
    /// Embeds the catalogue once.
    pub fn new(model: &'a TwoTowerModel) -> Self {
        ModelScorer {
            index: model.candidate_index(),
            model,
        }
    }
}

impl Scorer for ModelScorer<'_> {
    fn scores(&self, users: &[u32]) -> Vec<f32> {
        let names: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        let q = self.model.query_vectors(&names);
        self.index
            .scores(&q)
            .expect("query vectors have the model's dimension")
    }
}

/// The metrics of both protocols.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Protocol 1, ties counted in the model's favour (as TFRS).
    pub factorized_top_k: BTreeMap<usize, f64>,
    /// Protocol 1, ties counted against the model (the guard).
    pub factorized_top_k_ties_against: BTreeMap<usize, f64>,
    /// Protocol 2.
    pub recall: BTreeMap<usize, f64>,
    pub ndcg: BTreeMap<usize, f64>,
    pub test_interactions: usize,
    pub test_users: usize,
}

impl Metrics {
    /// True when ties changed some top-K accuracy by more than 0.001 (see EVALUATION.md).
    pub fn ties_matter(&self) -> bool {
        self.factorized_top_k
            .iter()
            .any(|(k, v)| (v - self.factorized_top_k_ties_against[k]).abs() > 0.001)
    }
}

/// Sums of both protocols over some users; blocks of users are tallied in parallel and
/// merged.
#[derive(Default)]
struct Tally {
    hits_fav: [usize; TOP_KS.len()],
    hits_against: [usize; TOP_KS.len()],
    recall: [f64; RECALL_KS.len()],
    ndcg: [f64; NDCG_KS.len()],
}

impl Tally {
    /// Adds one user: `row` holds their scores of every catalogue row, `truth` their test
    /// rows (duplicates included), `seen` their training rows.
    fn add_user(&mut self, row: &[f32], truth: &[u32], seen: &[u32]) {
        // Protocol 1: every test interaction, duplicates included.
        for &t in truth {
            self.add_protocol1(row, t);
        }
        self.add_ranking(row, truth, seen);
    }

    /// Protocol 1 for one test interaction: `row` scores every catalogue row, `t` is true.
    fn add_protocol1(&mut self, row: &[f32], t: u32) {
        let s = row[t as usize];
        let (mut greater, mut at_least) = (0usize, 0usize);
        for &x in row {
            greater += (x > s) as usize;
            at_least += (x >= s) as usize;
        }
        self.add_rank(greater, at_least - 1); // the true item itself
    }

    /// Protocol 1 for one test interaction whose item `greater` rows outscore, and
    /// `at_least` other rows score at least as high as.
    fn add_rank(&mut self, greater: usize, at_least: usize) {
        for (i, &k) in TOP_KS.iter().enumerate() {
            self.hits_fav[i] += (greater < k) as usize;
            self.hits_against[i] += (at_least < k) as usize;
        }
    }

    /// Protocol 2 for one user: distinct test rows, training rows excluded from the ranking.
    fn add_ranking(&mut self, row: &[f32], truth: &[u32], seen: &[u32]) {
        let ranked: Vec<u32> = top_k(row, PROTOCOL2_N, seen).iter().map(|n| n.id).collect();
        self.add_protocol2(&ranked, truth);
    }

    /// Protocol 1 from retrieved ids alone (an approximate index): `top` is the best 100
    /// rows with nothing excluded under the query the `truth` rows were asked with. A
    /// test row's rank is its position in `top` (ties cannot be told apart, so both tie
    /// counts are the same); a row not retrieved is a miss, as in TFRS with ScaNN.
    fn add_protocol1_ids(&mut self, top: &[u32], truth: &[u32]) {
        for &t in truth {
            let rank = top.iter().position(|&x| x == t).unwrap_or(usize::MAX);
            for (i, &k) in TOP_KS.iter().enumerate() {
                self.hits_fav[i] += (rank < k) as usize;
                self.hits_against[i] += (rank < k) as usize;
            }
        }
    }

    /// Recall and NDCG of one user's ranking (training rows already left out).
    fn add_protocol2(&mut self, ranked: &[u32], truth: &[u32]) {
        let mut relevant = truth.to_vec();
        relevant.sort_unstable();
        relevant.dedup();
        let is_hit: Vec<bool> = ranked
            .iter()
            .map(|id| relevant.binary_search(id).is_ok())
            .collect();
        for (i, &k) in RECALL_KS.iter().enumerate() {
            let h = is_hit.iter().take(k).filter(|&&x| x).count();
            self.recall[i] += h as f64 / relevant.len() as f64;
        }
        for (i, &k) in NDCG_KS.iter().enumerate() {
            let dcg: f64 = is_hit
                .iter()
                .take(k)
                .enumerate()
                .filter(|(_, &h)| h)
                .map(|(p, _)| 1.0 / (p as f64 + 2.0).log2())
                .sum();
            let idcg: f64 = (0..relevant.len().min(k))
                .map(|p| 1.0 / (p as f64 + 2.0).log2())
                .sum();
            self.ndcg[i] += dcg / idcg;
        }
    }

    /// Means over `interactions` (Protocol 1) and `users` (Protocol 2).
    fn metrics(&self, interactions: usize, users: usize) -> Metrics {
        let n = interactions.max(1) as f64;
        let nu = users.max(1) as f64;
        let per = |ks: &[usize], v: &[f64]| ks.iter().copied().zip(v.iter().copied()).collect();
        Metrics {
            factorized_top_k: per(&TOP_KS, &self.hits_fav.map(|h| h as f64 / n)),
            factorized_top_k_ties_against: per(&TOP_KS, &self.hits_against.map(|h| h as f64 / n)),
            recall: per(&RECALL_KS, &self.recall.map(|r| r / nu)),
            ndcg: per(&NDCG_KS, &self.ndcg.map(|r| r / nu)),
            test_interactions: interactions,
            test_users: users,
        }
    }

    fn merge(mut self, o: Tally) -> Tally {
        for i in 0..TOP_KS.len() {
            self.hits_fav[i] += o.hits_fav[i];
            self.hits_against[i] += o.hits_against[i];
        }
        for i in 0..RECALL_KS.len() {
            self.recall[i] += o.recall[i];
        }
        for i in 0..NDCG_KS.len() {
            self.ndcg[i] += o.ndcg[i];
        }
        self
    }
}

/// Evaluates `scorer` on test interactions `(user id, catalogue row)`; `seen` holds each
/// user's training rows (excluded in Protocol 2 only). Users are scored in blocks, blocks
/// run on all cores.
pub fn evaluate(
    scorer: &dyn Scorer,
    n_rows: usize,
    test: &[(u32, u32)],
    seen: &HashMap<u32, Vec<u32>>,
) -> Metrics {
    let (by_user, users) = group_by_user(test);
    if let Some(row) = scorer
        .shared_scores()
        .filter(|r| r.len() == n_rows && r.iter().all(|x| x.is_finite()))
    {
        return evaluate_shared(row, &by_user, seen).metrics(test.len(), users.len());
    }
    let per_interaction = scorer.per_interaction();
    let tally = users
        .par_chunks(USERS_PER_BLOCK)
        .map(|block| {
            let scores = scorer.scores(block);
            let mut t = Tally::default();
            for (b, u) in block.iter().enumerate() {
                let row = &scores[b * n_rows..(b + 1) * n_rows];
                let seen = seen.get(u).map_or(&[][..], Vec::as_slice);
                if per_interaction {
                    t.add_ranking(row, &by_user[u], seen);
                } else {
                    t.add_user(row, &by_user[u], seen);
                }
            }
            t
        })
        .reduce(Tally::default, Tally::merge);
    let tally = if per_interaction {
        // Protocol 1, each test interaction under its own query, each distinct query
        // scored once for all the interactions asked with it.
        let groups = query_groups(&scorer.same_query_as(), test.len());
        groups
            .par_chunks(USERS_PER_BLOCK)
            .map(|block| {
                let asked: Vec<usize> = block.iter().map(|(i, _)| *i).collect();
                let scores = scorer.interaction_scores(&asked);
                let mut t = Tally::default();
                for (b, (_, members)) in block.iter().enumerate() {
                    for &m in members {
                        t.add_protocol1(&scores[b * n_rows..(b + 1) * n_rows], test[m].1);
                    }
                }
                t
            })
            .reduce(Tally::default, Tally::merge)
            .merge(tally)
    } else {
        tally
    };
    tally.metrics(test.len(), users.len())
}

/// Both protocols for scores `row` shared by every user, from one sort: a test item's rank
/// counts come from the sorted scores, each user's ranking walks the rows best first (ties
/// by row, as [`top_k`]) past their training rows — the same figures as scoring every user.
fn evaluate_shared(
    row: &[f32],
    by_user: &BTreeMap<u32, Vec<u32>>,
    seen: &HashMap<u32, Vec<u32>>,
) -> Tally {
    let n = row.len();
    let mut sorted = row.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
    let mut t = Tally::default();
    for (u, truth) in by_user {
        for &r in truth {
            let s = row[r as usize];
            let greater = n - sorted.partition_point(|&x| x <= s);
            let at_least = n - sorted.partition_point(|&x| x < s);
            t.add_rank(greater, at_least - 1);
        }
        let mut skip = seen.get(u).cloned().unwrap_or_default();
        skip.sort_unstable();
        let ranked: Vec<u32> = order
            .iter()
            .copied()
            .filter(|r| skip.binary_search(r).is_err())
            .take(PROTOCOL2_N)
            .collect();
        t.add_protocol2(&ranked, truth);
    }
    t
}

/// The test interactions grouped by query: each group's first interaction and its members,
/// from `same` (for each interaction, the first one with its query; empty or malformed:
/// every interaction alone).
fn query_groups(same: &[usize], n: usize) -> Vec<(usize, Vec<usize>)> {
    if same.len() != n || same.iter().enumerate().any(|(i, &f)| f > i) {
        return (0..n).map(|i| (i, vec![i])).collect();
    }
    let mut slot = vec![usize::MAX; n];
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, &f) in same.iter().enumerate() {
        if slot[f] == usize::MAX {
            slot[f] = groups.len();
            groups.push((f, Vec::new()));
        }
        groups[slot[f]].1.push(i);
    }
    groups
}

/// Test rows of each user, and the users in order.
fn group_by_user(test: &[(u32, u32)]) -> (BTreeMap<u32, Vec<u32>>, Vec<u32>) {
    let mut by_user: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(u, r) in test {
        by_user.entry(u).or_default().push(r);
    }
    let users = by_user.keys().copied().collect();
    (by_user, users)
}

/// Retrieves the best rows for one user (an approximate index behind a model).
pub trait Retriever: Sync {
    /// The `k` best rows for `user`, best first, skipping `exclude`.
    fn retrieve(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32>;

    /// True when each test interaction has a query of its own; Protocol 1 then retrieves
    /// with [`Retriever::retrieve_interactions`].
    fn per_interaction(&self) -> bool {
        false
    }

    /// The `k` best rows, best first, under the query of each of `interactions`
    /// (positions in the test list). Called only when [`Retriever::per_interaction`].
    fn retrieve_interactions(&self, interactions: &[usize], k: usize) -> Vec<Vec<u32>> {
        let _ = (interactions, k);
        Vec::new()
    }
}

/// [`evaluate`] for a [`Retriever`]: metrics from retrieved ids, as TFRS computes them for
/// a ScaNN layer (see `Tally::add_protocol1_ids`).
pub fn evaluate_retrieved(
    retriever: &dyn Retriever,
    test: &[(u32, u32)],
    seen: &HashMap<u32, Vec<u32>>,
) -> Metrics {
    let (by_user, users) = group_by_user(test);
    let max_k = TOP_KS.iter().copied().max().unwrap_or(0);
    let per_interaction = retriever.per_interaction();
    let tally = users
        .par_chunks(USERS_PER_BLOCK)
        .map(|block| {
            let mut t = Tally::default();
            for u in block {
                let s = seen.get(u).map_or(&[][..], Vec::as_slice);
                if !per_interaction {
                    t.add_protocol1_ids(&retriever.retrieve(*u, max_k, &[]), &by_user[u]);
                }
                t.add_protocol2(&retriever.retrieve(*u, PROTOCOL2_N, s), &by_user[u]);
            }
            t
        })
        .reduce(Tally::default, Tally::merge);
    let tally = if per_interaction {
        let positions: Vec<usize> = (0..test.len()).collect();
        positions
            .par_chunks(USERS_PER_BLOCK)
            .map(|block| {
                let mut t = Tally::default();
                for (top, &i) in retriever
                    .retrieve_interactions(block, max_k)
                    .iter()
                    .zip(block)
                {
                    t.add_protocol1_ids(top, &[test[i].1]);
                }
                t
            })
            .reduce(Tally::default, Tally::merge)
            .merge(tally)
    } else {
        tally
    };
    tally.metrics(test.len(), users.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Retrieval from fixed scores: the exact ranking, so it must match [`evaluate`].
    struct Ranked(Vec<Vec<f32>>);
    impl Retriever for Ranked {
        fn retrieve(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32> {
            top_k(&self.0[user as usize], k, exclude)
                .iter()
                .map(|n| n.id)
                .collect()
        }
    }

    #[test]
    fn retrieved_ids_give_the_same_metrics_as_distinct_scores() {
        let rows: Vec<Vec<f32>> = (0..3)
            .map(|u| (0..151).map(|i| ((i * 31 + u * 7) % 151) as f32).collect())
            .collect();
        let test = [(0, 5), (0, 140), (1, 3), (1, 3), (2, 77), (2, 120)];
        let mut seen = HashMap::new();
        seen.insert(0, vec![1, 2, 3]);
        seen.insert(2, vec![10]);
        let want = evaluate(&Fixed(rows.clone()), 151, &test, &seen);
        let got = evaluate_retrieved(&Ranked(rows), &test, &seen);
        assert_eq!(got, want);
    }

    /// Fixed scores: row `u` for user `u`.
    pub(crate) struct Fixed(pub Vec<Vec<f32>>);
    impl Scorer for Fixed {
        fn scores(&self, users: &[u32]) -> Vec<f32> {
            users
                .iter()
                .flat_map(|&u| self.0[u as usize].clone())
                .collect()
        }
    }

    #[test]
    fn factorized_top_k_counts_strictly_greater_and_ties_in_favour() {
        // User 0 scores rows: row 2 is best, rows 0 and 1 tie.
        let s = Fixed(vec![vec![0.5, 0.5, 0.9, 0.1]]);
        let m = evaluate(&s, 4, &[(0, 0), (0, 1), (0, 3), (0, 2)], &HashMap::new());
        // ranks (strictly greater): row0 → 1, row1 → 1, row3 → 3, row2 → 0.
        assert_eq!(m.factorized_top_k[&1], 0.25);
        assert_eq!(m.factorized_top_k[&5], 1.0);
        // Against: row0 → 2, row1 → 2, row3 → 3, row2 → 0: top-1 still 0.25, top-5 1.0.
        assert_eq!(m.factorized_top_k_ties_against[&1], 0.25);
        let m2 = evaluate(&s, 4, &[(0, 0)], &HashMap::new());
        assert_eq!(m2.factorized_top_k[&1], 0.0);
    }

    #[test]
    fn constant_scores_are_caught_by_the_guard() {
        let s = Fixed(vec![vec![1.0; 200]]);
        let m = evaluate(&s, 200, &[(0, 7), (0, 150)], &HashMap::new());
        assert_eq!(m.factorized_top_k[&1], 1.0);
        assert_eq!(m.factorized_top_k_ties_against[&100], 0.0);
        assert!(m.ties_matter());
    }

    #[test]
    fn duplicate_interactions_count_each_time() {
        let s = Fixed(vec![vec![3.0, 2.0, 1.0]]);
        let m = evaluate(&s, 3, &[(0, 0), (0, 2), (0, 2)], &HashMap::new());
        // hits@1: row 0 only → 1/3.
        assert!((m.factorized_top_k[&1] - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.test_interactions, 3);
        assert_eq!(m.test_users, 1);
    }

    #[test]
    fn recall_and_ndcg_exclude_seen_items() {
        // 12 rows; user 0's best rows are 11, 10, 9, ...; row 11 was seen in training.
        let row: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let s = Fixed(vec![row]);
        let seen = HashMap::from([(0u32, vec![11u32])]);
        // Test rows 10 (rank 1 after exclusion) and 0 (rank 11 after exclusion).
        let m = evaluate(&s, 12, &[(0, 10), (0, 0)], &seen);
        assert_eq!(m.recall[&10], 0.5);
        assert_eq!(m.recall[&20], 1.0);
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!((m.ndcg[&10] - 1.0 / idcg).abs() < 1e-12);
        // Protocol 1 does not exclude: row 10 has rank 1.
        assert_eq!(m.factorized_top_k[&1], 0.0);
        assert_eq!(m.factorized_top_k[&5], 0.5);
    }

    /// Queries per interaction: a scorer whose interaction rows are its user's rows gives
    /// the per-user metrics, and one whose rows differ ranks each interaction by its own.
    struct PerInteraction {
        users: Fixed,
        rows: Vec<Vec<f32>>,
    }
    impl Scorer for PerInteraction {
        fn scores(&self, users: &[u32]) -> Vec<f32> {
            self.users.scores(users)
        }
        fn per_interaction(&self) -> bool {
            true
        }
        fn interaction_scores(&self, interactions: &[usize]) -> Vec<f32> {
            interactions
                .iter()
                .flat_map(|&i| self.rows[i].clone())
                .collect()
        }
    }

    #[test]
    fn each_interaction_can_be_ranked_under_its_own_query() {
        let user_rows: Vec<Vec<f32>> = (0..3)
            .map(|u| (0..300).map(|i| ((i * 37 + u * 11) % 300) as f32).collect())
            .collect();
        let test = [(0, 5), (0, 140), (1, 3), (1, 3), (2, 77), (2, 299)];
        let seen = HashMap::from([(0u32, vec![1u32, 2]), (2, vec![10])]);
        let same = PerInteraction {
            users: Fixed(user_rows.clone()),
            rows: test
                .iter()
                .map(|&(u, _)| user_rows[u as usize].clone())
                .collect(),
        };
        let want = evaluate(&Fixed(user_rows.clone()), 300, &test, &seen);
        assert_eq!(evaluate(&same, 300, &test, &seen), want);
        // Now interaction k puts its true row first, except the last which puts it last.
        let rows: Vec<Vec<f32>> = test
            .iter()
            .enumerate()
            .map(|(k, &(_, t))| {
                let mut r = vec![1.0f32; 300];
                r[t as usize] = if k == test.len() - 1 { 0.0 } else { 2.0 };
                r
            })
            .collect();
        let own = PerInteraction {
            users: Fixed(user_rows),
            rows,
        };
        let m = evaluate(&own, 300, &test, &seen);
        assert!((m.factorized_top_k[&1] - 5.0 / 6.0).abs() < 1e-12);
        assert!((m.factorized_top_k[&100] - 5.0 / 6.0).abs() < 1e-12);
        // Protocol 2 still ranks each user with their own query.
        assert_eq!(m.recall, want.recall);
        assert_eq!(m.ndcg, want.ndcg);
    }

    #[test]
    fn popularity_ranks_by_training_count() {
        let p = Popularity::new(3, [2, 2, 1]);
        assert_eq!(p.scores(&[5, 9]), vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    }

    /// Popularity is ranked from one sort of its counts; the figures are exactly those of
    /// scoring every user with the same row (many ties, duplicates, training rows).
    #[test]
    fn shared_scores_give_the_figures_of_scoring_every_user() {
        let n = 300;
        let train: Vec<u32> = (0..4000u32).map(|i| (i * i + 7 * i) % 251).collect();
        let pop = Popularity::new(n, train.iter().copied());
        let test: Vec<(u32, u32)> = (0..900u32)
            .map(|i| (i % 37, (i * 13 + i / 5) % 300))
            .collect();
        let seen: HashMap<u32, Vec<u32>> = (0..37u32)
            .map(|u| (u, (0..(u % 9) * 5).map(|k| (k * 17 + u) % 300).collect()))
            .collect();
        let every = Fixed(vec![pop.counts.clone(); 37]);
        assert!(every.shared_scores().is_none());
        assert_eq!(
            evaluate(&pop, n, &test, &seen),
            evaluate(&every, n, &test, &seen)
        );
    }
}
