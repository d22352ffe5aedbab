//! An index folder in one call: exact, or approximate with a given or tuned search
//! setting, checked against its destination before the work and summarised after it
//! (`Display` gives the lines `twotower index build` prints).
//!
//! ```
//! use twotower_index::build::{build_folder, Kind};
//! let dir = std::env::temp_dir().join(format!("twotower-build-doc-{}", std::process::id()));
//! let vectors: Vec<f32> = (0..50 * 4).map(|i| ((i * 7) % 13) as f32).collect();
//! let built = build_folder(vectors, 4, &dir, Kind::Exact, &mut |_| {}).unwrap();
//! assert!(built.to_string().starts_with("exact index of 50 vectors"));
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::{
    AnnIndex, BruteForceIndex, BuildOptions, IndexError, SearchParams, Setting, TuneReport,
};

/// Which index to build.
pub enum Kind {
    /// Every query against every vector.
    Exact,
    /// The approximate index with these options and this way of setting its search.
    Approximate(BuildOptions, Setting),
}

/// What [`build_folder`] wrote.
pub struct Built {
    pub out: PathBuf,
    pub vectors: usize,
    /// `None` for an exact index.
    pub approximate: Option<AnnSummary>,
}

/// The shape, size and search setting of a built approximate index.
pub struct AnnSummary {
    pub leaves: usize,
    pub subspaces: usize,
    pub index_bytes: usize,
    pub vector_bytes: usize,
    pub seconds: f64,
    pub params: SearchParams,
    pub tuned: Option<TuneReport>,
}

/// Builds an index over `vectors` (row-major, `dim` wide) and writes it to `out`, which is
/// refused first unless it may be replaced by an index folder (replaced atomically).
/// `progress` hears each stage of an approximate build.
pub fn build_folder(
    vectors: Vec<f32>,
    dim: usize,
    out: &Path,
    kind: Kind,
    progress: &mut dyn FnMut(&str),
) -> Result<Built, IndexError> {
    twotower_folder::check_replaceable(out, &crate::store::FOLDER)?;
    let start = Instant::now();
    let n = vectors.len() / dim.max(1);
    progress(&format!("indexing {n} vectors of dimension {dim}"));
    let (opts, setting) = match kind {
        Kind::Exact => {
            BruteForceIndex::new(vectors, dim)?.save(out)?;
            return Ok(Built {
                out: out.to_path_buf(),
                vectors: n,
                approximate: None,
            });
        }
        Kind::Approximate(opts, setting) => (opts, setting),
    };
    let (index, tuned) = AnnIndex::build_tuned(vectors, dim, &opts, setting, progress)?;
    index.save(out)?;
    Ok(Built {
        out: out.to_path_buf(),
        vectors: n,
        approximate: Some(AnnSummary {
            leaves: index.leaves(),
            subspaces: index.subspaces(),
            index_bytes: index.index_bytes(),
            vector_bytes: index.vector_bytes(),
            seconds: start.elapsed().as_secs_f64(),
            params: index.params(),
            tuned,
        }),
    })
}

impl fmt::Display for Built {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (out, n) = (self.out.display(), self.vectors);
        let Some(a) = &self.approximate else {
            return writeln!(f, "exact index of {n} vectors written to {out}");
        };
        writeln!(
            f,
            "approximate index written to {out}: {n} vectors, {} leaves, {} subspaces, {:.1} MB \
             (+{:.1} MB of vectors for re-ranking), built in {:.1} s",
            a.leaves,
            a.subspaces,
            a.index_bytes as f64 / 1e6,
            a.vector_bytes as f64 / 1e6,
            a.seconds
        )?;
        let p = a.params;
        match &a.tuned {
            Some(t) if t.reached => {
                writeln!(
                f,
                "search setting: {} leaves to search, re-rank {} (recall@10 {:.4} on {} tuning \
                 queries, {:.1} µs per query)",
                p.leaves_to_search, p.reorder, t.chosen.recall, t.queries, t.chosen.micros_per_query
            )
            }
            Some(t) => writeln!(
                f,
                "warning: no setting reached recall@10 {}; storing the most accurate one tried \
                 ({} leaves, re-rank {}: recall@10 {:.4})",
                t.target_recall, p.leaves_to_search, p.reorder, t.chosen.recall
            ),
            None => writeln!(
                f,
                "search setting: {} leaves to search, re-rank {} (as given)",
                p.leaves_to_search, p.reorder
            ),
        }
    }
}
