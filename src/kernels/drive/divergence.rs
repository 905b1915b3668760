//! The driver of entropy, cross-entropy, KL and Jensen-Shannon divergence: per row along an
//! [`Axis`], and folded into a streaming accumulator's state.

use super::{execute, Detach};
use crate::divergence::{self, Kind, Options};
use crate::float::Float;
use crate::nan::NanPolicy;
use crate::reduce::Partial;
use crate::rows::Rows;
use crate::strided::{Dims, Dst, Src};
use crate::view::{broadcast_shape, Axis, Reduced, ShapeError, View, ViewMut};

/// `p`, and `q` broadcast against it (`None` for entropy, which reads `p` twice), read as `T`.
pub struct Pair<'a, T> {
    pub p: View<'a, T>,
    pub q: Option<View<'a, T>>,
}

/// The pair broadcast to one shape: that shape, and where and with which strides each is read.
struct Broadcast<T> {
    shape: Vec<usize>,
    p: Src<T>,
    p_strides: Dims<isize>,
    q: Src<T>,
    q_strides: Dims<isize>,
}

impl<T: Float> Pair<'_, T> {
    fn broadcast(&self) -> Result<Broadcast<T>, ShapeError> {
        let shape = match &self.q {
            None => self.p.shape().to_vec(),
            Some(q) => {
                broadcast_shape(self.p.shape(), q.shape()).ok_or_else(|| ShapeError::Together {
                    a: ("p", self.p.shape().to_vec()),
                    b: ("q", q.shape().to_vec()),
                })?
            }
        };
        let p_strides = self.p.broadcast_strides(&shape, "p")?;
        let (q, q_strides) = match &self.q {
            Some(q) => (q.src(), q.broadcast_strides(&shape, "q")?),
            None => (self.p.src(), p_strides.clone()),
        };
        Ok(Broadcast {
            shape,
            p: self.p.src(),
            p_strides,
            q,
            q_strides,
        })
    }
}

/// One call over rows: which divergence, of which operands, along which axis, normalising
/// each row or not, divided by `log_base` (`ln(base)`, 1 for natural logarithms), under
/// which NaN policy.
pub struct Rowwise<'a, T> {
    pub kind: Kind,
    pub operands: Pair<'a, T>,
    pub axis: Axis,
    pub normalize: bool,
    pub log_base: f64,
    pub nan: NanPolicy,
    /// Whether the output keeps the reduced dimensions with length 1 (NumPy's `keepdims`).
    pub keepdims: bool,
}

/// `args.kind` of every row along `args.axis` ([`divergence::divergence`]): asks `out` for
/// the output of the broadcast shape without the axis (with `args.keepdims`: with the reduced
/// dimensions kept with length 1) once the shapes are checked (`None`: nothing is written;
/// the caller returns the one row's value, `sum`), and returns the merge of the rows (`sum`
/// of their values, domain errors in `flags`).
pub fn rowwise<'a, T: Float, D: Detach>(
    args: &Rowwise<'a, T>,
    out: impl FnOnce(&[usize]) -> Result<Option<ViewMut<'a, T>>, D::Error>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let b = args.operands.broadcast().map_err(|e| detach.reject(e))?;
    let reduced = Reduced::along(args.axis, &b.shape).map_err(|e| detach.reject(e))?;
    let out = match args.keepdims {
        false => out(&reduced.kept)?,
        true => out(&reduced.kept_dims(&b.shape))?,
    };
    let (out_dst, out_strides) = match &out {
        Some(v) if args.keepdims => (v.dst(), reduced.widen_kept(v.strides())),
        Some(v) => (v.dst(), reduced.widen(v.strides())),
        None => (Dst::null(), Dims::filled(b.shape.len(), 0)),
    };
    let rows = Rows::new(
        &b.shape,
        [&b.p_strides, &b.q_strides, &out_strides],
        &reduced.mask,
    );
    let n = rows.rows() * rows.row_len();
    let opts = Options {
        kind: args.kind,
        normalize: args.normalize,
        log_base: args.log_base,
        nan: args.nan,
    };
    let (p, q) = (b.p, b.q);
    // Borrowed, not moved (as in the other drivers).
    let rows = &rows;
    execute(detach, n, move |pool| {
        // SAFETY: `p` and `q` come from views valid along their own shapes and strides for
        // the call, broadcast here to `rows`' shape; `out`'s strides are widened from its own
        // over the kept dimensions, and it overlaps neither itself nor an input
        // (`ViewMut::new`).
        unsafe { divergence::divergence(opts, rows, p, q, out_dst, pool) }
    })
}

/// One batch of a streaming accumulator: the state of everything before it as one
/// distribution, and the batch, under NaN policy `nan`.
pub struct Fold<'a, T> {
    pub kind: Kind,
    pub nan: NanPolicy,
    pub init: Partial,
    pub operands: Pair<'a, T>,
}

/// Continues `args.init` with the batch, reduced as one distribution (as `axis=None` reduces
/// an array, [`divergence::whole`]); the domain errors met are in `flags`.
pub fn fold<T: Float, D: Detach>(args: &Fold<'_, T>, detach: &D) -> Result<Partial, D::Error> {
    let b = args.operands.broadcast().map_err(|e| detach.reject(e))?;
    let nd = b.shape.len();
    let rows = Rows::new(
        &b.shape,
        [&b.p_strides, &b.q_strides, &Dims::filled(nd, 0)],
        &Dims::filled(nd, true),
    );
    let (kind, nan, init, p, q) = (args.kind, args.nan, args.init, b.p, b.q);
    let rows = &rows;
    execute(detach, rows.row_len(), move |pool| {
        // SAFETY: `p` and `q` come from views valid along their own shapes and strides for
        // the call, broadcast here to `rows`' shape; nothing is written.
        unsafe { divergence::whole(kind, nan, rows, p, q, init, pool) }
    })
}
