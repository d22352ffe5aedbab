//! Downloading MovieLens from GroupLens into a cache, with SHA-256 verification, and
//! finding the data folder a command should read (`--data-dir`, `TWOTOWER_DATA_DIR`, cache).
//!
//! Installation is all-or-nothing: the archive is unpacked into a temporary folder that is
//! renamed into place only after every checksum matches.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{DataError, Result};

/// Where MovieLens 100K is published.
pub const ML_100K_URL: &str = "https://files.grouplens.org/datasets/movielens/ml-100k.zip";

/// The environment variable that replaces the download address (a mirror).
pub const URL_ENV: &str = "TWOTOWER_ML100K_URL";

/// The environment variable naming a folder that holds `ml-100k/`.
pub const DATA_DIR_ENV: &str = "TWOTOWER_DATA_DIR";

/// SHA-256 of the unpacked files that matter, as published with the issue tracker.
pub const ML_100K_SHA256: [(&str, &str); 2] = [
    (
        "u.data",
        "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    ),
    (
        "u.item",
        "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    ),
];

/// Where a resolved data folder came from (printed so a user knows what was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirSource {
    Flag,
    Env,
    Cache,
    Downloaded,
}

/// The cache folder: `$XDG_CACHE_HOME/twotower` (or the platform's equivalent).
pub fn cache_dir() -> Result<PathBuf> {
    dirs::cache_dir()
        .map(|d| d.join("twotower"))
        .ok_or_else(|| DataError::Invalid("no cache folder on this system; use --data-dir".into()))
}

/// SHA-256 of a file, in lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn verify(dir: &Path) -> Result<()> {
    for (name, expected) in ML_100K_SHA256 {
        let path = dir.join(name);
        let actual = sha256_file(&path)?;
        if actual != expected {
            return Err(DataError::Checksum {
                path,
                expected: expected.into(),
                actual,
            });
        }
    }
    Ok(())
}

fn help_offline(url: &str, err: impl std::fmt::Display) -> DataError {
    DataError::Download(format!(
        "could not download {url}: {err}\n\
         No internet here? Point twotower at a local copy instead: pass --data-dir DIR or set \
         {DATA_DIR_ENV}=DIR, where DIR holds the unpacked ml-100k/ folder \
         (u.data, u.item, u1.base, ...)."
    ))
}

/// Downloads `url` (a copy of ml-100k.zip) and installs it as `cache/ml-100k`.
///
/// `progress(done, total)` is called as bytes arrive. Fails within seconds when there is no
/// network, with a message that says how to use a local copy.
pub fn fetch_movielens_100k(
    url: &str,
    cache: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf> {
    std::fs::create_dir_all(cache).map_err(|e| DataError::io(cache, e))?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(30))
        .build();
    let response = agent.get(url).call().map_err(|e| help_offline(url, e))?;
    let total = response
        .header("Content-Length")
        .and_then(|s| s.parse::<u64>().ok());
    let zip_path = cache.join(format!(".ml-100k.{}.zip.part", std::process::id()));
    let result = (|| {
        let mut out = std::fs::File::create(&zip_path).map_err(|e| DataError::io(&zip_path, e))?;
        let mut reader = response.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| help_offline(url, e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| DataError::io(&zip_path, e))?;
            done += n as u64;
            progress(done, total);
        }
        out.sync_all().map_err(|e| DataError::io(&zip_path, e))?;
        install_zip(&zip_path, cache)
    })();
    let _ = std::fs::remove_file(&zip_path);
    result
}

/// Unpacks an ml-100k zip into `cache/ml-100k`, verifying checksums before it is renamed
/// into place; on any failure nothing is left behind.
pub fn install_zip(zip_path: &Path, cache: &Path) -> Result<PathBuf> {
    let tmp = cache.join(format!(".ml-100k.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = unpack(zip_path, &tmp).and_then(|()| {
        let inner = tmp.join("ml-100k");
        let unpacked = if inner.is_dir() { inner } else { tmp.clone() };
        verify(&unpacked)?;
        let dest = cache.join("ml-100k");
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&unpacked, &dest).map_err(|e| DataError::io(&dest, e))?;
        Ok(dest)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn unpack(zip_path: &Path, into: &Path) -> Result<()> {
    let file = std::fs::File::open(zip_path).map_err(|e| DataError::io(zip_path, e))?;
    let bad = |e: zip::result::ZipError| DataError::Invalid(format!("{}: {e}", zip_path.display()));
    let mut archive = zip::ZipArchive::new(file).map_err(bad)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(bad)?;
        let Some(rel) = entry.enclosed_name() else {
            return Err(DataError::Invalid(format!(
                "{}: unsafe path {:?} in archive",
                zip_path.display(),
                entry.name()
            )));
        };
        let out = into.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&out).map_err(|e| DataError::io(&out, e))?;
            continue;
        }
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let mut f = std::fs::File::create(&out).map_err(|e| DataError::io(&out, e))?;
        std::io::copy(&mut entry, &mut f).map_err(|e| DataError::io(&out, e))?;
    }
    Ok(())
}

/// The MovieLens datasets `--dataset` names, with the folder each unpacks to.
/// `movielens-csv` is any folder in the CSV layout (e.g. written by `data synth`).
pub const DATASETS: [(&str, &str, &str); 7] = [
    ("movielens-100k", "ml-100k", "u.data"),
    ("movielens-1m", "ml-1m", "ratings.dat"),
    ("movielens-latest-small", "ml-latest-small", "ratings.csv"),
    ("movielens-20m", "ml-20m", "ratings.csv"),
    ("movielens-25m", "ml-25m", "ratings.csv"),
    ("movielens-32m", "ml-32m", "ratings.csv"),
    ("movielens-csv", "", "ratings.csv"),
];

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
    if name != "movielens-100k" {
        return Err(DataError::Invalid(format!(
            "{name} is not downloaded by this build (no verified checksum is known for it yet): \
             unpack {folder}.zip from GroupLens into DIR/{folder} and pass --data-dir DIR"
        )));
    }
    let url = std::env::var(URL_ENV).unwrap_or_else(|_| ML_100K_URL.to_string());
    let dir = fetch_movielens_100k(&url, &cache, progress)?;
    Ok((dir, DataDirSource::Downloaded))
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
    fn unreachable_server_fails_fast_with_help() {
        let cache = scratch("offline");
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let start = std::time::Instant::now();
        let err = fetch_movielens_100k("http://127.0.0.1:9/ml-100k.zip", &cache, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(
            err.contains("--data-dir") && err.contains(DATA_DIR_ENV),
            "{err}"
        );
        assert!(!cache.join("ml-100k").exists());
    }

    #[test]
    fn checksum_mismatch_keeps_nothing() {
        let cache = scratch("badsum");
        let zip_path = cache.join("x.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("ml-100k/u.data", opts).unwrap();
        w.write_all(b"1\t1\t1\t1\n").unwrap();
        w.start_file("ml-100k/u.item", opts).unwrap();
        w.write_all(b"tampered").unwrap();
        w.finish().unwrap();
        let err = install_zip(&zip_path, &cache).unwrap_err().to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("u.data"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("x.zip")]);
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
