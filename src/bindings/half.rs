//! float16 and bfloat16 arrays, read and written in place as their bits.
//!
//! NumPy's `float16` is a float dtype of 2 bytes; `ml_dtypes.bfloat16` (the dtype JAX and
//! PyTorch exports use) is a user dtype NumPy knows only by its name (`kind 'V'`, 2 bytes). The
//! numpy crate has no element type for the latter without importing its package, so both are
//! viewed as `uint16` (a view of the same memory, no copy) and the kernels read the bits
//! ([`crate::kernels::half`]): widened exactly to float32 on load, results rounded to the
//! input's format (to nearest, ties to even, as `astype`) on store.

use numpy::{Element, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyImportError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;

use super::arrays::{dtype_name, new_output, Operand, ViewMut};
use crate::kernels::half::Half;
use crate::kernels::strided::{Dst, Store};
use crate::kernels::view;

/// The 16-bit float format `arr` holds, in native byte order; `None` for any other dtype.
pub fn half_of(arr: &Bound<'_, PyUntypedArray>) -> Option<Half> {
    let dtype = arr.dtype();
    if dtype.itemsize() != 2 || !dtype.is_native_byteorder().unwrap_or(true) {
        return None;
    }
    match dtype.kind() {
        b'f' => Some(Half::F16),
        b'V' if dtype
            .getattr("name")
            .is_ok_and(|n| n.eq("bfloat16").unwrap_or(false)) =>
        {
            Some(Half::Bf16)
        }
        _ => None,
    }
}

/// The bits of a 16-bit float array: the same memory, shape and strides, as `uint16` (a view,
/// never a copy).
pub fn bits<'py>(arr: &Bound<'py, PyUntypedArray>) -> PyResult<Bound<'py, PyUntypedArray>> {
    let view = arr.call_method1("view", (numpy::dtype::<u16>(arr.py()),))?;
    Ok(view.cast_into::<PyUntypedArray>()?)
}

/// Evaluates `$call`, in which `T` names the float type `$x` (an array from
/// [`super::arrays::ndarray`]) is computed in: float32 for float32, float16 and bfloat16 (read
/// in place, widened on load), float64 for float64; a `TypeError` naming the argument `$arg`
/// and the dtype received for any other dtype. The input dispatch of the functions whose
/// input is read through a [`super::operand::LoadView`].
macro_rules! with_input_precision {
    ($x:expr, $arg:expr, $call:expr) => {{
        let x: &::pyo3::Bound<'_, ::numpy::PyUntypedArray> = $x;
        if $crate::bindings::arrays::is::<f32>(x) || $crate::bindings::half::half_of(x).is_some() {
            type T = f32;
            $call
        } else if $crate::bindings::arrays::is::<f64>(x) {
            type T = f64;
            $call
        } else {
            Err(::pyo3::exceptions::PyTypeError::new_err(format!(
                "'{}' must be a float16, bfloat16, float32 or float64 array, got dtype {}",
                $arg,
                $crate::bindings::arrays::dtype_name(x)
            )))
        }
    }};
}

pub(crate) use with_input_precision;

/// An output array written as `T`: of dtype `T` itself, or a float16/bfloat16 array (viewed as
/// its bits) that each value is rounded to as it is written.
pub enum OutView<'py, T: Element> {
    Own(ViewMut<'py, T>),
    Half(ViewMut<'py, u16>, Half),
}

impl<'py, T: Element + Store> OutView<'py, T> {
    /// Views an output for writing, as [`ViewMut::output`] does: `out=` as the caller `given`
    /// it, checked in full, or an array this call allocated. With `half`, the output must
    /// hold that 16-bit format (`like` names its dtype in the error).
    pub fn output(
        out: &Bound<'py, PyAny>,
        given: bool,
        shape: &[usize],
        dtype_name_t: &str,
        half: Option<(Half, &Bound<'py, PyUntypedArray>)>,
        inputs: &[Operand<'_, 'py>],
    ) -> PyResult<Self> {
        let Some((half, like)) = half else {
            let view = ViewMut::output(out, given, shape, dtype_name_t, inputs)?;
            return Ok(OutView::Own(view));
        };
        let want = dtype_name(like);
        let arr = match out.cast::<PyUntypedArray>() {
            Ok(arr) if half_of(arr) == Some(half) => arr,
            Ok(arr) => {
                return Err(PyTypeError::new_err(format!(
                    "'out' must have dtype {want}, got {}",
                    dtype_name(arr)
                )))
            }
            // Not an ndarray: the typed view's own checks raise the error that says so.
            Err(_) => {
                return ViewMut::new(out, shape, &want, inputs).map(|v| OutView::Half(v, half))
            }
        };
        let view = ViewMut::<u16>::output(bits(arr)?.as_any(), given, shape, &want, inputs)?;
        Ok(OutView::Half(view, half))
    }

    /// This output as an operand of the overlap check of a second output.
    pub fn operand<'a>(&self, name: &'a str) -> Operand<'a, 'py> {
        match self {
            OutView::Own(v) => v.operand(name),
            OutView::Half(v, _) => v.operand(name),
        }
    }

    /// This output as the kernels see it, for as long as it is borrowed.
    pub fn kernel(&mut self) -> view::ViewMut<'_, T> {
        match self {
            OutView::Own(v) => v.kernel(),
            OutView::Half(v, half) => {
                let dst = Dst::half(v.ptr, *half);
                // SAFETY: as `ViewMut::kernel`: the bits view was checked (or allocated) as an
                // output of this shape, writeable, aligned, not overlapping itself nor an input,
                // and holds the write claim; `Dst::half` writes 2-byte elements, the `u16`s it
                // views, at its own strides.
                unsafe { view::ViewMut::new(dst, &v.strides) }
            }
        }
    }
}

/// A new, uninitialised output array of `shape` with `like`'s 16-bit float dtype (C order, or
/// Fortran order if `fortran`).
pub fn new_half_output<'py>(
    like: &Bound<'py, PyUntypedArray>,
    shape: &[usize],
    fortran: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let raw = new_output::<u16>(like.py(), shape, fortran)?;
    raw.call_method1("view", (like.dtype(),))
}

/// [`new_half_output`] of `like`'s shape, in its memory order (as `new_output_like`).
pub fn new_half_output_like<'py>(like: &Bound<'py, PyUntypedArray>) -> PyResult<Bound<'py, PyAny>> {
    let fortran = like.is_fortran_contiguous() && !like.is_c_contiguous();
    new_half_output(like, like.shape(), fortran)
}

/// A PyTorch CPU bfloat16 tensor as a bfloat16 ndarray over the same memory, or `None` for
/// any other object. NumPy cannot take such a tensor (`Tensor.numpy()` and its DLPack import
/// refuse bfloat16), so its bits are viewed as int16 (`tensor.view(torch.int16).numpy()`, no
/// copy) and re-viewed as `ml_dtypes.bfloat16`. What `numpy()` refuses for every other
/// tensor is refused here too, with its message: a tensor on another device (by `numpy()`
/// itself) and one that requires grad (checked first: the int16 view does not require grad).
pub fn torch_bfloat16<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    if !obj.hasattr("__dlpack__")? {
        return Ok(None);
    }
    let Ok(dtype) = obj.getattr("dtype") else {
        return Ok(None);
    };
    if !dtype.str()?.to_cow()?.eq("torch.bfloat16") {
        return Ok(None);
    }
    if obj.getattr("requires_grad")?.is_truthy()? {
        return Err(PyRuntimeError::new_err(
            "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() \
             instead.",
        ));
    }
    let py = obj.py();
    let int16 = py.import("torch")?.getattr("int16")?;
    let bits = obj.call_method1("view", (int16,))?.call_method0("numpy")?;
    let bfloat16 = match py.import("ml_dtypes") {
        Ok(module) => module.getattr("bfloat16")?,
        Err(e) if e.is_instance_of::<PyImportError>(py) => {
            let err = PyImportError::new_err(
                "a bfloat16 tensor is read as an ml_dtypes.bfloat16 array: install ml_dtypes \
                 (pip install ml_dtypes)",
            );
            err.set_cause(py, Some(e));
            return Err(err);
        }
        Err(e) => return Err(e),
    };
    Ok(Some(bits.call_method1("view", (bfloat16,))?))
}
