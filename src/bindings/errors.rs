//! [`DomainError`], the one exception every function, gradient and accumulator raises for a
//! value outside its domain, and [`domain_error`], the one place that builds it.

use std::fmt::Debug;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyTuple};

use super::arrays::shape_str;
use super::operand::Value;
use crate::kernels::float::Bool;

pyo3::create_exception!(
    crossent,
    DomainError,
    PyValueError,
    "A value outside a function's domain: a ``ValueError`` that says which, and where.\n\n\
     Raised for a negative probability or target, a class index out of range, a probability\n\
     outside [0, 1], ... by every function, gradient and accumulator; ``except ValueError``\n\
     catches it too.\n\n\
     Attributes\n\
     ----------\n\
     argument : str\n\
     \x20   The name of the argument that holds the value (``'p'``, ``'target'``, ...).\n\
     index : tuple of int or None\n\
     \x20   The position of the first such value in that argument's array, as the message\n\
     \x20   gives it: ``arr[index] == value``. ``None`` only when the value could not be found\n\
     \x20   again (another thread changed the array while the call read it).\n\
     value : int, float or None\n\
     \x20   The value found there, as a Python number (``None`` with ``index``).\n\n\
     Examples\n\
     --------\n\
     >>> import crossent\n\
     >>> try:\n\
     ...     crossent.entropy([0.5, -0.25, 0.75])\n\
     ... except crossent.DomainError as e:\n\
     ...     print(e.argument, e.index, e.value)\n\
     p (1,) -0.25"
);

/// An element type whose values a [`DomainError`] reports: as the message prints it
/// (`Debug`) and as its `value` attribute holds it (a Python int or float).
pub trait Reported: Debug {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
}

macro_rules! reported_int {
    ($($t:ty),*) => {$(
        impl Reported for $t {
            fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                Ok(self.into_pyobject(py)?.into_any())
            }
        }
    )*};
}
reported_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Reported for f32 {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyFloat::new(py, f64::from(*self)).into_any())
    }
}

impl Reported for f64 {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyFloat::new(py, *self).into_any())
    }
}

impl Reported for Bool {
    /// As NumPy reads the byte: any non-zero byte is `True`.
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(pyo3::types::PyBool::new(py, self.0 != 0)
            .to_owned()
            .into_any())
    }
}

impl<E: Reported> Reported for Value<E> {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Value::Own(v) => v.to_py(py),
            Value::F32(v) => v.to_py(py),
            Value::F64(v) => v.to_py(py),
        }
    }
}

/// `DomainError: 'arg' must hold <what>; found <v> at index (i, j)`, with `argument`, `index`
/// and `value` set; `bad` is the first offending position and value (`None`: not found again,
/// the message then names no position).
pub fn domain_error<V: Reported>(
    py: Python<'_>,
    arg: &str,
    what: &str,
    bad: Option<(Vec<usize>, V)>,
) -> PyErr {
    let message = match &bad {
        Some((index, v)) => format!(
            "'{arg}' must hold {what}; found {v:?} at index {}",
            shape_str(index)
        ),
        None => format!("'{arg}' must hold {what}"),
    };
    let err = DomainError::new_err(message);
    let fill = || -> PyResult<()> {
        let exc = err.value(py);
        exc.setattr("argument", arg)?;
        match &bad {
            Some((index, v)) => {
                exc.setattr("index", PyTuple::new(py, index)?)?;
                exc.setattr("value", v.to_py(py)?)?;
            }
            None => {
                exc.setattr("index", py.None())?;
                exc.setattr("value", py.None())?;
            }
        }
        Ok(())
    };
    match fill() {
        Ok(()) => err,
        Err(e) => e,
    }
}
