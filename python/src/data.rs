//! Interaction data from Python: a MovieLens folder, a log file (CSV, TSV, Parquet), or
//! arrays (the package's `Interactions.from_pandas` passes a data frame's columns here).

use std::path::PathBuf;
use std::sync::Arc;

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use twotower_data::log::LogColumns;
use twotower_data::{resolve_data_dir, Dataset, Interaction, Movie};

use crate::errors::{invalid, OrRaise, PyResult};

/// Interactions (user, item, time) and the item catalogue, ready to split and train on.
#[pyclass(module = "twotower._twotower", name = "Dataset", frozen)]
pub struct PyDataset {
    pub inner: Arc<Dataset>,
}

/// The dataset names `load_movielens` takes: TFRS's and MovieLens's folder names, and the
/// command line's `--dataset` names.
fn dataset_name(name: &str) -> PyResult<&'static str> {
    for (cli, folder, _) in twotower_data::fetch::DATASETS {
        if !folder.is_empty() && (name == cli || name == folder) {
            return Ok(cli);
        }
    }
    Err(invalid(format!(
        "unknown MovieLens dataset {}; known: ml-100k, ml-1m, ml-latest-small, ml-20m, ml-25m, \
         ml-32m",
        twotower_data::shown(name)
    )))
}

/// Non-negative ids below 2³² from `values`, the column `what`; a bad one names its row.
fn ids(values: &[i64], what: &str) -> PyResult<Vec<u32>> {
    values
        .iter()
        .enumerate()
        .map(|(row, &v)| {
            u32::try_from(v).map_err(|_| {
                invalid(format!(
                    "{what}: row {row}: {v} is not an id (a non-negative integer below 2^32)"
                ))
            })
        })
        .collect()
}

fn slice<'a>(a: &'a PyReadonlyArray1<'_, i64>, what: &str) -> PyResult<&'a [i64]> {
    a.as_slice()
        .map_err(|_| invalid(format!("{what}: expected a contiguous int64 array")))
}

#[pymethods]
impl PyDataset {
    /// A MovieLens folder (`data_dir`, else `TWOTOWER_DATA_DIR`, else the download cache).
    #[staticmethod]
    #[pyo3(signature = (name = "ml-100k", data_dir = None))]
    fn movielens(py: Python<'_>, name: &str, data_dir: Option<PathBuf>) -> PyResult<Self> {
        let cli = dataset_name(name)?;
        let dataset = py.detach(|| -> anyhow::Result<Dataset> {
            let (dir, _) = resolve_data_dir(data_dir.as_deref(), cli, &mut |_, _| {})?;
            Ok(Dataset::open(&dir)?)
        });
        Ok(PyDataset {
            inner: Arc::new(dataset.or_raise()?),
        })
    }

    /// A log file (CSV, TSV or Parquet by extension) with an optional item catalogue;
    /// columns found by common names unless given.
    #[staticmethod]
    #[pyo3(signature = (path, items = None, user = None, item = None, time = None, title = None, items_id = None))]
    #[allow(clippy::too_many_arguments)] // the Python keywords, one each
    fn log(
        py: Python<'_>,
        path: PathBuf,
        items: Option<PathBuf>,
        user: Option<String>,
        item: Option<String>,
        time: Option<String>,
        title: Option<String>,
        items_id: Option<String>,
    ) -> PyResult<Self> {
        let columns = LogColumns {
            user,
            item,
            time,
            title,
            items_id,
        };
        let dataset = py.detach(|| Dataset::from_log(&path, items.as_deref(), &columns));
        Ok(PyDataset {
            inner: Arc::new(dataset.or_raise()?),
        })
    }

    /// Interactions from arrays of equal length; `times` in Unix seconds. The catalogue,
    /// when given, is `item_ids` with their `titles` and `genres`.
    #[staticmethod]
    #[pyo3(signature = (users, items, times = None, item_ids = None, titles = None, genres = None, name = "data frame"))]
    #[allow(clippy::too_many_arguments)]
    fn arrays(
        users: PyReadonlyArray1<'_, i64>,
        items: PyReadonlyArray1<'_, i64>,
        times: Option<PyReadonlyArray1<'_, i64>>,
        item_ids: Option<PyReadonlyArray1<'_, i64>>,
        titles: Option<Vec<String>>,
        genres: Option<Vec<Vec<String>>>,
        name: &str,
    ) -> PyResult<Self> {
        let users = ids(slice(&users, "user")?, "user")?;
        let items = ids(slice(&items, "item")?, "item")?;
        let times = match &times {
            Some(t) => Some(slice(t, "time")?),
            None => None,
        };
        if items.len() != users.len() || times.is_some_and(|t| t.len() != users.len()) {
            return Err(invalid(format!(
                "the user, item and time columns differ in length ({}, {}, {})",
                users.len(),
                items.len(),
                times.map_or(users.len(), <[i64]>::len)
            )));
        }
        let interactions = (0..users.len())
            .map(|i| Interaction {
                user: users[i],
                item: items[i],
                rating: 1.0,
                timestamp: times.map_or(0, |t| t[i]),
            })
            .collect();
        let catalogue = match &item_ids {
            Some(ids_array) => {
                let ids = ids(slice(ids_array, "items' id")?, "items' id")?;
                let titles =
                    titles.unwrap_or_else(|| ids.iter().map(|i| format!("item {i}")).collect());
                let genres = genres.unwrap_or_else(|| vec![Vec::new(); ids.len()]);
                if titles.len() != ids.len() || genres.len() != ids.len() {
                    return Err(invalid(format!(
                        "the items' id, title and genres columns differ in length ({}, {}, {})",
                        ids.len(),
                        titles.len(),
                        genres.len()
                    )));
                }
                Some(
                    ids.into_iter()
                        .zip(titles)
                        .zip(genres)
                        .map(|((id, title), genres)| Movie {
                            id,
                            title,
                            release_date: String::new(),
                            genres,
                        })
                        .collect(),
                )
            }
            None => None,
        };
        let dataset = Dataset::from_interactions(name, interactions, catalogue, times.is_some())
            .or_raise()?;
        Ok(PyDataset {
            inner: Arc::new(dataset),
        })
    }

    /// Number of interactions.
    fn __len__(&self) -> usize {
        self.inner.ratings.len()
    }

    /// Number of distinct users.
    #[getter]
    fn num_users(&self) -> usize {
        let mut u: Vec<u32> = self.inner.ratings.iter().map(|r| r.user).collect();
        u.sort_unstable();
        u.dedup();
        u.len()
    }

    /// Number of items in the catalogue.
    #[getter]
    fn num_items(&self) -> usize {
        self.inner.movies.len()
    }

    /// Whether the interactions carry times.
    #[getter]
    fn has_time(&self) -> bool {
        self.inner.format != twotower_data::Format::Log { has_time: false }
    }

    /// A short name of the data.
    #[getter]
    fn name(&self) -> String {
        self.inner.name()
    }
}
