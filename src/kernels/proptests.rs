//! Property tests of the engines every kernel relies on: the strided walker visits each
//! element exactly once however a range is cut, and the reductions give the same bits for
//! every chunking and thread count.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

use super::bce::{self, Inputs, Kind, Operands};
use super::isa::Arch;
use super::reduce::{reduce, reduce_from, Partial};
use super::rows::{run, run_from, In, Out, Row, RowOp, Rows, Tile, CHUNK};
use super::strided::{Dst, Layout, Src, TileBuf};

/// Pools of 1 to 4 threads, built once for all cases.
fn pool(threads: usize) -> &'static ThreadPool {
    static POOLS: OnceLock<Vec<ThreadPool>> = OnceLock::new();
    &POOLS.get_or_init(|| {
        (1..=4)
            .map(|n| ThreadPoolBuilder::new().num_threads(n).build().unwrap())
            .collect()
    })[threads - 1]
}

/// A shape of up to 4 dimensions and, for two operands, strides: operand 0 a permuted,
/// stepped, possibly reversed dense layout (any view NumPy can make), operand 1 the same or
/// broadcast (0) along some dimensions.
fn shape_and_strides() -> impl Strategy<Value = (Vec<usize>, [Vec<isize>; 2])> {
    prop::collection::vec(0usize..6, 0..=4).prop_flat_map(|shape| {
        let nd = shape.len();
        (
            Just(shape),
            Just((0..nd).collect::<Vec<usize>>()).prop_shuffle(),
            prop::collection::vec((1isize..3, any::<bool>(), any::<bool>()), nd),
        )
            .prop_map(|(shape, order, mods)| {
                // Dense strides in the order `order`, then stepped and signed per dimension.
                let mut strides0 = vec![0isize; shape.len()];
                let mut step = 1isize;
                for &d in order.iter().rev() {
                    strides0[d] = step;
                    step *= shape[d].max(1) as isize * 3;
                }
                let mut strides1 = strides0.clone();
                for (d, &(mul, neg, bcast)) in mods.iter().enumerate() {
                    strides0[d] *= if neg { -mul } else { mul };
                    if bcast {
                        strides1[d] = 0;
                    }
                }
                (shape, [strides0, strides1])
            })
    })
}

/// Every multi-index's pair of offsets, counted: what any walk must visit exactly once.
fn expected_offsets(shape: &[usize], strides: &[Vec<isize>; 2]) -> BTreeMap<(isize, isize), usize> {
    let len: usize = shape.iter().product();
    let mut seen = BTreeMap::new();
    let mut index = vec![0usize; shape.len()];
    for _ in 0..len {
        let off = |k: usize| -> isize {
            index
                .iter()
                .zip(&strides[k])
                .map(|(&i, &s)| i as isize * s)
                .sum()
        };
        *seen.entry((off(0), off(1))).or_insert(0) += 1;
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    seen
}

/// A sum whose bits depend on the order of the additions.
fn wild(i: usize) -> f64 {
    ((i as f64) * 0.7).sin() * 10f64.powi((i % 13) as i32 - 6)
}

/// Neumaier's compensated sum: within about one rounding of the exact sum.
fn compensated_sum(x: &[f64]) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for &v in x {
        let t = s + v;
        c += if s.abs() >= v.abs() {
            (s - t) + v
        } else {
            (v - t) + s
        };
        s = t;
    }
    s + c
}

fn wild_block(r: std::ops::Range<usize>) -> Partial {
    let mut p = Partial::EMPTY;
    for i in r {
        p.sum += wild(i);
        p.count += 1;
    }
    p
}

/// Sums each row of operand 0 (f64 elements) and writes the sum through operand 1.
struct RowSum {
    data: In<f64>,
    out: Out<f64>,
}

/// # Safety
/// As [`In::new`] and [`Out::new`] for the rows the op runs over (operands 0 and 1).
unsafe fn row_sum(data: *const f64, out: *mut f64) -> RowSum {
    // SAFETY: forwarded from the caller.
    unsafe {
        RowSum {
            data: In::new(data, 0),
            out: Out::new(out, 1),
        }
    }
}

impl RowOp<2> for RowSum {
    type State = f64;
    type Scratch = TileBuf<f64>;
    fn empty(&self) -> f64 {
        0.0
    }
    fn tile<A: Arch>(&self, buf: &mut TileBuf<f64>, tile: &Tile<2>, states: &mut [f64]) {
        let x = tile.read(&self.data, buf);
        for (state, row) in states.iter_mut().zip(x.chunks_exact(tile.len().max(1))) {
            *state = row.iter().fold(0.0, |s, &v| s + v);
        }
    }
    fn merge(&self, a: f64, b: f64) -> f64 {
        a + b
    }
    fn finish<A: Arch>(&self, row: &Row<2>, state: f64) -> Partial {
        row.write(&self.out, state);
        Partial {
            sum: state,
            count: 1,
            ..Partial::EMPTY
        }
    }
}

proptest! {
    // PROPTEST_CASES overrides the count (the valgrind run of CI uses a few).
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    #[test]
    fn runs_visit_each_element_once_for_any_cut(
        (shape, strides) in shape_and_strides(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let layout = Layout::new(&shape, [&strides[0], &strides[1]]);
        let len = layout.len();
        prop_assert_eq!(len, shape.iter().product::<usize>());
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
        bounds.extend([0, len]);
        bounds.sort_unstable();
        let mut seen = BTreeMap::new();
        let mut next_flat = 0;
        for w in bounds.windows(2) {
            layout.for_each_run(w[0]..w[1], |flat, n, off, st| {
                assert_eq!(flat, next_flat, "runs are consecutive in the flat index");
                next_flat += n;
                for i in 0..n as isize {
                    *seen.entry((off[0] + i * st[0], off[1] + i * st[1])).or_insert(0) += 1;
                }
            });
        }
        prop_assert_eq!(next_flat, len);
        prop_assert_eq!(seen, expected_offsets(&shape, &strides));
    }

    #[test]
    fn reduce_same_bits_for_any_block_split_and_threads(
        n in 0usize..20_000,
        block in 1usize..3000,
        threads in 1usize..=4,
        batches in 1usize..5,
    ) {
        let serial = reduce(n, block, None, wild_block);
        let parallel = reduce(n, block, Some(pool(threads)), wild_block);
        prop_assert_eq!(serial.sum.to_bits(), parallel.sum.to_bits());
        prop_assert_eq!(serial.count, n as u64);
        // Streaming whole blocks through reduce_from gives the same bits as one call.
        let blocks = n.div_ceil(block);
        let per = blocks.div_ceil(batches).max(1) * block;
        let mut acc = Partial::EMPTY;
        let mut start = 0;
        while start < n {
            let end = (start + per).min(n);
            acc = reduce_from(acc, end - start, block, Some(pool(threads)), |r| {
                wild_block(r.start + start..r.end + start)
            });
            start = end;
        }
        prop_assert_eq!(acc.sum.to_bits(), serial.sum.to_bits());
    }

    #[test]
    fn bce_same_bits_for_any_thread_count_and_layout(
        n in 1usize..100_000,
        threads in 2usize..=4,
        reversed in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let p: Vec<f32> = (0..n).map(|_| (next() * 0.98 + 0.01) as f32).collect();
        let y: Vec<f32> = (0..n).map(|_| next() as f32).collect();
        let one = 1f32;
        let (start, step) = if reversed { (n as isize - 1, -1) } else { (0, 1) };
        let ops = |out: *mut f32| Operands {
            // SAFETY (of the offsets): start + i * step stays in 0..n for i < n.
            inputs: Inputs {
                input: Src::native(p.as_ptr().wrapping_offset(start)),
                target: Src::native(y.as_ptr().wrapping_offset(start)),
                weight: Src::native(&one),
                pos_weight: Src::native(&one),
            },
            out: Dst::from(out),
            sample_weight: None,
            nan: crate::nan::NanPolicy::Propagate,
            layout: Layout::new(&[n], [&[step], &[step], &[0], &[0], &[1], &[0]]),
        };
        let mut out_serial = vec![0f32; n];
        let mut out_parallel = vec![0f32; n];
        // SAFETY: every operand addresses n valid elements; the outputs are distinct.
        let serial = unsafe {
            bce::binary_cross_entropy_from(Partial::EMPTY, &ops(out_serial.as_mut_ptr()), Kind::Probabilities, None)
        };
        // SAFETY: the same operands over n valid elements; `out_parallel` is its own buffer.
        let parallel = unsafe {
            bce::binary_cross_entropy_from(
                Partial::EMPTY,
                &ops(out_parallel.as_mut_ptr()),
                Kind::Probabilities,
                Some(pool(threads)),
            )
        };
        prop_assert_eq!(serial.sum.to_bits(), parallel.sum.to_bits());
        prop_assert_eq!(serial.count, n as u64);
        prop_assert!(out_serial.iter().zip(&out_parallel).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn rows_same_bits_for_any_thread_count(
        rows in 0usize..40,
        row_len in prop_oneof![0usize..50, 30_000usize..70_000],
        axis_first in any::<bool>(),
        threads in 1usize..=4,
    ) {
        let data: Vec<f64> = (0..rows * row_len).map(wild).collect();
        // (rows, row_len) C order; the reduced axis is 1, or it is axis 0 of the transpose.
        let (shape, strides, reduced): (Vec<usize>, Vec<isize>, Vec<bool>) = if axis_first {
            (vec![row_len, rows], vec![1, row_len as isize], vec![true, false])
        } else {
            (vec![rows, row_len], vec![row_len as isize, 1], vec![false, true])
        };
        let out_strides: Vec<isize> = reduced.iter().map(|&r| if r { 0 } else { 1 }).collect();
        let layout = Rows::new(&shape, [&strides, &out_strides], &reduced);
        let mut serial_out = vec![0f64; rows];
        let mut parallel_out = vec![0f64; rows];
        // SAFETY: the rows below are built from `data`'s and `out`'s shapes and strides.
        let op = |out: &mut Vec<f64>| unsafe { row_sum(data.as_ptr(), out.as_mut_ptr()) };
        // SAFETY: the offsets stay inside data and out; each row writes its own element.
        let serial = unsafe { run(&layout, &op(&mut serial_out), None) };
        // SAFETY: the same rows over `data`; `parallel_out` has one element per row.
        let parallel = unsafe { run(&layout, &op(&mut parallel_out), Some(pool(threads))) };
        prop_assert_eq!(serial.sum.to_bits(), parallel.sum.to_bits());
        prop_assert_eq!(serial.count, rows as u64);
        for r in 0..rows {
            prop_assert_eq!(serial_out[r].to_bits(), parallel_out[r].to_bits());
            // Any summation order is within (n - 1)·u·Σ|x| of the exact sum (u = ε/2); the
            // reference is compensated, so its own error is about u·|sum|.
            let row = &data[r * row_len..(r + 1) * row_len];
            let bound = row_len as f64 * f64::EPSILON * row.iter().map(|x| x.abs()).sum::<f64>();
            prop_assert!((serial_out[r] - compensated_sum(row)).abs() <= bound);
        }
    }
    #[test]
    fn rows_streamed_in_whole_blocks_same_bits(
        rows in 0usize..300,
        row_len in prop_oneof![0usize..50, 200usize..2000, 30_000usize..40_000],
        batches in prop::collection::vec(0usize..4, 0..5),
        threads in 1usize..=4,
    ) {
        let rows = if row_len > 1000 { rows % 40 } else { rows };
        let data: Vec<f64> = (0..rows * row_len).map(wild).collect();
        let mut out = vec![0f64; rows];
        // SAFETY: the rows from `r` on, built from `data`'s and `out`'s shapes and strides.
        let op_at = |r: usize, out: &mut Vec<f64>| unsafe {
            row_sum(data[r * row_len..].as_ptr(), out[r..].as_mut_ptr())
        };
        let layout = |n: usize| {
            Rows::new(&[n, row_len], [&[row_len as isize, 1], &[1, 0]], &[false, true])
        };
        // SAFETY: the offsets stay inside data and out; each row writes its own element.
        let whole = unsafe { run(&layout(rows), &op_at(0, &mut out), Some(pool(threads))) };
        // Batches of whole blocks of max(1, CHUNK / row_len) rows, the last taking the rest.
        let per_block = (CHUNK / row_len.max(1)).max(1);
        let mut state = Partial::EMPTY;
        let mut start = 0usize;
        for blocks in batches.iter().copied().chain([usize::MAX]) {
            let end = start.saturating_add(blocks.saturating_mul(per_block)).min(rows);
            // SAFETY: the layout of rows start..end stays inside `data` and `out` (the op reads
            // from row `start` on), and each row writes its own element.
            state = unsafe {
                run_from(state, &layout(end - start), &op_at(start, &mut out), Some(pool(threads)))
            };
            start = end;
        }
        prop_assert_eq!(state.sum.to_bits(), whole.sum.to_bits());
        prop_assert_eq!(state.count, rows as u64);
    }
}
