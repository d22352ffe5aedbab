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
}

impl SplitSpec {
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
            "test fraction must be between 0 and 1 (exclusive), got {test_fraction}"
        )));
    }
    let mut shuffled = rows.to_vec();
    shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n_train = ((rows.len() as f64) * (1.0 - test_fraction)).round() as usize;
    let test = shuffled.split_off(n_train);
    if shuffled.is_empty() || test.is_empty() {
        return Err(DataError::Invalid(format!(
            "a test fraction of {test_fraction} leaves an empty side of {} rows",
            rows.len()
        )));
    }
    Ok((shuffled, test))
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

    #[test]
    fn random_split_rejects_bad_fractions() {
        assert!(random_split(&rows(10), 0.0, 1).is_err());
        assert!(random_split(&rows(10), 1.5, 1).is_err());
        assert!(random_split(&rows(1), 0.2, 1).is_err());
    }
}
