//! The `reduction=` argument: one type, parsed in one place with one message, for the losses
//! (`"mean"`, `"sum"`, `"none"`), and for the gradients and accumulators, whose result is
//! reduced already or one number (`"mean"`, `"sum"`).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::args::describe;

/// How per-element losses are combined, as in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Sum divided by the number of elements (NaN for empty input, as in PyTorch), or by the
    /// weight for softmax cross-entropy with class indices.
    Mean,
    /// Sum of the losses (0.0 for empty input).
    Sum,
    /// One loss per element, returned as an array of the input's shape.
    None,
}

impl Reduction {
    /// What a loss accepts.
    pub const ANY: &'static [Reduction] = &[Reduction::Mean, Reduction::Sum, Reduction::None];
    /// What gradients (element-wise already) and accumulators (one number) accept.
    pub const SCALAR: &'static [Reduction] = &[Reduction::Mean, Reduction::Sum];

    /// The argument's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::None => "none",
        }
    }

    /// Reads `obj` as one of `allowed`: a value that is not a string is a `TypeError`, a
    /// string that is not allowed a `ValueError`, both with the message
    /// `'reduction' must be 'mean', 'sum' or 'none', got ...` listing what is allowed.
    pub fn parse(obj: &Bound<'_, PyAny>, allowed: &[Reduction]) -> PyResult<Self> {
        let must = || {
            let names: Vec<String> = allowed.iter().map(|r| format!("'{}'", r.name())).collect();
            match names.split_last() {
                Some((last, [])) => format!("'reduction' must be {last}"),
                Some((last, rest)) => format!("'reduction' must be {} or {last}", rest.join(", ")),
                None => "'reduction' accepts no value here".to_string(),
            }
        };
        let Ok(text) = obj.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "{}, got {}",
                must(),
                describe(obj)
            )));
        };
        let text = text.to_cow()?;
        match allowed.iter().find(|r| r.name() == text) {
            Some(&r) => Ok(r),
            None => Err(PyValueError::new_err(format!(
                "{}, got {}",
                must(),
                obj.repr()?
            ))),
        }
    }
}

/// `reduction=` of a loss: use as `#[pyo3(from_py_with = reduction)] reduction: Reduction`
/// (with a `text_signature` that shows the literal default, `reduction="mean"`).
pub fn reduction(obj: &Bound<'_, PyAny>) -> PyResult<Reduction> {
    Reduction::parse(obj, Reduction::ANY)
}

/// `reduction=` of a gradient or an accumulator: `"mean"` or `"sum"`.
pub fn scalar_reduction(obj: &Bound<'_, PyAny>) -> PyResult<Reduction> {
    Reduction::parse(obj, Reduction::SCALAR)
}

/// Checks `reduction` as the losses do and returns its spelling: the check of
/// `crossent.dask`, which has no second copy of it. Private.
#[pyfunction]
pub fn _reduction(reduction: &Bound<'_, PyAny>) -> PyResult<&'static str> {
    Reduction::parse(reduction, Reduction::ANY).map(Reduction::name)
}
