//! The row-wise engine: one result per row (per distribution) of an N-d strided array.
//!
//! An array (or several operands broadcast to one shape) is split into *rows*: the dimensions
//! that are reduced (one axis, or all of them) form the inside of a row, the others enumerate
//! the rows. Both parts are [`Layout`]s, so any strides (an axis that is not last, Fortran
//! order, slices, negative steps, broadcast operands) are read in place.
//!
//! A row is reduced by a [`RowOp`] tile by tile: each tile of at most [`TILE`] elements becomes
//! a `State`, and the states are merged in element order. Tiles start at multiples of [`TILE`]
//! within fixed chunks of [`CHUNK`] elements, so how a row is reduced depends only on its
//! length and layout — never on the thread count:
//!
//! - rows of at most [`CHUNK`] elements are processed whole, many rows per block of about
//!   [`BLOCK`] elements, blocks in parallel;
//! - longer rows are cut into chunks that are reduced in parallel (few long rows still use
//!   every thread), and each row's chunk states are merged in chunk order afterwards.
//!
//! When the reduced axis is not contiguous (e.g. `axis=0` of a C-ordered matrix), neighbouring
//! rows are interleaved tile by tile in groups of [`GROUP`], so that every cache line fetched
//! for one row is used by the next rows while it is still in L1. Each row's own sequence of
//! tiles and merges is unchanged by the grouping, so the bits are too.

use std::ops::Range;

use rayon::prelude::*;
use rayon::ThreadPool;

use super::reduce::{reduce, Partial, BLOCK};
use super::strided::{Layout, TILE};

/// Elements of a row reduced as one unit of parallel work (a multiple of [`TILE`]).
pub const CHUNK: usize = 1 << 15;

/// Rows interleaved tile by tile when the reduced axis is strided.
pub const GROUP: usize = 8;

const _: () = assert!(CHUNK.is_multiple_of(TILE));

/// A reduction of each row to one value.
///
/// `K` operands are addressed by element offsets: the engine hands the op the offsets of a
/// tile's first element and the tile's element strides, one per operand; the op owns the
/// pointers and reads (and, in [`RowOp::finish`], writes) through them.
pub trait RowOp<const K: usize>: Sync {
    /// What a tile (or a merged run of tiles) of a row contributes.
    type State: Copy + Send + Sync;
    /// Per-task scratch space (e.g. tile gather buffers).
    type Scratch: Default;

    /// The state of no elements.
    fn empty(&self) -> Self::State;

    /// Reduces `n <= TILE` elements of row `row`: operand `k`'s elements lie at
    /// `at[k] + i * st[k]` for `i < n`.
    ///
    /// # Safety
    /// Those offsets must address valid, initialised elements of every operand the op reads.
    unsafe fn tile(
        &self,
        scratch: &mut Self::Scratch,
        row: usize,
        at: [isize; K],
        st: [isize; K],
        n: usize,
    ) -> Self::State;

    /// Combines `a` (earlier elements of a row) with `b` (later elements).
    fn merge(&self, a: Self::State, b: Self::State) -> Self::State;

    /// Turns a row's state into its result, writes it (if the op has an output) and returns
    /// what the row contributes to a reduction over rows. The engine sets `first_bad` to the
    /// row's index when the returned `flags` are not zero.
    ///
    /// # Safety
    /// `base[k]` is operand `k`'s offset of the row's first element; it must be valid.
    unsafe fn finish(&self, row: usize, base: [isize; K], state: Self::State) -> Partial;
}

/// The iteration space of a row-wise operation: rows (outer) and elements within a row (inner).
#[derive(Clone, Debug)]
pub struct Rows<const K: usize> {
    outer: Layout<K>,
    inner: Layout<K>,
}

impl<const K: usize> Rows<K> {
    /// Splits `shape` into rows: dimension `d` is inside a row when `reduced[d]`. `strides[k]`
    /// are operand `k`'s element strides (0 where broadcast; an output has 0 along reduced
    /// dimensions).
    pub fn new(shape: &[usize], strides: [&[isize]; K], reduced: &[bool]) -> Self {
        assert_eq!(reduced.len(), shape.len(), "one flag per dimension");
        let part = |inside: bool| {
            let dims: Vec<usize> = (0..shape.len()).filter(|&d| reduced[d] == inside).collect();
            let sub_shape: Vec<usize> = dims.iter().map(|&d| shape[d]).collect();
            let sub_strides: [Vec<isize>; K] =
                std::array::from_fn(|k| dims.iter().map(|&d| strides[k][d]).collect());
            Layout::new(
                &sub_shape,
                std::array::from_fn(|k| sub_strides[k].as_slice()),
            )
        };
        Rows {
            outer: part(false),
            inner: part(true),
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.outer.len()
    }

    /// Number of elements in each row.
    pub fn row_len(&self) -> usize {
        self.inner.len()
    }

    /// Number of chunks each row is cut into (at least 1, also for empty rows).
    fn chunks(&self) -> usize {
        self.row_len().div_ceil(CHUNK).max(1)
    }

    /// The operand offsets of row `r`'s first element.
    fn base(&self, r: usize) -> [isize; K] {
        let mut base = [0; K];
        self.outer.for_each_run(r..r + 1, |_, _, off, _| base = off);
        base
    }

    /// Visits the elements `range` of a row as tiles: `f(at, st, n)` with offsets relative to
    /// the row's first element.
    #[inline(always)]
    fn tiles(&self, range: Range<usize>, mut f: impl FnMut([isize; K], [isize; K], usize)) {
        if range.is_empty() {
            return;
        }
        let tile_run = |f: &mut dyn FnMut([isize; K], [isize; K], usize),
                        off: [isize; K],
                        st: [isize; K],
                        len: usize| {
            let mut done = 0;
            while done < len {
                let n = TILE.min(len - done);
                f(
                    std::array::from_fn(|k| off[k] + done as isize * st[k]),
                    st,
                    n,
                );
                done += n;
            }
        };
        if let [st] = self.inner.strides() {
            // One dimension (the usual case): no multi-index to carry.
            let off = std::array::from_fn(|k| range.start as isize * st[k]);
            tile_run(&mut f, off, *st, range.len());
        } else {
            self.inner
                .for_each_run(range, |_, len, off, st| tile_run(&mut f, off, st, len));
        }
    }

    /// True when operand 0 is strided along the rows' innermost dimension, so that rows are
    /// worth interleaving.
    fn interleave(&self) -> bool {
        let strides = self.inner.strides();
        let inner_stride = strides.last().map_or(1, |s| s[0]);
        self.row_len() > 1 && inner_stride.unsigned_abs() != 1
    }

    /// Reduces the whole rows `range` (each of at most one chunk), finishing each.
    ///
    /// # Safety
    /// As [`run`].
    unsafe fn block<O: RowOp<K>>(&self, op: &O, range: Range<usize>) -> Partial {
        let n = self.row_len();
        let group = if self.interleave() { GROUP } else { 1 };
        let mut scratch = O::Scratch::default();
        let mut part = Partial::EMPTY;
        self.outer.for_each_run(range, |flat, count, off, ost| {
            let mut i = 0;
            while i < count {
                let g = group.min(count - i);
                let bases: [[isize; K]; GROUP] = std::array::from_fn(|j| {
                    std::array::from_fn(|k| off[k] + (i + j) as isize * ost[k])
                });
                let mut states = [op.empty(); GROUP];
                self.tiles(0..n, |at, st, m| {
                    for j in 0..g {
                        let at = std::array::from_fn(|k| bases[j][k] + at[k]);
                        // SAFETY: the caller guarantees the layout addresses valid elements.
                        let s = unsafe { op.tile(&mut scratch, flat + i + j, at, st, m) };
                        states[j] = op.merge(states[j], s);
                    }
                });
                for j in 0..g {
                    let row = flat + i + j;
                    // SAFETY: as above.
                    let mut p = unsafe { op.finish(row, bases[j], states[j]) };
                    if p.flags != 0 {
                        p.first_bad = row as u64;
                    }
                    part = part.merge(p);
                }
                i += g;
            }
        });
        part
    }
}

/// Reduces every row of `rows` with `op` (writing each row's result through the op) and
/// returns the merge, in row order, of what the rows contribute. Parallel on `pool` when given;
/// the bits are the same for any thread count.
///
/// Row indices passed to the op are positions in the engine's row order (operand 0's memory
/// order), the same in every call with the same `rows`.
///
/// # Safety
/// Every operand offset that `rows` produces must be valid for the op's pointers for the whole
/// call; outputs written by `finish` must not overlap the inputs or each other.
pub unsafe fn run<const K: usize, O: RowOp<K>>(
    rows: &Rows<K>,
    op: &O,
    pool: Option<&ThreadPool>,
) -> Partial {
    let nrows = rows.rows();
    let n = rows.row_len();
    let chunks = rows.chunks();
    if chunks == 1 {
        let per_block = (BLOCK / n.max(1)).max(1);
        // SAFETY: forwarded from the caller.
        return reduce(nrows, per_block, pool, |r| unsafe { rows.block(op, r) });
    }
    // Long rows: every (row, chunk) pair is one task, in row-major order.
    let item = |i: usize| {
        let (r, c) = (i / chunks, i % chunks);
        let base = rows.base(r);
        let mut scratch = O::Scratch::default();
        let mut state = op.empty();
        rows.tiles(c * CHUNK..((c + 1) * CHUNK).min(n), |at, st, m| {
            let at = std::array::from_fn(|k| base[k] + at[k]);
            // SAFETY: forwarded from the caller.
            let s = unsafe { op.tile(&mut scratch, r, at, st, m) };
            state = op.merge(state, s);
        });
        state
    };
    let items = nrows * chunks;
    let mut states = Vec::with_capacity(items);
    match pool {
        Some(pool) => pool.install(|| {
            (0..items)
                .into_par_iter()
                .with_min_len(1)
                .map(item)
                .collect_into_vec(&mut states)
        }),
        None => states.extend((0..items).map(item)),
    }
    let finish_rows = |range: Range<usize>| {
        let mut part = Partial::EMPTY;
        rows.outer.for_each_run(range, |flat, count, off, ost| {
            for i in 0..count {
                let row = flat + i;
                let state = states[row * chunks..(row + 1) * chunks]
                    .iter()
                    .fold(op.empty(), |a, &b| op.merge(a, b));
                let base = std::array::from_fn(|k| off[k] + i as isize * ost[k]);
                // SAFETY: forwarded from the caller.
                let mut p = unsafe { op.finish(row, base, state) };
                if p.flags != 0 {
                    p.first_bad = row as u64;
                }
                part = part.merge(p);
            }
        });
        part
    };
    reduce(nrows, 1024, pool, finish_rows)
}

/// Number of independent `f64` accumulators in a tile's lane loop: enough to fill two 512-bit
/// registers and to break the dependency chain of the additions.
pub const LANES: usize = 16;

/// Sums `N` per-element quantities `term(i)` for `i < n` in [`LANES`] `f64` accumulators,
/// folded in a fixed tree order at the end: the tile reduction shared by the row-wise losses.
#[inline(always)]
// Index loops over fixed-width lane arrays are the shape the vectoriser wants.
#[allow(clippy::needless_range_loop)]
pub fn lane_sums<T: super::float::Float, const N: usize>(
    n: usize,
    term: impl Fn(usize) -> [T; N],
) -> [f64; N] {
    let mut acc = [[0f64; LANES]; N];
    let mut start = 0;
    while start < n {
        let width = LANES.min(n - start);
        let mut v = [[T::ZERO; LANES]; N];
        for j in 0..width {
            let t = term(start + j);
            for k in 0..N {
                v[k][j] = t[k];
            }
        }
        for k in 0..N {
            for j in 0..LANES {
                acc[k][j] += v[k][j].to_f64();
            }
        }
        start += width;
    }
    std::array::from_fn(|k| {
        let mut v = acc[k];
        let mut width = LANES;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                v[i] += v[i + width];
            }
        }
        v[0]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::strided::SendPtr;

    /// Sum of each row's elements, written to operand 1, with the row's sum as contribution.
    struct RowSum {
        x: SendPtr<f64>,
        out: SendPtr<f64>,
    }

    impl RowOp<2> for RowSum {
        type State = f64;
        type Scratch = crate::kernels::strided::TileBuf<f64>;
        fn empty(&self) -> f64 {
            0.0
        }
        unsafe fn tile(
            &self,
            buf: &mut Self::Scratch,
            _row: usize,
            at: [isize; 2],
            st: [isize; 2],
            n: usize,
        ) -> f64 {
            let x = unsafe { buf.view(self.x.0.offset(at[0]), st[0], n) };
            lane_sums(n, |i| [x[i]])[0]
        }
        fn merge(&self, a: f64, b: f64) -> f64 {
            a + b
        }
        unsafe fn finish(&self, _row: usize, base: [isize; 2], s: f64) -> Partial {
            unsafe { *self.out.0.offset(base[1]) = s };
            Partial {
                sum: s,
                count: 1,
                ..Partial::EMPTY
            }
        }
    }

    fn pool(threads: usize) -> ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    fn data(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i as f64) * 0.37).sin() * 10f64.powi((i % 13) as i32 - 6))
            .collect()
    }

    /// Row sums of a (rows, cols) matrix stored with strides `(rs, cs)`, reduced along `axis`.
    fn row_sums(
        x: &[f64],
        shape: [usize; 2],
        strides: [isize; 2],
        axis: usize,
        threads: usize,
    ) -> (Vec<f64>, Partial) {
        let out_len = shape[1 - axis];
        let mut out = vec![f64::NAN; out_len];
        let mut out_strides = [0isize; 2];
        out_strides[1 - axis] = 1;
        let rows = Rows::new(&shape, [&strides, &out_strides], &[axis == 0, axis == 1]);
        let op = RowSum {
            x: SendPtr::from_const(x.as_ptr()),
            out: SendPtr(out.as_mut_ptr()),
        };
        let p = pool(threads);
        let part = unsafe { run(&rows, &op, if threads > 1 { Some(&p) } else { None }) };
        (out, part)
    }

    #[test]
    fn short_and_long_rows_any_layout_any_threads() {
        for &(r, c) in &[
            (1000, 7),
            (3, 100_000),
            (5, 1),
            (1, 0),
            (0, 5),
            (40, 33_000),
        ] {
            let x = data(r * c);
            let exact: Vec<f64> = (0..r)
                .map(|i| x[i * c..(i + 1) * c].iter().sum::<f64>())
                .collect();
            // C order along axis 1, then the transpose of the same buffer along axis 0.
            let (reference, _) = row_sums(&x, [r, c], [c as isize, 1], 1, 1);
            for (a, b) in reference.iter().zip(&exact) {
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
            }
            for threads in [1, 2, 3, 7] {
                let (o, p) = row_sums(&x, [r, c], [c as isize, 1], 1, threads);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&o), bits(&reference), "({r}, {c}) {threads} threads");
                assert_eq!(p.count, r as u64);
                let (t, _) = row_sums(&x, [c, r], [1, c as isize], 0, threads);
                assert_eq!(
                    bits(&t),
                    bits(&reference),
                    "transposed ({r}, {c}) {threads}"
                );
                // The same matrix stored column-major: rows are strided and interleaved.
                let mut xt = vec![0.0; r * c];
                for i in 0..r {
                    for j in 0..c {
                        xt[j * r + i] = x[i * c + j];
                    }
                }
                let (f, _) = row_sums(&xt, [r, c], [1, r as isize], 1, threads);
                assert_eq!(bits(&f), bits(&reference), "strided ({r}, {c}) {threads}");
            }
        }
    }

    #[test]
    fn whole_array_as_one_row() {
        // A (3, 4, 5) Fortran array reduced over all axes.
        let x = data(60);
        let mut out = [0.0f64];
        let rows = Rows::new(&[3, 4, 5], [&[1, 3, 12], &[0, 0, 0]], &[true; 3]);
        assert_eq!((rows.rows(), rows.row_len()), (1, 60));
        let op = RowSum {
            x: SendPtr::from_const(x.as_ptr()),
            out: SendPtr(out.as_mut_ptr()),
        };
        let part = unsafe { run(&rows, &op, None) };
        let exact: f64 = x.iter().sum();
        assert!((out[0] - exact).abs() <= 1e-12 * x.iter().map(|v| v.abs()).sum::<f64>());
        assert_eq!(part.sum, out[0]);
    }

    #[test]
    fn lane_sums_handle_ragged_tiles() {
        let x = data(37);
        let [s, c] = lane_sums(37, |i| [x[i], 1.0]);
        assert_eq!(c, 37.0);
        assert!(
            (s - x.iter().sum::<f64>()).abs() <= 1e-12 * x.iter().map(|v| v.abs()).sum::<f64>()
        );
        assert_eq!(lane_sums::<f32, 1>(0, |_| [1.0]), [0.0]);
    }
}
