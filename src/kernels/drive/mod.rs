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
//! - [`logloss`]: scikit-learn's `log_loss` over class codes.
//! - [`softmax`]: softmax cross-entropy (class indices or probabilities), folded, and its
//!   gradient.

use rayon::ThreadPool;

use super::pool;
use super::view::ShapeError;

pub mod bce;
pub mod divergence;
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
