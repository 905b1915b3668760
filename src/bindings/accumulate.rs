//! Streaming accumulators: a loss over data that arrives in batches.
//!
//! Each accumulator holds a [`State`]: one [`Partial`] — the very state the kernels fold their
//! blocks, rows and chunks into — and the rule that turns it into the result. `update`
//! continues the fold with the batch (the kernels' `*_from` entry points: the batch's blocks
//! are merged into the state one by one, as one call merges its own), so batches cut where a
//! call's blocks are cut give the very bits of one call on the concatenated arrays; `merge`
//! adds another accumulator's partial (partitions computed elsewhere: other processes, Dask
//! chunks), after checking that its fixed parameters (the `params` pickling stores) are this
//! one's.
//!
//! Threads: the partial is the only mutable state, behind the accumulator's own lock
//! ([`Shared`]); the classes are `frozen` (no borrow flags of PyO3's, which raised "Already
//! borrowed" at a second thread). `update` holds the lock for the whole fold, during which it
//! releases the GIL; every other method holds it for a copy. A thread waits for the lock with
//! the GIL released (and never takes the GIL's place in an order that could deadlock: a
//! holder may need the GIL to finish, a waiter never holds it), checking for signals every
//! 50 ms. A holder from a parent process (a fork while an update ran) counts as gone.
//!
//! Pickling stores `(copyreg.__newobj_ex__, (class, (), params), partial)`: `params` are the
//! constructor's own keyword arguments, so unpickling rebuilds (and validates) the fixed
//! parameters exactly as a constructor call does, and `__setstate__` restores the partial
//! (Python floats carry all 64 bits).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::PyClass;

use super::args;
use super::arrays::{ndarray_as, shape_str};
use super::arrow;
use super::bce;
use super::divergence::{self, log_base};
use super::groups::{self as grouped, Grouped};
use super::nan_policy::nan_policy;
use super::reduction::{scalar_reduction, Reduction};
use super::softmax::{self, check_smoothing};
use crate::kernels::bce::Kind as BceKind;
use crate::kernels::divergence::{self as divergence_kernel, Finish, Kind};
use crate::kernels::groups::GroupSums;
use crate::kernels::nan::NanPolicy;
use crate::kernels::pool;
use crate::kernels::reduce::Partial;

/// What a mean divides the loss sum by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeanOver {
    /// The number of elements ([`Partial::count`]): binary cross-entropy.
    Count,
    /// The weight sum ([`Partial::weight`]): PyTorch's weighted mean of softmax cross-entropy.
    Weight,
}

/// How `result()` turns the folded partial into the loss.
pub trait Rule: Copy {
    fn result(&self, part: &Partial) -> f64;

    /// The partial of `a`'s elements followed by `b`'s.
    fn merge(&self, a: Partial, b: Partial) -> Partial {
        a.merge(b)
    }

    /// The `sum` getter: the loss sum (for a divergence, the sum of its element terms).
    fn sum(&self, part: &Partial) -> f64 {
        part.sum
    }

    /// How a per-group result is finished (`groups=`): the reduction, and whether a mean
    /// divides by the weight sum; `None` for losses without groups.
    fn per_group(&self) -> Option<(Reduction, bool)> {
        None
    }
}

/// The losses that reduce per-element (per-row) losses: their mean or their sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reduce {
    /// [`Reduction::Mean`] or [`Reduction::Sum`] (parsed with [`Reduction::SCALAR`]).
    pub reduction: Reduction,
    pub over: MeanOver,
}

impl Rule for Reduce {
    /// The sum, or the mean: the sum over the count or the weight (NaN when that is 0, as a
    /// call on an empty array gives); over the sample weights' sum when the batches had them
    /// ([`SAMPLE_WEIGHTED`]).
    fn result(&self, part: &Partial) -> f64 {
        match (self.reduction, self.over) {
            (Reduction::Mean, _) if part.flags & SAMPLE_WEIGHTED != 0 => part.sum / part.weight,
            (Reduction::Mean, MeanOver::Count) => part.sum / part.count as f64,
            (Reduction::Mean, MeanOver::Weight) => part.sum / part.weight,
            _ => part.sum,
        }
    }

    fn per_group(&self) -> Option<(Reduction, bool)> {
        Some((self.reduction, self.over == MeanOver::Weight))
    }
}

impl Rule for Finish {
    /// The divergence of everything seen as one distribution: the kernel's own finish.
    fn result(&self, part: &Partial) -> f64 {
        self.value(part)
    }

    /// The kernel's merge: the two sums are taken against one reference exponent.
    fn merge(&self, a: Partial, b: Partial) -> Partial {
        divergence_kernel::merge_states(self.kind, a, b)
    }

    fn sum(&self, part: &Partial) -> f64 {
        self.terms_sum(part)
    }
}

/// The mark of an accumulator's partial whose batches came with sample weights
/// (`sample_weight=`): its `weight` is their sum, which its mean divides by. A bit of
/// [`Partial::flags`] above every kernel's, set and read here only: it is taken off the state
/// a batch is folded into (the kernels and the per-group fold stop at any flag) and put back
/// after.
pub const SAMPLE_WEIGHTED: u32 = 1 << 24;

/// Whether `part` (an accumulator's state) has seen batches `with` sample weights or without:
/// `None` while it has seen neither (no row counted and no mark).
pub(crate) fn mode_of(part: &Partial) -> Option<bool> {
    if part.flags & SAMPLE_WEIGHTED != 0 {
        Some(true)
    } else if part.count > 0 {
        Some(false)
    } else {
        None
    }
}

/// The `ValueError` of batches (or states, `what`) with and without sample weights mixed in
/// one accumulator `class`: their means divide by different sums.
pub(crate) fn mixed_modes(class: &str, what: &str, seen: bool) -> PyErr {
    let (had, has) = if seen {
        ("with", "without")
    } else {
        ("without", "with")
    };
    PyValueError::new_err(format!(
        "'sample_weight' must be given to every update of a {class} or to none: its state \
         comes from batches {had} it, {what} {has} it (the mean divides by the sum of the \
         sample weights with them, by the count or PyTorch's weight sum without); reset() it, \
         or use another accumulator"
    ))
}

/// Runs `update` (which folds one batch into the partial it is given, or fails and leaves
/// it) on the accumulator's state `part`, after checking that the batch (`weighted`: with
/// sample weights) is of the state's kind ([`mode_of`]), with [`SAMPLE_WEIGHTED`] taken off
/// for the fold and set after it when `weighted`.
fn with_mode(
    part: &mut Partial,
    weighted: bool,
    class: &str,
    update: impl FnOnce(&mut Partial) -> PyResult<()>,
) -> PyResult<()> {
    if let Some(seen) = mode_of(part) {
        if seen != weighted {
            return Err(mixed_modes(class, "this batch comes", seen));
        }
    }
    let mut plain = Partial {
        flags: part.flags & !SAMPLE_WEIGHTED,
        ..*part
    };
    update(&mut plain)?;
    if weighted {
        plain.flags |= SAMPLE_WEIGHTED;
    }
    *part = plain;
    Ok(())
}

/// A grouped update of a binary accumulator (`args.kind` picks the function): any operand
/// may be an Arrow stream, folded batch by batch into one copy of the per-group state.
fn bce_groups_update<'py>(
    groups: &Grouped,
    part: &mut Partial,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    args: &grouped::BceArgs<'_, 'py>,
    codes: &Bound<'py, PyAny>,
) -> PyResult<()> {
    let g = grouped::Groups { codes, n: groups.n };
    let ops = [
        Some(input),
        Some(target),
        args.weight,
        args.sample_weight,
        Some(codes),
    ];
    let name = match args.kind {
        BceKind::Probabilities => "binary_cross_entropy",
        BceKind::Logits => "binary_cross_entropy_with_logits",
    };
    groups.update(part, |state, init| {
        if let Some(s) = arrow::fold_batches(input.py(), name, &ops, init, |s, b| {
            let args = grouped::BceArgs {
                weight: b[2].as_ref(),
                sample_weight: b[3].as_ref(),
                ..*args
            };
            let (x, y) = (arrow::given(b, 0)?, arrow::given(b, 1)?);
            let g = grouped::Groups {
                codes: arrow::given(b, 4)?,
                ..g
            };
            grouped::bce_fold(state, s, x, y, &args, &g)
        })? {
            return Ok(s);
        }
        grouped::bce_fold(state, init, input, target, args, &g)
    })
}

/// A value that the threads sharing an accumulator take turns on (module doc): a lock word
/// holding the [`pool::thread_token`] of the thread that holds it (0: free).
pub struct Shared<T> {
    holder: AtomicU64,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a `SharedGuard`, i.e. by the thread that holds the
// lock word.
unsafe impl<T: Send> Sync for Shared<T> {}

/// How long a waiting thread stays without the GIL before it looks for signals
/// (`KeyboardInterrupt`) and waits again.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

impl<T: Send> Shared<T> {
    fn new(value: T) -> Self {
        Shared {
            holder: AtomicU64::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock for thread `me` if it is free or held by a thread of a parent process.
    fn try_acquire(&self, me: u64) -> bool {
        match self
            .holder
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(held) if pool::token_is_stale(held) => self
                .holder
                .compare_exchange(held, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// The value, once this thread holds the lock; waits (without the GIL) while another
    /// thread holds it. `class` names the accumulator in the error raised when the thread
    /// already holds it (a method called from inside its own `update`, e.g. by an
    /// `__array__` method of a batch).
    pub(crate) fn lock(&self, py: Python<'_>, class: &str) -> PyResult<SharedGuard<'_, T>> {
        let me = pool::thread_token();
        if self.try_acquire(me) {
            return Ok(SharedGuard { shared: self, me });
        }
        if self.holder.load(Ordering::Relaxed) == me {
            return Err(PyRuntimeError::new_err(format!(
                "this {class} is in use by its own update() on this thread (called again from \
                 inside it, e.g. by a batch's __array__ method)"
            )));
        }
        loop {
            let acquired = py.detach(|| {
                let deadline = Instant::now() + SIGNAL_CHECK;
                let mut pause = Duration::from_micros(10);
                for spin in 0u32.. {
                    if self.try_acquire(me) {
                        return true;
                    }
                    if Instant::now() >= deadline {
                        return false;
                    }
                    if spin < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(1));
                    }
                }
                false
            });
            if acquired {
                return Ok(SharedGuard { shared: self, me });
            }
            py.check_signals()?;
        }
    }
}

/// The value while this thread holds the lock; dropping it releases the lock.
pub struct SharedGuard<'a, T> {
    shared: &'a Shared<T>,
    me: u64,
}

impl<T> Deref for SharedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this thread holds the lock for the guard's lifetime.
        unsafe { &*self.shared.value.get() }
    }
}

impl<T> DerefMut for SharedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this thread holds the lock for the guard's lifetime, and `&mut self` makes
        // this guard the only path to the value meanwhile: no other reference to it exists.
        unsafe { &mut *self.shared.value.get() }
    }
}

impl<T> Drop for SharedGuard<'_, T> {
    fn drop(&mut self) {
        // Only if still ours (a child process may have taken over a parent's holder).
        let _ =
            self.shared
                .holder
                .compare_exchange(self.me, 0, Ordering::Release, Ordering::Relaxed);
    }
}

/// The state of an accumulator: the rule that finishes it (fixed) and the folded partial
/// (shared by threads, see [`Shared`]).
pub struct State<R: Rule> {
    pub rule: R,
    pub part: Shared<Partial>,
}

impl<R: Rule> State<R> {
    pub(crate) fn new(rule: R) -> Self {
        State {
            rule,
            part: Shared::new(Partial::EMPTY),
        }
    }
}

/// `(sum, weight, count, Σp, Σq)`: the partial as pickling stores it (an accumulator's state
/// has no domain-error flags: a batch that raises one is not folded in), with a sixth item,
/// `True`, when its batches had sample weights ([`SAMPLE_WEIGHTED`]).
pub(crate) fn partial_to_tuple<'py>(
    part: &Partial,
    py: Python<'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    let [mass_p, mass_q] = part.mass;
    if part.flags & SAMPLE_WEIGHTED != 0 {
        return (part.sum, part.weight, part.count, mass_p, mass_q, true).into_pyobject(py);
    }
    (part.sum, part.weight, part.count, mass_p, mass_q).into_pyobject(py)
}

/// The partial [`partial_to_tuple`] stored; anything else is a `ValueError`.
pub(crate) fn partial_from_tuple(state: &Bound<'_, PyAny>) -> PyResult<Partial> {
    let bad = || PyValueError::new_err("'state' is not an accumulator state");
    let tuple = state.cast::<PyTuple>().map_err(|_| bad())?;
    if tuple.len() != 5 && tuple.len() != 6 {
        return Err(bad());
    }
    let float = |i: usize| -> PyResult<f64> { tuple.get_item(i)?.extract().map_err(|_| bad()) };
    let count: u64 = tuple.get_item(2)?.extract().map_err(|_| bad())?;
    let weighted = tuple.len() == 6 && tuple.get_item(5)?.extract::<bool>().map_err(|_| bad())?;
    Ok(Partial {
        sum: float(0)?,
        weight: float(1)?,
        count,
        mass: [float(3)?, float(4)?],
        flags: if weighted { SAMPLE_WEIGHTED } else { 0 },
        ..Partial::EMPTY
    })
}

/// What every accumulator class offers the shared methods.
pub trait AsState {
    /// The folded partial.
    fn shared(&self) -> &Shared<Partial>;
    /// The constructor's keyword arguments that rebuild this accumulator without its data:
    /// what pickling stores besides the partial, and what `repr` shows.
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>>;
    /// The per-group state (`groups=`), for the accumulators that have one.
    fn grouped(&self) -> Option<&Grouped> {
        None
    }
}

/// The partial and the constructor parameters of `other`, which must be an accumulator of
/// class `C`.
pub(crate) fn state_of<
    'py,
    C: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + AsState + Sync,
>(
    other: &Bound<'py, PyAny>,
    class: &str,
) -> PyResult<(Partial, Option<GroupSums>, Bound<'py, PyDict>)> {
    let other = other.cast::<C>().map_err(|_| {
        PyTypeError::new_err(format!(
            "'other' must be a {class}, got {}",
            args::type_name(other)
        ))
    })?;
    let py = other.py();
    let theirs = other.get();
    let part = theirs.shared().lock(py, class)?;
    let groups = theirs.grouped().and_then(Grouped::snapshot);
    Ok((*part, groups, theirs.params(py)?))
}

/// `Ok` if another accumulator's constructor parameters `theirs` equal `mine`, else a
/// `ValueError` naming the first parameter that differs: the two states were folded (or are
/// finished) by different losses, and their sum would be neither's. Fixed arrays compare by
/// shape and value (NaN equal to NaN).
pub(crate) fn same_params(mine: &Bound<'_, PyDict>, theirs: &Bound<'_, PyDict>) -> PyResult<()> {
    let py = mine.py();
    for (key, a) in mine.iter() {
        let b = theirs
            .get_item(&key)?
            .unwrap_or_else(|| py.None().into_bound(py));
        let same = if a.is_none() || b.is_none() {
            a.is_none() && b.is_none()
        } else if a.hasattr("shape")? {
            let kwargs = PyDict::new(py);
            kwargs.set_item("equal_nan", true)?;
            py.import("numpy")?
                .call_method("array_equal", (&a, &b), Some(&kwargs))?
                .is_truthy()?
        } else {
            a.eq(&b)?
        };
        if !same {
            return Err(PyValueError::new_err(format!(
                "cannot merge: '{key}' differs ({} here, {} in 'other')",
                shown(&a)?,
                shown(&b)?
            )));
        }
    }
    Ok(())
}

/// A parameter's value as `repr` and messages show it: its `repr`, an array's as a list.
fn shown(value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(if value.hasattr("tolist")? {
        value.call_method0("tolist")?.repr()?.to_string()
    } else {
        value.repr()?.to_string()
    })
}

/// `Class(param=value, ...) <count=..., sum=...>`, parameters that are `None` left out and
/// arrays shown as lists.
pub(crate) fn repr(class: &str, params: &Bound<'_, PyDict>, part: &Partial) -> PyResult<String> {
    let mut parts = Vec::new();
    for (key, value) in params.iter() {
        if value.is_none() {
            continue;
        }
        parts.push(format!("{key}={}", shown(&value)?));
    }
    Ok(format!(
        "{class}({}) <count={}, sum={:?}>",
        parts.join(", "),
        part.count,
        part.sum
    ))
}

/// A fixed parameter array (`pos_weight`, class `weight`): a read-only float64 copy, so that
/// later changes to the caller's array do not reach the accumulator; `None` for `None`.
fn fixed_array(obj: Option<&Bound<'_, PyAny>>, arg: &str) -> PyResult<Option<Py<PyAny>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let copy = ndarray_as::<f64>(obj, arg)?.call_method0("copy")?;
    let kwargs = PyDict::new(obj.py());
    kwargs.set_item("write", false)?;
    copy.call_method("setflags", (), Some(&kwargs))?;
    Ok(Some(copy.unbind()))
}

/// One `#[pymethods]` block: the class's own methods (`$own`) plus those every accumulator
/// shares: `merge`, `reset`, `result`, `count` (documented by `$count`), `sum`, pickling and
/// `repr`; with `reduction`, also the `reduction` getter of the classes whose state is a
/// [`State<Reduce>`].
macro_rules! accumulator_methods {
    ($class:ident, reduction, $count:literal, { $($own:tt)* }) => {
        accumulator_methods!($class, $count, {
            /// ``"mean"`` or ``"sum"``.
            #[getter]
            fn reduction(&self) -> &'static str {
                self.state.rule.reduction.name()
            }

            $($own)*
        });
    };
    ($class:ident, $count:literal, { $($own:tt)* }) => {
        #[pymethods]
        impl $class {
            $($own)*

            /// Adds the state of ``other`` (an accumulator of the same class, e.g. one that
            /// saw another part of the data) to this one. ``other`` is left unchanged.
            ///
            /// ``other`` must have been built with the same parameters (every constructor
            /// argument, arrays by value); otherwise ``ValueError`` names the first that
            /// differs and neither accumulator changes.
            fn merge(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<()> {
                // Their state is copied first (under their lock), then added under ours: one
                // lock at a time, so two threads merging two accumulators crosswise cannot
                // deadlock, and `acc.merge(acc)` doubles the state.
                let (theirs, their_groups, their_params) =
                    state_of::<$class>(other, stringify!($class))?;
                same_params(&self.params(py)?, &their_params)?;
                let mut part = self.state.part.lock(py, stringify!($class))?;
                let mode = $crate::bindings::accumulate::mode_of;
                if let (Some(mine), Some(theirs)) = (mode(&part), mode(&theirs)) {
                    if mine != theirs {
                        let class = stringify!($class);
                        let what = "'other' comes from batches";
                        return Err($crate::bindings::accumulate::mixed_modes(class, what, mine));
                    }
                }
                if let Some(g) = self.grouped() {
                    g.merge(their_groups.as_ref(), part.count, theirs.count)?;
                }
                *part = self.state.rule.merge(*part, theirs);
                Ok(())
            }

            /// Forgets every batch seen: back to the state of a new accumulator.
            fn reset(&self, py: Python<'_>) -> PyResult<()> {
                let mut part = self.state.part.lock(py, stringify!($class))?;
                if let Some(g) = self.grouped() {
                    g.reset()?;
                }
                *part = Partial::EMPTY;
                Ok(())
            }

            /// The loss over everything seen so far: what one call on the concatenated
            /// batches returns (see the class documentation); per group (a float64 array)
            /// when the updates were grouped.
            fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let part = self.state.part.lock(py, stringify!($class))?;
                if let (Some(g), Some((reduction, over_weight))) =
                    (self.grouped(), self.state.rule.per_group())
                {
                    if let Some(values) = g.result(py, reduction, over_weight) {
                        return Ok(values);
                    }
                }
                Ok(pyo3::types::PyFloat::new(py, self.state.rule.result(&part)).into_any())
            }

            #[doc = $count]
            #[getter]
            fn count(&self, py: Python<'_>) -> PyResult<u64> {
                Ok(self.state.part.lock(py, stringify!($class))?.count)
            }

            /// The loss sum seen so far, accumulated in float64 (for a divergence: the sum of
            /// its element terms, before normalisation).
            #[getter]
            fn sum(&self, py: Python<'_>) -> PyResult<f64> {
                let part = *self.state.part.lock(py, stringify!($class))?;
                Ok(self.state.rule.sum(&part))
            }

            /// Pickles as ``(copyreg.__newobj_ex__, (class, (), parameters), partial state)``.
            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
                let py = slf.py();
                let me = slf.get();
                let part = me.state.part.lock(py, stringify!($class))?;
                let newobj = py.import("copyreg")?.getattr("__newobj_ex__")?;
                let args = (slf.get_type(), PyTuple::empty(py), me.params(py)?);
                let plain = partial_to_tuple(&part, py)?;
                // Per-group state, when there is some: `(partial, (sums, counts, weights))`.
                match me.grouped().map(|g| g.to_pickle(py)).transpose()?.flatten() {
                    Some(groups) => (newobj, args, (plain, groups)).into_pyobject(py),
                    None => (newobj, args, plain).into_pyobject(py),
                }
            }

            fn __setstate__(&self, state: &Bound<'_, PyAny>) -> PyResult<()> {
                let mut part = self.state.part.lock(state.py(), stringify!($class))?;
                let grouped = state.cast::<PyTuple>().is_ok_and(|t| t.len() == 2);
                match self.grouped() {
                    Some(g) if grouped => {
                        let new = partial_from_tuple(&state.get_item(0)?)?;
                        g.from_pickle(&state.get_item(1)?)?;
                        *part = new;
                    }
                    Some(g) => {
                        let new = partial_from_tuple(state)?;
                        g.reset()?;
                        *part = new;
                    }
                    None => *part = partial_from_tuple(state)?,
                }
                Ok(())
            }

            fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                let part = *self.state.part.lock(py, stringify!($class))?;
                let part = Partial {
                    sum: self.state.rule.sum(&part),
                    ..part
                };
                repr(stringify!($class), &self.params(py)?, &part)
            }
        }
    };
}

pub(crate) use accumulator_methods;

/// Streaming :func:`crossent.binary_cross_entropy` over batches.
///
/// ``update(input, target, weight=None)`` adds a batch (arguments as for
/// :func:`crossent.binary_cross_entropy`); ``result()`` gives the loss over every element
/// seen. When every batch but the last is C-contiguous and holds a multiple of
/// ``crossent.BLOCK`` elements, the result has exactly the bits of one call on the
/// concatenated arrays; with other cuts it agrees to about 1e-12 relative (only the order of
/// additions differs). ``merge(other)`` adds another accumulator's state, ``reset()`` starts
/// over; accumulators pickle and copy exactly.
///
/// One accumulator may be shared by threads: its methods take turns on an internal lock
/// (``update`` computes without holding the GIL while the others wait), so its state is
/// always that of the calls in some serial order.
///
/// Parameters
/// ----------
/// reduction : {"mean", "sum"}
///     What ``result()`` returns: the mean over all elements seen, or the sum.
/// nan_policy : {"propagate", "omit", "raise"}, default "propagate"
///     What ``update`` does with a NaN operand, as the function does: ``"omit"`` leaves the
///     element out of the sum, of ``count`` and of the sample weights' sum; ``"raise"``
///     raises :class:`crossent.DomainError` and leaves the accumulator unchanged.
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> p = np.array([0.9, 0.2, 0.6, 0.7])
/// >>> y = np.array([1, 0, 1, 1])
/// >>> acc = crossent.BinaryCrossEntropyAccumulator()
/// >>> acc.update(p[:3], y[:3])
/// >>> acc.update(p[3:], y[3:])
/// >>> acc.count
/// 4
/// >>> round(acc.result(), 6)
/// 0.299001
/// >>> acc.result() == crossent.binary_cross_entropy(p, y)
/// True
#[pyclass(module = "crossent._core", frozen)]
pub struct BinaryCrossEntropyAccumulator {
    state: State<Reduce>,
    groups: Grouped,
    nan: NanPolicy,
}

/// Names the NaN policy among an accumulator's parameters when it is not the default (the
/// repr of a plain accumulator stays as it was).
fn set_nan_policy(params: &Bound<'_, PyDict>, nan: NanPolicy) -> PyResult<()> {
    if nan != NanPolicy::Propagate {
        params.set_item("nan_policy", nan.name())?;
    }
    Ok(())
}

/// The state of a new accumulator of the per-element losses.
fn per_element(reduction: Reduction) -> State<Reduce> {
    State::new(Reduce {
        reduction,
        over: MeanOver::Count,
    })
}

impl AsState for BinaryCrossEntropyAccumulator {
    fn shared(&self) -> &Shared<Partial> {
        &self.state.part
    }
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let params = PyDict::new(py);
        params.set_item("reduction", self.state.rule.reduction.name())?;
        params.set_item("n_groups", self.groups.n)?;
        set_nan_policy(&params, self.nan)?;
        Ok(params)
    }
    fn grouped(&self) -> Option<&Grouped> {
        Some(&self.groups)
    }
}

accumulator_methods!(
    BinaryCrossEntropyAccumulator,
    reduction,
    "Number of elements seen.",
    {
        #[new]
        #[pyo3(
            signature = (*, reduction=Reduction::Mean, n_groups=None, nan_policy=NanPolicy::Propagate),
            text_signature = "(*, reduction=\"mean\", n_groups=None, nan_policy=\"propagate\")"
        )]
        fn new(
            #[pyo3(from_py_with = scalar_reduction)] reduction: Reduction,
            #[pyo3(from_py_with = grouped::n_groups)] n_groups: Option<usize>,
            #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
        ) -> PyResult<Self> {
            Ok(Self {
                state: per_element(reduction),
                groups: Grouped::new(n_groups, false)?,
                nan: nan_policy,
            })
        }

        /// Adds one batch: ``input`` probabilities, ``target`` of the same shape, optional
        /// ``weight`` broadcast to ``input``'s shape, and ``groups`` (integer codes, one per
        /// element) when the loss is kept per group, and ``sample_weight`` broadcast to
        /// ``input``'s shape (given to every update or to none: the mean then divides by
        /// their sum). A batch with a value out of range raises ``ValueError`` and leaves the
        /// accumulator unchanged.
        #[pyo3(signature = (input, target, *, weight=None, sample_weight=None, groups=None))]
        fn update(
            &self,
            input: &Bound<'_, PyAny>,
            target: &Bound<'_, PyAny>,
            weight: Option<&Bound<'_, PyAny>>,
            sample_weight: Option<&Bound<'_, PyAny>>,
            groups: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<()> {
            let class = "BinaryCrossEntropyAccumulator";
            let mut part = self.state.part.lock(input.py(), class)?;
            with_mode(&mut part, sample_weight.is_some(), class, |part| {
                if let Some(codes) = groups {
                    let args = grouped::BceArgs {
                        kind: BceKind::Probabilities,
                        weight,
                        pos_weight: None,
                        sample_weight,
                        nan: self.nan,
                    };
                    return bce_groups_update(&self.groups, part, input, target, &args, codes);
                }
                self.groups.check_plain()?;
                let ops = [Some(input), Some(target), weight, sample_weight];
                let name = "binary_cross_entropy";
                if let Some(s) = arrow::fold_batches(input.py(), name, &ops, *part, |s, b| {
                    let (x, y) = (arrow::given(b, 0)?, arrow::given(b, 1)?);
                    let (w, sw) = (b[2].as_ref(), b[3].as_ref());
                    bce::fold(BceKind::Probabilities, self.nan, s, x, y, w, None, sw)
                })? {
                    *part = s;
                    return Ok(());
                }
                *part = bce::fold(
                    BceKind::Probabilities,
                    self.nan,
                    *part,
                    input,
                    target,
                    weight,
                    None,
                    sample_weight,
                )?;
                Ok(())
            })
        }

        /// Elements seen per group (an int64 array), or ``None`` when not grouped.
        #[getter]
        fn counts<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
            let _part = self.state.part.lock(py, "BinaryCrossEntropyAccumulator")?;
            Ok(self.groups.counts(py))
        }

        /// What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``.
        #[getter]
        fn nan_policy(&self) -> &'static str {
            self.nan.name()
        }

        /// The fixed number of groups, or ``None`` (the state grows with the codes seen).
        #[getter]
        fn n_groups(&self) -> Option<usize> {
            self.groups.n
        }
    }
);

/// Streaming :func:`crossent.binary_cross_entropy_with_logits` over batches.
///
/// As :class:`BinaryCrossEntropyAccumulator`, on logits. ``pos_weight`` (the weight of the
/// positive class, typically one value per class along the last axis) is fixed for every
/// batch, as in ``torch.nn.BCEWithLogitsLoss``; per-element ``weight`` goes with each batch.
///
/// One accumulator may be shared by threads: its methods take turns on an internal lock
/// (``update`` computes without holding the GIL while the others wait), so its state is
/// always that of the calls in some serial order.
///
/// Parameters
/// ----------
/// reduction : {"mean", "sum"}
///     What ``result()`` returns.
/// pos_weight : array_like, optional
///     Broadcast to each batch's shape (kept as a read-only float64 copy).
/// nan_policy : {"propagate", "omit", "raise"}, default "propagate"
///     As for :class:`BinaryCrossEntropyAccumulator`.
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> x = np.array([[2.0, -1.0], [0.5, 3.0]])
/// >>> y = np.array([[1, 0], [1, 1]], dtype=np.uint8)
/// >>> acc = crossent.BinaryCrossEntropyWithLogitsAccumulator(pos_weight=[2.0, 1.0])
/// >>> for row in range(2):
/// ...     acc.update(x[row:row + 1], y[row:row + 1])
/// >>> acc.result() == crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0, 1.0])
/// True
/// >>> round(acc.result(), 6)
/// 0.390965
#[pyclass(module = "crossent._core", frozen)]
pub struct BinaryCrossEntropyWithLogitsAccumulator {
    state: State<Reduce>,
    groups: Grouped,
    /// `pos_weight` as a read-only float64 array, or `None`.
    pos_weight: Option<Py<PyAny>>,
    nan: NanPolicy,
}

impl AsState for BinaryCrossEntropyWithLogitsAccumulator {
    fn shared(&self) -> &Shared<Partial> {
        &self.state.part
    }
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let params = PyDict::new(py);
        params.set_item("reduction", self.state.rule.reduction.name())?;
        params.set_item("pos_weight", &self.pos_weight)?;
        params.set_item("n_groups", self.groups.n)?;
        set_nan_policy(&params, self.nan)?;
        Ok(params)
    }
    fn grouped(&self) -> Option<&Grouped> {
        Some(&self.groups)
    }
}

accumulator_methods!(
    BinaryCrossEntropyWithLogitsAccumulator,
    reduction,
    "Number of elements seen.",
    {
        #[new]
        #[pyo3(
            signature = (
                *, reduction=Reduction::Mean, pos_weight=None, n_groups=None,
                nan_policy=NanPolicy::Propagate
            ),
            text_signature = "(*, reduction=\"mean\", pos_weight=None, n_groups=None, \
                              nan_policy=\"propagate\")"
        )]
        fn new(
            #[pyo3(from_py_with = scalar_reduction)] reduction: Reduction,
            pos_weight: Option<&Bound<'_, PyAny>>,
            #[pyo3(from_py_with = grouped::n_groups)] n_groups: Option<usize>,
            #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
        ) -> PyResult<Self> {
            Ok(Self {
                state: per_element(reduction),
                pos_weight: fixed_array(pos_weight, "pos_weight")?,
                groups: Grouped::new(n_groups, false)?,
                nan: nan_policy,
            })
        }

        /// Adds one batch: ``input`` logits, ``target`` of the same shape, optional
        /// ``weight`` broadcast to ``input``'s shape, and ``groups`` (integer codes, one per
        /// element) when the loss is kept per group, and ``sample_weight`` (as for
        /// :class:`BinaryCrossEntropyAccumulator`). A bad batch raises and leaves the
        /// accumulator unchanged.
        #[pyo3(signature = (input, target, *, weight=None, sample_weight=None, groups=None))]
        fn update(
            &self,
            input: &Bound<'_, PyAny>,
            target: &Bound<'_, PyAny>,
            weight: Option<&Bound<'_, PyAny>>,
            sample_weight: Option<&Bound<'_, PyAny>>,
            groups: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<()> {
            let py = input.py();
            let pw = self.pos_weight.as_ref().map(|p| p.bind(py).clone());
            let class = "BinaryCrossEntropyWithLogitsAccumulator";
            let mut part = self.state.part.lock(py, class)?;
            with_mode(&mut part, sample_weight.is_some(), class, |part| {
                if let Some(codes) = groups {
                    let args = grouped::BceArgs {
                        kind: BceKind::Logits,
                        weight,
                        pos_weight: pw.as_ref(),
                        sample_weight,
                        nan: self.nan,
                    };
                    return bce_groups_update(&self.groups, part, input, target, &args, codes);
                }
                self.groups.check_plain()?;
                let ops = [Some(input), Some(target), weight, sample_weight];
                let name = "binary_cross_entropy_with_logits";
                if let Some(s) = arrow::fold_batches(py, name, &ops, *part, |s, b| {
                    let (x, y) = (arrow::given(b, 0)?, arrow::given(b, 1)?);
                    let (w, sw) = (b[2].as_ref(), b[3].as_ref());
                    bce::fold(BceKind::Logits, self.nan, s, x, y, w, pw.as_ref(), sw)
                })? {
                    *part = s;
                    return Ok(());
                }
                let pw = pw.as_ref();
                *part = bce::fold(
                    BceKind::Logits,
                    self.nan,
                    *part,
                    input,
                    target,
                    weight,
                    pw,
                    sample_weight,
                )?;
                Ok(())
            })
        }

        /// The positive-class weight (a read-only float64 array), or ``None``.
        #[getter]
        fn pos_weight(&self, py: Python<'_>) -> Option<Py<PyAny>> {
            self.pos_weight.as_ref().map(|p| p.clone_ref(py))
        }

        /// What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``.
        #[getter]
        fn nan_policy(&self) -> &'static str {
            self.nan.name()
        }

        /// Elements seen per group (an int64 array), or ``None`` when not grouped.
        #[getter]
        fn counts<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
            let _part = self
                .state
                .part
                .lock(py, "BinaryCrossEntropyWithLogitsAccumulator")?;
            Ok(self.groups.counts(py))
        }

        /// The fixed number of groups, or ``None`` (the state grows with the codes seen).
        #[getter]
        fn n_groups(&self) -> Option<usize> {
            self.groups.n
        }
    }
);

/// Streaming :func:`crossent.softmax_cross_entropy` over batches of rows.
///
/// ``update(logits, target)`` adds a batch of rows (class indices or class probabilities, as
/// for :func:`crossent.softmax_cross_entropy`); ``result()`` gives the loss over every row
/// seen: the sum, or PyTorch's mean — the sum over ``sum(weight[y])`` of the rows not ignored
/// for class indices, over the number of rows for probabilities (NaN before any such row).
/// The parameters are fixed for every batch, as in ``torch.nn.CrossEntropyLoss``.
///
/// Exact bits: with ``C`` classes, a call reduces rows in blocks of
/// ``max(1, crossent.CHUNK // C)`` rows. When every batch but the last is C-contiguous
/// (``logits`` and ``target``) and holds a multiple of that many rows, ``result()`` has exactly
/// the bits of one call on the concatenated arrays, for any thread count (with more than
/// ``crossent.CHUNK`` classes a block is one row: any cut between rows is exact). With other
/// cuts it agrees to about 1e-12 relative (only the order of additions differs).
///
/// One accumulator may be shared by threads: its methods take turns on an internal lock
/// (``update`` computes without holding the GIL while the others wait), so its state is
/// always that of the calls in some serial order.
///
/// Parameters
/// ----------
/// axis : int, default -1
///     The class axis of every batch.
/// weight : array_like, optional
///     One weight per class (kept as a read-only float64 copy; read in each batch's dtype).
/// ignore_index : int, default -100
///     Rows whose class index equals it contribute nothing, not even to the mean's
///     denominator. A batch of class probabilities raises ``ValueError`` when it is >= 0
///     (no row has a class index to ignore), as in PyTorch.
/// label_smoothing : float, default 0.0
///     In [0, 1].
/// reduction : {"mean", "sum"}
///     What ``result()`` returns.
/// nan_policy : {"propagate", "omit", "raise"}, default "propagate"
///     What ``update`` does with a row holding a NaN, as the function does: ``"omit"``
///     leaves it out as an ignored row (of ``count`` and ``weight_sum`` too); ``"raise"``
///     raises :class:`crossent.DomainError` and leaves the accumulator unchanged.
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
/// >>> labels = np.array([0, 2, -100])
/// >>> acc = crossent.SoftmaxCrossEntropyAccumulator(weight=[1.0, 2.0, 0.5])
/// >>> acc.update(logits[:1], labels[:1])
/// >>> acc.update(logits[1:], labels[1:])
/// >>> acc.count, acc.weight_sum
/// (2, 1.5)
/// >>> acc.result() == crossent.softmax_cross_entropy(logits, labels, weight=[1.0, 2.0, 0.5])
/// True
/// >>> round(acc.result(), 6)
/// 0.197408
#[pyclass(module = "crossent._core", frozen)]
pub struct SoftmaxCrossEntropyAccumulator {
    state: State<Reduce>,
    axis: isize,
    /// The class weights as a read-only float64 array, or `None`.
    weight: Option<Py<PyAny>>,
    ignore_index: i64,
    label_smoothing: f64,
    groups: Grouped,
    nan: NanPolicy,
}

impl AsState for SoftmaxCrossEntropyAccumulator {
    fn shared(&self) -> &Shared<Partial> {
        &self.state.part
    }
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let params = PyDict::new(py);
        params.set_item("reduction", self.state.rule.reduction.name())?;
        params.set_item("axis", self.axis)?;
        params.set_item("weight", &self.weight)?;
        params.set_item("ignore_index", self.ignore_index)?;
        params.set_item("label_smoothing", self.label_smoothing)?;
        params.set_item("n_groups", self.groups.n)?;
        set_nan_policy(&params, self.nan)?;
        Ok(params)
    }
    fn grouped(&self) -> Option<&Grouped> {
        Some(&self.groups)
    }
}

accumulator_methods!(
    SoftmaxCrossEntropyAccumulator,
    reduction,
    "Number of rows seen, less those whose class index is ``ignore_index``.",
    {
        #[new]
        #[pyo3(
            signature = (
                *, axis=-1, weight=None, ignore_index=-100, label_smoothing=0.0,
                reduction=Reduction::Mean, n_groups=None, nan_policy=NanPolicy::Propagate
            ),
            text_signature = "(*, axis=-1, weight=None, ignore_index=-100, label_smoothing=0.0, \
                              reduction=\"mean\", n_groups=None, nan_policy=\"propagate\")"
        )]
        #[allow(clippy::too_many_arguments)] // the Python signature's keywords
        fn new(
            py: Python<'_>,
            #[pyo3(from_py_with = args::int_axis)] axis: isize,
            weight: Option<&Bound<'_, PyAny>>,
            #[pyo3(from_py_with = args::ignore_index)] ignore_index: i64,
            #[pyo3(from_py_with = args::label_smoothing)] label_smoothing: f64,
            #[pyo3(from_py_with = scalar_reduction)] reduction: Reduction,
            #[pyo3(from_py_with = grouped::n_groups)] n_groups: Option<usize>,
            #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
        ) -> PyResult<Self> {
            check_smoothing(label_smoothing)?;
            let weight = fixed_array(weight, "weight")?;
            if let Some(w) = &weight {
                let shape: Vec<usize> = w.bind(py).getattr("shape")?.extract()?;
                if shape.len() != 1 {
                    return Err(PyValueError::new_err(format!(
                        "'weight' must have shape (C,) (one weight per class), got {}",
                        shape_str(&shape)
                    )));
                }
            }
            Ok(Self {
                state: State::new(Reduce {
                    reduction,
                    over: MeanOver::Weight,
                }),
                axis,
                weight,
                ignore_index,
                label_smoothing,
                groups: Grouped::new(n_groups, true)?,
                nan: nan_policy,
            })
        }

        /// Adds one batch of rows: ``logits`` of any shape with the classes along ``axis``,
        /// ``target`` class indices (``logits``' shape without ``axis``) or class
        /// probabilities (``logits``' shape), and ``groups`` (integer codes, one per row) when
        /// the loss is kept per group, and ``sample_weight`` (one per row; given to every
        /// update or to none: the mean then divides by their sum instead of PyTorch's
        /// denominator). A batch with a bad value raises and leaves the accumulator
        /// unchanged.
        #[pyo3(signature = (logits, target, *, sample_weight=None, groups=None))]
        fn update(
            &self,
            logits: &Bound<'_, PyAny>,
            target: &Bound<'_, PyAny>,
            sample_weight: Option<&Bound<'_, PyAny>>,
            groups: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<()> {
            let py = logits.py();
            let weight = self.weight.as_ref().map(|w| w.bind(py).clone());
            let params = softmax::Params {
                axis: self.axis,
                weight: weight.as_ref(),
                ignore_index: self.ignore_index,
                smoothing: self.label_smoothing,
                nan: self.nan,
            };
            let class = "SoftmaxCrossEntropyAccumulator";
            let mut part = self.state.part.lock(py, class)?;
            with_mode(&mut part, sample_weight.is_some(), class, |part| {
                if let Some(codes) = groups {
                    let g = grouped::Groups {
                        codes,
                        n: self.groups.n,
                    };
                    let ops = [Some(logits), Some(target), sample_weight, Some(codes)];
                    return self.groups.update(part, |state, init| {
                        let name = "softmax_cross_entropy";
                        if let Some(s) = arrow::fold_batches(py, name, &ops, init, |s, b| {
                            let (x, y) = (arrow::given(b, 0)?, arrow::given(b, 1)?);
                            let g = grouped::Groups {
                                codes: arrow::given(b, 3)?,
                                ..g
                            };
                            grouped::softmax_fold(state, s, x, y, &params, b[2].as_ref(), &g)
                        })? {
                            return Ok(s);
                        }
                        let sw = sample_weight;
                        grouped::softmax_fold(state, init, logits, target, &params, sw, &g)
                    });
                }
                self.groups.check_plain()?;
                let ops = [Some(logits), Some(target), sample_weight];
                if let Some(s) =
                    arrow::fold_batches(py, "softmax_cross_entropy", &ops, *part, |s, b| {
                        let params = softmax::Params {
                            weight: weight.as_ref(),
                            ..params
                        };
                        let (x, y) = (arrow::given(b, 0)?, arrow::given(b, 1)?);
                        softmax::fold(s, x, y, params, b[2].as_ref())
                    })?
                {
                    *part = s;
                    return Ok(());
                }
                *part = softmax::fold(*part, logits, target, params, sample_weight)?;
                Ok(())
            })
        }

        /// The denominator of the mean so far: ``sum(weight[y])`` over the rows seen with a
        /// class index that is not ignored (their number without ``weight``), plus the
        /// number of rows seen with class probabilities; with ``sample_weight``, the sum of
        /// the sample weights of the rows not ignored.
        #[getter]
        fn weight_sum(&self, py: Python<'_>) -> PyResult<f64> {
            Ok(self
                .state
                .part
                .lock(py, "SoftmaxCrossEntropyAccumulator")?
                .weight)
        }

        /// The class axis.
        #[getter]
        fn axis(&self) -> isize {
            self.axis
        }

        /// What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``.
        #[getter]
        fn nan_policy(&self) -> &'static str {
            self.nan.name()
        }

        /// The class weights (a read-only float64 array), or ``None``.
        #[getter]
        fn weight(&self, py: Python<'_>) -> Option<Py<PyAny>> {
            self.weight.as_ref().map(|w| w.clone_ref(py))
        }

        /// The class index of rows that do not count.
        #[getter]
        fn ignore_index(&self) -> i64 {
            self.ignore_index
        }

        /// The label smoothing.
        #[getter]
        fn label_smoothing(&self) -> f64 {
            self.label_smoothing
        }

        /// Rows counted per group (an int64 array; rows whose class index is
        /// ``ignore_index`` do not count), or ``None`` when not grouped.
        #[getter]
        fn counts<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
            let _part = self.state.part.lock(py, "SoftmaxCrossEntropyAccumulator")?;
            Ok(self.groups.counts(py))
        }

        /// The fixed number of groups, or ``None`` (the state grows with the codes seen).
        #[getter]
        fn n_groups(&self) -> Option<usize> {
            self.groups.n
        }
    }
);

/// The state of a new divergence accumulator; Jensen-Shannon only without normalisation.
fn whole_state(kind: Kind, base: Option<f64>, normalize: bool) -> PyResult<State<Finish>> {
    if kind == Kind::JensenShannon && normalize {
        return Err(PyValueError::new_err(
            "'normalize' must be False: normalised Jensen-Shannon divergence cannot be \
             accumulated, since the totals sum(p) and sum(q) enter every logarithm; pass \
             normalize=False for distributions that are normalised already, or compute \
             crossent.jensen_shannon(p, q, axis=None) on the whole data \
             (crossent.dask.jensen_shannon reads chunked data twice)",
        ));
    }
    Ok(State::new(Finish {
        kind,
        normalize,
        log_base: log_base(base)?,
    }))
}

/// A divergence accumulator class: `$kind` over everything seen as one distribution, updated
/// with `$p` (and `$q`).
macro_rules! divergence_accumulator {
    ($(#[$doc:meta])* $class:ident, $kind:expr, ($p:ident $(, $q:ident)?)) => {
        $(#[$doc])*
        #[pyclass(module = "crossent._core", frozen)]
        pub struct $class {
            state: State<Finish>,
            base: Option<f64>,
            nan: NanPolicy,
        }

        impl AsState for $class {
            fn shared(&self) -> &Shared<Partial> {
                &self.state.part
            }
            fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let params = PyDict::new(py);
                params.set_item("base", self.base)?;
                params.set_item("normalize", self.state.rule.normalize)?;
                set_nan_policy(&params, self.nan)?;
                Ok(params)
            }
        }

        accumulator_methods!($class, "Number of elements seen.", {
            #[new]
            #[pyo3(
                signature = (*, base=None, normalize=true, nan_policy=NanPolicy::Propagate),
                text_signature = "(*, base=None, normalize=True, nan_policy=\"propagate\")"
            )]
            fn new(
                #[pyo3(from_py_with = args::base)] base: Option<f64>,
                #[pyo3(from_py_with = args::normalize)] normalize: bool,
                #[pyo3(from_py_with = nan_policy)] nan_policy: NanPolicy,
            ) -> PyResult<Self> {
                Ok(Self {
                    state: whole_state($kind, base, normalize)?,
                    base,
                    nan: nan_policy,
                })
            }

            /// Adds one batch of the distribution (non-negative values, any shape and layout;
            /// ``q`` broadcast against ``p``). A negative value (with
            /// ``nan_policy='raise'``, a NaN too) raises ``ValueError`` and leaves the
            /// accumulator unchanged; with ``nan_policy='omit'`` the pairs holding a NaN are
            /// left out (and not counted).
            fn update(
                &self,
                $p: &Bound<'_, PyAny>,
                $($q: &Bound<'_, PyAny>,)?
            ) -> PyResult<()> {
                let q: Option<&Bound<'_, PyAny>> = None $(.or(Some($q)))?;
                let mut part = self.state.part.lock($p.py(), stringify!($class))?;
                let name = arrow::divergence_name($kind);
                if let Some(s) = arrow::fold_batches($p.py(), name, &[Some($p), q], *part, |s, b| {
                    divergence::fold($kind, self.nan, s, arrow::given(b, 0)?, b[1].as_ref())
                })? {
                    *part = s;
                    return Ok(());
                }
                *part = divergence::fold($kind, self.nan, *part, $p, q)?;
                Ok(())
            }

            /// The logarithm's base (``None``: natural logarithm).
            #[getter]
            fn base(&self) -> Option<f64> {
                self.base
            }

            /// Whether the distributions are normalised by their totals.
            #[getter]
            fn normalize(&self) -> bool {
                self.state.rule.normalize
            }

            /// What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``.
            #[getter]
            fn nan_policy(&self) -> &'static str {
                self.nan.name()
            }
        });
    };
}

divergence_accumulator!(
    /// Streaming :func:`crossent.entropy` of everything seen as one distribution
    /// (``axis=None``).
    ///
    /// ``update(p)`` adds a batch of the distribution; ``result()`` is the entropy of all
    /// values seen together: ``S / P + log(P)`` from the sums ``S = -sum(p * log(p))`` and
    /// ``P = sum(p)``, which the accumulator folds (divided by ``log(base)``; ``-S`` without
    /// normalisation; 0 before any value). Batches are reduced in chunks of
    /// ``crossent.CHUNK`` elements: when every batch but the last is C-contiguous and holds a
    /// multiple of ``crossent.CHUNK`` elements, ``result()`` has exactly the bits of
    /// ``crossent.entropy(everything, axis=None)`` on the concatenation, for any thread
    /// count; with other cuts it agrees to about 1e-12 relative.
    ///
    /// One accumulator may be shared by threads: its methods take turns on an internal lock
    /// (``update`` computes without holding the GIL while the others wait), so its state is
    /// always that of the calls in some serial order.
    ///
    /// Parameters
    /// ----------
    /// base : float, optional
    ///     Logarithm base (natural logarithm by default).
    /// normalize : bool, default True
    ///     ``False`` uses the values as given: ``-sum(p * log(p))``.
    /// nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
    ///     What a NaN does, as in the function: ``'omit'`` leaves out each pair holding one
    ///     (from the sums and from ``count``), ``'raise'`` raises
    ///     :class:`crossent.DomainError` and leaves the accumulator unchanged.
    ///
    /// Examples
    /// --------
    /// >>> import numpy as np, crossent
    /// >>> counts = np.array([3.0, 1.0, 0.0, 4.0, 2.0, 6.0])
    /// >>> acc = crossent.EntropyAccumulator(base=2)
    /// >>> acc.update(counts[:2])
    /// >>> acc.update(counts[2:])
    /// >>> acc.result() == crossent.entropy(counts, axis=None, base=2)
    /// True
    /// >>> round(acc.result(), 6)
    /// 2.108459
    EntropyAccumulator,
    Kind::Entropy,
    (p)
);

divergence_accumulator!(
    /// Streaming :func:`crossent.cross_entropy` of everything seen as one pair of
    /// distributions (``axis=None``).
    ///
    /// ``update(p, q)`` adds a batch of both; ``result()`` is ``S / P + log(Q)`` from the
    /// sums ``S = -sum(p * log(q))``, ``P = sum(p)`` and ``Q = sum(q)`` (divided by
    /// ``log(base)``; ``S`` without normalisation; 0 before any value). Exact bits as for
    /// :class:`EntropyAccumulator`: batches of whole ``crossent.CHUNK`` elements
    /// (C-contiguous) give the bits of ``crossent.cross_entropy(p, q, axis=None)`` on the
    /// concatenation; other cuts agree to about 1e-12 relative.
    ///
    /// One accumulator may be shared by threads: its methods take turns on an internal lock
    /// (``update`` computes without holding the GIL while the others wait), so its state is
    /// always that of the calls in some serial order.
    ///
    /// Parameters
    /// ----------
    /// base : float, optional
    ///     Logarithm base (natural logarithm by default).
    /// normalize : bool, default True
    ///     ``False`` uses the values as given: ``-sum(p * log(q))``.
    /// nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
    ///     What a NaN does, as in the function: ``'omit'`` leaves out each pair holding one
    ///     (from the sums and from ``count``), ``'raise'`` raises
    ///     :class:`crossent.DomainError` and leaves the accumulator unchanged.
    ///
    /// Examples
    /// --------
    /// >>> import numpy as np, crossent
    /// >>> p = np.array([1.0, 2.0, 3.0, 4.0])
    /// >>> q = np.array([4.0, 3.0, 2.0, 1.0])
    /// >>> acc = crossent.CrossEntropyAccumulator()
    /// >>> acc.update(p[:3], q[:3])
    /// >>> acc.update(p[3:], q[3:])
    /// >>> acc.result() == crossent.cross_entropy(p, q, axis=None)
    /// True
    /// >>> round(acc.result(), 6)
    /// 1.736289
    CrossEntropyAccumulator,
    Kind::CrossEntropy,
    (p, q)
);

divergence_accumulator!(
    /// Streaming :func:`crossent.kl_divergence` of everything seen as one pair of
    /// distributions (``axis=None``).
    ///
    /// ``update(p, q)`` adds a batch of both; ``result()`` is ``S / P + log(Q) - log(P)``
    /// from the sums ``S = sum(p * log(p / q))``, ``P = sum(p)`` and ``Q = sum(q)`` (divided
    /// by ``log(base)``; ``S`` without normalisation; 0 before any value). Exact bits as for
    /// :class:`EntropyAccumulator`: batches of whole ``crossent.CHUNK`` elements
    /// (C-contiguous) give the bits of ``crossent.kl_divergence(p, q, axis=None)`` on the
    /// concatenation; other cuts agree to about 1e-12 relative.
    ///
    /// One accumulator may be shared by threads: its methods take turns on an internal lock
    /// (``update`` computes without holding the GIL while the others wait), so its state is
    /// always that of the calls in some serial order.
    ///
    /// Parameters
    /// ----------
    /// base : float, optional
    ///     Logarithm base (natural logarithm by default).
    /// normalize : bool, default True
    ///     ``False`` uses the values as given: ``sum(rel_entr(p, q))``.
    /// nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
    ///     What a NaN does, as in the function: ``'omit'`` leaves out each pair holding one
    ///     (from the sums and from ``count``), ``'raise'`` raises
    ///     :class:`crossent.DomainError` and leaves the accumulator unchanged.
    ///
    /// Examples
    /// --------
    /// >>> import math, numpy as np, crossent
    /// >>> p = np.array([1.0, 2.0, 3.0, 4.0])
    /// >>> q = np.array([4.0, 3.0, 2.0, 1.0])
    /// >>> acc = crossent.KLDivergenceAccumulator()
    /// >>> for i in range(0, 4, 2):
    /// ...     acc.update(p[i:i + 2], q[i:i + 2])
    /// >>> math.isclose(acc.result(), crossent.kl_divergence(p, q, axis=None), rel_tol=1e-12)
    /// True
    /// >>> round(acc.result(), 6)
    /// 0.456435
    KLDivergenceAccumulator,
    Kind::KlDivergence,
    (p, q)
);

divergence_accumulator!(
    /// Streaming :func:`crossent.jensen_shannon` without normalisation, of everything seen as
    /// one pair of distributions (``axis=None``): for distributions that are normalised
    /// already (each sums to 1 over all batches).
    ///
    /// ``update(p, q)`` adds a batch of both; ``result()`` is ``S / 2`` from the sum
    /// ``S = sum(rel_entr(p, m) + rel_entr(q, m))``, ``m = (p + q) / 2`` (divided by
    /// ``log(base)``; 0 before any value). Exact bits as for :class:`EntropyAccumulator`:
    /// batches of whole ``crossent.CHUNK`` elements (C-contiguous) give the bits of
    /// ``crossent.jensen_shannon(p, q, axis=None, normalize=False)`` on the concatenation.
    ///
    /// ``normalize`` must be ``False`` (the default ``True`` raises ``ValueError``):
    /// normalising needs the totals ``sum(p)`` and ``sum(q)`` inside every logarithm, so no
    /// state of part of the data determines the result. Normalise first (with the totals of
    /// a first pass), or use :func:`crossent.jensen_shannon` on the whole data;
    /// :func:`crossent.dask.jensen_shannon` takes the two passes over chunked data.
    ///
    /// One accumulator may be shared by threads: its methods take turns on an internal lock
    /// (``update`` computes without holding the GIL while the others wait), so its state is
    /// always that of the calls in some serial order.
    ///
    /// Parameters
    /// ----------
    /// base : float, optional
    ///     Logarithm base (natural logarithm by default).
    /// normalize : bool
    ///     Must be ``False``.
    /// nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
    ///     What a NaN does, as in the function: ``'omit'`` leaves out each pair holding one
    ///     (from the sums and from ``count``), ``'raise'`` raises
    ///     :class:`crossent.DomainError` and leaves the accumulator unchanged.
    ///
    /// Examples
    /// --------
    /// >>> import numpy as np, crossent
    /// >>> p = np.array([0.1, 0.4, 0.2, 0.3])
    /// >>> q = np.array([0.25, 0.25, 0.25, 0.25])
    /// >>> acc = crossent.JensenShannonAccumulator(base=2, normalize=False)
    /// >>> acc.update(p[:2], q[:2])
    /// >>> acc.update(p[2:], q[2:])
    /// >>> acc.result() == crossent.jensen_shannon(p, q, axis=None, base=2, normalize=False)
    /// True
    /// >>> round(acc.result(), 6)
    /// 0.040202
    JensenShannonAccumulator,
    Kind::JensenShannon,
    (p, q)
);
