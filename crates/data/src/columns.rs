//! What the table readers share: which column holds what ([`LogColumns`], by name or
//! position, with the common names tried when none is given), and errors that name the
//! file and line (a `csv` error, an item missing from the catalogue). Used by the CSV/TSV
//! and Parquet log readers and the MovieLens CSV reader; it depends on none of them.

use std::path::Path;

use crate::{DataError, Result};

/// Names tried, after lower-casing and dropping `_`, `-` and spaces, when no column is given.
pub(crate) const USER_NAMES: [&str; 8] = [
    "userid",
    "user",
    "uid",
    "customerid",
    "customer",
    "visitorid",
    "visitor",
    "query",
];
pub(crate) const ITEM_NAMES: [&str; 11] = [
    "itemid",
    "item",
    "movieid",
    "iid",
    "productid",
    "product",
    "articleid",
    "article",
    "trackid",
    "artistid",
    "candidate",
];
pub(crate) const TIME_NAMES: [&str; 5] = ["timestamp", "time", "ts", "unixtime", "datetime"];
pub(crate) const TITLE_NAMES: [&str; 3] = ["title", "name", "label"];

/// Which columns of a log hold what (names, or 0-based positions for files without a
/// header). `None` means: look for a common name.
#[derive(Debug, Clone, Default)]
pub struct LogColumns {
    pub user: Option<String>,
    pub item: Option<String>,
    pub time: Option<String>,
    /// The title column of the `--items` catalogue.
    pub title: Option<String>,
    /// The id column of the `--items` catalogue (`None`: `item`'s name, else a common
    /// name or `id`), for catalogues that call it differently from the log (Last.fm's
    /// `artists.dat` has `id` where `user_artists.dat` has `artistID`).
    pub items_id: Option<String>,
}

pub(crate) fn normalise(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Finds a column: by the given name or position, else by a common name.
pub(crate) fn find_column(
    path: &Path,
    header: Option<&[String]>,
    given: Option<&str>,
    common: &[&str],
    flag: &str,
) -> Result<Option<usize>> {
    let bad = |message: String| DataError::Parse {
        path: path.into(),
        line: 1,
        message,
    };
    match (given, header) {
        (Some(name), Some(h)) => {
            if let Some(i) = h.iter().position(|c| c == name) {
                return Ok(Some(i));
            }
            if let Ok(i) = name.parse::<usize>() {
                if i < h.len() {
                    return Ok(Some(i));
                }
            }
            Err(bad(format!(
                "{flag} {name:?}: no such column in the header ({})",
                crate::escaped(&h.join(", "))
            )))
        }
        (Some(name), None) => name.parse::<usize>().map(Some).map_err(|_| {
            bad(format!(
                "{flag} {name:?}: the file has no header row, so columns are 0-based positions"
            ))
        }),
        (None, Some(h)) => Ok(common
            .iter()
            .find_map(|want| h.iter().position(|c| normalise(c) == *want))),
        (None, None) => Ok(None),
    }
}

/// The error for an item the catalogue does not list.
pub(crate) fn unknown_item(path: &Path, line: usize, id: u32, items: Option<&Path>) -> DataError {
    DataError::Parse {
        path: path.into(),
        line,
        message: format!(
            "item id {id} is not in the catalogue {}",
            items.map(|p| p.display().to_string()).unwrap_or_default()
        ),
    }
}

/// A `csv` error as a parse error naming the line; `fields` describes the expected fields.
pub(crate) fn csv_error(path: &Path, e: csv::Error, fields: &str) -> DataError {
    let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("expected {expected_len} {fields}, found {len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8 text".to_string(),
        _ => e.to_string(),
    };
    DataError::Parse {
        path: path.into(),
        line,
        message,
    }
}
