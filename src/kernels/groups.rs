//! Per-group reductions: one loss sum, count (and weight sum) per group code, in one pass.
//!
//! Each element (or row) carries an integer code `g` in `[0, G)`; the result is, per group,
//! the sum of its losses, the number of its elements and, where a mean divides by a weight
//! sum (softmax cross-entropy with class weights), the sum of its weights.
//!
//! Determinism: each group's sum is the plain sum of its elements' losses *in element order*
//! (`((0 + l₀) + l₁) + …`), whichever thread computed which loss. The elements are cut into
//! the blocks of the ungrouped reduction; a window of blocks is reduced in parallel, each block
//! listing its elements' `(code, loss)` in element order; then the calling thread folds the
//! lists into the dense state ([`GroupSums`]), block after block, while the pool reduces the
//! next window (the caller joins in once its fold is done). So the bits are the same
//! for 1 thread or 64, and a stream of batches cut anywhere, folded one after the other into
//! the same state, gives the bits of one call. (Sparse per-block partials merged in block
//! order were measured first: with 10^6 groups a block touches as many groups as it has
//! elements, and their serial merge made the call 7x slower than `numpy.bincount`.)
//!
//! Memory: the dense state (`G` sums and counts, and weights where needed), and the lists
//! of two windows (the one folded, the one reduced) of [`WINDOW_PER_THREAD`] blocks per
//! thread, at most [`MAX_WINDOW`] each (12 or 20 bytes per element of those blocks): `O(G)`
//! plus a bounded window, however many elements there are.
//!
//! Codes: any integer type, read in place ([`Codes`]). A negative code, or one not below the
//! limit (`n_groups`, or [`MAX_GROUPS`] when the number of groups grows with the codes seen),
//! is reported through [`flags::GROUPS`] with its flat index; memory that cannot be had for
//! a state that grows with the codes is reported through [`flags::MEMORY`], never an abort.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use rayon::ThreadPool;

use super::bce::{self, InputTiles, Inputs, Kind, SampleTiles};
use super::float::{Float, Target};
use super::isa::{self, Arch};
use super::nan::NanPolicy;
use super::reduce::{for_each_ordered, window_beside, Partial, BLOCK};
use super::rows::{self, In, Row, RowOp, Rows, Tile};
use super::strided::{Layout, SendPtr, Src, TileBuf, TILE};

/// Flags of [`Partial::flags`] raised by the per-group reductions, beside
/// [`super::reduce::flags`].
pub mod flags {
    /// A group code outside `[0, limit)`.
    pub const GROUPS: u32 = 1 << 8;
    /// The state (or a slot map) could not grow to the codes seen: out of memory.
    pub const MEMORY: u32 = 1 << 9;
}

/// Codes must be below this (the number of groups fits a `u32`, whose largest value marks a
/// free slot).
pub const MAX_GROUPS: u64 = u32::MAX as u64;

/// Blocks reduced ahead per thread before their lists are folded: enough to keep the
/// threads busy between folds, few enough that the lists held stay small (12 or 20 bytes
/// per element of a block: about 0.8 MiB per thread) and are still in cache when the caller
/// folds them. Measured on 2 threads (10^7 float32, interleaved medians, shared host): 8
/// took 0.6-0.8x the time of 64 with G = 10^3 and 10^6, and 2 was slower than 8.
pub const WINDOW_PER_THREAD: usize = 8;

/// At most this many blocks per window, whatever the thread count (at most about 20 MiB of
/// lists).
pub const MAX_WINDOW: usize = 128;

/// An integer element type read as a group code.
pub trait Code: Copy + Send + Sync + 'static {
    /// The code as an index; a negative code maps to `u64::MAX` (out of range for any limit).
    fn index(self) -> u64;
}

macro_rules! code_signed {
    ($($t:ty),*) => {$(
        impl Code for $t {
            #[inline(always)]
            fn index(self) -> u64 {
                if self < 0 { u64::MAX } else { self as u64 }
            }
        }
    )*};
}
macro_rules! code_unsigned {
    ($($t:ty),*) => {$(
        impl Code for $t {
            #[inline(always)]
            fn index(self) -> u64 {
                self as u64
            }
        }
    )*};
}
code_signed!(i8, i16, i32, i64);
code_unsigned!(u8, u16, u32, u64);

/// An array of codes of any integer type, where it lies: the kernels read codes through this
/// one type (a `match` per tile or row), so that they are compiled once, not once per code
/// type (eight types times every loss's own variants).
#[derive(Clone, Copy, Debug)]
pub enum Codes {
    I8(SendPtr<i8>),
    I16(SendPtr<i16>),
    I32(SendPtr<i32>),
    I64(SendPtr<i64>),
    U8(SendPtr<u8>),
    U16(SendPtr<u16>),
    U32(SendPtr<u32>),
    U64(SendPtr<u64>),
}

/// The integer types [`Codes`] holds.
pub trait CodeType: Code {
    fn codes(ptr: *const Self) -> Codes;
}

macro_rules! code_type {
    ($($t:ty => $v:ident),*) => {$(
        impl CodeType for $t {
            fn codes(ptr: *const $t) -> Codes {
                Codes::$v(SendPtr::from_const(ptr))
            }
        }
    )*};
}
code_type!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16, u32 => U32,
           u64 => U64);

impl Codes {
    /// The codes at `ptr` (of any [`CodeType`]).
    pub fn new<C: CodeType>(ptr: *const C) -> Self {
        C::codes(ptr)
    }

    /// The `out.len()` codes from element `offset` with step `stride`, as indices
    /// ([`Code::index`]).
    ///
    /// # Safety
    /// Those elements must be valid, aligned codes, alive and unwritten meanwhile.
    #[inline(always)]
    pub unsafe fn gather(self, offset: isize, stride: isize, out: &mut [u64]) {
        macro_rules! go {
            ($p:expr) => {{
                // SAFETY: the caller's contract, for each of the `out.len()` elements.
                let base = unsafe { $p.0.offset(offset) };
                for (k, o) in out.iter_mut().enumerate() {
                    // SAFETY: as above.
                    *o = unsafe { *base.offset(k as isize * stride) }.index();
                }
            }};
        }
        match self {
            Codes::I8(p) => go!(p),
            Codes::I16(p) => go!(p),
            Codes::I32(p) => go!(p),
            Codes::I64(p) => go!(p),
            Codes::U8(p) => go!(p),
            Codes::U16(p) => go!(p),
            Codes::U32(p) => go!(p),
            Codes::U64(p) => go!(p),
        }
    }
}

/// Where a row-wise loss finds each row's code: an operand of its rows holding one code per
/// row ([`RowCodes::operand`]), or the code at `ptr[r * stride]` for the engine's row `r`
/// ([`RowCodes::by_row`]).
#[derive(Clone, Copy, Debug)]
pub enum RowCodes {
    I8(In<i8>),
    I16(In<i16>),
    I32(In<i32>),
    I64(In<i64>),
    U8(In<u8>),
    U16(In<u16>),
    U32(In<u32>),
    U64(In<u64>),
    ByRow(Codes, isize),
}

impl RowCodes {
    /// The codes as operand `k` of the rows (one value per row, stride 0 along it).
    ///
    /// # Safety
    /// [`In::new`]'s contract, for the codes' own type.
    pub unsafe fn operand(codes: Codes, k: usize) -> Self {
        // SAFETY: the caller's contract.
        unsafe {
            match codes {
                Codes::I8(p) => RowCodes::I8(In::new(p.0.cast_const(), k)),
                Codes::I16(p) => RowCodes::I16(In::new(p.0.cast_const(), k)),
                Codes::I32(p) => RowCodes::I32(In::new(p.0.cast_const(), k)),
                Codes::I64(p) => RowCodes::I64(In::new(p.0.cast_const(), k)),
                Codes::U8(p) => RowCodes::U8(In::new(p.0.cast_const(), k)),
                Codes::U16(p) => RowCodes::U16(In::new(p.0.cast_const(), k)),
                Codes::U32(p) => RowCodes::U32(In::new(p.0.cast_const(), k)),
                Codes::U64(p) => RowCodes::U64(In::new(p.0.cast_const(), k)),
            }
        }
    }

    /// The code of the engine's row `r` at element `r * stride` of `codes`: for rows whose
    /// engine order is their logical order (one outer dimension, as the rows of a 2-D array
    /// by its first axis).
    ///
    /// # Safety
    /// Element `r * stride` of `codes` must be a valid, aligned code, alive and unwritten
    /// while the rows are reduced, for every engine row index `r` of the rows it is used with.
    pub unsafe fn by_row(codes: Codes, stride: isize) -> Self {
        RowCodes::ByRow(codes, stride)
    }

    /// The code of `row`, as an index ([`Code::index`]).
    #[inline(always)]
    fn code<const K: usize>(&self, row: &Row<K>) -> u64 {
        match self {
            RowCodes::I8(x) => row.value(x).index(),
            RowCodes::I16(x) => row.value(x).index(),
            RowCodes::I32(x) => row.value(x).index(),
            RowCodes::I64(x) => row.value(x).index(),
            RowCodes::U8(x) => row.value(x).index(),
            RowCodes::U16(x) => row.value(x).index(),
            RowCodes::U32(x) => row.value(x).index(),
            RowCodes::U64(x) => row.value(x).index(),
            RowCodes::ByRow(codes, stride) => {
                let mut one = [0u64];
                // SAFETY: the contract of `RowCodes::by_row`.
                unsafe { codes.gather(row.index() as isize * stride, 1, &mut one) };
                one[0]
            }
        }
    }
}

/// The dense per-group state: for group `g`, `sum[g]` (the loss sum, in `f64`), `count[g]`
/// (elements or rows counted) and, when `weighted`, `weight[g]` (the weight sum a weighted mean
/// divides by; empty otherwise).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupSums {
    pub sum: Vec<f64>,
    pub count: Vec<u64>,
    pub weight: Vec<f64>,
    pub weighted: bool,
}

impl GroupSums {
    /// `len` empty groups; `None` if that memory cannot be had.
    pub fn new(len: usize, weighted: bool) -> Option<Self> {
        let mut s = GroupSums {
            weighted,
            ..GroupSums::default()
        };
        s.grow(len).then_some(s)
    }

    /// Makes the state weighted (keeping `weight[g]`, the weight sum a mean divides by, per
    /// group): the elements folded so far weigh 1 each, so each group's weight starts at its
    /// count. For losses whose mean divides by the count unless sample weights are given.
    pub fn set_weighted(&mut self) {
        if !self.weighted {
            self.weight = self.count.iter().map(|&c| c as f64).collect();
            self.weighted = true;
        }
    }

    /// The number of groups.
    pub fn len(&self) -> usize {
        self.sum.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sum.is_empty()
    }

    /// Grows to at least `len` groups (new ones empty); false if out of memory.
    fn grow(&mut self, len: usize) -> bool {
        let more = len.saturating_sub(self.len());
        if more == 0 {
            return true;
        }
        let ok = self.sum.try_reserve(more).is_ok()
            && self.count.try_reserve(more).is_ok()
            && (!self.weighted || self.weight.try_reserve(more).is_ok());
        if ok {
            self.sum.resize(len, 0.0);
            self.count.resize(len, 0);
            if self.weighted {
                self.weight.resize(len, 0.0);
            }
        }
        ok
    }

    /// Adds `next` (the state of later elements) group by group, growing to its length;
    /// false (and unchanged) if out of memory.
    pub fn merge(&mut self, next: &GroupSums) -> bool {
        if !self.grow(next.len()) {
            return false;
        }
        for (a, b) in self.sum.iter_mut().zip(&next.sum) {
            *a += b;
        }
        for (a, b) in self.count.iter_mut().zip(&next.count) {
            *a += b;
        }
        if self.weighted && next.weighted {
            for (a, b) in self.weight.iter_mut().zip(&next.weight) {
                *a += b;
            }
        }
        true
    }
}

/// Where a block puts each element's `(code, loss, weight)`, in element order (weights only
/// when the state is weighted), to be folded into the state by [`GroupSums::fold`].
pub struct Sink {
    codes: Vec<u32>,
    losses: Vec<f64>,
    weights: Vec<f64>,
    weighted: bool,
    /// One past the largest code seen.
    top: usize,
    limit: u64,
    flags: u32,
    first_bad: u64,
}

impl Sink {
    fn new(weighted: bool, limit: u64, capacity: usize) -> Self {
        Sink {
            codes: Vec::with_capacity(capacity),
            losses: Vec::with_capacity(capacity),
            weights: Vec::with_capacity(if weighted { capacity } else { 0 }),
            weighted,
            top: 0,
            limit,
            flags: 0,
            first_bad: u64::MAX,
        }
    }

    /// Adds the loss `loss` (and weight `weight`) of the element at flat index `flat`, of
    /// group `code`, to its group; flags a code out of range instead.
    #[inline(always)]
    pub fn add(&mut self, flat: usize, code: u64, loss: f64, weight: f64) {
        if code >= self.limit {
            self.flag(flags::GROUPS, flat);
            return;
        }
        self.top = self.top.max(code as usize + 1);
        self.codes.push(code as u32);
        self.losses.push(loss);
        if self.weighted {
            self.weights.push(weight);
        }
    }

    /// Adds the losses of a tile of elements from flat index `flat` on, whose codes are the
    /// `losses.len()` elements of `src` from element `at` with step `st` (no weights): as
    /// [`Sink::add`] for each, with the codes read, narrowed and range-checked in one loop
    /// compiled for the instruction set `isa` ([`AddTile`]; a tile with a code out of range
    /// is redone element by element, to flag the first).
    ///
    /// # Safety
    /// [`Codes::gather`]'s contract for the `losses.len()` codes.
    #[inline(always)]
    pub unsafe fn add_tile<T: Float>(
        &mut self,
        isa: isa::Isa,
        flat: usize,
        src: Codes,
        at: isize,
        st: isize,
        losses: &[T],
    ) {
        let n = losses.len();
        self.codes.reserve(n);
        self.losses.reserve(n);
        let tile = AddTile {
            sink: self,
            src,
            at,
            st,
            losses,
        };
        if !tile.sink.weighted && isa::dispatch_on(isa, tile) {
            return;
        }
        let mut codes = vec![0u64; n];
        // SAFETY: the caller's contract.
        unsafe { src.gather(at, st, &mut codes) };
        for (k, (&code, &loss)) in codes.iter().zip(losses).enumerate() {
            self.add(flat + k, code, loss.to_f64(), 0.0);
        }
    }

    /// [`Sink::add_tile`] with each element's weight (its sample weight): [`Sink::add`] for
    /// each.
    #[inline(always)]
    pub fn add_tile_weighted<T: Float>(
        &mut self,
        flat: usize,
        codes: &[u64],
        losses: &[T],
        weights: &[T],
    ) {
        let all = codes.iter().zip(losses).zip(weights).enumerate();
        for (k, ((&code, &loss), &w)) in all {
            self.add(flat + k, code, loss.to_f64(), w.to_f64());
        }
    }

    /// Checks the code of an element that adds nothing to its group (a row that is ignored,
    /// or left out for a NaN): it must still be in range, and its group exists (the number of
    /// groups follows the codes, not the values).
    #[inline(always)]
    pub fn check(&mut self, flat: usize, code: u64) {
        if code >= self.limit {
            self.flag(flags::GROUPS, flat);
        } else {
            self.top = self.top.max(code as usize + 1);
        }
    }

    /// The number of elements added so far.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Takes back the elements added since `from` (one tile's, the `k`-th of them being its
    /// element `k`) for which `drop(k)` is true, keeping the others in order; their codes stay
    /// checked and their groups exist. `drop` is only asked of elements whose loss is NaN
    /// (an element left out for a NaN operand has a NaN loss), so a tile pays a NaN test per
    /// element and moves only the elements after the first one dropped. Does nothing once a
    /// code was flagged (the block is an error, and a flagged tile did not add each of its
    /// elements).
    pub fn drop_since(&mut self, from: usize, drop: impl Fn(usize) -> bool) {
        if self.flags != 0 {
            return;
        }
        let len = self.codes.len();
        let dropped = |losses: &[f64], k: usize| losses[k].is_nan() && drop(k - from);
        let Some(first) = (from..len).find(|&k| dropped(&self.losses, k)) else {
            return;
        };
        let mut kept = first;
        for k in first + 1..len {
            if dropped(&self.losses, k) {
                continue;
            }
            self.codes[kept] = self.codes[k];
            self.losses[kept] = self.losses[k];
            if self.weighted {
                self.weights[kept] = self.weights[k];
            }
            kept += 1;
        }
        self.codes.truncate(kept);
        self.losses.truncate(kept);
        if self.weighted {
            self.weights.truncate(kept);
        }
    }

    fn flag(&mut self, flag: u32, flat: usize) {
        self.flags |= flag;
        self.first_bad = self.first_bad.min(flat as u64);
    }
}

/// One tile of an unweighted [`Sink`]: its codes (of any integer type) read, checked
/// against the sink's limit and appended as `u32`, and its losses appended as `f64`, in loops
/// compiled for one instruction set ([`isa::Kernel`]), where they vectorise (the `u64`
/// compare and the narrowing are many instructions each in the baseline's SSE2). Returns
/// false, and appends nothing, when a code is out of range.
struct AddTile<'a, T> {
    sink: &'a mut Sink,
    src: Codes,
    at: isize,
    st: isize,
    losses: &'a [T],
}

impl<T: Float> isa::Kernel for AddTile<'_, T> {
    type Output = bool;

    #[inline(always)]
    fn run<A: Arch>(self) -> bool {
        let AddTile {
            sink,
            src,
            at,
            st,
            losses,
        } = self;
        let n = losses.len();
        // SAFETY (each arm): the contract of `Sink::add_tile`, whose caller guarantees the
        // `n` codes from element `at` with step `st` are valid and unwritten meanwhile.
        let max = unsafe {
            match src {
                Codes::I8(p) => push_codes(&mut sink.codes, p.0, at, st, n),
                Codes::I16(p) => push_codes(&mut sink.codes, p.0, at, st, n),
                Codes::I32(p) => push_codes(&mut sink.codes, p.0, at, st, n),
                Codes::I64(p) => push_codes(&mut sink.codes, p.0, at, st, n),
                Codes::U8(p) => push_codes(&mut sink.codes, p.0, at, st, n),
                Codes::U16(p) => push_codes(&mut sink.codes, p.0, at, st, n),
                Codes::U32(p) => push_codes(&mut sink.codes, p.0, at, st, n),
                Codes::U64(p) => push_codes(&mut sink.codes, p.0, at, st, n),
            }
        };
        if max >= sink.limit {
            return false;
        }
        let len = sink.codes.len();
        // SAFETY: `push_codes` initialised the `n` slots past the length (reserved by
        // `Sink::add_tile`).
        unsafe { sink.codes.set_len(len + n) };
        sink.top = sink.top.max(max as usize + 1);
        let len = sink.losses.len();
        for (d, &l) in sink.losses.spare_capacity_mut()[..n].iter_mut().zip(losses) {
            d.write(l.to_f64());
        }
        // SAFETY: the loop above initialised the `n` slots past the length (reserved by
        // `Sink::add_tile`).
        unsafe { sink.losses.set_len(len + n) };
        true
    }
}

/// Writes the `n` codes from `ptr.offset(at)` with step `st` into the first `n` spare slots
/// of `out` (as `u32`: truncated, which matters only when the largest is out of range) and
/// returns the largest as an index ([`Code::index`]: a negative code is `u64::MAX`). The
/// length of `out` is not changed.
///
/// # Safety
/// `out` must have `n` spare slots; the `n` codes must be valid, aligned, alive and unwritten
/// meanwhile.
#[inline(always)]
unsafe fn push_codes<C: Code>(
    out: &mut Vec<u32>,
    ptr: *mut C,
    at: isize,
    st: isize,
    n: usize,
) -> u64 {
    let dst = &mut out.spare_capacity_mut()[..n];
    let mut max = 0u64;
    // SAFETY: the caller's contract: the codes lie at `at + k * st` for k < n.
    let base = unsafe { ptr.cast_const().offset(at) };
    if st == 1 {
        // SAFETY: as above, contiguous.
        let codes = unsafe { std::slice::from_raw_parts(base, n) };
        for (d, &c) in dst.iter_mut().zip(codes) {
            let i = c.index();
            max = max.max(i);
            d.write(i as u32);
        }
    } else {
        for (k, d) in dst.iter_mut().enumerate() {
            // SAFETY: as above.
            let i = unsafe { *base.offset(k as isize * st) }.index();
            max = max.max(i);
            d.write(i as u32);
        }
    }
    max
}

impl GroupSums {
    /// Folds each sink's elements into their groups, sink after sink (so each group in
    /// element order). Every code must be below the state's length (indexing panics
    /// otherwise: the caller grows the state to the codes seen first).
    fn fold(&mut self, sinks: &[Sink]) {
        for sink in sinks {
            for (&g, &loss) in sink.codes.iter().zip(&sink.losses) {
                self.sum[g as usize] += loss;
                self.count[g as usize] += 1;
            }
            if self.weighted {
                for (&g, &w) in sink.codes.iter().zip(&sink.weights) {
                    self.weight[g as usize] += w;
                }
            }
        }
    }
}

/// Reduces `n` items in blocks of `block` items into `state` (continuing it: its earlier
/// elements come before these) and returns the total [`Partial`], continuing from `init`:
/// `f(range, sink)` reduces one block, putting each item's loss into `sink` and returning the
/// block's ungrouped partial (its sum, count and flags, as the ungrouped reduction computes
/// them, so that the total has the bits of an ungrouped call). Codes must be below `limit`.
///
/// Each group's sum is the sum of its items' losses in item order, whichever thread computed
/// which: a window of blocks is reduced in parallel (each block listing its items' codes and
/// losses in item order), then the calling thread folds the lists, block after block, while
/// the pool reduces the next window.
///
/// On a flagged block (domain error, bad code, out of memory) the reduction stops before the
/// window that holds it is folded: the result is then an error.
pub fn reduce_groups<F>(
    state: &mut GroupSums,
    init: Partial,
    n: usize,
    block: usize,
    limit: u64,
    pool: Option<&ThreadPool>,
    f: F,
) -> Partial
where
    F: Fn(Range<usize>, &mut Sink) -> Partial + Sync,
{
    let blocks = n.div_ceil(block);
    let threads = pool.map_or(1, ThreadPool::current_num_threads).max(1);
    // The fold runs on the calling thread. Folding two partitions of the groups on two
    // threads (each block scattering its elements by partition) measured slower on 2 cores
    // (10^7 float32, G = 10^3: 69 ms against 25 ms on one thread; G = 10^6: 146 against
    // 108 ms), so the groups are not partitioned.
    let weighted = state.weighted;
    let run = |b: usize| {
        let range = b * block..((b + 1) * block).min(n);
        let mut sink = Sink::new(weighted, limit, range.len());
        let mut part = f(range, &mut sink);
        if sink.flags != 0 {
            part.flag(sink.flags, sink.first_bad);
        }
        (part, sink)
    };
    let mut acc = init;
    let Some(pool) = pool.filter(|_| threads > 1) else {
        // One thread: each block is folded as soon as it is reduced.
        let mut ok = true;
        let done = for_each_ordered(0..blocks, None, run, |_, (part, sink)| {
            if !ok {
                return;
            }
            acc = acc.merge(part);
            if acc.flags != 0 {
                ok = false;
            } else if !state.grow(sink.top) {
                acc.flag(flags::MEMORY, 0);
                ok = false;
            } else {
                state.fold(std::slice::from_ref(&sink));
            }
        });
        return if done { acc } else { acc.cancelled() };
    };
    // Several threads: window k+1 is reduced by the pool while the calling thread folds
    // window k (`window_beside`), then joins in; the fold order is the same.
    let window = (WINDOW_PER_THREAD * threads).min(MAX_WINDOW);
    let mut pending: Vec<Sink> = Vec::with_capacity(window);
    let mut next: Vec<Sink> = Vec::with_capacity(window);
    let mut pending_top = 0;
    for start in (0..blocks).step_by(window) {
        let end = (start + window).min(blocks);
        let mut grown = true;
        let fold = || {
            grown = state.grow(pending_top);
            if grown {
                state.fold(&pending);
            }
        };
        let results = window_beside(pool, start..end, run, fold);
        if !grown {
            acc.flag(flags::MEMORY, 0);
            return acc;
        }
        let Some(results) = results else {
            return acc.cancelled();
        };
        next.clear();
        pending_top = 0;
        for (part, sink) in results {
            acc = acc.merge(part);
            pending_top = pending_top.max(sink.top);
            next.push(sink);
        }
        if acc.flags != 0 {
            return acc;
        }
        std::mem::swap(&mut pending, &mut next);
    }
    if !state.grow(pending_top) {
        acc.flag(flags::MEMORY, 0);
        return acc;
    }
    state.fold(&pending);
    acc
}

/// Binary cross-entropy per group: each element's loss (exactly the value the ungrouped call
/// sums, [`bce::tile_losses`]) is added to the group of its code, operand 4 of `layout`
/// (operands 0 to 3 are those of [`bce::Operands`]; operand 5 the sample weights when
/// `sample_weight` is given, each element's then added to its group's weight: `state` must be
/// weighted). Under [`NanPolicy::Omit`] an element with a NaN operand is left out of its
/// group (its sum, count and weight), as the ungrouped call leaves it out of its own; its code
/// is still checked. (Under [`NanPolicy::Raise`] this computes what `Propagate` does: the
/// caller looks for a NaN when the total is NaN.) Continues `state` and `init` (see
/// [`reduce_groups`]); the returned total has the bits of the ungrouped call's.
///
/// # Safety
/// Every pointer, stepped by its strides over `layout`, must address valid, aligned elements
/// that stay alive and unmodified for the whole call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn binary_cross_entropy<T: Float, Y: Target>(
    state: &mut GroupSums,
    init: Partial,
    ins: &Inputs<T, Y>,
    sample_weight: Option<Src<T>>,
    codes: Codes,
    layout: &Layout<6>,
    kind: Kind,
    nan: NanPolicy,
    limit: u64,
    pool: Option<&ThreadPool>,
) -> Partial {
    // One instruction set for the whole call, as in the ungrouped reduction.
    let isa = isa::active();
    reduce_groups(
        state,
        init,
        layout.len(),
        BLOCK,
        limit,
        pool,
        |range, sink| {
            let mut part = Partial::EMPTY;
            let mut tiles = InputTiles::<T, Y>::default();
            let mut samples = SampleTiles::<T>::default();
            let mut buf = TileBuf::<T>::default();
            let mut groups = [0u64; TILE];
            layout.for_each_tile(range, |flat, n, at, st| {
                let losses = buf.scratch(n);
                let samples = sample_weight.map(|src| (src, &mut samples));
                // SAFETY: the caller guarantees every element of the layout is valid; `at`
                // and `st` stay inside it for the n elements of this tile.
                let tile = unsafe {
                    bce::tile_losses(
                        ins, &mut tiles, samples, kind, nan, isa, flat, &at, &st, losses, &mut part,
                    )
                };
                let from = sink.len();
                match tile.sample_weight {
                    Some(sw) => {
                        // SAFETY: as above, for operand 4 (the codes).
                        unsafe { codes.gather(at[4], st[4], &mut groups[..n]) };
                        sink.add_tile_weighted(flat, &groups[..n], losses, sw);
                    }
                    // SAFETY: as above, for operand 4 (the codes).
                    None => unsafe { sink.add_tile(isa, flat, codes, at[4], st[4], losses) },
                }
                // `omit`: the elements the tile kernel left out leave their groups too (their
                // codes were checked). Only tiles that hold one pay for this.
                if let Some(omitted) = tile.omitted {
                    sink.drop_since(from, |k| omitted.is_omitted(k));
                }
            });
            part
        },
    )
}

/// Where a finished row's result goes: a block's [`Sink`], or the dense state of rows longer
/// than one chunk ([`Dense`]).
trait RowSink {
    /// Takes the result `part` of the row at flat index `flat`, of group `code`.
    fn row(&mut self, flat: usize, code: u64, part: &Partial);
}

impl RowSink for Sink {
    /// The row's loss, its weight and a count of 1 when the row counts (`count > 0`), only a
    /// check of its code otherwise (a row that is ignored).
    #[inline(always)]
    fn row(&mut self, flat: usize, code: u64, part: &Partial) {
        if part.count > 0 {
            self.add(flat, code, part.sum, part.weight);
        } else {
            self.check(flat, code);
        }
    }
}

/// A row op that runs `op` and hands each finished row's result, with its group code, to
/// `sink` ([`RowSink`]).
struct ToGroups<'s, 'a, O, S> {
    op: &'a O,
    codes: RowCodes,
    sink: Mutex<&'s mut S>,
}

impl<const K: usize, O: RowOp<K>, S: RowSink + Send> RowOp<K> for ToGroups<'_, '_, O, S> {
    type State = O::State;
    type Scratch = O::Scratch;

    fn empty(&self) -> O::State {
        self.op.empty()
    }

    #[inline(always)]
    fn tile<A: Arch>(&self, scratch: &mut O::Scratch, tile: &Tile<K>, states: &mut [O::State]) {
        self.op.tile::<A>(scratch, tile, states);
    }

    #[inline(always)]
    fn merge(&self, a: O::State, b: O::State) -> O::State {
        self.op.merge(a, b)
    }

    #[inline(always)]
    fn finish<A: Arch>(&self, row: &Row<K>, state: O::State) -> Partial {
        let part = self.op.finish::<A>(row, state);
        let code = self.codes.code(row);
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        sink.row(row.index(), code, &part);
        part
    }
}

/// The per-group state of rows longer than one chunk, where the engine finishes rows one by
/// one in row order on the calling thread: each row is added to its group directly (its
/// element-order fold, as [`reduce_groups`] computes it), `errors` collecting the flags.
struct Dense<'a> {
    state: &'a mut GroupSums,
    limit: u64,
    errors: Partial,
}

impl RowSink for Dense<'_> {
    fn row(&mut self, flat: usize, code: u64, part: &Partial) {
        if code >= self.limit {
            self.errors.flag(flags::GROUPS, flat as u64);
            return;
        }
        if self.errors.flags != 0 {
            return;
        }
        // A row that adds nothing (ignored, or left out for a NaN) still makes its group
        // exist, as [`Sink::check`] does.
        let g = code as usize;
        if !self.state.grow(g + 1) {
            self.errors.flag(flags::MEMORY, flat as u64);
            return;
        }
        if part.count == 0 {
            return;
        }
        self.state.sum[g] += part.sum;
        self.state.count[g] += 1;
        if self.state.weighted {
            self.state.weight[g] += part.weight;
        }
    }
}

/// Any row-wise loss per group: `op` reduces the rows of `rows` as the ungrouped call does,
/// and each finished row's result (its loss, its weight, counted when `count > 0`) is added to
/// the group of its code ([`RowCodes`]), each
/// group summed in row order ([`reduce_groups`]). The rows are reduced in the blocks of
/// [`rows::run_from`] (see [`Rows::rows_per_block`]), so the returned total has the bits of the
/// ungrouped call's.
///
/// # Safety
/// As [`rows::run`]; `codes` as [`RowCodes`]'s constructors require, for `rows`.
pub unsafe fn rows<const K: usize, O: RowOp<K>>(
    state: &mut GroupSums,
    init: Partial,
    rows: &Rows<K>,
    op: &O,
    codes: RowCodes,
    limit: u64,
    pool: Option<&ThreadPool>,
) -> Partial {
    if rows.one_chunk_per_row() {
        let isa = isa::active();
        let per_block = rows.rows_per_block();
        return reduce_groups(
            state,
            init,
            rows.rows(),
            per_block,
            limit,
            pool,
            |range, sink| {
                let op = ToGroups {
                    op,
                    codes,
                    sink: Mutex::new(sink),
                };
                // SAFETY: forwarded from the caller (`ToGroups` reads what `op` reads, and
                // `codes`).
                unsafe { rows::reduce_block(rows, &op, range, isa) }
            },
        );
    }
    let mut dense = Dense {
        state,
        limit,
        errors: Partial::EMPTY,
    };
    let op = ToGroups {
        op,
        codes,
        sink: Mutex::new(&mut dense),
    };
    // SAFETY: forwarded from the caller.
    let mut part = unsafe { rows::run_from(init, rows, &op, pool) };
    if dense.errors.flags != 0 {
        part.flag(dense.errors.flags, dense.errors.first_bad);
    }
    part
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

    /// Items `i` of group `codes[i]` with an order-sensitive loss.
    fn run(
        codes: &[i64],
        state: &mut GroupSums,
        init: Partial,
        offset: usize,
        limit: u64,
        pool: Option<&ThreadPool>,
    ) -> Partial {
        let loss = |i: usize| ((i as f64) * 0.7).sin() * 10f64.powi((i % 17) as i32 - 8);
        reduce_groups(state, init, codes.len(), 64, limit, pool, |r, sink| {
            let mut part = Partial::EMPTY;
            for i in r {
                part.sum += loss(i + offset);
                part.count += 1;
                sink.add(i, codes[i].index(), loss(i + offset), 1.0);
            }
            part
        })
    }

    fn codes(n: usize, g: i64) -> Vec<i64> {
        (0..n as i64).map(|i| (i * 7919 + i / 3) % g).collect()
    }

    #[test]
    fn same_bits_for_any_thread_count_and_exact_counts() {
        for g in [1, 5, 1000, 100_000] {
            let c = codes(200_003, g);
            let mut serial = GroupSums::default();
            let total = run(&c, &mut serial, Partial::EMPTY, 0, MAX_GROUPS, None);
            assert_eq!(total.count, c.len() as u64);
            assert_eq!(serial.len(), g as usize);
            let mut want = vec![0u64; g as usize];
            for &k in &c {
                want[k as usize] += 1;
            }
            assert_eq!(serial.count, want);
            for threads in [2, 3] {
                let mut s = GroupSums::default();
                let t = run(
                    &c,
                    &mut s,
                    Partial::EMPTY,
                    0,
                    MAX_GROUPS,
                    Some(&pool(threads)),
                );
                assert_eq!(t, total);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&s.sum),
                    bits(&serial.sum),
                    "{g} groups, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn sums_are_the_sequential_sum_of_each_group() {
        let c = codes(10_000, 37);
        let mut s = GroupSums::default();
        run(&c, &mut s, Partial::EMPTY, 0, MAX_GROUPS, Some(&pool(2)));
        let mut want = vec![0f64; 37];
        for (i, &k) in c.iter().enumerate() {
            want[k as usize] += ((i as f64) * 0.7).sin() * 10f64.powi((i % 17) as i32 - 8);
        }
        // Each group is summed in element order: exactly this sequential sum.
        assert_eq!(s.sum, want);
    }

    #[test]
    fn batches_cut_at_blocks_give_the_bits_of_one_call() {
        let c = codes(10_000, 300);
        let mut whole = GroupSums::default();
        let total = run(
            &c,
            &mut whole,
            Partial::EMPTY,
            0,
            MAX_GROUPS,
            Some(&pool(2)),
        );
        let mut state = GroupSums::default();
        let mut part = Partial::EMPTY;
        for (a, b) in [(0, 640), (640, 6400), (6400, 10_000)] {
            part = run(&c[a..b], &mut state, part, a, MAX_GROUPS, Some(&pool(3)));
        }
        assert_eq!(part, total);
        assert_eq!(state, whole);
    }

    #[test]
    fn bad_codes_are_flagged_at_their_first_index() {
        let mut c = codes(5000, 10);
        c[3210] = 10;
        c[4000] = -1;
        let mut s = GroupSums::new(10, false).unwrap();
        let p = run(&c, &mut s, Partial::EMPTY, 0, 10, Some(&pool(2)));
        assert_eq!(p.flags & flags::GROUPS, flags::GROUPS);
        assert_eq!(p.first_bad, 3210);
        let mut s = GroupSums::default();
        let p = run(&c, &mut s, Partial::EMPTY, 0, MAX_GROUPS, None);
        assert_eq!(p.first_bad, 4000);
        assert_eq!((-3i8).index(), u64::MAX);
        assert_eq!(u64::MAX.index(), u64::MAX);
    }

    #[test]
    fn empty_input_leaves_the_state() {
        let mut s = GroupSums::new(4, true).unwrap();
        let p = run(&[], &mut s, Partial::EMPTY, 0, 4, Some(&pool(2)));
        assert_eq!(p, Partial::EMPTY);
        assert_eq!(s, GroupSums::new(4, true).unwrap());
    }
}
