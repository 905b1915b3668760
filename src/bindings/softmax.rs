//! Python binding of softmax cross-entropy: parse, dispatch on dtypes, convert. The driver
//! ([`crate::kernels::drive::softmax`]) checks shapes along the class axis and runs the
//! kernels of [`crate::kernels::softmax`].

use numpy::{Element, PyUntypedArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyFloat;

use super::args;
use super::arrays::{ndarray, new_output, Operand, View};
use super::arrow::stream_hook;
use super::binary::sample_weight_error;
use super::errors::{domain_error, Reported};
use super::groups as grouped;
use super::half::{new_half_output, OutView};
use super::nan_policy::{nan_policy, NO_NAN};
use super::operand::LoadView;
use super::precision::{as_float, as_float_or_half, precision, Precision};
use super::reduction::{reduction, Reduction};
use super::threads::Gil;
use crate::kernels::drive;
use crate::kernels::float::Float;
use crate::kernels::nan::NanPolicy;
use crate::kernels::reduce::{flags, Partial};
use crate::kernels::softmax::Label;
use crate::kernels::strided::Load;

/// Cross-entropy between the softmax of ``logits`` and ``target``, as
/// :func:`torch.nn.functional.cross_entropy`.
///
/// With ``C`` classes along ``axis``, ``lse = log(sum(exp(x)))`` per row, class weights ``w``
/// (1 when absent) and label smoothing ``eps``, each row's loss is
/// ``(1 - eps) * w[y] * (lse - x[y]) + eps / C * sum(w * (lse - x))`` for a class index
/// ``y``, and ``sum(w * t' * (lse - x))`` with ``t' = (1 - eps) * t + eps / C`` for class
/// probabilities ``t``. The log-sum-exp is computed stably in one read of each row (online
/// maximum), never materialising the softmax.
///
/// Parameters
/// ----------
/// logits : array_like of float16, bfloat16, float32 or float64
///     Unnormalised scores, any shape and layout (read in place, never copied; float16 and
///     bfloat16 are computed in float32, with ``"none"`` results of their dtype).
/// target : array_like
///     Either class indices (int8, int16, int32, int64, uint8, uint16 or uint32) of
///     ``logits``' shape without ``axis``, or class probabilities (float) of ``logits``' shape,
///     read in place in ``logits``' precision.
/// axis : int, default -1
///     The class axis (PyTorch's dimension 1).
/// weight : array_like, optional
///     One weight per class (shape ``(C,)``).
/// ignore_index : int, default -100
///     Rows whose class index equals it contribute nothing, not even to the mean's
///     denominator. Class indices only: with class probabilities a value >= 0 raises
///     ``ValueError``, as in PyTorch.
/// label_smoothing : float, default 0.0
///     ``eps`` in [0, 1].
/// sample_weight : array_like, optional
///     scikit-learn's sample weights ``sw``, one per row: broadcast to the rows' shape
///     (``target``'s for class indices: ``logits``' shape without ``axis``), read in place
///     like ``weight``. Each row's loss (class weights included) is multiplied by its ``sw``,
///     and ``"mean"`` becomes ``sum(sw * loss) / sum(sw)`` over the rows not ignored
///     (``numpy.average``; NaN when that sum is 0), instead of PyTorch's denominator. A
///     negative weight raises :class:`crossent.DomainError`; NaN propagates. See
///     :doc:`/guide/sample-weight`.
/// reduction : {"mean", "sum", "none"}
///     ``"mean"`` is PyTorch's: for class indices the sum divided by the sum of ``w[y]`` over
///     the rows not ignored (NaN if there are none), for probabilities the sum divided by the
///     number of rows (with ``sample_weight``: by its sum, as above). ``"none"`` returns every
///     row's loss.
/// out : numpy.ndarray, optional
///     With ``reduction="none"``: the array (``logits``' dtype, the rows' shape) to write into.
/// keepdims : bool, default False
///     With ``reduction="none"``: ``True`` keeps the class axis with length 1, so that the
///     losses broadcast against ``logits`` (and ``out`` has that shape). With ``"mean"`` or
///     ``"sum"`` (a Python float, no axis left) or ``groups``, ``True`` raises ``ValueError``.
/// nan_policy : {"propagate", "omit", "raise"}, default "propagate"
///     What a NaN does: ``"propagate"`` makes its row's loss NaN (and so the mean);
///     ``"omit"`` leaves out each row whose logits, target probabilities or sample weight
///     hold a NaN, as an ``ignore_index`` row is left out: from the sum and from the mean's
///     denominator (``sum(weight[y])``, the row count or ``sum(sample_weight)``), its loss
///     being NaN with ``"none"`` (NaN class weights are parameters: they propagate);
///     ``"raise"`` raises :class:`crossent.DomainError` naming the first argument holding a
///     NaN (``logits``, ``target``, ``sample_weight``, ``weight``) and its first position.
///     Checked in the same single pass. With ``groups``, it applies within each group (a
///     group left with no row has a NaN mean).
///
/// Returns
/// -------
/// float or numpy.ndarray
///     A Python float (accumulated in float64) for ``"mean"`` and ``"sum"``; an array of the
///     rows' shape (with ``keepdims``: ``logits``' shape with the class axis of length 1) and
///     ``logits``' dtype for ``"none"``.
///
/// Notes
/// -----
/// A class index outside ``[0, C)`` (other than ``ignore_index``) raises ``ValueError`` naming
/// its position; so does a negative target probability. NaN in a row's logits makes that
/// row's loss NaN (and so the mean); ``+inf`` logits give NaN as in PyTorch, ``-inf`` logits
/// are classes of probability 0.
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
/// >>> labels = np.array([0, 2])
/// >>> round(crossent.softmax_cross_entropy(logits, labels), 6)
/// 0.175456
/// >>> crossent.softmax_cross_entropy(logits, labels, reduction="none").round(6)
/// array([0.241311, 0.109601])
/// >>> crossent.softmax_cross_entropy(logits, labels, reduction="none", keepdims=True).shape
/// (2, 1)
/// >>> round(crossent.softmax_cross_entropy(logits, labels, label_smoothing=0.1), 6)
/// 0.345456
///
/// With class weights, PyTorch's mean divides by ``sum(weight[y])``; with ``sample_weight``
/// the mean divides by ``sum(sample_weight)``:
///
/// >>> w = np.array([1.0, 2.0, 4.0])
/// >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w), 6)
/// 0.135943
/// >>> sw = np.array([1.0, 1.0])
/// >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w, sample_weight=sw), 6)
/// 0.339859
///
/// ``nan_policy="omit"`` leaves out a row holding a NaN, as an ignored row:
///
/// >>> bad = np.array([[2.0, 0.5, -1.0], [0.1, np.nan, 3.0]])
/// >>> round(crossent.softmax_cross_entropy(bad, labels, nan_policy="omit"), 6)
/// 0.241311
#[pyfunction]
#[pyo3(
    signature = (
        logits, target, *, axis=-1, weight=None, sample_weight=None, ignore_index=-100,
        label_smoothing=0.0, reduction=Reduction::Mean, out=None, groups=None, n_groups=None,
        keepdims=false, nan_policy=NanPolicy::Propagate
    ),
    text_signature = "(logits, target, *, axis=-1, weight=None, sample_weight=None, \
                      ignore_index=-100, label_smoothing=0.0, reduction=\"mean\", out=None, \
                      groups=None, n_groups=None, keepdims=False, nan_policy=\"propagate\")"
)]
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy<'py>(
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::int_axis)] axis: isize,
    weight: Option<&Bound<'py, PyAny>>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = args::ignore_index)] ignore_index: i64,
    #[pyo3(from_py_with = args::label_smoothing)] label_smoothing: f64,
    #[pyo3(from_py_with = reduction)] reduction: Reduction,
    out: Option<&Bound<'py, PyAny>>,
    groups: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = grouped::n_groups)] n_groups: Option<usize>,
    #[pyo3(from_py_with = args::keepdims)] keepdims: bool,
    #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
) -> PyResult<Bound<'py, PyAny>> {
    if keepdims && (reduction != Reduction::None || groups.is_some()) {
        return Err(PyValueError::new_err(
            "'keepdims' is only used with reduction='none' and no 'groups' (a mean or sum is \
             a Python float, with no axis to keep)",
        ));
    }
    let grouping = grouped::given(groups, n_groups)?;
    if grouping.is_some() {
        check_smoothing(label_smoothing)?;
        grouped::check_reduction(reduction, out)?;
    }
    stream_hook!(logits.py(), "softmax_cross_entropy", [logits, target, sample_weight, groups], {
        "logits" => logits, "target" => target, "axis" => axis, "weight" => weight,
        "sample_weight" => sample_weight, "ignore_index" => ignore_index,
        "label_smoothing" => label_smoothing, "reduction" => reduction.name(), "out" => out,
        "keepdims" => keepdims, "groups" => groups, "n_groups" => n_groups,
        "nan_policy" => nan_policy.name(),
    });
    if let Some(groups) = grouping {
        let params = Params {
            axis,
            weight,
            ignore_index,
            smoothing: label_smoothing,
            nan: nan_policy,
        };
        return grouped::softmax_cross_entropy(
            logits,
            target,
            &params,
            sample_weight,
            reduction,
            out,
            &groups,
        );
    }
    check_smoothing(label_smoothing)?;
    if out.is_some() && reduction != Reduction::None {
        return Err(PyValueError::new_err(
            "'out' is only used with reduction='none'",
        ));
    }
    let args = Args {
        params: Params {
            axis,
            weight,
            ignore_index,
            smoothing: label_smoothing,
            nan: nan_policy,
        },
        sample_weight,
        reduction,
        out,
        keepdims,
        init: Partial::EMPTY,
    };
    let py = logits.py();
    let (part, out) = dispatch_logits(logits, target, &args)?;
    Ok(match reduction {
        Reduction::None => out.expect("allocated for reduction='none'"),
        Reduction::Sum => PyFloat::new(py, part.sum).into_any(),
        Reduction::Mean => PyFloat::new(py, part.sum / part.weight).into_any(),
    })
}

/// `label_smoothing` must lie in [0, 1] (NaN does not).
pub fn check_smoothing(label_smoothing: f64) -> PyResult<()> {
    if (0.0..=1.0).contains(&label_smoothing) {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "'label_smoothing' must be between 0.0 and 1.0, got {label_smoothing}"
        )))
    }
}

/// With class probabilities as the target no row has a class index to ignore: an
/// `ignore_index` that could name a class (>= 0) is a `ValueError`, as PyTorch raises
/// ("ignore_index is not supported for floating point target"), rather than silently unused.
/// Negative values (the default -100) name no class and pass, as in PyTorch.
pub fn check_ignore_index_unused(ignore_index: i64) -> PyResult<()> {
    if ignore_index < 0 {
        return Ok(());
    }
    Err(PyValueError::new_err(format!(
        "'ignore_index' ({ignore_index}) cannot be used with class probabilities as 'target': \
         no row has a class index to ignore (PyTorch raises too); leave it at its default \
         (-100) or give class indices"
    )))
}

/// The parameters of softmax cross-entropy besides the operands, fixed across the batches of
/// an accumulator.
pub struct Params<'a, 'py> {
    pub axis: isize,
    /// Class weights (any real dtype; read as the logits' dtype).
    pub weight: Option<&'a Bound<'py, PyAny>>,
    pub ignore_index: i64,
    pub smoothing: f64,
    /// The NaN policy.
    pub nan: NanPolicy,
}

impl Params<'_, '_> {
    /// The parameters the driver takes.
    pub fn kernel(&self) -> drive::softmax::Params {
        drive::softmax::Params {
            axis: self.axis,
            ignore_index: self.ignore_index,
            smoothing: self.smoothing,
        }
    }
}

/// The class weights (`weight=`) of softmax cross-entropy and its gradient, viewed as `T`
/// where they lie (float32 or float64; other real dtypes converted to `T`); `None` when not
/// given. Their shape (one per class) is the driver's to check.
pub fn class_weights<'py, T: Float + Element>(
    weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<LoadView<'py, T>>> {
    weight
        .map(|obj| LoadView::<T>::new(&ndarray(obj, "weight")?, "weight"))
        .transpose()
}

/// The sample weights (`sample_weight=`, one per row) viewed as `T` where they lie (float32
/// or float64; other real dtypes converted to `T`); `None` when not given. Their shape is the
/// driver's to check.
pub fn sample_weights<'py, T: Float + Element>(
    sample_weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<LoadView<'py, T>>> {
    sample_weight
        .map(|obj| LoadView::<T>::new(&ndarray(obj, "sample_weight")?, "sample_weight"))
        .transpose()
}

/// The error of a negative sample weight when `part.flags` reports one, naming its position.
pub fn sample_weight_errors<T: Float + Element + Reported>(
    py: Python<'_>,
    part: &Partial,
    sw: Option<&LoadView<'_, T>>,
) -> PyResult<()> {
    if part.flags & flags::WEIGHT != 0 {
        if let Some(sw) = sw {
            let bad = sw.first_bad(|v: T| v < T::ZERO);
            return Err(sample_weight_error(py, bad));
        }
    }
    Ok(())
}

/// Continues `init` with the rows of one batch: what [`softmax_cross_entropy`] with
/// `reduction="sum"` reduces them to, merged into `init` in blocks of rows as one call merges
/// its own blocks (see [`crate::kernels::drive::softmax::loss`]; with sample weights, their
/// sum over the rows not ignored is the `weight` added). A batch with a bad value raises
/// and `init` is not used.
pub fn fold<'py>(
    init: Partial,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    params: Params<'_, 'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<Partial> {
    let args = Args {
        params,
        sample_weight,
        reduction: Reduction::Sum,
        out: None,
        keepdims: false,
        init,
    };
    Ok(dispatch_logits(logits, target, &args)?.0)
}

/// The reduced state, and the per-row array for `reduction="none"`.
type Computed<'py> = (Partial, Option<Bound<'py, PyAny>>);

fn dispatch_logits<'py>(
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    args: &Args<'_, 'py>,
) -> PyResult<Computed<'py>> {
    let x = ndarray(logits, "logits")?;
    match precision(&x, "logits")? {
        Precision::F32 => dispatch_target::<f32>(as_float_or_half::<f32>(x)?, target, args),
        Precision::F64 => dispatch_target::<f64>(as_float::<f64>(x)?, target, args),
    }
}

struct Args<'a, 'py> {
    params: Params<'a, 'py>,
    /// One weight per row, or `None`.
    sample_weight: Option<&'a Bound<'py, PyAny>>,
    reduction: Reduction,
    out: Option<&'a Bound<'py, PyAny>>,
    /// Whether the per-row output keeps the class axis with length 1.
    keepdims: bool,
    /// The state the reduction continues from ([`Partial::EMPTY`] for a plain call).
    init: Partial,
}

/// Evaluates `$labels`, in which `$L` names the integer type of `$y` (the `target` array of
/// softmax cross-entropy or its gradient, from [`ndarray`]), when `$y` holds class indices;
/// `$probs` when it holds floats (class probabilities); a `TypeError` naming `target` for any
/// other dtype.
macro_rules! with_class_target {
    ($y:expr, $L:ident => $labels:expr, $probs:expr) => {{
        let y: &::pyo3::Bound<'_, ::numpy::PyUntypedArray> = $y;
        with_class_target!(@try y, $L => $labels, $probs; i64, i32, i16, i8, u8, u16, u32)
    }};
    (@try $y:ident, $L:ident => $labels:expr, $probs:expr; $l:ty $(, $rest:ty)*) => {
        if $crate::bindings::arrays::is::<$l>($y) {
            type $L = $l;
            $labels
        } else {
            with_class_target!(@try $y, $L => $labels, $probs; $($rest),*)
        }
    };
    (@try $y:ident, $L:ident => $labels:expr, $probs:expr;) => {{
        let dtype = ::numpy::PyUntypedArrayMethods::dtype($y);
        let bfloat16 = $crate::bindings::half::half_of($y).is_some();
        if ::numpy::PyArrayDescrMethods::kind(&dtype) == b'f' || bfloat16 {
            $probs
        } else {
            Err(::pyo3::exceptions::PyTypeError::new_err(format!(
                "'target' must hold class indices (int8, int16, int32, int64, uint8, uint16, \
                 uint32) or class probabilities (float16, bfloat16, float32, float64), got \
                 dtype {}",
                $crate::bindings::arrays::dtype_name($y)
            )))
        }
    }};
}

pub(crate) use with_class_target;

fn dispatch_target<'py, T: Float + Element + Reported>(
    x: Bound<'py, PyUntypedArray>,
    target: &Bound<'py, PyAny>,
    args: &Args<'_, 'py>,
) -> PyResult<Computed<'py>> {
    let y = ndarray(target, "target")?;
    with_class_target!(&y, L => compute::<T, L>(&x, Target::Labels(&y), args), {
        check_ignore_index_unused(args.params.ignore_index)?;
        compute::<T, i64>(&x, Target::Probabilities(&y), args)
    })
}

enum Target<'a, 'py> {
    Labels(&'a Bound<'py, PyUntypedArray>),
    Probabilities(&'a Bound<'py, PyUntypedArray>),
}

/// Runs the driver for logits of type `T` and (when the target holds class indices) labels of
/// type `L`.
fn compute<'py, T: Float + Element + Reported, L: Label + Load + Element + Reported>(
    x: &Bound<'py, PyUntypedArray>,
    target: Target<'_, 'py>,
    args: &Args<'_, 'py>,
) -> PyResult<Computed<'py>> {
    let py = x.py();
    let xv = LoadView::<T>::new(x, "logits")?;
    // float16 or bfloat16 logits give per-row losses of their own dtype.
    let half = xv.half().map(|h| (h, x));
    let wv = class_weights::<T>(args.params.weight)?;
    let swv = sample_weights::<T>(args.sample_weight)?;
    let (labels, probs) = match target {
        Target::Labels(y) => (Some(View::<L>::new(y, "target")?), None),
        // Read as `T` where it lies, in its own float dtype.
        Target::Probabilities(y) => (None, Some(LoadView::<T>::new(y, "target")?)),
    };
    let call = drive::softmax::Loss {
        logits: xv.kernel(),
        target: match (&labels, &probs) {
            (Some(yv), _) => drive::softmax::Target::Labels(yv.kernel()),
            (None, Some(yv)) => drive::softmax::Target::Probabilities(yv.kernel()),
            (None, None) => unreachable!("one of the two targets is viewed"),
        },
        weight: wv.as_ref().map(LoadView::kernel),
        sample_weight: swv.as_ref().map(LoadView::kernel),
        params: args.params.kernel(),
        init: args.init,
        nan: args.params.nan,
    };
    class_weight_nan(&args.params, wv.as_ref())?;
    let mut held = None;
    let slot = &mut held;
    let (xr, lr, pr, wr, sr) = (&xv, &labels, &probs, &wv, &swv);
    let part = drive::softmax::loss(
        &call,
        args.keepdims,
        // Asked for once the driver has checked the shapes: `rows_shape` is the logits'
        // shape without the class axis (with `keepdims`: with it kept with length 1).
        move |rows_shape: &[usize]| {
            let array = match (args.reduction, args.out) {
                (Reduction::None, Some(out)) => out.clone(),
                // Uninitialised, but the kernel writes every element before it is returned
                // (on error it is dropped unseen).
                (Reduction::None, None) if half.is_some() => new_half_output(x, rows_shape, false)?,
                (Reduction::None, None) => new_output::<T>(py, rows_shape, false)?,
                _ => return Ok(None),
            };
            // A given `out` must not overlap an input (a fresh one cannot).
            let mut inputs: Vec<Operand<'_, 'py>> = Vec::new();
            if args.out.is_some() {
                inputs.push(xr.operand("logits"));
                inputs.extend(lr.as_ref().map(|v| v.operand("target")));
                inputs.extend(pr.as_ref().map(|v| v.operand("target")));
                inputs.extend(wr.as_ref().map(|v| v.operand("weight")));
                inputs.extend(sr.as_ref().map(|v| v.operand("sample_weight")));
            }
            let given = args.out.is_some();
            let view = OutView::<T>::output(&array, given, rows_shape, T::NAME, half, &inputs)?;
            let (_, view) = slot.insert((array, view));
            Ok(Some(view.kernel()))
        },
        &Gil(py),
    )?;
    target_errors(&part, &xv, labels.as_ref(), probs.as_ref(), &args.params)?;
    sample_weight_errors(py, &part, swv.as_ref())?;
    if part.flags & flags::NAN != 0 {
        return Err(nan_error(&xv, probs.as_ref(), swv.as_ref()));
    }
    Ok((part, held.map(|(array, _)| array)))
}

/// Class weights are a parameter the kernel does not check for NaN: under
/// `nan_policy='raise'` they are looked at here (one per class), before the call; shared with
/// the per-group call.
pub(super) fn class_weight_nan<T: Float + Load + Element + Reported>(
    params: &Params<'_, '_>,
    wv: Option<&LoadView<'_, T>>,
) -> PyResult<()> {
    if let (NanPolicy::Raise, Some(w)) = (params.nan, wv) {
        if let Some(bad) = w.first_bad(|v: T| v.is_nan()) {
            return Err(domain_error(w.py(), "weight", NO_NAN, Some(bad)));
        }
    }
    Ok(())
}

/// Under `nan_policy='raise'`, when the kernel flagged a row holding a NaN: the error naming
/// the first argument that holds one (`logits`, the target probabilities, `sample_weight`)
/// and its first position there; shared with the per-group call.
pub(super) fn nan_error<T: Float + Load + Element + Reported>(
    xv: &LoadView<'_, T>,
    probs: Option<&LoadView<'_, T>>,
    swv: Option<&LoadView<'_, T>>,
) -> PyErr {
    let py = xv.py();
    if let Some(bad) = xv.first_bad(|v: T| v.is_nan()) {
        return domain_error(py, "logits", NO_NAN, Some(bad));
    }
    let others = [(probs, "target"), (swv, "sample_weight")];
    for (v, arg) in others {
        if let Some(bad) = v.and_then(|v| v.first_bad(|v: T| v.is_nan())) {
            return domain_error(py, arg, NO_NAN, Some(bad));
        }
    }
    domain_error(py, "logits", NO_NAN, None::<(Vec<usize>, T)>)
}

/// The error for a target outside its domain when `part.flags` reports one (a class index
/// out of range and not `ignore_index`, a negative probability), naming its position; shared
/// with the per-group call.
pub(super) fn target_errors<T: Float + Element + Reported, L: Label + Load + Element + Reported>(
    part: &Partial,
    xv: &LoadView<'_, T>,
    labels: Option<&View<'_, L>>,
    probs: Option<&LoadView<'_, T>>,
    params: &Params<'_, '_>,
) -> PyResult<()> {
    let py = xv.py();
    if part.flags & flags::TARGET != 0 {
        if let Some(yv) = labels {
            let classes = xv.shape()[class_axis(xv.shape(), params.axis)];
            let (ignore, c) = (params.ignore_index, classes as i64);
            let bad = yv.kernel().first(|v: L| {
                let i = v.index();
                i != ignore && !(0..c).contains(&i)
            });
            let what = format!("class indices in [0, {c}) or ignore_index ({ignore})");
            return Err(domain_error(py, "target", &what, bad));
        }
        if let Some(yv) = probs {
            let bad = yv.first_bad(|v: T| v < T::ZERO);
            return Err(domain_error(
                py,
                "target",
                "non-negative probabilities",
                bad,
            ));
        }
    }
    Ok(())
}

/// The class axis `axis` of logits of `shape`, once the driver has accepted it.
pub fn class_axis(shape: &[usize], axis: isize) -> usize {
    axis.rem_euclid(shape.len().max(1) as isize) as usize
}
