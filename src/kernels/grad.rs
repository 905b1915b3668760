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
//! `s` and `1 - s` are both evaluated from `e^-|x|`, so neither overflows nor loses its
//! relative accuracy for large `|x|`. Both are scaled by `scale` (1 for the gradient of a sum,
//! `1/n` for a mean). A target outside `[0, 1]` is a domain error (`flags::TARGET`); NaN
//! propagates.

use rayon::ThreadPool;

use super::float::{Float, Target};
use super::reduce::{flags, reduce, Partial, BLOCK};
use super::strided::{scatter, Layout, SendPtr, TileBuf, TILE};

/// The operands of one gradient computation, in place in memory.
///
/// Operand order in the [`Layout`]: input, target, weight, pos_weight, grad, hess. A missing
/// weight or pos_weight points at a single `1` with stride 0.
pub struct LogitsGrad<T, Y> {
    pub input: SendPtr<T>,
    pub target: SendPtr<Y>,
    pub weight: SendPtr<T>,
    pub pos_weight: SendPtr<T>,
    pub grad: SendPtr<T>,
    pub hess: SendPtr<T>,
    /// Multiplies gradient and Hessian: 1 for `reduction="sum"`, `1/n` for `"mean"`.
    pub scale: T,
    pub layout: Layout<6>,
}

/// `(sigmoid(x), 1 - sigmoid(x))`, both to full relative accuracy.
#[inline(always)]
pub fn sigmoid_pair<T: Float>(x: T) -> (T, T) {
    let e = (-x.abs()).exp();
    let big = T::ONE / (T::ONE + e);
    let small = e * big;
    if x >= T::ZERO {
        (big, small)
    } else {
        (small, big)
    }
}

/// Gradient and Hessian of one element's loss.
#[inline(always)]
fn element<T: Float>(x: T, y: T, w: T, c: T) -> (T, T) {
    let (s, one_minus_s) = sigmoid_pair(x);
    let l = (c - T::ONE) * y + T::ONE;
    (w * (l * s - c * y), w * l * s * one_minus_s)
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
    let layout = &ops.layout;
    let scale = ops.scale;
    reduce(layout.len(), BLOCK, pool, |range| {
        let mut part = Partial::EMPTY;
        part.count = range.len() as u64;
        let mut bx = TileBuf::<T>::default();
        let mut by = TileBuf::<Y>::default();
        let mut bw = TileBuf::<T>::default();
        let mut bpw = TileBuf::<T>::default();
        let mut bg = TileBuf::<T>::default();
        let mut bh = TileBuf::<T>::default();
        layout.for_each_run(range, |flat, len, off, st| {
            let mut done = 0;
            while done < len {
                let n = TILE.min(len - done);
                let at = |k: usize| off[k] + done as isize * st[k];
                // SAFETY: the caller guarantees the layout addresses valid elements.
                let (x, y, w, pw) = unsafe {
                    (
                        bx.view(ops.input.0.offset(at(0)), st[0], n),
                        by.view(ops.target.0.offset(at(1)), st[1], n),
                        bw.view(ops.weight.0.offset(at(2)), st[2], n),
                        bpw.view(ops.pos_weight.0.offset(at(3)), st[3], n),
                    )
                };
                let g = bg.scratch(n);
                let h = bh.scratch(n);
                let mut bad = false;
                for i in 0..n {
                    bad |= !y[i].in_range();
                    let (gi, hi) = element(x[i], y[i].prob(), w[i], pw[i]);
                    g[i] = gi * scale;
                    h[i] = hi * scale;
                }
                if bad && part.flags & flags::TARGET == 0 {
                    let pos = y.iter().position(|v| !v.in_range()).unwrap_or(0);
                    part.flag(flags::TARGET, (flat + done + pos) as u64);
                }
                // SAFETY: grad/hess are valid for writes along the layout, and each element is
                // written by exactly one block (blocks partition the flat index space).
                unsafe {
                    scatter(g, ops.grad.0.offset(at(4)), st[4]);
                    if !ops.hess.0.is_null() {
                        scatter(h, ops.hess.0.offset(at(5)), st[5]);
                    }
                }
                done += n;
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
            input: SendPtr::from_const(x.as_ptr()),
            target: SendPtr::from_const(y.as_ptr()),
            weight: SendPtr::from_const(&ONE),
            pos_weight: SendPtr::from_const(cs.as_ptr()),
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
