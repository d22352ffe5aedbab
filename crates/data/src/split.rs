//! Train/test splits: the official MovieLens 100K folds, seeded random fractions (the TFRS
//! tutorial's 80/20 shuffle), and explicit files.

use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::{DataError, Interaction, Result};

/// The official folds of MovieLens 100K (`uN.base` / `uN.test`).
pub const FOLDS: [&str; 7] = ["u1", "u2", "u3", "u4", "u5", "ua", "ub"];

/// How to split the ratings into train and test.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitSpec {
    /// An official fold by name (`u1`..`u5`, `ua`, `ub`).
    Fold(String),
    /// Shuffle all ratings with `seed`, the last `test_fraction` is the test set.
    Random { test_fraction: f64, seed: u64 },
    /// Two `u.data`-format files.
    Files { train: PathBuf, test: PathBuf },
    /// Each user's last `n` interactions by time are the test set (users with at most `n`
    /// interactions stay wholly in training).
    LastPerUser { n: usize },
    /// Interactions before `cut` (a Unix timestamp) train, the rest test.
    TimeBefore { cut: i64 },
    /// Every interaction of a seeded `fraction` of the items is the test set: training
    /// never sees those items (see [`cold_items`]).
    ColdItems { fraction: f64, seed: u64 },
    /// Every interaction of a seeded `fraction` of the users is the test side, of which
    /// each user's first `history` by time are given as their history (see [`cold_users`]
    /// and [`first_per_user`]).
    ColdUsers {
        fraction: f64,
        history: usize,
        seed: u64,
    },
}

/// What a split by name may need besides its name (see [`SplitSpec::named`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitParams {
    /// `random`: the fraction held out for testing, and the shuffle seed.
    pub test_fraction: f64,
    pub seed: u64,
    /// `last`: test interactions per user.
    pub n: usize,
    /// `time`: the Unix timestamp where test begins.
    pub before: Option<i64>,
    /// `cold-items`, `cold-users`: the fraction of the items or users held out (with
    /// `seed`).
    pub cold_fraction: f64,
    /// `cold-users`: interactions given to each held-out user as their history.
    pub history: usize,
}

impl Default for SplitParams {
    /// The tutorial's 80/20 shuffle with seed 42, one interaction per user for `last`.
    fn default() -> Self {
        SplitParams {
            test_fraction: 0.2,
            seed: 42,
            n: 1,
            before: None,
            cold_fraction: 0.2,
            history: 5,
        }
    }
}

impl SplitSpec {
    /// The split called `name`: an official fold (`u1`..`u5`, `ua`, `ub`), `random`, `last`
    /// or `time`, with what it needs from `p`.
    pub fn named(name: &str, p: SplitParams) -> Result<Self> {
        match name {
            "random" => Ok(SplitSpec::Random {
                test_fraction: p.test_fraction,
                seed: p.seed,
            }),
            "last" => Ok(SplitSpec::LastPerUser { n: p.n }),
            "cold-items" => Ok(SplitSpec::ColdItems {
                fraction: p.cold_fraction,
                seed: p.seed,
            }),
            "cold-users" => Ok(SplitSpec::ColdUsers {
                fraction: p.cold_fraction,
                history: p.history,
                seed: p.seed,
            }),
            "time" => p
                .before
                .map(|cut| SplitSpec::TimeBefore { cut })
                .ok_or_else(|| {
                    DataError::Invalid("split time needs a time to cut at (--before)".into())
                }),
            f if FOLDS.contains(&f) => Ok(SplitSpec::Fold(f.into())),
            other => Err(DataError::Invalid(format!(
                "split {}: expected one of {}, `random`, `last`, `time`, `cold-items` or \
                 `cold-users`",
                crate::shown(other),
                FOLDS.join(", ")
            ))),
        }
    }

    /// A short label for reports and model cards.
    pub fn label(&self) -> String {
        match self {
            SplitSpec::Fold(f) => f.clone(),
            SplitSpec::Random {
                test_fraction,
                seed,
            } => format!("random(test_fraction={test_fraction}, seed={seed})"),
            SplitSpec::Files { train, test } => {
                format!("files({}, {})", train.display(), test.display())
            }
            SplitSpec::LastPerUser { n } => format!("last {n} per user"),
            SplitSpec::TimeBefore { cut } => format!("time before {cut}"),
            SplitSpec::ColdItems { fraction, seed } => {
                format!("cold-items(cold_fraction={fraction}, seed={seed})")
            }
            SplitSpec::ColdUsers {
                fraction,
                history,
                seed,
            } => format!("cold-users(cold_fraction={fraction}, history={history}, seed={seed})"),
        }
    }
}

/// Shuffles `rows` with `seed` and cuts off the last `test_fraction` as the test set.
///
/// ```
/// use twotower_data::{random_split, Interaction};
/// let rows: Vec<Interaction> = (0..10)
///     .map(|i| Interaction { user: i, item: i, rating: 1.0, timestamp: 0 })
///     .collect();
/// let (train, test) = random_split(&rows, 0.2, 42).unwrap();
/// assert_eq!((train.len(), test.len()), (8, 2));
/// ```
pub fn random_split(
    rows: &[Interaction],
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<Interaction>, Vec<Interaction>)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DataError::Invalid(format!(
            "the held-out fraction must be between 0 and 1 (exclusive), got {test_fraction}"
        )));
    }
    let mut shuffled = rows.to_vec();
    shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n_train = ((rows.len() as f64) * (1.0 - test_fraction)).round() as usize;
    let test = shuffled.split_off(n_train);
    if shuffled.is_empty() || test.is_empty() {
        return Err(DataError::Invalid(format!(
            "holding out a fraction of {test_fraction} of {} rows leaves an empty side",
            rows.len()
        )));
    }
    Ok((shuffled, test))
}

fn nonempty(
    train: Vec<Interaction>,
    test: Vec<Interaction>,
    what: &str,
) -> Result<(Vec<Interaction>, Vec<Interaction>)> {
    if train.is_empty() || test.is_empty() {
        return Err(DataError::Invalid(format!(
            "{what} leaves an empty side ({} train, {} test)",
            train.len(),
            test.len()
        )));
    }
    Ok((train, test))
}

/// Temporal leave-last-`n`-out: each user's `n` latest interactions (ties broken by input
/// order) go to the test set; users with `n` or fewer interactions stay in training.
pub fn last_per_user(
    rows: &[Interaction],
    n: usize,
) -> Result<(Vec<Interaction>, Vec<Interaction>)> {
    if n == 0 {
        return Err(DataError::Invalid("--n must be at least 1".into()));
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].user, rows[i].timestamp, i));
    let mut is_test = vec![false; rows.len()];
    for group in order.chunk_by(|&a, &b| rows[a].user == rows[b].user) {
        if group.len() > n {
            for &i in &group[group.len() - n..] {
                is_test[i] = true;
            }
        }
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (r, t) in rows.iter().zip(is_test) {
        if t {
            test.push(*r)
        } else {
            train.push(*r)
        }
    }
    nonempty(train, test, &format!("leaving the last {n} per user out"))
}

/// Cold items: the distinct items of `rows` (in id order) are shuffled with `seed`; the
/// first `round(fraction × items)` (at least one) are cold, and every interaction with a
/// cold item is the test set. Training never sees a cold item.
pub fn cold_items(
    rows: &[Interaction],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<Interaction>, Vec<Interaction>)> {
    held_out_by(rows, fraction, seed, |r| r.item, "items")
}

/// Cold users: the distinct users of `rows` (in id order) are shuffled with `seed`; the
/// first `round(fraction × users)` (at least one) are cold, and all their interactions are
/// the test side (whose first ones [`first_per_user`] gives as history). Training never
/// sees a cold user.
pub fn cold_users(
    rows: &[Interaction],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<Interaction>, Vec<Interaction>)> {
    held_out_by(rows, fraction, seed, |r| r.user, "users")
}

/// The interactions of a seeded `fraction` of the distinct `key`s (items or users) as the
/// test side, the rest as training.
fn held_out_by(
    rows: &[Interaction],
    fraction: f64,
    seed: u64,
    key: fn(&Interaction) -> u32,
    what: &str,
) -> Result<(Vec<Interaction>, Vec<Interaction>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(DataError::Invalid(format!(
            "--cold-fraction must be between 0 and 1 (exclusive), got {fraction}"
        )));
    }
    let mut keys: Vec<u32> = rows.iter().map(key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n_cold = ((keys.len() as f64 * fraction).round() as usize).max(1);
    let mut cold: Vec<u32> = keys.into_iter().take(n_cold).collect();
    cold.sort_unstable();
    let (test, train): (Vec<Interaction>, Vec<Interaction>) = rows
        .iter()
        .partition(|r| cold.binary_search(&key(r)).is_ok());
    nonempty(
        train,
        test,
        &format!("holding out a fraction of {fraction} of the {what}"),
    )
}

/// Each user's first `n` interactions by time (ties broken by item id) — a cold user's
/// given history — and the rest: `(given, rest)`, each in `rows`' order.
pub fn first_per_user(rows: &[Interaction], n: usize) -> (Vec<Interaction>, Vec<Interaction>) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].user, rows[i].timestamp, rows[i].item, i));
    let mut given = vec![false; rows.len()];
    for group in order.chunk_by(|&a, &b| rows[a].user == rows[b].user) {
        for &i in group.iter().take(n) {
            given[i] = true;
        }
    }
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for (r, g) in rows.iter().zip(given) {
        if g {
            first.push(*r)
        } else {
            rest.push(*r)
        }
    }
    (first, rest)
}

/// Global time cut: interactions with `timestamp < cut` train, the others test.
pub fn time_cut(rows: &[Interaction], cut: i64) -> Result<(Vec<Interaction>, Vec<Interaction>)> {
    let (train, test): (Vec<Interaction>, Vec<Interaction>) =
        rows.iter().partition(|r| r.timestamp < cut);
    nonempty(train, test, &format!("a time cut at {cut}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u32) -> Vec<Interaction> {
        (0..n)
            .map(|i| Interaction {
                user: i,
                item: i,
                rating: 1.0,
                timestamp: 0,
            })
            .collect()
    }

    #[test]
    fn cold_items_never_reach_training() {
        let all: Vec<Interaction> = (0..2000)
            .map(|i| Interaction {
                user: i % 37,
                item: i % 50,
                rating: 1.0,
                timestamp: 0,
            })
            .collect();
        let (train, test) = cold_items(&all, 0.2, 7).unwrap();
        assert_eq!(train.len() + test.len(), all.len());
        let items = |rows: &[Interaction]| {
            let mut v: Vec<u32> = rows.iter().map(|r| r.item).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let (seen, cold) = (items(&train), items(&test));
        assert_eq!(cold.len(), 10);
        assert!(cold.iter().all(|i| seen.binary_search(i).is_err()));
        assert_eq!(cold_items(&all, 0.2, 7).unwrap().1, test);
        assert_ne!(items(&cold_items(&all, 0.2, 8).unwrap().1), cold);
        assert!(cold_items(&all, 1.0, 7).is_err());
    }

    #[test]
    fn cold_users_are_all_test_and_give_their_first_interactions() {
        let all: Vec<Interaction> = (0..600)
            .map(|i| Interaction {
                user: i % 20,
                item: (i * 7) % 31,
                rating: 1.0,
                timestamp: 1000 - i as i64 / 20,
            })
            .collect();
        let (train, test) = cold_users(&all, 0.25, 3).unwrap();
        let users = |rows: &[Interaction]| {
            let mut v: Vec<u32> = rows.iter().map(|r| r.user).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let cold = users(&test);
        assert_eq!(cold.len(), 5);
        assert!(users(&train).iter().all(|u| cold.binary_search(u).is_err()));
        let (given, rest) = first_per_user(&test, 4);
        assert_eq!((given.len(), rest.len()), (20, test.len() - 20));
        // The given ones are each user's earliest.
        for u in &cold {
            let latest_given = given
                .iter()
                .filter(|r| r.user == *u)
                .map(|r| r.timestamp)
                .max();
            let earliest_rest = rest
                .iter()
                .filter(|r| r.user == *u)
                .map(|r| r.timestamp)
                .min();
            assert!(latest_given <= earliest_rest, "user {u}");
        }
    }

    #[test]
    fn random_split_is_seeded_and_a_partition() {
        let all = rows(1000);
        let (a, b) = random_split(&all, 0.2, 42).unwrap();
        let (a2, b2) = random_split(&all, 0.2, 42).unwrap();
        assert_eq!((a.len(), b.len()), (800, 200));
        assert_eq!(a, a2);
        assert_eq!(b, b2);
        let (a3, _) = random_split(&all, 0.2, 43).unwrap();
        assert_ne!(a, a3);
        let mut ids: Vec<u32> = a.iter().chain(&b).map(|r| r.user).collect();
        ids.sort();
        assert_eq!(ids, (0..1000).collect::<Vec<_>>());
    }

    fn at(user: u32, item: u32, timestamp: i64) -> Interaction {
        Interaction {
            user,
            item,
            rating: 1.0,
            timestamp,
        }
    }

    #[test]
    fn last_per_user_takes_each_users_latest() {
        let rows = vec![
            at(1, 10, 300),
            at(1, 11, 100),
            at(2, 20, 50),
            at(1, 12, 200),
            at(2, 21, 60),
            at(3, 30, 1),
        ];
        let (train, test) = last_per_user(&rows, 1).unwrap();
        let test_items: Vec<u32> = test.iter().map(|r| r.item).collect();
        assert_eq!(test_items, vec![10, 21]);
        assert_eq!(train.len(), 4);
        assert!(
            train.iter().any(|r| r.user == 3),
            "a one-interaction user stays in training"
        );
        let (_, test2) = last_per_user(&rows, 2).unwrap();
        let mut items: Vec<u32> = test2.iter().map(|r| r.item).collect();
        items.sort();
        assert_eq!(items, vec![10, 12]);
        assert!(last_per_user(&rows, 0).is_err());
        assert!(last_per_user(&rows, 5).is_err());
    }

    #[test]
    fn time_cut_splits_on_the_timestamp() {
        let rows = vec![at(1, 1, 10), at(1, 2, 20), at(2, 3, 30)];
        let (train, test) = time_cut(&rows, 20).unwrap();
        assert_eq!(train.iter().map(|r| r.item).collect::<Vec<_>>(), vec![1]);
        assert_eq!(test.iter().map(|r| r.item).collect::<Vec<_>>(), vec![2, 3]);
        assert!(time_cut(&rows, 0).is_err());
    }

    #[test]
    fn random_split_rejects_bad_fractions() {
        assert!(random_split(&rows(10), 0.0, 1).is_err());
        assert!(random_split(&rows(10), 1.5, 1).is_err());
        assert!(random_split(&rows(1), 0.2, 1).is_err());
    }
}
