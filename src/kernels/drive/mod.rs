//! One driver per loss family: the only code that turns typed [`View`](super::view::View)s
//! into the engines' iteration spaces.
//!
//! Each family has one entry point per function form (loss, fold, gradient), taking a typed
//! arguments struct of views, an output provider and a [`Detach`]. In one place each, the
//! driver owns:
//!
//! - the broadcasting and axis handling (shape checks, broadcast strides, the reduced
//!   dimensions, the output's shape), reported as [`ShapeError`];
//! - the decision to run in parallel ([`PARALLEL_MIN`], the pool of [`pool::pool_for`]);
//! - the call of [`Detach::run`] with the call's size, through which the caller decides
//!   whether to release the interpreter (the bindings keep the GIL below their threshold).
//!
//! The output is asked for (`out(shape)`) once the shapes are known, so that the caller checks
//! or allocates it for the very shape the driver computes, before any element is read.
//!
//! - [`bce`]: binary cross-entropy (probabilities and logits), its fold and its gradient.
//! - [`divergence`]: entropy, cross-entropy, KL and Jensen-Shannon, per row and folded.
//! - [`groups`]: the losses of [`bce`], [`softmax`] and [`logloss`] per group of a code array,
//!   folded into a per-group state.
//! - [`logloss`]: scikit-learn's `log_loss` over class codes.
//! - [`softmax`]: softmax cross-entropy (class indices or probabilities), folded, and its
//!   gradient.

use rayon::ThreadPool;

use super::pool;
use super::view::ShapeError;

pub mod bce;
pub mod divergence;
pub mod groups;
pub mod logloss;
pub mod softmax;

/// Below this many elements the work stays on the calling thread: waking the pool costs more
/// than it saves.
pub const PARALLEL_MIN: usize = 1 << 16;

/// How a driver's caller runs a call's work: whether it releases its interpreter around it,
/// and how it reports what went wrong. Implemented by the bindings for Python (the GIL, and
/// interruption by signals); [`Serial`] runs it as is.
pub trait Detach {
    /// The caller's error: a [`ShapeError`] of the driver, or what the caller's own running
    /// of the work raised (e.g. `KeyboardInterrupt`).
    type Error;

    /// Runs `work`, the kernels of one call over `n` elements, and returns its result.
    fn run<R: Send>(&self, n: usize, work: impl FnOnce() -> R + Send) -> Result<R, Self::Error>;

    /// The caller's error for shapes the driver refuses.
    fn reject(&self, e: ShapeError) -> Self::Error;
}

/// Runs the work on the calling thread, with nothing to release (pure-Rust callers, tests).
pub struct Serial;

impl Detach for Serial {
    type Error = ShapeError;

    fn run<R: Send>(&self, _n: usize, work: impl FnOnce() -> R + Send) -> Result<R, ShapeError> {
        Ok(work())
    }

    fn reject(&self, e: ShapeError) -> ShapeError {
        e
    }
}

/// Runs `work` over `n` elements through `detach`, on the crate's pool when `n` is worth it
/// ([`PARALLEL_MIN`]) and on the calling thread otherwise.
fn execute<D: Detach, R: Send>(
    detach: &D,
    n: usize,
    work: impl FnOnce(Option<&ThreadPool>) -> R + Send,
) -> Result<R, D::Error> {
    detach.run(n, move || work(pool::pool_for(n, PARALLEL_MIN).as_deref()))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::bce::Kind as BceKind;
    use crate::divergence::Kind;
    use crate::float::Bool;
    use crate::reduce::Partial;
    use crate::view::{Axis, View, ViewMut};

    /// Runs the work as is and records the size each call announced.
    #[derive(Default)]
    struct Recording(Cell<Option<usize>>);

    impl Detach for Recording {
        type Error = ShapeError;
        fn run<R: Send>(&self, n: usize, work: impl FnOnce() -> R + Send) -> Result<R, ShapeError> {
            self.0.set(Some(n));
            Ok(work())
        }
        fn reject(&self, e: ShapeError) -> ShapeError {
            e
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn bce_loss_writes_each_element_and_announces_the_size() {
        let p = [0.9, 0.2, 0.6];
        let y = [Bool(1), Bool(0), Bool(7)];
        let w = [2.0];
        let mut out = [0.0; 3];
        let call = bce::Loss {
            kind: BceKind::Probabilities,
            init: Partial::EMPTY,
            nan: crate::nan::NanPolicy::Propagate,
            operands: bce::Binary {
                input: View::from_slice(&p),
                target: View::from_slice(&y),
                weight: Some(View::from_slice(&w)),
                pos_weight: None,
                sample_weight: None,
            },
        };
        let detach = Recording::default();
        let part = bce::loss(
            &call,
            |shape| {
                assert_eq!(shape, [3]);
                Ok(Some(ViewMut::from_slice(&mut out)))
            },
            &detach,
        )
        .unwrap();
        let expect = [-2.0 * 0.9f64.ln(), -2.0 * 0.8f64.ln(), -2.0 * 0.6f64.ln()];
        for (o, e) in out.iter().zip(expect) {
            assert!(close(*o, e), "{o} vs {e}");
        }
        assert!(close(part.sum, expect.iter().sum()));
        assert_eq!((part.count, part.flags), (3, 0));
        assert_eq!(detach.0.get(), Some(3));
    }

    #[test]
    fn bce_shapes_are_refused_before_the_output_is_asked_for() {
        let p = [0.5; 3];
        let y2 = [0.0; 2];
        let call = |target, weight| bce::Loss {
            kind: BceKind::Logits,
            init: Partial::EMPTY,
            nan: crate::nan::NanPolicy::Propagate,
            operands: bce::Binary {
                input: View::from_slice(&p),
                target,
                weight,
                pos_weight: None,
                sample_weight: None,
            },
        };
        let no_out = |_: &[usize]| -> Result<Option<ViewMut<'_, f64>>, ShapeError> {
            panic!("the output must not be asked for")
        };
        let e = bce::loss(&call(View::from_slice(&y2), None), no_out, &Serial).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'target' must have the same shape as 'input' (3,), got (2,)"
        );
        let y3 = [0.0; 3];
        let e = bce::loss(
            &call(View::from_slice(&y3), Some(View::from_slice(&y2))),
            no_out,
            &Serial,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "'weight' of shape (2,) cannot be broadcast to shape (3,)"
        );
    }

    #[test]
    fn divergence_rows_along_an_axis_broadcast_q() {
        // p: 2 rows of 3 (C order); q: one row broadcast to both.
        let p = [1.0, 2.0, 1.0, 0.5, 0.25, 0.25];
        let q = [0.2, 0.3, 0.5];
        // SAFETY: 6 elements in C order for shape (2, 3).
        let pv = unsafe { View::<f64>::new(p.as_ptr(), &[2, 3], &[3, 1]) };
        let mut out = [0.0; 2];
        let call = divergence::Rowwise {
            kind: Kind::KlDivergence,
            operands: divergence::Pair {
                p: pv,
                q: Some(View::from_slice(&q)),
            },
            axis: Axis::Along(-1),
            normalize: true,
            log_base: 1.0,
            nan: crate::nan::NanPolicy::Propagate,
            keepdims: false,
        };
        let part = divergence::rowwise(
            &call,
            |kept| {
                assert_eq!(kept, [2]);
                Ok(Some(ViewMut::from_slice(&mut out)))
            },
            &Serial,
        )
        .unwrap();
        let kl = |row: &[f64]| {
            let s: f64 = row.iter().sum();
            row.iter()
                .zip(&q)
                .map(|(&a, &b)| a / s * (a / s / b).ln())
                .sum::<f64>()
        };
        assert!(close(out[0], kl(&p[..3])), "{} vs {}", out[0], kl(&p[..3]));
        assert!(close(out[1], kl(&p[3..])));
        assert!(close(part.sum, out[0] + out[1]));
        // keepdims: the output is asked for as (2, 1), written through its own strides.
        let mut kept = [0.0; 2];
        let keep = divergence::Rowwise {
            keepdims: true,
            ..call
        };
        divergence::rowwise(
            &keep,
            |shape| {
                assert_eq!(shape, [2, 1]);
                // SAFETY: 2 elements, one per row, the length-1 axis given any stride.
                Ok(Some(unsafe { ViewMut::new(kept.as_mut_ptr(), &[1, 5]) }))
            },
            &Serial,
        )
        .unwrap();
        assert_eq!(kept, out);
        let bad_axis = divergence::Rowwise {
            axis: Axis::Along(2),
            ..keep
        };
        let e = divergence::rowwise(&bad_axis, |_| Ok(None), &Serial).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'axis' 2 is out of bounds for an array of dimension 2"
        );
    }
}
