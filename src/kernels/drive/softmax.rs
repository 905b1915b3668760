//! The driver of softmax cross-entropy over the rows along a class axis: the loss against class
//! indices or class probabilities (also folded into a streaming accumulator's state) and its
//! gradient.

use super::{execute, Detach};
use crate::float::Float;
use crate::nan::NanPolicy;
use crate::reduce::Partial;
use crate::rows::{run_from, In, Out, RowOp, Rows};
use crate::softmax::grad::{self as softmax_grad, ClassTarget, SoftmaxGrad};
use crate::softmax::{Classes, Label, SoftmaxLabels, SoftmaxProbs};
use crate::strided::{Dims, Dst, Load, Src};
use crate::view::{normalize_axis, Reduced, ShapeError, View, ViewMut};

/// What the loss is measured against: one class index per row (read as `L`), or class
/// probabilities of the logits' shape (read as `T`).
pub enum Target<'a, T, L> {
    Labels(View<'a, L>),
    Probabilities(View<'a, T>),
}

/// The parameters besides the operands, fixed across the batches of an accumulator.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// The class axis (negative counts from the end).
    pub axis: isize,
    pub ignore_index: i64,
    /// Label smoothing in `[0, 1]`.
    pub smoothing: f64,
}

/// The class weights, one per class (`None`: every class weighs 1), checked against the class
/// count: where they are read, their stride along the class axis, and their sum in class order.
fn class_weights<T: Float>(
    weight: &Option<View<'_, T>>,
    classes: usize,
) -> Result<(Src<T>, isize, f64), ShapeError> {
    let Some(w) = weight else {
        return Ok((Src::native(T::one_ref()), 0, classes as f64));
    };
    if w.shape() != [classes] {
        return Err(ShapeError::Classes {
            classes,
            shape: w.shape().to_vec(),
        });
    }
    let (src, stride) = (w.src(), w.strides()[0]);
    // SAFETY: a 1-d view of `classes` valid elements (`View::new`'s contract).
    let total: f64 = (0..classes as isize)
        .map(|c| unsafe { src.read(c * stride) }.to_f64())
        .sum();
    Ok((src, stride, total))
}

/// One call of the loss: logits, target and class weights, the sample weights (one per row,
/// broadcast to the rows' shape: the logits' without the class axis), the parameters, and the
/// state it continues ([`Partial::EMPTY`] for a plain call), and the NaN policy (see
/// [`crate::softmax`]).
pub struct Loss<'a, T, L> {
    pub logits: View<'a, T>,
    pub target: Target<'a, T, L>,
    pub weight: Option<View<'a, T>>,
    pub sample_weight: Option<View<'a, T>>,
    pub params: Params,
    pub init: Partial,
    pub nan: NanPolicy,
}

/// The checked layout of one call of the loss: the class axis, the rows (the logits' shape
/// without it), the class weights and their strides over the logits' shape.
pub(super) struct Prepared<T> {
    pub axis: usize,
    pub reduced: Reduced,
    classes: usize,
    weight: Src<T>,
    weight_total: f64,
    weight_strides: Dims<isize>,
}

impl<T: Float, L: Label + Load> Loss<'_, T, L> {
    /// Checks the class axis and the class weights.
    pub(super) fn prepare(&self) -> Result<Prepared<T>, ShapeError> {
        let shape = self.logits.shape();
        let axis = normalize_axis(self.params.axis, shape.len())?;
        let classes = shape[axis];
        let reduced = Reduced::axis(axis, shape);
        let (weight, w_stride, weight_total) = class_weights(&self.weight, classes)?;
        let weight_strides = reduced.along_removed(w_stride);
        Ok(Prepared {
            axis,
            reduced,
            classes,
            weight,
            weight_total,
            weight_strides,
        })
    }

    /// Checks the target's shape against the rows (class indices) or the logits
    /// (probabilities), and gives its strides over the logits' shape.
    fn target_strides(&self, p: &Prepared<T>) -> Result<Dims<isize>, ShapeError> {
        let shape = self.logits.shape();
        match &self.target {
            Target::Labels(y) if y.shape() != &p.reduced.kept[..] => Err(ShapeError::Labels {
                logits: shape.to_vec(),
                axis: p.axis,
                rows: p.reduced.kept.to_vec(),
                got: y.shape().to_vec(),
            }),
            Target::Labels(y) => Ok(p.reduced.widen(y.strides())),
            Target::Probabilities(y) if y.shape() != shape => Err(ShapeError::Probabilities {
                logits: shape.to_vec(),
                got: y.shape().to_vec(),
            }),
            Target::Probabilities(y) => Ok(Dims::from_slice(y.strides(), 0)),
        }
    }

    /// Checks the target and the sample weights (after what `prepare` checked), builds the
    /// rows, with `row_strides` (one value per row, stride 0 along the class axis) as operand
    /// 3 and the sample weights as operand 4, and the row op of the target's kind (writing
    /// each row's loss to `out`, operand 3, when given), and hands them to `run`.
    ///
    /// # Safety
    /// Operand 3 must be valid along `row_strides` for the call, as [`View::new`] requires of
    /// the views (and `out`, when given, as [`ViewMut::new`] requires).
    pub(super) unsafe fn with_rows<R: RunRows>(
        &self,
        p: &Prepared<T>,
        row_strides: &[isize],
        out: Option<Dst<T>>,
        run: R,
    ) -> Result<R::Output, ShapeError> {
        let target_strides = self.target_strides(p)?;
        let shape = self.logits.shape();
        let (sample_weight, sw_strides) = match &self.sample_weight {
            None => (None, Dims::filled(shape.len(), 0)),
            Some(v) => {
                let strides = v.broadcast_strides(&p.reduced.kept, "sample_weight")?;
                (Some(v.src()), p.reduced.widen(&strides))
            }
        };
        let rows = Rows::new(
            shape,
            [
                self.logits.strides(),
                &target_strides,
                &p.weight_strides,
                row_strides,
                &sw_strides,
            ],
            &p.reduced.mask,
        );
        // SAFETY: the operands 0 to 4 of `rows`, built from their views' own shapes and
        // strides (`View::new`'s contract: valid for the call; operand 3 by the caller's); the
        // weights are one per class along the class axis, the labels, `out` and the sample
        // weights one per row (stride 0 along the axis); `out` overlaps neither itself nor an
        // input.
        let (classes, out, sample_weight) = unsafe {
            (
                Classes {
                    count: p.classes,
                    weight: In::new(p.weight, 2),
                    weight_total: p.weight_total,
                    smoothing: self.params.smoothing,
                },
                out.map(|ptr| Out::new(ptr, 3)),
                sample_weight.map(|src| In::new(src, 4)),
            )
        };
        let n = shape.iter().product::<usize>();
        Ok(match &self.target {
            Target::Labels(y) => {
                // SAFETY: as above, operands 0 and 1.
                let op = unsafe {
                    SoftmaxLabels {
                        logits: In::new(self.logits.src(), 0),
                        labels: In::new(y.src(), 1),
                        classes,
                        ignore_index: self.params.ignore_index,
                        out,
                        sample_weight,
                        nan: self.nan,
                    }
                };
                run.run(n, &rows, &op)
            }
            Target::Probabilities(y) => {
                // SAFETY: as above, operands 0 and 1.
                let op = unsafe {
                    SoftmaxProbs {
                        logits: In::new(self.logits.src(), 0),
                        target: In::new(y.src(), 1),
                        classes,
                        out,
                        sample_weight,
                        nan: self.nan,
                    }
                };
                run.run(n, &rows, &op)
            }
        })
    }
}

/// What runs the rows of a call of the loss once [`Loss::with_rows`] has built them: `n`, the
/// number of logits; `op`, valid along `rows` for the call.
pub(super) trait RunRows {
    type Output;
    fn run<O: RowOp<5>>(self, n: usize, rows: &Rows<5>, op: &O) -> Self::Output;
}

/// The plain loss's run: the rows merged into `init`, through `detach`.
struct Plain<'d, D> {
    init: Partial,
    detach: &'d D,
}

impl<D: Detach> RunRows for Plain<'_, D> {
    type Output = Result<Partial, D::Error>;
    fn run<O: RowOp<5>>(self, n: usize, rows: &Rows<5>, op: &O) -> Self::Output {
        let init = self.init;
        // SAFETY: `op`'s operands are valid along `rows` (`RunRows`' contract).
        execute(self.detach, n, |pool| unsafe {
            run_from(init, rows, op, pool)
        })
    }
}

/// Softmax cross-entropy of every row along the class axis ([`SoftmaxLabels`],
/// [`SoftmaxProbs`]): asks `out` for the per-row output (the logits' shape without the axis;
/// with `keepdims`, with the axis kept with length 1) once the axis and the weights are
/// checked, before the target's shape (`None`: nothing is written), and returns the merge of
/// the rows (`sum`, the mean's denominator in `weight`: PyTorch's, or `Σ sample_weight` over
/// the rows not ignored when given; domain errors in `flags`).
pub fn loss<'a, T: Float, L: Label + Load, D: Detach>(
    args: &Loss<'a, T, L>,
    keepdims: bool,
    out: impl FnOnce(&[usize]) -> Result<Option<ViewMut<'a, T>>, D::Error>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let reject = |e| detach.reject(e);
    let p = args.prepare().map_err(reject)?;
    // The output before the target's shape: its allocation's failure (a size NumPy cannot
    // allocate) is reported first, as it always was.
    let out = match keepdims {
        false => out(&p.reduced.kept)?,
        true => out(&p.reduced.kept_dims(args.logits.shape()))?,
    };
    let (out_ptr, out_strides) = match &out {
        Some(v) if keepdims => (Some(v.dst()), p.reduced.widen_kept(v.strides())),
        Some(v) => (Some(v.dst()), p.reduced.widen(v.strides())),
        None => (None, Dims::filled(args.logits.shape().len(), 0)),
    };
    let run = Plain {
        init: args.init,
        detach,
    };
    // SAFETY: `out` is a `ViewMut` of the rows' shape (or of it with the axis kept with
    // length 1), with stride 0 along the axis.
    unsafe { args.with_rows(&p, &out_strides, out_ptr, run) }.map_err(reject)?
}

/// One call of the gradient: logits, target (class indices or probabilities, `Y`), class
/// weights, the parameters, and whether it is the gradient of the mean (else of the sum).
pub struct Grad<'a, T, Y> {
    pub logits: View<'a, T>,
    pub target: View<'a, Y>,
    pub weight: Option<View<'a, T>>,
    pub params: Params,
    pub mean: bool,
}

/// The gradient and diagonal Hessian of softmax cross-entropy
/// ([`softmax_grad::softmax_cross_entropy_grad`]), written to the `(grad, hess)` outputs that
/// `outs` gives for the logits' shape once the shapes are checked. Returns the first pass's
/// merge (domain errors in `flags`).
pub fn grad<'a, T: Float, Y: ClassTarget, D: Detach>(
    args: &Grad<'a, T, Y>,
    outs: impl FnOnce(&[usize]) -> Result<(ViewMut<'a, T>, ViewMut<'a, T>), D::Error>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let reject = |e| detach.reject(e);
    let shape = args.logits.shape();
    if shape.is_empty() {
        return Err(reject(ShapeError::NoClasses { arg: "logits" }));
    }
    let axis = normalize_axis(args.params.axis, shape.len()).map_err(reject)?;
    let classes = shape[axis];
    let reduced = Reduced::axis(axis, shape);
    let y = &args.target;
    let target_strides = if Y::HARD {
        if y.shape() != &reduced.kept[..] {
            return Err(reject(ShapeError::Labels {
                logits: shape.to_vec(),
                axis,
                rows: reduced.kept.to_vec(),
                got: y.shape().to_vec(),
            }));
        }
        reduced.widen(y.strides())
    } else {
        if y.shape() != shape {
            return Err(reject(ShapeError::Probabilities {
                logits: shape.to_vec(),
                got: y.shape().to_vec(),
            }));
        }
        Dims::from_slice(y.strides(), 0)
    };
    let (w_src, w_stride, w_total) = class_weights(&args.weight, classes).map_err(reject)?;
    let weight_strides = reduced.along_removed(w_stride);
    let (g, h) = outs(shape)?;
    let rows = Rows::new(
        shape,
        [
            args.logits.strides(),
            &target_strides,
            &weight_strides,
            g.strides(),
            h.strides(),
        ],
        &reduced.mask,
    );
    // SAFETY: the operands 0 to 4 of `rows`, built from their views' own shapes and strides
    // (valid for the call); the outputs overlap neither themselves, each other nor an input
    // (`ViewMut::new`).
    let op = unsafe {
        SoftmaxGrad {
            logits: In::new(args.logits.src(), 0),
            target: In::new(y.src(), 1),
            weight: In::new(w_src, 2),
            weight_total: w_total,
            grad: Out::new(g.dst(), 3),
            hess: Out::new(h.dst(), 4),
            classes,
            smoothing: args.params.smoothing,
            ignore_index: args.params.ignore_index,
        }
    };
    let n: usize = shape.iter().product();
    let mean = args.mean;
    execute(detach, n, move |pool| {
        // SAFETY: `op`'s operands are valid along `rows` (above).
        unsafe { softmax_grad::softmax_cross_entropy_grad(&rows, &op, mean, pool) }
    })
}
