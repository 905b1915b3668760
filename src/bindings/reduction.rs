//! The `reduction=` argument shared by the scalar-reducing losses.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// How per-element losses are combined, as in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// One loss per element, returned as an array of the input's shape.
    None,
    /// Sum of the losses (0.0 for empty input).
    Sum,
    /// Sum divided by the number of elements (NaN for empty input, as in PyTorch).
    Mean,
}

impl Reduction {
    pub fn parse(value: &str) -> PyResult<Self> {
        match value {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            other => Err(PyValueError::new_err(format!(
                "'reduction' must be 'mean', 'sum' or 'none', got {other:?}"
            ))),
        }
    }
}
