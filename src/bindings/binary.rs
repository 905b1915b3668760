//! The operands every binary-target function reads (binary cross-entropy, with logits, and its
//! gradient): `input`, `target`, `weight` and `pos_weight`, turned into borrowed views and
//! checked once, and the errors their domain checks report.

use numpy::{Element, PyUntypedArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::arrays::{ndarray, shape_str, Operand, View};
use super::errors::{domain_error, Reported};
use super::operand::LoadView;
use crate::kernels::bce::Inputs;
use crate::kernels::float::{Float, Target};
use crate::kernels::strided::{find_first, SendPtr, Src};

/// Evaluates `$call`, in which `E` names the NumPy element type of the binary target array
/// `$y` and `Y` the type the kernels read it as, for each supported target dtype; a
/// `TypeError` naming `'target'` for any other. Shared by the losses and their gradients;
/// the caller's scope must have `Bound`, `PyUntypedArray`, `PyTypeError`, `Bool`, `is` and
/// `dtype_name`.
macro_rules! with_target_dtype {
    ($y:expr, $call:expr) => {{
        let y: &Bound<'_, PyUntypedArray> = $y;
        with_target_dtype!(@try y, $call, f32 => f32, f64 => f64, bool => Bool, u8 => u8,
                           i8 => i8, i32 => i32, i64 => i64);
        Err(PyTypeError::new_err(format!(
            "'target' must be a float32, float64, bool, uint8, int8, int32 or int64 array, \
             got dtype {}",
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

/// A parameter array (`weight`, `pos_weight`) read as `T` and broadcast to the input's shape:
/// float32 and float64 in place, other real dtypes converted to `T`.
pub struct Parameter<'py, T: Element> {
    /// Keeps the array borrowed while the kernel reads it (`None`: a constant 1).
    view: Option<LoadView<'py, T>>,
    src: Src<T>,
    strides: Vec<isize>,
}

impl<'py, T: Float + Element> Parameter<'py, T> {
    fn new(obj: Option<&Bound<'py, PyAny>>, arg: &str, shape: &[usize]) -> PyResult<Self> {
        let Some(obj) = obj else {
            return Ok(Parameter {
                view: None,
                src: Src::native(T::one_ref()),
                strides: vec![0; shape.len()],
            });
        };
        let view = LoadView::<T>::new(&ndarray(obj, arg)?, arg)?;
        Ok(Parameter {
            src: view.src(),
            strides: view.broadcast_strides(shape, arg)?,
            view: Some(view),
        })
    }
}

/// The four inputs of a binary-target function, borrowed for as long as this lives:
/// `input` as `T`, `target` as its own dtype `E`, `weight` and `pos_weight` broadcast.
pub struct BinaryOperands<'py, T: Element, E: Element> {
    pub x: View<'py, T>,
    pub y: View<'py, E>,
    w: Parameter<'py, T>,
    pw: Parameter<'py, T>,
}

impl<'py, T: Float + Element + Reported, E: Element> BinaryOperands<'py, T, E> {
    /// Borrows the operands; `target` must have `input`'s shape, the parameters must
    /// broadcast to it.
    pub fn new(
        x: &Bound<'py, PyUntypedArray>,
        y: &Bound<'py, PyUntypedArray>,
        weight: Option<&Bound<'py, PyAny>>,
        pos_weight: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let xv = View::<T>::new(x, "input")?;
        let yv = View::<E>::new(y, "target")?;
        if yv.shape != xv.shape {
            return Err(PyValueError::new_err(format!(
                "'target' must have the same shape as 'input' {}, got {}",
                shape_str(&xv.shape),
                shape_str(&yv.shape)
            )));
        }
        let w = Parameter::new(weight, "weight", &xv.shape)?;
        let pw = Parameter::new(pos_weight, "pos_weight", &xv.shape)?;
        Ok(BinaryOperands {
            x: xv,
            y: yv,
            w,
            pw,
        })
    }

    /// The common shape.
    pub fn shape(&self) -> &[usize] {
        &self.x.shape
    }

    /// The operands an output array given by the caller must not overlap, named.
    pub fn operands(&self) -> Vec<Operand<'static, 'py>> {
        let mut ops = vec![self.x.operand("input"), self.y.operand("target")];
        ops.extend(self.w.view.as_ref().map(|v| v.operand("weight")));
        ops.extend(self.pw.view.as_ref().map(|v| v.operand("pos_weight")));
        ops
    }

    /// The pointers the kernels read, the target read as `Y` (of `E`'s size).
    pub fn inputs<Y: Target>(&self) -> Inputs<T, Y> {
        const { assert!(std::mem::size_of::<E>() == std::mem::size_of::<Y>()) };
        Inputs {
            input: SendPtr::from_const(self.x.ptr),
            target: SendPtr::from_const(self.y.ptr as *const Y),
            weight: self.w.src,
            pos_weight: self.pw.src,
        }
    }

    /// The element strides of the four inputs over the common shape (layout operands 0-3).
    pub fn strides(&self) -> [&[isize]; 4] {
        [
            &self.x.strides,
            &self.y.strides,
            &self.w.strides,
            &self.pw.strides,
        ]
    }

    /// The error for a target outside its domain, naming the first bad position.
    pub fn target_error<Y: Target + Reported>(&self) -> PyErr {
        // SAFETY: the view is alive and describes valid elements; `Y` has `E`'s size and
        // accepts every bit pattern of it (checked in `inputs` and by `Target`).
        let bad = unsafe {
            find_first(
                self.y.ptr as *const Y,
                self.shape(),
                &self.y.strides,
                |v: Y| !v.in_range(),
            )
        };
        let what = if Y::HARD {
            "labels 0 or 1"
        } else {
            "values in [0, 1]"
        };
        domain_error(self.x.py(), "target", what, bad)
    }

    /// The error for a probability outside [0, 1] in `input`, naming the first position.
    pub fn probability_error(&self) -> PyErr {
        // SAFETY: the view is alive and describes valid elements.
        let bad = unsafe {
            find_first(self.x.ptr, self.shape(), &self.x.strides, |p: T| {
                p < T::ZERO || p > T::ONE
            })
        };
        domain_error(self.x.py(), "input", "probabilities in [0, 1]", bad)
    }
}
