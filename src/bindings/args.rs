//! Scalar keyword arguments, read so that a value of the wrong type is an error whose message
//! names the argument. (PyO3's own extraction errors say only "'str' object cannot be
//! interpreted as an integer", with the argument's name in a note that `str(err)` omits.)
//!
//! Use as `#[pyo3(from_py_with = args::axis)] axis: Option<isize>`.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBool;

/// The name of `obj`'s type, for messages (`?` if it has none that can be read).
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

/// `repr(obj)` and its type's name, for messages: `3 of type int`.
pub fn describe(obj: &Bound<'_, PyAny>) -> String {
    let repr = obj.repr().map_or_else(|_| "?".into(), |r| r.to_string());
    format!("{repr} of type {}", type_name(obj))
}

/// An integer argument (anything with `__index__`, such as a NumPy integer; not a bool).
fn int(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    let wrong = || {
        PyTypeError::new_err(format!(
            "'{name}' must be an integer, got {}",
            describe(obj)
        ))
    };
    if obj.is_instance_of::<PyBool>() {
        return Err(wrong());
    }
    obj.extract::<i64>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            PyValueError::new_err(format!("'{name}' is out of range: {obj}"))
        } else {
            wrong()
        }
    })
}

/// `axis=`: an integer or `None`.
pub fn axis(obj: &Bound<'_, PyAny>) -> PyResult<Option<isize>> {
    if obj.is_none() {
        return Ok(None);
    }
    let v = int(obj, "axis").map_err(|e| {
        if e.is_instance_of::<PyTypeError>(obj.py()) {
            PyTypeError::new_err(format!(
                "'axis' must be an integer or None, got {}",
                describe(obj)
            ))
        } else {
            e
        }
    })?;
    // Out of isize range is out of bounds for any array.
    Ok(Some(isize::try_from(v).unwrap_or(isize::MAX)))
}

/// `axis=` where it must be an integer (no `None`).
pub fn int_axis(obj: &Bound<'_, PyAny>) -> PyResult<isize> {
    let v = int(obj, "axis")?;
    Ok(isize::try_from(v).unwrap_or(isize::MAX))
}

/// A real number argument (int, float, NumPy scalar; not a bool, string or array).
fn real(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<f64> {
    let wrong = || {
        PyTypeError::new_err(format!(
            "'{name}' must be a real number, got {}",
            describe(obj)
        ))
    };
    // Not a bool (a flag passed by mistake), nor an array of several values (only 0-d ones
    // are numbers).
    let ndim = match obj.getattr("ndim") {
        Ok(n) => n.extract::<usize>().unwrap_or(1),
        Err(_) => 0,
    };
    if obj.is_instance_of::<PyBool>() || ndim != 0 {
        return Err(wrong());
    }
    obj.extract::<f64>().map_err(|_| wrong())
}

/// `base=`: a real number or `None` (its range is checked by the caller).
pub fn base(obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    if obj.is_none() {
        return Ok(None);
    }
    real(obj, "base").map(Some)
}

/// `label_smoothing=`: a real number (its range is checked by the caller).
pub fn label_smoothing(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    real(obj, "label_smoothing")
}

/// `ignore_index=`: an integer.
pub fn ignore_index(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    int(obj, "ignore_index")
}

/// A flag: `True` or `False` (a NumPy bool too; not an integer).
fn flag(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<bool> {
    obj.extract::<bool>().map_err(|_| {
        PyTypeError::new_err(format!(
            "'{name}' must be True or False, got {}",
            describe(obj)
        ))
    })
}

/// `normalize=`: `True` or `False`.
pub fn normalize(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    flag(obj, "normalize")
}

/// `keepdims=`: `True` or `False`.
pub fn keepdims(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    flag(obj, "keepdims")
}
