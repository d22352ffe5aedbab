//! What the server holds: the loaded model with its exact indexes, the pool that runs heavy
//! work off the async threads, and the metrics registry.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;
use twotower_index::{BruteForceIndex, Index, Neighbor};
use twotower_model::feature_answer::{AnyModel, VisitorAnswer};
use twotower_model::towers::Catalogue;
use twotower_model::{IndexedModel, Result, TitleIndex};

use crate::metrics::HttpMetrics;

/// A model ready to answer: the saved folder plus the indexes built from it.
pub struct Loaded {
    /// The model folder being served, of either format.
    pub served: AnyModel,
    /// A feature model's known users, sorted (empty for id towers).
    users: Vec<u32>,
    /// Exact dot-product index over the catalogue (recommendations).
    pub index: Index,
    /// The model folder's approximate index, when one was built and is sound
    /// (`approximate=true`).
    pub approximate: Option<Index>,
    /// Unit-length candidate vectors (similar movies by cosine).
    pub cosine: BruteForceIndex,
    /// Title search and suggestions.
    pub titles: TitleIndex,
    /// What was wrong but did not stop the load (a damaged index or history), for the log.
    pub warnings: Vec<String>,
}

/// A user's training item (catalogue row) and its rating, where the model keeps one.
pub type Seen = (u32, Option<f32>);

impl Loaded {
    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        self.served.catalogue()
    }

    /// Operations to score `queries` queries against every catalogue row (an upper bound
    /// for the approximate index too), for [`Compute::run`].
    pub fn scan_flops(&self, queries: usize) -> f64 {
        queries as f64 * self.catalogue().len() as f64 * 2.0 * self.served.dim() as f64
    }

    /// A visitor described by item ids, oldest first, and user features (see
    /// `FeatureModel::recommend_history`); an id model has no history tower to read them.
    pub fn recommend_history(
        &self,
        index: &Index,
        ids: &[String],
        features: &[(String, String)],
        k: usize,
        exclude_given: bool,
    ) -> std::result::Result<VisitorAnswer, String> {
        match &self.served {
            AnyModel::Ids(_) => Err("this is an id model: its query tower reads no history; \
                 describe known users by `users`"
                .into()),
            AnyModel::Features(m) => m
                .model
                .recommend_history(index, ids, features, k, exclude_given)
                .map_err(|e| e.to_string()),
        }
    }

    /// The `k` rows closest in cosine to row `row`.
    pub fn similar(&self, row: usize, k: usize) -> Vec<Neighbor> {
        match &self.served {
            AnyModel::Ids(m) => m.model.similar(&self.cosine, row, k),
            AnyModel::Features(m) => m.model.similar(&self.cosine, row, k),
        }
    }

    /// A user the model knows, picked by `seed`.
    pub fn some_user(&self, seed: usize) -> Option<String> {
        match &self.served {
            AnyModel::Ids(m) => {
                let vocab = &m.model.query.vocab;
                (vocab.len() > 1).then(|| vocab.token(1 + seed % (vocab.len() - 1)).to_string())
            }
            AnyModel::Features(_) => {
                let users = &self.users;
                (!users.is_empty()).then(|| users[seed % users.len()].to_string())
            }
        }
    }

    /// `user`'s training items (`None`: not a user the model knows).
    pub fn history(&self, user: &str) -> Option<Vec<Seen>> {
        match &self.served {
            AnyModel::Ids(m) => {
                let idx = m.model.query.vocab.get(user)?;
                let (rows, ratings) = m.model.seen.of(idx);
                Some(
                    rows.iter()
                        .zip(ratings)
                        .map(|(&r, &x)| (r, Some(x)))
                        .collect(),
                )
            }
            AnyModel::Features(m) => {
                let id: u32 = user.parse().ok()?;
                self.users.binary_search(&id).ok()?;
                Some(
                    m.model
                        .data
                        .rows_of(id)
                        .into_iter()
                        .map(|r| (r, None))
                        .collect(),
                )
            }
        }
    }

    /// The model card and training curves, as `/v1/model` shows them.
    pub fn card(&self) -> (serde_json::Value, serde_json::Value) {
        let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
        match &self.served {
            AnyModel::Ids(m) => (
                json(serde_json::to_value(&m.card)),
                json(serde_json::to_value(&m.history)),
            ),
            AnyModel::Features(m) => (
                json(serde_json::to_value(&m.card)),
                json(serde_json::to_value(&m.history)),
            ),
        }
    }

    /// Loads a model folder of either format and builds its exact indexes. A damaged or
    /// foreign approximate index is left out with a warning (requests then search
    /// exactly), since the model itself is sound.
    pub fn open(dir: &Path) -> Result<Self> {
        let served = AnyModel::load(dir)?;
        let index = served.exact_index()?;
        let (cosine, found, users) = match &served {
            AnyModel::Ids(saved) => (
                saved.model.cosine_index(),
                saved.load_index(dir),
                Vec::new(),
            ),
            AnyModel::Features(saved) => (
                saved.model.cosine_index()?,
                saved.load_index(dir),
                saved.model.data.user_ids(),
            ),
        };
        let mut warnings = served.warnings().to_vec();
        let approximate = match found {
            Ok(a) => a.map(Index::Approximate),
            Err(e) => {
                warnings.push(format!(
                    "approximate index not used, searching exactly instead: {e}"
                ));
                None
            }
        };
        let titles = TitleIndex::new(&served.catalogue().titles);
        Ok(Loaded {
            served,
            users,
            index,
            approximate,
            cosine,
            titles,
            warnings,
        })
    }
}

/// Work below this many floating-point operations (about 50 µs on one core) runs on the
/// async thread that received the request: handing it to another thread would cost more
/// than doing it. One user against MovieLens 100K's 1,682 movies is about 0.2 million.
pub const INLINE_FLOPS: f64 = 1e6;

/// Heavy jobs waiting or running, per core, before a request is answered 503.
const QUEUE_PER_CORE: usize = 8;

/// Runs CPU-heavy request work on a pool of its own — one thread per core, each at a
/// lower scheduling priority (nice 10) than the async threads — so that `/healthz`,
/// `/metrics` and accepting connections never wait behind scoring: the kernel runs the
/// async threads first whenever they have work. The queue is bounded: past
/// `QUEUE_PER_CORE` jobs per core a request is refused (503) rather than left to wait.
/// Light work runs where it is (see `INLINE_FLOPS`).
pub struct Compute {
    pool: Option<rayon::ThreadPool>,
    queued: Arc<Semaphore>,
}

/// Lowers the calling thread's scheduling priority (Linux: nice is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread (`gettid`) with a plain value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

impl Compute {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .thread_name(|i| format!("compute-{i}"))
            .start_handler(|_| lower_priority())
            .build()
            .map_err(|e| tracing::warn!("no compute pool ({e}); scoring on the global pool"))
            .ok();
        Compute {
            pool,
            queued: Arc::new(Semaphore::new(cores * QUEUE_PER_CORE)),
        }
    }

    /// Runs `job`, which costs about `flops` operations: at once when that is below
    /// `INLINE_FLOPS`, else on the compute pool. `Err(Busy)` when the queue is full,
    /// `Err(Failed)` if the job panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        flops: f64,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> std::result::Result<T, ComputeError> {
        if flops <= INLINE_FLOPS {
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                .map_err(|_| ComputeError::Failed);
        }
        let permit = self
            .queued
            .clone()
            .try_acquire_owned()
            .map_err(|_| ComputeError::Busy)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work = move || {
            let _permit = permit;
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)));
        };
        match &self.pool {
            Some(pool) => pool.spawn(work),
            None => rayon::spawn(work),
        }
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(ComputeError::Failed),
        }
    }
}

/// Why the compute pool gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeError {
    /// The queue is full: the server is overloaded.
    Busy,
    /// The job panicked.
    Failed,
}

/// Shared by every request.
pub struct AppState {
    loaded: OnceLock<Arc<Loaded>>,
    pub metrics: Arc<HttpMetrics>,
    pub compute: Compute,
}

impl AppState {
    /// A state with no model yet (`/healthz` answers 503 until [`AppState::set_loaded`]).
    pub fn new() -> Self {
        AppState {
            loaded: OnceLock::new(),
            metrics: Arc::new(HttpMetrics::new()),
            compute: Compute::new(),
        }
    }

    /// Publishes the loaded model; later calls are ignored.
    pub fn set_loaded(&self, loaded: Loaded) {
        let _ = self.loaded.set(Arc::new(loaded));
    }

    /// The model, once loaded.
    pub fn loaded(&self) -> Option<Arc<Loaded>> {
        self.loaded.get().cloned()
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}
