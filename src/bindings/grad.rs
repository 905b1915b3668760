//! Python bindings of the gradient kernels ([`crate::kernels::grad`]).

use numpy::{Element, PyUntypedArray};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::args;
use super::arrays::{dtype_name, is, ndarray, new_output_like};
use super::arrow::stream_hook;
use super::binary::{with_target_dtype, BinaryOperands};
use super::errors::{domain_error, Reported};
use super::half::{new_half_output_like, with_input_precision, OutView};
use super::operand::LoadView;
use super::precision::{as_float, as_float_or_half, precision, Precision};
use super::reduction::{scalar_reduction, Reduction};
use super::softmax::{
    check_ignore_index_unused, check_smoothing, class_axis, class_weights, with_class_target,
};
use super::threads::Gil;
use crate::kernels::drive;
use crate::kernels::float::{Bool, Float, Target};
use crate::kernels::reduce::flags;
use crate::kernels::softmax::grad::ClassTarget;
use crate::kernels::strided::Load;

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
/// input : array_like of float16, bfloat16, float32 or float64
///     Logits (raw margins), any shape and layout (read in place; float16 and bfloat16 are
///     computed in float32, and the gradient and Hessian rounded to their dtype).
/// target : array_like
///     Same shape: probabilities (any float dtype, any real value as for the loss) or labels
///     0/1 (bool, uint8, int8, int32, int64).
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
#[pyo3(
    signature = (
        input, target, *, weight=None, pos_weight=None, reduction=Reduction::Sum, out=None
    ),
    text_signature = "(input, target, *, weight=None, pos_weight=None, reduction=\"sum\", \
                      out=None)"
)]
pub fn binary_cross_entropy_with_logits_grad<'py>(
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = scalar_reduction)] reduction: Reduction,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let mean = reduction == Reduction::Mean;
    stream_hook!(input.py(), "binary_cross_entropy_with_logits_grad", [input, target, weight], {
        "input" => input, "target" => target, "weight" => weight, "pos_weight" => pos_weight,
        "reduction" => reduction.name(), "out" => out,
    });
    let args = Args {
        weight,
        pos_weight,
        mean,
        out,
    };
    let x = ndarray(input, "input")?;
    with_input_precision!(&x, "input", dispatch_target::<T>(&x, target, &args))
}

struct Args<'a, 'py> {
    weight: Option<&'a Bound<'py, PyAny>>,
    pos_weight: Option<&'a Bound<'py, PyAny>>,
    mean: bool,
    out: Option<&'a Bound<'py, PyAny>>,
}

fn dispatch_target<'py, T: Float + Element + Reported>(
    x: &Bound<'py, PyUntypedArray>,
    target: &Bound<'py, PyAny>,
    args: &Args<'_, 'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    let y = ndarray(target, "target")?;
    with_target_dtype!(&y, compute::<T, E, Y>(x, &y, args))
}

/// The `(grad, hess)` output arrays: `out` when given (checked to be a pair), fresh ones of
/// `x`'s shape and memory order otherwise, of dtype `T` (of `x`'s own dtype when `half`, a
/// float16 or bfloat16 input). Fresh ones are uninitialised: the kernels write every element
/// before they are returned (they are dropped on error).
fn outputs<'py, T: Element>(
    x: &Bound<'py, PyUntypedArray>,
    out: Option<&Bound<'py, PyAny>>,
    half: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let Some(out) = out else {
        if half {
            return Ok((new_half_output_like(x)?, new_half_output_like(x)?));
        }
        return Ok((new_output_like::<T>(x)?, new_output_like::<T>(x)?));
    };
    let bad = || PyTypeError::new_err("'out' must be a tuple (grad, hess) of two arrays");
    let pair = out.cast::<PyTuple>().map_err(|_| bad())?;
    if pair.len() != 2 {
        return Err(bad());
    }
    Ok((pair.get_item(0)?, pair.get_item(1)?))
}

fn compute<'py, T: Float + Element + Reported, E: Element, Y: Target + Load + Reported>(
    x: &Bound<'py, PyUntypedArray>,
    y: &Bound<'py, PyUntypedArray>,
    args: &Args<'_, 'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    let py = x.py();
    let ops = BinaryOperands::<T, E>::new(x, y, args.weight, args.pos_weight, None)?;
    // A float16 or bfloat16 input gets outputs of its own dtype.
    let half = ops.x.half().map(|h| (h, x));
    let mut held = None;
    let (slot, operands) = (&mut held, &ops);
    let call = drive::bce::Grad {
        operands: ops.kernel::<Y>(),
        mean: args.mean,
    };
    let part = drive::bce::grad(
        &call,
        // Asked for once the driver has checked the shapes.
        move |shape: &[usize]| {
            let (g, h) = outputs::<T>(x, args.out, half.is_some())?;
            // Given outputs must not overlap the inputs nor each other (fresh ones cannot).
            let given = args.out.is_some();
            let mut inputs = if given {
                operands.operands()
            } else {
                Vec::new()
            };
            let gv = OutView::<T>::output(&g, given, shape, T::NAME, half, &inputs)?;
            if given {
                inputs.push(gv.operand("out[0]"));
            }
            let hv = OutView::<T>::output(&h, given, shape, T::NAME, half, &inputs)?;
            let (_, gv, hv) = slot.insert((PyTuple::new(py, [g, h])?, gv, hv));
            Ok((gv.kernel(), hv.kernel()))
        },
        &Gil(py),
    )?;
    // Float targets may be any real number, as for the loss; labels must be 0 or 1.
    if part.flags & flags::TARGET != 0 && Y::HARD {
        return Err(ops.target_error::<Y>());
    }
    // The driver asks for the outputs before it runs anything, so they are there.
    held.map(|(pair, _, _)| pair)
        .ok_or_else(|| PyRuntimeError::new_err("the gradient's outputs were not made"))
}

/// Gradient and diagonal Hessian of softmax cross-entropy with respect to the logits.
///
/// The derivatives of :func:`softmax_cross_entropy` (same arguments, same PyTorch semantics)
/// with respect to every logit. With ``p = softmax(logits)`` along ``axis``, class weights
/// ``w`` (sum ``W``), ``C`` classes and label smoothing ``eps``::
///
///     class index y:  grad = A * p - (1 - eps) * w[y] * onehot(y) - eps / C * w,
///                     A = (1 - eps) * w[y] + eps / C * W     (all 0 for an ignored row)
///     probabilities:  grad = A * p - w * t',  t' = (1 - eps) * t + eps / C,  A = sum(w * t')
///     both:           hess = A * p * (1 - p)      (the diagonal of the Hessian)
///
/// Arrays of ``logits``' shape and float dtype (bool and integer logits are converted to
/// float64, as by the loss; float16 and bfloat16 are computed in float32 and rounded to their
/// dtype): the shape XGBoost and LightGBM multi-class custom
/// objectives take (``(n_rows, n_classes)``). Each row's log-sum-exp is computed in a first
/// read of the row, the outputs in a second; the softmax is never stored.
///
/// Parameters
/// ----------
/// logits, target, axis, weight, ignore_index, label_smoothing
///     As in :func:`softmax_cross_entropy`.
/// reduction : {"sum", "mean"}
///     Derivatives of the summed loss, or of PyTorch's mean (divided by ``sum(w[y])`` over
///     the rows not ignored, or by the row count for probabilities).
/// out : tuple of two numpy.ndarray, optional
///     ``(grad, hess)`` arrays of ``logits``' dtype (float64 for bool and integer logits)
///     and shape to write into.
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
/// >>> grad, hess = crossent.softmax_cross_entropy_grad(logits, np.array([0, 2]))
/// >>> grad.round(4)
/// array([[-0.2144,  0.1753,  0.0391],
///        [ 0.0493,  0.0545, -0.1038]])
/// >>> hess.round(4)
/// array([[0.1684, 0.1446, 0.0376],
///        [0.0469, 0.0515, 0.093 ]])
#[pyfunction]
#[pyo3(
    signature = (
        logits, target, *, axis=-1, weight=None, ignore_index=-100, label_smoothing=0.0,
        reduction=Reduction::Sum, out=None
    ),
    text_signature = "(logits, target, *, axis=-1, weight=None, ignore_index=-100, \
                      label_smoothing=0.0, reduction=\"sum\", out=None)"
)]
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy_grad<'py>(
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::int_axis)] axis: isize,
    weight: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = args::ignore_index)] ignore_index: i64,
    #[pyo3(from_py_with = args::label_smoothing)] label_smoothing: f64,
    #[pyo3(from_py_with = scalar_reduction)] reduction: Reduction,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let mean = reduction == Reduction::Mean;
    check_smoothing(label_smoothing)?;
    stream_hook!(logits.py(), "softmax_cross_entropy_grad", [logits, target], {
        "logits" => logits, "target" => target, "axis" => axis, "weight" => weight,
        "ignore_index" => ignore_index, "label_smoothing" => label_smoothing,
        "reduction" => reduction.name(), "out" => out,
    });
    let args = SoftArgs {
        axis,
        weight,
        ignore_index,
        smoothing: label_smoothing,
        mean,
        out,
    };
    // Logits of other real dtypes are converted, as by the loss.
    let x = ndarray(logits, "logits")?;
    match precision(&x, "logits")? {
        Precision::F32 => softmax_target::<f32>(&as_float_or_half::<f32>(x)?, target, &args),
        Precision::F64 => softmax_target::<f64>(&as_float::<f64>(x)?, target, &args),
    }
}

struct SoftArgs<'a, 'py> {
    axis: isize,
    weight: Option<&'a Bound<'py, PyAny>>,
    ignore_index: i64,
    smoothing: f64,
    mean: bool,
    out: Option<&'a Bound<'py, PyAny>>,
}

fn softmax_target<'py, T: Float + Element + ClassTarget + Reported>(
    x: &Bound<'py, PyUntypedArray>,
    target: &Bound<'py, PyAny>,
    args: &SoftArgs<'_, 'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    let y = ndarray(target, "target")?;
    // Probabilities are read as `T` where they lie, in their own float dtype.
    with_class_target!(&y, L => softmax_compute::<T, L>(x, &y, args), {
        check_ignore_index_unused(args.ignore_index)?;
        softmax_compute::<T, T>(x, &y, args)
    })
}

fn softmax_compute<'py, T: Float + Element, Y: ClassTarget + Element + Reported>(
    x: &Bound<'py, PyUntypedArray>,
    y: &Bound<'py, PyUntypedArray>,
    args: &SoftArgs<'_, 'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    let py = x.py();
    let xv = LoadView::<T>::new(x, "logits")?;
    let yv = LoadView::<Y>::new(y, "target")?;
    // float16 or bfloat16 logits get outputs of their own dtype.
    let half = xv.half().map(|h| (h, x));
    let wv = class_weights::<T>(args.weight)?;
    let params = drive::softmax::Params {
        axis: args.axis,
        ignore_index: args.ignore_index,
        smoothing: args.smoothing,
    };
    let call = drive::softmax::Grad {
        logits: xv.kernel(),
        target: yv.kernel(),
        weight: wv.as_ref().map(LoadView::kernel),
        params,
        mean: args.mean,
    };
    let mut held = None;
    let slot = &mut held;
    let (xr, yr, wr) = (&xv, &yv, &wv);
    let part = drive::softmax::grad(
        &call,
        // Asked for once the driver has checked the shapes.
        move |shape: &[usize]| {
            let (g, h) = outputs::<T>(x, args.out, half.is_some())?;
            // Given outputs must not overlap the inputs nor each other (fresh ones cannot).
            let given = args.out.is_some();
            let mut inputs = Vec::new();
            if given {
                inputs.push(xr.operand("logits"));
                inputs.push(yr.operand("target"));
                inputs.extend(wr.as_ref().map(|v| v.operand("weight")));
            }
            let gv = OutView::<T>::output(&g, given, shape, T::NAME, half, &inputs)?;
            if given {
                inputs.push(gv.operand("out[0]"));
            }
            let hv = OutView::<T>::output(&h, given, shape, T::NAME, half, &inputs)?;
            let (_, gv, hv) = slot.insert((PyTuple::new(py, [g, h])?, gv, hv));
            Ok((gv.kernel(), hv.kernel()))
        },
        &Gil(py),
    )?;
    if part.flags & flags::TARGET != 0 {
        let classes = xv.shape()[class_axis(xv.shape(), args.axis)];
        let c = classes as i64;
        let ignore = args.ignore_index;
        let bad = yv.first_bad(|v: Y| {
            if Y::HARD {
                let i = v.index();
                i != ignore && !(0..c).contains(&i)
            } else {
                v.prob() < 0.0
            }
        });
        let what = if Y::HARD {
            format!("class indices in [0, {classes}) or ignore_index ({ignore})")
        } else {
            "non-negative class probabilities".to_string()
        };
        return Err(domain_error(py, "target", &what, bad));
    }
    // The driver asks for the outputs before it runs anything, so they are there.
    held.map(|(pair, _, _)| pair)
        .ok_or_else(|| PyRuntimeError::new_err("the gradient's outputs were not made"))
}
