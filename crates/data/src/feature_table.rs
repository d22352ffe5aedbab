//! Feature tables for generic logs (`--user-features FILE`, `--item-features FILE`): a
//! CSV or TSV table with a header and one row per user or item, an id column and any
//! others. Values are kept as text with the line they came from; the towers type them as
//! their spec declares (and name the line when a value does not fit). A bad row — a
//! missing or non-integer id, an id given twice, a row of another width — stops the read
//! with an error naming the file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::columns::{find_column, ITEM_NAMES, USER_NAMES};
use crate::log::{first_record, open_table, parse_id, table_error};
use crate::{DataError, Result};

/// Whose features a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    User,
    Item,
}

/// A feature table, read.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    pub path: PathBuf,
    /// The header's names, the id column left out.
    pub columns: Vec<String>,
    /// Each id's line and values (in `columns` order).
    pub rows: HashMap<u32, (usize, Vec<String>)>,
}

impl FeatureTable {
    /// Reads a table whose id column is `id` (a header name or 0-based position), or the
    /// common name of a user or item id column (`user_id`, `item_id`, `id`, …).
    pub fn read(path: &Path, side: Side, id: Option<&str>) -> Result<Self> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
        {
            return Err(DataError::Invalid(format!(
                "{}: feature tables are read from CSV or TSV files; Parquet is not supported \
                 for them yet",
                path.display()
            )));
        }
        let mut r = open_table(path)?;
        let (first, has_header) = first_record(path, &mut r)?;
        let bad = |line: usize, message: String| DataError::Parse {
            path: path.into(),
            line,
            message,
        };
        if !has_header {
            return Err(bad(
                1,
                "a feature table needs a header row naming its columns".into(),
            ));
        }
        let header: Vec<String> = first.iter().map(|s| s.trim().to_string()).collect();
        let (common, flag): (Vec<&str>, &str) = match side {
            Side::User => (USER_NAMES.to_vec(), "--user-col"),
            Side::Item => (
                ITEM_NAMES.iter().copied().chain(["id"]).collect(),
                "--item-col",
            ),
        };
        let key = find_column(path, Some(&header), id, &common, flag)?.ok_or_else(|| {
            bad(
                1,
                format!(
                    "no id column found in the header ({}); name it with {flag}",
                    crate::escaped(&header.join(", "))
                ),
            )
        })?;
        let what = match side {
            Side::User => "user id",
            Side::Item => "item id",
        };
        let mut rows: HashMap<u32, (usize, Vec<String>)> = HashMap::new();
        let mut rec = csv::StringRecord::new();
        while r.read_record(&mut rec).map_err(|e| table_error(path, e))? {
            let line = rec.position().map_or(0, |p| p.line() as usize);
            let field = |i: usize| rec.get(i).unwrap_or("").trim();
            let id = parse_id(path, line, what, field(key))?;
            let values = (0..header.len())
                .filter(|&i| i != key)
                .map(|i| field(i).to_string())
                .collect();
            if let Some((before, _)) = rows.insert(id, (line, values)) {
                return Err(bad(
                    line,
                    format!("{what} {id} is given twice (also on line {before})"),
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
        })
    }

    /// The position of `column` among [`FeatureTable::columns`].
    pub fn column(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }
}
