//! The `reduction=` argument shared by the scalar-reducing losses.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

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

/// Reads the `reduction=` argument: use as `#[pyo3(from_py_with = reduction_arg)]
/// reduction: &str`. A value that is not a string is a `TypeError` whose message names the
/// argument (PyO3's own extraction error does not), and one of the known strings comes back as
/// a `'static` string so that the signature keeps its literal default (`reduction="mean"`).
pub fn reduction_arg(obj: &Bound<'_, PyAny>) -> PyResult<&'static str> {
    let Ok(value) = obj.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "'reduction' must be 'mean', 'sum' or 'none', got {} of type {}",
            obj.repr().map_or_else(|_| "?".into(), |r| r.to_string()),
            obj.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string()),
        )));
    };
    Ok(match Reduction::parse(&value.to_cow()?)? {
        Reduction::Mean => "mean",
        Reduction::Sum => "sum",
        Reduction::None => "none",
    })
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
