//! The operands every binary-target function reads (binary cross-entropy, with logits, and its
//! gradient): `input`, `target`, `weight` and `pos_weight`, turned into borrowed views and
//! checked once, and the errors their domain checks report.

use numpy::{Element, PyArrayDyn, PyUntypedArray};
use pyo3::prelude::*;

use super::arrays::{ndarray, Operand, View};
use super::errors::{domain_error, Reported};
use super::half::{bits, half_of};
use super::nan_policy::NO_NAN;
use super::operand::{LoadView, Value};
use crate::kernels::drive;
use crate::kernels::float::{Float, Target};
use crate::kernels::half::{Half, HalfConvert};
use crate::kernels::strided::{find_first, Load, Src};
use crate::kernels::view;

/// Evaluates `$call`, in which `E` names the NumPy element type of the binary target array
/// `$y` and `Y` the type the kernels read it as, for each supported target dtype; a
/// `TypeError` naming `'target'` for any other. Shared by the losses and their gradients;
/// the caller's scope must have `Bound`, `PyUntypedArray`, `PyTypeError`, `Bool`, `is` and
/// `dtype_name`.
///
/// A float16 or bfloat16 target is read in place as its bits, widened to `f32` (`E` and `Y`
/// are then `f32`, see [`TargetView`]).
macro_rules! with_target_dtype {
    ($y:expr, $call:expr) => {{
        let y: &Bound<'_, PyUntypedArray> = $y;
        with_target_dtype!(@try y, $call, f32 => f32, f64 => f64, bool => Bool, u8 => u8,
                           i8 => i8, i32 => i32, i64 => i64);
        if $crate::bindings::half::half_of(y).is_some() {
            #[allow(dead_code)]
            type E = f32;
            #[allow(dead_code)]
            type Y = f32;
            return $call;
        }
        Err(PyTypeError::new_err(format!(
            "'target' must be a float16, bfloat16, float32, float64, bool, uint8, int8, int32 \
             or int64 array, got dtype {}",
            dtype_name(y)
        )))
    }};
    (@try $y:ident, $call:expr, $($e:ty => $k:ty),*) => {$(
        if is::<$e>($y) {
            #[allow(dead_code)]
            type E = $e;
            #[allow(dead_code)]
            type Y = $k;
            return $call;
        }
    )*};
}

pub(crate) use with_target_dtype;

/// The target of a binary-target function: an array of its own dtype `E`, or the bits of a
/// float16 or bfloat16 array (read as `f32`).
pub enum TargetView<'py, E: Element> {
    Own(View<'py, E>),
    Half(View<'py, u16>, Half),
}

/// The inputs of a binary-target function, borrowed for as long as this lives: `input` read
/// as `T`, `target` as its own dtype `E` ([`TargetView`]), and `weight`, `pos_weight` and (the
/// losses only) `sample_weight` read as `T` (float16, bfloat16, float32 and float64 in place,
/// other real dtypes converted). Their shapes are the driver's to check ([`drive::bce`]).
pub struct BinaryOperands<'py, T: Element, E: Element> {
    pub x: LoadView<'py, T>,
    pub y: TargetView<'py, E>,
    w: Option<LoadView<'py, T>>,
    pw: Option<LoadView<'py, T>>,
    sw: Option<LoadView<'py, T>>,
}

impl<'py, T: Float + Load + Element + Reported, E: Element> BinaryOperands<'py, T, E> {
    /// Borrows the operands: `input` in place in any dtype [`LoadView`] reads as `T`, and the
    /// sample weights `sample_weight` (`None`: none).
    pub fn new(
        x: &Bound<'py, PyUntypedArray>,
        y: &Bound<'py, PyUntypedArray>,
        weight: Option<&Bound<'py, PyAny>>,
        pos_weight: Option<&Bound<'py, PyAny>>,
        sample_weight: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let parameter = |obj: Option<&Bound<'py, PyAny>>, arg| {
            obj.map(|obj| LoadView::<T>::new(&ndarray(obj, arg)?, arg))
                .transpose()
        };
        // The target's own dtype first (the dispatch has just found it), then 16-bit floats.
        let y = match y.cast::<PyArrayDyn<E>>() {
            Ok(own) => TargetView::Own(View::typed(own, "target")?),
            Err(_) => match half_of(y) {
                Some(half) => TargetView::Half(View::new(&bits(y)?, "target")?, half),
                None => TargetView::Own(View::<E>::new(y, "target")?),
            },
        };
        Ok(BinaryOperands {
            x: LoadView::<T>::new(x, "input")?,
            y,
            w: parameter(weight, "weight")?,
            pw: parameter(pos_weight, "pos_weight")?,
            sw: parameter(sample_weight, "sample_weight")?,
        })
    }

    /// Whether sample weights were given (the mean then divides by their sum).
    pub fn sample_weighted(&self) -> bool {
        self.sw.is_some()
    }

    /// The input's shape.
    pub fn shape(&self) -> &[usize] {
        self.x.shape()
    }

    /// The operands an output array given by the caller must not overlap, named.
    pub fn operands(&self) -> Vec<Operand<'static, 'py>> {
        let y = match &self.y {
            TargetView::Own(v) => v.operand("target"),
            TargetView::Half(v, _) => v.operand("target"),
        };
        let mut ops = vec![self.x.operand("input"), y];
        ops.extend(self.w.as_ref().map(|v| v.operand("weight")));
        ops.extend(self.pw.as_ref().map(|v| v.operand("pos_weight")));
        ops.extend(self.sw.as_ref().map(|v| v.operand("sample_weight")));
        ops
    }

    /// The operands as the driver takes them, the target read as `Y` (of `E`'s size).
    pub fn kernel<Y: Target + Load>(&self) -> drive::bce::Binary<'_, T, Y> {
        drive::bce::Binary {
            input: self.x.kernel(),
            target: self.target::<Y>(),
            weight: self.w.as_ref().map(LoadView::kernel),
            pos_weight: self.pw.as_ref().map(LoadView::kernel),
            sample_weight: self.sw.as_ref().map(LoadView::kernel),
        }
    }

    /// The target as the kernels read it, as `Y`.
    fn target<Y: Target + Load>(&self) -> view::View<'_, Y> {
        match &self.y {
            // SAFETY: the bits of a 16-bit float array, valid along the view's shape and
            // strides while it is held (`View::kernel`'s argument); `Src::half` reads them so.
            TargetView::Half(v, half) => unsafe {
                view::View::new(Src::half(v.ptr, *half), v.shape(), &v.strides())
            },
            // SAFETY: `with_target_dtype` pairs each NumPy dtype `E` with the type `Y` of its
            // size that reads every bit pattern of it (bool bytes as `Bool`).
            TargetView::Own(v) => unsafe { v.kernel_as::<Y>() },
        }
    }

    /// The error for a negative sample weight, naming the first position.
    pub fn sample_weight_error(&self) -> PyErr {
        let bad = self
            .sw
            .as_ref()
            .and_then(|w| w.first_bad(|v: T| v < T::ZERO));
        sample_weight_error(self.x.py(), bad)
    }

    /// The error for a target outside its domain, naming the first bad position.
    pub fn target_error<Y: Target + Load + Reported>(&self) -> PyErr {
        let bad = match &self.y {
            // SAFETY: as in `target`, the target's bits along its own shape and strides.
            TargetView::Half(v, half) => unsafe {
                find_first(v.ptr, v.shape(), &v.strides(), |b| {
                    !f32::from_half(b, *half).in_range()
                })
            }
            .map(|(i, b)| (i, Value::<Y>::F32(f32::from_half(b, *half)))),
            TargetView::Own(_) => self
                .target::<Y>()
                .first(|v: Y| !v.in_range())
                .map(|(i, v)| (i, Value::Own(v))),
        };
        let what = if Y::HARD {
            "labels 0 or 1"
        } else {
            "values in [0, 1]"
        };
        domain_error(self.x.py(), "target", what, bad)
    }

    /// Under `nan_policy='raise'`: the error for the first NaN of the first operand holding
    /// one, in the order `input`, `target`, `weight`, `pos_weight`, `sample_weight` (`None`
    /// when none holds a NaN). Only looked for when the kernel's sum came out NaN, which
    /// every NaN operand makes it: the check rides on the single pass.
    pub fn nan_error<Y: Target + Load + Reported>(&self) -> Option<PyErr> {
        let py = self.x.py();
        if let Some(bad) = self.x.first_bad(|v: T| v.is_nan()) {
            return Some(domain_error(py, "input", NO_NAN, Some(bad)));
        }
        if !Y::HARD {
            let bad = match &self.y {
                // SAFETY: as in `target`, the target's bits along its own shape and strides.
                TargetView::Half(v, half) => unsafe {
                    find_first(v.ptr, v.shape(), &v.strides(), |b| {
                        f32::from_half(b, *half).is_nan()
                    })
                }
                .map(|(i, b)| (i, Value::<Y>::F32(f32::from_half(b, *half)))),
                TargetView::Own(_) => self
                    .target::<Y>()
                    .first(|v: Y| v.prob::<f64>().is_nan())
                    .map(|(i, v)| (i, Value::Own(v))),
            };
            if bad.is_some() {
                return Some(domain_error(py, "target", NO_NAN, bad));
            }
        }
        let params = [
            (&self.w, "weight"),
            (&self.pw, "pos_weight"),
            (&self.sw, "sample_weight"),
        ];
        params.into_iter().find_map(|(v, arg)| {
            let bad = v.as_ref()?.first_bad(|v: T| v.is_nan())?;
            Some(domain_error(py, arg, NO_NAN, Some(bad)))
        })
    }

    /// The error for a probability outside [0, 1] in `input`, naming the first position.
    pub fn probability_error(&self) -> PyErr {
        let bad = self.x.first_bad(|p: T| p < T::ZERO || p > T::ONE);
        domain_error(self.x.py(), "input", "probabilities in [0, 1]", bad)
    }
}

/// The [`DomainError`](super::errors::DomainError) of a negative sample weight at `bad` (its
/// index and value), the message every loss that takes `sample_weight` gives (log loss also
/// refuses non-finite ones, as scikit-learn does, with its own wording).
pub fn sample_weight_error<V: Reported>(py: Python<'_>, bad: Option<(Vec<usize>, V)>) -> PyErr {
    domain_error(py, "sample_weight", "non-negative weights", bad)
}
