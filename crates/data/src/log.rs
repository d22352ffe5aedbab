//! Generic interaction logs: `--interactions FILE` in CSV, TSV or Apache Parquet, with an
//! optional `--items FILE` catalogue.
//!
//! A log is one interaction per row: a user id, an item id and, optionally, a Unix time.
//! Every row is an implicit positive. Ids must be non-negative integers (below 2³²); the
//! file is streamed row by row into compact [`Interaction`]s, and any bad row stops the read
//! with an error naming the file, the line (or Parquet row) and the problem.
//!
//! Columns are found by name in a header (`--user-col` etc., or common names such as
//! `user_id`/`userId`/`user`, `item_id`/`movieId`/`artistId`/`item`, `timestamp`/`time`/`ts`;
//! a catalogue's id column may also be plain `id`), or
//! by 0-based position when the file has no header. A CSV file has a header when its first
//! row holds a field that is not a number. The delimiter follows the extension (`.tsv`,
//! `.tab`: tab; `.csv`: comma) or, otherwise, the first line (tab, comma, semicolon or `|`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

pub use crate::columns::LogColumns;
use crate::columns::{
    csv_error, find_column, normalise, unknown_item, ITEM_NAMES, TIME_NAMES, TITLE_NAMES,
    USER_NAMES,
};
use crate::primitives::TableFile;
use crate::record::split_genres;
use crate::{DataError, Interaction, Movie, Result};

/// An interaction log and its catalogue, loaded.
#[derive(Debug, Clone)]
pub struct Log {
    pub interactions: Vec<Interaction>,
    /// The catalogue (from `--items`, else one row per item id seen, titled by its id).
    pub items: Vec<Movie>,
    /// Whether the log had a time column (temporal splits need one).
    pub has_time: bool,
}

/// Reads a log (CSV/TSV, or Parquet by the `.parquet` extension) and its catalogue.
pub fn read_log(path: &Path, items: Option<&Path>, columns: &LogColumns) -> Result<Log> {
    let catalogue = match items {
        Some(p) => Some(read_items(p, columns)?),
        None => None,
    };
    let known: Option<HashSet<u32>> = catalogue.as_ref().map(|c| c.iter().map(|m| m.id).collect());
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let (interactions, has_time) = if is_parquet {
        read_parquet(path, columns, known.as_ref(), items)?
    } else {
        read_delimited(path, columns, known.as_ref(), items)?
    };
    let items = catalogue.unwrap_or_else(|| titled_by_ids(&interactions));
    Ok(Log {
        interactions,
        items,
        has_time,
    })
}

/// A catalogue of the items of `interactions`, each titled by its id (`item 7`), by id.
pub(crate) fn titled_by_ids(interactions: &[Interaction]) -> Vec<Movie> {
    let mut ids: Vec<u32> = interactions.iter().map(|r| r.item).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| Movie {
            id,
            title: format!("item {id}"),
            release_date: String::new(),
            genres: Vec::new(),
        })
        .collect()
}

/// The delimiter of a text table: by extension, else by the first line.
fn delimiter(path: &Path) -> Result<u8> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("tsv" | "tab") => return Ok(b'\t'),
        Some("csv") => return Ok(b','),
        _ => {}
    }
    use std::io::BufRead;
    let file = crate::primitives::open_regular(path)?;
    let mut first = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut first)
        .map_err(|e| DataError::io(path, e))?;
    Ok([b'\t', b',', b';', b'|']
        .into_iter()
        .find(|&d| first.as_bytes().contains(&d))
        .unwrap_or(b','))
}

pub(crate) fn open_table(path: &Path) -> Result<csv::Reader<TableFile>> {
    let delim = delimiter(path)?;
    let file = crate::primitives::open_table_file(path)?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delim)
        .from_reader(file))
}

pub(crate) fn table_error(path: &Path, e: csv::Error) -> DataError {
    csv_error(path, e, "fields like the first row")
}

/// The first record, and whether it is a header (a field that is not a number).
pub(crate) fn first_record(
    path: &Path,
    r: &mut csv::Reader<TableFile>,
) -> Result<(csv::StringRecord, bool)> {
    let mut first = csv::StringRecord::new();
    if !r
        .read_record(&mut first)
        .map_err(|e| table_error(path, e))?
    {
        return Err(DataError::Empty { path: path.into() });
    }
    let header = first.iter().any(|f| f.trim().parse::<f64>().is_err());
    Ok((first, header))
}

/// A table that must have a header (`needs` says what for): its reader, past the header,
/// and the header's names, trimmed.
pub(crate) fn open_with_header(
    path: &Path,
    needs: &str,
) -> Result<(csv::Reader<TableFile>, Vec<String>)> {
    let mut r = open_table(path)?;
    let (first, has_header) = first_record(path, &mut r)?;
    if !has_header {
        return Err(DataError::Parse {
            path: path.into(),
            line: 1,
            message: format!("{needs} needs a header row naming its columns"),
        });
    }
    Ok((r, first.iter().map(|s| s.trim().to_string()).collect()))
}

fn read_delimited(
    path: &Path,
    columns: &LogColumns,
    known: Option<&HashSet<u32>>,
    items: Option<&Path>,
) -> Result<(Vec<Interaction>, bool)> {
    let mut r = open_table(path)?;
    let (first, has_header) = first_record(path, &mut r)?;
    let header: Option<Vec<String>> =
        has_header.then(|| first.iter().map(|s| s.trim().to_string()).collect());
    let h = header.as_deref();
    let missing = |what: &str, flag: &str| DataError::Parse {
        path: path.into(),
        line: 1,
        message: match h {
            Some(h) => format!(
                "no {what} column found in the header ({}); name it with {flag}",
                crate::escaped(&h.join(", "))
            ),
            None => format!("no {what} column; name it with {flag}"),
        },
    };
    let user = find_column(path, h, columns.user.as_deref(), &USER_NAMES, "--user-col")?
        .or(if h.is_none() { Some(0) } else { None })
        .ok_or_else(|| missing("user", "--user-col"))?;
    let item = find_column(path, h, columns.item.as_deref(), &ITEM_NAMES, "--item-col")?
        .or(if h.is_none() { Some(1) } else { None })
        .ok_or_else(|| missing("item", "--item-col"))?;
    let time = find_column(path, h, columns.time.as_deref(), &TIME_NAMES, "--time-col")?;
    let width = first.len();
    for (i, flag) in [
        (Some(user), "--user-col"),
        (Some(item), "--item-col"),
        (time, "--time-col"),
    ] {
        if let Some(i) = i {
            if i >= width {
                return Err(DataError::Parse {
                    path: path.into(),
                    line: 1,
                    message: format!("{flag} {i}: the rows have only {width} fields"),
                });
            }
        }
    }
    let mut rows = Vec::new();
    let mut push = |rec: &csv::StringRecord, line: usize| -> Result<()> {
        let row = Interaction {
            user: parse_id(path, line, "user id", &rec[user])?,
            item: parse_id(path, line, "item id", &rec[item])?,
            rating: 1.0,
            timestamp: match time {
                Some(t) => parse_time(path, line, &rec[t])?,
                None => 0,
            },
        };
        if known.is_some_and(|k| !k.contains(&row.item)) {
            return Err(unknown_item(path, line, row.item, items));
        }
        rows.push(row);
        Ok(())
    };
    if !has_header {
        push(&first, 1)?;
    }
    let mut rec = csv::StringRecord::new();
    while r.read_record(&mut rec).map_err(|e| table_error(path, e))? {
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        push(&rec, line)?;
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok((rows, time.is_some()))
}

/// An id: a non-negative integer below 2³².
pub(crate) fn parse_id(path: &Path, line: usize, what: &str, s: &str) -> Result<u32> {
    s.trim().parse().map_err(|_| DataError::Parse {
        path: path.into(),
        line,
        message: format!(
            "{what} {} is not a non-negative integer below 2^32 (logs need integer ids)",
            crate::shown(s)
        ),
    })
}

/// A time: Unix seconds, integer or decimal.
pub(crate) fn parse_time(path: &Path, line: usize, s: &str) -> Result<i64> {
    let t = s.trim();
    if let Ok(v) = t.parse::<i64>() {
        return Ok(v);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() < 9.0e18 => Ok(v.floor() as i64),
        _ => Err(DataError::Parse {
            path: path.into(),
            line,
            message: format!("time {} is not a Unix timestamp (seconds)", crate::shown(s)),
        }),
    }
}

/// Reads an item catalogue: a table with a header naming the id and title columns
/// (`genres`, `|`-separated, is read when present).
pub fn read_items(path: &Path, columns: &LogColumns) -> Result<Vec<Movie>> {
    let (mut r, h) = open_with_header(path, "an item catalogue")?;
    let need = |i: Option<usize>, what: &str, flag: &str| {
        i.ok_or_else(|| DataError::Parse {
            path: path.into(),
            line: 1,
            message: format!(
                "no {what} column found in the header ({}); name it with {flag}",
                crate::escaped(&h.join(", "))
            ),
        })
    };
    // A catalogue's own id column is often just `id` (Last.fm's artists.dat).
    let id_names: Vec<&str> = ITEM_NAMES.iter().copied().chain(["id"]).collect();
    let (given, flag) = match &columns.items_id {
        Some(c) => (Some(c.as_str()), "--items-id-col"),
        None => (columns.item.as_deref(), "--item-col"),
    };
    let found = find_column(path, Some(&h), given, &id_names, flag).map_err(|e| match e {
        DataError::Parse {
            path,
            line,
            message,
        } if columns.items_id.is_none() => DataError::Parse {
            path,
            line,
            message: format!("{message}; name the catalogue's own id column with --items-id-col"),
        },
        other => other,
    })?;
    let id = need(found, "item id", "--items-id-col")?;
    let title = need(
        find_column(
            path,
            Some(&h),
            columns.title.as_deref(),
            &TITLE_NAMES,
            "--title-col",
        )?,
        "title",
        "--title-col",
    )?;
    let genres = h.iter().position(|c| normalise(c) == "genres");
    let mut movies = Vec::new();
    let mut first_line: HashMap<u32, usize> = HashMap::new();
    let mut rec = csv::StringRecord::new();
    while r.read_record(&mut rec).map_err(|e| table_error(path, e))? {
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let bad = |message: String| DataError::Parse {
            path: path.into(),
            line,
            message,
        };
        let field = |i: usize| rec.get(i).unwrap_or("");
        // Titles and genres are stored in tab-separated files of the model folder.
        for (i, what) in [(title, "title")]
            .into_iter()
            .chain(genres.map(|g| (g, "genres")))
        {
            if field(i).contains(['\t', '\n', '\r']) {
                return Err(bad(format!(
                    "the {what} {} holds a tab or line break; remove it",
                    crate::shown(field(i))
                )));
            }
        }
        let movie = Movie {
            id: parse_id(path, line, "item id", field(id))?,
            title: field(title).to_string(),
            release_date: String::new(),
            genres: genres.map(|g| split_genres(field(g))).unwrap_or_default(),
        };
        if let Some(first) = first_line.insert(movie.id, line) {
            return Err(bad(format!(
                "item id {} is listed twice (first on line {first})",
                movie.id
            )));
        }
        movies.push(movie);
    }
    if movies.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(movies)
}

#[cfg(feature = "parquet")]
fn read_parquet(
    path: &Path,
    columns: &LogColumns,
    known: Option<&HashSet<u32>>,
    items: Option<&Path>,
) -> Result<(Vec<Interaction>, bool)> {
    crate::parquet_log::read(path, columns, known, items)
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(
    path: &Path,
    _: &LogColumns,
    _: Option<&HashSet<u32>>,
    _: Option<&Path>,
) -> Result<(Vec<Interaction>, bool)> {
    Err(DataError::Invalid(format!(
        "{}: this build reads no Parquet (it was built without the `parquet` feature); \
         convert the log to CSV or rebuild with the feature",
        path.display()
    )))
}

/// The folder a log's name is reported under (its file name without extension).
pub fn log_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| PathBuf::from(path).display().to_string())
}
