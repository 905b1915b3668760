//! `groups=` / `n_groups=`: losses per group, for the functions and their accumulators.
//! Parses the codes and the number of groups, dispatches on the code dtype, views the arrays,
//! calls the driver ([`crate::kernels::drive::groups`]) and converts its per-group state into
//! the result array (and its flags into the errors: a code out of range names `groups` and
//! its position).

use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::{Element, PyArray1, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyMemoryError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyTuple};

use super::args::describe;
use super::arrays::{dtype_name, is, ndarray, View};
use super::binary::{with_target_dtype, BinaryOperands};
use super::errors::{domain_error, Reported};
use super::half::with_input_precision;
use super::logloss::domain_errors;
use super::operand::LoadView;
use super::precision::{as_float, as_float_or_half, precision, Precision};
use super::reduction::Reduction;
use super::softmax::{
    check_ignore_index_unused, check_smoothing, class_weight_nan, class_weights, nan_error,
    sample_weight_errors, sample_weights, target_errors, with_class_target, Params,
};
use super::threads::Gil;
use crate::kernels::bce::Kind;
use crate::kernels::drive::{self, groups::Grouping};
use crate::kernels::float::{Bool, Float, Target};
use crate::kernels::groups::{flags as gflags, Code, CodeType, GroupSums, MAX_GROUPS};
use crate::kernels::logloss::UNNORMALIZED;
use crate::kernels::nan::NanPolicy;
use crate::kernels::reduce::{flags, Partial};
use crate::kernels::softmax::Label;
use crate::kernels::strided::Load;

/// Evaluates `$call`, in which `C` names the integer type of the codes array `$g`, for each
/// integer dtype; a `TypeError` naming `'groups'` for any other.
macro_rules! with_code_dtype {
    ($g:expr, $call:expr) => {{
        let g: &Bound<'_, PyUntypedArray> = $g;
        with_code_dtype!(@try g, $call, i8, i16, i32, i64, u8, u16, u32, u64);
        Err(PyTypeError::new_err(format!(
            "'groups' must be an array of integer codes (any integer dtype), got dtype {}",
            dtype_name(g)
        )))
    }};
    (@try $g:ident, $call:expr, $($c:ty),*) => {$(
        if is::<$c>($g) {
            #[allow(dead_code)]
            type C = $c;
            return $call;
        }
    )*};
}

/// `n_groups=`: `None` or an integer in `[0, 2**32 - 1)` (not a bool).
pub fn n_groups(obj: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    if obj.is_none() {
        return Ok(None);
    }
    let wrong = || {
        PyTypeError::new_err(format!(
            "'n_groups' must be an integer or None, got {}",
            describe(obj)
        ))
    };
    if obj.is_instance_of::<PyBool>() {
        return Err(wrong());
    }
    let v = obj.extract::<i64>().map_err(|e: PyErr| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            PyValueError::new_err(format!("'n_groups' is out of range: {obj}"))
        } else {
            wrong()
        }
    })?;
    if v < 0 || v as u64 > MAX_GROUPS {
        return Err(PyValueError::new_err(format!(
            "'n_groups' must be in [0, {MAX_GROUPS}], got {v}"
        )));
    }
    Ok(Some(v as usize))
}

/// The codes a call (or an update) is grouped by, and how many groups there are.
pub struct Groups<'a, 'py> {
    pub codes: &'a Bound<'py, PyAny>,
    /// `n_groups`; `None`: as many as the largest code seen needs.
    pub n: Option<usize>,
}

impl Groups<'_, '_> {
    /// Codes must be below this.
    fn limit(&self) -> u64 {
        self.n.map_or(MAX_GROUPS, |n| n as u64)
    }

    /// The codes of `view` as the driver takes them.
    fn grouping<'v, C: CodeType + Load + Element>(&self, view: &'v View<'_, C>) -> Grouping<'v, C> {
        Grouping {
            codes: view.kernel(),
            limit: self.limit(),
        }
    }

    /// The error for a flagged code: the first that is negative or not below the limit.
    fn code_error<C: Code + Load + Element + Reported>(&self, view: &View<'_, C>) -> PyErr {
        let limit = self.limit();
        let bad = view.kernel().first(|c: C| c.index() >= limit);
        let what = match self.n {
            Some(n) => format!("codes in [0, {n}) (n_groups={n})"),
            None => format!("codes in [0, {MAX_GROUPS})"),
        };
        domain_error(view.py(), "groups", &what, bad)
    }
}

/// The state every grouped computation starts from: `n` empty groups, or none (it grows).
fn fresh_state(n: Option<usize>, weighted: bool) -> PyResult<GroupSums> {
    GroupSums::new(n.unwrap_or(0), weighted).ok_or_else(|| out_of_memory(n.unwrap_or(0)))
}

fn out_of_memory(groups: usize) -> PyErr {
    PyMemoryError::new_err(format!(
        "cannot hold the per-group state of {groups} or more groups (pass a smaller n_groups, \
         or codes from 0 to the number of groups - 1)"
    ))
}

/// The per-group result: `sum / count` (or `sum / weight`) for `"mean"` (NaN for an empty
/// group: 0/0), `sum` for `"sum"`, as a float64 array of one value per group.
pub fn finish<'py>(
    py: Python<'py>,
    state: &GroupSums,
    reduction: Reduction,
    over_weight: bool,
) -> Bound<'py, PyAny> {
    let values: Vec<f64> = match reduction {
        Reduction::Mean if over_weight => state
            .sum
            .iter()
            .zip(&state.weight)
            .map(|(s, w)| s / w)
            .collect(),
        Reduction::Mean => state
            .sum
            .iter()
            .zip(&state.count)
            .map(|(&s, &c)| s / c as f64)
            .collect(),
        _ => state.sum.clone(),
    };
    PyArray1::from_vec(py, values).into_any()
}

/// The check of every grouped function: no `reduction="none"`, no `out`.
pub fn check_reduction(reduction: Reduction, out: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    if reduction == Reduction::None {
        return Err(PyValueError::new_err(
            "'groups' cannot be used with reduction='none' (each element's loss is its own; \
             group them with reduction='mean' or 'sum')",
        ));
    }
    if out.is_some() {
        return Err(PyValueError::new_err(
            "'out' is only used with reduction='none'",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Binary cross-entropy

/// The binary-target arguments besides `input` and `target`.
pub struct BceArgs<'a, 'py> {
    pub kind: Kind,
    pub weight: Option<&'a Bound<'py, PyAny>>,
    pub pos_weight: Option<&'a Bound<'py, PyAny>>,
    /// With sample weights each group's mean divides by their sum over the group.
    pub sample_weight: Option<&'a Bound<'py, PyAny>>,
    /// `'omit'` leaves an element with a NaN operand out of its group; `'raise'` raises at the
    /// first NaN, as the ungrouped call does.
    pub nan: NanPolicy,
}

/// `binary_cross_entropy(..., groups=...)` and its logits form: the per-group losses.
pub fn binary_cross_entropy<'py>(
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    args: &BceArgs<'_, 'py>,
    reduction: Reduction,
    out: Option<&Bound<'py, PyAny>>,
    groups: &Groups<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    check_reduction(reduction, out)?;
    let weighted = args.sample_weight.is_some();
    let mut state = fresh_state(groups.n, weighted)?;
    bce_fold(&mut state, Partial::EMPTY, input, target, args, groups)?;
    Ok(finish(input.py(), &state, reduction, weighted))
}

/// Folds one batch of binary cross-entropy into `state` (and the total into `init`, which is
/// returned). On an error `state` is partly folded: an accumulator folds into a copy.
pub fn bce_fold<'py>(
    state: &mut GroupSums,
    init: Partial,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    args: &BceArgs<'_, 'py>,
    groups: &Groups<'_, 'py>,
) -> PyResult<Partial> {
    let x = ndarray(input, "input")?;
    let g = ndarray(groups.codes, "groups")?;
    with_input_precision!(
        &x,
        "input",
        bce_target::<T>(state, init, &x, target, &g, args, groups)
    )
}

fn bce_target<'py, T: Float + Element + Reported>(
    state: &mut GroupSums,
    init: Partial,
    x: &Bound<'py, PyUntypedArray>,
    target: &Bound<'py, PyAny>,
    g: &Bound<'py, PyUntypedArray>,
    args: &BceArgs<'_, 'py>,
    groups: &Groups<'_, 'py>,
) -> PyResult<Partial> {
    let y = ndarray(target, "target")?;
    with_target_dtype!(
        &y,
        bce_codes::<T, E, Y>(state, init, x, &y, g, args, groups)
    )
}

fn bce_codes<'py, T: Float + Element + Reported, E: Element, Y: Target + Load + Reported>(
    state: &mut GroupSums,
    init: Partial,
    x: &Bound<'py, PyUntypedArray>,
    y: &Bound<'py, PyUntypedArray>,
    g: &Bound<'py, PyUntypedArray>,
    args: &BceArgs<'_, 'py>,
    groups: &Groups<'_, 'py>,
) -> PyResult<Partial> {
    with_code_dtype!(
        g,
        bce_compute::<T, E, Y, C>(state, init, x, y, g, args, groups)
    )
}

fn bce_compute<'py, T, E, Y, C>(
    state: &mut GroupSums,
    init: Partial,
    x: &Bound<'py, PyUntypedArray>,
    y: &Bound<'py, PyUntypedArray>,
    g: &Bound<'py, PyUntypedArray>,
    args: &BceArgs<'_, 'py>,
    groups: &Groups<'_, 'py>,
) -> PyResult<Partial>
where
    T: Float + Element + Reported,
    E: Element,
    Y: Target + Load + Reported,
    C: CodeType + Load + Element + Reported,
{
    let ops = BinaryOperands::<T, E>::new(x, y, args.weight, args.pos_weight, args.sample_weight)?;
    let codes = View::<C>::new(g, "groups")?;
    let call = drive::bce::Loss {
        kind: args.kind,
        init,
        nan: args.nan,
        operands: ops.kernel::<Y>(),
    };
    let grouping = groups.grouping(&codes);
    let part = drive::groups::binary_cross_entropy(state, &call, &grouping, &Gil(x.py()))?;
    check_groups(&part, state, &codes, groups)?;
    if part.flags & flags::INPUT != 0 {
        return Err(ops.probability_error());
    }
    if part.flags & flags::TARGET != 0 && (args.kind == Kind::Probabilities || Y::HARD) {
        return Err(ops.target_error::<Y>());
    }
    if part.flags & flags::WEIGHT != 0 {
        return Err(ops.sample_weight_error());
    }
    // As the ungrouped call: every NaN operand makes the total NaN, only then is there a NaN
    // to look for.
    if args.nan == NanPolicy::Raise && part.sum.is_nan() {
        if let Some(e) = ops.nan_error::<Y>() {
            return Err(e);
        }
    }
    Ok(part)
}

// ---------------------------------------------------------------------------------------------
// Accumulators

/// The per-group state of an accumulator: `n_groups` (fixed at construction, or `None`: the
/// state grows with the codes seen) and the state itself, `None` until a grouped update (or
/// from the start when `n_groups` is given). Only touched while the accumulator's own lock is
/// held (its `update`, `merge`, `result`, ...), so this mutex is never contended.
pub struct Grouped {
    pub n: Option<usize>,
    weighted: bool,
    state: Mutex<Option<GroupSums>>,
}

impl Grouped {
    pub fn new(n: Option<usize>, weighted: bool) -> PyResult<Self> {
        let state = match n {
            Some(n) => Some(fresh_state(Some(n), weighted)?),
            None => None,
        };
        Ok(Grouped {
            n,
            weighted,
            state: Mutex::new(state),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Option<GroupSums>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Back to the state of a new accumulator.
    pub fn reset(&self) -> PyResult<()> {
        *self.lock() = match self.n {
            Some(n) => Some(fresh_state(Some(n), self.weighted)?),
            None => None,
        };
        Ok(())
    }

    /// Refuses an ungrouped update of an accumulator that is grouped (`seen`: elements seen).
    pub fn check_plain(&self) -> PyResult<()> {
        if self.lock().is_some() {
            return Err(PyValueError::new_err(
                "this accumulator holds per-group state (n_groups= or an update with groups=): \
                 every update needs 'groups'",
            ));
        }
        Ok(())
    }

    /// Runs a grouped update: `fold(state, part)` folds the batch into a copy of the state,
    /// which replaces it only on success (a bad batch leaves the accumulator unchanged).
    /// `part` is the accumulator's total partial.
    pub fn update(
        &self,
        part: &mut Partial,
        fold: impl FnOnce(&mut GroupSums, Partial) -> PyResult<Partial>,
    ) -> PyResult<()> {
        let mut guard = self.lock();
        if guard.is_none() && part.count > 0 {
            return Err(PyValueError::new_err(
                "this accumulator has seen updates without 'groups': grouped and ungrouped \
                 updates cannot be mixed (reset() it, or use another accumulator)",
            ));
        }
        let mut state = match guard.as_ref() {
            Some(s) => s.clone(),
            None => fresh_state(None, self.weighted)?,
        };
        *part = fold(&mut state, *part)?;
        *guard = Some(state);
        Ok(())
    }

    /// The per-group result, or `None` for an ungrouped accumulator. A mean divides by the
    /// weights when `over_weight` or when the state is weighted (sample weights).
    pub fn result<'py>(
        &self,
        py: Python<'py>,
        reduction: Reduction,
        over_weight: bool,
    ) -> Option<Bound<'py, PyAny>> {
        self.lock()
            .as_ref()
            .map(|s| finish(py, s, reduction, over_weight || s.weighted))
    }

    /// Elements (or rows) counted per group, as an int64 array; `None` when ungrouped.
    pub fn counts<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.lock().as_ref().map(|s| {
            let v: Vec<i64> = s.count.iter().map(|&c| c as i64).collect();
            PyArray1::from_vec(py, v).into_any()
        })
    }

    /// A copy of the state, for `merge` and pickling.
    pub fn snapshot(&self) -> Option<GroupSums> {
        self.lock().clone()
    }

    /// Adds `theirs` (another accumulator's state, with the same parameters) to this one;
    /// `mine_seen` / `theirs_seen`: the elements each has seen (an ungrouped accumulator that
    /// has seen some cannot take per-group state, nor the reverse).
    pub fn merge(
        &self,
        theirs: Option<&GroupSums>,
        mine_seen: u64,
        theirs_seen: u64,
    ) -> PyResult<()> {
        let mut guard = self.lock();
        let mixed = match (guard.is_some(), theirs.is_some()) {
            (true, false) => theirs_seen > 0,
            (false, true) => mine_seen > 0,
            _ => false,
        };
        if mixed {
            return Err(PyValueError::new_err(
                "cannot merge a grouped accumulator with an ungrouped one",
            ));
        }
        if let Some(theirs) = theirs {
            let mut state = match guard.take() {
                Some(s) => s,
                None => fresh_state(None, self.weighted)?,
            };
            if theirs.weighted {
                state.set_weighted();
            }
            let ok = state.merge(theirs);
            let len = state.len();
            *guard = Some(state);
            if !ok {
                return Err(out_of_memory(len));
            }
        }
        Ok(())
    }

    /// The state as pickling stores it: `(sums, counts, weights)` as float64 / int64 / float64
    /// arrays (weights empty when unweighted); `None` when ungrouped.
    pub fn to_pickle<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(s) = self.snapshot() else {
            return Ok(None);
        };
        let counts: Vec<i64> = s.count.iter().map(|&c| c as i64).collect();
        let t = (
            PyArray1::from_vec(py, s.sum),
            PyArray1::from_vec(py, counts),
            PyArray1::from_vec(py, s.weight),
        )
            .into_pyobject(py)?;
        Ok(Some(t))
    }

    /// Restores what [`Grouped::to_pickle`] stored.
    pub fn from_pickle(&self, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let bad = || PyValueError::new_err("'state' is not an accumulator state");
        let t = state.cast::<PyTuple>().map_err(|_| bad())?;
        if t.len() != 3 {
            return Err(bad());
        }
        let sum: Vec<f64> = t.get_item(0)?.extract::<Vec<f64>>().map_err(|_| bad())?;
        let count: Vec<i64> = t.get_item(1)?.extract::<Vec<i64>>().map_err(|_| bad())?;
        let weight: Vec<f64> = t.get_item(2)?.extract::<Vec<f64>>().map_err(|_| bad())?;
        // A state without weights of its own is weighted once sample weights were folded in.
        let weighted = self.weighted || !weight.is_empty();
        let consistent = count.len() == sum.len()
            && count.iter().all(|&c| c >= 0)
            && weight.len() == if weighted { sum.len() } else { 0 }
            && self.n.is_none_or(|n| n == sum.len());
        if !consistent {
            return Err(bad());
        }
        *self.lock() = Some(GroupSums {
            sum,
            count: count.into_iter().map(|c| c as u64).collect(),
            weight,
            weighted,
        });
        Ok(())
    }
}

/// Reads an `n_groups` default of `None` for the signatures of the accumulators.
pub fn n_groups_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    match obj {
        Some(o) => n_groups(o),
        None => Ok(None),
    }
}

/// The `groups=` / `n_groups=` pair of a call: `None` when ungrouped (then `n_groups` must be
/// `None` too).
pub fn given<'a, 'py>(
    codes: Option<&'a Bound<'py, PyAny>>,
    n: Option<usize>,
) -> PyResult<Option<Groups<'a, 'py>>> {
    match codes {
        Some(codes) => Ok(Some(Groups { codes, n })),
        None if n.is_some() => Err(PyValueError::new_err(
            "'n_groups' is only used with 'groups'",
        )),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy

/// `softmax_cross_entropy(..., groups=...)`: the per-group losses (one code per row). The mean
/// of a group is PyTorch's: its loss sum over its `Σ w[y]` (rows not ignored), or over its
/// rows for class probabilities; with `sample_weight`, over its `Σ sw` (rows not ignored).
pub fn softmax_cross_entropy<'py>(
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    params: &Params<'_, 'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    reduction: Reduction,
    out: Option<&Bound<'py, PyAny>>,
    groups: &Groups<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    check_smoothing(params.smoothing)?;
    check_reduction(reduction, out)?;
    let mut state = fresh_state(groups.n, true)?;
    softmax_fold(
        &mut state,
        Partial::EMPTY,
        logits,
        target,
        params,
        sample_weight,
        groups,
    )?;
    Ok(finish(logits.py(), &state, reduction, true))
}

/// Folds one batch of rows of softmax cross-entropy into `state` (see [`bce_fold`]); with
/// `sample_weight` (one per row), each group's weight is their sum over its rows.
pub fn softmax_fold<'py>(
    state: &mut GroupSums,
    init: Partial,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    params: &Params<'_, 'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    groups: &Groups<'_, 'py>,
) -> PyResult<Partial> {
    let x = ndarray(logits, "logits")?;
    let g = ndarray(groups.codes, "groups")?;
    let y = ndarray(target, "target")?;
    let cx = SoftmaxCall {
        params,
        sample_weight,
        groups,
        g: &g,
    };
    match precision(&x, "logits")? {
        Precision::F32 => cx.target::<f32>(state, init, &as_float_or_half::<f32>(x)?, &y),
        Precision::F64 => cx.target::<f64>(state, init, &as_float::<f64>(x)?, &y),
    }
}

/// The arguments of one grouped softmax call besides the arrays dispatched on.
struct SoftmaxCall<'a, 'py> {
    params: &'a Params<'a, 'py>,
    sample_weight: Option<&'a Bound<'py, PyAny>>,
    groups: &'a Groups<'a, 'py>,
    g: &'a Bound<'py, PyUntypedArray>,
}

/// The target of softmax cross-entropy, by kind.
enum ClassTarget<'a, 'py> {
    Labels(&'a Bound<'py, PyUntypedArray>),
    Probabilities(&'a Bound<'py, PyUntypedArray>),
}

impl<'py> SoftmaxCall<'_, 'py> {
    fn target<T: Float + Element + Reported>(
        &self,
        state: &mut GroupSums,
        init: Partial,
        x: &Bound<'py, PyUntypedArray>,
        y: &Bound<'py, PyUntypedArray>,
    ) -> PyResult<Partial> {
        with_class_target!(y, L => self.codes::<T, L>(state, init, x, ClassTarget::Labels(y)), {
            check_ignore_index_unused(self.params.ignore_index)?;
            self.codes::<T, i64>(state, init, x, ClassTarget::Probabilities(y))
        })
    }

    fn codes<T: Float + Element + Reported, L: Label + Load + Element + Reported>(
        &self,
        state: &mut GroupSums,
        init: Partial,
        x: &Bound<'py, PyUntypedArray>,
        y: ClassTarget<'_, 'py>,
    ) -> PyResult<Partial> {
        with_code_dtype!(self.g, self.compute::<T, L, C>(state, init, x, y))
    }

    /// Runs the driver for logits `T`, labels `L` (when the target holds class indices) and
    /// codes `C`.
    fn compute<T, L, C>(
        &self,
        state: &mut GroupSums,
        init: Partial,
        x: &Bound<'py, PyUntypedArray>,
        target: ClassTarget<'_, 'py>,
    ) -> PyResult<Partial>
    where
        T: Float + Element + Reported,
        L: Label + Load + Element + Reported,
        C: CodeType + Load + Element + Reported,
    {
        let xv = LoadView::<T>::new(x, "logits")?;
        let wv = class_weights::<T>(self.params.weight)?;
        let (labels, probs) = match target {
            ClassTarget::Labels(y) => (Some(View::<L>::new(y, "target")?), None),
            // Read as `T` where it lies, in its own float dtype.
            ClassTarget::Probabilities(y) => (None, Some(LoadView::<T>::new(y, "target")?)),
        };
        let codes = View::<C>::new(self.g, "groups")?;
        let swv = sample_weights::<T>(self.sample_weight)?;
        let call = drive::softmax::Loss {
            logits: xv.kernel(),
            target: match (&labels, &probs) {
                (Some(yv), _) => drive::softmax::Target::Labels(yv.kernel()),
                (None, Some(yv)) => drive::softmax::Target::Probabilities(yv.kernel()),
                (None, None) => unreachable!("one of the two targets is viewed"),
            },
            weight: wv.as_ref().map(LoadView::kernel),
            sample_weight: swv.as_ref().map(LoadView::kernel),
            params: self.params.kernel(),
            init,
            nan: self.params.nan,
        };
        class_weight_nan(self.params, wv.as_ref())?;
        let grouping = self.groups.grouping(&codes);
        let part = drive::groups::softmax_cross_entropy(state, &call, &grouping, &Gil(x.py()))?;
        check_groups(&part, state, &codes, self.groups)?;
        target_errors(&part, &xv, labels.as_ref(), probs.as_ref(), self.params)?;
        sample_weight_errors(x.py(), &part, swv.as_ref())?;
        if part.flags & flags::NAN != 0 {
            return Err(nan_error(&xv, probs.as_ref(), swv.as_ref()));
        }
        Ok(part)
    }
}

/// The errors of the codes and of the per-group state, reported before a loss's own.
fn check_groups<C: Code + Load + Element + Reported>(
    part: &Partial,
    state: &GroupSums,
    codes: &View<'_, C>,
    groups: &Groups<'_, '_>,
) -> PyResult<()> {
    if part.flags & flags::CANCELLED != 0 {
        return Err(PyRuntimeError::new_err("the call was cancelled"));
    }
    if part.flags & gflags::GROUPS != 0 {
        return Err(groups.code_error(codes));
    }
    if part.flags & gflags::MEMORY != 0 {
        return Err(out_of_memory(state.len()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Log loss

/// Per-group sums of scikit-learn's ``log_loss`` over class codes: ``(sums, weights, counts,
/// unnormalized)``, float64 / float64 / int64 arrays of one value per group (``weights``: the
/// sums of ``sample_weight``, the counts without it) and whether a row of ``y_pred`` does not
/// sum to one. Private: :func:`crossent.log_loss` maps labels to codes and calls it.
///
/// Examples
/// --------
/// >>> import numpy as np
/// >>> from crossent._core import _log_loss_groups
/// >>> p = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
/// >>> s, w, n, unnormalized = _log_loss_groups(p, np.array([0, 1, 0]), 2, None, [1, 1, 0])
/// >>> (s / w).round(6), n, unnormalized
/// (array([0.916291, 0.289909]), array([1, 2]), False)
#[pyfunction]
#[pyo3(signature = (y_pred, codes, classes, sample_weight, groups, n_groups=None))]
#[allow(clippy::type_complexity)]
pub fn _log_loss_groups<'py>(
    y_pred: &Bound<'py, PyAny>,
    codes: &Bound<'py, PyAny>,
    classes: usize,
    sample_weight: Option<&Bound<'py, PyAny>>,
    groups: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = n_groups)] n_groups: Option<usize>,
) -> PyResult<(
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    bool,
)> {
    let py = y_pred.py();
    let g = Groups {
        codes: groups,
        n: n_groups,
    };
    let mut state = fresh_state(n_groups, true)?;
    let (_, unnormalized) = logloss_fold(
        &mut state,
        Partial::EMPTY,
        y_pred,
        codes,
        sample_weight,
        classes,
        &g,
    )?;
    let counts: Vec<i64> = state.count.iter().map(|&c| c as i64).collect();
    Ok((
        PyArray1::from_vec(py, state.sum).into_any(),
        PyArray1::from_vec(py, state.weight).into_any(),
        PyArray1::from_vec(py, counts).into_any(),
        unnormalized,
    ))
}

/// Folds one batch of log loss into `state` (see [`bce_fold`]); also says whether a row of
/// `y_pred` does not sum to one.
pub fn logloss_fold<'py>(
    state: &mut GroupSums,
    init: Partial,
    y_pred: &Bound<'py, PyAny>,
    codes: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    classes: usize,
    groups: &Groups<'_, 'py>,
) -> PyResult<(Partial, bool)> {
    let x = ndarray(y_pred, "y_pred")?;
    // The machine epsilon of `y_pred`'s dtype (float16's is 2^-10), as the ungrouped call.
    let eps = match (x.dtype().kind(), x.dtype().itemsize()) {
        (b'f', 2) => 1.0 / 1024.0,
        (b'f', 4) => f64::from(f32::EPSILON),
        _ => f64::EPSILON,
    };
    let y = ndarray(codes, "y_true")?;
    let g = ndarray(groups.codes, "groups")?;
    let call = LogLossCall {
        y: &y,
        g: &g,
        sample_weight,
        classes,
        eps,
        groups,
    };
    let part = match precision(&x, "y_pred")? {
        Precision::F32 => call.labels::<f32>(state, init, &as_float::<f32>(x)?),
        Precision::F64 => call.labels::<f64>(state, init, &as_float::<f64>(x)?),
    }?;
    let unnormalized = part.flags & UNNORMALIZED != 0;
    Ok((
        Partial {
            flags: part.flags & !UNNORMALIZED,
            ..part
        },
        unnormalized,
    ))
}

/// The arguments of one grouped log-loss call besides `y_pred`.
struct LogLossCall<'a, 'py> {
    y: &'a Bound<'py, PyUntypedArray>,
    g: &'a Bound<'py, PyUntypedArray>,
    sample_weight: Option<&'a Bound<'py, PyAny>>,
    classes: usize,
    eps: f64,
    groups: &'a Groups<'a, 'py>,
}

impl<'py> LogLossCall<'_, 'py> {
    fn labels<T: Float + Element + Reported>(
        &self,
        state: &mut GroupSums,
        init: Partial,
        x: &Bound<'py, PyUntypedArray>,
    ) -> PyResult<Partial> {
        macro_rules! try_label {
            ($($l:ty),*) => {
                $(if is::<$l>(self.y) {
                    return self.codes::<T, $l>(state, init, x);
                })*
            };
        }
        try_label!(i64, i32, i16, i8, u8, u16, u32);
        Err(PyTypeError::new_err(format!(
            "'y_true' class codes must be an integer array (int8, int16, int32, int64, uint8, \
             uint16 or uint32), got dtype {}",
            dtype_name(self.y)
        )))
    }

    fn codes<T: Float + Element + Reported, L: Label + Load + Element + Reported>(
        &self,
        state: &mut GroupSums,
        init: Partial,
        x: &Bound<'py, PyUntypedArray>,
    ) -> PyResult<Partial> {
        with_code_dtype!(self.g, self.compute::<T, L, C>(state, init, x))
    }

    /// Runs the driver for probabilities `T`, labels `L` and codes `C`.
    fn compute<T, L, C>(
        &self,
        state: &mut GroupSums,
        init: Partial,
        x: &Bound<'py, PyUntypedArray>,
    ) -> PyResult<Partial>
    where
        T: Float + Element + Reported,
        L: Label + Load + Element + Reported,
        C: CodeType + Load + Element + Reported,
    {
        let xv = View::<T>::new(x, "y_pred")?;
        let yv = View::<L>::new(self.y, "y_true")?;
        let codes = View::<C>::new(self.g, "groups")?;
        let weights = self
            .sample_weight
            .filter(|w| !w.is_none())
            .map(|w| LoadView::<f64>::new(&ndarray(w, "sample_weight")?, "sample_weight"))
            .transpose()?;
        let call = drive::logloss::Call {
            probs: xv.kernel(),
            codes: yv.kernel(),
            weights: weights.as_ref().map(LoadView::kernel),
            classes: self.classes,
            eps: self.eps,
            init,
        };
        let grouping = self.groups.grouping(&codes);
        let part = drive::groups::log_loss(state, &call, &grouping, &Gil(x.py()))?;
        check_groups(&part, state, &codes, self.groups)?;
        domain_errors(&part, &xv, &yv, weights.as_ref(), self.classes)?;
        Ok(part)
    }
}
