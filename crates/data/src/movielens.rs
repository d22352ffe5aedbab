//! The MovieLens 100K format: `u.data`-format ratings (tab-separated
//! `user item rating timestamp`, also the folds and `--train`/`--test` files) and the
//! `u.item` catalogue (`|`-separated, latin-1, 19 genre flags).

use std::path::Path;

use crate::primitives::{latin1, parse_num, read_bytes};
use crate::record::{Interaction, Movie, User, GENRES};
use crate::{DataError, Result};

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
        // The fields without an allocation per line: the first four, and how many.
        let mut f = [""; 4];
        let mut fields = 0;
        for (k, x) in line.split('\t').enumerate() {
            if let Some(slot) = f.get_mut(k) {
                *slot = x;
            }
            fields = k + 1;
        }
        if fields != 4 {
            return Err(DataError::Parse {
                path: path.into(),
                line: n,
                message: format!(
                    "expected 4 tab-separated fields (user, item, rating, timestamp), found {}",
                    fields
                ),
            });
        }
        // Plain digits (every line of the MovieLens files) take the short way.
        let (user, item, rating, timestamp) =
            match (digits(f[0]), digits(f[1]), digits(f[2]), digits(f[3])) {
                (Some(u), Some(i), Some(r), Some(t))
                    if u <= u32::MAX as u64 && i <= u32::MAX as u64 =>
                {
                    (u as u32, i as u32, r as f32, t as i64)
                }
                _ => (
                    parse_num(path, n, "user id", f[0])?,
                    parse_num(path, n, "item id", f[1])?,
                    parse_num(path, n, "rating", f[2])?,
                    parse_num(path, n, "timestamp", f[3])?,
                ),
            };
        rows.push(Interaction {
            user,
            item,
            rating,
            timestamp,
        });
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(rows)
}

/// `s` when it is 1 to 15 ASCII digits and nothing else, as a number (anything else: `None`,
/// for the general parser and its error).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 15 {
        return None;
    }
    s.bytes().try_fold(0u64, |v, b| {
        b.is_ascii_digit().then(|| v * 10 + (b - b'0') as u64)
    })
}

/// Reads `u.item`: latin-1 text, `id|title|release|video release|url|` and 19 genre flags.
pub fn read_movies(path: &Path) -> Result<Vec<Movie>> {
    let bytes = read_bytes(path)?;
    let text = latin1(&bytes);
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

/// Reads `u.user`: latin-1 text, `id|age|gender|occupation|zip` per line.
pub fn read_users(path: &Path) -> Result<Vec<User>> {
    let text = latin1(&read_bytes(path)?);
    users_from(path, &text, "|", [0, 1, 2, 3, 4])
}

/// Users from `text`, one per line, fields split by `sep` and found at `at` (id, age,
/// gender, occupation, zip); ids must be unique.
pub(crate) fn users_from(path: &Path, text: &str, sep: &str, at: [usize; 5]) -> Result<Vec<User>> {
    let mut users = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(sep).collect();
        if f.len() != 5 {
            return Err(DataError::Parse {
                path: path.into(),
                line: n,
                message: format!(
                    "expected 5 '{sep}'-separated fields (user, age, gender, occupation, zip), \
                     found {}",
                    f.len()
                ),
            });
        }
        let user = User {
            id: parse_num(path, n, "user id", f[at[0]])?,
            age: parse_num(path, n, "age", f[at[1]])?,
            gender: f[at[2]].trim().to_string(),
            occupation: f[at[3]].trim().to_string(),
            zip: f[at[4]].trim().to_string(),
        };
        if !ids.insert(user.id) {
            return Err(DataError::Parse {
                path: path.into(),
                line: n,
                message: format!("user id {} appears twice", user.id),
            });
        }
        users.push(user);
    }
    if users.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
