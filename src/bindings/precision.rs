//! The floating-point type a real-valued array is computed in, for the functions that
//! convert other real dtypes (the divergences, and the logits of softmax cross-entropy).

use numpy::{Element, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::arrays::{dtype_name, is};
use super::half::half_of;

/// The floating-point type a real-valued array is computed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    F32,
    F64,
}

/// float32 (and float16 and bfloat16, widened) → F32; float64, bool and integers → F64;
/// anything else is a `TypeError` naming `arg`.
pub fn precision(arr: &Bound<'_, PyUntypedArray>, arg: &str) -> PyResult<Precision> {
    let dtype = arr.dtype();
    if half_of(arr).is_some() {
        return Ok(Precision::F32);
    }
    match (dtype.kind(), dtype.itemsize()) {
        (b'f', 4) => Ok(Precision::F32),
        (b'f', 8) | (b'b' | b'i' | b'u', _) => Ok(Precision::F64),
        _ => Err(PyTypeError::new_err(format!(
            "'{arg}' must be an array of real numbers (float16, bfloat16, float32 and float64 \
             are read in place), got dtype {}",
            dtype_name(arr)
        ))),
    }
}

/// `arr` itself when it holds `T` or a 16-bit float (read in place by a
/// [`super::operand::LoadView`]), else a converted copy.
pub fn as_float_or_half<'py, T: Element>(
    arr: Bound<'py, PyUntypedArray>,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    if half_of(&arr).is_some() {
        return Ok(arr);
    }
    as_float::<T>(arr)
}

/// `arr` itself when it holds `T`, else a converted copy.
pub fn as_float<'py, T: Element>(
    arr: Bound<'py, PyUntypedArray>,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    if is::<T>(&arr) {
        return Ok(arr);
    }
    let converted = arr.call_method1("astype", (numpy::dtype::<T>(arr.py()),))?;
    Ok(converted.cast_into::<PyUntypedArray>()?)
}
