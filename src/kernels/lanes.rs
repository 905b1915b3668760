//! The lane helpers every kernel sums and scans with: [`LANES`] independent `f64`
//! accumulators, folded in one fixed tree order, so a sum vectorises to the enclosing
//! instruction set and its bits depend only on the elements (never on the thread count or
//! on how tiles are scheduled).

use super::float::Float;
use super::strided::TILE;

/// Number of independent `f64` accumulators in a tile sum: enough to fill two 512-bit
/// registers and to break the dependency chain of the additions.
pub const LANES: usize = 16;

/// Folds the lanes `acc` onto `acc[0]` in the fixed tree order (halves added pairwise).
#[inline(always)]
fn fold_tree(acc: &mut [f64; LANES]) -> f64 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}

/// `Σ x` in `f64`: [`LANES`] accumulators, folded in a fixed tree order. The tile sum shared by
/// the row-wise losses (plain loops, so it vectorises to the enclosing instruction set).
#[inline(always)]
pub fn sum_lanes<T: Float>(x: &[T]) -> f64 {
    sum_lanes_of(x, T::to_f64)
}

/// `Σ f(x)` in `f64`, summed as [`sum_lanes`] sums. `f` must be branch-free for the loop to
/// vectorise.
#[inline(always)]
pub fn sum_lanes_of<T: Float>(x: &[T], f: impl Fn(T) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    // The remainder into its lanes, +0.0 into the others, which leaves their bits as they are
    // (a lane starts at +0.0, so it is never -0.0). No lane is indexed at run time, so the
    // lanes stay in registers: with a loop over the remainder's length they were kept in
    // memory, and the loop above, storing each lane back, no longer vectorised (`f32` rows).
    let rest = chunks.remainder();
    for (i, a) in acc.iter_mut().enumerate() {
        *a += if i < rest.len() { f(rest[i]) } else { 0.0 };
    }
    fold_tree(&mut acc)
}

/// `(Σ f(x).0, Σ f(x).1)`, each summed as [`sum_lanes`] sums, in one read of `x`. `f` must be
/// branch-free for the loop to vectorise.
#[inline(always)]
pub fn sum_lanes2_of<T: Float>(x: &[T], f: impl Fn(T) -> (f64, f64)) -> (f64, f64) {
    let mut acc = [0f64; LANES];
    let mut bcc = [0f64; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for ((a, b), &v) in acc.iter_mut().zip(bcc.iter_mut()).zip(c) {
            let (fa, fb) = f(v);
            *a += fa;
            *b += fb;
        }
    }
    // As in `sum_lanes_of`: no lane indexed at run time.
    let rest = chunks.remainder();
    for (i, (a, b)) in acc.iter_mut().zip(bcc.iter_mut()).enumerate() {
        let (fa, fb) = if i < rest.len() {
            f(rest[i])
        } else {
            (0.0, 0.0)
        };
        *a += fa;
        *b += fb;
    }
    (fold_tree(&mut acc), fold_tree(&mut bcc))
}

/// The sum of each of the `out.len()` rows of `n` elements in `x` (row after row), in `f64`.
///
/// A tile of more than `TILE / 2` elements (one row) is summed by [`sum_lanes`]; shorter rows
/// (a batch of whole rows, or the tail of a long row) are summed left to right, each in a
/// register. Either way a row's sum depends only on its elements and `n`, never on how many
/// rows share the batch.
#[inline(always)]
pub fn row_sums<T: Float>(x: &[T], n: usize, out: &mut [f64]) {
    if n > TILE / 2 {
        for (o, row) in out.iter_mut().zip(x.chunks_exact(n)) {
            *o = sum_lanes(row);
        }
        return;
    }
    for (o, row) in out.iter_mut().zip(x.chunks_exact(n.max(1))) {
        *o = row.iter().fold(0.0, |s, &v| s + v.to_f64());
    }
    if n == 0 {
        out.fill(0.0);
    }
}

/// The largest element of `x`, NaN ignored (`-inf` when there is none). [`LANES`] running
/// maxima folded at the end, so that it vectorises: one running maximum is a chain of
/// dependent compares, a few cycles per element. The value is that of a left-to-right scan
/// (up to the sign of a zero maximum).
#[inline(always)]
pub fn max_lanes<T: Float>(x: &[T]) -> T {
    let neg_inf = T::from_f64(f64::NEG_INFINITY);
    let max = |m: T, v: T| if v > m { v } else { m };
    if x.len() <= LANES {
        // Too short for the lanes to pay for their fold.
        return x.iter().copied().fold(neg_inf, max);
    }
    let mut acc = [neg_inf; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = max(*a, v);
        }
    }
    // As in `sum_lanes_of`: no lane indexed at run time (`max(a, -inf)` is `a`).
    let rest = chunks.remainder();
    for (i, a) in acc.iter_mut().enumerate() {
        *a = max(*a, if i < rest.len() { rest[i] } else { neg_inf });
    }
    acc.into_iter().fold(neg_inf, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i as f64) * 0.37).sin() * 10f64.powi((i % 13) as i32 - 6))
            .collect()
    }

    #[test]
    fn sums_handle_ragged_tiles() {
        let x = data(37);
        let total: f64 = x.iter().map(|v| v.abs()).sum();
        assert!((sum_lanes(&x) - x.iter().sum::<f64>()).abs() <= 1e-12 * total);
        assert_eq!(sum_lanes::<f32>(&[]), 0.0);
        assert_eq!(sum_lanes(&[1f32; 37]), 37.0);
    }

    /// Element `i` into lane `i mod 16`, lanes folded pairwise: the order every tile sum
    /// promises, whatever the length of the last, partial group of lanes.
    #[test]
    fn sums_have_the_bits_of_the_lane_order_for_every_remainder() {
        let reference = |x: &[f64]| {
            let mut acc = [0f64; LANES];
            for (i, &v) in x.iter().enumerate() {
                acc[i % LANES] += v;
            }
            fold_tree(&mut acc)
        };
        for n in 0..80 {
            let mut x = data(n);
            assert_eq!(sum_lanes(&x).to_bits(), reference(&x).to_bits(), "n = {n}");
            if n > 3 {
                // Zeros of either sign, in the remainder and in the first lane.
                (x[n - 1], x[n - 2]) = (-0.0, 0.0);
                x[0] = -0.0;
                assert_eq!(sum_lanes(&x).to_bits(), reference(&x).to_bits(), "n = {n}");
                x[n - 3] = f64::NAN;
                assert!(sum_lanes(&x).is_nan(), "n = {n}");
            }
            let y: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let wide: Vec<f64> = y.iter().map(|&v| v as f64).collect();
            assert_eq!(
                sum_lanes(&y).to_bits(),
                reference(&wide).to_bits(),
                "f32, n = {n}"
            );
        }
    }

    #[test]
    fn paired_sums_have_the_bits_of_single_sums() {
        for n in [0, 1, 15, 16, 17, 100, 1001] {
            let x = data(n);
            let f = |v: f64| v * v - 0.25;
            let (a, b) = sum_lanes2_of(&x, |v| (v, f(v)));
            assert_eq!(a.to_bits(), sum_lanes(&x).to_bits(), "n = {n}");
            assert_eq!(b.to_bits(), sum_lanes_of(&x, f).to_bits(), "n = {n}");
        }
    }

    #[test]
    fn max_lanes_is_the_scan_maximum_ignoring_nan() {
        let scan = |x: &[f32]| {
            x.iter()
                .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
        };
        assert_eq!(max_lanes::<f32>(&[]), f32::NEG_INFINITY);
        assert_eq!(max_lanes(&[f32::NAN; 40]), f32::NEG_INFINITY);
        for n in [1, 15, 16, 17, 100, 1000] {
            let mut x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 - 500.0).collect();
            assert_eq!(max_lanes(&x), scan(&x), "n = {n}");
            x[n / 2] = f32::NAN;
            x[n - 1] = 1e30;
            assert_eq!(max_lanes(&x), 1e30, "n = {n}");
            x[n - 1] = f32::INFINITY;
            assert_eq!(max_lanes(&x), f32::INFINITY, "n = {n}");
        }
    }
}
