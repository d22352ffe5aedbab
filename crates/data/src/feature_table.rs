//! Feature tables for generic logs (`--user-features FILE`, `--item-features FILE`): a
//! CSV or TSV table with a header and one row per user or item, an id column and any
//! others. Values are kept as text with the line they came from; the towers type them as
//! their spec declares (and name the line when a value does not fit). A bad row — a
//! missing or non-integer id, an id given twice, a row of another width — stops the read
//! with an error naming the file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::columns::{find_column, ITEM_NAMES, USER_NAMES};
use crate::log::{open_with_header, table_error};
use crate::{DataError, Result};

/// Whose features a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    User,
    Item,
}

/// How a table's records are numbered in messages: by the file's line (CSV/TSV) or by
/// data row (Parquet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    Lines,
    Rows,
}

/// A feature table, read.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    pub path: PathBuf,
    /// The header's names, the id column left out.
    pub columns: Vec<String>,
    /// Each id's line (or row) and values (in `columns` order).
    pub rows: HashMap<u32, (usize, Vec<String>)>,
    pub numbering: Numbering,
}

impl FeatureTable {
    /// Reads a table whose id column is `id` (a header name or 0-based position), or the
    /// common name of a user or item id column (`user_id`, `item_id`, `id`, …). A
    /// `.parquet` file is read by its schema's names (see `parquet_log::read_text_table`).
    pub fn read(path: &Path, side: Side, id: Option<&str>) -> Result<Self> {
        let is_parquet = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        let (header, records, numbering) = if is_parquet {
            let (header, rows) = read_parquet(path)?;
            let records = rows.into_iter().enumerate().map(|(k, r)| (k + 1, r));
            (header, records.collect(), Numbering::Rows)
        } else {
            let (header, records) = read_text(path)?;
            (header, records, Numbering::Lines)
        };
        let bad = |n: usize, message: String| match numbering {
            Numbering::Lines => DataError::Parse {
                path: path.into(),
                line: n,
                message,
            },
            Numbering::Rows => DataError::Row {
                path: path.into(),
                row: n,
                message,
            },
        };
        let (common, flag): (Vec<&str>, &str) = match side {
            Side::User => (USER_NAMES.to_vec(), "--user-col"),
            Side::Item => (
                ITEM_NAMES.iter().copied().chain(["id"]).collect(),
                "--item-col",
            ),
        };
        let key = find_column(path, Some(&header), id, &common, flag)?.ok_or_else(|| {
            let names = crate::escaped(&header.join(", "));
            let message = format!("no id column found among ({names}); name it with {flag}");
            match numbering {
                Numbering::Lines => bad(1, message),
                Numbering::Rows => DataError::Invalid(format!("{}: {message}", path.display())),
            }
        })?;
        let what = match side {
            Side::User => "user id",
            Side::Item => "item id",
        };
        let mut rows: HashMap<u32, (usize, Vec<String>)> = HashMap::new();
        for (n, mut fields) in records {
            fields.resize(header.len(), String::new());
            let text = fields[key].trim();
            let id: u32 = text.parse().map_err(|_| {
                bad(
                    n,
                    format!(
                        "{what} {} is not a non-negative integer below 2^32",
                        crate::shown(text)
                    ),
                )
            })?;
            let values = fields
                .into_iter()
                .enumerate()
                .filter(|&(i, _)| i != key)
                .map(|(_, v)| v.trim().to_string())
                .collect();
            if let Some((before, _)) = rows.insert(id, (n, values)) {
                let unit = match numbering {
                    Numbering::Lines => "line",
                    Numbering::Rows => "row",
                };
                return Err(bad(
                    n,
                    format!("{what} {id} is given twice (also on {unit} {before})"),
                ));
            }
        }
        let columns = header
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| i != key)
            .map(|(_, c)| c)
            .collect();
        Ok(FeatureTable {
            path: path.to_path_buf(),
            columns,
            rows,
            numbering,
        })
    }

    /// The position of `column` among [`FeatureTable::columns`].
    pub fn column(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }

    /// Where record `n` (a line or row, see [`FeatureTable::rows`]) is, for messages.
    pub fn at(&self, n: usize) -> String {
        match self.numbering {
            Numbering::Lines => format!("{}:{n}", self.path.display()),
            Numbering::Rows => format!("{}: row {n}", self.path.display()),
        }
    }
}

/// A CSV/TSV table's header and records, each with its line.
type Records = (Vec<String>, Vec<(usize, Vec<String>)>);

fn read_text(path: &Path) -> Result<Records> {
    let (mut r, header) = open_with_header(path, "a feature table")?;
    let mut records = Vec::new();
    let mut rec = csv::StringRecord::new();
    while r.read_record(&mut rec).map_err(|e| table_error(path, e))? {
        let line = rec.position().map_or(0, |p| p.line() as usize);
        records.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok((header, records))
}

#[cfg(feature = "parquet")]
fn read_parquet(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    crate::parquet_log::read_text_table(path)
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    Err(DataError::Invalid(format!(
        "{}: this build reads no Parquet (it was built without the `parquet` feature); \
         give the feature table as CSV or TSV",
        path.display()
    )))
}
