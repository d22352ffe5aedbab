//! What the server holds: the loaded model with its exact indexes, the pool that runs heavy
//! work off the async threads, and the metrics registry.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;
use twotower_index::{BruteForceIndex, Index};
use twotower_model::{Result, SavedModel, TitleIndex};

use crate::metrics::HttpMetrics;

/// A model ready to answer: the saved folder plus the indexes built from it.
pub struct Loaded {
    pub saved: SavedModel,
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

impl Loaded {
    /// Operations to score `queries` queries against every catalogue row (an upper bound
    /// for the approximate index too), for [`Compute::run`].
    pub fn scan_flops(&self, queries: usize) -> f64 {
        let m = &self.saved.model;
        queries as f64 * m.catalogue.len() as f64 * 2.0 * m.dim() as f64
    }

    /// Loads a model folder and builds its exact indexes. A damaged or foreign approximate
    /// index is left out with a warning (requests then search exactly), since the model
    /// itself is sound.
    pub fn open(dir: &Path) -> Result<Self> {
        let saved = SavedModel::load(dir)?;
        let index = saved.model.exact_index();
        let cosine = saved.model.cosine_index();
        let titles = TitleIndex::new(&saved.model.catalogue.titles);
        let mut warnings = saved.warnings.clone();
        let approximate = match saved.load_index(dir) {
            Ok(a) => a.map(Index::Approximate),
            Err(e) => {
                warnings.push(format!(
                    "approximate index not used, searching exactly instead: {e}"
                ));
                None
            }
        };
        Ok(Loaded {
            saved,
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

/// Runs CPU-heavy request work on tokio's blocking threads, at most one job per core at a
/// time, so the async threads stay free for `/healthz`, `/metrics` and accepting
/// connections; light work runs where it is (see `INLINE_FLOPS`).
pub struct Compute {
    slots: Arc<Semaphore>,
}

impl Compute {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Compute {
            slots: Arc::new(Semaphore::new(cores)),
        }
    }

    /// Runs `job`, which costs about `flops` operations: at once when that is below
    /// `INLINE_FLOPS`, else on a blocking thread once a slot is free. `None` if it panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        flops: f64,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        if flops <= INLINE_FLOPS {
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).ok();
        }
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .ok()
    }
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
