//! Errors as Python exceptions: the message the command line prints (the whole chain of
//! causes), raised as `twotower.InvalidInputError` (a `ValueError`), or as
//! `twotower.NotFoundError` (a `FileNotFoundError`) when a file or folder is missing —
//! both subclasses of `twotower.Error`, defined in `twotower/_errors.py`.

use pyo3::prelude::*;

/// The result of a call that may raise.
pub type PyResult<T> = Result<T, PyErr>;

/// `e` as the exception of its kind, with the command line's message.
pub fn to_py(e: anyhow::Error) -> PyErr {
    let interrupted = matches!(
        e.downcast_ref::<twotower_model::ModelError>(),
        Some(twotower_model::ModelError::Interrupted)
    ) || matches!(
        e.downcast_ref::<twotower_index::IndexError>(),
        Some(twotower_index::IndexError::Interrupted)
    );
    if interrupted {
        return pyo3::exceptions::PyKeyboardInterrupt::new_err(format!("{e:#}"));
    }
    let class = if is_not_found(&e) {
        "NotFoundError"
    } else {
        "InvalidInputError"
    };
    raise(class, format!("{e:#}"))
}

/// `e`, raised while reading `path`: a `NotFoundError` when `path` does not exist (whatever
/// the library made of that), else the exception of its kind.
pub fn reading(path: &std::path::Path, e: anyhow::Error) -> PyErr {
    if !path.exists() {
        return raise("NotFoundError", format!("{e:#}"));
    }
    to_py(e)
}

/// An exception of class `class` (of `twotower._errors`) with `message`.
pub fn raise(class: &'static str, message: String) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("twotower._errors")
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.call1((message.clone(),)));
        match made {
            Ok(exc) => PyErr::from_value(exc),
            // The package is broken (its Python half missing): still say what went wrong.
            Err(_) => pyo3::exceptions::PyValueError::new_err(message),
        }
    })
}

/// A bad argument (named in `message`), as `InvalidInputError`.
pub fn invalid(message: impl Into<String>) -> PyErr {
    raise("InvalidInputError", message.into())
}

/// Whether a missing file or folder is what went wrong.
fn is_not_found(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::NotFound;
    e.chain().any(|cause| {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.kind() == NotFound;
        }
        if let Some(twotower_data::DataError::Io { error, .. }) = cause.downcast_ref() {
            return error.kind() == NotFound;
        }
        if let Some(twotower_model::ModelError::Io { error, .. }) = cause.downcast_ref() {
            return error.kind() == NotFound;
        }
        if let Some(twotower_model::ModelError::Data(twotower_data::DataError::Io {
            error, ..
        })) = cause.downcast_ref()
        {
            return error.kind() == NotFound;
        }
        if let Some(twotower_index::IndexError::Io { error, .. }) = cause.downcast_ref() {
            return error.kind() == NotFound;
        }
        false
    })
}

/// Turns any error of the Rust libraries into the exception of its kind.
pub trait OrRaise<T> {
    fn or_raise(self) -> PyResult<T>;
}

impl<T, E: Into<anyhow::Error>> OrRaise<T> for Result<T, E> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(|e| to_py(e.into()))
    }
}
