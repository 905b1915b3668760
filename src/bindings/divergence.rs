//! Python bindings of entropy, cross-entropy, KL and Jensen-Shannon divergence: parse, convert
//! dtypes, release the GIL, dispatch. The formulas live in [`crate::kernels::divergence`].

use numpy::{Element, PyUntypedArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyFloat;

use super::args;
use super::arrays::{ndarray, new_output, shape_str, ViewMut};
use super::arrow::{divergence_name, stream_hook};
use super::axes::{broadcast_shape, Reduced};
use super::errors::{domain_error, Reported};
use super::operand::LoadView;
use super::precision::{precision, Precision};
use super::threads::run_detached;
use crate::kernels::divergence::{self, Kind};
use crate::kernels::float::Float;
use crate::kernels::reduce::{flags, Partial};
use crate::kernels::rows::Rows;
use crate::kernels::strided::{SendPtr, Src};

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
///     Non-negative values (probabilities or counts). float32 and float64 arrays are read in
///     place, whatever their layout; other real dtypes are converted to float64 first.
/// axis : int or None, default -1
///     The axis along which each distribution lies; ``None`` treats the whole array as one.
/// base : float, optional
///     Logarithm base (natural logarithm by default).
/// normalize : bool, default True
///     ``False`` uses each row as given: ``-sum(p * log(p))``.
/// out : numpy.ndarray, optional
///     Array of ``p``'s dtype and shape without ``axis`` to write the results into.
///
/// Returns
/// -------
/// float or numpy.ndarray
///     One value per distribution: a Python float when there is one (1-D input or
///     ``axis=None``), otherwise an array of ``p``'s shape without ``axis`` and ``p``'s dtype.
///     Sums are accumulated in float64, also for float32 input.
///
/// Notes
/// -----
/// A row of zeros gives NaN (0/0, as SciPy); an empty row gives 0.0; NaN propagates to its
/// row. A negative value raises ``ValueError`` naming its position (SciPy returns -inf).
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> crossent.entropy([0.5, 0.25, 0.25], base=2)
/// 1.5
/// >>> crossent.entropy(np.array([[1.0, 1.0], [3.0, 0.0]])).round(6)
/// array([0.693147, 0.      ])
#[pyfunction]
#[pyo3(
    signature = (p, *, axis=Some(-1), base=None, normalize=true, out=None),
    text_signature = "(p, *, axis=-1, base=None, normalize=True, out=None)"
)]
pub fn entropy<'py>(
    p: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::axis)] axis: Option<isize>,
    #[pyo3(from_py_with = args::base)] base: Option<f64>,
    #[pyo3(from_py_with = args::normalize)] normalize: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    compute_kind(Kind::Entropy, p, None, axis, base, normalize, out)
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
///     Non-negative values, broadcast against each other. float32 and float64 arrays are
///     read in place, also one of each (computed in float64 then); other real dtypes are
///     converted.
/// axis : int or None, default -1
///     The axis along which each distribution lies; ``None`` treats the whole array as one.
/// base : float, optional
///     Logarithm base (natural logarithm by default).
/// normalize : bool, default True
///     ``False`` uses the rows as given: ``-sum(p * log(q))``.
/// out : numpy.ndarray, optional
///     Array of the input dtype and the broadcast shape without ``axis``, to write into.
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
#[pyo3(
    signature = (p, q, *, axis=Some(-1), base=None, normalize=true, out=None),
    text_signature = "(p, q, *, axis=-1, base=None, normalize=True, out=None)"
)]
pub fn cross_entropy<'py>(
    p: &Bound<'py, PyAny>,
    q: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::axis)] axis: Option<isize>,
    #[pyo3(from_py_with = args::base)] base: Option<f64>,
    #[pyo3(from_py_with = args::normalize)] normalize: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    compute_kind(Kind::CrossEntropy, p, Some(q), axis, base, normalize, out)
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
///     Array of the input dtype and the broadcast shape without ``axis``, to write into.
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
/// >>> p = np.array([[0.2, 0.8], [0.5, 0.5]])
/// >>> crossent.kl_divergence(p, p[::-1]).round(6)
/// array([0.192745, 0.223144])
#[pyfunction]
#[pyo3(
    signature = (p, q, *, axis=Some(-1), base=None, normalize=true, out=None),
    text_signature = "(p, q, *, axis=-1, base=None, normalize=True, out=None)"
)]
pub fn kl_divergence<'py>(
    p: &Bound<'py, PyAny>,
    q: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::axis)] axis: Option<isize>,
    #[pyo3(from_py_with = args::base)] base: Option<f64>,
    #[pyo3(from_py_with = args::normalize)] normalize: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    compute_kind(Kind::KlDivergence, p, Some(q), axis, base, normalize, out)
}

/// Jensen-Shannon divergence along an axis: the square of
/// :func:`scipy.spatial.distance.jensenshannon`.
///
/// With ``a = p / sum(p)``, ``b = q / sum(q)`` and ``m = (a + b) / 2``:
/// ``JS = (D(a || m) + D(b || m)) / 2``, divided by ``log(base)`` when given. Symmetric, and
/// between 0 and ``log(2)`` (1 in base 2). Normalising needs both sums inside the logarithm,
/// so each row is read twice: once for the sums, once for the logs.
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
///     Array of the input dtype and the broadcast shape without ``axis``, to write into.
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
#[pyo3(
    signature = (p, q, *, axis=Some(-1), base=None, normalize=true, out=None),
    text_signature = "(p, q, *, axis=-1, base=None, normalize=True, out=None)"
)]
pub fn jensen_shannon<'py>(
    p: &Bound<'py, PyAny>,
    q: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::axis)] axis: Option<isize>,
    #[pyo3(from_py_with = args::base)] base: Option<f64>,
    #[pyo3(from_py_with = args::normalize)] normalize: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    compute_kind(Kind::JensenShannon, p, Some(q), axis, base, normalize, out)
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
/// float32 or float64 (see [`Operands`]).
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

fn compute_kind<'py>(
    kind: Kind,
    p: &Bound<'py, PyAny>,
    q: Option<&Bound<'py, PyAny>>,
    axis: Option<isize>,
    base: Option<f64>,
    normalize: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let args = Args {
        kind,
        axis,
        log_base: log_base(base)?,
        normalize,
        out,
    };
    stream_hook!(p.py(), divergence_name(kind), [p, q], {
        "p" => p, "q" => q, "axis" => axis, "base" => base, "normalize" => normalize,
        "out" => out,
    });
    match inputs(p, q)? {
        (Precision::F32, pa, qa) => compute::<f32>(pa, qa, &args),
        (Precision::F64, pa, qa) => compute::<f64>(pa, qa, &args),
    }
}

/// Continues `init`, the state of everything seen before as one distribution (see
/// [`divergence::whole`]), with `p` (and `q`, broadcast against it) — a batch of a divergence
/// accumulator, reduced as `axis=None` reduces an array. A negative value raises `ValueError`
/// naming its position, and `init` is not used.
pub fn fold<'py>(
    kind: Kind,
    init: Partial,
    p: &Bound<'py, PyAny>,
    q: Option<&Bound<'py, PyAny>>,
) -> PyResult<Partial> {
    match inputs(p, q)? {
        (Precision::F32, pa, qa) => fold_typed::<f32>(kind, init, pa, qa),
        (Precision::F64, pa, qa) => fold_typed::<f64>(kind, init, pa, qa),
    }
}

fn fold_typed<'py, T: Float + Element + Reported>(
    kind: Kind,
    init: Partial,
    pa: Bound<'py, PyUntypedArray>,
    qa: Option<Bound<'py, PyUntypedArray>>,
) -> PyResult<Partial> {
    let ops = Operands::<T>::new(&pa, qa.as_ref())?;
    let nd = ops.shape.len();
    let rows = Rows::new(
        &ops.shape,
        [&ops.p_strides, &ops.q_strides, &vec![0; nd]],
        &vec![true; nd],
    );
    let (p, q) = (ops.pv.src(), ops.q);
    let state = run_detached(pa.py(), rows.row_len(), move |pool| {
        // SAFETY: the pointers come from views that stay alive (and borrowed) until this
        // function returns; `rows` is built from their own shapes and (broadcast) strides.
        unsafe { divergence::whole(kind, &rows, p, q, init, pool) }
    })?;
    ops.check(pa.py(), state.flags)?;
    Ok(state)
}

struct Args<'a, 'py> {
    kind: Kind,
    axis: Option<isize>,
    log_base: f64,
    normalize: bool,
    out: Option<&'a Bound<'py, PyAny>>,
}

/// `p` and `q` viewed where they lie, read as `T` whatever float type each is stored in, and
/// broadcast to one shape (`q` is `p` for entropy).
struct Operands<'py, T: Element> {
    pv: LoadView<'py, T>,
    qv: Option<LoadView<'py, T>>,
    shape: Vec<usize>,
    p_strides: Vec<isize>,
    q: Src<T>,
    q_strides: Vec<isize>,
}

impl<'py, T: Float + Element + Reported> Operands<'py, T> {
    fn new(
        pa: &Bound<'py, PyUntypedArray>,
        qa: Option<&Bound<'py, PyUntypedArray>>,
    ) -> PyResult<Self> {
        let pv = LoadView::<T>::new(pa, "p")?;
        let qv = qa.map(|qa| LoadView::<T>::new(qa, "q")).transpose()?;
        let shape = match &qv {
            None => pv.shape().to_vec(),
            Some(qv) => broadcast_shape(pv.shape(), qv.shape()).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "'p' of shape {} and 'q' of shape {} cannot be broadcast together",
                    shape_str(pv.shape()),
                    shape_str(qv.shape())
                ))
            })?,
        };
        let p_strides = pv.broadcast_strides(&shape, "p")?;
        let (q, q_strides) = match &qv {
            Some(qv) => (qv.src(), qv.broadcast_strides(&shape, "q")?),
            None => (pv.src(), p_strides.clone()),
        };
        Ok(Operands {
            pv,
            qv,
            shape,
            p_strides,
            q,
            q_strides,
        })
    }

    /// The `ValueError` naming the first negative value, if the kernel flagged one.
    fn check(&self, py: Python<'_>, part_flags: u32) -> PyResult<()> {
        let (pv, qv) = (&self.pv, &self.qv);
        if part_flags & flags::INPUT != 0 {
            let bad = pv.first_bad(|v: T| v < T::ZERO);
            return Err(domain_error(py, "p", "non-negative values", bad));
        }
        if let (true, Some(qv)) = (part_flags & flags::TARGET != 0, qv) {
            let bad = qv.first_bad(|v: T| v < T::ZERO);
            return Err(domain_error(py, "q", "non-negative values", bad));
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
    let shape = &ops.shape;
    let reduced = Reduced::along(args.axis, shape)?;
    let out_shape = &reduced.kept;

    let out_array: Option<Bound<'py, PyAny>> = match args.out {
        Some(out) => Some(out.clone()),
        None if out_shape.is_empty() => None,
        // Uninitialised, but the kernel writes every element before it is returned (on error
        // it is dropped unseen).
        None => Some(new_output::<T>(py, out_shape, false)?),
    };
    // A given `out` must not overlap `p` or `q` (a fresh one cannot).
    let mut inputs = Vec::new();
    if args.out.is_some() {
        inputs.push(ops.pv.operand("p"));
        inputs.extend(ops.qv.as_ref().map(|qv| qv.operand("q")));
    }
    let out_view = out_array
        .as_ref()
        .map(|o| ViewMut::<T>::output(o, args.out.is_some(), out_shape, T::NAME, &inputs))
        .transpose()?;
    let (out_ptr, out_strides) = match &out_view {
        Some(v) => (v.ptr, reduced.widen(&v.strides)),
        None => (std::ptr::null_mut(), vec![0; shape.len()]),
    };

    let rows = Rows::new(
        shape,
        [&ops.p_strides, &ops.q_strides, &out_strides],
        &reduced.mask,
    );
    let n = rows.rows() * rows.row_len();
    let (kind, normalize, log_base) = (args.kind, args.normalize, args.log_base);
    let (p, q, out_ptr) = (ops.pv.src(), ops.q, SendPtr(out_ptr));
    let part = run_detached(py, n, move |pool| {
        // The whole `SendPtr`, not its raw field, crosses to the worker.
        let out_ptr = out_ptr;
        // SAFETY: the pointers come from views that stay alive (and borrowed) until this
        // function returns; `rows` is built from their own shapes and (broadcast) strides;
        // `out` was checked to be writeable, self-disjoint and not overlapping the inputs.
        unsafe { divergence::divergence(kind, &rows, p, q, out_ptr.0, normalize, log_base, pool) }
    })?;
    ops.check(py, part.flags)?;
    Ok(match out_array {
        Some(out) => out,
        None => PyFloat::new(py, part.sum).into_any(),
    })
}
