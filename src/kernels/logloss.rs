//! scikit-learn's `log_loss` (the multinomial negative log-likelihood) over rows of predicted
//! probabilities and one class code per row, in one fused pass on the row-wise engine
//! ([`super::rows`]).
//!
//! With `P` an `(n, C)` matrix of predicted probabilities, `y_i ∈ [0, C)` the class code of
//! row `i`, `w_i` its sample weight (1 when absent) and `ε` the machine epsilon of the
//! predictions' dtype, row `i` contributes
//!
//! ```text
//! ℓ_i = -ln(clip(P[i, y_i], ε, 1 - ε))          sum += w_i · ℓ_i,   weight += w_i
//! ```
//!
//! which is exactly `-Σ_c onehot(y_i)_c · ln(clip(P[i, c]))`, scikit-learn's formula, without the
//! one-hot matrix: the terms of the other classes are 0 (`xlogy(0, ·) = 0`). With binary
//! predictions (one column holding the positive class's probability `p`), the row is
//! `[1 - p, p]`, with `1 - p` rounded in the predictions' dtype as scikit-learn forms it.
//!
//! In the same read of each row the kernel checks what scikit-learn checks on the whole
//! matrix: every value must lie in `[0, 1]` (NaN does not): [`flags::INPUT`] otherwise; and each
//! row's sum `s` must satisfy `|s - 1| ≤ 1e-8 + sqrt(ε)` (`numpy.isclose(s, 1, rtol=sqrt(ε))`),
//! else the row raises [`UNNORMALIZED`] (a warning, not an error). A code outside `[0, C)` is
//! [`flags::TARGET`]; a weight that is negative or not finite is [`WEIGHT`].
//!
//! Accuracy: the clip is exact (done in the predictions' dtype, as scikit-learn does), the
//! logarithm is taken in `f64` of the clipped value (≤ 1 ulp, also for `f32` input, where
//! scikit-learn computes it in `f32`), and the sums are `f64`: each `w_i · ℓ_i` to within an
//! ulp, summed in the engine's fixed order. Row sums are taken in `f64` (scikit-learn sums in
//! the input's dtype), so the warning can differ from scikit-learn's only for a row sum within
//! an `f32` rounding of the tolerance's edge.

use super::float::Float;
use super::isa::Arch;
use super::lanes::row_sums;
use super::reduce::{flags, Partial};
use super::rows::{In, Row, RowOp, Tile};
use super::softmax::Label;
use super::strided::{Load, TileBuf};

/// A row whose probabilities do not sum to 1 within the tolerance (a warning, not an error;
/// above the bits of [`flags`]).
pub const UNNORMALIZED: u32 = 1 << 8;

/// A sample weight that is negative, NaN or infinite: the flag every loss raises for a bad
/// sample weight ([`flags::WEIGHT`]).
pub const WEIGHT: u32 = flags::WEIGHT;

/// Log loss over rows of operands `[probabilities, codes, weights]` (codes and weights: one
/// value per row, stride 0 along the class axis; weights a single 1 with stride 0 when
/// absent).
pub struct LogLoss<T, L> {
    pub probs: In<T>,
    /// Number of classes `C` (2 for binary predictions).
    pub classes: usize,
    /// The predictions hold one column, the positive class's probability.
    pub binary: bool,
    pub codes: In<L>,
    /// Sample weights, read as `f64` where they lie.
    pub weights: In<f64>,
    /// `ε`: predictions are clipped to `[ε, 1 - ε]`.
    pub eps: T,
    /// The row-sum tolerance `1e-8 + sqrt(ε)` (ignored for binary predictions, whose rows
    /// sum to one by construction).
    pub tolerance: f64,
}

/// What a tile of a row contributes: its sum, and whether a value lies outside `[0, 1]`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowCheck {
    pub sum: f64,
    pub bad: bool,
}

impl<T: Float, L: Label + Load> RowOp<3> for LogLoss<T, L> {
    type State = RowCheck;
    /// The gathered tile; one `f64` sum per row.
    type Scratch = (TileBuf<T>, TileBuf<f64>);

    fn empty(&self) -> RowCheck {
        RowCheck::default()
    }

    #[inline(always)]
    fn tile<A: Arch>(&self, (bx, bs): &mut Self::Scratch, tile: &Tile<3>, states: &mut [RowCheck]) {
        let x = tile.read(&self.probs, bx);
        let sums = bs.scratch(tile.rows());
        row_sums(x, tile.len(), sums);
        // Branch-free, so it vectorises: NaN fails both comparisons.
        let outside = x
            .iter()
            .fold(false, |acc, &v| acc | !(v >= T::ZERO && v <= T::ONE));
        // A flag on every row of the tile: the binding locates the bad value itself.
        for (state, &s) in states.iter_mut().zip(&*sums) {
            *state = RowCheck {
                sum: s,
                bad: outside,
            };
        }
    }

    #[inline(always)]
    fn merge(&self, a: RowCheck, b: RowCheck) -> RowCheck {
        RowCheck {
            sum: a.sum + b.sum,
            bad: a.bad | b.bad,
        }
    }

    #[inline(always)]
    fn finish<A: Arch>(&self, row: &Row<3>, st: RowCheck) -> Partial {
        let mut part = Partial::EMPTY;
        if st.bad {
            part.flags |= flags::INPUT;
        }
        let (y, w) = (row.value(&self.codes).index(), row.value(&self.weights));
        if !(w >= 0.0 && w.is_finite()) {
            part.flags |= WEIGHT;
        }
        if y < 0 || y as u64 >= self.classes as u64 {
            part.flags |= flags::TARGET;
        }
        if part.flags != 0 {
            return part;
        }
        let p = if self.binary {
            // A binary row is its one probability.
            let p = row.get(&self.probs, 0);
            if y == 1 {
                p
            } else {
                T::ONE - p
            }
        } else {
            if (st.sum - 1.0).abs() > self.tolerance || st.sum.is_nan() {
                part.flags |= UNNORMALIZED;
            }
            // 0 <= y < C: inside the row.
            row.get(&self.probs, y as usize)
        };
        let one_m_eps = T::ONE - self.eps;
        let clipped = if p < self.eps {
            self.eps
        } else if p > one_m_eps {
            one_m_eps
        } else {
            p
        };
        // `f64::ln` of the exact clipped value: std's logarithm, a scalar call once per row
        // (the row's sum above is the vectorised part of the work).
        let loss = -clipped.to_f64().ln();
        part.sum = w * loss;
        part.weight = w;
        part.count = 1;
        part
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::Float;
    use crate::rows::{run, Rows};

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// The one-hot formula, term by term, in `f64`.
    fn reference(p: &[f64], c: usize, y: &[i64], w: &[f64]) -> (f64, f64) {
        let eps = f64::EPSILON;
        let mut sum = 0.0;
        for (i, (&yi, &wi)) in y.iter().zip(w).enumerate() {
            let mut row = 0.0;
            for k in 0..c {
                let q = p[i * c + k].clamp(eps, 1.0 - eps);
                row -= if k as i64 == yi { q.ln() } else { 0.0 };
            }
            sum += wi * row;
        }
        (sum, w.iter().sum())
    }

    fn run_on(
        p: &[f64],
        shape: [usize; 2],
        strides: [isize; 2],
        y: &[i64],
        w: &[f64],
        threads: usize,
    ) -> Partial {
        // SAFETY: the layout below steps over the slices' elements only, and they outlive
        // the run.
        let op = unsafe {
            LogLoss {
                probs: In::new(p.as_ptr(), 0),
                classes: shape[1],
                binary: false,
                codes: In::new(y.as_ptr(), 1),
                weights: In::new(w.as_ptr(), 2),
                eps: f64::EPSILON,
                tolerance: 1e-8 + f64::EPSILON.sqrt(),
            }
        };
        let rows = Rows::new(&shape, [&strides, &[1, 0], &[1, 0]], &[false, true]);
        let pool = pool(threads);
        // SAFETY: every offset lies in the slices, which outlive the call.
        unsafe { run(&rows, &op, (threads > 1).then_some(&pool)) }
    }

    /// Rows of `c` probabilities summing to 1 (a few exactly 0 or 1, to exercise the clip).
    fn data(n: usize, c: usize) -> (Vec<f64>, Vec<i64>, Vec<f64>) {
        let mut p = Vec::with_capacity(n * c);
        for i in 0..n {
            let raw: Vec<f64> = (0..c)
                .map(|k| {
                    if i % 13 == 0 && k > 0 {
                        0.0
                    } else {
                        1.0 + ((i * 31 + k * 7) % 17) as f64
                    }
                })
                .collect();
            let s: f64 = raw.iter().sum();
            p.extend(raw.iter().map(|v| v / s));
        }
        let y = (0..n).map(|i| ((i * 5) % c) as i64).collect();
        let w = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
        (p, y, w)
    }

    #[test]
    fn matches_the_one_hot_formula_for_any_thread_count() {
        let (n, c) = (20_011, 7);
        let (p, y, w) = data(n, c);
        let (sum, weight) = reference(&p, c, &y, &w);
        let serial = run_on(&p, [n, c], [c as isize, 1], &y, &w, 1);
        assert!((serial.sum - sum).abs() <= 1e-12 * sum);
        assert_eq!(serial.weight, weight);
        assert_eq!(serial.count, n as u64);
        assert_eq!(serial.flags, 0);
        for threads in [2, 3] {
            let p2 = run_on(&p, [n, c], [c as isize, 1], &y, &w, threads);
            assert_eq!(p2.sum.to_bits(), serial.sum.to_bits(), "{threads} threads");
        }
    }

    #[test]
    fn reads_fortran_order_in_place() {
        let (n, c) = (1000, 5);
        let (p, y, w) = data(n, c);
        // The same matrix stored column by column.
        let mut f = vec![0.0; n * c];
        for i in 0..n {
            for k in 0..c {
                f[k * n + i] = p[i * c + k];
            }
        }
        let a = run_on(&p, [n, c], [c as isize, 1], &y, &w, 1);
        let b = run_on(&f, [n, c], [1, n as isize], &y, &w, 2);
        assert!((a.sum - b.sum).abs() <= 1e-13 * a.sum);
    }

    #[test]
    fn flags_bad_values_codes_weights_and_unnormalised_rows() {
        let (n, c) = (100, 3);
        let (mut p, mut y, mut w) = data(n, c);
        assert_eq!(run_on(&p, [n, c], [3, 1], &y, &w, 1).flags, 0);
        p[3 * c + 1] *= 0.5;
        assert_eq!(run_on(&p, [n, c], [3, 1], &y, &w, 1).flags, UNNORMALIZED);
        p[5 * c] = f64::NAN;
        assert_ne!(
            run_on(&p, [n, c], [3, 1], &y, &w, 1).flags & flags::INPUT,
            0
        );
        p[5 * c] = 0.2;
        y[7] = 3;
        assert_ne!(
            run_on(&p, [n, c], [3, 1], &y, &w, 1).flags & flags::TARGET,
            0
        );
        y[7] = 0;
        w[9] = -1.0;
        assert_ne!(run_on(&p, [n, c], [3, 1], &y, &w, 1).flags & WEIGHT, 0);
    }

    #[test]
    fn binary_rows_clip_in_the_input_precision() {
        let p: Vec<f32> = vec![1.0, 0.0, 0.25, 0.75];
        let y: Vec<u8> = vec![0, 1, 1, 0];
        // SAFETY: as above; the weight is one value read with stride 0.
        let op = unsafe {
            LogLoss {
                probs: In::new(p.as_ptr(), 0),
                classes: 2,
                binary: true,
                codes: In::new(y.as_ptr(), 1),
                weights: In::new(f64::one_ref() as *const f64, 2),
                eps: f32::EPSILON,
                tolerance: 0.0,
            }
        };
        let rows = Rows::new(&[4, 1], [&[1, 0], &[1, 0], &[0, 0]], &[false, true]);
        // SAFETY: every offset lies in the vectors.
        let part = unsafe { run(&rows, &op, None) };
        let eps = f64::from(f32::EPSILON);
        let expected = -2.0 * eps.ln() - 2.0 * 0.25f64.ln();
        assert!((part.sum - expected).abs() <= 1e-14 * expected);
        assert_eq!(part.flags, 0);
    }
}
