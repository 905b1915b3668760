//! The driver of scikit-learn's `log_loss` over class codes: one row per sample, folded into
//! the state it continues.

use super::{execute, Detach};
use crate::kernels::float::Float;
use crate::kernels::logloss::LogLoss;
use crate::kernels::reduce::Partial;
use crate::kernels::rows::{run_from, In, Rows};
use crate::kernels::softmax::Label;
use crate::kernels::strided::{Load, Src};
use crate::kernels::view::{ShapeError, View};

/// One call (or one batch of an accumulator): the predicted probabilities (`n` of the positive
/// class, 1-d or `(n, 1)`, or `(n, classes)`), `n` class codes, optional `n` sample weights,
/// the class count, the clipping `eps`, and the state it continues ([`Partial::EMPTY`] for a
/// plain call).
pub struct Call<'a, T, L> {
    pub probs: View<'a, T>,
    pub codes: View<'a, L>,
    pub weights: Option<View<'a, f64>>,
    pub classes: usize,
    pub eps: f64,
    pub init: Partial,
}

/// The log loss of every sample ([`LogLoss`]), merged into `args.init`: the loss sum, the
/// weight sum, the row count, domain errors and rows that do not sum to one in `flags`.
pub fn log_loss<T: Float, L: Label + Load, D: Detach>(
    args: &Call<'_, T, L>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let reject = |e| detach.reject(e);
    let (xs, ps) = (args.probs.strides(), args.probs.shape());
    let (n, binary, shape, x_strides) = match ps {
        [n] => (*n, true, [*n, 1], [xs[0], 0]),
        [n, 1] => (*n, true, [*n, 1], [xs[0], 0]),
        [n, c] => (*n, false, [*n, *c], [xs[0], xs[1]]),
        _ => return Err(reject(ShapeError::Predictions { shape: ps.to_vec() })),
    };
    let columns = if binary { 2 } else { shape[1] };
    if columns != args.classes {
        return Err(reject(ShapeError::PredictedClasses {
            columns,
            shape: ps.to_vec(),
            classes: args.classes,
        }));
    }
    if args.codes.shape() != [n] {
        return Err(reject(ShapeError::PerSample {
            arg: "y_true",
            n,
            shape: args.codes.shape().to_vec(),
        }));
    }
    let (w_src, w_stride) = match &args.weights {
        Some(w) if w.shape() != [n] => {
            return Err(reject(ShapeError::PerSample {
                arg: "sample_weight",
                n,
                shape: w.shape().to_vec(),
            }))
        }
        Some(w) => (w.src(), w.strides()[0]),
        None => (Src::native(f64::one_ref() as *const f64), 0),
    };
    // SAFETY: the views are valid along their own shapes and strides for the call, and only
    // read; `rows` below steps each operand over its own view's shape and strides only (codes
    // and weights: one value per row; the single default weight with stride 0).
    let op = unsafe {
        LogLoss {
            probs: In::new(args.probs.src(), 0),
            classes: args.classes,
            binary,
            codes: In::new(args.codes.src(), 1),
            weights: In::new(w_src, 2),
            eps: T::from_f64(args.eps),
            tolerance: 1e-8 + args.eps.sqrt(),
        }
    };
    let rows = Rows::new(
        &shape,
        [&x_strides, &[args.codes.strides()[0], 0], &[w_stride, 0]],
        &[false, true],
    );
    let init = args.init;
    execute(detach, n * shape[1], |pool| {
        // SAFETY: `op`'s operands are valid along `rows` (above), and the op only reads.
        unsafe { run_from(init, &rows, &op, pool) }
    })
}
