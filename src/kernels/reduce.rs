//! The deterministic reduction engine shared by every loss.
//!
//! Work is cut into blocks of a fixed number of elements ([`BLOCK`]), a constant that never
//! depends on the thread count. Each block is reduced on its own into a [`Partial`]; the
//! partials are then merged strictly in block order. Rayon only decides *which thread* reduces
//! a block, never *how* it is reduced or in which order results are combined, so the result has
//! the same bits for 1 thread or 64. The serial path runs the very same blocks in the very same
//! order.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use rayon::ThreadPool;

use super::cancel;

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
    /// The call was cancelled ([`super::super::cancel`]): the state is incomplete.
    pub const CANCELLED: u32 = 4;
    /// A sample weight (scikit-learn's `sample_weight`) outside its domain: negative (binary
    /// and softmax cross-entropy), or also NaN or infinite (log loss, as scikit-learn).
    pub const WEIGHT: u32 = 8;
    /// A NaN met under `nan_policy='raise'` (softmax cross-entropy; the caller locates it).
    /// Inside a softmax row's state: the row holds a NaN (see [`super::super::softmax`]).
    pub const NAN: u32 = 16;
}

/// The partial state of a reduction: what one block contributes.
///
/// One type serves the parallel kernels (a block's or a row's partial), the streaming
/// accumulators (the state they fold batches into) and the Dask layer (a chunk's state):
///
/// - `sum`: the loss sum (always accumulated in `f64`, also for `f32` input);
/// - `weight`: the sum of the weights that form a weighted mean's denominator, where a loss
///   has one (softmax cross-entropy: PyTorch's `Σ w[y]`; with sample weights, `Σ sw` for
///   every loss);
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

    /// `self`, flagged as the incomplete state of a cancelled call.
    #[must_use]
    pub fn cancelled(mut self) -> Partial {
        self.flags |= flags::CANCELLED;
        self
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
///
/// Cancellable ([`super::cancel`]): when the call is cancelled, the blocks not yet claimed are
/// skipped and the result is flagged [`flags::CANCELLED`].
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
    let mut acc = init;
    if for_each_ordered(
        0..blocks,
        pool,
        |b| f(range(b)),
        |_, part| acc = acc.merge(part),
    ) {
        acc
    } else {
        acc.cancelled()
    }
}

/// The parallel engine of the crate, under both the flat reductions ([`reduce_from`]) and the
/// row-wise ones ([`super::rows`]): hands `consume` the result of `f(i)` for every `i` of
/// `items`, strictly in index order, whoever computed it. Returns false if the call was
/// cancelled ([`super::cancel`]): the items from some point on were then not consumed.
///
/// On `pool` (when given and there is more than one item) the items are computed a window of
/// [`WINDOW`] at a time (see [`window`]) and consumed in order before the next window starts,
/// so the memory held stays `WINDOW` results however many items there are; the serial path
/// computes and consumes them one by one, polling for cancellation before each. The order in
/// which results are consumed is the same either way, so the bits are too.
pub fn for_each_ordered<R, F>(
    items: Range<usize>,
    pool: Option<&ThreadPool>,
    f: F,
    mut consume: impl FnMut(usize, R),
) -> bool
where
    R: Send + Sync,
    F: Fn(usize) -> R + Sync,
{
    match pool {
        Some(pool) if items.len() > 1 => {
            for start in items.clone().step_by(WINDOW) {
                let end = (start + WINDOW).min(items.end);
                match window(pool, start..end, &f) {
                    Some(results) => {
                        for (i, r) in (start..end).zip(results) {
                            consume(i, r);
                        }
                    }
                    None => return false,
                }
            }
        }
        _ => {
            for i in items {
                if cancel::poll() {
                    return false;
                }
                consume(i, f(i));
            }
        }
    }
    true
}

/// The results of `f(i)` for every `i` of `items`, in index order, computed on `pool`; `None`
/// if the call was cancelled meanwhile ([`super::cancel`]).
///
/// The items are claimed one by one, by the calling thread and by the pool's threads as they
/// wake, each result stored in its item's slot. The caller works too, so a call is never
/// slower than the serial path by more than the claiming: a pool thread that is slow to wake
/// (an idle core, a virtual CPU the host parked) just finds fewer items left. After each item
/// it computes, the calling thread polls for cancellation; once cancelled, no thread claims
/// another item, and every thread has finished its last one when this returns.
fn window<R, F>(pool: &ThreadPool, items: Range<usize>, f: F) -> Option<impl Iterator<Item = R>>
where
    R: Send + Sync,
    F: Fn(usize) -> R + Sync,
{
    claim(pool, items, f, None::<fn()>)
}

/// [`window`], with `side` run on the calling thread first, while the pool's threads start
/// on the items (the caller then claims items too): work that must stay on the caller, such
/// as folding the results of the previous window, overlaps with this window's items. With
/// a side task, every thread of the pool helps (the caller is busy with `side` meanwhile).
/// `side` runs even if the call is cancelled before any item is computed.
pub fn window_beside<R, F>(
    pool: &ThreadPool,
    items: Range<usize>,
    f: F,
    side: impl FnOnce(),
) -> Option<Results<R>>
where
    R: Send + Sync,
    F: Fn(usize) -> R + Sync,
{
    claim(pool, items, f, Some(side))
}

/// The claiming loop of [`window`] and [`window_beside`].
fn claim<R, F, S>(
    pool: &ThreadPool,
    items: Range<usize>,
    f: F,
    side: Option<S>,
) -> Option<Results<R>>
where
    R: Send + Sync,
    F: Fn(usize) -> R + Sync,
    S: FnOnce(),
{
    if cancel::cancelled() {
        if let Some(side) = side {
            side();
        }
        return None;
    }
    let (start, end) = (items.start, items.end);
    let threads = pool.current_num_threads();
    // Threads beside the caller: all of the pool's while the caller runs `side`, one fewer
    // otherwise (the caller claims items from the start); never more than there are items
    // for them (the caller takes at least one when it has no side task).
    let len = end.saturating_sub(start);
    let helpers = if side.is_some() {
        threads.min(len)
    } else {
        threads.saturating_sub(1).min(len.saturating_sub(1))
    };
    let slots: Vec<OnceLock<R>> = items.map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(start);
    let stop = AtomicBool::new(false);
    let work = |caller: bool| {
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= end {
                break;
            }
            // Each index is claimed exactly once, so each slot is set once.
            let _ = slots[i - start].set(f(i));
            if caller && cancel::poll() {
                stop.store(true, Ordering::Relaxed);
            }
        }
    };
    pool.in_place_scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|_| work(false));
        }
        if let Some(side) = side {
            side();
        }
        work(true);
    });
    // `in_place_scope` has waited for every helper: the stop flag is final.
    if stop.into_inner() {
        return None;
    }
    let take: fn(OnceLock<R>) -> R = |slot| {
        slot.into_inner()
            .expect("every item of the window was computed")
    };
    Some(slots.into_iter().map(take))
}

/// The results of a window, in index order.
pub type Results<R> = std::iter::Map<std::vec::IntoIter<OnceLock<R>>, fn(OnceLock<R>) -> R>;

/// Items computed in parallel before their results are consumed (see [`for_each_ordered`]):
/// enough to keep 1024 threads busy, few enough that the results held (56 KiB of block
/// partials or chunk states) never grow with the input (10^9 float32 values would otherwise
/// hold about 7 MB of partials, and a broadcast input can have billions of chunks).
pub const WINDOW: usize = 1024;

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
    fn cancelled_calls_stop_claiming_blocks_and_leave_the_pool_usable() {
        use std::sync::atomic::AtomicUsize;
        use std::time::Duration;
        for threads in [1, 3] {
            let p = pool(threads);
            let pool = (threads > 1).then_some(&p);
            let done = AtomicUsize::new(0);
            // 10^5 blocks of a millisecond each: minutes, unless cancelled.
            let slow = |r: Range<usize>| {
                std::thread::sleep(Duration::from_millis(1));
                done.fetch_add(1, Ordering::SeqCst);
                wild_sum(r)
            };
            let part = cancel::with_hook(Box::new(|| true), || {
                let part = reduce(100_000 * 8, 8, pool, slow);
                // Later runs of a cancelled call stop before their first block.
                let before = done.load(Ordering::SeqCst);
                let again = reduce(100_000 * 8, 8, pool, slow);
                assert_ne!(again.flags & flags::CANCELLED, 0);
                assert_eq!(done.load(Ordering::SeqCst), before);
                part
            });
            assert_ne!(part.flags & flags::CANCELLED, 0, "{threads} threads");
            // The hook is first called after `INTERVAL` (20 ms): a few dozen blocks per thread.
            let stopped = done.load(Ordering::SeqCst);
            assert!(stopped < 2000, "{stopped} blocks with {threads} threads");
            // No thread still works on the call once it has returned.
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(done.load(Ordering::SeqCst), stopped);
            // The pool (and the engine, without a hook) works on.
            let full = reduce(100_003, 64, pool, wild_sum);
            assert_eq!(full.count, 100_003);
            assert_eq!(full.flags, 0);
        }
    }

    #[test]
    fn a_hook_that_never_stops_changes_nothing() {
        let n = 2 * WINDOW * 8 + 77;
        let plain = reduce(n, 8, Some(&pool(3)), wild_sum);
        let polled = cancel::with_hook(Box::new(|| false), || {
            reduce(n, 8, Some(&pool(3)), |r| {
                // Slow enough that the hook is called a few times.
                std::thread::sleep(std::time::Duration::from_micros(20));
                wild_sum(r)
            })
        });
        assert_eq!(polled, plain);
    }

    #[test]
    fn empty_is_identity() {
        let p = reduce(0, 8, Some(&pool(2)), wild_sum);
        assert_eq!(p, Partial::EMPTY);
    }
}
