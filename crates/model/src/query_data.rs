//! What a feature model's query tower reads beside the towers themselves: the users'
//! features and their training interactions by time ([`QueryData`]), and a query — a user
//! at a time, a training example, or a visitor with a given history and features
//! ([`Query`]) — whose columns (the user's features, the time, the histories) it answers.

use std::collections::HashMap;

use twotower_data::User;

use crate::feature_files::FeatureColumns;
use crate::features::{Column, Key};

/// What the query tower can know: users' features and their training interactions by time.
#[derive(Debug, Clone, Default)]
pub struct QueryData {
    users: HashMap<u32, User>,
    /// Each user's training interactions as (time, catalogue row), by time (ties by row).
    history: HashMap<u32, Vec<(i64, u32)>>,
    /// The users' columns from `--user-features`.
    pub features: FeatureColumns,
    /// Training interactions per catalogue row, counted once when first asked for.
    counts: std::sync::OnceLock<Vec<u32>>,
}

impl QueryData {
    /// How many training interactions each catalogue row has (rows past the end: none),
    /// counted on the first call.
    pub fn item_counts(&self) -> &[u32] {
        self.counts.get_or_init(|| {
            let rows = self.history.values().flatten().map(|&(_, r)| r as usize);
            let mut counts = vec![0u32; rows.clone().max().map_or(0, |m| m + 1)];
            for r in rows {
                counts[r] += 1;
            }
            counts
        })
    }

    /// From the users' features and the training interactions (as catalogue rows).
    pub fn new(users: &[User], train: &[(u32, u32, i64)]) -> Self {
        let mut history: HashMap<u32, Vec<(i64, u32)>> = HashMap::new();
        for &(u, row, t) in train {
            history.entry(u).or_default().push((t, row));
        }
        for h in history.values_mut() {
            h.sort_unstable();
        }
        QueryData {
            counts: Default::default(),
            users: users.iter().map(|u| (u.id, u.clone())).collect(),
            history,
            features: FeatureColumns::default(),
        }
    }

    /// The users' features and every training interaction `(user, row, time)`: what
    /// [`QueryData::new`] was given, for saving.
    pub fn parts(&self) -> (Vec<User>, Vec<(u32, u32, i64)>) {
        let mut users: Vec<User> = self.users.values().cloned().collect();
        users.sort_by_key(|u| u.id);
        let mut train: Vec<(u32, u32, i64)> = self
            .history
            .iter()
            .flat_map(|(&u, h)| h.iter().map(move |&(t, r)| (u, r, t)))
            .collect();
        train.sort_unstable();
        (users, train)
    }

    /// Whether `user` was seen in training or has features.
    pub fn knows(&self, user: u32) -> bool {
        self.history.contains_key(&user)
            || self.users.contains_key(&user)
            || self.features.rows.contains_key(&user)
    }

    /// The users seen in training or described by features, sorted.
    pub fn user_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .history
            .keys()
            .chain(self.users.keys())
            .chain(self.features.rows.keys())
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The catalogue rows of `user`'s training interactions.
    pub fn rows_of(&self, user: u32) -> Vec<u32> {
        self.history
            .get(&user)
            .map_or_else(Vec::new, |h| h.iter().map(|&(_, r)| r).collect())
    }

    /// The last time of any training interaction (0 when none).
    pub fn latest_time(&self) -> i64 {
        self.history
            .values()
            .filter_map(|h| h.last().map(|&(t, _)| t))
            .max()
            .unwrap_or(0)
    }

    /// The last time `user` was seen in training (0 when never).
    pub fn last_time(&self, user: u32) -> i64 {
        self.history
            .get(&user)
            .and_then(|h| h.last())
            .map_or(0, |&(t, _)| t)
    }

    /// How many of `user`'s training interactions lie strictly before `time`: queries of a
    /// user at two times read the same history exactly when this is the same.
    pub fn before(&self, user: u32, time: i64) -> usize {
        self.history
            .get(&user)
            .map_or(0, |h| h.partition_point(|&(t, _)| t < time))
    }

    /// Up to `points` of `user`'s training times, evenly spaced over their interactions in
    /// time order (the first and the last among them); for a user never seen, or no points,
    /// the one time after their last interaction.
    pub fn time_points(&self, user: u32, points: usize) -> Vec<i64> {
        let h = self.history.get(&user).map_or(&[][..], Vec::as_slice);
        if h.is_empty() || points == 0 {
            return vec![self.last_time(user) + 1];
        }
        let m = points.min(h.len());
        (0..m)
            .map(|i| {
                h[if m == 1 {
                    h.len() - 1
                } else {
                    i * (h.len() - 1) / (m - 1)
                }]
                .0
            })
            .collect()
    }

    /// `key` of query `q`: its time; the user's items strictly before it ([`Key::Past`]),
    /// all their training items but its target ([`Key::Others`], oldest first), their
    /// first `last` items, or for a training example `last` drawn from their first
    /// `within` but its target ([`Key::First`], by a rule fixed per example, oldest first)
    /// — a query with a `given` history (a visitor) has that as each; or a column of the
    /// user (a visitor's `described` value first).
    pub fn value(&self, q: &Query<'_>, key: Key<'_>) -> Column {
        let h = || self.history.get(&q.user).map_or(&[][..], Vec::as_slice);
        match (key, q.given) {
            (Key::Column(column), _) => self.user_column(q, column),
            (Key::Timestamp, _) => Column::Number(Some(q.time as f32)),
            (_, Some(given)) => Column::Items(given.to_vec()),
            (Key::Past, None) => {
                let before = self.before(q.user, q.time);
                Column::Items(h()[..before].iter().map(|&(_, r)| r).collect())
            }
            (Key::Others, None) => {
                let mut items: Vec<u32> = h().iter().map(|&(_, r)| r).collect();
                if let Some(i) = q.target.and_then(|t| items.iter().position(|&r| r == t)) {
                    items.remove(i);
                }
                Column::Items(items)
            }
            (Key::First { last, within }, None) => {
                Column::Items(first_items(h(), q.target, last, within, q.user))
            }
        }
    }

    /// `column` of query `q`'s user: a visitor's `described` value, else the user's
    /// MovieLens features or `--user-features` column.
    fn user_column(&self, q: &Query<'_>, column: &str) -> Column {
        if let Some((_, v)) = q
            .described
            .and_then(|d| d.iter().find(|(c, _)| c == column))
        {
            return v.clone();
        }
        if column == "user_id" {
            return Column::Str(q.user.to_string());
        }
        // A declared column is that column, whatever its name: a `--user-features` file's
        // `age` is read from the file, never from MovieLens's (empty) field.
        if let Some(v) = self.features.value(q.user, column) {
            return v;
        }
        let u = self.users.get(&q.user);
        let text =
            |f: fn(&User) -> &String| Column::Str(u.map(|u| f(u).clone()).unwrap_or_default());
        match column {
            "age" => Column::Number(u.map(|u| u.age as f32)),
            "gender" => text(|u| &u.gender),
            "occupation" => text(|u| &u.occupation),
            "zip" => text(|u| &u.zip),
            _ => Column::Number(None),
        }
    }
}

/// `last` of the first `within` rows of `history` (time-ordered) but `target`: for a
/// training example (a `target`) drawn by a rule fixed by the user and the target, else the
/// first `last`; oldest first.
fn first_items(
    history: &[(i64, u32)],
    target: Option<u32>,
    last: usize,
    within: usize,
    user: u32,
) -> Vec<u32> {
    use rand::SeedableRng;
    let pool: Vec<u32> = (history.iter().map(|&(_, r)| r))
        .filter(|&r| Some(r) != target)
        .take(within.max(last))
        .collect();
    let Some(t) = target.filter(|_| pool.len() > last) else {
        return pool.into_iter().take(last).collect();
    };
    let seed = (u64::from(user) << 32) | u64::from(t);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut picked = rand::seq::index::sample(&mut rng, pool.len(), last).into_vec();
    picked.sort_unstable();
    picked.into_iter().map(|i| pool[i]).collect()
}

/// A query: a user at a time; in training, also the example's item (its `target`), which a
/// `history_others` leaves out; for a visitor, the history they `given` (catalogue rows,
/// oldest first) in place of one from training, and the user features they `described`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query<'a> {
    pub user: u32,
    pub time: i64,
    pub target: Option<u32>,
    pub given: Option<&'a [u32]>,
    pub described: Option<&'a [(String, Column)]>,
}

/// The user id of a visitor (a log whose users include this id would lend them that
/// user's id and features).
pub const VISITOR: u32 = u32::MAX;

impl<'a> Query<'a> {
    /// A query for evaluation or serving (no target).
    pub fn at(user: u32, time: i64) -> Self {
        Query {
            user,
            time,
            target: None,
            given: None,
            described: None,
        }
    }

    /// A visitor's query at `time`: unknown to the model, with the history `rows` (oldest
    /// first) and the user features `described` (column, value).
    pub fn visitor(rows: &'a [u32], described: &'a [(String, Column)], time: i64) -> Self {
        Query {
            user: VISITOR,
            time,
            target: None,
            given: Some(rows),
            described: Some(described),
        }
    }

    /// The query of training example `(user, row, time)`.
    pub(crate) fn of_example(&(user, row, time): &(u32, u32, i64)) -> Self {
        Query {
            user,
            time,
            target: Some(row),
            given: None,
            described: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_holds_only_what_came_strictly_before() {
        let d = QueryData::new(&[], &[(1, 5, 100), (1, 6, 200), (1, 7, 200), (2, 9, 50)]);
        let at = |u, t| Query::at(u, t);
        assert_eq!(d.value(&at(1, 200), Key::Past), Column::Items(vec![5]));
        assert_eq!(
            d.value(&at(1, 201), Key::Past),
            Column::Items(vec![5, 6, 7])
        );
        assert_eq!(d.value(&at(1, 100), Key::Past), Column::Items(vec![]));
        assert_eq!(d.value(&at(3, 999), Key::Past), Column::Items(vec![]));
        assert_eq!(d.last_time(1), 200);
        assert_eq!(d.value(&at(1, 0), Key::Column("age")), Column::Number(None));
        // A visitor's history is the one given, whatever the time or the training data.
        let visitor = Query::visitor(&[9, 5], &[], 150);
        assert_eq!(d.value(&visitor, Key::Past), Column::Items(vec![9, 5]));
        assert_eq!(d.value(&visitor, Key::Others), Column::Items(vec![9, 5]));
        assert_eq!(d.latest_time(), 200);
        assert_eq!(d.time_points(1, 2), vec![100, 200]);
        assert_eq!(d.time_points(1, 16), vec![100, 200, 200]);
        assert_eq!(d.time_points(3, 4), vec![1]);
        // The others: every training item but the example's own, whatever the time.
        let example = Query::of_example(&(1, 6, 200));
        assert_eq!(d.value(&example, Key::Others), Column::Items(vec![5, 7]));
        assert_eq!(
            d.value(&at(1, 0), Key::Others),
            Column::Items(vec![5, 6, 7])
        );
    }

    #[test]
    fn a_user_column_named_like_the_time_or_the_history_is_that_column() {
        use crate::spec::ColumnKind;
        let mut d = QueryData::new(&[], &[(1, 5, 100)]);
        d.features = FeatureColumns {
            columns: vec![
                ("timestamp".into(), ColumnKind::Number),
                ("history".into(), ColumnKind::Categorical),
            ],
            rows: [(
                1,
                vec![Column::Number(Some(7.0)), Column::Str("long".into())],
            )]
            .into(),
        };
        let q = Query::at(1, 300);
        assert_eq!(
            d.value(&q, Key::Column("timestamp")),
            Column::Number(Some(7.0))
        );
        assert_eq!(d.value(&q, Key::Timestamp), Column::Number(Some(300.0)));
        assert_eq!(
            d.value(&q, Key::Column("history")),
            Column::Str("long".into())
        );
        assert_eq!(d.value(&q, Key::Past), Column::Items(vec![5]));
    }

    #[test]
    fn a_first_items_history_is_a_users_first_items() {
        // User 1 rated 10..=17 in this order; user 2 only 30 and 31.
        let train: Vec<(u32, u32, i64)> = (0..8)
            .map(|i| (1, 10 + i, 100 + i64::from(i)))
            .chain([(2, 30, 5), (2, 31, 6)])
            .collect();
        let d = QueryData::new(&[], &train);
        let col = Key::First { last: 3, within: 6 };
        // A user's query, whatever the time: their first 3.
        assert_eq!(
            d.value(&Query::at(1, 0), col),
            Column::Items(vec![10, 11, 12])
        );
        assert_eq!(
            d.value(&Query::at(2, 999), col),
            Column::Items(vec![30, 31])
        );
        // A training example: 3 of the first 6 but its own, oldest first, fixed per example.
        let mut seen = std::collections::BTreeSet::new();
        for target in 10..18 {
            let q = Query::of_example(&(1, target, 0));
            let Column::Items(h) = d.value(&q, col) else {
                panic!("a history is items")
            };
            assert_eq!(d.value(&q, col), Column::Items(h.clone()), "not fixed");
            assert_eq!(h.len(), 3, "{h:?}");
            assert!(
                h.windows(2).all(|w| w[0] < w[1]),
                "not in time order: {h:?}"
            );
            let pool: Vec<u32> = (10..18).filter(|&r| r != target).take(6).collect();
            assert!(
                h.iter().all(|r| pool.contains(r)),
                "{h:?} not from {pool:?}"
            );
            seen.insert(h);
        }
        assert!(seen.len() > 1, "every example drew the same history");
        // An example whose pool is no larger than the history takes it whole.
        let q = Query::of_example(&(2, 31, 6));
        assert_eq!(d.value(&q, col), Column::Items(vec![30]));
        // A visitor's history is the one given.
        let visitor = Query::visitor(&[9, 5], &[], 150);
        assert_eq!(d.value(&visitor, col), Column::Items(vec![9, 5]));
    }
}
