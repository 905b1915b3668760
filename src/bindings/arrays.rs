//! From Python objects to in-place array views: conversion, dtype checks, borrows, errors.
//!
//! An ndarray of a supported dtype, in native byte order and aligned, is read where it lies,
//! whatever its strides. Anything else NumPy can turn into one (lists, scalars, byte-swapped or
//! misaligned arrays) is converted once by NumPy first; that copy is the documented price of
//! such input.

use numpy::{
    Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyReadwriteArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The `numpy` module, imported once.
fn numpy_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("numpy")?.unbind()))
        .map(|m| m.bind(py))
}

/// `obj` as an ndarray that Rust can read in place: native byte order, aligned, strides that
/// are multiples of the item size. Converts (copies) only what is not already so.
pub fn ndarray<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    let py = obj.py();
    let arr = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => numpy_module(py)?
            .call_method1("asarray", (obj,))
            .map_err(|e| {
                PyTypeError::new_err(format!("'{arg}' could not be read as an array: {e}"))
            })?
            .cast_into::<PyUntypedArray>()?,
    };
    let dtype = arr.dtype();
    let itemsize = dtype.itemsize().max(1) as isize;
    let native = dtype.is_native_byteorder().unwrap_or(true);
    let aligned = arr.is_aligned() && arr.strides().iter().all(|s| s % itemsize == 0);
    if native && aligned {
        return Ok(arr);
    }
    // A fresh, aligned, C-contiguous copy in native byte order.
    let native_dtype = dtype.call_method1("newbyteorder", ("=",))?;
    let fresh = numpy_module(py)?.call_method1("array", (arr, native_dtype))?;
    Ok(fresh.cast_into::<PyUntypedArray>()?)
}

/// `obj` as an ndarray of element type `T`, converting (copying) other real dtypes. For small
/// parameter arrays (weights) where a conversion is cheap and expected.
pub fn ndarray_as<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let arr = ndarray(obj, arg)?;
    if is::<T>(&arr) {
        return Ok(arr);
    }
    let kind = arr.dtype().kind();
    if !matches!(kind, b'b' | b'i' | b'u' | b'f') {
        return Err(PyTypeError::new_err(format!(
            "'{arg}' must be a real-valued array, got dtype {}",
            dtype_name(&arr)
        )));
    }
    let py = obj.py();
    let converted = arr.call_method1("astype", (numpy::dtype::<T>(py),))?;
    Ok(converted.cast_into::<PyUntypedArray>()?)
}

/// The dtype's name for error messages (`float16`, `complex128`, `<U3`, ...).
pub fn dtype_name(arr: &Bound<'_, PyUntypedArray>) -> String {
    let dtype = arr.dtype();
    match dtype.getattr("name") {
        Ok(name) => name.to_string(),
        Err(_) => "?".into(),
    }
}

/// True if `arr` holds elements of type `E`.
pub fn is<E: Element>(arr: &Bound<'_, PyUntypedArray>) -> bool {
    arr.dtype().is_equiv_to(&numpy::dtype::<E>(arr.py()))
}

/// Formats a shape the NumPy way: `(3,)`, `(2, 4)`, `()`.
pub fn shape_str(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A read-only view of an array's elements where they lie. Holding it holds a shared borrow
/// of the array, which keeps writers from Rust (e.g. an overlapping `out`) away.
pub struct View<'py, E: Element> {
    _borrow: PyReadonlyArrayDyn<'py, E>,
    pub ptr: *const E,
    pub shape: Vec<usize>,
    /// Element strides, one per dimension of `shape`.
    pub strides: Vec<isize>,
}

impl<'py, E: Element> View<'py, E> {
    /// Views `arr`, which must hold `E` elements (see [`is`]) and come from [`ndarray`].
    pub fn new(arr: &Bound<'py, PyUntypedArray>, arg: &str) -> PyResult<Self> {
        let typed = arr.cast::<PyArrayDyn<E>>()?;
        let borrow = typed
            .try_readonly()
            .map_err(|e| PyValueError::new_err(format!("'{arg}' cannot be read: {e}")))?;
        let itemsize = std::mem::size_of::<E>() as isize;
        Ok(View {
            ptr: typed.data(),
            shape: arr.shape().to_vec(),
            strides: arr.strides().iter().map(|s| s / itemsize).collect(),
            _borrow: borrow,
        })
    }

    /// The strides with which this array reads as an array of `shape`, broadcasting by the
    /// NumPy rules (dimensions aligned on the right; size-1 or missing dimensions repeat).
    pub fn broadcast_strides(&self, shape: &[usize], arg: &str) -> PyResult<Vec<isize>> {
        let mismatch = || {
            PyValueError::new_err(format!(
                "'{arg}' of shape {} cannot be broadcast to shape {}",
                shape_str(&self.shape),
                shape_str(shape)
            ))
        };
        if self.shape.len() > shape.len() {
            return Err(mismatch());
        }
        let lead = shape.len() - self.shape.len();
        let mut strides = vec![0isize; shape.len()];
        for (d, (&extent, &stride)) in self.shape.iter().zip(&self.strides).enumerate() {
            match extent {
                e if e == shape[lead + d] => strides[lead + d] = stride,
                1 => {}
                _ => return Err(mismatch()),
            }
        }
        Ok(strides)
    }
}

/// A writable view of an output array where it lies; holds the array's exclusive borrow, so
/// an `out` sharing memory with any viewed input is refused.
pub struct ViewMut<'py, E: Element> {
    _borrow: PyReadwriteArrayDyn<'py, E>,
    pub ptr: *mut E,
    pub strides: Vec<isize>,
}

impl<'py, E: Element> ViewMut<'py, E> {
    /// Views `out` for writing: it must be an ndarray of dtype `E` and shape `shape`, writeable,
    /// aligned, not overlapping itself nor any array currently viewed.
    pub fn new(out: &Bound<'py, PyAny>, shape: &[usize], dtype_name_e: &str) -> PyResult<Self> {
        let arr = out.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "'out' must be a numpy.ndarray, got {}",
                out.get_type().name().map_or("?".into(), |n| n.to_string())
            ))
        })?;
        if !is::<E>(arr) {
            return Err(PyTypeError::new_err(format!(
                "'out' must have dtype {dtype_name_e}, got {}",
                dtype_name(arr)
            )));
        }
        if arr.shape() != shape {
            return Err(PyValueError::new_err(format!(
                "'out' must have shape {}, got {}",
                shape_str(shape),
                shape_str(arr.shape())
            )));
        }
        let itemsize = std::mem::size_of::<E>() as isize;
        let dtype_native = arr.dtype().is_native_byteorder().unwrap_or(true);
        if !arr.is_aligned() || !dtype_native || arr.strides().iter().any(|s| s % itemsize != 0) {
            return Err(PyValueError::new_err(
                "'out' must be aligned and in native byte order",
            ));
        }
        let strides: Vec<isize> = arr.strides().iter().map(|s| s / itemsize).collect();
        if overlaps_itself(shape, &strides) {
            return Err(PyValueError::new_err(
                "'out' must not have overlapping elements (e.g. a zero stride)",
            ));
        }
        let typed = arr.cast::<PyArrayDyn<E>>()?;
        let borrow = typed.try_readwrite().map_err(|e| match e {
            numpy::BorrowError::NotWriteable => PyValueError::new_err("'out' is read-only"),
            _ => PyValueError::new_err("'out' must not share memory with an input"),
        })?;
        Ok(ViewMut {
            ptr: typed.data(),
            strides,
            _borrow: borrow,
        })
    }
}

/// True if two different indices of `shape` may address the same element. Sufficient test:
/// with dimensions sorted by |stride|, each stride must exceed the span of all smaller ones.
pub fn overlaps_itself(shape: &[usize], strides: &[isize]) -> bool {
    let mut dims: Vec<(usize, usize)> = shape
        .iter()
        .zip(strides)
        .filter(|(&n, _)| n > 1)
        .map(|(&n, &s)| (s.unsigned_abs(), n))
        .collect();
    if shape.contains(&0) {
        return false;
    }
    dims.sort_unstable();
    let mut span = 0usize; // largest offset reachable by the smaller dimensions
    for (stride, n) in dims {
        if stride <= span {
            return true;
        }
        span += stride * (n - 1);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_overlap() {
        assert!(!overlaps_itself(&[3, 4], &[4, 1]));
        assert!(!overlaps_itself(&[3, 4], &[1, 3]));
        assert!(overlaps_itself(&[3, 4], &[0, 1]));
        assert!(overlaps_itself(&[3, 4], &[2, 1]));
        assert!(!overlaps_itself(&[1, 4], &[0, 1]));
        assert!(!overlaps_itself(&[0, 4], &[0, 1]));
        assert!(!overlaps_itself(&[5], &[-2]));
    }

    #[test]
    fn shapes_print_like_numpy() {
        assert_eq!(shape_str(&[]), "()");
        assert_eq!(shape_str(&[3]), "(3,)");
        assert_eq!(shape_str(&[2, 4]), "(2, 4)");
    }
}
