//! The native half of the `twotower` Python package (`twotower._twotower`): data, training,
//! models and indexes over the workspace's libraries, numpy in and out. The Python half
//! (`twotower/__init__.py`) adds pandas input, tqdm progress and the documented signatures.

mod arrays;
mod data;
mod errors;
mod index;
mod interrupt;
mod model;

use pyo3::prelude::*;

#[pymodule]
fn _twotower(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<data::PyDataset>()?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<index::PyIndex>()?;
    m.add_function(wrap_pyfunction!(model::train, m)?)?;
    m.add_function(wrap_pyfunction!(model::evaluate, m)?)?;
    Ok(())
}
