//! Shapes and axes: broadcasting two shapes, normalising an `axis=` argument, and the
//! dimensions a reduction along an axis removes ([`Reduced`]).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

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
pub fn normalize_axis(axis: isize, ndim: usize) -> PyResult<usize> {
    let n = ndim as isize;
    if (-n..n).contains(&axis) {
        Ok(axis.rem_euclid(n) as usize)
    } else {
        Err(PyValueError::new_err(format!(
            "'axis' {axis} is out of bounds for an array of dimension {ndim}"
        )))
    }
}

/// A reduction of an array of `shape` along one axis (or all of them): which dimensions it
/// removes, and the shape of what remains (the rows' shape: one result per row).
pub struct Reduced {
    /// One flag per dimension of the array: true where the reduction removes it.
    pub mask: Vec<bool>,
    /// The shape without the removed dimensions.
    pub kept: Vec<usize>,
}

impl Reduced {
    /// Along `axis` (normalised against `shape`; an out-of-range axis is a `ValueError`), or
    /// along every dimension for `None`.
    pub fn along(axis: Option<isize>, shape: &[usize]) -> PyResult<Self> {
        Ok(match axis {
            None => Self::from_mask(vec![true; shape.len()], shape),
            Some(axis) => Self::axis(normalize_axis(axis, shape.len())?, shape),
        })
    }

    /// Along `axis`, a dimension of `shape` (see [`normalize_axis`]).
    pub fn axis(axis: usize, shape: &[usize]) -> Self {
        Self::from_mask((0..shape.len()).map(|d| d == axis).collect(), shape)
    }

    fn from_mask(mask: Vec<bool>, shape: &[usize]) -> Self {
        let kept = shape
            .iter()
            .zip(&mask)
            .filter(|(_, &r)| !r)
            .map(|(&n, _)| n)
            .collect();
        Reduced { mask, kept }
    }

    /// The strides of an array of the kept shape (one per kept dimension) as strides over the
    /// whole shape: 0 along the removed dimensions, so that every element of a row reads (or
    /// writes) its row's one element.
    pub fn widen(&self, strides: &[isize]) -> Vec<isize> {
        let mut it = strides.iter().copied();
        self.mask
            .iter()
            .map(|&r| if r { 0 } else { it.next().unwrap_or(0) })
            .collect()
    }

    /// Strides that step by `stride` along the removed dimension and stay put along the
    /// others: one value per class (the class weights), the same for every row.
    pub fn along_removed(&self, stride: isize) -> Vec<isize> {
        self.mask
            .iter()
            .map(|&r| if r { stride } else { 0 })
            .collect()
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
    fn reduced_dimensions_and_widened_strides() {
        let r = Reduced::along(Some(-2), &[2, 3, 4]).unwrap();
        assert_eq!(r.mask, Reduced::axis(1, &[2, 3, 4]).mask);
        assert_eq!(r.mask, [false, true, false]);
        assert_eq!(r.kept, [2, 4]);
        assert_eq!(r.widen(&[4, 1]), [4, 0, 1]);
        assert_eq!(r.along_removed(7), [0, 7, 0]);
        let all = Reduced::along(None, &[2, 3]).unwrap();
        assert_eq!((all.mask, all.kept), (vec![true, true], vec![]));
    }
}
