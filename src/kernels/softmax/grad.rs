//! The gradient (and diagonal Hessian) of softmax cross-entropy with respect to the logits,
//! beside the loss (see [`super`]) and on its log-sum-exp state ([`Lse`]), for training loops
//! and gradient boosting (XGBoost / LightGBM custom objectives).

use rayon::ThreadPool;

use super::{reference, Label, Lse};
use crate::float::Float;
use crate::isa::Arch;
use crate::lanes::{max_lanes, sum_lanes2_of};
use crate::reduce::{flags, Partial};
use crate::rows::{then, In, Out, PerRow, Row, RowOp, Rows, Tile};
use crate::strided::{Load, TileBuf};

/// A target of softmax cross-entropy: a class index (the integer [`Label`] types) or a class
/// probability (`f32`, `f64`).
pub trait ClassTarget: Load + Copy + Send + Sync + std::fmt::Debug + Default + 'static {
    /// True for class indices (one per row, stride 0 along the class axis).
    const HARD: bool;
    /// The class index (hard targets).
    fn index(self) -> i64;
    /// The probability (soft targets).
    fn prob(self) -> f64;
}

impl<L: Label + Load> ClassTarget for L {
    const HARD: bool = true;
    #[inline(always)]
    fn index(self) -> i64 {
        Label::index(self)
    }
    #[inline(always)]
    fn prob(self) -> f64 {
        0.0
    }
}

macro_rules! impl_soft_target {
    ($($t:ty),*) => {$(
        impl ClassTarget for $t {
            const HARD: bool = false;
            #[inline(always)]
            fn index(self) -> i64 {
                -1
            }
            #[inline(always)]
            fn prob(self) -> f64 {
                self as f64
            }
        }
    )*};
}
impl_soft_target!(f32, f64);

/// What the first pass learns about a row, for the second (see [`SoftmaxGrad`]).
#[derive(Clone, Copy, Debug, Default)]
struct RowInfo {
    /// The row's reference, its largest logit ([`reference`]).
    r: f64,
    /// `ln S`.
    ln_s: f64,
    /// `1/S` and `(S - 1)/S`: `p_j` and `1 - p_j` of a class at the maximum.
    inv_s: f64,
    rest_s: f64,
    /// `A`, and `A - D_y` for the label.
    coef: f64,
    coef_less_dy: f64,
    /// The class index of a hard target row not ignored, with its weight `w_y`.
    label: Option<(i64, f64)>,
}

/// Gradient and diagonal Hessian of softmax cross-entropy (PyTorch's `cross_entropy`) with
/// respect to the logits, over rows of operands `[logits, target, weight, grad, hess]`.
///
/// With `p = softmax(x)` over the `C` classes of a row, class weights `w` (sum `W`), label
/// smoothing `ε`, and for a class index `y` the coefficient `A = (1-ε)·w_y + ε/C·W`:
///
/// ```text
/// class index:   grad_j = A·p_j - D_j,  D_j = (1-ε)·w_y·[j = y] + ε/C·w_j   (0 if ignored)
/// probabilities: grad_j = A·p_j - D_j,  D_j = w_j·t'_j,  t' = (1-ε)·t + ε/C,  A = Σ_c w_c·t'_c
/// both:          hess_j = A·p_j·(1 - p_j)
/// ```
///
/// With `r` the row's largest logit and `S = Σ e^{x - r}` (as the loss takes them, see
/// [`super`]), `p_j = e^{(x_j - r) - ln S}`: its error follows `|x_j - r|`, not the
/// size of the logits. A class at the maximum (`x_j = r`) has `p_j = 1/S` and
/// `1 - p_j = (S - 1)/S` with `S - 1` summed without the 1 (so a confident row's
/// `p_j - 1` keeps its relative accuracy), and its gradient is formed as
/// `((A - D_j) - D_j·(S - 1)) / S`, with `A - D_y = ε/C·(W - w_y)` for the label: no
/// cancellation of `A·p_j` against `D_j` (the `softmax - onehot` of a confident row).
///
/// Each multiplied by `scale` (1 for a sum; for a mean, 1 over PyTorch's denominator, which the
/// first pass returns in [`Partial::weight`]).
pub struct SoftmaxGrad<T, Y> {
    pub logits: In<T>,
    /// Class indices, or probabilities read as `T` whatever float type they are stored in
    /// ([`crate::strided::Src`]); so are the class weights.
    pub target: In<Y>,
    pub weight: In<T>,
    /// `W = Σ_c w_c`.
    pub weight_total: f64,
    pub grad: Out<T>,
    pub hess: Out<T>,
    pub classes: usize,
    pub smoothing: f64,
    pub ignore_index: i64,
}

type Scratch<T, Y> = (TileBuf<T>, TileBuf<Y>, TileBuf<T>, TileBuf<T>, TileBuf<T>);

impl<T: Float, Y: ClassTarget> SoftmaxGrad<T, Y> {
    /// `t'_c = (1-ε)·t_c + ε/C`.
    #[inline(always)]
    fn smoothed(&self, t: f64) -> f64 {
        (1.0 - self.smoothing) * t + self.smoothing / self.classes as f64
    }
}

/// The first pass of [`SoftmaxGrad`]: each row's log-sum-exp state, finished into its
/// [`RowInfo`] (stored in `info`, one slot per row).
struct LsePass<'a, T, Y> {
    op: &'a SoftmaxGrad<T, Y>,
    info: &'a PerRow<RowInfo>,
}

/// The second pass of [`SoftmaxGrad`]: writes each row's gradient and Hessian from its
/// [`RowInfo`], times `scale`.
struct WritePass<'a, T, Y> {
    op: &'a SoftmaxGrad<T, Y>,
    info: &'a PerRow<RowInfo>,
    /// 1 for a sum; for a mean, 1 over PyTorch's denominator (the first pass's `weight`).
    scale: f64,
}

impl<T: Float, Y: ClassTarget> RowOp<5> for LsePass<'_, T, Y> {
    type State = Lse;
    type Scratch = Scratch<T, Y>;

    fn empty(&self) -> Lse {
        Lse::EMPTY
    }

    #[inline(always)]
    fn tile<A: Arch>(
        &self,
        (bx, by, bw, _, _): &mut Self::Scratch,
        tile: &Tile<5>,
        states: &mut [Lse],
    ) {
        let (op, n) = (self.op, tile.len());
        for (r, state) in states.iter_mut().enumerate() {
            let tile = tile.row(r);
            let x = tile.read(&op.logits, bx);
            let w = tile.read(&op.weight, bw);
            let m = max_lanes(x).to_f64();
            let (s, k) = if m == f64::NEG_INFINITY {
                let nan = x.iter().any(|v| v.is_nan());
                (if nan { f64::NAN } else { 0.0 }, 0.0)
            } else {
                exp_sums::<A, T>(x, m)
            };
            let mut a = 0.0;
            let mut flags = 0;
            if !Y::HARD {
                let t = tile.read(&op.target, by);
                for i in 0..n {
                    let ti = t[i].prob();
                    if ti < 0.0 {
                        flags |= flags::TARGET;
                    }
                    a += w[i].to_f64() * op.smoothed(ti);
                }
            }
            *state = Lse {
                m,
                s,
                k,
                a,
                b: 0.0,
                flags,
            };
        }
    }

    fn merge(&self, a: Lse, b: Lse) -> Lse {
        // `a` holds `Σ w t'`, which does not move with the reference.
        a.merge(b, true)
    }

    /// Stores the row's [`RowInfo`].
    fn finish<A: Arch>(&self, row: &Row<5>, state: Lse) -> Partial {
        let op = self.op;
        // S = k + s; S - 1 without the 1 of the maximum (see the softmax loss).
        let r = reference(state.m);
        let rest = (state.k - 1.0) + state.s;
        let big_s = state.k + state.s;
        let ln_s = state.ln_s::<A>();
        let (inv_s, rest_s) = (1.0 / big_s, rest / big_s);
        let mut part = Partial {
            count: 1,
            flags: state.flags,
            ..Partial::EMPTY
        };
        // Soft targets: A = Σ w t', and A - D_j is formed per element.
        let mut info = RowInfo {
            r,
            ln_s,
            inv_s,
            rest_s,
            coef: state.a,
            coef_less_dy: 0.0,
            label: None,
        };
        if Y::HARD {
            let y = row.value(&op.target).index();
            if y == op.ignore_index {
                info.coef = 0.0;
            } else if y < 0 || y >= op.classes as i64 {
                part.flags |= flags::TARGET;
            } else {
                // 0 <= y < C: class y's weight.
                let wy = row.get(&op.weight, y as usize).to_f64();
                let eps_c = op.smoothing / op.classes as f64;
                info.coef = (1.0 - op.smoothing) * wy + eps_c * op.weight_total;
                // A - D_y = ε/C·(W - w_y): exactly 0 without label smoothing.
                info.coef_less_dy = eps_c * (op.weight_total - wy);
                info.label = Some((y, wy));
                part.weight = wy;
            }
        } else {
            part.weight = 1.0;
        }
        self.info.set(row, info);
        part
    }
}

impl<T: Float, Y: ClassTarget> RowOp<5> for WritePass<'_, T, Y> {
    type State = ();
    type Scratch = Scratch<T, Y>;

    fn empty(&self) {}

    #[inline(always)]
    fn tile<A: Arch>(
        &self,
        (bx, by, bw, bg, bh): &mut Self::Scratch,
        tile: &Tile<5>,
        states: &mut [()],
    ) {
        let (op, n) = (self.op, tile.len());
        for r in 0..states.len() {
            let tile = tile.row(r);
            let info = self.info.get(tile.first_row());
            let x = tile.read(&op.logits, bx);
            let w = tile.read(&op.weight, bw);
            let g = bg.scratch(n);
            let h = bh.scratch(n);
            let eps_c = op.smoothing / op.classes as f64;
            let ignored = Y::HARD && info.label.is_none();
            // The class index of the tile's first element.
            let first = tile.start() as i64;
            let t = if Y::HARD {
                None
            } else {
                Some(tile.read(&op.target, by))
            };
            let (label, label_weight) = info.label.unwrap_or((-1, 0.0));
            let hit_weight = (1.0 - op.smoothing) * label_weight;
            for i in 0..n {
                if ignored {
                    g[i] = T::ZERO;
                    h[i] = T::ZERO;
                    continue;
                }
                let d = x[i].to_f64() - info.r;
                let top = d == 0.0;
                let p = if top {
                    info.inv_s
                } else {
                    (d - info.ln_s).exp_on::<A>()
                };
                let q = if top { info.rest_s } else { 1.0 - p };
                let wi = w[i].to_f64();
                let is_label = Y::HARD && first + i as i64 == label;
                let direct = match t {
                    Some(t) => wi * op.smoothed(t[i].prob()),
                    None => {
                        let hit = if is_label { hit_weight } else { 0.0 };
                        hit + eps_c * wi
                    }
                };
                let grad = if top {
                    let less = if is_label {
                        info.coef_less_dy
                    } else {
                        info.coef - direct
                    };
                    less * info.inv_s - direct * info.rest_s
                } else {
                    info.coef * p - direct
                };
                g[i] = T::from_f64(self.scale * grad);
                h[i] = T::from_f64(self.scale * info.coef * p * q);
            }
            tile.write(&op.grad, g);
            tile.write(&op.hess, h);
        }
    }

    fn merge(&self, _: (), _: ()) {}

    fn finish<A: Arch>(&self, _row: &Row<5>, _state: ()) -> Partial {
        Partial {
            count: 1,
            ..Partial::EMPTY
        }
    }
}

/// `(s, k)` of a row piece `x` against the reference `r` (a finite largest logit): `k` the
/// number of elements equal to `r`, `s = Σ e^{x - r}` over the others (NaN with any NaN),
/// in `f64` lanes summed as [`crate::lanes::sum_lanes`] sums.
#[inline(always)]
fn exp_sums<A: Arch, T: Float>(x: &[T], r: f64) -> (f64, f64) {
    sum_lanes2_of(x, |v: T| {
        let d = v.to_f64() - r;
        let top = d == 0.0;
        let e = d.exp_on::<A>();
        (if top { 0.0 } else { e }, if top { 1.0 } else { 0.0 })
    })
}

/// The two passes of [`SoftmaxGrad`] ([`then`]): returns the first pass's merge (domain
/// errors; the mean denominator in `weight`), after writing the outputs when it found no error.
///
/// # Safety
/// As [`crate::rows::run`].
pub unsafe fn softmax_cross_entropy_grad<T: Float, Y: ClassTarget>(
    rows: &Rows<5>,
    op: &SoftmaxGrad<T, Y>,
    mean: bool,
    pool: Option<&ThreadPool>,
) -> Partial {
    let info = &PerRow::new(rows.rows());
    let lse = LsePass { op, info };
    // SAFETY: forwarded from the caller; `info` has one slot per row, used by these two
    // passes only.
    let (first, second) = unsafe {
        then(rows, pool, &lse, |part| WritePass {
            op,
            info,
            scale: if mean { 1.0 / part.weight } else { 1.0 },
        })
    };
    // The outputs are incomplete if the second pass was cancelled.
    match second {
        Some(s) if s.flags & flags::CANCELLED != 0 => first.cancelled(),
        _ => first,
    }
}
