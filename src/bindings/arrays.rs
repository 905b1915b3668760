//! From Python objects to in-place array views: conversion, dtype checks, borrows, errors.
//!
//! An ndarray of a supported dtype, in native byte order and aligned, is read where it lies,
//! whatever its strides. Anything else NumPy can turn into one (lists, scalars, byte-swapped or
//! misaligned arrays) is converted once by NumPy first; that copy is the documented price of
//! such input.

use std::ffi::c_int;

use numpy::npyffi::{self, npy_intp, PY_ARRAY_API};
use numpy::{
    Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyException, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::kernels::memory::{self, Access, Conflict, Held, Region};
use crate::kernels::strided::{Dims, Load, Store};
use crate::kernels::view;

/// The `numpy` module, imported once.
fn numpy_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("numpy")?.unbind()))
        .map(|m| m.bind(py))
}

/// `obj` as an ndarray that Rust can read in place: native byte order, aligned, strides that
/// are multiples of the item size. Converts (copies) only what is not already so.
pub fn ndarray<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    let py = obj.py();
    let arr = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        // The Arrow PyCapsule interface (pyarrow, polars, DuckDB): buffers read in place.
        Err(_) if super::arrow::exports_arrow(obj)? => super::arrow::ndarray(obj, arg)?,
        // Objects that speak only DLPack (no `__array__` / array interface): NumPy's
        // `asarray` would wrap them in an object array; `from_dlpack` views CPU memory in
        // place (and refuses other devices).
        Err(_) if dlpack_only(obj)? => numpy_module(py)?
            .call_method1("from_dlpack", (obj,))
            .map_err(|e| conversion_error(py, arg, e))?
            .cast_into::<PyUntypedArray>()?,
        Err(_) => {
            match super::half::torch_bfloat16(obj).map_err(|e| conversion_error(py, arg, e))? {
                // PyTorch bfloat16 tensors, which NumPy cannot take: their memory, in place.
                Some(a) => a.cast_into::<PyUntypedArray>()?,
                None => numpy_module(py)?
                    .call_method1("asarray", (obj,))
                    .map_err(|e| conversion_error(py, arg, e))?
                    .cast_into::<PyUntypedArray>()?,
            }
        }
    };
    let dtype = arr.dtype();
    let itemsize = dtype.itemsize().max(1) as isize;
    let native = dtype.is_native_byteorder().unwrap_or(true);
    let aligned = arr.is_aligned() && arr.strides().iter().all(|s| s % itemsize == 0);
    if native && aligned {
        return Ok(arr);
    }
    // A fresh, aligned, C-contiguous copy in native byte order.
    let native_dtype = dtype.call_method1("newbyteorder", ("=",))?;
    let fresh = numpy_module(py)?.call_method1("array", (arr, native_dtype))?;
    Ok(fresh.cast_into::<PyUntypedArray>()?)
}

/// True if `obj` offers `__dlpack__` but none of NumPy's own array protocols.
fn dlpack_only(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(obj.hasattr("__dlpack__")?
        && !obj.hasattr("__array__")?
        && !obj.hasattr("__array_interface__")?
        && !obj.hasattr("__array_struct__")?)
}

/// The error for an object NumPy cannot turn into an array: a `TypeError` naming the argument,
/// chained to NumPy's own error. `MemoryError` and what is not an `Exception` (e.g.
/// `KeyboardInterrupt` while a long list is converted) pass through unchanged.
fn conversion_error(py: Python<'_>, arg: &str, e: PyErr) -> PyErr {
    if !e.is_instance_of::<PyException>(py) || e.is_instance_of::<PyMemoryError>(py) {
        return e;
    }
    let err = PyTypeError::new_err(format!("'{arg}' could not be read as an array: {e}"));
    err.set_cause(py, Some(e));
    err
}

/// `obj` as an ndarray of element type `T`, converting (copying) other real dtypes. For small
/// parameter arrays (weights) where a conversion is cheap and expected.
pub fn ndarray_as<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let arr = ndarray(obj, arg)?;
    if is::<T>(&arr) {
        return Ok(arr);
    }
    let kind = arr.dtype().kind();
    if !matches!(kind, b'b' | b'i' | b'u' | b'f') {
        return Err(PyTypeError::new_err(format!(
            "'{arg}' must be a real-valued array, got dtype {}",
            dtype_name(&arr)
        )));
    }
    let py = obj.py();
    let converted = arr.call_method1("astype", (numpy::dtype::<T>(py),))?;
    Ok(converted.cast_into::<PyUntypedArray>()?)
}

/// The dtype's name for error messages (`float16`, `complex128`, `str96`, ...); for a
/// non-native byte order its code instead (`>f8`), which says what is wrong with it.
pub fn dtype_name(arr: &Bound<'_, PyUntypedArray>) -> String {
    let dtype = arr.dtype();
    let attr = if dtype.is_native_byteorder().unwrap_or(true) {
        "name"
    } else {
        "str"
    };
    match dtype.getattr(attr) {
        Ok(name) => name.to_string(),
        Err(_) => "?".into(),
    }
}

/// True if `arr` holds elements of type `E`.
pub fn is<E: Element>(arr: &Bound<'_, PyUntypedArray>) -> bool {
    arr.dtype().is_equiv_to(&numpy::dtype::<E>(arr.py()))
}

/// Formats a shape the NumPy way: `(3,)`, `(2, 4)`, `()`.
pub fn shape_str(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A new, uninitialised output array of dtype `E` (Fortran order if `fortran`, C order
/// otherwise). Allocated by NumPy's `PyArray_NewFromDescr`, whose failures (a size it cannot
/// allocate, e.g. `reduction="none"` over a broadcast input of 2^45 elements) come back as
/// their Python exception (`MemoryError`, `ValueError`), never a panic; the C call costs a
/// fraction of calling `numpy.empty`, which matters for small arrays.
pub fn new_output<'py, E: Element>(
    py: Python<'py>,
    shape: &[usize],
    fortran: bool,
) -> PyResult<Bound<'py, PyAny>> {
    // On the stack: NumPy arrays have at most 64 dimensions (NPY_MAXDIMS), and the shapes
    // given here are those of arrays NumPy made.
    let mut dims = [0 as npy_intp; 64];
    if shape.len() > dims.len() {
        return Err(PyValueError::new_err("too many dimensions"));
    }
    for (d, &n) in dims.iter_mut().zip(shape) {
        *d = npy_intp::try_from(n).map_err(|_| PyValueError::new_err("array is too big"))?;
    }
    let ndim =
        c_int::try_from(shape.len()).map_err(|_| PyValueError::new_err("too many dimensions"))?;
    // SAFETY: the arguments are those NumPy documents: the ndarray type, a new reference to
    // the dtype (stolen), `ndim` dimensions, no strides nor data (NumPy allocates), the
    // memory-order flag, no base object. A null result has set the Python error.
    unsafe {
        let ptr = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            npyffi::get_type_object(py, npyffi::NpyTypes::PyArray_Type),
            numpy::dtype::<E>(py).into_dtype_ptr(),
            ndim,
            dims.as_mut_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            c_int::from(fortran),
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, ptr)
    }
}

/// A new, uninitialised array of `like`'s shape and dtype `E`, in `like`'s memory order
/// (Fortran order for a Fortran-ordered array, C order otherwise).
pub fn new_output_like<'py, E: Element>(
    like: &Bound<'py, PyUntypedArray>,
) -> PyResult<Bound<'py, PyAny>> {
    let fortran = like.is_fortran_contiguous() && !like.is_c_contiguous();
    new_output::<E>(like.py(), like.shape(), fortran)
}

/// The address of an ndarray's first element (its `data` field).
fn data_of(arr: &Bound<'_, PyUntypedArray>) -> *mut std::ffi::c_char {
    // SAFETY: `arr` is a live ndarray, so its object pointer is valid to read `data` from.
    unsafe { (*arr.as_array_ptr()).data }
}

/// The memory of an ndarray's elements, as [`memory::Region`] describes it (byte strides, so
/// any layout NumPy can make); `None` for an empty array.
fn region_of(arr: &Bound<'_, PyUntypedArray>) -> Option<Region> {
    Region::of(
        data_of(arr) as usize,
        arr.shape(),
        arr.strides(),
        arr.dtype().itemsize(),
    )
}

/// True if `arr`'s memory was allocated by NumPy for an array (the array, or the ndarray at
/// the end of its chain of `base` ndarrays, owns its data): the process's heap, never a
/// mapping of a file, so there is no second mapping to look for. (Only an allocator that maps
/// files, installed through NumPy's `PyDataMem_SetHandler`, would break this.) Spares the
/// common `out=np.empty(...)` the system call of [`memory::file_pieces`].
fn numpy_allocated(arr: &Bound<'_, PyUntypedArray>) -> bool {
    let py = arr.py();
    let mut ptr = arr.as_array_ptr();
    // A chain of views is short; the bound only guards against a cycle no NumPy builds.
    for _ in 0..64 {
        // SAFETY: `ptr` is a live ndarray: `arr` itself, or an ndarray base that the arrays
        // before it keep alive.
        let fields = unsafe { &*ptr };
        if fields.flags & npyffi::NPY_ARRAY_OWNDATA != 0 {
            return true;
        }
        let base = fields.base;
        // SAFETY: a non-null base is a live object (a reference the array holds).
        if base.is_null() || unsafe { npyffi::PyArray_Check(py, base) } == 0 {
            return false;
        }
        ptr = base.cast();
    }
    false
}

/// An array a call reads, as the overlap check on `out` sees it.
pub struct Operand<'a, 'py> {
    /// The argument's name, for the error message.
    pub name: &'a str,
    pub array: Bound<'py, PyAny>,
    pub region: Option<Region>,
}

/// `arr` as an operand of the overlap check on `out`, for an input not (yet) viewed as typed
/// elements.
pub fn operand<'a, 'py>(arr: &Bound<'py, PyUntypedArray>, name: &'a str) -> Operand<'a, 'py> {
    Operand {
        name,
        array: arr.as_any().clone(),
        region: region_of(arr),
    }
}

/// True if some element of `a` and some element of `b` share a byte, as NumPy's exact
/// solver decides it (bounded; a problem too hard for the bound counts as shared).
fn shares_memory(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = a.py();
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("max_work", 1 << 20)?;
    match numpy_module(py)?.call_method("shares_memory", (a, b), Some(&kwargs)) {
        Ok(shared) => shared.is_truthy(),
        // numpy's TooHardError is a RuntimeError.
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyRuntimeError>(py) => Ok(true),
        Err(e) => Err(e),
    }
}

/// The error for an array whose memory a call of another thread holds (see [`memory::claim`]).
fn in_use(arg: &str, access: Access, conflict: Conflict) -> PyErr {
    let what = match conflict.other {
        Access::Write => "writes as its 'out'",
        Access::Read => "reads",
    };
    let verb = match access {
        Access::Read => "cannot be read",
        Access::Write => "cannot be written",
    };
    PyValueError::new_err(format!(
        "'{arg}' {verb}: it shares memory with an array that a call still running in another \
         thread {what}"
    ))
}

/// A read-only view of an array's elements where they lie. Holding it holds a claim to read
/// that memory ([`memory::claim`]): a call of another thread that would write any of its
/// bytes, through whatever object, is refused until the view is dropped.
///
/// Its shape and strides are the array's own, read from it when asked for, not copied: a view
/// is moved a few times per call (into the operand structs, out of results), so it stays at
/// four words.
pub struct View<'py, E: Element> {
    array: Bound<'py, PyArrayDyn<E>>,
    _claim: Option<Held>,
    pub ptr: *const E,
}

impl<'py, E: Element> View<'py, E> {
    /// Views `arr`, which must hold `E` elements (see [`is`]) and come from [`ndarray`].
    pub fn new(arr: &Bound<'py, PyUntypedArray>, arg: &str) -> PyResult<Self> {
        Self::typed(arr.cast::<PyArrayDyn<E>>()?, arg)
    }

    /// [`View::new`] of an array whose dtype a `cast` to `PyArrayDyn<E>` has just confirmed,
    /// so that the test that chose the dtype is also the view's (each test asks NumPy whether
    /// two dtypes are equivalent, about 120 instructions).
    pub fn typed(typed: &Bound<'py, PyArrayDyn<E>>, arg: &str) -> PyResult<Self> {
        let arr = typed.as_untyped();
        let claim = memory::claim(region_of(arr), Access::Read, None)
            .map_err(|c| in_use(arg, Access::Read, c))?;
        Ok(View {
            ptr: typed.data(),
            array: typed.clone(),
            _claim: claim,
        })
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// Its element strides, one per dimension of the shape (`ndarray` accepts only arrays
    /// whose byte strides are multiples of the item size).
    pub fn strides(&self) -> Dims<isize> {
        let itemsize = std::mem::size_of::<E>() as isize;
        Dims::collect(self.array.strides().iter().map(|s| s / itemsize), 0)
    }

    /// The interpreter the viewed array belongs to.
    pub fn py(&self) -> Python<'py> {
        self.array.py()
    }

    /// This view as an operand of the overlap check on `out` (see [`ViewMut::new`]).
    pub fn operand<'a>(&self, name: &'a str) -> Operand<'a, 'py> {
        Operand {
            name,
            array: self.array.as_any().clone(),
            region: region_of(self.array.as_untyped()),
        }
    }
}

impl<E: Element + Load> View<'_, E> {
    /// This view as the kernels see it, for as long as it is held.
    pub fn kernel(&self) -> view::View<'_, E> {
        // SAFETY: `self` holds the array (so its memory) and a read claim on it for as long as
        // the returned view borrows it; `ptr`, `shape` and `strides` are the array's own, its
        // elements `E`, aligned (see `ndarray`), and no call of this crate writes them while
        // the claim is held.
        unsafe { view::View::new(self.ptr, self.shape(), &self.strides()) }
    }
}

impl<E: Element> View<'_, E> {
    /// This view as the kernels see it, read as `Y`.
    ///
    /// # Safety
    /// `Y` must have `E`'s size and alignment and accept each of its bit patterns (a NumPy
    /// bool read as [`Bool`](crate::kernels::float::Bool)).
    pub unsafe fn kernel_as<Y: Load>(&self) -> view::View<'_, Y> {
        const { assert!(std::mem::size_of::<E>() == std::mem::size_of::<Y>()) };
        // SAFETY: as in `kernel`, with the caller's promise that every `E` is a valid `Y`.
        unsafe { view::View::new(self.ptr.cast::<Y>(), self.shape(), &self.strides()) }
    }
}

/// A writable view of an output array where it lies. Holding it holds a claim to write that
/// memory ([`memory::claim`]): a call of another thread that would read or write any of its
/// bytes, through whatever object, is refused until the view is dropped.
pub struct ViewMut<'py, E: Element> {
    array: Bound<'py, PyUntypedArray>,
    _claim: Option<Held>,
    pub ptr: *mut E,
    pub strides: Dims<isize>,
}

impl<'py, E: Element> ViewMut<'py, E> {
    /// Views `out`, an array the caller gave, for writing: it must be an ndarray of dtype `E`
    /// and shape `shape`, writeable, aligned, not overlapping itself, nor any of `inputs` (the
    /// arrays this call reads), nor any array another running call reads or writes. (An array
    /// this call allocated is viewed with [`ViewMut::fresh`].)
    ///
    /// The checks compare memory, not array objects, so that two arrays over the same memory
    /// through different objects (`np.frombuffer(memoryview(x))`, `torch.from_numpy(x)
    /// .numpy()`, `ctypes`) are seen to overlap, and so are two mappings of the same bytes of
    /// one file (two `np.memmap`s or `mmap.mmap`s of it, on Linux: see [`memory`]); the kernel
    /// would otherwise read elements it had already overwritten.
    pub fn new(
        out: &Bound<'py, PyAny>,
        shape: &[usize],
        dtype_name_e: &str,
        inputs: &[Operand<'_, 'py>],
    ) -> PyResult<Self> {
        let arr = out.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "'out' must be a numpy.ndarray, got {}",
                super::args::type_name(out)
            ))
        })?;
        if !is::<E>(arr) {
            return Err(PyTypeError::new_err(format!(
                "'out' must have dtype {dtype_name_e}, got {}",
                dtype_name(arr)
            )));
        }
        if arr.shape() != shape {
            return Err(PyValueError::new_err(format!(
                "'out' must have shape {}, got {}",
                shape_str(shape),
                shape_str(arr.shape())
            )));
        }
        // SAFETY: `arr` is a live ndarray: its flags are valid to read.
        let writeable = unsafe { (*arr.as_array_ptr()).flags } & npyffi::NPY_ARRAY_WRITEABLE != 0;
        if !writeable {
            return Err(PyValueError::new_err("'out' is read-only"));
        }
        let itemsize = std::mem::size_of::<E>() as isize;
        let dtype_native = arr.dtype().is_native_byteorder().unwrap_or(true);
        if !arr.is_aligned() || !dtype_native || arr.strides().iter().any(|s| s % itemsize != 0) {
            return Err(PyValueError::new_err(
                "'out' must be aligned and in native byte order",
            ));
        }
        let strides = Dims::collect(arr.strides().iter().map(|s| s / itemsize), 0);
        if overlaps_itself(shape, &strides) {
            return Err(PyValueError::new_err(
                "'out' must not have overlapping elements (e.g. a zero stride)",
            ));
        }
        let region = region_of(arr);
        for input in inputs {
            let overlap = match (region, input.region) {
                (Some(a), Some(b)) => a.may_share(&b),
                _ => false,
            };
            if overlap && shares_memory(out, &input.array)? {
                return Err(PyValueError::new_err(format!(
                    "'out' must not share memory with '{}'",
                    input.name
                )));
            }
        }
        // Through a second mapping of a file that `out` maps shared: only looked up when `out`
        // was given (a fresh array is no file's) and its memory is not NumPy's own.
        let files = match (region, inputs.is_empty() || numpy_allocated(arr)) {
            (Some(r), false) => memory::file_pieces(&r),
            _ => Vec::new(),
        };
        if files.iter().any(|p| p.shared) {
            for input in inputs {
                let theirs = input.region.map(|r| memory::file_pieces(&r));
                if memory::files_conflict(&files, theirs.as_deref().unwrap_or(&[])) {
                    return Err(PyValueError::new_err(format!(
                        "'out' must not share memory with '{}': they map the same bytes of \
                         one file",
                        input.name
                    )));
                }
            }
        }
        let claim = memory::claim(region, Access::Write, Some(files))
            .map_err(|c| in_use("out", Access::Write, c))?;
        Ok(ViewMut {
            // `E` elements: the dtype was checked above.
            ptr: data_of(arr).cast::<E>(),
            strides,
            array: arr.clone(),
            _claim: claim,
        })
    }

    /// Views an output for writing: `out=` as the caller `given` it, checked in full
    /// ([`ViewMut::new`]), or an array this call allocated ([`ViewMut::fresh`]).
    pub fn output(
        out: &Bound<'py, PyAny>,
        given: bool,
        shape: &[usize],
        dtype_name_e: &str,
        inputs: &[Operand<'_, 'py>],
    ) -> PyResult<Self> {
        if given {
            Self::new(out, shape, dtype_name_e, inputs)
        } else {
            Self::fresh(out)
        }
    }

    /// Views `out`, an array this call allocated with [`new_output`] or [`new_output_like`]
    /// for `E` elements, for writing. None of [`ViewMut::new`]'s checks can fail for it, and
    /// it needs no claim on its memory: until the call returns it, no other thread holds a
    /// reference to it, nor to any memory it lies in.
    pub fn fresh(out: &Bound<'py, PyAny>) -> PyResult<Self> {
        let arr = out.cast::<PyUntypedArray>()?;
        debug_assert!(is::<E>(arr) && arr.is_aligned());
        let itemsize = std::mem::size_of::<E>() as isize;
        Ok(ViewMut {
            ptr: data_of(arr).cast::<E>(),
            strides: Dims::collect(arr.strides().iter().map(|s| s / itemsize), 0),
            array: arr.clone(),
            _claim: None,
        })
    }

    /// This output as an operand of the overlap check of a second output (e.g. `hess`
    /// against `grad`): two outputs must not share memory either.
    pub fn operand<'a>(&self, name: &'a str) -> Operand<'a, 'py> {
        Operand {
            name,
            array: self.array.as_any().clone(),
            region: region_of(&self.array),
        }
    }
}

impl<E: Element + Store> ViewMut<'_, E> {
    /// This output as the kernels see it, for as long as it is borrowed (exclusively: one
    /// kernel view at a time).
    pub fn kernel(&mut self) -> view::ViewMut<'_, E> {
        // SAFETY: `new` checked that the array is writeable, aligned, of elements `E`, that no
        // two indices share an element and that it overlaps none of the call's inputs (`fresh`:
        // a new array overlaps nothing), and holds a write claim so that no other call reads
        // or writes it; `self` keeps the array alive while borrowed.
        unsafe { view::ViewMut::new(self.ptr, &self.strides) }
    }
}

/// True if two different indices of `shape` may address the same element. Sufficient test:
/// with dimensions sorted by |stride|, each stride must exceed the span of all smaller ones.
pub fn overlaps_itself(shape: &[usize], strides: &[isize]) -> bool {
    let mut dims: Vec<(usize, usize)> = shape
        .iter()
        .zip(strides)
        .filter(|(&n, _)| n > 1)
        .map(|(&n, &s)| (s.unsigned_abs(), n))
        .collect();
    if shape.contains(&0) {
        return false;
    }
    dims.sort_unstable();
    let mut span = 0usize; // largest offset reachable by the smaller dimensions
    for (stride, n) in dims {
        if stride <= span {
            return true;
        }
        // Saturating: strides no real array has must not overflow (a panic in debug builds).
        span = span.saturating_add(stride.saturating_mul(n - 1));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_overlap() {
        assert!(!overlaps_itself(&[3, 4], &[4, 1]));
        assert!(!overlaps_itself(&[3, 4], &[1, 3]));
        assert!(overlaps_itself(&[3, 4], &[0, 1]));
        assert!(overlaps_itself(&[3, 4], &[2, 1]));
        assert!(!overlaps_itself(&[1, 4], &[0, 1]));
        assert!(!overlaps_itself(&[0, 4], &[0, 1]));
        assert!(!overlaps_itself(&[5], &[-2]));
        // Strides far beyond any allocation do not overflow.
        assert!(!overlaps_itself(&[3, 3], &[isize::MAX, 1]));
        assert!(overlaps_itself(
            &[3, 3, 2],
            &[isize::MAX, isize::MAX / 2 + 1, 1]
        ));
    }

    #[test]
    fn shapes_print_like_numpy() {
        assert_eq!(shape_str(&[]), "()");
        assert_eq!(shape_str(&[3]), "(3,)");
        assert_eq!(shape_str(&[2, 4]), "(2, 4)");
    }
}
