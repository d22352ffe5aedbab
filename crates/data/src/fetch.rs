//! Finding the data folder a command should read (`--data-dir`, `TWOTOWER_DATA_DIR`, the
//! download cache), and the MovieLens archives twotower knows how to fetch ([`REMOTES`]),
//! with the checksums each is verified by. The downloading itself is in
//! the `download` module, behind the `download` feature; without it a dataset
//! missing from disk is an error that says where to put it.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{DataError, Result};

/// Where MovieLens 100K is published.
pub const ML_100K_URL: &str = "https://files.grouplens.org/datasets/movielens/ml-100k.zip";

/// The environment variable that replaces the download address (a mirror).
pub const URL_ENV: &str = "TWOTOWER_ML100K_URL";

/// The environment variable that replaces `https://files.grouplens.org/datasets/movielens`
/// (a mirror holding the same archive names) for every dataset.
pub const MIRROR_ENV: &str = "TWOTOWER_MOVIELENS_MIRROR";

/// Where GroupLens publishes the MovieLens archives.
pub const GROUPLENS: &str = "https://files.grouplens.org/datasets/movielens";

/// How an archive is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// SHA-256 of named files after unpacking.
    Members(&'static [(&'static str, &'static str)]),
    /// Size in bytes and SHA-256 of the archive itself.
    Archive { bytes: u64, sha256: &'static str },
    /// The MD5 list `checksums.txt` inside the archive, covering every data file.
    ShippedMd5,
}

/// A downloadable MovieLens dataset.
#[derive(Debug, Clone, Copy)]
pub struct Remote {
    /// The `--dataset` name.
    pub name: &'static str,
    /// The archive's file name at GroupLens, and the folder it unpacks to (without `.zip`).
    pub folder: &'static str,
    pub check: Check,
}

/// The datasets `data fetch` knows. Archive digests: TensorFlow Datasets'
/// `url_checksums/movielens.txt`.
pub const REMOTES: [Remote; 6] = [
    Remote {
        name: "movielens-100k",
        folder: "ml-100k",
        check: Check::Members(&ML_100K_SHA256),
    },
    Remote {
        name: "movielens-1m",
        folder: "ml-1m",
        check: Check::Archive {
            bytes: 5_917_549,
            sha256: "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        },
    },
    Remote {
        name: "movielens-latest-small",
        folder: "ml-latest-small",
        check: Check::Archive {
            bytes: 978_202,
            sha256: "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        },
    },
    Remote {
        name: "movielens-20m",
        folder: "ml-20m",
        check: Check::Archive {
            bytes: 198_702_078,
            sha256: "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        },
    },
    Remote {
        name: "movielens-25m",
        folder: "ml-25m",
        check: Check::Archive {
            bytes: 261_978_986,
            sha256: "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        },
    },
    Remote {
        name: "movielens-32m",
        folder: "ml-32m",
        check: Check::ShippedMd5,
    },
];

impl Remote {
    /// The dataset called `name`.
    pub fn named(name: &str) -> Result<&'static Remote> {
        REMOTES.iter().find(|r| r.name == name).ok_or_else(|| {
            let known: Vec<&str> = REMOTES.iter().map(|r| r.name).collect();
            DataError::Invalid(format!(
                "unknown dataset {name:?}; downloadable: {}",
                known.join(", ")
            ))
        })
    }

    /// The largest archive accepted: its recorded size when there is one, else a bound well
    /// above the published archive's (a download that grows past it is stopped).
    pub fn max_archive_bytes(&self) -> u64 {
        match self.check {
            Check::Archive { bytes, .. } => bytes,
            Check::Members(_) => 32 << 20,
            Check::ShippedMd5 => 1 << 30,
        }
    }

    /// The most bytes its archive may unpack to: 8 times the archive's bound (MovieLens
    /// archives unpack to 3–5 times their size), so a zip bomb stops early.
    pub fn max_unpacked_bytes(&self) -> u64 {
        self.max_archive_bytes().saturating_mul(8)
    }

    /// The address to download from: a mirror if set, else GroupLens.
    pub fn url(&self) -> String {
        if self.name == "movielens-100k" {
            if let Ok(u) = std::env::var(URL_ENV) {
                return u;
            }
        }
        let base = std::env::var(MIRROR_ENV).unwrap_or_else(|_| GROUPLENS.to_string());
        format!("{}/{}.zip", base.trim_end_matches('/'), self.folder)
    }
}

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

/// The cache folder: `$XDG_CACHE_HOME/twotower` (or the platform's equivalent).
pub fn cache_dir() -> Result<PathBuf> {
    dirs::cache_dir()
        .map(|d| d.join("twotower"))
        .ok_or_else(|| DataError::Invalid("no cache folder on this system; use --data-dir".into()))
}

/// SHA-256 of a file, in lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    digest_file::<Sha256>(path)
}

/// A digest of a file, in lower-case hex.
fn digest_file<D: Digest>(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = D::new();
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

pub(crate) fn verify(dir: &Path) -> Result<()> {
    verify_members(dir, &ML_100K_SHA256)
}

fn verify_members(dir: &Path, members: &[(&str, &str)]) -> Result<()> {
    for &(name, expected) in members {
        let path = dir.join(name);
        let actual = sha256_file(&path)?;
        if actual != expected {
            return Err(DataError::Checksum {
                path,
                expected: format!("SHA-256 {expected}"),
                actual: format!("SHA-256 {actual}"),
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_dataset_downloads_from_grouplens_by_default() {
        for r in REMOTES {
            assert!(
                r.url().ends_with(&format!("/{}.zip", r.folder)),
                "{}",
                r.url()
            );
            assert!(DATASETS.iter().any(|d| d.0 == r.name && d.1 == r.folder));
        }
        assert!(Remote::named("movielens-csv").is_err());
    }
}
