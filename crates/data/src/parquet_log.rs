//! Interaction logs in Apache Parquet (the arrow-rs `parquet` crate): reading them in
//! record batches, and writing them (for `data synth --parquet` and round-trip tests).
//!
//! Id columns may be any integer type, or strings holding integers; the time column an
//! integer or floating-point number of Unix seconds, or an Arrow timestamp of any unit.
//! Null or out-of-range values stop the read with an error naming the row.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};

use crate::columns::{find_column, unknown_item, LogColumns, ITEM_NAMES, TIME_NAMES, USER_NAMES};
use crate::{DataError, Interaction, Result};

/// Rows per record batch read.
const BATCH_ROWS: usize = 64 * 1024;

fn bad(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Invalid(format!(
        "{}: not a readable Parquet file: {e}",
        path.display()
    ))
}

fn row_error(path: &Path, row: usize, message: String) -> DataError {
    DataError::Row {
        path: path.into(),
        row,
        message,
    }
}

/// Column `i` of a batch as i64 values (`None` for nulls), or an error naming the row.
fn column_values(
    path: &Path,
    name: &str,
    col: &ArrayRef,
    first_row: usize,
    time: bool,
) -> Result<Vec<i64>> {
    macro_rules! ints {
        ($t:ty) => {
            col.as_primitive::<$t>()
                .iter()
                .map(|v| v.map(|x| x as i64))
                .collect::<Vec<Option<i64>>>()
        };
    }
    macro_rules! scaled {
        ($t:ty, $div:expr) => {
            col.as_primitive::<$t>()
                .iter()
                .map(|v| v.map(|x| x.div_euclid($div)))
                .collect::<Vec<Option<i64>>>()
        };
    }
    let values: Vec<Option<i64>> = match col.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => col
            .as_primitive::<UInt64Type>()
            .iter()
            .map(|v| v.map(|x| i64::try_from(x).unwrap_or(i64::MAX)))
            .collect(),
        DataType::Float32 if time => col
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(|x| x.floor() as i64))
            .collect(),
        DataType::Float64 if time => col
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map(|x| x.floor() as i64))
            .collect(),
        DataType::Timestamp(TimeUnit::Second, _) => scaled!(TimestampSecondType, 1),
        DataType::Timestamp(TimeUnit::Millisecond, _) => scaled!(TimestampMillisecondType, 1_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            scaled!(TimestampMicrosecondType, 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            scaled!(TimestampNanosecondType, 1_000_000_000)
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let strings: Vec<Option<String>> = match col.data_type() {
                DataType::Utf8 => col
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.map(str::to_string))
                    .collect(),
                DataType::LargeUtf8 => col
                    .as_string::<i64>()
                    .iter()
                    .map(|s| s.map(str::to_string))
                    .collect(),
                _ => col
                    .as_string_view()
                    .iter()
                    .map(|s| s.map(str::to_string))
                    .collect(),
            };
            let mut out = Vec::with_capacity(strings.len());
            for (k, s) in strings.into_iter().enumerate() {
                out.push(match s {
                    None => None,
                    Some(s) => Some(s.trim().parse::<i64>().map_err(|_| {
                        row_error(
                            path,
                            first_row + k,
                            format!("column {name:?}: {} is not an integer", crate::shown(&s)),
                        )
                    })?),
                });
            }
            out
        }
        other => {
            return Err(DataError::Invalid(format!(
                "{}: column {name:?} has type {other}; expected integers{}",
                path.display(),
                if time {
                    ", floats or timestamps (Unix time)"
                } else {
                    " (or strings of integers)"
                }
            )))
        }
    };
    values
        .into_iter()
        .enumerate()
        .map(|(k, v)| {
            v.ok_or_else(|| row_error(path, first_row + k, format!("column {name:?} is null")))
        })
        .collect()
}

fn to_id(path: &Path, row: usize, name: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        row_error(
            path,
            row,
            format!("column {name:?}: id {v} is not a non-negative integer below 2^32"),
        )
    })
}

/// A Parquet file's reader builder and its columns' names.
fn open(path: &Path) -> Result<(ParquetRecordBatchReaderBuilder<std::fs::File>, Vec<String>)> {
    let file = crate::primitives::open_regular(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(path, e))?;
    let names = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    Ok((builder, names))
}

/// Reads a Parquet log: `(interactions, has_time)`. The decoder can panic on damaged
/// files; that is contained and reported as an error naming the file.
pub(crate) fn read(
    path: &Path,
    columns: &LogColumns,
    known: Option<&HashSet<u32>>,
    items: Option<&Path>,
) -> Result<(Vec<Interaction>, bool)> {
    crate::primitives::contain(path, || read_unguarded(path, columns, known, items))
}

fn read_unguarded(
    path: &Path,
    columns: &LogColumns,
    known: Option<&HashSet<u32>>,
    items: Option<&Path>,
) -> Result<(Vec<Interaction>, bool)> {
    let (builder, names) = open(path)?;
    let find = |given: Option<&str>, common: &[&str], flag: &str| -> Result<Option<usize>> {
        find_column(path, Some(&names), given, common, flag)
    };
    let missing = |what: &str, flag: &str| {
        DataError::Invalid(format!(
            "{}: no {what} column among ({}); name it with {flag}",
            path.display(),
            crate::escaped(&names.join(", "))
        ))
    };
    let user = find(columns.user.as_deref(), &USER_NAMES, "--user-col")?
        .ok_or_else(|| missing("user", "--user-col"))?;
    let item = find(columns.item.as_deref(), &ITEM_NAMES, "--item-col")?
        .ok_or_else(|| missing("item", "--item-col"))?;
    let time = find(columns.time.as_deref(), &TIME_NAMES, "--time-col")?;
    let mut wanted = vec![user, item];
    wanted.extend(time);
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
    let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| bad(path, e))?;
    // The row count comes from the file: trust it for a reservation only up to a bound.
    let mut rows = Vec::with_capacity(total.min(1 << 22));
    for batch in reader {
        let batch = batch.map_err(|e| bad(path, e))?;
        let first_row = rows.len() + 1;
        let get = |i: usize, is_time: bool| {
            let name = &names[i];
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| bad(path, format!("column {name:?} missing from a batch")))?;
            column_values(path, name, col, first_row, is_time)
        };
        let (us, is) = (get(user, false)?, get(item, false)?);
        let ts = match time {
            Some(t) => Some(get(t, true)?),
            None => None,
        };
        for k in 0..batch.num_rows() {
            let row = first_row + k;
            let r = Interaction {
                user: to_id(path, row, &names[user], us[k])?,
                item: to_id(path, row, &names[item], is[k])?,
                rating: 1.0,
                timestamp: ts.as_ref().map_or(0, |t| t[k]),
            };
            if known.is_some_and(|kn| !kn.contains(&r.item)) {
                return Err(unknown_item(path, row, r.item, items));
            }
            rows.push(r);
        }
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok((rows, time.is_some()))
}

/// Writes interactions as Parquet (`user_id`, `item_id`, `timestamp`, all INT64; Snappy),
/// atomically: to a temporary sibling renamed into place.
pub fn write(path: &Path, rows: &[Interaction]) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, false),
        Field::new("timestamp", DataType::Int64, false),
    ]));
    let tmp = path.with_extension(format!("parquet.tmp-{}", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let fail = |e: parquet::errors::ParquetError| {
            DataError::Invalid(format!("{}: writing Parquet: {e}", tmp.display()))
        };
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(fail)?;
        for chunk in rows.chunks(1 << 20) {
            let col = |f: &dyn Fn(&Interaction) -> i64| -> ArrayRef {
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(f)))
            };
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    col(&|r| r.user as i64),
                    col(&|r| r.item as i64),
                    col(&|r| r.timestamp),
                ],
            )
            .map_err(|e| DataError::Invalid(e.to_string()))?;
            w.write(&batch).map_err(fail)?;
        }
        let file = w.into_inner().map_err(fail)?;
        file.sync_all().map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads every column of a Parquet table as text, for feature tables: `(names, rows)`,
/// a row's values in `names` order. Numbers, booleans and strings read as they print; a
/// list (of strings or numbers) as its values joined by `|` (a `multi` column); a null as
/// the empty value. Other types are refused naming the column.
pub(crate) fn read_text_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    crate::primitives::contain(path, || read_text_table_unguarded(path))
}

fn read_text_table_unguarded(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let (builder, names) = open(path)?;
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| bad(path, e))?;
    let mut rows: Vec<Vec<String>> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(path, e))?;
        let first = rows.len();
        rows.extend((0..batch.num_rows()).map(|_| Vec::with_capacity(names.len())));
        for (name, col) in names.iter().zip(batch.columns()) {
            for (k, v) in column_text(path, name, col)?.into_iter().enumerate() {
                if let Some(row) = rows.get_mut(first + k) {
                    row.push(v);
                }
            }
        }
    }
    Ok((names, rows))
}

/// A column's values as text (see [`read_text_table`]).
fn column_text(path: &Path, name: &str, col: &ArrayRef) -> Result<Vec<String>> {
    let refused = |t: &DataType| {
        DataError::Invalid(format!(
            "{}: column {name:?} has type {t}; feature columns may hold numbers, booleans, \
             strings or lists of them",
            path.display()
        ))
    };
    let scalar = |col: &ArrayRef| -> Result<Vec<Option<String>>> {
        let t = col.data_type();
        let readable = t.is_numeric()
            || t.is_null()
            || matches!(
                t,
                DataType::Boolean
                    | DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Dictionary(..)
            );
        if !readable {
            return Err(refused(t));
        }
        let text = arrow_cast::cast(col, &DataType::Utf8).map_err(|_| refused(t))?;
        Ok(text
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    };
    let joined = |v: Option<ArrayRef>| -> Result<String> {
        Ok(match v {
            None => String::new(),
            Some(values) => scalar(&values)?
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("|"),
        })
    };
    match col.data_type() {
        DataType::List(_) => col.as_list::<i32>().iter().map(joined).collect(),
        DataType::LargeList(_) => col.as_list::<i64>().iter().map(joined).collect(),
        _ => Ok(scalar(col)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect()),
    }
}
