//! `set_num_threads` / `get_num_threads`, and [`Gil`], the [`Detach`] through which every
//! driver runs a call's kernels: the decision to release the GIL, and interruption by signals.

use std::cell::Cell;
use std::ffi::c_ulong;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pyo3::exceptions::{PyOverflowError, PyRuntimeWarning, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::kernels::drive::Detach;
use crate::kernels::view::ShapeError;
use crate::kernels::{cancel, pool};

/// Below this many elements the GIL is kept: releasing and re-taking it costs more than the
/// work itself.
pub const DETACH_MIN: usize = 1 << 12;

/// Runs a call's kernels for the drivers ([`crate::kernels::drive`]) from Python: with the
/// GIL held when the work is tiny ([`DETACH_MIN`] elements), otherwise without it, and
/// interruptible. A driver's [`ShapeError`] becomes a `ValueError`.
///
/// Interruptible: on the main thread (the only one Python delivers signals to), the engines
/// poll a cancellation hook ([`cancel`]) that re-attaches to the interpreter every
/// [`cancel::INTERVAL`] of the call to run its signal handlers (`Python::check_signals`). When
/// a handler raises (`KeyboardInterrupt` for Ctrl-C), the call's remaining blocks are skipped
/// and that exception is returned; outputs (`out=`) are then partly written. Other threads
/// never re-attach: a signal handler cannot run there, and waiting for the GIL would only
/// slow the call.
#[derive(Clone, Copy)]
pub struct Gil<'py>(pub Python<'py>);

impl Detach for Gil<'_> {
    type Error = PyErr;

    fn run<R: Send>(&self, n: usize, work: impl FnOnce() -> R + Send) -> PyResult<R> {
        let py = self.0;
        if n < DETACH_MIN {
            return Ok(work());
        }
        let interruptible = on_main_thread(py);
        let (result, raised) = py.detach(move || {
            if !interruptible {
                return (work(), None);
            }
            let raised: Rc<Cell<Option<PyErr>>> = Rc::default();
            let sink = raised.clone();
            // `try_attach`: an interpreter shutting down cannot be attached to (nor signalled).
            let check = move || {
                Python::try_attach(|py| match py.check_signals() {
                    Ok(()) => false,
                    Err(e) => {
                        sink.set(Some(e));
                        true
                    }
                })
                .unwrap_or(false)
            };
            let result = cancel::with_hook(Box::new(check), work);
            (result, raised.take())
        });
        match raised {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }

    fn reject(&self, e: ShapeError) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

extern "C" {
    /// CPython's identifier of the calling thread (`threading.get_ident()`); part of the
    /// stable ABI.
    fn PyThread_get_thread_ident() -> c_ulong;
}

/// True if this is Python's main thread, the one that runs signal handlers. The main
/// thread's identifier is looked up once per process (a `fork()`ed child has its own).
fn on_main_thread(py: Python<'_>) -> bool {
    static PID: AtomicU32 = AtomicU32::new(0);
    static MAIN: AtomicU64 = AtomicU64::new(0);
    // SAFETY: a plain query of the calling thread's identifier, with the GIL held.
    // (`c_ulong` is 32 bits wide on Windows, where the conversion is not the identity.)
    #[allow(clippy::useless_conversion)]
    let me = u64::from(unsafe { PyThread_get_thread_ident() });
    let pid = std::process::id();
    if PID.load(Ordering::Acquire) != pid {
        let main = py.import("threading").and_then(|t| {
            t.call_method0("main_thread")?
                .getattr("ident")?
                .extract::<u64>()
        });
        let Ok(main) = main else {
            // Not knowable (e.g. while the interpreter shuts down): check signals anyway;
            // on another thread that does nothing.
            return true;
        };
        MAIN.store(main, Ordering::Relaxed);
        PID.store(pid, Ordering::Release);
        return me == main;
    }
    me == MAIN.load(Ordering::Relaxed)
}

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
