//! A dataset loaded for training: [`Dataset`] holds all interactions and the item catalogue,
//! whether they came from a MovieLens folder ([`Dataset::open`] recognises every supported
//! layout by its files, see [`Format`]) or from a generic interaction log
//! ([`Dataset::from_log`]), and splits them ([`Dataset::split`]). This is the one place
//! that dispatches between the formats; each format's reader lives in its own module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::movielens::{read_interactions, read_movies};
use crate::record::{Interaction, Movie, User};
use crate::split::SplitSpec;
use crate::{DataError, Result};

/// The MovieLens file layouts this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `u.data` + `u.item` (MovieLens 100K), with the official folds.
    Ml100k,
    /// `ratings.dat` + `movies.dat` (MovieLens 1M).
    Ml1m,
    /// `ratings.csv` + `movies.csv` (latest-small, 20M, 25M, 32M).
    Csv,
    /// A generic interaction log (`--interactions`; see [`crate::log`]); `true` when it
    /// has a time column.
    Log { has_time: bool },
}

impl Format {
    /// Which layout `dir` holds, if any.
    pub fn detect(dir: &Path) -> Option<Format> {
        [
            ("u.data", Format::Ml100k),
            ("ratings.dat", Format::Ml1m),
            ("ratings.csv", Format::Csv),
        ]
        .into_iter()
        .find(|(f, _)| dir.join(f).is_file())
        .map(|(_, fmt)| fmt)
    }
}

/// A loaded dataset: all interactions and the item catalogue.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub format: Format,
    pub ratings: Vec<Interaction>,
    pub movies: Vec<Movie>,
    /// The users' features where the folder has them (`u.user`, `users.dat`), else empty.
    pub users: Vec<User>,
}

impl Dataset {
    /// Opens a MovieLens folder of any supported layout (or a parent holding `ml-100k/`).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let mut dir = dir.as_ref().to_path_buf();
        if Format::detect(&dir).is_none() && dir.join("ml-100k").join("u.data").exists() {
            dir = dir.join("ml-100k");
        }
        let format = Format::detect(&dir).ok_or_else(|| {
            DataError::Invalid(format!(
                "{}: not a MovieLens folder (expected u.data, ratings.dat or ratings.csv)",
                dir.display()
            ))
        })?;
        let (ratings_path, movies, ratings) = match format {
            Format::Ml100k => {
                // The catalogue and the ratings read side by side.
                let p = dir.join("u.data");
                let (movies, ratings) = rayon::join(
                    || read_movies(&dir.join("u.item")),
                    || read_interactions(&p),
                );
                (p.clone(), movies?, ratings?)
            }
            Format::Ml1m => {
                let p = dir.join("ratings.dat");
                let movies = crate::movielens_1m::read_movies_dat(&dir.join("movies.dat"))?;
                (
                    p.clone(),
                    movies,
                    crate::movielens_1m::read_ratings_dat(&p)?,
                )
            }
            Format::Csv => {
                let p = dir.join("ratings.csv");
                let movies = crate::movielens_csv::read_movies_csv(&dir.join("movies.csv"))?;
                (
                    p.clone(),
                    movies,
                    crate::movielens_csv::read_ratings_csv(&p)?,
                )
            }
            Format::Log { .. } => {
                return Err(DataError::Invalid(format!(
                    "{}: interaction logs are read with --interactions FILE",
                    dir.display()
                )))
            }
        };
        check_unique_ids(&movies, &dir)?;
        let users = match format {
            Format::Ml100k if dir.join("u.user").exists() => {
                crate::movielens::read_users(&dir.join("u.user"))?
            }
            Format::Ml1m if dir.join("users.dat").exists() => {
                crate::movielens_1m::read_users_dat(&dir.join("users.dat"))?
            }
            _ => Vec::new(),
        };
        let ml = Dataset {
            dir,
            format,
            ratings,
            movies,
            users,
        };
        ml.check_items(&ml.ratings, &ratings_path)?;
        Ok(ml)
    }

    /// A generic interaction log and its catalogue (see [`crate::log`]).
    pub fn from_log(
        path: &Path,
        items: Option<&Path>,
        columns: &crate::log::LogColumns,
    ) -> Result<Self> {
        let log = crate::log::read_log(path, items, columns)?;
        Ok(Dataset {
            dir: path.to_path_buf(),
            format: Format::Log {
                has_time: log.has_time,
            },
            ratings: log.interactions,
            movies: log.items,
            users: Vec::new(),
        })
    }

    /// A dataset from interactions already in memory (the Python package's data frames),
    /// named `name`: a log whose items are `items` (every interaction's item must be
    /// listed, once) or, with `None`, titled by their ids. `has_time`: the interactions'
    /// timestamps are real times (temporal splits and history towers may use them).
    /// Problems name the row (0-based) of `interactions` or `items`.
    pub fn from_interactions(
        name: &str,
        interactions: Vec<Interaction>,
        items: Option<Vec<Movie>>,
        has_time: bool,
    ) -> Result<Self> {
        if interactions.is_empty() {
            return Err(DataError::Invalid(format!("{name}: no interactions")));
        }
        let items = match items {
            Some(items) => {
                let mut rows = std::collections::HashMap::with_capacity(items.len());
                for (i, m) in items.iter().enumerate() {
                    if let Some(first) = rows.insert(m.id, i) {
                        return Err(DataError::Invalid(format!(
                            "{name}: items row {i}: item id {} is listed twice (first in row \
                             {first})",
                            m.id
                        )));
                    }
                    if m.title.contains(['\t', '\n', '\r']) {
                        return Err(DataError::Invalid(format!(
                            "{name}: items row {i}: the title {} holds a tab or line break",
                            crate::shown(&m.title)
                        )));
                    }
                }
                if let Some((i, r)) =
                    (interactions.iter().enumerate()).find(|(_, r)| !rows.contains_key(&r.item))
                {
                    return Err(DataError::Invalid(format!(
                        "{name}: row {i}: item {} is not in the items table",
                        r.item
                    )));
                }
                items
            }
            None => crate::log::titled_by_ids(&interactions),
        };
        Ok(Dataset {
            dir: PathBuf::from(name),
            format: Format::Log { has_time },
            ratings: interactions,
            movies: items,
            users: Vec::new(),
        })
    }

    /// A short name for model cards.
    pub fn name(&self) -> String {
        let folder = self
            .dir
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        match self.format {
            Format::Ml100k => "movielens-100k".into(),
            Format::Ml1m => "movielens-1m".into(),
            Format::Csv => format!("movielens ({folder})"),
            Format::Log { .. } => format!("log ({folder})"),
        }
    }

    /// Train and test interactions for a split.
    pub fn split(&self, spec: &SplitSpec) -> Result<(Vec<Interaction>, Vec<Interaction>)> {
        let (train, test) = match spec {
            SplitSpec::Fold(name) if self.format != Format::Ml100k => {
                return Err(DataError::Invalid(format!(
                    "fold {name:?}: official folds exist only in MovieLens 100K; use a random or \
                     temporal split"
                )))
            }
            SplitSpec::Fold(name) => {
                let (base, test) = (
                    self.dir.join(format!("{name}.base")),
                    self.dir.join(format!("{name}.test")),
                );
                let (base, test) =
                    rayon::join(|| self.read_checked(&base), || self.read_checked(&test));
                (base?, test?)
            }
            SplitSpec::Files { train, test } => {
                (self.read_checked(train)?, self.read_checked(test)?)
            }
            SplitSpec::Random {
                test_fraction,
                seed,
            } => crate::split::random_split(&self.ratings, *test_fraction, *seed)?,
            SplitSpec::LastPerUser { .. } | SplitSpec::TimeBefore { .. }
                if self.format == (Format::Log { has_time: false }) =>
            {
                return Err(DataError::Invalid(format!(
                    "{}: a temporal split needs a time column; name it with --time-col",
                    self.dir.display()
                )))
            }
            SplitSpec::LastPerUser { n } => crate::split::last_per_user(&self.ratings, *n)?,
            SplitSpec::TimeBefore { cut } => crate::split::time_cut(&self.ratings, *cut)?,
            SplitSpec::ColdItems { fraction, seed } => {
                crate::split::cold_items(&self.ratings, *fraction, *seed)?
            }
            SplitSpec::ColdUsers { fraction, seed, .. } => {
                crate::split::cold_users(&self.ratings, *fraction, *seed)?
            }
        };
        Ok((train, test))
    }

    fn read_checked(&self, path: &Path) -> Result<Vec<Interaction>> {
        let rows = read_interactions(path)?;
        self.check_items(&rows, path)?;
        Ok(rows)
    }

    /// Every rated movie must be in the catalogue: otherwise data would be silently lost.
    fn check_items(&self, rows: &[Interaction], path: &Path) -> Result<()> {
        let known: std::collections::HashSet<u32> = self.movies.iter().map(|m| m.id).collect();
        match rows.iter().position(|r| !known.contains(&r.item)) {
            None => Ok(()),
            Some(i) => Err(DataError::Parse {
                path: path.into(),
                line: i + 1,
                message: format!("item id {} is not in the catalogue", rows[i].item),
            }),
        }
    }

    /// Catalogue row of each movie id.
    pub fn row_of_id(&self) -> HashMap<u32, usize> {
        self.movies
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id, i))
            .collect()
    }
}

fn check_unique_ids(movies: &[Movie], dir: &Path) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    match movies.iter().find(|m| !seen.insert(m.id)) {
        Some(m) => Err(DataError::Invalid(format!(
            "{}: movie id {} appears twice in the catalogue",
            dir.display(),
            m.id
        ))),
        None => Ok(()),
    }
}
