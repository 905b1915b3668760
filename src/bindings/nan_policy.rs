//! The `nan_policy=` argument (SciPy's): parsed in one place, with one message, into the
//! kernels' [`NanPolicy`].

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::args::describe;
use crate::kernels::nan::NanPolicy;

/// Reads `obj` as a NaN policy: a value that is not a string is a `TypeError`, a string
/// that names no policy a `ValueError`, both with the message
/// `'nan_policy' must be 'propagate', 'omit' or 'raise', got ...`. Use as
/// `#[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy` (with a `text_signature` that
/// shows the literal default, `nan_policy='propagate'`).
pub fn nan_policy(obj: &Bound<'_, PyAny>) -> PyResult<NanPolicy> {
    let must = "'nan_policy' must be 'propagate', 'omit' or 'raise'";
    let Ok(text) = obj.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "{must}, got {}",
            describe(obj)
        )));
    };
    match NanPolicy::from_name(&text.to_cow()?) {
        Some(policy) => Ok(policy),
        None => Err(PyValueError::new_err(format!(
            "{must}, got {}",
            obj.repr()?
        ))),
    }
}

/// What `nan_policy='raise'` says of a NaN it finds: the `what` of a
/// [`super::errors::domain_error`] (`'p' must hold <what>; found nan at index ...`).
pub const NO_NAN: &str = "no NaN (nan_policy='raise')";

/// Checks `nan_policy` as the functions do and returns its spelling: the check of
/// `crossent.dask`, which has no second copy of it. Private.
#[pyfunction]
pub fn _nan_policy(nan_policy: &Bound<'_, PyAny>) -> PyResult<&'static str> {
    self::nan_policy(nan_policy).map(NanPolicy::name)
}
