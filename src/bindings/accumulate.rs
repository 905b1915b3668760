//! Streaming accumulators: a loss over data that arrives in batches.
//!
//! Each accumulator holds one [`Partial`], the state the reduction engine folds block
//! partials into. `update` continues the fold with the batch's blocks
//! ([`crate::kernels::reduce::reduce_from`]), so batches cut at multiples of
//! [`BLOCK`](crate::kernels::reduce::BLOCK) elements give the very bits of one call on the
//! concatenated arrays; `merge` adds another accumulator's state (partitions computed
//! elsewhere: other processes, Dask chunks). The state pickles exactly (Python floats carry
//! all 64 bits).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyClass;

use super::arrays::ndarray_as;
use super::bce;
use super::reduction::reduction_arg;
use crate::kernels::bce::Kind;
use crate::kernels::reduce::Partial;

/// The reduction an accumulator's `result()` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    Mean,
    Sum,
}

impl Scalar {
    pub fn parse(value: &str) -> PyResult<Self> {
        match value {
            "mean" => Ok(Scalar::Mean),
            "sum" => Ok(Scalar::Sum),
            other => Err(PyValueError::new_err(format!(
                "'reduction' must be 'mean' or 'sum', got {other:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scalar::Mean => "mean",
            Scalar::Sum => "sum",
        }
    }
}

/// The state shared by every accumulator: the reduction and the folded partial.
#[derive(Clone, Copy, Debug)]
pub struct State {
    pub reduction: Scalar,
    pub part: Partial,
}

impl State {
    fn new(reduction: &str) -> PyResult<Self> {
        Ok(State {
            reduction: Scalar::parse(reduction)?,
            part: Partial::EMPTY,
        })
    }

    /// Mean: the sum over the element count (NaN when empty); sum: the sum.
    fn result(&self) -> f64 {
        match self.reduction {
            Scalar::Sum => self.part.sum,
            Scalar::Mean => self.part.sum / self.part.count as f64,
        }
    }

    /// `(reduction, sum, weight, count)`: what pickling stores.
    fn to_tuple<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (
            self.reduction.name(),
            self.part.sum,
            self.part.weight,
            self.part.count,
        )
            .into_pyobject(py)
    }

    fn from_tuple(state: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let bad = || PyValueError::new_err("'state' is not an accumulator state");
        if state.len() != 4 {
            return Err(bad());
        }
        let reduction: String = state.get_item(0)?.extract().map_err(|_| bad())?;
        let sum: f64 = state.get_item(1)?.extract().map_err(|_| bad())?;
        let weight: f64 = state.get_item(2)?.extract().map_err(|_| bad())?;
        let count: u64 = state.get_item(3)?.extract().map_err(|_| bad())?;
        Ok(State {
            reduction: Scalar::parse(&reduction)?,
            part: Partial {
                sum,
                weight,
                count,
                ..Partial::EMPTY
            },
        })
    }

    fn repr(&self, class: &str, extra: &str) -> String {
        format!(
            "{class}(reduction='{}'{extra}) <count={}, sum={:?}>",
            self.reduction.name(),
            self.part.count,
            self.part.sum
        )
    }
}

/// The state of `other`, which must be an accumulator of class `C`.
fn state_of<C: PyClass + AsState>(other: &Bound<'_, PyAny>, class: &str) -> PyResult<State> {
    let other = other.cast::<C>().map_err(|_| {
        PyTypeError::new_err(format!(
            "'other' must be a {class}, got {}",
            other
                .get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string())
        ))
    })?;
    let borrowed = other
        .try_borrow()
        .map_err(|_| PyValueError::new_err("'other' is being updated by another thread"))?;
    Ok(borrowed.state())
}

/// Access to an accumulator's [`State`] and to what it keeps besides (fixed parameters).
pub trait AsState {
    fn state(&self) -> State;
    /// The fixed parameters to pickle besides the state (`None` if there are none).
    fn extra(&self, py: Python<'_>) -> Py<PyAny>;
    /// Restores what [`AsState::extra`] returned.
    fn set_extra(&mut self, extra: &Bound<'_, PyAny>) -> PyResult<()>;
}

/// One `#[pymethods]` block: the class's own methods (`$own`) plus those every accumulator
/// shares: `merge`, `reset`, `result`, `count`, `sum`, `reduction`, pickling.
macro_rules! accumulator_methods {
    ($class:ident, $name:literal, { $($own:tt)* }) => {
        #[pymethods]
        impl $class {
            $($own)*

            /// Adds the state of ``other`` (an accumulator of the same class, e.g. one that
            /// saw another part of the data) to this one. ``other`` is left unchanged.
            fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<()> {
                let theirs = state_of::<$class>(other, $name)?;
                let mut me = slf.try_borrow_mut().map_err(|_| {
                    PyValueError::new_err("the accumulator is being used by another thread")
                })?;
                me.state.part = me.state.part.merge(theirs.part);
                Ok(())
            }

            /// Forgets every batch seen: back to the state of a new accumulator.
            fn reset(&mut self) {
                self.state.part = Partial::EMPTY;
            }

            /// The loss over every element seen so far: the mean (NaN before any element,
            /// as for an empty array) or the sum, as chosen by ``reduction``.
            fn result(&self) -> f64 {
                self.state.result()
            }

            /// Number of elements seen.
            #[getter]
            fn count(&self) -> u64 {
                self.state.part.count
            }

            /// Sum of the per-element losses seen (accumulated in float64).
            #[getter]
            fn sum(&self) -> f64 {
                self.state.part.sum
            }

            /// ``"mean"`` or ``"sum"``.
            #[getter]
            fn reduction(&self) -> &'static str {
                self.state.reduction.name()
            }

            /// Pickles as ``(class, (), (state, fixed parameters))``.
            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
                let py = slf.py();
                let me = slf.borrow();
                let state = (me.state.to_tuple(py)?, me.extra(py)).into_pyobject(py)?;
                (slf.get_type(), PyTuple::empty(py), state).into_pyobject(py)
            }

            fn __setstate__(&mut self, state: &Bound<'_, PyAny>) -> PyResult<()> {
                let bad = || PyValueError::new_err("'state' is not an accumulator state");
                let tuple = state.cast::<PyTuple>().map_err(|_| bad())?;
                if tuple.len() != 2 {
                    return Err(bad());
                }
                let inner = tuple.get_item(0)?;
                let new_state = State::from_tuple(inner.cast::<PyTuple>().map_err(|_| bad())?)?;
                self.set_extra(&tuple.get_item(1)?)?;
                self.state = new_state;
                Ok(())
            }
        }
    };
}

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
/// Parameters
/// ----------
/// reduction : {"mean", "sum"}
///     What ``result()`` returns: the mean over all elements seen, or the sum.
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
#[pyclass(module = "crossent._core")]
pub struct BinaryCrossEntropyAccumulator {
    state: State,
}

impl AsState for BinaryCrossEntropyAccumulator {
    fn state(&self) -> State {
        self.state
    }
    fn extra(&self, py: Python<'_>) -> Py<PyAny> {
        py.None()
    }
    fn set_extra(&mut self, extra: &Bound<'_, PyAny>) -> PyResult<()> {
        if extra.is_none() {
            Ok(())
        } else {
            Err(PyValueError::new_err("'state' is not an accumulator state"))
        }
    }
}

accumulator_methods!(
    BinaryCrossEntropyAccumulator,
    "BinaryCrossEntropyAccumulator",
    {
        #[new]
        #[pyo3(signature = (*, reduction="mean"))]
        fn new(#[pyo3(from_py_with = reduction_arg)] reduction: &str) -> PyResult<Self> {
            Ok(Self {
                state: State::new(reduction)?,
            })
        }

        /// Adds one batch: ``input`` probabilities, ``target`` of the same shape, optional
        /// ``weight`` broadcast to ``input``'s shape. A batch with a value out of range raises
        /// ``ValueError`` and leaves the accumulator unchanged.
        #[pyo3(signature = (input, target, *, weight=None))]
        fn update(
            &mut self,
            input: &Bound<'_, PyAny>,
            target: &Bound<'_, PyAny>,
            weight: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<()> {
            self.state.part = bce::fold(
                Kind::Probabilities,
                self.state.part,
                input,
                target,
                weight,
                None,
            )?;
            Ok(())
        }

        fn __repr__(&self) -> String {
            self.state.repr("BinaryCrossEntropyAccumulator", "")
        }
    }
);

/// Streaming :func:`crossent.binary_cross_entropy_with_logits` over batches.
///
/// As :class:`BinaryCrossEntropyAccumulator`, on logits. ``pos_weight`` (the weight of the
/// positive class, typically one value per class along the last axis) is fixed for every
/// batch, as in ``torch.nn.BCEWithLogitsLoss``; per-element ``weight`` goes with each batch.
///
/// Parameters
/// ----------
/// reduction : {"mean", "sum"}
///     What ``result()`` returns.
/// pos_weight : array_like, optional
///     Broadcast to each batch's shape.
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
#[pyclass(module = "crossent._core")]
pub struct BinaryCrossEntropyWithLogitsAccumulator {
    state: State,
    /// `pos_weight` as a float64 array (converted once), or `None`.
    pos_weight: Option<Py<PyAny>>,
}

/// `pos_weight` as a float64 array, or `None` for `None`.
fn pos_weight_array(pw: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    match pw {
        Some(pw) if !pw.is_none() => Ok(Some(
            ndarray_as::<f64>(pw, "pos_weight")?.into_any().unbind(),
        )),
        _ => Ok(None),
    }
}

impl AsState for BinaryCrossEntropyWithLogitsAccumulator {
    fn state(&self) -> State {
        self.state
    }
    fn extra(&self, py: Python<'_>) -> Py<PyAny> {
        self.pos_weight
            .as_ref()
            .map_or_else(|| py.None(), |p| p.clone_ref(py))
    }
    fn set_extra(&mut self, extra: &Bound<'_, PyAny>) -> PyResult<()> {
        self.pos_weight = pos_weight_array(Some(extra))?;
        Ok(())
    }
}

accumulator_methods!(
    BinaryCrossEntropyWithLogitsAccumulator,
    "BinaryCrossEntropyWithLogitsAccumulator",
    {
        #[new]
        #[pyo3(signature = (*, reduction="mean", pos_weight=None))]
        fn new(
            #[pyo3(from_py_with = reduction_arg)] reduction: &str,
            pos_weight: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<Self> {
            Ok(Self {
                state: State::new(reduction)?,
                pos_weight: pos_weight_array(pos_weight)?,
            })
        }

        /// Adds one batch: ``input`` logits, ``target`` of the same shape, optional
        /// ``weight`` broadcast to ``input``'s shape. A bad batch raises and leaves the
        /// accumulator unchanged.
        #[pyo3(signature = (input, target, *, weight=None))]
        fn update(
            &mut self,
            input: &Bound<'_, PyAny>,
            target: &Bound<'_, PyAny>,
            weight: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<()> {
            let py = input.py();
            let pw = self.pos_weight.as_ref().map(|p| p.bind(py).clone());
            self.state.part = bce::fold(
                Kind::Logits,
                self.state.part,
                input,
                target,
                weight,
                pw.as_ref(),
            )?;
            Ok(())
        }

        /// The positive-class weight (a float64 array), or ``None``.
        #[getter]
        fn pos_weight(&self, py: Python<'_>) -> Option<Py<PyAny>> {
            self.pos_weight.as_ref().map(|p| p.clone_ref(py))
        }

        fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
            let extra = match &self.pos_weight {
                None => String::new(),
                Some(p) => {
                    let list = p.bind(py).call_method0("tolist")?;
                    format!(", pos_weight={}", list.repr()?)
                }
            };
            Ok(self
                .state
                .repr("BinaryCrossEntropyWithLogitsAccumulator", &extra))
        }
    }
);
