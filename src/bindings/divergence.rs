//! Python bindings of entropy, cross-entropy, KL and Jensen-Shannon divergence: parse, convert
//! dtypes, dispatch. The driver ([`crate::kernels::drive::divergence`]) broadcasts, reduces
//! along the axis and runs the kernels of [`crate::kernels::divergence`].

use numpy::{Element, PyUntypedArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyFloat;

use super::args;
use super::arrays::{ndarray, new_output};
use super::arrow::{divergence_name, stream_hook};
use super::errors::{domain_error, Reported};
use super::half::{new_half_output, OutView};
use super::nan_policy::{nan_policy, NO_NAN};
use super::operand::LoadView;
use super::precision::{precision, Precision};
use super::threads::Gil;
use crate::kernels::divergence::Kind;
use crate::kernels::drive;
use crate::kernels::float::Float;
use crate::kernels::nan::NanPolicy;
use crate::kernels::reduce::{flags, Partial};
use crate::kernels::view::Axis;

/// Entropy of distributions along an axis, as :func:`scipy.stats.entropy` computes it.
///
/// Each distribution ``p`` (a row along ``axis``) is normalised to ``a = p / sum(p)`` and
/// ``H = -sum(a * log(a))``, with ``0 * log(0) = 0``; divided by ``log(base)`` when ``base``
/// is given. The normalisation happens in the same single pass as the logs:
/// ``H = -sum(p * log(p)) / P + log(P)`` with ``P = sum(p)``.
///
/// Parameters
/// ----------
/// p : array_like
///     Non-negative values (probabilities or counts). float16, bfloat16, float32 and float64
///     arrays are read in place, whatever their layout (float16 and bfloat16 computed in
///     float32); other real dtypes are converted to float64 first.
/// axis : int or None, default -1
///     The axis along which each distribution lies; ``None`` treats the whole array as one.
/// base : float, optional
///     Logarithm base (natural logarithm by default).
/// normalize : bool, default True
///     ``False`` uses each row as given: ``-sum(p * log(p))``.
/// out : numpy.ndarray, optional
///     Array of ``p``'s dtype and shape without ``axis`` (with ``keepdims``: with ``axis``
///     kept with length 1) to write the results into.
/// keepdims : bool, default False
///     ``True`` keeps the reduced axis (every axis with ``axis=None``) with length 1, as
///     NumPy's reductions and :func:`scipy.stats.entropy` do: the result is then always an
///     array, which broadcasts against ``p``.
/// nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
///     What a NaN in ``p`` does, as in :func:`scipy.stats.entropy`: ``'propagate'``
///     makes its distribution's result NaN; ``'omit'`` leaves it out of its
///     distribution, sum included (a distribution left with no value gives 0.0, as
///     SciPy); ``'raise'`` raises :class:`crossent.DomainError` naming the first
///     position of a NaN (in C order). The check is fused into the single pass.
///
/// Returns
/// -------
/// float or numpy.ndarray
///     One value per distribution: a Python float when there is one (1-D input or
///     ``axis=None``) and ``keepdims`` is False, otherwise an array of ``p``'s dtype and shape
///     without ``axis`` (with ``keepdims``: with it kept with length 1). Sums are accumulated
///     in float64, also for float32 input.
///
/// Notes
/// -----
/// A row of zeros gives NaN (0/0, as SciPy); an empty row gives 0.0; NaN propagates to its
/// row unless ``nan_policy`` says otherwise. A negative value raises ``ValueError`` naming
/// its position (SciPy returns -inf), whatever ``nan_policy`` is.
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> crossent.entropy([0.5, 0.25, 0.25], base=2)
/// 1.5
/// >>> crossent.entropy(np.array([[1.0, 1.0], [3.0, 0.0]])).round(6)
/// array([0.693147, 0.      ])
/// >>> crossent.entropy(np.array([[1.0, 1.0], [3.0, 0.0]]), keepdims=True).round(6)
/// array([[0.693147],
///        [0.      ]])
/// >>> crossent.entropy(np.array([[0.5, np.nan, 0.5], [np.nan] * 3]), nan_policy="omit").round(6)
/// array([0.693147, 0.      ])
#[pyfunction]
#[pyo3(
    signature = (
        p, *, axis=Some(-1), base=None, normalize=true, out=None, keepdims=false,
        nan_policy=NanPolicy::Propagate
    ),
    text_signature = "(p, *, axis=-1, base=None, normalize=True, out=None, keepdims=False, \
                      nan_policy='propagate')"
)]
pub fn entropy<'py>(
    p: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::axis)] axis: Option<isize>,
    #[pyo3(from_py_with = args::base)] base: Option<f64>,
    #[pyo3(from_py_with = args::normalize)] normalize: bool,
    out: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = args::keepdims)] keepdims: bool,
    #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
) -> PyResult<Bound<'py, PyAny>> {
    compute_kind(
        Kind::Entropy,
        p,
        None,
        Keywords {
            axis,
            base,
            normalize,
            out,
            keepdims,
            nan_policy,
        },
    )
}

/// Cross-entropy of distribution ``q`` relative to ``p``, along an axis.
///
/// With ``a = p / sum(p)`` and ``b = q / sum(q)``: ``H(p, q) = -sum(a * log(b))``, with
/// ``0 * log(b) = 0`` and ``+inf`` where ``p > 0`` meets ``q = 0``; divided by ``log(base)``
/// when given. It follows :func:`scipy.stats.entropy`'s conventions, so that
/// ``cross_entropy(p, q) == entropy(p) + kl_divergence(p, q)``. Normalisation happens in the
/// same single pass as the logs.
///
/// Parameters
/// ----------
/// p, q : array_like
///     Non-negative values, broadcast against each other. float16, bfloat16, float32 and
///     float64 arrays are read in place, also mixed (computed in the wider type, float16 and
///     bfloat16 in float32); other real dtypes are converted.
/// axis : int or None, default -1
///     The axis along which each distribution lies; ``None`` treats the whole array as one.
/// base : float, optional
///     Logarithm base (natural logarithm by default).
/// normalize : bool, default True
///     ``False`` uses the rows as given: ``-sum(p * log(q))``.
/// out : numpy.ndarray, optional
///     Array of the input dtype and the broadcast shape without ``axis`` (with ``keepdims``:
///     with ``axis`` kept with length 1), to write into.
/// keepdims : bool, default False
///     ``True`` keeps the reduced axis (every axis with ``axis=None``) with length 1, as
///     :func:`entropy`.
/// nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
///     What a NaN does, as in :func:`scipy.stats.entropy`: ``'propagate'`` makes its
///     distribution's result NaN; ``'omit'`` leaves out each pair where ``p`` or
///     ``q`` is NaN from both distributions, sums included (a distribution left with
///     no pair gives 0.0); ``'raise'`` raises :class:`crossent.DomainError` naming
///     the argument (``p`` before ``q``) and the first position of a NaN in it.
///
/// Returns
/// -------
/// float or numpy.ndarray
///     As :func:`entropy`.
///
/// Examples
/// --------
/// >>> import crossent
/// >>> round(crossent.cross_entropy([1, 1], [1, 3], base=2), 6)
/// 1.207519
#[pyfunction]
#[allow(clippy::too_many_arguments)] // the Python signature's keywords
#[pyo3(
    signature = (
        p, q, *, axis=Some(-1), base=None, normalize=true, out=None, keepdims=false,
        nan_policy=NanPolicy::Propagate
    ),
    text_signature = "(p, q, *, axis=-1, base=None, normalize=True, out=None, keepdims=False, \
                      nan_policy='propagate')"
)]
pub fn cross_entropy<'py>(
    p: &Bound<'py, PyAny>,
    q: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::axis)] axis: Option<isize>,
    #[pyo3(from_py_with = args::base)] base: Option<f64>,
    #[pyo3(from_py_with = args::normalize)] normalize: bool,
    out: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = args::keepdims)] keepdims: bool,
    #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
) -> PyResult<Bound<'py, PyAny>> {
    compute_kind(
        Kind::CrossEntropy,
        p,
        Some(q),
        Keywords {
            axis,
            base,
            normalize,
            out,
            keepdims,
            nan_policy,
        },
    )
}

/// Kullback-Leibler divergence ``D(p || q)`` along an axis, as ``scipy.stats.entropy(p, q)``.
///
/// With ``a = p / sum(p)`` and ``b = q / sum(q)``: ``D = sum(a * log(a / b))``, term by term
/// as :func:`scipy.special.rel_entr` (0 where ``p = 0``, ``+inf`` where ``p > 0`` and
/// ``q = 0``); divided by ``log(base)`` when given. Computed in one pass over both arrays:
/// ``D = sum(p * log(p / q)) / P + log(Q) - log(P)``.
///
/// Parameters
/// ----------
/// p, q : array_like
///     Non-negative values, broadcast against each other (see :func:`cross_entropy`).
/// axis : int or None, default -1
///     The axis along which each distribution lies; ``None`` treats the whole array as one.
/// base : float, optional
///     Logarithm base (natural logarithm by default).
/// normalize : bool, default True
///     ``False`` uses the rows as given: ``sum(rel_entr(p, q))``.
/// out : numpy.ndarray, optional
///     Array of the input dtype and the broadcast shape without ``axis`` (with ``keepdims``:
///     with ``axis`` kept with length 1), to write into.
/// keepdims : bool, default False
///     ``True`` keeps the reduced axis (every axis with ``axis=None``) with length 1, as
///     :func:`entropy`.
/// nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
///     What a NaN does, as in :func:`scipy.stats.entropy`: ``'propagate'`` makes its
///     distribution's result NaN; ``'omit'`` leaves out each pair where ``p`` or
///     ``q`` is NaN from both distributions, sums included (a distribution left with
///     no pair gives 0.0); ``'raise'`` raises :class:`crossent.DomainError` naming
///     the argument (``p`` before ``q``) and the first position of a NaN in it.
///
/// Returns
/// -------
/// float or numpy.ndarray
///     As :func:`entropy`. ``kl_divergence(p, p)`` is exactly 0.
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> round(crossent.kl_divergence([0.5, 0.5], [0.9, 0.1]), 6)
/// 0.510826
/// >>> round(crossent.kl_divergence([0.5, 0.5, 0.2], [0.25, np.nan, 0.25], nan_policy="omit"), 6)
/// 0.094878
/// >>> p = np.array([[0.2, 0.8], [0.5, 0.5]])
/// >>> crossent.kl_divergence(p, p[::-1]).round(6)
/// array([0.192745, 0.223144])
/// >>> crossent.kl_divergence(p, p[::-1], axis=0, keepdims=True).round(6)
/// array([[0.392696, 0.108462]])
#[pyfunction]
#[allow(clippy::too_many_arguments)] // the Python signature's keywords
#[pyo3(
    signature = (
        p, q, *, axis=Some(-1), base=None, normalize=true, out=None, keepdims=false,
        nan_policy=NanPolicy::Propagate
    ),
    text_signature = "(p, q, *, axis=-1, base=None, normalize=True, out=None, keepdims=False, \
                      nan_policy='propagate')"
)]
pub fn kl_divergence<'py>(
    p: &Bound<'py, PyAny>,
    q: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::axis)] axis: Option<isize>,
    #[pyo3(from_py_with = args::base)] base: Option<f64>,
    #[pyo3(from_py_with = args::normalize)] normalize: bool,
    out: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = args::keepdims)] keepdims: bool,
    #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
) -> PyResult<Bound<'py, PyAny>> {
    compute_kind(
        Kind::KlDivergence,
        p,
        Some(q),
        Keywords {
            axis,
            base,
            normalize,
            out,
            keepdims,
            nan_policy,
        },
    )
}

/// Jensen-Shannon divergence along an axis: the square of
/// :func:`scipy.spatial.distance.jensenshannon`.
///
/// With ``a = p / sum(p)``, ``b = q / sum(q)`` and ``m = (a + b) / 2``:
/// ``JS = (D(a || m) + D(b || m)) / 2``, divided by ``log(base)`` when given. Symmetric, and
/// between 0 and ``log(2)`` (1 in base 2). Normalising needs both sums inside the logarithm,
/// so each row is read twice: once for the sums, once for the logs.
/// :func:`scipy.spatial.distance.jensenshannon` has no ``nan_policy``; here ``'omit'``
/// leaves out the pairs where ``p`` or ``q`` is NaN, as the other divergences do.
///
/// Parameters
/// ----------
/// p, q : array_like
///     Non-negative values, broadcast against each other (see :func:`cross_entropy`).
/// axis : int or None, default -1
///     The axis along which each distribution lies; ``None`` treats the whole array as one.
/// base : float, optional
///     Logarithm base (natural logarithm by default).
/// normalize : bool, default True
///     ``False`` uses the rows as given, with ``m = (p + q) / 2``.
/// out : numpy.ndarray, optional
///     Array of the input dtype and the broadcast shape without ``axis`` (with ``keepdims``:
///     with ``axis`` kept with length 1), to write into.
/// keepdims : bool, default False
///     ``True`` keeps the reduced axis (every axis with ``axis=None``) with length 1, as
///     :func:`entropy`.
/// nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
///     What a NaN does, as in :func:`scipy.stats.entropy`: ``'propagate'`` makes its
///     distribution's result NaN; ``'omit'`` leaves out each pair where ``p`` or
///     ``q`` is NaN from both distributions, sums included (a distribution left with
///     no pair gives 0.0); ``'raise'`` raises :class:`crossent.DomainError` naming
///     the argument (``p`` before ``q``) and the first position of a NaN in it.
///
/// Returns
/// -------
/// float or numpy.ndarray
///     As :func:`entropy`.
///
/// Examples
/// --------
/// >>> import crossent
/// >>> crossent.jensen_shannon([1.0, 0.0], [0.0, 1.0], base=2)
/// 1.0
/// >>> round(crossent.jensen_shannon([0.5, 0.5], [0.9, 0.1]), 6)
/// 0.101749
#[pyfunction]
#[allow(clippy::too_many_arguments)] // the Python signature's keywords
#[pyo3(
    signature = (
        p, q, *, axis=Some(-1), base=None, normalize=true, out=None, keepdims=false,
        nan_policy=NanPolicy::Propagate
    ),
    text_signature = "(p, q, *, axis=-1, base=None, normalize=True, out=None, keepdims=False, \
                      nan_policy='propagate')"
)]
pub fn jensen_shannon<'py>(
    p: &Bound<'py, PyAny>,
    q: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::axis)] axis: Option<isize>,
    #[pyo3(from_py_with = args::base)] base: Option<f64>,
    #[pyo3(from_py_with = args::normalize)] normalize: bool,
    out: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = args::keepdims)] keepdims: bool,
    #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
) -> PyResult<Bound<'py, PyAny>> {
    compute_kind(
        Kind::JensenShannon,
        p,
        Some(q),
        Keywords {
            axis,
            base,
            normalize,
            out,
            keepdims,
            nan_policy,
        },
    )
}

/// `ln(base)`, or 1 for natural logarithms; a base that is not a positive finite number other
/// than 1 is a `ValueError`.
pub fn log_base(base: Option<f64>) -> PyResult<f64> {
    match base {
        None => Ok(1.0),
        Some(b) if b > 0.0 && b.is_finite() && b != 1.0 => Ok(b.ln()),
        Some(b) => Err(PyValueError::new_err(format!(
            "'base' must be a positive finite number other than 1, got {b}"
        ))),
    }
}

/// `p` (and `q`) as arrays, and the floating-point type they are computed in: the wider of
/// their precisions, as NumPy promotes them. Each is read in its own dtype when that is
/// a float one (see [`Operands`]).
type Inputs<'py> = (
    Precision,
    Bound<'py, PyUntypedArray>,
    Option<Bound<'py, PyUntypedArray>>,
);

fn inputs<'py>(p: &Bound<'py, PyAny>, q: Option<&Bound<'py, PyAny>>) -> PyResult<Inputs<'py>> {
    let pa = ndarray(p, "p")?;
    let qa = q.map(|q| ndarray(q, "q")).transpose()?;
    let mut prec = precision(&pa, "p")?;
    if let Some(qa) = &qa {
        prec = prec.max(precision(qa, "q")?);
    }
    Ok((prec, pa, qa))
}

/// The keyword arguments of the four functions, as parsed.
struct Keywords<'a, 'py> {
    axis: Option<isize>,
    base: Option<f64>,
    normalize: bool,
    out: Option<&'a Bound<'py, PyAny>>,
    keepdims: bool,
    nan_policy: NanPolicy,
}

fn compute_kind<'py>(
    kind: Kind,
    p: &Bound<'py, PyAny>,
    q: Option<&Bound<'py, PyAny>>,
    keywords: Keywords<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let Keywords {
        axis,
        base,
        normalize,
        out,
        keepdims,
        nan_policy,
    } = keywords;
    let args = Args {
        kind,
        axis,
        log_base: log_base(base)?,
        normalize,
        out,
        keepdims,
        nan: nan_policy,
    };
    stream_hook!(p.py(), divergence_name(kind), [p, q], {
        "p" => p, "q" => q, "axis" => axis, "base" => base, "normalize" => normalize,
        "out" => out, "keepdims" => keepdims, "nan_policy" => nan_policy.name(),
    });
    match inputs(p, q)? {
        (Precision::F32, pa, qa) => compute::<f32>(pa, qa, &args),
        (Precision::F64, pa, qa) => compute::<f64>(pa, qa, &args),
    }
}

/// Continues `init`, the state of everything seen before as one distribution (see
/// [`crate::kernels::divergence::whole`]), with `p` (and `q`, broadcast against it) — a batch
/// of a divergence accumulator, reduced as `axis=None` reduces an array, under NaN policy
/// `nan`. A negative value (or a NaN under `nan='raise'`) raises `ValueError` naming its
/// position, and `init` is not used.
pub fn fold<'py>(
    kind: Kind,
    nan: NanPolicy,
    init: Partial,
    p: &Bound<'py, PyAny>,
    q: Option<&Bound<'py, PyAny>>,
) -> PyResult<Partial> {
    match inputs(p, q)? {
        (Precision::F32, pa, qa) => fold_typed::<f32>(kind, nan, init, pa, qa),
        (Precision::F64, pa, qa) => fold_typed::<f64>(kind, nan, init, pa, qa),
    }
}

fn fold_typed<'py, T: Float + Element + Reported>(
    kind: Kind,
    nan: NanPolicy,
    init: Partial,
    pa: Bound<'py, PyUntypedArray>,
    qa: Option<Bound<'py, PyUntypedArray>>,
) -> PyResult<Partial> {
    let ops = Operands::<T>::new(&pa, qa.as_ref())?;
    let call = drive::divergence::Fold {
        kind,
        nan,
        init,
        operands: ops.kernel(),
    };
    let state = drive::divergence::fold(&call, &Gil(pa.py()))?;
    ops.check(pa.py(), state.flags, nan)?;
    Ok(state)
}

struct Args<'a, 'py> {
    kind: Kind,
    axis: Option<isize>,
    log_base: f64,
    normalize: bool,
    out: Option<&'a Bound<'py, PyAny>>,
    keepdims: bool,
    nan: NanPolicy,
}

/// `p` and `q` viewed where they lie, read as `T` whatever float type each is stored in (`q`
/// is `p` for entropy). Broadcasting them is the driver's ([`drive::divergence`]).
struct Operands<'py, T: Element> {
    pv: LoadView<'py, T>,
    qv: Option<LoadView<'py, T>>,
}

impl<'py, T: Float + Element + Reported> Operands<'py, T> {
    fn new(
        pa: &Bound<'py, PyUntypedArray>,
        qa: Option<&Bound<'py, PyUntypedArray>>,
    ) -> PyResult<Self> {
        let pv = LoadView::<T>::new(pa, "p")?;
        let qv = qa.map(|qa| LoadView::<T>::new(qa, "q")).transpose()?;
        Ok(Operands { pv, qv })
    }

    /// The operands as the driver takes them.
    fn kernel(&self) -> drive::divergence::Pair<'_, T> {
        drive::divergence::Pair {
            p: self.pv.kernel(),
            q: self.qv.as_ref().map(LoadView::kernel),
        }
    }

    /// The `ValueError` naming the first negative value (under `nan='raise'`, the first
    /// negative value or NaN, in C order of the operand), if the kernel flagged one: `p`'s
    /// before `q`'s.
    fn check(&self, py: Python<'_>, part_flags: u32, nan: NanPolicy) -> PyResult<()> {
        let (pv, qv) = (&self.pv, &self.qv);
        let raise = nan == NanPolicy::Raise;
        let what = if raise {
            format!("non-negative values and {NO_NAN}")
        } else {
            "non-negative values".to_string()
        };
        let bad = |v: T| v < T::ZERO || (raise && v.is_nan());
        if part_flags & flags::INPUT != 0 {
            return Err(domain_error(py, "p", &what, pv.first_bad(bad)));
        }
        if let (true, Some(qv)) = (part_flags & flags::TARGET != 0, qv) {
            return Err(domain_error(py, "q", &what, qv.first_bad(bad)));
        }
        Ok(())
    }
}

fn compute<'py, T: Float + Element + Reported>(
    pa: Bound<'py, PyUntypedArray>,
    qa: Option<Bound<'py, PyUntypedArray>>,
    args: &Args<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = pa.py();
    let ops = Operands::<T>::new(&pa, qa.as_ref())?;
    let call = drive::divergence::Rowwise {
        kind: args.kind,
        operands: ops.kernel(),
        axis: Axis::from_arg(args.axis),
        normalize: args.normalize,
        log_base: args.log_base,
        nan: args.nan,
        keepdims: args.keepdims,
    };
    // float16 (or bfloat16) operands give a result of their dtype; a mix with another dtype
    // that of float32, as NumPy promotes them.
    let like = &pa;
    let half = match (ops.pv.half(), ops.qv.as_ref().map(LoadView::half)) {
        (Some(h), None) => Some((h, like)),
        (Some(h), Some(hq)) if hq == Some(h) => Some((h, like)),
        _ => None,
    };
    let mut held = None;
    let (slot, operands) = (&mut held, &ops);
    let part = drive::divergence::rowwise(
        &call,
        // Asked for once the driver has checked the shapes: `out_shape` is the broadcast
        // shape without the axis (with `keepdims`, with the axis kept with length 1).
        move |out_shape: &[usize]| {
            let array = match args.out {
                Some(out) => out.clone(),
                None if out_shape.is_empty() && !args.keepdims => return Ok(None),
                // Uninitialised, but the kernel writes every element before it is returned
                // (on error it is dropped unseen).
                None if half.is_some() => new_half_output(like, out_shape, false)?,
                None => new_output::<T>(py, out_shape, false)?,
            };
            // A given `out` must not overlap `p` or `q` (a fresh one cannot).
            let mut inputs = Vec::new();
            if args.out.is_some() {
                inputs.push(operands.pv.operand("p"));
                inputs.extend(operands.qv.as_ref().map(|qv| qv.operand("q")));
            }
            let given = args.out.is_some();
            let view = OutView::<T>::output(&array, given, out_shape, T::NAME, half, &inputs)?;
            let (_, view) = slot.insert((array, view));
            Ok(Some(view.kernel()))
        },
        &Gil(py),
    )?;
    ops.check(py, part.flags, args.nan)?;
    Ok(match held {
        Some((out, _)) => out,
        None => PyFloat::new(py, part.sum).into_any(),
    })
}
