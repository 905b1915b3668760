//! Gradients (and diagonal Hessians) of losses with respect to their logits, for training
//! loops and gradient boosting (XGBoost / LightGBM custom objectives).
//!
//! Binary cross-entropy with logits, per element, with `x` the logit, `y` the target, `w` the
//! element weight, `c` the positive-class weight and `s = sigmoid(x)`:
//!
//! ```text
//! loss = w · [ (1 - y) · x - (1 + (c - 1) · y) · log_sigmoid(x) ]
//! d/dx   = w · [ (1 + (c - 1) · y) · s - c · y ]          (= w · (s - y) when c = 1)
//! d²/dx² = w · (1 + (c - 1) · y) · s · (1 - s)
//! ```
//!
//! evaluated as `(1 - y) - L·(1 - s)` for `x ≥ 0` and `L·s - c·y` for `x < 0`, with
//! `L = (1 - y) + c·y`: for `y ∈ [0, 1]`, `c ≥ 0` the only subtraction left is the one whose
//! result is the gradient itself (within a few ulp of `|1 - y| + L·(1 - s)`, resp.
//! `L·s + c·y`).
//!
//! `s` and `1 - s` are both evaluated from `e^-|x|`, so neither overflows nor loses its
//! relative accuracy for large `|x|`. Both are scaled by `scale` (1 for the gradient of a sum,
//! `1/n` for a mean). A target outside `[0, 1]` is a domain error (`flags::TARGET`); NaN
//! propagates.

use rayon::ThreadPool;

use super::bce::{InputTiles, Inputs};
use super::float::{Float, Target};
use super::isa::{self, Arch, Kernel};
use super::lanes::{max_lanes, sum_lanes2_of};
use super::reduce::{flags, reduce, Partial, BLOCK};
use super::softmax::{reference, Label, Lse};
use super::strided::{scatter, Layout, Load, SendPtr, Src, TileBuf};

/// The operands of one gradient computation, in place in memory: the [`Inputs`] (layout
/// operands 0 to 3), then `grad` and `hess` (4 and 5; `hess` may be null).
pub struct LogitsGrad<T, Y> {
    pub inputs: Inputs<T, Y>,
    pub grad: SendPtr<T>,
    pub hess: SendPtr<T>,
    /// Multiplies gradient and Hessian: 1 for `reduction="sum"`, `1/n` for `"mean"`.
    pub scale: T,
    pub layout: Layout<6>,
}

/// `(sigmoid(x), 1 - sigmoid(x))`, both to full relative accuracy.
#[inline(always)]
pub fn sigmoid_pair<A: Arch, T: Float>(x: T) -> (T, T) {
    let e = (-x.abs()).exp_on::<A>();
    let big = T::ONE / (T::ONE + e);
    let small = e * big;
    if x >= T::ZERO {
        (big, small)
    } else {
        (small, big)
    }
}

/// Gradient and Hessian of one element's loss.
///
/// `L = 1 + (c - 1)·y` is formed as `(1 - y) + c·y` (no cancellation for small `c` and `y`
/// near 1), and the gradient `L·s - c·y` as `(1 - y) - L·(1 - s)` for `x ≥ 0`, where `s` is
/// near 1 and `L·s` and `c·y` would cancel (`x` large, `y` near 1: `s - y` from a rounded `s`).
#[inline(always)]
fn element<A: Arch, T: Float>(x: T, y: T, w: T, c: T) -> (T, T) {
    let (s, one_minus_s) = sigmoid_pair::<A, T>(x);
    let keep = T::ONE - y;
    let cy = c * y;
    let l = keep + cy;
    let g = if x >= T::ZERO {
        (-l).mul_add_on::<A>(one_minus_s, keep)
    } else {
        l.mul_add_on::<A>(s, -cy)
    };
    (w * g, w * l * s * one_minus_s)
}

/// One tile of the binary gradient, all slices of the same length: the unit of work compiled
/// per instruction set ([`isa::dispatch_on`]). Returns true if a target is out of range.
struct GradTile<'a, T, Y> {
    x: &'a [T],
    y: &'a [Y],
    w: &'a [T],
    pw: &'a [T],
    scale: T,
    g: &'a mut [T],
    h: &'a mut [T],
}

impl<T: Float, Y: Target> Kernel for GradTile<'_, T, Y> {
    type Output = bool;

    #[inline(always)]
    fn run<A: Arch>(self) -> bool {
        let n = self.x.len();
        let (y, w, pw) = (&self.y[..n], &self.w[..n], &self.pw[..n]);
        let (g, h) = (&mut self.g[..n], &mut self.h[..n]);
        let mut bad = false;
        for i in 0..n {
            bad |= !y[i].in_range();
            let (gi, hi) = element::<A, T>(self.x[i], y[i].prob(), w[i], pw[i]);
            g[i] = gi * self.scale;
            h[i] = hi * self.scale;
        }
        bad
    }
}

/// Writes the gradient (and Hessian) of binary cross-entropy with logits for every element of
/// `ops`. Returns the domain errors met (`flags`, `first_bad`) and the element count.
///
/// # Safety
/// Every pointer of `ops`, stepped by its strides over `ops.layout`, must address valid,
/// aligned elements alive for the whole call; `grad` and `hess` must not overlap each other,
/// themselves or any input.
pub unsafe fn binary_cross_entropy_with_logits_grad<T: Float, Y: Target>(
    ops: &LogitsGrad<T, Y>,
    pool: Option<&ThreadPool>,
) -> Partial {
    // One instruction set for the whole call, as for the losses.
    let isa = isa::active();
    reduce(ops.layout.len(), BLOCK, pool, |range| {
        let mut part = Partial::EMPTY;
        part.count = range.len() as u64;
        let mut tiles = InputTiles::<T, Y>::default();
        let mut bg = TileBuf::<T>::default();
        let mut bh = TileBuf::<T>::default();
        ops.layout.for_each_tile(range, |flat, n, at, st| {
            // SAFETY: the caller guarantees the layout addresses valid elements.
            let (x, y, w, pw) = unsafe { tiles.view(&ops.inputs, &at, &st, n) };
            // Contiguous outputs are written in place, others through a buffer.
            let hess = (!ops.hess.0.is_null()).then_some(ops.hess.0);
            let in_place = |ptr: Option<*mut T>, k: usize| -> Option<&mut [T]> {
                // SAFETY: grad/hess are valid for writes along the layout, and each element
                // is written by exactly one block (blocks partition the flat index space).
                ptr.filter(|_| st[k] == 1)
                    .map(|p| unsafe { std::slice::from_raw_parts_mut(p.offset(at[k]), n) })
            };
            let g_direct = in_place(Some(ops.grad.0), 4);
            let h_direct = in_place(hess, 5);
            let g_scattered = g_direct.is_none();
            let h_scattered = hess.is_some() && h_direct.is_none();
            let g = g_direct.unwrap_or_else(|| bg.scratch(n));
            let h = h_direct.unwrap_or_else(|| bh.scratch(n));
            let scale = ops.scale;
            let tile = GradTile {
                x,
                y,
                w,
                pw,
                scale,
                g: &mut *g,
                h: &mut *h,
            };
            if isa::dispatch_on(isa, tile) && part.flags & flags::TARGET == 0 {
                let pos = y.iter().position(|v| !v.in_range()).unwrap_or(0);
                part.flag(flags::TARGET, (flat + pos) as u64);
            }
            // SAFETY: as above.
            unsafe {
                if g_scattered {
                    scatter(g, ops.grad.0.offset(at[4]), st[4]);
                }
                if h_scattered {
                    scatter(h, ops.hess.0.offset(at[5]), st[5]);
                }
            }
        });
        part
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static ONE: f64 = 1.0;

    fn loss(x: f64, y: f64, w: f64, c: f64) -> f64 {
        let ls = x.min(0.0) - (-x.abs()).exp().ln_1p();
        w * ((1.0 - y) * x - (1.0 + (c - 1.0) * y) * ls)
    }

    fn run(x: &[f64], y: &[f64], c: f64, scale: f64) -> (Vec<f64>, Vec<f64>, Partial) {
        let n = x.len();
        let mut g = vec![0.0; n];
        let mut h = vec![0.0; n];
        let cs = [c];
        let ops = LogitsGrad {
            inputs: Inputs {
                input: SendPtr::from_const(x.as_ptr()),
                target: SendPtr::from_const(y.as_ptr()),
                weight: Src::native(&ONE),
                pos_weight: Src::native(cs.as_ptr()),
            },
            grad: SendPtr(g.as_mut_ptr()),
            hess: SendPtr(h.as_mut_ptr()),
            scale,
            layout: Layout::new(&[n], [&[1], &[1], &[0], &[0], &[1], &[1]]),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let part = unsafe { binary_cross_entropy_with_logits_grad(&ops, Some(&pool)) };
        (g, h, part)
    }

    #[test]
    fn matches_central_differences() {
        let x: Vec<f64> = (0..2001).map(|i| (i as f64 - 1000.0) / 50.0).collect();
        let y: Vec<f64> = (0..2001).map(|i| (i % 7) as f64 / 6.0).collect();
        for c in [1.0, 2.5, 0.3] {
            let (g, h, part) = run(&x, &y, c, 1.0);
            assert_eq!(part.count, 2001);
            for i in 0..x.len() {
                let d = 1e-4;
                let fd = (loss(x[i] + d, y[i], 1.0, c) - loss(x[i] - d, y[i], 1.0, c)) / (2.0 * d);
                assert!((g[i] - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "g {i}");
                let fd2 = (loss(x[i] + d, y[i], 1.0, c) - 2.0 * loss(x[i], y[i], 1.0, c)
                    + loss(x[i] - d, y[i], 1.0, c))
                    / (d * d);
                assert!((h[i] - fd2).abs() <= 1e-4 * (1.0 + fd2.abs()), "h {i}");
            }
        }
    }

    #[test]
    fn extremes_are_finite_and_accurate() {
        let x = [1e4, -1e4, 40.0, -40.0, 0.0];
        let y = [1.0, 0.0, 0.0, 1.0, 0.5];
        let (g, h, _) = run(&x, &y, 1.0, 0.5);
        assert_eq!(g[0], 0.0);
        assert_eq!(g[1], 0.0);
        assert_eq!(g[2], 0.5); // s = 1 - 4e-18 rounds to 1
        assert_eq!(g[3], -0.5);
        assert_eq!(g[4], 0.0);
        // s (1 - s) ≈ e^-40 keeps its relative accuracy instead of rounding to 0.
        let e = (-40f64).exp();
        assert!((h[2] - 0.5 * e).abs() <= 1e-14 * e);
        assert!((h[4] - 0.125).abs() == 0.0);
    }

    #[test]
    fn bad_target_is_flagged_at_its_position() {
        let x = vec![0.0; 70_000];
        let mut y = vec![0.5; 70_000];
        y[40_000] = 1.5;
        y[65_000] = -1.0;
        let (_, _, part) = run(&x, &y, 1.0, 1.0);
        assert_eq!(part.flags, flags::TARGET);
        assert_eq!(part.first_bad, 40_000);
    }
}

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
/// [`super::softmax`]), `p_j = e^{(x_j - r) - ln S}`: its error follows `|x_j - r|`, not the
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

impl<T: Float, Y: ClassTarget> super::rows::RowOp<5> for SoftmaxGrad<T, Y> {
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
/// in `f64` lanes summed as [`super::lanes::sum_lanes`] sums.
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
/// As [`super::rows::run`]; `op.info` must hold one slot per row of `rows`.
pub unsafe fn softmax_cross_entropy_grad<T: Float, Y: ClassTarget>(
    rows: &super::rows::Rows<5>,
    op: &mut SoftmaxGrad<T, Y>,
    mean: bool,
    pool: Option<&ThreadPool>,
) -> Partial {
    op.write = false;
    // SAFETY: forwarded from the caller.
    let first = unsafe { super::rows::run(rows, &*op, pool) };
    if first.flags != 0 {
        return first;
    }
    op.scale = if mean { 1.0 / first.weight } else { 1.0 };
    op.write = true;
    // SAFETY: forwarded from the caller.
    unsafe { super::rows::run(rows, &*op, pool) };
    first
}
