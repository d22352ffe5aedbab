//! Evaluation on items training never saw (`--split cold-items`): Protocol 1 with only
//! the cold items as candidates, the mean per-user AUC over them, and the genre-match
//! baseline they are compared with. Definitions in the README ("Cold items").

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use twotower_data::Movie;

use crate::eval::{Scorer, TOP_KS};

/// Users or test interactions scored per block.
const BLOCK: usize = 256;

/// The cold-item metrics of one scorer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdMetrics {
    /// Protocol 1 with the cold items as the only candidates, ties in the model's favour.
    pub factorized_top_k: BTreeMap<usize, f64>,
    /// The same with ties counted against the model.
    pub factorized_top_k_ties_against: BTreeMap<usize, f64>,
    /// Mean over users of the AUC of their test items against the other cold items.
    pub auc: f64,
    /// Users with both a test item and another cold item (those the AUC averages).
    pub auc_users: usize,
}

/// The cold-item metrics of a model beside its baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdReport {
    /// Number of cold items (the candidates).
    pub candidates: usize,
    pub model: ColdMetrics,
    pub popularity: ColdMetrics,
    pub genre_match: ColdMetrics,
}

#[derive(Default)]
struct Tally {
    fav: [usize; TOP_KS.len()],
    against: [usize; TOP_KS.len()],
    auc: f64,
    auc_users: usize,
}

impl Tally {
    fn merge(mut self, o: Tally) -> Tally {
        for i in 0..TOP_KS.len() {
            self.fav[i] += o.fav[i];
            self.against[i] += o.against[i];
        }
        self.auc += o.auc;
        self.auc_users += o.auc_users;
        self
    }

    /// Protocol 1 of test row `t` in `row`, among the rows `cold`.
    fn add_rank(&mut self, row: &[f32], t: u32, cold: &[u32]) {
        let s = row.get(t as usize).copied().unwrap_or(f32::NEG_INFINITY);
        let (mut greater, mut at_least) = (0usize, 0usize);
        for &c in cold {
            let x = row.get(c as usize).copied().unwrap_or(f32::NEG_INFINITY);
            greater += (x > s) as usize;
            at_least += (x >= s) as usize;
        }
        let at_least = at_least.saturating_sub(1); // the true item itself
        for (i, &k) in TOP_KS.iter().enumerate() {
            self.fav[i] += (greater < k) as usize;
            self.against[i] += (at_least < k) as usize;
        }
    }

    /// One user's AUC: their test rows `truth` against the other cold rows.
    fn add_auc(&mut self, row: &[f32], truth: &[u32], cold: &[u32]) {
        if let Some(a) = auc(row, truth, cold) {
            self.auc += a;
            self.auc_users += 1;
        }
    }
}

/// The AUC of the rows `truth` (positives) against the other rows of `cold` under `row`'s
/// scores: the share of (positive, negative) pairs the positive wins, a tie counting
/// half. `None` without a positive or a negative.
pub fn auc(row: &[f32], truth: &[u32], cold: &[u32]) -> Option<f64> {
    let mut pos: Vec<u32> = truth.to_vec();
    pos.sort_unstable();
    pos.dedup();
    let score = |r: u32| row.get(r as usize).copied().unwrap_or(f32::NEG_INFINITY);
    let mut all: Vec<(f32, bool)> = cold
        .iter()
        .map(|&c| (score(c), pos.binary_search(&c).is_ok()))
        .collect();
    let n_pos = all.iter().filter(|(_, p)| *p).count();
    let n_neg = all.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    // Mann–Whitney: the positives' rank sum, tied scores sharing their mean rank.
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * all[i..j].iter().filter(|(_, p)| *p).count() as f64;
        i = j;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// The cold-item metrics of `scorer` on `test` (user, catalogue row) pairs whose rows are
/// all in `cold`; `n_rows` is the catalogue's size.
pub fn evaluate_cold(
    scorer: &dyn Scorer,
    n_rows: usize,
    test: &[(u32, u32)],
    cold: &[u32],
) -> ColdMetrics {
    let mut by_user: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(u, r) in test {
        by_user.entry(u).or_default().push(r);
    }
    let users: Vec<u32> = by_user.keys().copied().collect();
    let per_interaction = scorer.per_interaction();
    let n = n_rows.max(1);
    let tally = users
        .par_chunks(BLOCK)
        .map(|block| {
            let scores = scorer.scores(block);
            let mut t = Tally::default();
            for (row, u) in scores.chunks(n).zip(block) {
                let truth = &by_user[u];
                t.add_auc(row, truth, cold);
                if !per_interaction {
                    for &r in truth {
                        t.add_rank(row, r, cold);
                    }
                }
            }
            t
        })
        .reduce(Tally::default, Tally::merge);
    let tally = if per_interaction {
        let positions: Vec<usize> = (0..test.len()).collect();
        positions
            .par_chunks(BLOCK)
            .map(|block| {
                let scores = scorer.interaction_scores(block);
                let mut t = Tally::default();
                for (row, &i) in scores.chunks(n).zip(block) {
                    t.add_rank(row, test[i].1, cold);
                }
                t
            })
            .reduce(Tally::default, Tally::merge)
            .merge(tally)
    } else {
        tally
    };
    let share = |hits: &[usize; TOP_KS.len()]| {
        TOP_KS
            .iter()
            .zip(hits)
            .map(|(&k, &h)| (k, h as f64 / test.len().max(1) as f64))
            .collect()
    };
    ColdMetrics {
        factorized_top_k: share(&tally.fav),
        factorized_top_k_ties_against: share(&tally.against),
        auc: tally.auc / tally.auc_users.max(1) as f64,
        auc_users: tally.auc_users,
    }
}

/// The genre-match baseline: a row scores the sum, over its genres, of the share of the
/// user's training items that have that genre.
pub struct GenreMatch {
    /// Genre indices of each catalogue row.
    genres: Vec<Vec<usize>>,
    /// Each user's share of training items per genre.
    shares: HashMap<u32, Vec<f32>>,
}

impl GenreMatch {
    /// From the catalogue `movies` and each user's training rows `seen`.
    pub fn new(movies: &[Movie], seen: &HashMap<u32, Vec<u32>>) -> Self {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let genres: Vec<Vec<usize>> = movies
            .iter()
            .map(|m| {
                m.genres
                    .iter()
                    .map(|g| {
                        let next = index.len();
                        *index.entry(g.as_str()).or_insert(next)
                    })
                    .collect()
            })
            .collect();
        let shares = seen
            .iter()
            .map(|(&u, rows)| {
                let mut share = vec![0f32; index.len()];
                for &r in rows {
                    for &g in genres.get(r as usize).map_or(&[][..], Vec::as_slice) {
                        share[g] += 1.0;
                    }
                }
                let total = rows.len().max(1) as f32;
                share.iter_mut().for_each(|s| *s /= total);
                (u, share)
            })
            .collect();
        GenreMatch { genres, shares }
    }
}

impl Scorer for GenreMatch {
    fn scores(&self, users: &[u32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(users.len() * self.genres.len());
        for u in users {
            let share = self.shares.get(u).map_or(&[][..], Vec::as_slice);
            out.extend(self.genres.iter().map(|gs| {
                gs.iter()
                    .map(|&g| share.get(g).copied().unwrap_or(0.0))
                    .sum::<f32>()
            }));
        }
        out
    }
}

/// The item-kNN baseline of cold users: a row scores the sum, over the user's given
/// items, of its cosine similarity to each (over training co-occurrence: the users who
/// interacted with both, over the square root of the product of each one's users).
pub struct ItemKnn {
    /// The training users of each row.
    users_of: Vec<Vec<u32>>,
    /// The training rows of each user.
    rows_of: HashMap<u32, Vec<u32>>,
    /// Each cold user's given rows.
    given: HashMap<u32, Vec<u32>>,
}

impl ItemKnn {
    /// From the training rows of each user (`seen`) and the cold users' `given` rows.
    pub fn new(
        n_rows: usize,
        seen: &HashMap<u32, Vec<u32>>,
        given: &HashMap<u32, Vec<u32>>,
    ) -> Self {
        let mut users_of = vec![Vec::new(); n_rows];
        let mut rows_of = HashMap::new();
        for (&u, rows) in seen {
            let mut distinct = rows.clone();
            distinct.sort_unstable();
            distinct.dedup();
            for &r in &distinct {
                if let Some(us) = users_of.get_mut(r as usize) {
                    us.push(u);
                }
            }
            rows_of.insert(u, distinct);
        }
        ItemKnn {
            users_of,
            rows_of,
            given: given.clone(),
        }
    }

    fn user_scores(&self, user: u32, out: &mut [f32]) {
        let mut given = self.given.get(&user).cloned().unwrap_or_default();
        given.sort_unstable();
        given.dedup();
        let mut co = vec![0f32; out.len()];
        for j in given {
            let Some(users) = self.users_of.get(j as usize) else {
                continue;
            };
            co.iter_mut().for_each(|c| *c = 0.0);
            for v in users {
                for &i in self.rows_of.get(v).map_or(&[][..], Vec::as_slice) {
                    co[i as usize] += 1.0;
                }
            }
            let nj = users.len() as f32;
            for (i, (o, &c)) in out.iter_mut().zip(&co).enumerate() {
                if c > 0.0 {
                    *o += c / (nj * self.users_of[i].len() as f32).sqrt();
                }
            }
        }
    }
}

impl Scorer for ItemKnn {
    fn scores(&self, users: &[u32]) -> Vec<f32> {
        let n = self.users_of.len();
        let mut out = vec![0f32; users.len() * n];
        for (row, &u) in out.chunks_mut(n.max(1)).zip(users) {
            self.user_scores(u, row);
        }
        out
    }
}

impl fmt::Display for ColdReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Cold items: Protocol 1 among the {} items training never saw, and per-user AUC",
            self.candidates
        )?;
        write!(f, "{:<26}", "")?;
        for k in TOP_KS {
            write!(f, "{:>9}", format!("top-{k}"))?;
        }
        writeln!(f, "{:>9}", "AUC")?;
        for (name, m) in [
            ("model", &self.model),
            ("popularity (ties against)", &self.popularity),
            ("genre match", &self.genre_match),
        ] {
            // Popularity gives every cold item the same score: only the count of ties
            // against it means anything.
            let top = if name == "model" || name == "genre match" {
                &m.factorized_top_k
            } else {
                &m.factorized_top_k_ties_against
            };
            write!(f, "{name:<26}")?;
            for k in TOP_KS {
                write!(f, "{:>9.4}", top.get(&k).copied().unwrap_or(0.0))?;
            }
            writeln!(f, "{:>9.4}", m.auc)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a cold-items split, training never touches a held-out item: its id row (in
    /// either kind of model) is still its initial value after training, though the full
    /// softmax ranges over the catalogue; a feature model has no row of its own for it.
    #[test]
    fn held_out_items_stay_untrained() {
        use crate::feature_experiment::FeatureExperiment;
        use crate::feature_model::FeatureFiles;
        use crate::nn::Encoder;
        use crate::spec::TowersSpec;
        use crate::{Experiment, TrainConfig};
        use twotower_data::SplitSpec;
        let ml = crate::feature_model::tests::tiny();
        let split = SplitSpec::ColdItems {
            fraction: 0.25,
            seed: 3,
        };
        let (_, test) = ml.split(&split).unwrap();
        let mut cold: Vec<usize> = test.iter().map(|r| r.item as usize - 1).collect();
        cold.sort_unstable();
        cold.dedup();
        assert_eq!(cold.len(), 3);
        let mut cfg = TrainConfig::preset("ids").unwrap();
        cfg.batch_size = 8;
        let fresh = Experiment::prepare(ml.clone(), &split, None, cfg.clone()).unwrap();
        let mut exp = Experiment::prepare(ml.clone(), &split, None, cfg.clone()).unwrap();
        exp.fit(false, &mut |_| {}).unwrap();
        let (before, after) = (
            fresh.model.candidate.embedding(),
            exp.model.candidate.embedding(),
        );
        for row in 0..ml.movies.len() {
            let key = exp.model.row_keys[row] as usize;
            let same = before.row(key) == after.row(key);
            assert_eq!(same, cold.contains(&row), "id model, row {row}");
        }
        let spec = "[query]\nfeatures = [{ kind = \"id\", column = \"user_id\", dim = 4 }]\n\
                    [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 4 }]\n";
        let towers = TowersSpec::parse("t.toml", spec).unwrap();
        let prepare = || {
            let files = FeatureFiles::default();
            FeatureExperiment::prepare(&ml, &split, None, cfg.clone(), towers.clone(), files)
                .unwrap()
        };
        let (fresh, mut exp) = (prepare(), prepare());
        exp.fit(false, &mut |_| {}).unwrap();
        let table = |e: &FeatureExperiment| match e.model.candidate.tower.encoders.first() {
            Some(Encoder::Bag(b)) => b.table.clone(),
            _ => panic!("an id table first"),
        };
        let (before, after) = (table(&fresh), table(&exp));
        let encoded = exp.model.candidate.encode(ml.movies.len(), &|r, c| {
            crate::feature_model::item_value(&ml.movies[r], &exp.model.item_features, c)
        });
        let Some(crate::nn::FeatureBatch::Ids(ids)) = encoded.first() else {
            panic!("item ids");
        };
        for (row, &key) in ids.ids.iter().enumerate() {
            // A held-out item is not in the vocabulary: it reads the (untrained) OOV row.
            assert_eq!(key == 0, cold.contains(&row), "feature model, row {row}");
            let same = before.row(key as usize) == after.row(key as usize);
            assert_eq!(same, cold.contains(&row), "feature model, row {row}");
        }
    }

    #[test]
    fn auc_counts_pairs_won_and_ties_as_half() {
        // Rows 0..5 cold; positives 1 and 3.
        let row = [0.1, 0.9, 0.5, 0.5, 0.2];
        let cold = [0, 1, 2, 3, 4];
        // Row 1 beats all 3 negatives; row 3 beats 0 and 4, ties 2: (3 + 2.5) / 6.
        let a = auc(&row, &[1, 3], &cold).unwrap();
        assert!((a - 5.5 / 6.0).abs() < 1e-12, "{a}");
        assert_eq!(auc(&[1.0; 5], &[2], &cold), Some(0.5));
        assert_eq!(auc(&row, &[], &cold), None);
        assert_eq!(auc(&row, &cold, &cold), None);
    }

    use crate::eval::tests::Fixed;

    #[test]
    fn protocol_1_ranks_among_the_cold_rows_only() {
        // Rows 0 and 1 are warm and score highest; the cold rows are 2..6.
        let rows = vec![
            vec![9.0, 9.0, 0.3, 0.1, 0.2, 0.0],
            vec![9.0, 9.0, 0.0, 0.0, 0.0, 0.0],
        ];
        let cold = [2, 3, 4, 5];
        let test = [(0, 2), (0, 4), (1, 3)];
        let m = evaluate_cold(&Fixed(rows), 6, &test, &cold);
        // (0, 2): rank 0; (0, 4): rank 1; (1, 3): all tied — rank 0 in favour, 3 against.
        assert_eq!(m.factorized_top_k[&1], 2.0 / 3.0);
        assert_eq!(m.factorized_top_k[&5], 1.0);
        assert_eq!(m.factorized_top_k_ties_against[&1], 1.0 / 3.0);
        // User 0: 2 and 4 against 3 and 5 win all 4 pairs; user 1: all tied, 0.5.
        assert_eq!(m.auc_users, 2);
        assert!((m.auc - 0.75).abs() < 1e-12, "{}", m.auc);
    }

    #[test]
    fn item_knn_sums_cosines_to_the_given_items() {
        // Users 1 and 2 trained on rows {0, 1} and {0, 2}; a cold user 9 gave row 0.
        let seen = HashMap::from([(1, vec![0, 1]), (2, vec![0, 2, 2])]);
        let given = HashMap::from([(9, vec![0])]);
        let s = ItemKnn::new(4, &seen, &given).scores(&[9, 5]);
        // cos(0, 0) = 2/2, cos(0, 1) = 1/√2, cos(0, 2) = 1/√2, row 3 has no users.
        let h = 1.0 / 2f32.sqrt();
        assert_eq!(s, vec![1.0, h, h, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn genre_match_scores_by_the_users_genre_shares() {
        let movie = |id, g: &[&str]| Movie {
            id,
            title: format!("M{id}"),
            release_date: String::new(),
            genres: g.iter().map(|s| s.to_string()).collect(),
        };
        let movies = [
            movie(1, &["Drama"]),
            movie(2, &["Drama", "War"]),
            movie(3, &["Comedy"]),
        ];
        let seen = HashMap::from([(7, vec![0, 0, 2, 1])]);
        let s = GenreMatch::new(&movies, &seen).scores(&[7, 8]);
        // User 7: Drama 3/4, War 1/4, Comedy 1/4; user 8 has no history.
        assert_eq!(s, vec![0.75, 1.0, 0.25, 0.0, 0.0, 0.0]);
    }
}
