//! Python binding of scikit-learn's `log_loss` over class codes: parse, dispatch on dtypes,
//! convert. The driver ([`crate::kernels::drive::logloss`]) checks shapes and runs the
//! formula of [`crate::kernels::logloss`]; the mapping of arbitrary labels to codes (and
//! scikit-learn's label errors) lives in `crossent/_logloss.py`.

use numpy::{Element, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyUserWarning};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::accumulate::{
    accumulator_methods, partial_from_tuple, partial_to_tuple, repr, same_params, state_of,
    AsState, MeanOver, Reduce, Rule, Shared, State,
};

use super::arrays::{dtype_name, is, ndarray, View};
use super::errors::{domain_error, Reported};
use super::groups::{self as grouped, Grouped};
use super::operand::LoadView;
use super::precision::{as_float, precision, Precision};
use super::reduction::Reduction;
use super::threads::Gil;
use crate::kernels::drive;
use crate::kernels::float::Float;
use crate::kernels::logloss::{UNNORMALIZED, WEIGHT};
use crate::kernels::reduce::{flags, Partial};
use crate::kernels::softmax::Label;
use crate::kernels::strided::Load;

/// The sum, weight sum and row count of scikit-learn's ``log_loss`` over class codes, and
/// whether a row of ``y_pred`` does not sum to one. Private: :func:`crossent.log_loss` and
/// :class:`crossent.LogLossAccumulator` map labels to codes and call it.
///
/// ``y_pred`` is float32 or float64 (read in place, any strides; float16 is widened, other
/// real dtypes converted to float64), 1-D (the positive class's probability) or
/// ``(n, classes)``; ``codes`` are ``n`` integer class codes in ``[0, classes)`` (read in
/// place); ``sample_weight`` ``n`` non-negative weights (float32 or float64 read in place).
/// Predictions are clipped to ``[eps, 1 - eps]``, ``eps`` the machine epsilon of ``y_pred``'s
/// dtype (float64's for integers).
///
/// Examples
/// --------
/// >>> import numpy as np
/// >>> from crossent._core import _log_loss
/// >>> s, w, n, unnormalized = _log_loss(np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([0, 1]), 2)
/// >>> round(s / w, 6), n, unnormalized
/// (0.289909, 2, False)
#[pyfunction]
#[pyo3(signature = (y_pred, codes, classes, sample_weight=None))]
pub fn _log_loss(
    y_pred: &Bound<'_, PyAny>,
    codes: &Bound<'_, PyAny>,
    classes: usize,
    sample_weight: Option<&Bound<'_, PyAny>>,
) -> PyResult<(f64, f64, u64, bool)> {
    let (part, unnormalized) = fold(Partial::EMPTY, y_pred, codes, sample_weight, classes)?;
    Ok((part.sum, part.weight, part.count, unnormalized))
}

/// Continues `init` with the rows of one batch (merged in the row engine's blocks, so batches
/// cut at whole blocks give the bits of one call); also says whether a row does not sum to
/// one. A batch with a bad value raises and `init` is not used.
pub fn fold(
    init: Partial,
    y_pred: &Bound<'_, PyAny>,
    codes: &Bound<'_, PyAny>,
    sample_weight: Option<&Bound<'_, PyAny>>,
    classes: usize,
) -> PyResult<(Partial, bool)> {
    let x = ndarray(y_pred, "y_pred")?;
    let eps = match (x.dtype().kind(), x.dtype().itemsize()) {
        (b'f', 2) => f64::from(half_eps()),
        (b'f', 4) => f64::from(f32::EPSILON),
        _ => f64::EPSILON,
    };
    let y = ndarray(codes, "y_true")?;
    let part = match precision(&x, "y_pred")? {
        Precision::F32 => {
            with_codes::<f32>(init, &as_float::<f32>(x)?, &y, sample_weight, classes, eps)
        }
        Precision::F64 => {
            with_codes::<f64>(init, &as_float::<f64>(x)?, &y, sample_weight, classes, eps)
        }
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

/// The machine epsilon of float16, `2^-10`.
fn half_eps() -> f32 {
    1.0 / 1024.0
}

/// Dispatches on the integer dtype of the codes.
fn with_codes<T: Float + Element + Reported>(
    init: Partial,
    x: &Bound<'_, PyUntypedArray>,
    y: &Bound<'_, PyUntypedArray>,
    sample_weight: Option<&Bound<'_, PyAny>>,
    classes: usize,
    eps: f64,
) -> PyResult<Partial> {
    macro_rules! try_label {
        ($($l:ty),*) => {
            $(if is::<$l>(y) {
                return compute::<T, $l>(init, x, y, sample_weight, classes, eps);
            })*
        };
    }
    try_label!(i64, i32, i16, i8, u8, u16, u32);
    Err(PyTypeError::new_err(format!(
        "'y_true' class codes must be an integer array (int8, int16, int32, int64, uint8, \
         uint16 or uint32), got dtype {}",
        dtype_name(y)
    )))
}

fn compute<T: Float + Element + Reported, L: Label + Load + Element + Reported>(
    init: Partial,
    x: &Bound<'_, PyUntypedArray>,
    y: &Bound<'_, PyUntypedArray>,
    sample_weight: Option<&Bound<'_, PyAny>>,
    classes: usize,
    eps: f64,
) -> PyResult<Partial> {
    let py = x.py();
    let xv = View::<T>::new(x, "y_pred")?;
    let yv = View::<L>::new(y, "y_true")?;
    let weights = sample_weight
        .filter(|w| !w.is_none())
        .map(|w| LoadView::<f64>::new(&ndarray(w, "sample_weight")?, "sample_weight"))
        .transpose()?;
    let call = drive::logloss::Call {
        probs: xv.kernel(),
        codes: yv.kernel(),
        weights: weights.as_ref().map(LoadView::kernel),
        classes,
        eps,
        init,
    };
    let part = drive::logloss::log_loss(&call, &Gil(py))?;
    domain_errors(&part, &xv, &yv, weights.as_ref(), classes)?;
    Ok(part)
}

/// The error for the first domain error `part.flags` reports (a probability outside [0, 1],
/// a bad sample weight, a class code out of range), naming its position; shared with the
/// per-group call.
pub(super) fn domain_errors<T: Float + Element + Reported, L: Label + Load + Element + Reported>(
    part: &Partial,
    xv: &View<'_, T>,
    yv: &View<'_, L>,
    weights: Option<&LoadView<'_, f64>>,
    classes: usize,
) -> PyResult<()> {
    let py = xv.py();
    if part.flags & flags::INPUT != 0 {
        let bad = xv.kernel().first(|v: T| !(v >= T::ZERO && v <= T::ONE));
        return Err(domain_error(py, "y_pred", "probabilities in [0, 1]", bad));
    }
    if part.flags & WEIGHT != 0 {
        let bad = weights.and_then(|w| w.first_bad(|v: f64| !(v >= 0.0 && v.is_finite())));
        return Err(domain_error(
            py,
            "sample_weight",
            "non-negative finite weights",
            bad,
        ));
    }
    if part.flags & flags::TARGET != 0 {
        let c = classes as i64;
        let bad = yv.kernel().first(|v: L| !(0..c).contains(&v.index()));
        return Err(domain_error(
            py,
            "y_true",
            &format!("class codes in [0, {c})"),
            bad,
        ));
    }
    Ok(())
}

/// Streaming :func:`crossent.log_loss` over batches, with the classes fixed at construction.
///
/// ``update(y_true, y_pred, sample_weight=None)`` adds a batch (arguments as for
/// :func:`crossent.log_loss`; a batch may lack any class, or be empty); ``result()`` gives
/// the log loss over every sample seen: the weighted mean (``normalize=True``) or sum. A batch
/// whose ``y_pred`` rows do not sum to one warns as :func:`crossent.log_loss` does; a batch
/// with a bad value raises and leaves the accumulator unchanged. When every batch but the last
/// is C-contiguous and holds a multiple of ``max(1, crossent.CHUNK // n_classes)`` rows, the
/// result has exactly the bits of one call on the concatenated arrays; with other cuts it
/// agrees to about 1e-12 relative. ``merge(other)`` adds another accumulator's state (same
/// ``labels`` and ``normalize``), ``reset()`` starts over; accumulators pickle and copy exactly,
/// and may be shared by threads (as :class:`crossent.BinaryCrossEntropyAccumulator`).
///
/// Parameters
/// ----------
/// labels : array_like
///     Every class, as :func:`crossent.log_loss`'s ``labels=`` (sorted as scikit-learn sorts
///     them, with a ``UserWarning`` when not given sorted): ``y_pred``'s columns follow them.
/// normalize : bool, default True
///     ``result()`` is the (weighted) mean over samples; ``False``: the (weighted) sum. The
///     mean is NaN while the weights seen sum to zero (:func:`crossent.log_loss` raises).
///
/// Examples
/// --------
/// >>> import numpy as np, crossent
/// >>> acc = crossent.LogLossAccumulator(labels=["cat", "dog", "eel"])
/// >>> acc.update(["cat", "cat"], [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
/// >>> acc.update(["eel"], [[0.1, 0.1, 0.8]])
/// >>> acc.count
/// 3
/// >>> round(acc.result(), 6)
/// 0.363548
/// >>> y = ["cat", "cat", "eel"]
/// >>> p = [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]
/// >>> acc.result() == crossent.log_loss(y, p, labels=["cat", "dog", "eel"])
/// True
/// >>> crossent.log_loss(y, p)  # the batches lack "dog": scikit-learn needs labels=
/// Traceback (most recent call last):
/// ValueError: y_true and y_prob contain different number of classes: 2 vs 3. ...
#[pyclass(module = "crossent._core", frozen)]
pub struct LogLossAccumulator {
    state: State<Reduce>,
    /// The sorted classes, as a NumPy array (for encoding batches).
    classes: Py<PyAny>,
    /// The sorted classes as a list (the `labels` parameter that pickling stores).
    labels: Py<PyAny>,
    count: usize,
    groups: Grouped,
}

impl AsState for LogLossAccumulator {
    fn shared(&self) -> &Shared<Partial> {
        &self.state.part
    }
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let params = PyDict::new(py);
        params.set_item("labels", self.labels.bind(py))?;
        params.set_item("normalize", self.state.rule.reduction == Reduction::Mean)?;
        params.set_item("n_groups", self.groups.n)?;
        Ok(params)
    }
    fn grouped(&self) -> Option<&Grouped> {
        Some(&self.groups)
    }
}

/// The Python half of crossent's log loss (label rules and errors).
fn helpers(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("crossent._logloss")
}

accumulator_methods!(LogLossAccumulator, "Number of samples seen.", {
    #[new]
    #[pyo3(
            signature = (*, labels, normalize=None, n_groups=None),
            text_signature = "(*, labels, normalize=True, n_groups=None)"
        )]
    fn new(
        py: Python<'_>,
        labels: &Bound<'_, PyAny>,
        normalize: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = grouped::n_groups)] n_groups: Option<usize>,
    ) -> PyResult<Self> {
        let normalize: bool = match normalize {
            None => true,
            Some(v) => helpers(py)?
                .call_method1("_check_normalize", (v,))?
                .extract()?,
        };
        let fixed = helpers(py)?.call_method1("_fixed_classes", (labels,))?;
        let classes = fixed.get_item(0)?;
        let count: usize = classes.len()?;
        let labels = classes.call_method0("tolist")?;
        Ok(Self {
            state: State::new(Reduce {
                reduction: if normalize {
                    Reduction::Mean
                } else {
                    Reduction::Sum
                },
                over: MeanOver::Weight,
            }),
            classes: classes.unbind(),
            labels: labels.unbind(),
            count,
            groups: Grouped::new(n_groups, true)?,
        })
    }

    /// Adds one batch: ``y_true`` labels (each among ``labels``), ``y_pred`` of shape
    /// ``(n, n_classes)`` (or ``(n,)`` with two classes), optional ``sample_weight``, and
    /// ``groups`` (integer codes, one per sample) when the loss is kept per group.
    #[pyo3(signature = (y_true, y_pred, sample_weight=None, *, groups=None))]
    fn update(
        &self,
        y_true: &Bound<'_, PyAny>,
        y_pred: &Bound<'_, PyAny>,
        sample_weight: Option<&Bound<'_, PyAny>>,
        groups: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = y_true.py();
        let fixed = (self.classes.bind(py), self.labels.bind(py));
        let prepared = helpers(py)?.call_method1(
            "_prepare",
            (y_true, y_pred, sample_weight, py.None(), fixed),
        )?;
        let (pred, codes, w) = (
            prepared.get_item(0)?,
            prepared.get_item(1)?,
            prepared.get_item(2)?,
        );
        let unnormalized = {
            let mut part = self.state.part.lock(py, "LogLossAccumulator")?;
            if let Some(g) = groups {
                let g = grouped::Groups {
                    codes: g,
                    n: self.groups.n,
                };
                let mut unnormalized = false;
                self.groups.update(&mut part, |state, init| {
                    let (next, u) = grouped::logloss_fold(
                        state,
                        init,
                        &pred,
                        &codes,
                        Some(&w),
                        self.count,
                        &g,
                    )?;
                    unnormalized = u;
                    Ok(next)
                })?;
                unnormalized
            } else {
                self.groups.check_plain()?;
                let (next, unnormalized) = fold(*part, &pred, &codes, Some(&w), self.count)?;
                *part = next;
                unnormalized
            }
        };
        if unnormalized {
            PyErr::warn(
                py,
                &py.get_type::<PyUserWarning>(),
                c"The y_prob values do not sum to one. Make sure to pass probabilities.",
                1,
            )?;
        }
        Ok(())
    }

    /// The weight sum so far (the number of samples without ``sample_weight``).
    #[getter]
    fn weight_sum(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(self.state.part.lock(py, "LogLossAccumulator")?.weight)
    }

    /// The sorted classes, as a list.
    #[getter]
    fn labels(&self, py: Python<'_>) -> Py<PyAny> {
        self.labels.clone_ref(py)
    }

    /// Whether ``result()`` is the mean (``True``) or the sum.
    #[getter]
    fn normalize(&self) -> bool {
        self.state.rule.reduction == Reduction::Mean
    }

    /// Samples seen per group (an int64 array), or ``None`` when not grouped.
    #[getter]
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let _part = self.state.part.lock(py, "LogLossAccumulator")?;
        Ok(self.groups.counts(py))
    }

    /// The fixed number of groups, or ``None`` (the state grows with the codes seen).
    #[getter]
    fn n_groups(&self) -> Option<usize> {
        self.groups.n
    }
});
