//! The deterministic reduction engine shared by every loss.
//!
//! Work is cut into blocks of a fixed number of elements ([`BLOCK`]), a constant that never
//! depends on the thread count. Each block is reduced on its own into a [`Partial`]; the
//! partials are then merged strictly in block order. Rayon only decides *which thread* reduces
//! a block, never *how* it is reduced or in which order results are combined, so the result has
//! the same bits for 1 thread or 64. The serial path runs the very same blocks in the very same
//! order.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use rayon::ThreadPool;

/// Elements per block of a flat reduction (binary cross-entropy and its gradient). Large enough
/// that the per-block overhead (one `Partial`, one rayon task) stays small, small enough that
/// 10^5 elements make a dozen blocks: with 2^15, 10^5 elements were three full blocks and two
/// threads got two and one (measured on 2 cores: 2^13 made such calls 1.3x-1.4x faster, and
/// 10^7 no slower). The row-wise engine has its own granularity ([`super::rows::CHUNK`]).
pub const BLOCK: usize = 1 << 13;

/// Bit flags a kernel raises when it meets a value outside its domain.
pub mod flags {
    /// A value of the first argument is outside its domain (e.g. a probability outside [0, 1]).
    pub const INPUT: u32 = 1;
    /// A value of the second argument (target / labels / `q`) is outside its domain.
    pub const TARGET: u32 = 2;
}

/// The partial state of a reduction: what one block contributes.
///
/// One type serves the parallel kernels (a block's or a row's partial), the streaming
/// accumulators (the state they fold batches into) and the Dask layer (a chunk's state):
///
/// - `sum`: the loss sum (always accumulated in `f64`, also for `f32` input);
/// - `weight`: the sum of the weights that form a weighted mean's denominator, where a loss
///   has one (softmax cross-entropy: PyTorch's `Σ w[y]`);
/// - `count`: the number of elements (or rows) seen;
/// - `mass`: the normalisation sums `[Σp, Σq]` of a divergence's distributions (see
///   [`super::divergence`]), zero for the other losses;
/// - `flags`: the domain errors met (see [`flags`]), and `first_bad` the smallest flat index
///   at which one was met (`u64::MAX` if none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partial {
    pub sum: f64,
    pub weight: f64,
    pub count: u64,
    pub mass: [f64; 2],
    pub flags: u32,
    pub first_bad: u64,
}

impl Default for Partial {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Partial {
    pub const EMPTY: Partial = Partial {
        sum: 0.0,
        weight: 0.0,
        count: 0,
        // -0.0, the exact identity of addition (x + -0.0 == x for every x, -0.0 included), so
        // that merging a state whose masses are EMPTY's folds away where they are constant.
        mass: [-0.0; 2],
        flags: 0,
        first_bad: u64::MAX,
    };

    /// Combines `self` (earlier elements) with `next` (later elements). Not commutative in
    /// floating point: always merge in element order.
    #[inline]
    #[must_use]
    pub fn merge(self, next: Partial) -> Partial {
        Partial {
            sum: self.sum + next.sum,
            weight: self.weight + next.weight,
            count: self.count + next.count,
            mass: [self.mass[0] + next.mass[0], self.mass[1] + next.mass[1]],
            flags: self.flags | next.flags,
            first_bad: self.first_bad.min(next.first_bad),
        }
    }

    /// Records a domain error of kind `flag` at flat index `index`.
    #[inline]
    pub fn flag(&mut self, flag: u32, index: u64) {
        self.flags |= flag;
        self.first_bad = self.first_bad.min(index);
    }
}

/// Reduces `n` items in blocks of `block` items: `f(range)` reduces one block, and the
/// partials are merged in block order. Runs on `pool` when one is given and there is more than
/// one block, on the calling thread otherwise; the result is bit-identical either way.
pub fn reduce<F>(n: usize, block: usize, pool: Option<&ThreadPool>, f: F) -> Partial
where
    F: Fn(Range<usize>) -> Partial + Sync,
{
    reduce_from(Partial::EMPTY, n, block, pool, f)
}

/// [`reduce`], continuing from `init`, the state of the elements that come before these:
/// the block partials are merged into `init` one by one, in block order. Streaming the
/// elements of one array through successive calls, each call covering a whole number of
/// blocks, therefore gives the very bits of one [`reduce`] over the whole array.
pub fn reduce_from<F>(
    init: Partial,
    n: usize,
    block: usize,
    pool: Option<&ThreadPool>,
    f: F,
) -> Partial
where
    F: Fn(Range<usize>) -> Partial + Sync,
{
    let blocks = n.div_ceil(block);
    let range = |b: usize| b * block..((b + 1) * block).min(n);
    match pool {
        Some(pool) if blocks > 1 => {
            // A window of blocks at a time: its blocks are claimed one by one, by the calling
            // thread and by the pool's threads as they wake, each partial stored in its
            // block's slot; then the slots are merged in order before the next window starts.
            // The merge order is the serial one, whoever reduced which block, and the memory
            // held stays `WINDOW` partials however long the input. The caller works too, so a
            // call is never slower than the serial path by more than the claiming: a pool
            // thread that is slow to wake (an idle core, a virtual CPU the host parked) just
            // finds fewer blocks left.
            let helpers = pool.current_num_threads().saturating_sub(1);
            let mut acc = init;
            for start in (0..blocks).step_by(WINDOW) {
                let end = (start + WINDOW).min(blocks);
                let slots: Vec<OnceLock<Partial>> = (start..end).map(|_| OnceLock::new()).collect();
                let next = AtomicUsize::new(start);
                let work = || loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= end {
                        break;
                    }
                    // Each block index is claimed exactly once, so each slot is set once.
                    let _ = slots[b - start].set(f(range(b)));
                };
                pool.in_place_scope(|scope| {
                    for _ in 0..helpers.min(end - start - 1) {
                        scope.spawn(|_| work());
                    }
                    work();
                });
                acc = slots
                    .iter()
                    .map(|slot| *slot.get().expect("every block of the window was reduced"))
                    .fold(acc, Partial::merge);
            }
            acc
        }
        _ => (0..blocks).fold(init, |acc, b| acc.merge(f(range(b)))),
    }
}

/// Blocks reduced in parallel before their partials are merged (see [`reduce_from`]): enough
/// to keep 1024 threads busy, few enough that the partials held (56 KiB) never grow with the
/// input (10^9 float32 values would otherwise hold about 7 MB of them).
const WINDOW: usize = 1024;

/// Runs `f` over `n` items in blocks of `block` items, for work without a reduced result
/// (e.g. one output value per row). Parallel on `pool` when given.
pub fn for_each_block<F>(n: usize, block: usize, pool: Option<&ThreadPool>, f: F)
where
    F: Fn(Range<usize>) + Sync,
{
    reduce(n, block, pool, |r| {
        f(r);
        Partial::EMPTY
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// A sum whose value depends on the association order: it catches any engine that lets
    /// the thread count change how partials are combined.
    fn wild_sum(r: Range<usize>) -> Partial {
        let mut p = Partial::EMPTY;
        for i in r {
            p.sum += ((i as f64) * 0.7).sin() * 10f64.powi((i % 17) as i32 - 8);
            p.count += 1;
        }
        p
    }

    #[test]
    fn same_bits_for_any_thread_count() {
        let n = 1_000_003;
        let serial = reduce(n, 4096, None, wild_sum);
        assert_eq!(serial.count, n as u64);
        for threads in [1, 2, 3, 7] {
            let p = reduce(n, 4096, Some(&pool(threads)), wild_sum);
            assert_eq!(p.sum.to_bits(), serial.sum.to_bits(), "{threads} threads");
            assert_eq!(p.count, serial.count);
        }
    }

    #[test]
    fn flags_and_first_bad_merge() {
        let p = reduce(100, 10, Some(&pool(3)), |r| {
            let mut p = Partial::EMPTY;
            for i in r {
                if i == 42 || i == 77 {
                    p.flag(flags::TARGET, i as u64);
                }
            }
            p
        });
        assert_eq!(p.flags, flags::TARGET);
        assert_eq!(p.first_bad, 42);
    }

    #[test]
    fn streaming_whole_blocks_gives_the_same_bits() {
        let n = 100_003;
        let block = 1000;
        let whole = reduce(n, block, Some(&pool(3)), wild_sum);
        // The same elements in three calls cut at block boundaries, each continuing from the
        // previous state (the closure shifts indices to the call's own range).
        let mut state = Partial::EMPTY;
        for (start, end) in [(0, 7000), (7000, 7000), (7000, 52_000), (52_000, n)] {
            state = reduce_from(state, end - start, block, Some(&pool(2)), |r| {
                wild_sum(r.start + start..r.end + start)
            });
        }
        assert_eq!(state.sum.to_bits(), whole.sum.to_bits());
        assert_eq!(state.count, whole.count);
        // Cut inside a block, the association changes: close, not necessarily equal.
        let a = reduce(500, block, None, wild_sum);
        let b = reduce_from(a, n - 500, block, None, |r| {
            wild_sum(r.start + 500..r.end + 500)
        });
        assert!((b.sum - whole.sum).abs() <= 1e-12 * whole.sum.abs().max(1.0));
    }

    #[test]
    fn windows_of_blocks_keep_the_serial_merge_order() {
        // More than two windows of tiny blocks, with a partial last window.
        let n = 2 * WINDOW * 8 + 8 * 37 + 5;
        let serial = reduce(n, 8, None, wild_sum);
        for threads in [2, 5] {
            let p = reduce(n, 8, Some(&pool(threads)), wild_sum);
            assert_eq!(p.sum.to_bits(), serial.sum.to_bits(), "{threads} threads");
            assert_eq!(p.count, n as u64);
        }
    }

    #[test]
    fn empty_is_identity() {
        let p = reduce(0, 8, Some(&pool(2)), wild_sum);
        assert_eq!(p, Partial::EMPTY);
    }
}
