//! The columns of `--user-features FILE` and `--item-features FILE` typed as a tower spec
//! declares them (`[user_columns]`, `[item_columns]`: `categorical`, `multi`, `text`,
//! `number`): each id's values as the features read them, and the tab-separated text a
//! model folder stores them as. A declared column missing from the file is an error naming
//! the spec's line; a value that does not fit its kind, one naming the file's line.

use std::collections::HashMap;
use std::path::Path;

use twotower_data::feature_table::FeatureTable;

use crate::features::Column;
use crate::spec::{ColumnKind, TowersSpec};
use crate::{ModelError, Result};

/// Typed feature columns of users or items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureColumns {
    pub columns: Vec<(String, ColumnKind)>,
    /// Each id's values, in `columns` order.
    pub rows: HashMap<u32, Vec<Column>>,
}

/// `text` read as a value of `kind` (`None`: it is not one).
fn typed(kind: ColumnKind, text: &str) -> Option<Column> {
    Some(match kind {
        ColumnKind::Number if text.is_empty() => Column::Number(None),
        ColumnKind::Number => {
            Column::Number(Some(text.parse::<f32>().ok().filter(|x| x.is_finite())?))
        }
        ColumnKind::MultiCategorical => Column::Strs(
            text.split('|')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        ),
        ColumnKind::Text => Column::Text(text.to_string()),
        ColumnKind::Categorical | ColumnKind::Id => Column::Str(text.to_string()),
    })
}

/// The value a row without one gets.
fn missing(kind: ColumnKind) -> Column {
    match kind {
        ColumnKind::Number => Column::Number(None),
        ColumnKind::MultiCategorical => Column::Strs(Vec::new()),
        ColumnKind::Text => Column::Text(String::new()),
        ColumnKind::Categorical | ColumnKind::Id => Column::Str(String::new()),
    }
}

/// How a value is written in a model folder (and read back by [`typed`]).
fn text_of(v: &Column) -> String {
    match v {
        Column::Str(s) | Column::Text(s) => s.clone(),
        Column::Strs(v) => v.join("|"),
        Column::Number(n) => n.map(|x| x.to_string()).unwrap_or_default(),
        Column::Items(_) => String::new(),
    }
}

impl FeatureColumns {
    /// The columns `spec` declares for users (`user = true`) or items, read from `table`.
    pub fn from_table(spec: &TowersSpec, user: bool, table: &FeatureTable) -> Result<Self> {
        let columns = spec.declared(user);
        let mut at = Vec::new();
        for (c, _) in &columns {
            let i = table.column(c).ok_or_else(|| {
                spec.declared_error(
                    user,
                    format!(
                        "column {} is not in {} (it has {})",
                        twotower_data::shown(c),
                        table.path.display(),
                        table.columns.join(", ")
                    ),
                )
            })?;
            at.push(i);
        }
        let mut rows = HashMap::with_capacity(table.rows.len());
        for (&id, (line, values)) in &table.rows {
            let mut row = Vec::with_capacity(columns.len());
            for ((c, kind), &i) in columns.iter().zip(&at) {
                let text = values.get(i).map_or("", String::as_str);
                let bad = |what: &str| {
                    ModelError::Config(format!(
                        "{}: column {} {what} {}",
                        table.at(*line),
                        twotower_data::shown(c),
                        twotower_data::shown(text)
                    ))
                };
                if text.contains(['\t', '\n', '\r']) {
                    return Err(bad("holds a tab or line break:"));
                }
                row.push(typed(*kind, text).ok_or_else(|| bad("is declared a number, not"))?);
            }
            rows.insert(id, row);
        }
        Ok(FeatureColumns { columns, rows })
    }

    /// `column` of `id` (`None`: not one of these columns; a row without one gets the
    /// empty value of its kind).
    pub fn value(&self, id: u32, column: &str) -> Option<Column> {
        let i = self.columns.iter().position(|(c, _)| c == column)?;
        Some(
            self.rows
                .get(&id)
                .and_then(|r| r.get(i).cloned())
                .unwrap_or_else(|| missing(self.columns[i].1)),
        )
    }

    /// The rows as tab-separated text with a header (`id` and the columns), by id.
    pub fn to_tsv(&self) -> String {
        let mut out = String::from("id");
        for (c, _) in &self.columns {
            out.push('\t');
            out.push_str(c);
        }
        out.push('\n');
        let mut ids: Vec<&u32> = self.rows.keys().collect();
        ids.sort_unstable();
        for id in ids {
            out.push_str(&id.to_string());
            for v in &self.rows[id] {
                out.push('\t');
                out.push_str(&text_of(v));
            }
            out.push('\n');
        }
        out
    }

    /// What [`FeatureColumns::to_tsv`] wrote, with the kinds `spec` declares.
    pub fn from_tsv(spec: &TowersSpec, user: bool, path: &Path, text: &str) -> Result<Self> {
        let columns = spec.declared(user);
        let bad = |line: usize, m: &str| ModelError::bad(path, format!("line {line}: {m}"));
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        let want: Vec<&str> = std::iter::once("id")
            .chain(columns.iter().map(|(c, _)| c.as_str()))
            .collect();
        if header != want {
            return Err(bad(1, "the header is not the spec's declared columns"));
        }
        let mut rows = HashMap::new();
        for (k, l) in lines.enumerate() {
            let line = k + 2;
            let fields: Vec<&str> = l.split('\t').collect();
            if fields.len() != want.len() {
                return Err(bad(line, "wrong number of fields"));
            }
            let id: u32 = fields[0].parse().map_err(|_| bad(line, "bad id"))?;
            let row = columns
                .iter()
                .zip(&fields[1..])
                .map(|((_, kind), t)| typed(*kind, t).ok_or_else(|| bad(line, "bad number")))
                .collect::<Result<Vec<_>>>()?;
            rows.insert(id, row);
        }
        Ok(FeatureColumns { columns, rows })
    }
}
