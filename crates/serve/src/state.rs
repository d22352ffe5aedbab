//! What the server holds: the loaded model with its exact indexes, and the metrics registry.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use twotower_index::{BruteForceIndex, Index};
use twotower_model::{Result, SavedModel};

use crate::metrics::HttpMetrics;

/// A model ready to answer: the saved folder plus the indexes built from it.
pub struct Loaded {
    pub saved: SavedModel,
    /// Exact dot-product index over the catalogue (recommendations).
    pub index: Index,
    /// The model folder's approximate index, when one was built (`approximate=true`).
    pub approximate: Option<Index>,
    /// Unit-length candidate vectors (similar movies by cosine).
    pub cosine: BruteForceIndex,
}

impl Loaded {
    /// Loads a model folder, builds its exact indexes and loads its approximate one.
    pub fn open(dir: &Path) -> Result<Self> {
        let saved = SavedModel::load(dir)?;
        let index = saved.model.exact_index();
        let cosine = saved.model.cosine_index();
        let approximate = saved.load_index(dir)?.map(Index::Approximate);
        Ok(Loaded {
            saved,
            index,
            approximate,
            cosine,
        })
    }
}

/// Shared by every request.
pub struct AppState {
    loaded: OnceLock<Arc<Loaded>>,
    pub metrics: HttpMetrics,
}

impl AppState {
    /// A state with no model yet (`/healthz` answers 503 until [`AppState::set_loaded`]).
    pub fn new() -> Self {
        AppState {
            loaded: OnceLock::new(),
            metrics: HttpMetrics::new(),
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
