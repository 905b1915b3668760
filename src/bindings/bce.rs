//! Python bindings of binary cross-entropy: parse, dispatch on dtypes, convert. The driver
//! ([`crate::kernels::drive::bce`]) checks shapes and runs the kernels of [`crate::kernels::bce`].

use numpy::{Element, PyUntypedArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyFloat;

use super::arrays::{dtype_name, is, ndarray, new_output_like};
use super::arrow::stream_hook;
use super::binary::{with_target_dtype, BinaryOperands};
use super::errors::Reported;
use super::groups as grouped;
use super::half::{new_half_output_like, with_input_precision, OutView};
use super::nan_policy::nan_policy;
use super::reduction::{reduction, Reduction};
use super::threads::Gil;
use crate::kernels::bce::Kind;
use crate::kernels::drive;
use crate::kernels::float::{Bool, Float, Target};
use crate::kernels::nan::NanPolicy;
use crate::kernels::reduce::{flags, Partial};
use crate::kernels::strided::Load;

/// Binary cross-entropy between predicted probabilities and targets.
///
/// Each element's loss is ``-w * (y * max(log p, -100) + (1 - y) * max(log(1 - p), -100))``,
/// exactly as :func:`torch.nn.functional.binary_cross_entropy` defines it (``log(1 - p)`` is
/// computed as ``log1p(-p)``).
///
/// Parameters
/// ----------
/// input : array_like of float16, bfloat16, float32 or float64
///     Probabilities in [0, 1], any shape and layout (read in place, never copied; float16
///     and bfloat16, also PyTorch's, are computed in float32).
/// target : array_like
///     Same shape as ``input``: probabilities in [0, 1] (float16/bfloat16/float32/float64,
///     taken in ``input``'s precision), or hard labels 0/1 (bool, uint8, int8, int32, int64),
///     read natively without conversion.
/// weight : array_like, optional
///     Per-element weight, broadcast to ``input``'s shape (float16/bfloat16/float32/float64
///     read in place, in ``input``'s precision).
/// sample_weight : array_like, optional
///     scikit-learn's sample weights ``sw``, broadcast to ``input``'s shape and read in place
///     like ``weight``: each loss (already scaled by ``weight``) is multiplied by its ``sw``,
///     and ``"mean"`` becomes the weighted average ``sum(sw * loss) / sum(sw)``
///     (``numpy.average``; NaN when ``sum(sw)`` is 0). A negative weight raises
///     :class:`crossent.DomainError`; NaN propagates. See :doc:`/guide/sample-weight`.
/// reduction : {"mean", "sum", "none"}
///     ``"mean"`` divides the sum by the number of elements (NaN for empty input, as torch),
///     or by ``sum(sample_weight)``; ``"sum"`` returns the sum (0.0 for empty input);
///     ``"none"`` returns every element's loss.
/// out : numpy.ndarray, optional
///     With ``reduction="none"``: the array (``input``'s dtype and shape) to write into.
/// nan_policy : {"propagate", "omit", "raise"}, default "propagate"
///     What a NaN in any operand (``input``, a float ``target``, ``weight``,
///     ``pos_weight``, ``sample_weight``) does: ``"propagate"`` lets it into the result;
///     ``"omit"`` leaves each element with a NaN operand out of the sum, of the count the
///     mean divides by and of ``sum(sample_weight)`` (with ``"none"`` its loss is NaN);
///     ``"raise"`` raises :class:`crossent.DomainError` naming the first operand that holds
///     a NaN and its first position. Checked in the same single pass. With ``groups``, it
///     applies within each group (a group left with no element has a NaN mean).
///
/// Returns
/// -------
/// float or numpy.ndarray
///     A Python float (accumulated in float64, also for float32 input) for ``"mean"`` and
///     ``"sum"``; an array of ``input``'s shape and dtype for ``"none"``.
///
/// Raises ``ValueError`` for a probability or target outside [0, 1] (naming the first
/// position), mismatched shapes or an unknown reduction; ``TypeError`` for unsupported dtypes.
/// NaN propagates into the result unless ``nan_policy`` says otherwise (torch raises).
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> p = np.array([0.9, 0.2, 0.6], dtype=np.float32)
/// >>> y = np.array([True, False, True])
/// >>> round(crossent.binary_cross_entropy(p, y), 6)
/// 0.279777
/// >>> crossent.binary_cross_entropy(p, y, reduction="none").round(4)
/// array([0.1054, 0.2231, 0.5108], dtype=float32)
///
/// With ``sample_weight`` the mean is ``numpy.average`` of the losses (scikit-learn's):
///
/// >>> sw = np.array([1.0, 0.0, 3.0])
/// >>> losses = crossent.binary_cross_entropy(p, y, reduction="none").astype(float)
/// >>> bool(np.isclose(crossent.binary_cross_entropy(p, y, sample_weight=sw),
/// ...                 np.average(losses, weights=sw)))
/// True
///
/// ``nan_policy="omit"`` leaves out the elements holding a NaN, from the count too:
///
/// >>> q = np.array([0.9, np.nan, 0.6], dtype=np.float32)
/// >>> round(crossent.binary_cross_entropy(q, y, nan_policy="omit"), 6)
/// 0.308093
#[pyfunction]
#[pyo3(
    signature = (
        input, target, *, weight=None, sample_weight=None, reduction=Reduction::Mean, out=None,
        groups=None, n_groups=None, nan_policy=NanPolicy::Propagate
    ),
    text_signature = "(input, target, *, weight=None, sample_weight=None, reduction=\"mean\", \
                      out=None, groups=None, n_groups=None, nan_policy=\"propagate\")"
)]
#[allow(clippy::too_many_arguments)]
pub fn binary_cross_entropy<'py>(
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = reduction)] reduction: Reduction,
    out: Option<&Bound<'py, PyAny>>,
    groups: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = grouped::n_groups)] n_groups: Option<usize>,
    #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
) -> PyResult<Bound<'py, PyAny>> {
    let grouping = grouped::given(groups, n_groups)?;
    if grouping.is_some() {
        grouped::check_reduction(reduction, out)?;
    }
    stream_hook!(input.py(), "binary_cross_entropy", [input, target, weight, sample_weight, groups], {
        "input" => input, "target" => target, "weight" => weight,
        "sample_weight" => sample_weight, "reduction" => reduction.name(), "out" => out,
        "groups" => groups, "n_groups" => n_groups, "nan_policy" => nan_policy.name(),
    });
    if let Some(groups) = grouping {
        let args = grouped::BceArgs {
            kind: Kind::Probabilities,
            weight,
            pos_weight: None,
            sample_weight,
            nan: nan_policy,
        };
        return grouped::binary_cross_entropy(input, target, &args, reduction, out, &groups);
    }
    let args = Args {
        kind: Kind::Probabilities,
        weight,
        pos_weight: None,
        sample_weight,
        reduction,
        out,
        init: Partial::EMPTY,
        nan: nan_policy,
    };
    dispatch_input(input, target, &args)?.finish(input.py(), args.reduction)
}

/// Binary cross-entropy between logits and targets, computed without overflow.
///
/// Each element's loss is ``w * ((1 - y) * x - (1 + (c - 1) * y) * log_sigmoid(x))`` with
/// ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))``, exactly as
/// :func:`torch.nn.functional.binary_cross_entropy_with_logits` defines it; evaluated without
/// that formula's cancellation (its ``x`` terms cancel algebraically), so that for targets in
/// [0, 1] and ``pos_weight >= 0`` each loss is within 4 ulp of the exact loss of its inputs.
///
/// Parameters
/// ----------
/// input : array_like of float16, bfloat16, float32 or float64
///     Logits, any shape and layout (read in place, never copied; float16 and bfloat16 are
///     computed in float32).
/// target : array_like
///     Same shape as ``input``: probabilities (any float dtype; like PyTorch, any real value
///     is accepted, the loss being linear in ``y``), or hard labels 0/1 (bool, uint8, int8,
///     int32, int64).
/// weight : array_like, optional
///     Per-element weight ``w``, broadcast to ``input``'s shape.
/// pos_weight : array_like, optional
///     Weight ``c`` of the positive class, broadcast to ``input``'s shape (typically one
///     value per class, along the last axis).
/// sample_weight : array_like, optional
///     scikit-learn's sample weights, as in :func:`binary_cross_entropy`: ``"mean"`` is then
///     ``sum(sw * loss) / sum(sw)``.
/// reduction : {"mean", "sum", "none"}
///     As in :func:`binary_cross_entropy`.
/// out : numpy.ndarray, optional
///     With ``reduction="none"``: the array to write into.
/// nan_policy : {"propagate", "omit", "raise"}, default "propagate"
///     As in :func:`binary_cross_entropy`, ``pos_weight`` included among the operands:
///     ``"omit"`` leaves each element with a NaN operand out of the sum, of the count and
///     of ``sum(sample_weight)`` (of its group's, with ``groups``); ``"raise"`` names the
///     first operand holding a NaN.
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> x = np.array([2.0, -1.0, 0.5])
/// >>> y = np.array([1, 0, 1], dtype=np.uint8)
/// >>> round(crossent.binary_cross_entropy_with_logits(x, y), 6)
/// 0.304756
/// >>> round(crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0]), 6)
/// 0.505091
/// >>> sw = np.array([2.0, 1.0, 1.0])
/// >>> round(crossent.binary_cross_entropy_with_logits(x, y, sample_weight=sw), 6)
/// 0.260299
#[pyfunction]
#[pyo3(
    signature = (
        input, target, *, weight=None, pos_weight=None, sample_weight=None,
        reduction=Reduction::Mean, out=None, groups=None, n_groups=None,
        nan_policy=NanPolicy::Propagate
    ),
    text_signature = "(input, target, *, weight=None, pos_weight=None, sample_weight=None, \
                      reduction=\"mean\", out=None, groups=None, n_groups=None, \
                      nan_policy=\"propagate\")"
)]
#[allow(clippy::too_many_arguments)]
pub fn binary_cross_entropy_with_logits<'py>(
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = reduction)] reduction: Reduction,
    out: Option<&Bound<'py, PyAny>>,
    groups: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = grouped::n_groups)] n_groups: Option<usize>,
    #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
) -> PyResult<Bound<'py, PyAny>> {
    let grouping = grouped::given(groups, n_groups)?;
    if grouping.is_some() {
        grouped::check_reduction(reduction, out)?;
    }
    stream_hook!(input.py(), "binary_cross_entropy_with_logits",
                 [input, target, weight, sample_weight, groups], {
        "input" => input, "target" => target, "weight" => weight, "pos_weight" => pos_weight,
        "sample_weight" => sample_weight, "reduction" => reduction.name(), "out" => out,
        "groups" => groups, "n_groups" => n_groups, "nan_policy" => nan_policy.name(),
    });
    if let Some(groups) = grouping {
        let args = grouped::BceArgs {
            kind: Kind::Logits,
            weight,
            pos_weight,
            sample_weight,
            nan: nan_policy,
        };
        return grouped::binary_cross_entropy(input, target, &args, reduction, out, &groups);
    }
    let args = Args {
        kind: Kind::Logits,
        weight,
        pos_weight,
        sample_weight,
        reduction,
        out,
        init: Partial::EMPTY,
        nan: nan_policy,
    };
    dispatch_input(input, target, &args)?.finish(input.py(), args.reduction)
}

/// Folds the binary cross-entropy of one batch into `init`, the state of the batches before
/// it (see [`crate::kernels::reduce::reduce_from`]; with sample weights, their sum is added
/// to `weight`), under NaN policy `nan`. On a domain error the error is returned and nothing
/// is folded.
#[allow(clippy::too_many_arguments)]
pub fn fold<'py>(
    kind: Kind,
    nan: NanPolicy,
    init: Partial,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    sample_weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<Partial> {
    let args = Args {
        kind,
        weight,
        pos_weight,
        sample_weight,
        reduction: Reduction::Sum,
        out: None,
        init,
        nan,
    };
    Ok(dispatch_input(input, target, &args)?.part)
}

/// What one call computed: the reduction state, the per-element array for
/// `reduction="none"`, and whether the mean divides by the sample weights' sum.
struct Computed<'py> {
    part: Partial,
    out: Option<Bound<'py, PyAny>>,
    sample_weighted: bool,
}

impl<'py> Computed<'py> {
    fn finish(self, py: Python<'py>, reduction: Reduction) -> PyResult<Bound<'py, PyAny>> {
        Ok(match (reduction, self.out) {
            (Reduction::None, Some(out)) => out,
            (Reduction::Sum, _) => PyFloat::new(py, self.part.sum).into_any(),
            _ if self.sample_weighted => {
                PyFloat::new(py, self.part.sum / self.part.weight).into_any()
            }
            _ => PyFloat::new(py, self.part.sum / self.part.count as f64).into_any(),
        })
    }
}

/// The arguments besides `input` and `target`.
struct Args<'a, 'py> {
    kind: Kind,
    weight: Option<&'a Bound<'py, PyAny>>,
    pos_weight: Option<&'a Bound<'py, PyAny>>,
    sample_weight: Option<&'a Bound<'py, PyAny>>,
    reduction: Reduction,
    out: Option<&'a Bound<'py, PyAny>>,
    /// The state the reduction continues from ([`Partial::EMPTY`] for a plain call).
    init: Partial,
    nan: NanPolicy,
}

fn dispatch_input<'py>(
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    args: &Args<'_, 'py>,
) -> PyResult<Computed<'py>> {
    let x = ndarray(input, "input")?;
    with_input_precision!(&x, "input", dispatch_target::<T>(&x, target, args))
}

fn dispatch_target<'py, T: Float + Element + Reported>(
    x: &Bound<'py, PyUntypedArray>,
    target: &Bound<'py, PyAny>,
    args: &Args<'_, 'py>,
) -> PyResult<Computed<'py>> {
    let y = ndarray(target, "target")?;
    with_target_dtype!(&y, compute::<T, E, Y>(x, &y, args))
}

/// Runs the driver for input dtype `T` and target dtype `E` (read as `Y`).
fn compute<'py, T: Float + Element + Reported, E: Element, Y: Target + Load + Reported>(
    x: &Bound<'py, PyUntypedArray>,
    y: &Bound<'py, PyUntypedArray>,
    args: &Args<'_, 'py>,
) -> PyResult<Computed<'py>> {
    let py = x.py();
    let ops = BinaryOperands::<T, E>::new(x, y, args.weight, args.pos_weight, args.sample_weight)?;
    let given = args.out.is_some();
    // The output array and its view, held until the driver has run. A float16 or bfloat16
    // input gets an output of its own dtype, each loss rounded to it as it is written.
    let half = ops.x.half().map(|h| (h, x));
    let mut held: Option<(Bound<'py, PyAny>, OutView<'py, T>)> = None;
    let (slot, operands) = (&mut held, &ops);
    let call = drive::bce::Loss {
        kind: args.kind,
        init: args.init,
        nan: args.nan,
        operands: ops.kernel::<Y>(),
    };
    // Asked for once the driver has checked the shapes.
    let part = drive::bce::loss(
        &call,
        move |shape: &[usize]| {
            let array = match (args.reduction, args.out) {
                (Reduction::None, Some(out)) => out.clone(),
                // Uninitialised: the kernel writes every element before it is returned (it is
                // dropped on error).
                (Reduction::None, None) if half.is_some() => new_half_output_like(x)?,
                (Reduction::None, None) => new_output_like::<T>(x)?,
                (_, Some(_)) => {
                    return Err(PyValueError::new_err(
                        "'out' is only used with reduction='none'",
                    ))
                }
                (_, None) => return Ok(None),
            };
            // A fresh output cannot overlap anything; a given one must not overlap an input.
            let inputs = if given {
                operands.operands()
            } else {
                Vec::new()
            };
            let view = OutView::<T>::output(&array, given, shape, T::NAME, half, &inputs)?;
            let (_, view) = slot.insert((array, view));
            Ok(Some(view.kernel()))
        },
        &Gil(py),
    )?;
    if part.flags & flags::INPUT != 0 {
        return Err(ops.probability_error());
    }
    // Float targets of the logits form may be any real number, as in PyTorch (the loss is
    // linear in the target); labels must be 0 or 1, probabilities' targets in [0, 1].
    if part.flags & flags::TARGET != 0 && (args.kind == Kind::Probabilities || Y::HARD) {
        return Err(ops.target_error::<Y>());
    }
    if part.flags & flags::WEIGHT != 0 {
        return Err(ops.sample_weight_error());
    }
    // Every NaN operand makes the sum NaN: only then is there a NaN to look for.
    if args.nan == NanPolicy::Raise && part.sum.is_nan() {
        if let Some(e) = ops.nan_error::<Y>() {
            return Err(e);
        }
    }
    Ok(Computed {
        part,
        out: held.map(|(array, _)| array),
        sample_weighted: ops.sample_weighted(),
    })
}
