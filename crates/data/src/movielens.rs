//! MovieLens datasets: the 100K format (`u.data`-format ratings, tab-separated
//! `user item rating timestamp`, and the `u.item` catalogue, `|`-separated, latin-1), and
//! [`MovieLens::open`], which recognises every supported MovieLens folder by its files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::primitives::{parse_num, read_bytes};
use crate::record::{Interaction, Movie, GENRES};
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

/// A MovieLens folder: all ratings and the movie catalogue.
#[derive(Debug, Clone)]
pub struct MovieLens {
    pub dir: PathBuf,
    pub format: Format,
    pub ratings: Vec<Interaction>,
    pub movies: Vec<Movie>,
}

impl MovieLens {
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
                let p = dir.join("u.data");
                (
                    p.clone(),
                    read_movies(&dir.join("u.item"))?,
                    read_interactions(&p)?,
                )
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
        let ml = MovieLens {
            dir,
            format,
            ratings,
            movies,
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
        Ok(MovieLens {
            dir: path.to_path_buf(),
            format: Format::Log {
                has_time: log.has_time,
            },
            ratings: log.interactions,
            movies: log.items,
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
                (self.read_checked(&base)?, self.read_checked(&test)?)
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
                message: format!("movie id {} is not in the catalogue u.item", rows[i].item),
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

/// Reads a `u.data`-format file: `user \t item \t rating \t timestamp` per line.
pub fn read_interactions(path: &Path) -> Result<Vec<Interaction>> {
    let bytes = read_bytes(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        DataError::Parse {
            path: path.into(),
            line,
            message: "not valid UTF-8 text".into(),
        }
    })?;
    let mut rows = Vec::with_capacity(text.len() / 20);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 4 {
            return Err(DataError::Parse {
                path: path.into(),
                line: n,
                message: format!(
                    "expected 4 tab-separated fields (user, item, rating, timestamp), found {}",
                    f.len()
                ),
            });
        }
        rows.push(Interaction {
            user: parse_num(path, n, "user id", f[0])?,
            item: parse_num(path, n, "item id", f[1])?,
            rating: parse_num(path, n, "rating", f[2])?,
            timestamp: parse_num(path, n, "timestamp", f[3])?,
        });
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(rows)
}

/// Reads `u.item`: latin-1 text, `id|title|release|video release|url|` and 19 genre flags.
pub fn read_movies(path: &Path) -> Result<Vec<Movie>> {
    let bytes = read_bytes(path)?;
    // Latin-1 maps each byte to the code point of the same value.
    let text: String = bytes.iter().map(|&b| b as char).collect();
    let mut movies = Vec::with_capacity(2000);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 5 + GENRES.len() {
            return Err(DataError::Parse {
                path: path.into(),
                line: n,
                message: format!(
                    "expected {} '|'-separated fields, found {}",
                    5 + GENRES.len(),
                    f.len()
                ),
            });
        }
        let mut genres = Vec::new();
        for (g, flag) in GENRES.iter().zip(&f[5..]) {
            match flag.trim() {
                "1" => genres.push(g.to_string()),
                "0" => {}
                other => {
                    return Err(DataError::Parse {
                        path: path.into(),
                        line: n,
                        message: format!(
                            "genre flag {g} is {}, expected 0 or 1",
                            crate::shown(other)
                        ),
                    })
                }
            }
        }
        movies.push(Movie {
            id: parse_num(path, n, "movie id", f[0])?,
            title: f[1].to_string(),
            release_date: f[2].to_string(),
            genres,
        });
    }
    if movies.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(movies)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tt-ml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn reads_ratings() {
        let p = tmp(
            "ok.data",
            b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
        );
        let r = read_interactions(&p).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].user, 186);
        assert_eq!(r[1].item, 302);
        assert_eq!(r[1].timestamp, 891717742);
    }

    #[test]
    fn malformed_ratings_name_file_and_line() {
        let short = tmp("short.data", b"196\t242\t3\t881250949\n186\t302\t3\n");
        let e = read_interactions(&short).unwrap_err().to_string();
        assert!(e.contains("short.data:2") && e.contains("found 3"), "{e}");
        let nan = tmp("nan.data", b"196\t242\t3\t1\nabc\t302\t3\t1\n");
        let e = read_interactions(&nan).unwrap_err().to_string();
        assert!(e.contains("nan.data:2") && e.contains("\"abc\""), "{e}");
        let empty = tmp("empty.data", b"");
        let e = read_interactions(&empty).unwrap_err().to_string();
        assert!(e.contains("empty.data") && e.contains("no records"), "{e}");
        let missing = std::env::temp_dir().join("tt-definitely-missing.data");
        let e = read_interactions(&missing).unwrap_err().to_string();
        assert!(e.contains("tt-definitely-missing.data"), "{e}");
    }

    #[test]
    fn reads_latin1_titles_and_genres() {
        let mut line = b"543|Mis".to_vec();
        line.push(0xE9); // é in latin-1
        line.extend_from_slice(
            b"rables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|1\n",
        );
        let p = tmp("u.item", &line);
        let m = read_movies(&p).unwrap();
        assert_eq!(m[0].id, 543);
        assert_eq!(m[0].title, "Misérables, Les (1995)");
        assert_eq!(m[0].genres, vec!["Drama", "Western"]);
        let bad = tmp("bad.item", b"1|Toy Story (1995)|01-Jan-1995\n");
        let e = read_movies(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.item:1"), "{e}");
    }
}
