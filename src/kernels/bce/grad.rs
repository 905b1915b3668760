//! The gradient (and diagonal Hessian) of binary cross-entropy with logits with respect to the
//! logits, beside the loss (see [`super`]), for training loops and gradient boosting
//! (XGBoost / LightGBM custom objectives).
//!
//! Per element, with `x` the logit, `y` the target, `w` the
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

use super::{InputTiles, Inputs};
use crate::float::{Float, Target};
use crate::isa::{self, Arch, Kernel};
use crate::reduce::{flags, reduce, Partial, BLOCK};
use crate::strided::{Dst, Layout, TileBuf};

/// The operands of one gradient computation, in place in memory: the [`Inputs`] (layout
/// operands 0 to 3), then `grad` and `hess` (4 and 5; `hess` may be null), stored as `T` or
/// as a 16-bit float ([`Dst`]).
pub struct LogitsGrad<T, Y> {
    pub inputs: Inputs<T, Y>,
    pub grad: Dst<T>,
    pub hess: Dst<T>,
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
            // Contiguous outputs stored as `T` are written in place, others through a buffer.
            let hess = (!ops.hess.is_null()).then_some(ops.hess);
            let in_place = |dst: Option<Dst<T>>, k: usize| -> Option<&mut [T]> {
                // SAFETY: grad/hess are valid for writes along the layout, and each element
                // is written by exactly one block (blocks partition the flat index space).
                dst.filter(|_| st[k] == 1)
                    .and_then(Dst::native)
                    .map(|p| unsafe { std::slice::from_raw_parts_mut(p.offset(at[k]), n) })
            };
            let g_direct = in_place(Some(ops.grad), 4);
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
            // SAFETY: grad/hess are valid for writes at the layout's offsets of this tile, and
            // each element belongs to one block only (blocks partition the flat index space).
            unsafe {
                if g_scattered {
                    ops.grad.offset(at[4]).scatter(g, st[4]);
                }
                if h_scattered {
                    ops.hess.offset(at[5]).scatter(h, st[5]);
                }
            }
        });
        part
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strided::Src;

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
                input: Src::native(x.as_ptr()),
                target: Src::native(y.as_ptr()),
                weight: Src::native(&ONE),
                pos_weight: Src::native(cs.as_ptr()),
            },
            grad: Dst::from(g.as_mut_ptr()),
            hess: Dst::from(h.as_mut_ptr()),
            scale,
            layout: Layout::new(&[n], [&[1], &[1], &[0], &[0], &[1], &[1]]),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
        // outlive the call (outputs are written by one row each).
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
