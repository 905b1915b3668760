//! Operands read in place in their own floating-point type.
//!
//! A kernel computes in one type `T` (the input's, or the wider of two inputs'), but its
//! operands may mix float32 and float64 (a float64 weight of float32 logits, a float32 `p`
//! with a float64 `q`). [`LoadView`] views such an operand where it lies, in its own dtype,
//! and hands the kernels a [`Src`] that converts each element as a tile is read: no copy of
//! the array is ever made. float16 and bfloat16 operands are read the same way (their bits,
//! widened exactly as a tile is read, see [`super::half`]). Only dtypes that are none of these
//! where a float is wanted (integers, bool) are converted by NumPy first, the documented price
//! of such input.

use std::fmt;

use numpy::{Element, PyArrayDyn, PyUntypedArray};
use pyo3::prelude::*;

use super::arrays::{is, ndarray_as, Operand, View};
use super::half::{bits, half_of};
use crate::kernels::half::{Half, HalfConvert};
use crate::kernels::strided::{find_first, Dims, Load, Src, Stored};
use crate::kernels::view;

/// The view of an operand, by its stored dtype.
enum Held<'py, E: Element> {
    Own(View<'py, E>),
    F32(View<'py, f32>),
    F64(View<'py, f64>),
    /// The bits of a float16 or bfloat16 array (viewed as uint16, in place).
    Half(View<'py, u16>, Half),
}

/// Runs `$body` with `$v` bound to the [`View`] held, whatever its element type.
macro_rules! on_view {
    ($held:expr, |$v:ident| $body:expr) => {
        match $held {
            Held::Own($v) => $body,
            Held::F32($v) => $body,
            Held::F64($v) => $body,
            Held::Half($v, _) => $body,
        }
    };
}

/// An operand read as `E` by the kernels, viewed (and borrowed, as [`View`] does) where it
/// lies in its own dtype.
pub struct LoadView<'py, E: Element> {
    held: Held<'py, E>,
}

impl<'py, E: Load + Element> LoadView<'py, E> {
    /// Views `arr` (an array from [`super::arrays::ndarray`]) as an operand read as `E`: in
    /// place when it holds `E`, or float32, float64, float16 or bfloat16 when `E` is a float
    /// type; any other real dtype is converted to `E` (copied) first.
    pub fn new(arr: &Bound<'py, PyUntypedArray>, arg: &str) -> PyResult<Self> {
        let float = E::STORED != Stored::Native;
        let held = if let Ok(own) = arr.cast::<PyArrayDyn<E>>() {
            Held::Own(View::typed(own, arg)?)
        } else if float && is::<f32>(arr) {
            Held::F32(View::new(arr, arg)?)
        } else if float && is::<f64>(arr) {
            Held::F64(View::new(arr, arg)?)
        } else if let Some(half) = half_of(arr).filter(|_| float) {
            Held::Half(View::new(&bits(arr)?, arg)?, half)
        } else {
            Held::Own(View::new(&ndarray_as::<E>(arr.as_any(), arg)?, arg)?)
        };
        Ok(LoadView { held })
    }

    /// The operand's shape.
    pub fn shape(&self) -> &[usize] {
        on_view!(&self.held, |v| v.shape())
    }

    /// Its element strides (in elements of its own dtype), one per dimension.
    pub fn strides(&self) -> Dims<isize> {
        on_view!(&self.held, |v| v.strides())
    }

    /// Where the kernels read it, and how it is stored.
    pub fn src(&self) -> Src<E> {
        match &self.held {
            Held::Own(v) => Src::native(v.ptr),
            Held::F32(v) => Src::f32(v.ptr),
            Held::F64(v) => Src::f64(v.ptr),
            Held::Half(v, half) => Src::half(v.ptr, *half),
        }
    }

    /// This operand as the kernels see it, for as long as it is held.
    pub fn kernel(&self) -> view::View<'_, E> {
        // SAFETY: the held view keeps the array alive and claimed for reading while the result
        // borrows it; `src` says how its elements are stored, and shape and strides are its
        // own (see `View::kernel`).
        unsafe { view::View::new(self.src(), self.shape(), &self.strides()) }
    }

    /// The 16-bit float format it is stored in, if any.
    pub fn half(&self) -> Option<Half> {
        match &self.held {
            Held::Half(_, half) => Some(*half),
            _ => None,
        }
    }

    /// The interpreter the viewed array belongs to.
    pub fn py(&self) -> Python<'py> {
        on_view!(&self.held, |v| v.py())
    }

    /// This operand for the overlap check on `out` (see [`View::operand`]).
    pub fn operand<'a>(&self, name: &'a str) -> Operand<'a, 'py> {
        on_view!(&self.held, |v| v.operand(name))
    }

    /// The C-order index of the first element that is `bad` (as read by the kernels, i.e.
    /// as `E`), and its value as stored.
    pub fn first_bad(&self, bad: impl Fn(E) -> bool) -> Option<(Vec<usize>, Value<E>)> {
        let (shape, strides) = (self.shape(), &self.strides());
        // SAFETY: each view is alive and describes valid elements of its own type.
        unsafe {
            match &self.held {
                Held::Own(v) => {
                    find_first(v.ptr, shape, strides, bad).map(|(i, x)| (i, Value::Own(x)))
                }
                Held::F32(v) => find_first(v.ptr, shape, strides, |x| bad(E::from_f32(x)))
                    .map(|(i, x)| (i, Value::F32(x))),
                Held::F64(v) => find_first(v.ptr, shape, strides, |x| bad(E::from_f64(x)))
                    .map(|(i, x)| (i, Value::F64(x))),
                Held::Half(v, h) => {
                    find_first(v.ptr, shape, strides, |x| bad(E::from_half_bits(x, *h)))
                        .map(|(i, x)| (i, Value::F32(f32::from_half(x, *h))))
                }
            }
        }
    }
}

/// A value as its operand stores it, for error messages (a 16-bit float as its exact `F32`).
pub enum Value<E> {
    Own(E),
    F32(f32),
    F64(f64),
}

impl<E: fmt::Debug> fmt::Debug for Value<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Own(v) => v.fmt(f),
            Value::F32(v) => v.fmt(f),
            Value::F64(v) => v.fmt(f),
        }
    }
}
