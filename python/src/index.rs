//! `twotower.Index`: the exact and the ScaNN-style approximate index over any float32
//! matrix, as ScaNN's and FAISS's Python APIs offer theirs: build, search one query or a
//! batch (numpy in, numpy out), save and load the index folders `twotower index` uses.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use twotower_index::{
    AnnIndex, BruteForceIndex, BuildOptions, Index, KmeansInit, SearchParams, Setting,
};

use crate::arrays::Floats;
use crate::errors::{invalid, OrRaise, PyResult};
use crate::interrupt::interruptible;

/// A maximum-inner-product index: `"exact"` (every row scored) or `"ann"` (k-means
/// leaves, anisotropic 4-bit product quantization, exact re-ranking; tuned to a target
/// recall).
#[pyclass(module = "twotower._twotower", name = "Index", frozen)]
pub struct PyIndex {
    inner: Index,
}

#[pymethods]
impl PyIndex {
    /// Builds an index over the rows of `vectors` (float32, shape `(n, dim)`).
    ///
    /// `kind="ann"` tunes its search to the fastest setting whose recall@10 reaches
    /// `target_recall` on `tune_queries` (default: 1,000 sampled rows), unless
    /// `leaves_to_search` and `reorder` are given. `leaves` (default ≈ 2·√n), `subspaces`
    /// (default dim / 2), `anisotropic` (ScaNN's T), `kmeans_init` (`"random"` or
    /// `"plusplus"`) and `seed` shape the build. The build runs with the GIL released;
    /// Ctrl-C stops it at its next stage (`KeyboardInterrupt`).
    #[staticmethod]
    #[pyo3(signature = (vectors, kind = "ann", target_recall = 0.95, tune_queries = None,
        leaves = None, leaves_to_search = None, reorder = None, subspaces = None,
        anisotropic = 0.2, kmeans_init = "random", seed = 0))]
    #[allow(clippy::too_many_arguments)]
    fn build(
        py: Python<'_>,
        vectors: &Bound<'_, PyAny>,
        kind: &str,
        target_recall: f64,
        tune_queries: Option<&Bound<'_, PyAny>>,
        leaves: Option<usize>,
        leaves_to_search: Option<usize>,
        reorder: Option<usize>,
        subspaces: Option<usize>,
        anisotropic: f32,
        kmeans_init: &str,
        seed: u64,
    ) -> PyResult<Self> {
        let vectors = Floats::matrix(vectors, "vectors")?;
        let (n, dim) = (vectors.rows, vectors.dim);
        if n == 0 || dim == 0 {
            return Err(invalid(format!(
                "vectors: an empty matrix of shape ({n}, {dim})"
            )));
        }
        let data = vectors.data().to_vec();
        if kind == "exact" {
            let inner = py.detach(|| BruteForceIndex::new(data, dim)).or_raise()?;
            return Ok(PyIndex {
                inner: Index::Exact(inner),
            });
        }
        if kind != "ann" {
            return Err(invalid(format!(
                "kind must be \"ann\" or \"exact\", got {kind:?}"
            )));
        }
        let setting = match (leaves_to_search, reorder) {
            (Some(l), Some(r)) => Setting::Fixed(SearchParams {
                leaves_to_search: l,
                reorder: r,
            }),
            (None, None) => Setting::Tuned {
                target_recall,
                queries: match tune_queries {
                    Some(q) => {
                        let q = Floats::matrix(q, "tune_queries")?;
                        if q.dim != dim {
                            return Err(invalid(format!(
                                "tune_queries have dimension {}, the vectors {dim}",
                                q.dim
                            )));
                        }
                        Some(q.data().to_vec())
                    }
                    None => None,
                },
            },
            _ => {
                return Err(invalid(
                    "leaves_to_search and reorder are given together (or neither, to tune)",
                ))
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let opts = BuildOptions {
            leaves,
            subspaces,
            anisotropic_threshold: anisotropic,
            kmeans_init: kmeans_init.parse::<KmeansInit>().map_err(invalid)?,
            seed,
            stop: Some(stop.clone()),
            ..BuildOptions::default()
        };
        // No events; the sender lives until the build ends, which is how the wait ends.
        let work = |_events: mpsc::Sender<()>| {
            AnnIndex::build_tuned(data, dim, &opts, setting, &mut |_| {})
        };
        let (inner, _) = interruptible(py, &stop, work, |_, ()| Ok(()))?.or_raise()?;
        Ok(PyIndex {
            inner: Index::Approximate(inner),
        })
    }

    /// Loads an index folder (from `Index.save` or `twotower index build`).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py
            .detach(|| Index::load(&path))
            .map_err(|e| crate::errors::reading(&path, e.into()))?;
        Ok(PyIndex { inner })
    }

    /// Writes the index folder `path` (replacing only an index folder, atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.save(&path)).or_raise()
    }

    /// The `k` best rows for `queries`: one query (shape `(dim,)`) gives `(ids, scores)` of
    /// shape `(k,)`; a batch (shape `(n, dim)`, searched on all cores) gives `(n, k)`, with
    /// `k` capped at the index's rows. Ids are row numbers, best first (-1 where an
    /// approximate search found fewer). Queries may be any array numpy converts to
    /// float32 (any memory order or real dtype); NaN or infinite values are refused.
    #[pyo3(signature = (queries, k = 10))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: usize,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        if k == 0 {
            return Err(invalid("k must be at least 1"));
        }
        let dim = self.inner.dim();
        let q = Floats::read(queries, "queries")?;
        if q.dim != dim {
            return Err(invalid(format!(
                "the queries have dimension {}, the index {dim}",
                q.dim
            )));
        }
        // The library caps k at the index's rows: the answer is that wide.
        let data = q.data();
        let (ids, scores) = py.detach(|| self.inner.search_table(data, k)).or_raise()?;
        let width = k.min(self.inner.len());
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        if q.one {
            return Ok((
                PyArray1::from_vec(py, ids).into_any(),
                PyArray1::from_vec(py, scores).into_any(),
            ));
        }
        Ok((
            Array2::from_shape_vec((q.rows, width), ids)
                .or_raise()?
                .into_pyarray(py)
                .into_any(),
            Array2::from_shape_vec((q.rows, width), scores)
                .or_raise()?
                .into_pyarray(py)
                .into_any(),
        ))
    }

    /// Number of rows.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The vectors' dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// `"exact"` or `"ann"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner {
            Index::Exact(_) => "exact",
            Index::Approximate(_) => "ann",
        }
    }

    /// An approximate index's search setting: `(leaves_to_search, reorder)`.
    #[getter]
    fn search_setting(&self) -> Option<(usize, usize)> {
        match &self.inner {
            Index::Approximate(a) => Some((a.params().leaves_to_search, a.params().reorder)),
            Index::Exact(_) => None,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<twotower.Index {} of {} vectors, dim {}>",
            self.kind(),
            self.inner.len(),
            self.inner.dim()
        )
    }
}
