//! The typed seam between the bindings and the kernels: strided views of operands and outputs,
//! the [`Axis`] a row-wise function reduces, and the shape errors the drivers report.
//!
//! A [`View`] is an operand read as `E` where it lies (a pointer, possibly to elements of the
//! other float type, see [`Src`], with a shape and element strides); a [`ViewMut`] an output
//! written in place. They are made only by an `unsafe` constructor whose contract (below) is
//! the one promise the bindings make about memory, or safely from slices. Everything past
//! them (broadcasting, axes, the iteration space, the engines) is the drivers' business
//! ([`super::drive`]), so no binding builds a [`Layout`](super::strided::Layout) or a row op.

use std::fmt;
use std::marker::PhantomData;

use super::strided::{find_first, Dims, Dst, Load, Src, Store};

/// An operand read as `E`: where its first element lies, its shape and its element strides
/// (in elements of the type it is stored in), valid for `'a`.
#[derive(Clone, Debug)]
pub struct View<'a, E> {
    src: Src<E>,
    shape: Dims<usize>,
    strides: Dims<isize>,
    _life: PhantomData<&'a E>,
}

impl<'a, E: Load> View<'a, E> {
    /// Views the elements at `src` (stored as it says), of `shape`, stepped by `strides`.
    ///
    /// # Safety
    /// For every index of `shape`, `src` offset by the dot product of the index and `strides`
    /// must address a valid, aligned, initialised element of the stored type, and every such
    /// element must stay alive and unwritten for `'a` (except through a [`ViewMut`] that the
    /// same call does not read through this view: the drivers' outputs overlap no input).
    /// `strides` has one entry per dimension of `shape`.
    pub unsafe fn new(src: impl Into<Src<E>>, shape: &[usize], strides: &[isize]) -> Self {
        debug_assert_eq!(shape.len(), strides.len());
        View {
            src: src.into(),
            shape: Dims::from_slice(shape, 0),
            strides: Dims::from_slice(strides, 0),
            _life: PhantomData,
        }
    }

    /// A 1-d view of `values`.
    pub fn from_slice(values: &'a [E]) -> Self {
        // SAFETY: a slice is `len` valid, aligned, initialised elements at unit stride,
        // borrowed (so alive and unwritten) for `'a`.
        unsafe { Self::new(values.as_ptr(), &[values.len()], &[1]) }
    }

    /// Where the kernels read it.
    pub fn src(&self) -> Src<E> {
        self.src
    }

    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Its element strides, one per dimension.
    pub fn strides(&self) -> &[isize] {
        &self.strides
    }

    /// The C-order index and value of the first element for which `bad` holds: the cold path
    /// that turns a kernel's domain-error flag into a message naming the position. For an
    /// operand stored as `E` (not converted on load); `None` for one that is not.
    pub fn first(&self, bad: impl Fn(E) -> bool) -> Option<(Vec<usize>, E)> {
        if !self.src.stored().is_native() {
            return None;
        }
        // SAFETY: `View::new`'s contract: valid, aligned, initialised `E`s along the shape and
        // strides, alive while `self` is.
        unsafe { find_first(self.src.raw(), &self.shape, &self.strides, bad) }
    }

    /// Its strides when read as an array of `shape`, broadcasting by the NumPy rules
    /// (dimensions aligned on the right; size-1 or missing dimensions repeat); `arg` names it
    /// in the error.
    pub(crate) fn broadcast_strides(
        &self,
        shape: &[usize],
        arg: &'static str,
    ) -> Result<Dims<isize>, ShapeError> {
        broadcast_strides(&self.shape, &self.strides, shape).ok_or_else(|| ShapeError::Broadcast {
            arg,
            shape: self.shape.to_vec(),
            to: shape.to_vec(),
        })
    }
}

/// An output written in place: its first element (stored as `E`, or as a 16-bit float each
/// value is rounded to, see [`Dst`]), and its element strides over the shape the driver asked
/// for, valid for `'a`.
#[derive(Debug)]
pub struct ViewMut<'a, E> {
    dst: Dst<E>,
    strides: Dims<isize>,
    _life: PhantomData<&'a mut E>,
}

impl<'a, E: Store> ViewMut<'a, E> {
    /// Views `dst`, stepped by `strides` over the shape its driver asked for, for writing.
    ///
    /// # Safety
    /// For every index of that shape, `dst` offset by the dot product of the index and
    /// `strides` must address a valid, aligned element of the stored type, writable and not read nor written by
    /// anything else for `'a`; distinct indices must address distinct elements (no zero or
    /// overlapping strides), none of which lies in memory read by a [`View`] of the same
    /// call, nor in another output of it.
    pub unsafe fn new(dst: impl Into<Dst<E>>, strides: &[isize]) -> Self {
        ViewMut {
            dst: dst.into(),
            strides: Dims::from_slice(strides, 0),
            _life: PhantomData,
        }
    }

    /// A 1-d view of `values`.
    pub fn from_slice(values: &'a mut [E]) -> Self {
        // SAFETY: a mutable slice is `len` distinct, valid, aligned elements at unit stride,
        // borrowed exclusively (so nothing else reads or writes them) for `'a`.
        unsafe { Self::new(values.as_mut_ptr(), &[1]) }
    }

    /// Its first element, and how it is stored.
    pub fn dst(&self) -> Dst<E> {
        self.dst
    }

    /// Its element strides.
    pub fn strides(&self) -> &[isize] {
        &self.strides
    }
}

/// The dimensions a row-wise function reduces: each row (one distribution) lies along one axis,
/// or the whole array is one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Every dimension: the whole array is one row.
    All,
    /// One axis, counted from the end when negative (as NumPy's `axis=`).
    Along(isize),
}

impl Axis {
    /// The `axis=` argument as Python passes it: `None` for every dimension.
    pub fn from_arg(axis: Option<isize>) -> Self {
        axis.map_or(Axis::All, Axis::Along)
    }
}

/// What a driver refuses before it computes anything: shapes that do not fit together.
/// `Display` gives the message the bindings raise as `ValueError`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShapeError {
    /// Operand `arg` of `shape` does not broadcast to `to`.
    Broadcast {
        arg: &'static str,
        shape: Vec<usize>,
        to: Vec<usize>,
    },
    /// Two operands do not broadcast against each other.
    Together {
        a: (&'static str, Vec<usize>),
        b: (&'static str, Vec<usize>),
    },
    /// Operand `arg` must have `like`'s shape.
    Same {
        arg: &'static str,
        shape: Vec<usize>,
        like: (&'static str, Vec<usize>),
    },
    /// An axis outside `ndim` dimensions.
    Axis { axis: isize, ndim: usize },
    /// Operand `arg` has no dimension to hold the classes.
    NoClasses { arg: &'static str },
    /// Class weights not of shape `(classes,)`.
    Classes { classes: usize, shape: Vec<usize> },
    /// Class indices not of the logits' shape without the class axis (`rows`).
    Labels {
        logits: Vec<usize>,
        axis: usize,
        rows: Vec<usize>,
        got: Vec<usize>,
    },
    /// Class probabilities not of the logits' shape.
    Probabilities { logits: Vec<usize>, got: Vec<usize> },
    /// Predicted probabilities neither 1-d nor 2-d.
    Predictions { shape: Vec<usize> },
    /// Predicted probabilities of `columns` classes where the labels name `classes`.
    PredictedClasses {
        columns: usize,
        shape: Vec<usize>,
        classes: usize,
    },
    /// Group codes that neither have nor broadcast to the input's shape (one per element).
    GroupsElements { input: Vec<usize>, got: Vec<usize> },
    /// Group codes not of the logits' shape without the class axis (`rows`, one per row).
    GroupsRows {
        logits: Vec<usize>,
        axis: usize,
        rows: Vec<usize>,
        got: Vec<usize>,
    },
    /// Group codes not of one per sample (`n`).
    GroupsSamples { n: usize, got: Vec<usize> },
    /// Operand `arg` not of one value per sample (`n`).
    PerSample {
        arg: &'static str,
        n: usize,
        shape: Vec<usize>,
    },
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeError::Broadcast { arg, shape, to } => write!(
                f,
                "'{arg}' of shape {} cannot be broadcast to shape {}",
                ShapeStr(shape),
                ShapeStr(to)
            ),
            ShapeError::Together { a, b } => write!(
                f,
                "'{}' of shape {} and '{}' of shape {} cannot be broadcast together",
                a.0,
                ShapeStr(&a.1),
                b.0,
                ShapeStr(&b.1)
            ),
            ShapeError::Same { arg, shape, like } => write!(
                f,
                "'{arg}' must have the same shape as '{}' {}, got {}",
                like.0,
                ShapeStr(&like.1),
                ShapeStr(shape)
            ),
            ShapeError::Axis { axis, ndim } => write!(
                f,
                "'axis' {axis} is out of bounds for an array of dimension {ndim}"
            ),
            ShapeError::NoClasses { arg } => {
                write!(f, "'{arg}' must have at least one dimension (the classes)")
            }
            ShapeError::Classes { classes, shape } => write!(
                f,
                "'weight' must have shape ({classes},) (one weight per class), got {}",
                ShapeStr(shape)
            ),
            ShapeError::Labels {
                logits,
                axis,
                rows,
                got,
            } => write!(
                f,
                "'target' of class indices must have the shape of 'logits' {} without axis \
                 {axis}, {}, got {}",
                ShapeStr(logits),
                ShapeStr(rows),
                ShapeStr(got)
            ),
            ShapeError::Predictions { shape } => write!(
                f,
                "'y_pred' must be 1-D (the positive class's probability) or 2-D \
                 (n_samples, n_classes), got shape {}",
                ShapeStr(shape)
            ),
            ShapeError::PredictedClasses {
                columns,
                shape,
                classes,
            } => write!(
                f,
                "'y_pred' has {columns} classes (shape {}), but the labels name {classes}",
                ShapeStr(shape)
            ),
            ShapeError::PerSample {
                arg: "y_true",
                n,
                shape,
            } => write!(
                f,
                "'y_true' must hold one label per row of 'y_pred' (shape ({n},)), got shape {}",
                ShapeStr(shape)
            ),
            ShapeError::PerSample { arg, n, shape } => write!(
                f,
                "'{arg}' must have shape ({n},) (one weight per row of 'y_pred'), got {}",
                ShapeStr(shape)
            ),
            ShapeError::GroupsElements { input, got } => write!(
                f,
                "'groups' must have the shape of 'input' {} (one code per element) or \
                 broadcast to it, got {}",
                ShapeStr(input),
                ShapeStr(got)
            ),
            ShapeError::GroupsRows {
                logits,
                axis,
                rows,
                got,
            } => write!(
                f,
                "'groups' must have the shape of the rows ('logits' {} without axis {axis}), \
                 {} (one code per row), got {}",
                ShapeStr(logits),
                ShapeStr(rows),
                ShapeStr(got)
            ),
            ShapeError::GroupsSamples { n, got } => write!(
                f,
                "'groups' must hold one code per row of 'y_pred' (shape ({n},)), got shape {}",
                ShapeStr(got)
            ),
            ShapeError::Probabilities { logits, got } => write!(
                f,
                "'target' of class probabilities must have the shape of 'logits' {}, got {}",
                ShapeStr(logits),
                ShapeStr(got)
            ),
        }
    }
}

impl std::error::Error for ShapeError {}

/// A shape printed the NumPy way: `(3,)`, `(2, 4)`, `()`.
pub struct ShapeStr<'a>(pub &'a [usize]);

impl fmt::Display for ShapeStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [n] => write!(f, "({n},)"),
            shape => {
                f.write_str("(")?;
                for (i, n) in shape.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// The strides with which an array of `shape` and `strides` reads as an array of `to`, by the
/// NumPy broadcasting rules; `None` if it does not broadcast.
fn broadcast_strides(shape: &[usize], strides: &[isize], to: &[usize]) -> Option<Dims<isize>> {
    if shape.len() > to.len() {
        return None;
    }
    let lead = to.len() - shape.len();
    let mut out = Dims::filled(to.len(), 0isize);
    for (d, (&extent, &stride)) in shape.iter().zip(strides).enumerate() {
        match extent {
            e if e == to[lead + d] => out[lead + d] = stride,
            1 => {}
            _ => return None,
        }
    }
    Some(out)
}

/// The NumPy broadcast of two shapes, or `None` if they do not broadcast.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let nd = a.len().max(b.len());
    let at = |s: &[usize], d: usize| {
        let lead = nd - s.len();
        if d < lead {
            1
        } else {
            s[d - lead]
        }
    };
    (0..nd)
        .map(|d| match (at(a, d), at(b, d)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// `axis` as an index into `ndim` dimensions (negative counts from the end).
pub fn normalize_axis(axis: isize, ndim: usize) -> Result<usize, ShapeError> {
    let n = ndim as isize;
    if (-n..n).contains(&axis) {
        Ok(axis.rem_euclid(n) as usize)
    } else {
        Err(ShapeError::Axis { axis, ndim })
    }
}

/// A reduction of an array of `shape` along one axis (or all of them): which dimensions it
/// removes, and the shape of what remains (the rows' shape: one result per row). Its lists,
/// and the strides its methods make, are [`Dims`]: inline for up to four dimensions, so that
/// a call allocates none of them.
pub struct Reduced {
    /// One flag per dimension of the array: true where the reduction removes it.
    pub mask: Dims<bool>,
    /// The shape without the removed dimensions.
    pub kept: Dims<usize>,
}

impl Reduced {
    /// Along `axis` (normalised against `shape`; an out-of-range axis is an error).
    pub fn along(axis: Axis, shape: &[usize]) -> Result<Self, ShapeError> {
        Ok(match axis {
            Axis::All => Self::from_mask(Dims::filled(shape.len(), true), shape),
            Axis::Along(axis) => Self::axis(normalize_axis(axis, shape.len())?, shape),
        })
    }

    /// Along `axis`, a dimension of `shape` (see [`normalize_axis`]).
    pub fn axis(axis: usize, shape: &[usize]) -> Self {
        Self::from_mask(
            Dims::collect((0..shape.len()).map(|d| d == axis), false),
            shape,
        )
    }

    fn from_mask(mask: Dims<bool>, shape: &[usize]) -> Self {
        let mut kept = Dims::empty(0);
        for (&n, _) in shape.iter().zip(mask.iter()).filter(|(_, &r)| !r) {
            kept.push(n);
        }
        Reduced { mask, kept }
    }

    /// The strides of an array of the kept shape (one per kept dimension) as strides over the
    /// whole shape: 0 along the removed dimensions, so that every element of a row reads (or
    /// writes) its row's one element.
    pub fn widen(&self, strides: &[isize]) -> Dims<isize> {
        let mut it = strides.iter().copied();
        let widened = self
            .mask
            .iter()
            .map(|&r| if r { 0 } else { it.next().unwrap_or(0) });
        Dims::collect(widened, 0)
    }

    /// `shape` with the removed dimensions kept with length 1 (NumPy's `keepdims=True`).
    pub fn kept_dims(&self, shape: &[usize]) -> Dims<usize> {
        let dims = shape.iter().zip(self.mask.iter());
        Dims::collect(dims.map(|(&n, &r)| if r { 1 } else { n }), 0)
    }

    /// The strides of an array of the [`kept_dims`](Self::kept_dims) shape (one per dimension)
    /// with 0 along the removed dimensions: as [`widen`](Self::widen) does for the kept shape.
    pub fn widen_kept(&self, strides: &[isize]) -> Dims<isize> {
        let dims = strides.iter().zip(self.mask.iter());
        Dims::collect(dims.map(|(&s, &r)| if r { 0 } else { s }), 0)
    }

    /// Strides that step by `stride` along the removed dimension and stay put along the
    /// others: one value per class (the class weights), the same for every row.
    pub fn along_removed(&self, stride: isize) -> Dims<isize> {
        Dims::collect(self.mask.iter().map(|&r| if r { stride } else { 0 }), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_shapes() {
        assert_eq!(broadcast_shape(&[3, 1], &[4]), Some(vec![3, 4]));
        assert_eq!(broadcast_shape(&[], &[2, 2]), Some(vec![2, 2]));
        assert_eq!(broadcast_shape(&[3], &[4]), None);
        assert_eq!(broadcast_shape(&[0, 1], &[1, 5]), Some(vec![0, 5]));
    }

    #[test]
    fn broadcast_strides_follow_numpy() {
        let x = [1.0f64; 4];
        let v = View::from_slice(&x);
        assert_eq!(&*v.broadcast_strides(&[3, 4], "w").unwrap(), &[0, 1]);
        let err = v.broadcast_strides(&[4, 3], "w").unwrap_err();
        assert_eq!(
            err.to_string(),
            "'w' of shape (4,) cannot be broadcast to shape (4, 3)"
        );
        // SAFETY: one element (shape (1, 1)), read at offset 0 whatever the strides.
        let one = unsafe { View::<f64>::new(x.as_ptr(), &[1, 1], &[7, 9]) };
        assert_eq!(
            &*one.broadcast_strides(&[2, 5, 3], "w").unwrap(),
            &[0, 0, 0]
        );
    }

    #[test]
    fn reduced_dimensions_and_widened_strides() {
        let r = Reduced::along(Axis::Along(-2), &[2, 3, 4]).unwrap();
        assert_eq!(r.mask, Reduced::axis(1, &[2, 3, 4]).mask);
        assert_eq!(r.mask[..], [false, true, false]);
        assert_eq!(r.kept[..], [2, 4]);
        assert_eq!(r.widen(&[4, 1])[..], [4, 0, 1]);
        assert_eq!(r.along_removed(7)[..], [0, 7, 0]);
        assert_eq!(r.kept_dims(&[2, 3, 4])[..], [2, 1, 4]);
        assert_eq!(r.widen_kept(&[4, 9, 1])[..], [4, 0, 1]);
        let all = Reduced::along(Axis::All, &[2, 3]).unwrap();
        assert_eq!(all.kept_dims(&[2, 3])[..], [1, 1]);
        assert_eq!((&all.mask[..], &all.kept[..]), (&[true, true][..], &[][..]));
        assert_eq!(
            Reduced::along(Axis::Along(2), &[2, 3])
                .err()
                .unwrap()
                .to_string(),
            "'axis' 2 is out of bounds for an array of dimension 2"
        );
    }

    #[test]
    fn shapes_print_like_numpy() {
        assert_eq!(ShapeStr(&[]).to_string(), "()");
        assert_eq!(ShapeStr(&[3]).to_string(), "(3,)");
        assert_eq!(ShapeStr(&[2, 4]).to_string(), "(2, 4)");
    }
}
