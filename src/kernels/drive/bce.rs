//! The driver of binary cross-entropy: the loss on probabilities or logits (also folded into a
//! streaming accumulator's state) and the gradient of the logits form.

use super::{execute, Detach};
use crate::bce::grad::{self as bce_grad, LogitsGrad};
use crate::bce::{self, Inputs, Kind, Operands};
use crate::float::{Float, Target};
use crate::nan::NanPolicy;
use crate::reduce::Partial;
use crate::strided::{Dims, Dst, Layout, Load, Src};
use crate::view::{ShapeError, View, ViewMut};

/// The inputs of a binary-target function: `input` (probabilities or logits, read as
/// `T`), `target` of `input`'s shape (read as `Y`), and the optional `weight` and
/// `pos_weight`, broadcast to `input`'s shape (a constant 1 when absent), and the optional
/// `sample_weight` (scikit-learn's), broadcast to `input`'s shape too (the losses only; the
/// gradient takes none).
pub struct Binary<'a, T, Y> {
    pub input: View<'a, T>,
    pub target: View<'a, Y>,
    pub weight: Option<View<'a, T>>,
    pub pos_weight: Option<View<'a, T>>,
    pub sample_weight: Option<View<'a, T>>,
}

impl<T: Float, Y: Target + Load> Binary<'_, T, Y> {
    /// The kernels' pointers, and the strides of `weight` and `pos_weight` broadcast to the
    /// common shape (the input's); refuses a target of another shape and parameters that do
    /// not broadcast.
    pub(super) fn prepare(&self) -> Result<Prepared<T, Y>, ShapeError> {
        let shape = self.input.shape();
        if self.target.shape() != shape {
            return Err(ShapeError::Same {
                arg: "target",
                shape: self.target.shape().to_vec(),
                like: ("input", shape.to_vec()),
            });
        }
        let parameter = |v: &Option<View<'_, T>>, arg| match v {
            None => Ok((Src::native(T::one_ref()), Dims::filled(shape.len(), 0))),
            Some(v) => Ok((v.src(), v.broadcast_strides(shape, arg)?)),
        };
        let (weight, ws) = parameter(&self.weight, "weight")?;
        let (pos_weight, pws) = parameter(&self.pos_weight, "pos_weight")?;
        let inputs = Inputs {
            input: self.input.src(),
            target: self.target.src(),
            weight,
            pos_weight,
        };
        Ok((inputs, [ws, pws]))
    }

    /// The strides of `input` and `target`.
    pub(super) fn strides(&self) -> (&[isize], &[isize]) {
        (self.input.strides(), self.target.strides())
    }

    /// The sample weights (`None` when not given) and their strides broadcast to the input's
    /// shape (zeros when not given); refuses a shape that does not broadcast.
    pub(super) fn sample_weights(&self) -> Result<(Option<Src<T>>, Dims<isize>), ShapeError> {
        let shape = self.input.shape();
        match &self.sample_weight {
            None => Ok((None, Dims::filled(shape.len(), 0))),
            Some(v) => Ok((Some(v.src()), v.broadcast_strides(shape, "sample_weight")?)),
        }
    }
}

/// The kernels' pointers, and the strides of `weight` and `pos_weight` over the common shape.
pub(super) type Prepared<T, Y> = (Inputs<T, Y>, [Dims<isize>; 2]);

/// One call of the loss: which form, the state it continues ([`Partial::EMPTY`] for a plain
/// call; a streaming accumulator's state to fold a batch into it), the NaN policy (see
/// [`Operands::nan`]) and the inputs.
pub struct Loss<'a, T, Y> {
    pub kind: Kind,
    pub init: Partial,
    pub nan: NanPolicy,
    pub operands: Binary<'a, T, Y>,
}

/// Binary cross-entropy of `args` ([`bce::binary_cross_entropy_from`]): asks `out` for the
/// per-element output of the input's shape once the shapes are checked (`None`: nothing is
/// written), and returns the reduction state (`sum`, `count`, `Σ sample_weight` in `weight`
/// when given, the domain errors in `flags`; under [`NanPolicy::Omit`] `count` and `weight`
/// are those of the elements kept).
pub fn loss<'a, T: Float, Y: Target + Load, D: Detach>(
    args: &Loss<'a, T, Y>,
    out: impl FnOnce(&[usize]) -> Result<Option<ViewMut<'a, T>>, D::Error>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let (inputs, [ws, pws]) = args.operands.prepare().map_err(|e| detach.reject(e))?;
    let (sample_weight, sws) = args
        .operands
        .sample_weights()
        .map_err(|e| detach.reject(e))?;
    let (xs, ys) = args.operands.strides();
    let shape = args.operands.input.shape();
    let out = out(shape)?;
    let zeros = Dims::filled(shape.len(), 0);
    let (out_dst, out_strides) = match &out {
        Some(v) => (v.dst(), v.strides()),
        None => (Dst::null(), &zeros[..]),
    };
    let ops = Operands {
        inputs,
        out: out_dst,
        sample_weight,
        nan: args.nan,
        layout: Layout::new(shape, [xs, ys, &ws, &pws, out_strides, &sws]),
    };
    let (kind, init) = (args.kind, args.init);
    // Borrowed, not moved into the pool's closure: operands and layout are a few hundred
    // bytes, copied twice on the way otherwise.
    let ops = &ops;
    execute(detach, ops.layout.len(), move |pool| {
        // SAFETY: every pointer comes from a view, valid along its own shape and strides for
        // the call (`View::new`'s contract), broadcast here to the input's shape, from which
        // the layout is built; `out` overlaps neither itself nor an input (`ViewMut::new`).
        unsafe { bce::binary_cross_entropy_from(init, ops, kind, pool) }
    })
}

/// One call of the gradient of binary cross-entropy with logits: the inputs, and whether it
/// is the gradient of the mean (otherwise of the sum).
pub struct Grad<'a, T, Y> {
    pub operands: Binary<'a, T, Y>,
    pub mean: bool,
}

/// The gradient and diagonal Hessian of binary cross-entropy with logits
/// ([`bce_grad::binary_cross_entropy_with_logits_grad`]), written to the `(grad, hess)`
/// outputs that `outs` gives for the input's shape once the shapes are checked. Returns the
/// domain errors met (`flags`) and the element count.
pub fn grad<'a, T: Float, Y: Target + Load, D: Detach>(
    args: &Grad<'a, T, Y>,
    outs: impl FnOnce(&[usize]) -> Result<(ViewMut<'a, T>, ViewMut<'a, T>), D::Error>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let (inputs, [ws, pws]) = args.operands.prepare().map_err(|e| detach.reject(e))?;
    let (xs, ys) = args.operands.strides();
    let shape = args.operands.input.shape();
    let (g, h) = outs(shape)?;
    let n: usize = shape.iter().product();
    let scale = if args.mean {
        T::from_f64(1.0 / n as f64)
    } else {
        T::ONE
    };
    let ops = LogitsGrad {
        inputs,
        grad: g.dst(),
        hess: h.dst(),
        scale,
        layout: Layout::new(shape, [xs, ys, &ws, &pws, g.strides(), h.strides()]),
    };
    execute(detach, n, move |pool| {
        // SAFETY: every pointer comes from a view valid along its own shape and strides for
        // the call, broadcast here to the input's shape, from which the layout is built; the
        // outputs overlap neither themselves, each other nor an input (`ViewMut::new`).
        unsafe { bce_grad::binary_cross_entropy_with_logits_grad(&ops, pool) }
    })
}
