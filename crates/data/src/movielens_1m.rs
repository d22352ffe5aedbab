//! MovieLens 1M: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`) and `movies.dat`
//! (`MovieID::Title::Genres`, genres `|`-separated), both latin-1 encoded.

use std::path::Path;

use crate::primitives::{latin1, parse_num, read_bytes};
use crate::record::split_genres;
use crate::{DataError, Interaction, Movie, Result};

fn fields<'a>(
    path: &Path,
    line: usize,
    text: &'a str,
    want: usize,
    what: &str,
) -> Result<Vec<&'a str>> {
    let f: Vec<&str> = text.split("::").collect();
    if f.len() != want {
        return Err(DataError::Parse {
            path: path.into(),
            line,
            message: format!(
                "expected {want} '::'-separated fields ({what}), found {}",
                f.len()
            ),
        });
    }
    Ok(f)
}

/// Reads `ratings.dat`.
pub fn read_ratings_dat(path: &Path) -> Result<Vec<Interaction>> {
    let text = latin1(&read_bytes(path)?);
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f = fields(path, i + 1, line, 4, "user, movie, rating, timestamp")?;
        rows.push(Interaction {
            user: parse_num(path, i + 1, "user id", f[0])?,
            item: parse_num(path, i + 1, "movie id", f[1])?,
            rating: parse_num(path, i + 1, "rating", f[2])?,
            timestamp: parse_num(path, i + 1, "timestamp", f[3])?,
        });
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(rows)
}

/// Reads `users.dat` (`UserID::Gender::Age::Occupation::Zip-code`).
pub fn read_users_dat(path: &Path) -> Result<Vec<crate::User>> {
    let text = latin1(&read_bytes(path)?);
    crate::movielens::users_from(path, &text, "::", [0, 2, 1, 3, 4])
}

/// Reads `movies.dat`.
pub fn read_movies_dat(path: &Path) -> Result<Vec<Movie>> {
    let text = latin1(&read_bytes(path)?);
    let mut movies = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f = fields(path, i + 1, line, 3, "movie, title, genres")?;
        movies.push(Movie {
            id: parse_num(path, i + 1, "movie id", f[0])?,
            title: f[1].to_string(),
            release_date: String::new(),
            genres: split_genres(f[2]),
        });
    }
    if movies.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(movies)
}
