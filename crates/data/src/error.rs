//! The error type of the data layer: every failure names the file and, for bad content,
//! the line.

use std::path::PathBuf;

/// Errors raised while reading, fetching or splitting data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: row {row}: {message}")]
    Row {
        path: PathBuf,
        row: usize,
        message: String,
    },
    #[error("{path}: the file holds no records")]
    Empty { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error("download failed: {0}")]
    Download(String),
    #[error("{path}: checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of the data layer.
pub type Result<T> = std::result::Result<T, DataError>;
