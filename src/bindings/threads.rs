//! `set_num_threads` / `get_num_threads`, and the thresholds that decide where work runs.

use pyo3::exceptions::{PyOverflowError, PyRuntimeWarning, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::kernels::pool;

/// Below this many elements the work stays on the calling thread: waking the pool costs more
/// than it saves.
pub const PARALLEL_MIN: usize = 1 << 16;

/// Below this many elements the GIL is kept: releasing and re-taking it costs more than the
/// work itself.
pub const DETACH_MIN: usize = 1 << 12;

/// Set the number of threads crossent computes with.
///
/// The default is the number of CPUs this process may use, or the ``CROSSENT_NUM_THREADS``
/// environment variable when it is set at import; at most 1024 (larger counts are capped).
/// Results are bit-identical for every thread count. Safe to call while other threads
/// compute: calls already running finish on the pool they started with, later calls use the
/// new count.
///
/// >>> import crossent
/// >>> crossent.set_num_threads(2)
/// >>> crossent.get_num_threads()
/// 2
#[pyfunction]
pub fn set_num_threads(#[pyo3(from_py_with = thread_count)] n: usize) {
    pool::set_num_threads(n);
}

/// Reads `n` of `set_num_threads`: a positive integer (or anything with `__index__`, such as
/// a NumPy integer; not a bool, as for every integer argument); counts beyond
/// [`pool::MAX_THREADS`], however large, are capped there.
fn thread_count(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    let wrong_type = || {
        PyTypeError::new_err(format!(
            "'n' must be an integer number of threads, got {}",
            super::args::describe(obj)
        ))
    };
    // `True` would otherwise pass as 1 (a flag passed by mistake).
    if obj.is_instance_of::<PyBool>() {
        return Err(wrong_type());
    }
    let positive = || {
        PyValueError::new_err(format!(
            "'n' must be a positive number of threads, got {obj}"
        ))
    };
    match obj.extract::<i64>() {
        Ok(n) if n >= 1 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Ok(_) => Err(positive()),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
            if obj.gt(0)? {
                Ok(usize::MAX)
            } else {
                Err(positive())
            }
        }
        Err(_) => Err(wrong_type()),
    }
}

/// The number of threads crossent computes with (see :func:`set_num_threads`).
///
/// >>> import crossent
/// >>> crossent.get_num_threads() >= 1
/// True
#[pyfunction]
pub fn get_num_threads() -> usize {
    pool::num_threads()
}

/// Reads `CROSSENT_NUM_THREADS` at import; warns (and uses the default) if it is not a
/// positive integer.
pub fn init_from_env(py: Python<'_>) -> PyResult<()> {
    if let Ok(value) = std::env::var("CROSSENT_NUM_THREADS") {
        if pool::parse_env(Some(&value)).is_none() {
            let msg = format!(
                "CROSSENT_NUM_THREADS={value:?} is not a positive integer; using {} threads",
                pool::num_threads()
            );
            let category = py.get_type::<PyRuntimeWarning>();
            PyErr::warn(py, &category, &std::ffi::CString::new(msg)?, 1)?;
        }
    }
    pool::num_threads();
    Ok(())
}

/// Reads `CROSSENT_ISA` at import (see [`crate::kernels::isa`]); warns if it names no known
/// instruction set (the best the CPU has is used then).
pub fn isa_from_env(py: Python<'_>) -> PyResult<()> {
    use crate::kernels::isa::{self, Isa};
    if let Ok(value) = std::env::var("CROSSENT_ISA") {
        if Isa::parse(&value).is_none() {
            let msg = format!(
                "CROSSENT_ISA={value:?} is not one of 'avx512', 'avx2', 'generic'; using {:?}",
                isa::active().name()
            );
            let category = py.get_type::<PyRuntimeWarning>();
            PyErr::warn(py, &category, &std::ffi::CString::new(msg)?, 1)?;
        }
    }
    isa::active();
    Ok(())
}
