//! Float arrays in from Python: whatever numpy converts to float32 — any memory order
//! (C, Fortran, strided views, `DataFrame.to_numpy()`), any integer, boolean or float
//! dtype, nested lists — copied to C order when it is not already, as FAISS and ScaNN
//! do. Complex, object and string arrays, other shapes and non-finite values are refused
//! with `InvalidInputError`; nothing is ever read in the wrong order.

use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{invalid, PyResult};

/// A C-ordered float32 array of one vector (`one`) or a matrix of `rows × dim`, checked
/// finite.
pub struct Floats<'py> {
    array: PyReadonlyArrayDyn<'py, f32>,
    pub rows: usize,
    pub dim: usize,
    /// True when the input was one vector (shape `(dim,)`).
    pub one: bool,
}

impl<'py> Floats<'py> {
    /// `obj` (named `what` in errors) as float32 in C order: a vector or a matrix.
    pub fn read(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        let py = obj.py();
        let np = py.import("numpy")?;
        let array = np
            .call_method1("asarray", (obj,))
            .map_err(|e| invalid(format!("{what}: not an array numpy can read ({e})")))?;
        let dtype = array.getattr("dtype")?;
        let kind: String = dtype.getattr("kind")?.extract()?;
        if !matches!(kind.as_str(), "b" | "i" | "u" | "f") {
            return Err(invalid(format!(
                "{what}: dtype {} is not a real number type (give float32, or any integer or \
                 float array numpy converts to it)",
                dtype.str()?
            )));
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", np.getattr("float32")?)?;
        let c = np.call_method("ascontiguousarray", (array,), Some(&kwargs))?;
        let array: PyReadonlyArrayDyn<'py, f32> = c
            .extract()
            .map_err(|_| invalid(format!("{what}: not convertible to a float32 array")))?;
        let (rows, dim, one) = match *array.shape() {
            [dim] => (1, dim, true),
            [rows, dim] => (rows, dim, false),
            ref other => {
                return Err(invalid(format!(
                    "{what}: expected shape (dim,) or (n, dim), got {other:?}"
                )))
            }
        };
        let floats = Floats {
            array,
            rows,
            dim,
            one,
        };
        if floats.array.as_slice().is_err() {
            return Err(invalid(format!(
                "{what}: numpy did not give a C-ordered copy"
            )));
        }
        if let Some(at) = floats.data().iter().position(|x| !x.is_finite()) {
            let value = floats.data()[at];
            return Err(invalid(format!(
                "{what}: row {}, column {} holds {value} (every value must be finite; as \
                 float32, values beyond ±3.4e38 are infinite)",
                at / dim.max(1),
                at % dim.max(1)
            )));
        }
        Ok(floats)
    }

    /// `obj` as a matrix (a single vector is refused).
    pub fn matrix(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        let m = Floats::read(obj, what)?;
        if m.one {
            return Err(invalid(format!(
                "{what}: expected a matrix of shape (n, dim), got a vector of {} values",
                m.dim
            )));
        }
        Ok(m)
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        // C order was checked when the array was read.
        self.array.as_slice().unwrap_or(&[])
    }
}
