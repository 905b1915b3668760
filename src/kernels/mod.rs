//! The pure-Rust core: kernels over slices and strided views, with no Python types.
//!
//! - [`float`]: the element types kernels are generic over (`f32`/`f64`, label dtypes).
//! - [`isa`]: runtime CPU dispatch; kernels compiled once per instruction set.
//! - [`lanes`]: the lane sums and maxima every kernel reduces tiles with.
//! - [`math`]: branch-free, vectorisable `ln`, `ln_1p`, `exp` and the hard-label log.
//! - [`strided`]: walking N-d strided, broadcast operands in place.
//! - [`half`]: the 16-bit float formats operands and outputs may be stored in.
//! - [`view`]: the typed views, [`view::Axis`] and shape errors the bindings hand the drivers.
//! - [`drive`]: one driver per family: broadcasting and axes, the parallel decision, and the
//!   caller's hook to release the interpreter ([`drive::Detach`]).
//! - [`reduce`]: the deterministic block reduction engine and its partial state.
//! - [`rows`]: the row-wise engine (one result per distribution along an axis).
//! - [`pool`]: the crate's fork-safe rayon pool (and the locks and fork handlers of the crate).
//! - [`memory`]: which bytes a call reads and writes; the claims of running calls on them.
//! - [`nan`]: SciPy's `nan_policy`, the policy kernels take as a compile-time parameter.
//! - [`cancel`]: the cancellation hook the engines poll (Ctrl-C in a long call).
//! - [`bce`]: binary cross-entropy on probabilities and logits; [`bce::grad`], the gradient
//!   and diagonal Hessian of its logits form.
//! - [`divergence`]: entropy, cross-entropy, KL and Jensen-Shannon divergence per row.
//! - [`logloss`]: scikit-learn's `log_loss` over class codes, one fused pass per row.
//! - [`groups`]: per-group sums, counts and weights of any loss, in one deterministic pass.
//! - [`softmax`]: softmax cross-entropy against class indices or probabilities;
//!   [`softmax::grad`], its gradient and diagonal Hessian on the same log-sum-exp state.

pub mod bce;
pub mod cancel;
pub mod divergence;
pub mod drive;
pub mod float;
pub mod groups;
pub mod half;
pub mod isa;
pub mod lanes;
pub mod logloss;
pub mod math;
pub mod memory;
pub mod nan;
pub mod pool;
pub mod reduce;
pub mod rows;
pub mod softmax;
pub mod strided;
pub mod view;

#[cfg(test)]
mod proptests;
