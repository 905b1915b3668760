//! The gradient (and diagonal Hessian) of softmax cross-entropy with respect to the logits,
//! beside the loss (see [`super`]) and on its log-sum-exp state ([`Lse`]), for training loops
//! and gradient boosting (XGBoost / LightGBM custom objectives).

use rayon::ThreadPool;

use super::{reference, Label, Lse};
use crate::kernels::float::Float;
use crate::kernels::isa::Arch;
use crate::kernels::lanes::{max_lanes, sum_lanes2_of};
use crate::kernels::reduce::{flags, Partial};
use crate::kernels::rows::{run, RowOp, Rows};
use crate::kernels::strided::{scatter, Load, SendPtr, Src, TileBuf};

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

/// What the first pass learns about a row: `[r, ln S, 1/S, (S-1)/S, A, A - D_y, label,
/// label weight, base]` (see [`SoftmaxGrad`]; the label is -1 for soft targets and ignored
/// rows; `base` is the logits offset of the row's first element).
pub type RowInfo = [f64; 9];

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
    pub logits: SendPtr<T>,
    /// Class indices, or probabilities read as `T` whatever float type they are stored in
    /// ([`Src`]); so are the class weights.
    pub target: Src<Y>,
    pub weight: Src<T>,
    /// Element stride of the weights along the class axis.
    pub weight_stride: isize,
    /// `W = Σ_c w_c`.
    pub weight_total: f64,
    pub grad: SendPtr<T>,
    pub hess: SendPtr<T>,
    pub classes: usize,
    pub smoothing: f64,
    pub ignore_index: i64,
    pub scale: f64,
    /// One [`RowInfo`] per row, written by the first pass, read by the second.
    pub info: SendPtr<RowInfo>,
    /// False: first pass (log-sum-exp and coefficients); true: second pass (write outputs).
    pub write: bool,
}

impl<T: Float, Y: ClassTarget> SoftmaxGrad<T, Y> {
    /// `t'_c = (1-ε)·t_c + ε/C`.
    #[inline(always)]
    fn smoothed(&self, t: f64) -> f64 {
        (1.0 - self.smoothing) * t + self.smoothing / self.classes as f64
    }
}

impl<T: Float, Y: ClassTarget> RowOp<5> for SoftmaxGrad<T, Y> {
    type State = Lse;
    type Scratch = (TileBuf<T>, TileBuf<Y>, TileBuf<T>, TileBuf<T>, TileBuf<T>);

    fn empty(&self) -> Lse {
        Lse::EMPTY
    }

    #[inline(always)]
    unsafe fn tile<A: Arch>(
        &self,
        scratch: &mut Self::Scratch,
        first_row: usize,
        at: [isize; 5],
        rs: [isize; 5],
        st: [isize; 5],
        n: usize,
        states: &mut [Lse],
    ) {
        for (r, state) in states.iter_mut().enumerate() {
            let at_r = std::array::from_fn(|k| at[k] + r as isize * rs[k]);
            // SAFETY: forwarded: the engine hands out offsets inside the operands.
            *state = unsafe { self.row_tile::<A>(scratch, first_row + r, at_r, st, n) };
        }
    }

    fn merge(&self, a: Lse, b: Lse) -> Lse {
        // `a` holds `Σ w t'`, which does not move with the reference.
        a.merge(b, true)
    }

    unsafe fn finish<A: Arch>(&self, row: usize, base: [isize; 5], state: Lse) -> Partial {
        // SAFETY: forwarded.
        unsafe { self.finish_row::<A>(row, base, state) }
    }
}

impl<T: Float, Y: ClassTarget> SoftmaxGrad<T, Y> {
    /// One tile of `n` elements of row `row` (operand `k`'s elements at `at[k] + i * st[k]`):
    /// the first pass returns its log-sum-exp state, the second writes its outputs.
    ///
    /// # Safety
    /// The offsets must address valid elements of every operand.
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    unsafe fn row_tile<A: Arch>(
        &self,
        (bx, by, bw, bg, bh): &mut (TileBuf<T>, TileBuf<Y>, TileBuf<T>, TileBuf<T>, TileBuf<T>),
        row: usize,
        at: [isize; 5],
        st: [isize; 5],
        n: usize,
    ) -> Lse {
        // SAFETY: the engine hands out offsets inside the operands.
        let x = unsafe { bx.view(self.logits.0.offset(at[0]), st[0], n) };
        let w = unsafe { bw.view_src(self.weight.offset(at[2]), st[2], n) };
        if !self.write {
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
                // SAFETY: as above.
                let t = unsafe { by.view_src(self.target.offset(at[1]), st[1], n) };
                for i in 0..n {
                    let ti = t[i].prob();
                    if ti < 0.0 {
                        flags |= flags::TARGET;
                    }
                    a += w[i].to_f64() * self.smoothed(ti);
                }
            }
            return Lse {
                m,
                s,
                k,
                a,
                b: 0.0,
                flags,
            };
        }
        // Second pass: write this tile's gradient and Hessian.
        // SAFETY: `info[row]` was written by the first pass for this row.
        let [r, ln_s, inv_s, rest_s, coef, coef_less_dy, label, label_weight, base] =
            unsafe { *self.info.0.add(row) };
        let g = bg.scratch(n);
        let h = bh.scratch(n);
        let eps_c = self.smoothing / self.classes as f64;
        let ignored = Y::HARD && label < 0.0;
        let first = if st[0] == 0 {
            0
        } else {
            ((at[0] as f64 - base) / st[0] as f64) as i64
        };
        let t = if Y::HARD {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { by.view_src(self.target.offset(at[1]), st[1], n) })
        };
        let hit_weight = (1.0 - self.smoothing) * label_weight;
        for i in 0..n {
            if ignored {
                g[i] = T::ZERO;
                h[i] = T::ZERO;
                continue;
            }
            let d = x[i].to_f64() - r;
            let top = d == 0.0;
            let p = if top { inv_s } else { (d - ln_s).exp_on::<A>() };
            let q = if top { rest_s } else { 1.0 - p };
            let wi = w[i].to_f64();
            let is_label = Y::HARD && first + i as i64 == label as i64;
            let direct = match t {
                Some(t) => wi * self.smoothed(t[i].prob()),
                None => {
                    let hit = if is_label { hit_weight } else { 0.0 };
                    hit + eps_c * wi
                }
            };
            let grad = if top {
                let less = if is_label {
                    coef_less_dy
                } else {
                    coef - direct
                };
                less * inv_s - direct * rest_s
            } else {
                coef * p - direct
            };
            g[i] = T::from_f64(self.scale * grad);
            h[i] = T::from_f64(self.scale * coef * p * q);
        }
        // SAFETY: each element of grad/hess belongs to exactly one row, handled by one task.
        unsafe {
            scatter(g, self.grad.0.offset(at[3]), st[3]);
            scatter(h, self.hess.0.offset(at[4]), st[4]);
        }
        Lse::EMPTY
    }

    /// The first pass's end of a row: stores its [`RowInfo`].
    ///
    /// # Safety
    /// `base` must be the row's valid operand offsets; `info` must have a slot for `row`.
    unsafe fn finish_row<A: Arch>(&self, row: usize, base: [isize; 5], state: Lse) -> Partial {
        if self.write {
            return Partial {
                count: 1,
                ..Partial::EMPTY
            };
        }
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
        let base0 = base[0] as f64;
        // Soft targets: A = Σ w t', and A - D_j is formed per element.
        let mut info = [r, ln_s, inv_s, rest_s, state.a, 0.0, -1.0, 0.0, base0];
        if Y::HARD {
            // SAFETY: the label operand is valid at the row's base offset.
            let y = unsafe { self.target.read(base[1]) }.index();
            if y == self.ignore_index {
                info[4] = 0.0;
            } else if y < 0 || y >= self.classes as i64 {
                part.flags |= flags::TARGET;
            } else {
                // SAFETY: 0 <= y < C addresses a class weight.
                let wy =
                    unsafe { self.weight.read(base[2] + y as isize * self.weight_stride) }.to_f64();
                let eps_c = self.smoothing / self.classes as f64;
                let coef = (1.0 - self.smoothing) * wy + eps_c * self.weight_total;
                // A - D_y = ε/C·(W - w_y): exactly 0 without label smoothing.
                let coef_less_dy = eps_c * (self.weight_total - wy);
                info = [
                    r,
                    ln_s,
                    inv_s,
                    rest_s,
                    coef,
                    coef_less_dy,
                    y as f64,
                    wy,
                    base0,
                ];
                part.weight = wy;
            }
        } else {
            part.weight = 1.0;
        }
        // SAFETY: one task finishes each row; the buffer has one slot per row.
        unsafe { *self.info.0.add(row) = info };
        part
    }
}

/// `(s, k)` of a row piece `x` against the reference `r` (a finite largest logit): `k` the
/// number of elements equal to `r`, `s = Σ e^{x - r}` over the others (NaN with any NaN),
/// in `f64` lanes summed as [`crate::kernels::lanes::sum_lanes`] sums.
#[inline(always)]
fn exp_sums<A: Arch, T: Float>(x: &[T], r: f64) -> (f64, f64) {
    sum_lanes2_of(x, |v: T| {
        let d = v.to_f64() - r;
        let top = d == 0.0;
        let e = d.exp_on::<A>();
        (if top { 0.0 } else { e }, if top { 1.0 } else { 0.0 })
    })
}

/// Runs both passes of [`SoftmaxGrad`]: returns the first pass's merge (domain errors; the
/// mean denominator in `weight`), after writing the outputs when it found no error.
///
/// # Safety
/// As [`run`]; `op.info` must hold one slot per row of `rows`.
pub unsafe fn softmax_cross_entropy_grad<T: Float, Y: ClassTarget>(
    rows: &Rows<5>,
    op: &mut SoftmaxGrad<T, Y>,
    mean: bool,
    pool: Option<&ThreadPool>,
) -> Partial {
    op.write = false;
    // SAFETY: forwarded from the caller.
    let first = unsafe { run(rows, &*op, pool) };
    if first.flags != 0 {
        return first;
    }
    op.scale = if mean { 1.0 / first.weight } else { 1.0 };
    op.write = true;
    // SAFETY: forwarded from the caller.
    unsafe { run(rows, &*op, pool) };
    first
}
