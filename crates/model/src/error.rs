//! The error type of the model layer.

use std::path::PathBuf;

/// Errors raised while configuring, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        /// The I/O error, in the message (not a source, so that a chain of
        /// errors does not print it twice).
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadModel { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Diverged(String),
    /// Training was stopped from outside (its budget's stop flag).
    #[error("interrupted")]
    Interrupted,
    /// A tower spec with a mistake, named by file and line.
    #[error("{0}")]
    Spec(String),
    /// A model and data (or an index) that do not belong together.
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Data(#[from] twotower_data::DataError),
    #[error(transparent)]
    Folder(#[from] twotower_folder::FolderError),
    #[error(transparent)]
    Index(#[from] twotower_index::IndexError),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            error: source,
        }
    }

    pub(crate) fn bad(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ModelError::BadModel {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result alias of the model layer.
pub type Result<T> = std::result::Result<T, ModelError>;
