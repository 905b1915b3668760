//! The driver of scikit-learn's `log_loss` over class codes: one row per sample, folded into
//! the state it continues.

use super::{execute, Detach};
use crate::float::Float;
use crate::logloss::LogLoss;
use crate::reduce::Partial;
use crate::rows::{run_from, In, Rows};
use crate::softmax::Label;
use crate::strided::{Load, Src};
use crate::view::{ShapeError, View};

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

/// The checked shapes of one call: `n` samples, whether `probs` holds the positive class
/// only, and the `(n, columns)` shape the rows are read as, with the strides of `probs` over it.
pub(super) struct Samples {
    pub n: usize,
    binary: bool,
    shape: [usize; 2],
    strides: [isize; 2],
}

impl Samples {
    /// The elements of `probs` the call reads (a 1-d `probs` read as `(n, 1)`).
    pub fn elements(&self) -> usize {
        self.n * self.shape[1]
    }
}

impl<T: Float, L: Label + Load> Call<'_, T, L> {
    /// Checks `probs` against the class count, and the codes (one per sample).
    pub(super) fn samples(&self) -> Result<Samples, ShapeError> {
        let (xs, ps) = (self.probs.strides(), self.probs.shape());
        let (n, binary, shape, strides) = match ps {
            [n] => (*n, true, [*n, 1], [xs[0], 0]),
            [n, 1] => (*n, true, [*n, 1], [xs[0], 0]),
            [n, c] => (*n, false, [*n, *c], [xs[0], xs[1]]),
            _ => return Err(ShapeError::Predictions { shape: ps.to_vec() }),
        };
        let columns = if binary { 2 } else { shape[1] };
        if columns != self.classes {
            return Err(ShapeError::PredictedClasses {
                columns,
                shape: ps.to_vec(),
                classes: self.classes,
            });
        }
        if self.codes.shape() != [n] {
            return Err(ShapeError::PerSample {
                arg: "y_true",
                n,
                shape: self.codes.shape().to_vec(),
            });
        }
        Ok(Samples {
            n,
            binary,
            shape,
            strides,
        })
    }

    /// Checks the sample weights (after what `samples` checked) and gives the op and the rows
    /// it reduces (one per sample, in order: one outer dimension).
    pub(super) fn rows(&self, s: &Samples) -> Result<(LogLoss<T, L>, Rows<3>), ShapeError> {
        let n = s.n;
        let (w_src, w_stride) = match &self.weights {
            Some(w) if w.shape() != [n] => {
                return Err(ShapeError::PerSample {
                    arg: "sample_weight",
                    n,
                    shape: w.shape().to_vec(),
                })
            }
            Some(w) => (w.src(), w.strides()[0]),
            None => (Src::native(f64::one_ref() as *const f64), 0),
        };
        // SAFETY: the views are valid along their own shapes and strides for the call, and
        // only read; the rows below step each operand over its own view's shape and strides
        // only (codes and weights: one value per row; the single default weight with stride
        // 0).
        let op = unsafe {
            LogLoss {
                probs: In::new(self.probs.src(), 0),
                classes: self.classes,
                binary: s.binary,
                codes: In::new(self.codes.src(), 1),
                weights: In::new(w_src, 2),
                eps: T::from_f64(self.eps),
                tolerance: 1e-8 + self.eps.sqrt(),
            }
        };
        let rows = Rows::new(
            &s.shape,
            [&s.strides, &[self.codes.strides()[0], 0], &[w_stride, 0]],
            &[false, true],
        );
        Ok((op, rows))
    }
}

/// The log loss of every sample ([`LogLoss`]), merged into `args.init`: the loss sum, the
/// weight sum, the row count, domain errors and rows that do not sum to one in `flags`.
pub fn log_loss<T: Float, L: Label + Load, D: Detach>(
    args: &Call<'_, T, L>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let reject = |e| detach.reject(e);
    let s = args.samples().map_err(reject)?;
    let (op, rows) = args.rows(&s).map_err(reject)?;
    let init = args.init;
    execute(detach, s.elements(), |pool| {
        // SAFETY: `op`'s operands are valid along `rows` (above), and the op only reads.
        unsafe { run_from(init, &rows, &op, pool) }
    })
}
