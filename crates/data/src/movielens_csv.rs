//! The MovieLens CSV family (latest-small, 20M, 25M, 32M): `ratings.csv`
//! (`userId,movieId,rating,timestamp` with a header) and `movies.csv`
//! (`movieId,title,genres`; titles may be quoted and hold commas), UTF-8.

use std::path::Path;

use crate::primitives::{parse_num, TableFile};
use crate::record::split_genres;
use crate::{DataError, Interaction, Movie, Result};

fn reader(path: &Path, expected_header: &[&str]) -> Result<csv::Reader<TableFile>> {
    let file = crate::primitives::open_table_file(path)?;
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(file);
    let header = r.headers().map_err(|e| csv_error(path, e))?.clone();
    let got: Vec<&str> = header.iter().collect();
    if got != expected_header {
        return Err(DataError::Parse {
            path: path.into(),
            line: 1,
            message: format!(
                "expected the header {}, found {}",
                expected_header.join(","),
                crate::escaped(&got.join(","))
            ),
        });
    }
    Ok(r)
}

fn csv_error(path: &Path, e: csv::Error) -> DataError {
    crate::columns::csv_error(path, e, "comma-separated fields")
}

/// Reads `ratings.csv`, streaming it row by row.
pub fn read_ratings_csv(path: &Path) -> Result<Vec<Interaction>> {
    let mut r = reader(path, &["userId", "movieId", "rating", "timestamp"])?;
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    while r.read_record(&mut record).map_err(|e| csv_error(path, e))? {
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        rows.push(Interaction {
            user: parse_num(path, line, "userId", &record[0])?,
            item: parse_num(path, line, "movieId", &record[1])?,
            rating: parse_num(path, line, "rating", &record[2])?,
            timestamp: parse_num(path, line, "timestamp", &record[3])?,
        });
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(rows)
}

/// Reads `movies.csv`.
pub fn read_movies_csv(path: &Path) -> Result<Vec<Movie>> {
    let mut r = reader(path, &["movieId", "title", "genres"])?;
    let mut movies = Vec::new();
    let mut record = csv::StringRecord::new();
    while r.read_record(&mut record).map_err(|e| csv_error(path, e))? {
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        movies.push(Movie {
            id: parse_num(path, line, "movieId", &record[0])?,
            title: record[1].to_string(),
            release_date: String::new(),
            genres: split_genres(&record[2]),
        });
    }
    if movies.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(movies)
}
