//! The error type of the data layer: every failure names the file and, for bad content,
//! the line.

use std::path::PathBuf;

/// Errors raised while reading, fetching or splitting data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        /// The I/O error, in the message (not a source, so that a chain of
        /// errors does not print it twice).
        error: std::io::Error,
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
    #[error(transparent)]
    Folder(#[from] twotower_folder::FolderError),
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
            error: source,
        }
    }
}

/// Result alias of the data layer.
pub type Result<T> = std::result::Result<T, DataError>;

/// Longest value [`shown`] prints whole.
const SHOWN_CHARS: usize = 80;

/// A value from a file, flag or request as a message may show it: quoted, with control
/// characters escaped (so a file cannot drive the terminal) and cut after 80 characters
/// (so a 60 KB field does not flood it).
///
/// ```
/// use twotower_data::shown;
/// assert_eq!(shown("a\tb\u{1b}[2J"), r#""a\tb\u{1b}[2J""#);
/// assert!(shown(&"x".repeat(1000)).ends_with("… (1000 characters)"));
/// ```
pub fn shown(s: &str) -> String {
    let count = s.chars().count();
    let head: String = s.chars().take(SHOWN_CHARS).collect();
    if count <= SHOWN_CHARS {
        format!("{head:?}")
    } else {
        format!("{head:?}… ({count} characters)")
    }
}

/// [`shown`] without the quotes, for lists a message already brackets ("the header
/// (user, item)").
///
/// ```
/// use twotower_data::escaped;
/// assert_eq!(escaped("user, \u{7}item"), "user, \\u{7}item");
/// ```
pub fn escaped(s: &str) -> String {
    let count = s.chars().count();
    let mut out: String = s
        .chars()
        .take(SHOWN_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if count > SHOWN_CHARS {
        out.push_str(&format!("… ({count} characters)"));
    }
    out
}
