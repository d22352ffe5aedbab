//! Finding the folder a command reads a dataset from: `--data-dir`, else
//! `TWOTOWER_DATA_DIR`, else the download cache, downloading into it (with the `download`
//! feature) what is missing.

use std::path::{Path, PathBuf};

use crate::fetch::{cache_dir, verify, Remote, DATASETS, DATA_DIR_ENV};
use crate::{DataError, Result};

/// Where a resolved data folder came from (printed so a user knows what was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirSource {
    Flag,
    Env,
    Cache,
    Downloaded,
}

/// Finds the folder of dataset `name` (see [`DATASETS`]): under the flag's folder, then
/// under `TWOTOWER_DATA_DIR`, then in the cache (downloading MovieLens 100K into it when
/// missing). The flag or variable may also name the dataset folder itself.
pub fn resolve_data_dir(
    flag: Option<&Path>,
    name: &str,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(PathBuf, DataDirSource)> {
    let Some(&(_, folder, marker)) = DATASETS.iter().find(|d| d.0 == name) else {
        let known: Vec<&str> = DATASETS.iter().map(|d| d.0).collect();
        return Err(DataError::Invalid(format!(
            "unknown dataset {name:?}; known: {}",
            known.join(", ")
        )));
    };
    let given = flag
        .map(|p| (p.to_path_buf(), DataDirSource::Flag))
        .or_else(|| {
            std::env::var_os(DATA_DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(|v| (PathBuf::from(v), DataDirSource::Env))
        });
    if let Some((dir, source)) = given {
        for candidate in [dir.join(folder), dir.clone()] {
            if candidate.join(marker).is_file() {
                return Ok((candidate, source));
            }
        }
        let how = match source {
            DataDirSource::Env => format!("{DATA_DIR_ENV}={}", dir.display()),
            _ => format!("--data-dir {}", dir.display()),
        };
        return Err(DataError::Invalid(format!(
            "{how}: no {folder}/{marker} there; the folder must hold the unpacked {folder}/ folder"
        )));
    }
    let cache = cache_dir()?;
    let cached = cache.join(folder);
    if cached.join(marker).is_file() {
        if name == "movielens-100k" {
            verify(&cached)?;
        }
        return Ok((cached, DataDirSource::Cache));
    }
    let Ok(remote) = Remote::named(name) else {
        return Err(DataError::Invalid(format!(
            "{name} is a folder layout, not a download: pass --data-dir DIR with DIR holding \
             {marker}"
        )));
    };
    #[cfg(feature = "download")]
    {
        let dir = crate::download::fetch(remote, &remote.url(), &cache, progress)?;
        Ok((dir, DataDirSource::Downloaded))
    }
    #[cfg(not(feature = "download"))]
    {
        let _ = progress;
        Err(DataError::Invalid(format!(
            "{name} is not on disk and this build cannot download (it was built without the \
             `download` feature): pass --data-dir DIR or set {DATA_DIR_ENV}=DIR, with DIR \
             holding the unpacked {} folder",
            remote.folder
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tt-fetch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn data_dir_flag_must_hold_the_data() {
        let empty = scratch("noflag");
        let err = resolve_data_dir(Some(&empty), "movielens-100k", &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--data-dir") && err.contains("ml-100k"),
            "{err}"
        );
    }
}
