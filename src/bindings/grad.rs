//! Python bindings of the gradient kernels ([`crate::kernels::grad`]).

use numpy::{Element, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{dtype_name, is, ndarray, ndarray_as, new_output, shape_str, View, ViewMut};
use super::reduction::reduction_arg;
use super::threads::{DETACH_MIN, PARALLEL_MIN};
use crate::kernels::float::{Bool, Float, Target};
use crate::kernels::grad::{self, LogitsGrad};
use crate::kernels::pool;
use crate::kernels::reduce::flags;
use crate::kernels::strided::{find_first, Layout, SendPtr};

/// Gradient and diagonal Hessian of binary cross-entropy with logits, per element.
///
/// For each element, with ``s = sigmoid(input)``, ``y = target``, ``w = weight`` and
/// ``c = pos_weight``::
///
///     grad = w * ((1 + (c - 1) * y) * s - c * y)        # = w * (s - y) without pos_weight
///     hess = w * (1 + (c - 1) * y) * s * (1 - s)
///
/// the first and second derivatives of
/// :func:`binary_cross_entropy_with_logits` with respect to each logit. This is what a custom
/// objective of XGBoost (``obj=``) or LightGBM (``objective=``) returns: two arrays of the
/// predictions' shape. ``s`` and ``1 - s`` are both computed from ``exp(-|x|)``, so the Hessian
/// keeps its relative accuracy for large logits instead of rounding to 0.
///
/// Parameters
/// ----------
/// input : array_like of float32 or float64
///     Logits (raw margins), any shape and layout (read in place).
/// target : array_like
///     Same shape: probabilities in [0, 1] or labels 0/1 (float32/float64, bool, uint8, int8,
///     int32, int64).
/// weight, pos_weight : array_like, optional
///     As in :func:`binary_cross_entropy_with_logits`, broadcast to ``input``'s shape.
/// reduction : {"sum", "mean"}
///     Derivatives of the summed loss (each element's own derivatives: what boosting wants),
///     or of the mean loss (divided by the element count, as ``loss.backward()`` after torch's
///     default ``reduction="mean"``).
/// out : tuple of two numpy.ndarray, optional
///     ``(grad, hess)`` arrays of ``input``'s dtype and shape to write into.
///
/// Returns
/// -------
/// (grad, hess) : tuple of numpy.ndarray
///     Arrays of ``input``'s shape and dtype.
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> x = np.array([0.0, 2.0, -1.0])
/// >>> y = np.array([1, 0, 1])
/// >>> grad, hess = crossent.binary_cross_entropy_with_logits_grad(x, y)
/// >>> grad.round(6)
/// array([-0.5     ,  0.880797, -0.731059])
/// >>> hess.round(6)
/// array([0.25    , 0.104994, 0.196612])
///
/// As a LightGBM objective (scikit-learn API): ``objective=lambda y, raw:
/// crossent.binary_cross_entropy_with_logits_grad(raw, y)``.
#[pyfunction]
#[pyo3(signature = (input, target, *, weight=None, pos_weight=None, reduction="sum", out=None))]
pub fn binary_cross_entropy_with_logits_grad<'py>(
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = reduction_arg)] reduction: &str,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let mean = match reduction {
        "sum" => false,
        "mean" => true,
        other => {
            return Err(PyValueError::new_err(format!(
                "'reduction' must be 'sum' or 'mean', got {other:?}"
            )))
        }
    };
    let args = Args {
        weight,
        pos_weight,
        mean,
        out,
    };
    let x = ndarray(input, "input")?;
    if is::<f32>(&x) {
        dispatch_target::<f32>(&x, target, &args)
    } else if is::<f64>(&x) {
        dispatch_target::<f64>(&x, target, &args)
    } else {
        Err(PyTypeError::new_err(format!(
            "'input' must be a float32 or float64 array, got dtype {}",
            dtype_name(&x)
        )))
    }
}

struct Args<'a, 'py> {
    weight: Option<&'a Bound<'py, PyAny>>,
    pos_weight: Option<&'a Bound<'py, PyAny>>,
    mean: bool,
    out: Option<&'a Bound<'py, PyAny>>,
}

fn dispatch_target<'py, T: Float + Element>(
    x: &Bound<'py, PyUntypedArray>,
    target: &Bound<'py, PyAny>,
    args: &Args<'_, 'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    let y = ndarray(target, "target")?;
    macro_rules! try_dtypes {
        ($($e:ty => $y:ty),*) => {$(
            if is::<$e>(&y) {
                return compute::<T, $e, $y>(x, &y, args);
            }
        )*};
    }
    try_dtypes!(f32 => f32, f64 => f64, bool => Bool, u8 => u8, i8 => i8, i32 => i32, i64 => i64);
    Err(PyTypeError::new_err(format!(
        "'target' must be a float32, float64, bool, uint8, int8, int32 or int64 array, \
         got dtype {}",
        dtype_name(&y)
    )))
}

/// A broadcast parameter (`weight`, `pos_weight`) read as `T`: (view keeping it borrowed,
/// pointer, strides); a constant 1 when absent.
type Param<'py, T> = (Option<View<'py, T>>, *const T, Vec<isize>);

fn param<'py, T: Float + Element>(
    obj: Option<&Bound<'py, PyAny>>,
    arg: &str,
    shape: &[usize],
) -> PyResult<Param<'py, T>> {
    match obj {
        None => Ok((None, T::one_ref(), vec![0; shape.len()])),
        Some(obj) => {
            let view = View::<T>::new(&ndarray_as::<T>(obj, arg)?, arg)?;
            let strides = view.broadcast_strides(shape, arg)?;
            let ptr = view.ptr;
            Ok((Some(view), ptr, strides))
        }
    }
}

/// The `(grad, hess)` output arrays: `out` when given (checked), fresh arrays otherwise.
fn outputs<'py, T: Float + Element>(
    x: &Bound<'py, PyUntypedArray>,
    shape: &[usize],
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let py = x.py();
    match out {
        Some(out) => {
            let pair = out.cast::<PyTuple>().map_err(|_| {
                PyTypeError::new_err("'out' must be a tuple (grad, hess) of two arrays")
            })?;
            if pair.len() != 2 {
                return Err(PyTypeError::new_err(
                    "'out' must be a tuple (grad, hess) of two arrays",
                ));
            }
            Ok((pair.get_item(0)?, pair.get_item(1)?))
        }
        None => {
            let fortran = x.is_fortran_contiguous() && !x.is_c_contiguous();
            // Uninitialised: the kernel writes every element before the arrays are returned
            // (they are dropped on error).
            let g = new_output::<T>(py, shape, fortran)?;
            let h = new_output::<T>(py, shape, fortran)?;
            Ok((g, h))
        }
    }
}

fn compute<'py, T: Float + Element, E: Element, Y: Target>(
    x: &Bound<'py, PyUntypedArray>,
    y: &Bound<'py, PyUntypedArray>,
    args: &Args<'_, 'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    const { assert!(std::mem::size_of::<E>() == std::mem::size_of::<Y>()) };
    let py = x.py();
    let xv = View::<T>::new(x, "input")?;
    let yv = View::<E>::new(y, "target")?;
    let shape = xv.shape.clone();
    if yv.shape != shape {
        return Err(PyValueError::new_err(format!(
            "'target' must have the same shape as 'input' {}, got {}",
            shape_str(&shape),
            shape_str(&yv.shape)
        )));
    }
    let (_w, w_ptr, w_strides) = param::<T>(args.weight, "weight", &shape)?;
    let (_pw, pw_ptr, pw_strides) = param::<T>(args.pos_weight, "pos_weight", &shape)?;
    let (g, h) = outputs::<T>(x, &shape, args.out)?;
    // Given outputs must not overlap the inputs nor each other (fresh ones cannot).
    let mut inputs = Vec::new();
    if args.out.is_some() {
        inputs.push(xv.operand("input"));
        inputs.push(yv.operand("target"));
        inputs.extend(_w.as_ref().map(|v| v.operand("weight")));
        inputs.extend(_pw.as_ref().map(|v| v.operand("pos_weight")));
    }
    let gv = ViewMut::<T>::new(&g, &shape, T::NAME, &inputs)?;
    if args.out.is_some() {
        inputs.push(gv.operand("out[0]"));
    }
    let hv = ViewMut::<T>::new(&h, &shape, T::NAME, &inputs)?;
    let n: usize = shape.iter().product();
    let scale = if args.mean {
        T::from_f64(1.0 / n as f64)
    } else {
        T::ONE
    };
    let ops = LogitsGrad {
        input: SendPtr::from_const(xv.ptr),
        target: SendPtr::from_const(yv.ptr as *const Y),
        weight: SendPtr::from_const(w_ptr),
        pos_weight: SendPtr::from_const(pw_ptr),
        grad: SendPtr(gv.ptr),
        hess: SendPtr(hv.ptr),
        scale,
        layout: Layout::new(
            &shape,
            [
                &xv.strides,
                &yv.strides,
                &w_strides,
                &pw_strides,
                &gv.strides,
                &hv.strides,
            ],
        ),
    };
    let work = move || {
        let pool = pool::pool_for(n, PARALLEL_MIN);
        // SAFETY: every pointer comes from a view alive (and borrowed) until this function
        // returns; the outputs are writeable, self-disjoint and disjoint from each other and
        // from the inputs (their exclusive borrows were granted).
        unsafe { grad::binary_cross_entropy_with_logits_grad(&ops, pool.as_deref()) }
    };
    let part = if n < DETACH_MIN {
        work()
    } else {
        py.detach(work)
    };
    if part.flags & flags::TARGET != 0 {
        // SAFETY: the view is alive and describes valid elements.
        let bad = unsafe {
            find_first(yv.ptr as *const Y, &shape, &yv.strides, |v: Y| {
                !v.in_range()
            })
        };
        let what = if Y::HARD {
            "labels 0 or 1"
        } else {
            "values in [0, 1]"
        };
        return Err(match bad {
            Some((index, v)) => PyValueError::new_err(format!(
                "'target' must hold {what}; found {v:?} at index {}",
                shape_str(&index)
            )),
            None => PyValueError::new_err(format!("'target' must hold {what}")),
        });
    }
    drop((gv, hv));
    PyTuple::new(py, [g, h])
}
