//! Arrow columns as operands: the hooks that hand objects exposing the Arrow PyCapsule
//! interface (`__arrow_c_array__`, `__arrow_c_stream__`) to `crossent._arrow`, which reads
//! the C data interface's primitive layouts in place.
//!
//! Nothing here runs for an ndarray: the operand parser asks only about objects it would
//! otherwise hand to NumPy, and the functions' stream hook returns at once when every
//! per-element operand is an ndarray (one type check each), so a NumPy call costs what it did.

use numpy::PyUntypedArray;
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::kernels::divergence::Kind;
use crate::kernels::reduce::Partial;

/// The `crossent._arrow` module, imported once.
fn helper(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static HELPER: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    HELPER
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("crossent._arrow")?.unbind())
        })
        .map(|m| m.bind(py))
}

/// True if `obj` (not an ndarray) exposes either Arrow PyCapsule method.
pub fn exports_arrow(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = obj.py();
    Ok(obj.hasattr(intern!(py, "__arrow_c_array__"))?
        || obj.hasattr(intern!(py, "__arrow_c_stream__"))?)
}

/// The operand parser's hook: `obj` (not an ndarray, see [`exports_arrow`]) read in place
/// through its Arrow interface (a pandas object, which exports Arrow by converting, through
/// NumPy's `asarray` instead, which reads its array in place).
pub fn ndarray<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    let view = helper(obj.py())?.call_method1(intern!(obj.py(), "as_ndarray"), (obj, arg))?;
    Ok(view.cast_into::<PyUntypedArray>()?)
}

/// True if some operand is neither absent nor an ndarray and offers an Arrow stream: only
/// then do the hooks below call into Python.
pub fn any_stream(operands: &[Option<&Bound<'_, PyAny>>]) -> PyResult<bool> {
    for obj in operands.iter().flatten() {
        if obj.cast::<PyUntypedArray>().is_err()
            && obj.hasattr(intern!(obj.py(), "__arrow_c_stream__"))?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The functions' hook: when an operand is an Arrow stream, the call of `func` with `kwargs`
/// (all its arguments, by name) run chunk by chunk by `crossent._arrow.call_streamed`;
/// `None` when it is not streamed (the call goes on as usual).
pub fn call_streamed<'py>(
    py: Python<'py>,
    func: &str,
    kwargs: &Bound<'py, PyDict>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let result = helper(py)?.call_method1(intern!(py, "call_streamed"), (func, kwargs))?;
    Ok((!result.is_none()).then_some(result))
}

/// The accumulators' hook: when an operand of `update` is an Arrow stream, the state `init`
/// continued through each aligned batch (the operands in `func`'s order, `None` where
/// absent) by `fold`; `None` (nothing folded) when no operand is a stream. The caller holds
/// the accumulator's lock throughout and stores the state only at the end, so that a bad
/// value in any batch leaves the accumulator unchanged, as for one array.
pub fn fold_batches<'py>(
    py: Python<'py>,
    func: &str,
    operands: &[Option<&Bound<'py, PyAny>>],
    init: Partial,
    mut fold: impl FnMut(Partial, &[Option<Bound<'py, PyAny>>]) -> PyResult<Partial>,
) -> PyResult<Option<Partial>> {
    if !any_stream(operands)? {
        return Ok(None);
    }
    let ops = PyTuple::new(py, operands.iter().map(|o| o.cloned()))?;
    let batches = helper(py)?.call_method1(intern!(py, "batches"), (func, ops))?;
    if batches.is_none() {
        return Ok(None);
    }
    let mut state = init;
    for batch in batches.try_iter()? {
        let (start, items): (Bound<'py, PyAny>, Bound<'py, PyAny>) = batch?.extract()?;
        let items: Vec<Option<Bound<'py, PyAny>>> = items
            .try_iter()?
            .map(|item| item.map(|i| (!i.is_none()).then_some(i)))
            .collect::<PyResult<_>>()?;
        state = fold(state, &items).map_err(|e| relocate(py, e, &start))?;
    }
    Ok(Some(state))
}

/// `err`, raised by a batch that starts at row `start` of a chunked column, with the position
/// it names made that of the whole column (see `crossent._arrow.relocate`).
fn relocate(py: Python<'_>, err: PyErr, start: &Bound<'_, PyAny>) -> PyErr {
    let moved =
        helper(py).and_then(|h| h.call_method1(intern!(py, "relocate"), (err.value(py), start)));
    match moved {
        Ok(e) => PyErr::from_value(e),
        Err(_) => err,
    }
}

/// A batch's operand that is always present (`input`, `target`, `p`).
pub fn given<'a, 'py>(
    batch: &'a [Option<Bound<'py, PyAny>>],
    i: usize,
) -> PyResult<&'a Bound<'py, PyAny>> {
    batch.get(i).and_then(Option::as_ref).ok_or_else(|| {
        PyRuntimeError::new_err("crossent._arrow.batches left out an operand that was given")
    })
}

/// The Python function computing divergence `kind`.
pub fn divergence_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Entropy => "entropy",
        Kind::CrossEntropy => "cross_entropy",
        Kind::KlDivergence => "kl_divergence",
        Kind::JensenShannon => "jensen_shannon",
    }
}

/// True if every operand given is an ndarray: the one check a NumPy call pays for Arrow
/// streams (a type check per operand, inlined).
#[inline]
pub fn all_ndarrays(operands: &[Option<&Bound<'_, PyAny>>]) -> bool {
    operands
        .iter()
        .flatten()
        .all(|obj| obj.cast::<PyUntypedArray>().is_ok())
}

/// The rest of [`stream_hook!`], kept out of the functions' own code (a NumPy call never
/// gets here): when an operand is an Arrow stream, the call run chunk by chunk with the
/// arguments `kwargs` builds; `None` when none is.
#[cold]
#[inline(never)]
pub fn delegate<'py>(
    py: Python<'py>,
    func: &str,
    operands: &[Option<&Bound<'py, PyAny>>],
    kwargs: impl FnOnce() -> PyResult<Bound<'py, PyDict>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if !any_stream(operands)? {
        return Ok(None);
    }
    call_streamed(py, func, &kwargs()?)
}

/// The stream hook of a function: when one of `operands` is an Arrow stream, returns (from
/// the enclosing function) the result of the call run chunk by chunk, the arguments named
/// as in Python.
macro_rules! stream_hook {
    ($py:expr, $func:expr, [$($op:expr),* $(,)?], {$($key:literal => $val:expr),* $(,)?}) => {
        let operands = [$($crate::bindings::arrow::Opt::opt($op)),*];
        if !$crate::bindings::arrow::all_ndarrays(&operands) {
            let kwargs = || {
                let kwargs = ::pyo3::types::PyDict::new($py);
                $(kwargs.set_item($key, $val)?;)*
                Ok(kwargs)
            };
            if let Some(r) = $crate::bindings::arrow::delegate($py, $func, &operands, kwargs)? {
                return Ok(r.extract()?);
            }
        }
    };
}

pub(crate) use stream_hook;

/// An operand, given or optional.
pub trait Opt<'a, 'py> {
    fn opt(self) -> Option<&'a Bound<'py, PyAny>>;
}

impl<'a, 'py> Opt<'a, 'py> for &'a Bound<'py, PyAny> {
    fn opt(self) -> Option<&'a Bound<'py, PyAny>> {
        Some(self)
    }
}

impl<'a, 'py> Opt<'a, 'py> for Option<&'a Bound<'py, PyAny>> {
    fn opt(self) -> Option<&'a Bound<'py, PyAny>> {
        self
    }
}
