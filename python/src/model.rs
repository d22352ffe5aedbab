//! Training, the trained model and evaluation from Python: `twotower.train` runs the same
//! [`TrainJob`] as `twotower train` (on a worker thread, the GIL released, Ctrl-C stopping
//! it before the next batch), and [`PyModel`] answers as the model folder's commands do.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use twotower_data::feature_table::{FeatureTable, Side};
use twotower_data::{SplitParams, SplitSpec};
use twotower_index::{Index, Neighbor};
use twotower_model::feature_answer::AnyModel;
use twotower_model::job::TrainJob;
use twotower_model::spec::TowersSpec;
use twotower_model::Metrics;

use crate::data::PyDataset;
use crate::errors::{invalid, OrRaise, PyResult};
use crate::interrupt::interruptible;

/// `value` as the Python object `json.loads` makes of it.
pub fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).or_raise()?;
    py.import("json")?.call_method1("loads", (text,))
}

/// Metrics as a dict with integer cut-offs: `factorized_top_k`, its ties-against guard,
/// `recall`, `ndcg` (each `{k: value}`), `test_interactions`, `test_users`.
fn metrics_to_py<'py>(py: Python<'py>, m: &Metrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("factorized_top_k", &m.factorized_top_k)?;
    d.set_item(
        "factorized_top_k_ties_against",
        &m.factorized_top_k_ties_against,
    )?;
    d.set_item("recall", &m.recall)?;
    d.set_item("ndcg", &m.ndcg)?;
    d.set_item("test_interactions", m.test_interactions)?;
    d.set_item("test_users", m.test_users)?;
    Ok(d)
}

/// The model's metrics with popularity's under `popularity`, as `train --json` and
/// `eval --json` print them.
fn both_to_py<'py>(
    py: Python<'py>,
    model: &Metrics,
    popularity: &Metrics,
) -> PyResult<Bound<'py, PyDict>> {
    let d = metrics_to_py(py, model)?;
    d.set_item("popularity", metrics_to_py(py, popularity)?)?;
    Ok(d)
}

/// The split `name` with its options (`test_fraction`, `split_seed`, `n`, `before`,
/// `cold_fraction`, `history`), as `--split` and its flags give it.
pub fn split_spec(name: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<SplitSpec> {
    let mut p = SplitParams::default();
    if let Some(options) = options {
        for (key, value) in options.iter() {
            let key: String = key.extract()?;
            if value.is_none() {
                continue;
            }
            match key.as_str() {
                "test_fraction" => p.test_fraction = value.extract()?,
                "split_seed" => p.seed = value.extract()?,
                "n" => p.n = value.extract()?,
                "before" => p.before = Some(value.extract()?),
                "cold_fraction" => p.cold_fraction = value.extract()?,
                "history" => p.history = value.extract()?,
                other => {
                    return Err(invalid(format!(
                        "unknown split option {other:?}; known: test_fraction, split_seed, n, \
                         before, cold_fraction, history"
                    )))
                }
            }
        }
    }
    SplitSpec::named(name, p)
        .map_err(|e| anyhow::Error::from(e).context(format!("split {name:?}")))
        .or_raise()
}

/// Ranked item ids and their scores, each of shape `(lists, k)`.
type Ranked<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// The trained model with the run's report (as `train --json` prints it).
type Trained = (AnyModel, serde_json::Value, Metrics, Metrics);

/// Runs `job` on `data` split by `spec` on a worker thread; the calling thread waits with
/// the GIL released, hands progress to `progress`, and on Ctrl-C (or an exception in
/// `progress`) raises the stop flag, waits for the worker and raises.
fn run_job(
    py: Python<'_>,
    job: &TrainJob,
    data: &PyDataset,
    spec: &SplitSpec,
    eval_every_epoch: bool,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<Trained> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let ml = (*data.inner).clone();
    let work = move |tx: mpsc::Sender<serde_json::Value>| -> anyhow::Result<Trained> {
        let start = Instant::now();
        let mut run = job.prepare(ml, spec)?;
        run.set_stop_flag(flag);
        run.fit(eval_every_epoch, &mut |e| {
            let _ = tx.send(serde_json::to_value(&e).unwrap_or_default());
        })?;
        let report = run.report(start.elapsed().as_secs_f64(), None)?;
        let json = serde_json::to_value(&report)?;
        let (metrics, popularity) = (report.metrics.clone(), report.popularity.clone());
        Ok((run.model(&report), json, metrics, popularity))
    };
    let on_event = |py: Python<'_>, event: serde_json::Value| match progress {
        Some(cb) => json_to_py(py, &event).and_then(|d| cb.call1((d,)).map(drop)),
        None => Ok(()),
    };
    interruptible(py, &stop, work, on_event)?.or_raise()
}

/// Trains a model (see `twotower.train` for the arguments).
#[pyfunction]
#[pyo3(signature = (data, preset, split, split_options = None, epochs = None, batch_size = None,
    dim = None, learning_rate = None, lr_decay = None, optimizer = None, negatives = None, temperature = None,
    l2 = None, seed = None, remove_accidental_hits = None, logq = None, logq_weight = None,
    als_iterations = None, als_regularization = None, als_alpha = None, als_reg_exponent = None,
    als_popularity_exponent = None, als_coarse_dim = None, als_coarse_weight = None,
    towers = None,
    user_features = None, item_features = None, timestamps = true, validation = None,
    eval_sample = None, eval_every_epoch = false, max_examples = None, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    data: &PyDataset,
    preset: &str,
    split: &str,
    split_options: Option<Bound<'_, PyDict>>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    dim: Option<usize>,
    learning_rate: Option<f32>,
    lr_decay: Option<String>,
    optimizer: Option<String>,
    negatives: Option<String>,
    temperature: Option<f32>,
    l2: Option<f32>,
    seed: Option<u64>,
    remove_accidental_hits: Option<bool>,
    logq: Option<bool>,
    logq_weight: Option<f32>,
    als_iterations: Option<usize>,
    als_regularization: Option<f32>,
    als_alpha: Option<f32>,
    als_reg_exponent: Option<f32>,
    als_popularity_exponent: Option<f32>,
    als_coarse_dim: Option<usize>,
    als_coarse_weight: Option<f32>,
    towers: Option<String>,
    user_features: Option<PathBuf>,
    item_features: Option<PathBuf>,
    timestamps: bool,
    validation: Option<f64>,
    eval_sample: Option<usize>,
    eval_every_epoch: bool,
    max_examples: Option<usize>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<PyModel> {
    if let Some(f) = validation {
        if !(f > 0.0 && f < 1.0) {
            return Err(invalid(format!(
                "validation must be a fraction between 0 and 1 (exclusive), got {f}"
            )));
        }
    }
    if eval_sample == Some(0) {
        return Err(invalid(
            "eval_sample must be at least 1 (the number of test interactions evaluated)",
        ));
    }
    let mut job = TrainJob::new(preset);
    job.overrides.epochs = epochs;
    job.overrides.batch_size = batch_size;
    job.overrides.embedding_dim = dim;
    job.overrides.learning_rate = learning_rate;
    job.overrides.lr_decay = lr_decay.map(|d| d.parse()).transpose().map_err(invalid)?;
    job.overrides.optimizer = optimizer.map(|o| o.parse()).transpose().map_err(invalid)?;
    job.overrides.negatives = negatives.map(|n| n.parse()).transpose().map_err(invalid)?;
    job.overrides.temperature = temperature;
    job.overrides.l2 = l2;
    job.overrides.seed = seed;
    job.overrides.remove_accidental_hits = remove_accidental_hits;
    job.overrides.logq_correction = logq;
    job.overrides.logq_weight = logq_weight;
    job.overrides.als_iterations = als_iterations;
    job.overrides.als_regularization = als_regularization;
    job.overrides.als_alpha = als_alpha;
    job.overrides.als_reg_exponent = als_reg_exponent;
    job.overrides.als_popularity_exponent = als_popularity_exponent;
    job.overrides.als_coarse_dim = als_coarse_dim;
    job.overrides.als_coarse_weight = als_coarse_weight;
    job.towers = towers.map(|t| tower_spec(&t)).transpose()?;
    job.timestamps = timestamps;
    job.validation = validation;
    job.eval_sample = eval_sample;
    job.max_examples = max_examples;
    job.check().or_raise()?;
    let read = |path: Option<PathBuf>, side| {
        path.map(|p| FeatureTable::read(&p, side, None))
            .transpose()
            .or_raise()
    };
    job.user_features = read(user_features, Side::User)?;
    job.item_features = read(item_features, Side::Item)?;
    let spec = split_spec(split, split_options.as_ref())?;
    let (model, report, metrics, popularity) =
        run_job(py, &job, data, &spec, eval_every_epoch, progress.as_ref())?;
    PyModel::new(model, Some(report), Some((metrics, popularity)))
}

/// A tower spec: a TOML file's path, or the TOML text itself.
fn tower_spec(text_or_path: &str) -> PyResult<TowersSpec> {
    let path = std::path::Path::new(text_or_path);
    if !text_or_path.contains('\n') && !text_or_path.contains('[') {
        return TowersSpec::read(path).or_raise();
    }
    TowersSpec::parse("towers", text_or_path).or_raise()
}

/// Both protocols of `model` on `split` of `data` (the catalogue must be the model's):
/// the model's metrics, popularity's under `popularity`.
#[pyfunction]
#[pyo3(signature = (model, data, split = "u1", split_options = None))]
pub fn evaluate<'py>(
    py: Python<'py>,
    model: &PyModel,
    data: &PyDataset,
    split: &str,
    split_options: Option<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = split_spec(split, split_options.as_ref())?;
    let ml = data.inner.clone();
    let (m, p) = py
        .detach(|| model.inner.evaluate(&ml, &spec, None))
        .or_raise()?;
    both_to_py(py, &m, &p)
}

/// A trained two-tower model: recommendations, similar items, the towers' vectors, and
/// saving to (or loading from) the model folders the command line reads and writes.
#[pyclass(module = "twotower._twotower", name = "Model", frozen)]
pub struct PyModel {
    inner: AnyModel,
    /// The training run's report (`train --json`), for a model trained in this process.
    report: Option<serde_json::Value>,
    /// The model's and popularity's test metrics.
    metrics: Option<(Metrics, Metrics)>,
    /// Catalogue ids as integers (the data's ids are integers).
    item_ids: Vec<i64>,
    index: OnceLock<Index>,
}

impl PyModel {
    fn new(
        inner: AnyModel,
        report: Option<serde_json::Value>,
        metrics: Option<(Metrics, Metrics)>,
    ) -> PyResult<Self> {
        let item_ids = inner
            .catalogue()
            .ids
            .iter()
            .map(|id| {
                id.parse::<i64>()
                    .map_err(|_| invalid(format!("item id {id:?} is not an integer")))
            })
            .collect::<PyResult<Vec<i64>>>()?;
        Ok(PyModel {
            inner,
            report,
            metrics,
            item_ids,
            index: OnceLock::new(),
        })
    }

    fn exact(&self) -> PyResult<&Index> {
        if let Some(i) = self.index.get() {
            return Ok(i);
        }
        let built = self.inner.exact_index().or_raise()?;
        Ok(self.index.get_or_init(|| built))
    }

    /// Ranked lists as `(ids, scores)` arrays of shape `(len(lists), k)`, `k` capped at the
    /// catalogue (as the library caps its answers): item ids (-1 where fewer than `k`
    /// exist) and scores (-inf there).
    fn table<'py>(
        &self,
        py: Python<'py>,
        lists: &[Vec<Neighbor>],
        k: usize,
    ) -> PyResult<Ranked<'py>> {
        let k = k.min(self.item_ids.len());
        let mut ids = vec![-1i64; lists.len() * k];
        let mut scores = vec![f32::NEG_INFINITY; lists.len() * k];
        for (r, list) in lists.iter().enumerate() {
            for (c, n) in list.iter().take(k).enumerate() {
                ids[r * k + c] = self.item_ids.get(n.id as usize).copied().unwrap_or(-1);
                scores[r * k + c] = n.score;
            }
        }
        Ok((
            Array2::from_shape_vec((lists.len(), k), ids)
                .or_raise()?
                .into_pyarray(py),
            Array2::from_shape_vec((lists.len(), k), scores)
                .or_raise()?
                .into_pyarray(py),
        ))
    }
}

/// `values` (a sequence or array of ids, or one id) as the strings the model keys by.
fn id_strings(values: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let one = |v: &Bound<'_, PyAny>| -> PyResult<String> {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(i.to_string());
        }
        if let Ok(s) = v.extract::<String>() {
            return Ok(s);
        }
        Err(invalid(format!(
            "{} is not an id (an integer or a string)",
            v.repr()?
        )))
    };
    if values.extract::<i64>().is_ok() || values.extract::<String>().is_ok() {
        return Ok(vec![one(values)?]);
    }
    values.try_iter()?.map(|v| one(&v?)).collect()
}

fn check_k(k: usize) -> PyResult<()> {
    if k == 0 {
        return Err(invalid("k must be at least 1"));
    }
    Ok(())
}

/// `v` as a float32 array of shape `(rows, dim)`, without copying.
fn matrix(
    py: Python<'_>,
    v: twotower_model::answer::Vectors,
) -> PyResult<Bound<'_, PyArray2<f32>>> {
    let rows = v.data.len() / v.dim.max(1);
    Ok(Array2::from_shape_vec((rows, v.dim), v.data)
        .or_raise()?
        .into_pyarray(py))
}

fn int_ids(ids: &[String]) -> PyResult<Vec<i64>> {
    ids.iter()
        .map(|id| {
            id.parse::<i64>()
                .map_err(|_| invalid(format!("id {id:?} is not an integer")))
        })
        .collect()
}

#[pymethods]
impl PyModel {
    /// Loads a model folder written by `twotower train --out` or `Model.save`.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| AnyModel::load(&path)).map_err(|e| {
            let e = anyhow::Error::from(e).context(format!("loading model {}", path.display()));
            crate::errors::reading(&path, e)
        })?;
        let metrics = serde_json::from_value::<Metrics>(inner.recorded_metrics()["model"].clone())
            .ok()
            .zip(
                serde_json::from_value::<Metrics>(inner.recorded_metrics()["popularity"].clone())
                    .ok(),
            );
        PyModel::new(inner, None, metrics)
    }

    /// Writes the model folder `path` (format 1 for id towers, 2 for feature towers);
    /// only ever replaces a model folder, atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.save(&path)).or_raise()
    }

    /// The top `k` items for each of `users` (ids), now: `(ids, scores)`, arrays of shape
    /// `(len(users), k)` (item ids, -1 where fewer than `k` exist). `exclude_seen` leaves
    /// out each user's training items.
    #[pyo3(signature = (users, k = 10, exclude_seen = false))]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        users: &Bound<'py, PyAny>,
        k: usize,
        exclude_seen: bool,
    ) -> PyResult<Ranked<'py>> {
        check_k(k)?;
        let users = id_strings(users)?;
        let index = self.exact()?;
        let recs = py
            .detach(|| self.inner.recommend(index, &users, k, exclude_seen))
            .or_raise()?;
        let unknown: Vec<&str> = users
            .iter()
            .zip(&recs)
            .filter(|(_, r)| !r.known_user)
            .map(|(u, _)| u.as_str())
            .collect();
        if !unknown.is_empty() {
            let shown: Vec<&str> = unknown.iter().take(5).copied().collect();
            let message = std::ffi::CString::new(format!(
                "{} of the {} users are not in the model (ids {}{}): their rows rank items \
                 for an unknown user, not for them",
                unknown.len(),
                users.len(),
                shown.join(", "),
                if unknown.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ))
            .unwrap_or_default();
            let category = py.get_type::<pyo3::exceptions::PyUserWarning>();
            PyErr::warn(py, &category, &message, 1)?;
        }
        let lists: Vec<Vec<Neighbor>> = recs.into_iter().map(|r| r.items).collect();
        self.table(py, &lists, k)
    }

    /// For each of `items` (ids or exact titles), the `k` items whose candidate vectors
    /// are closest by cosine, itself excluded: `(ids, scores)` of shape `(len(items), k)`.
    #[pyo3(signature = (items, k = 10))]
    fn similar<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        k: usize,
    ) -> PyResult<Ranked<'py>> {
        check_k(k)?;
        let catalogue = self.inner.catalogue();
        let rows = id_strings(items)?
            .iter()
            .map(|i| {
                catalogue.find(i).ok_or_else(|| {
                    invalid(format!(
                        "no item with id or title {}",
                        twotower_data::shown(i)
                    ))
                })
            })
            .collect::<PyResult<Vec<usize>>>()?;
        let lists = py.detach(|| self.inner.similar(&rows, k)).or_raise()?;
        self.table(py, &lists, k)
    }

    /// The query tower's vector of every user the model knows (rows in `user_ids()`
    /// order), float32 of shape `(users, dim)`.
    fn user_embeddings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let v = py.detach(|| self.inner.user_vectors()).or_raise()?;
        matrix(py, v)
    }

    /// The candidate tower's vector of every item (rows in `item_ids()` order), float32 of
    /// shape `(items, dim)`.
    fn item_embeddings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let v = py.detach(|| self.inner.item_vectors()).or_raise()?;
        matrix(py, v)
    }

    /// The ids of the rows of `user_embeddings()`.
    fn user_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, numpy::PyArray1<i64>>> {
        let v = py.detach(|| self.inner.user_vectors()).or_raise()?;
        Ok(int_ids(&v.ids)?.into_pyarray(py))
    }

    /// The ids of the rows of `item_embeddings()` (the catalogue, in order).
    fn item_ids<'py>(&self, py: Python<'py>) -> Bound<'py, numpy::PyArray1<i64>> {
        self.item_ids.clone().into_pyarray(py)
    }

    /// The items' titles, in `item_ids()` order.
    fn item_titles(&self) -> Vec<String> {
        self.inner.catalogue().titles.clone()
    }

    /// Test metrics of training: the model's (`factorized_top_k`, `recall`, `ndcg`, …,
    /// each `{k: value}`) and popularity's under `popularity`, as `train --json` gives
    /// them; `None` when the model folder does not record them.
    #[getter]
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.metrics
            .as_ref()
            .map(|(m, p)| both_to_py(py, m, p))
            .transpose()
    }

    /// One dict per epoch: loss, mean loss, seconds, examples per second (and metrics
    /// with `eval_every_epoch`).
    #[getter]
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for e in self.inner.history() {
            list.append(json_to_py(py, &serde_json::to_value(e).or_raise()?)?)?;
        }
        Ok(list)
    }

    /// The whole training report as `twotower train --json` prints it (a model trained in
    /// this process; `None` for a loaded one).
    #[getter]
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.report.as_ref().map(|r| json_to_py(py, r)).transpose()
    }

    /// The width of the towers' vectors.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// `"ids"` (format 1: id towers) or `"features"` (format 2: feature towers).
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner {
            AnyModel::Ids(_) => "ids",
            AnyModel::Features(_) => "features",
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<twotower.Model {} towers, {} items, dim {}>",
            self.kind(),
            self.item_ids.len(),
            self.inner.dim()
        )
    }
}
