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
//!   [`CHUNK`] elements, blocks in parallel;
//! - longer rows are cut into chunks that are reduced in parallel (few long rows still use
//!   every thread), and each row's chunk states are merged in chunk order afterwards.
//!
//! What the rows contribute to a reduction over rows (a [`Partial`]) is merged in blocks of
//! `max(1, CHUNK / row_len)` rows, in row order, for short and long rows alike; [`run_from`]
//! continues that merge from a given state, so rows streamed in batches of whole blocks give
//! the bits of one call. [`fold_row`] does the same within a single row (the whole array as
//! one distribution): it continues a row's unfinished state chunk by chunk.
//!
//! When the reduced axis is not contiguous (e.g. `axis=0` of a C-ordered matrix), neighbouring
//! rows are interleaved tile by tile in groups of [`GROUP`], so that every cache line fetched
//! for one row is used by the next rows while it is still in L1. Each row's own sequence of
//! tiles and merges is unchanged by the grouping, so the bits are too.

use std::ops::Range;

use rayon::ThreadPool;

use super::isa::{self, Arch, Isa, Kernel};
use super::reduce::{for_each_ordered, reduce_from, Partial};
use super::strided::{
    gather_converted, offsets, Dims, Dst, Layout, Load, Src, Store, TileBuf, TILE,
};

/// Elements of a row reduced as one unit of parallel work (a multiple of [`TILE`]).
pub const CHUNK: usize = 1 << 15;

/// Rows interleaved tile by tile when the reduced axis is strided.
pub const GROUP: usize = 8;

/// Rows of at most `TILE / 2` elements are reduced in batches of at most this many rows.
pub const BATCH_ROWS: usize = 128;

const _: () = assert!(CHUNK.is_multiple_of(TILE));

/// An input operand of a row op, read as `E` (see [`Src`]): where it lies and which of the
/// layout's operands it is. Ops hold their operands as named `In`/`Out` fields and read them
/// only through the [`Tile`]s and [`Row`]s the engine hands them, so an op never computes an
/// address: the engine's offsets are the only ones ever used.
#[derive(Clone, Copy, Debug)]
pub struct In<E> {
    src: Src<E>,
    k: usize,
}

impl<E: Load> In<E> {
    /// Operand `k` of the layout, at `src`.
    ///
    /// # Safety
    /// `src` stepped by operand `k`'s strides over the rows of every run of an op holding it
    /// (see [`Rows::new`]) must address valid, aligned, initialised elements that stay alive,
    /// and are not written, while the run reads them; an operand broadcast along the rows
    /// (one value per row) must hold that value for every row, empty rows included.
    pub unsafe fn new(src: impl Into<Src<E>>, k: usize) -> Self {
        In { src: src.into(), k }
    }
}

/// An output operand of a row op: written one element per row ([`Row::write`]) or per
/// element ([`Tile::write`]), as `E` or rounded to the 16-bit float it is stored in ([`Dst`]).
#[derive(Clone, Copy, Debug)]
pub struct Out<E> {
    dst: Dst<E>,
    k: usize,
}

impl<E: Store> Out<E> {
    /// Operand `k` of the layout, at `dst` (stored as it says).
    ///
    /// # Safety
    /// As [`In::new`], for writes; besides, the elements of distinct rows (and of distinct
    /// positions within a row, for an output written per element) must be distinct, and
    /// overlap no input nor any other output.
    pub unsafe fn new(dst: impl Into<Dst<E>>, k: usize) -> Self {
        Out { dst: dst.into(), k }
    }
}

/// `rows` consecutive rows of a run, from row `first_row`, `len` elements of each from
/// element `start` on: the unit the engine hands [`RowOp::tile`]. Its offsets are the
/// engine's, inside the operands of the run (the contract of [`In::new`]), so reading and
/// writing through it is safe.
#[derive(Clone, Copy, Debug)]
pub struct Tile<const K: usize> {
    first_row: usize,
    rows: usize,
    len: usize,
    start: usize,
    at: [isize; K],
    rs: [isize; K],
    st: [isize; K],
}

impl<const K: usize> Tile<K> {
    /// The engine's index of the tile's first row.
    #[inline(always)]
    pub fn first_row(&self) -> usize {
        self.first_row
    }

    /// Number of rows (at least 1).
    #[inline(always)]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements of each row in the tile (`rows · len <= TILE`).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a tile of no elements.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The position within its row of the tile's first element.
    #[inline(always)]
    pub fn start(&self) -> usize {
        self.start
    }

    /// True if operand `x` is one value for the whole tile (broadcast along both rows and
    /// elements).
    #[inline(always)]
    pub fn is_broadcast<E>(&self, x: &In<E>) -> bool {
        self.rs[x.k] == 0 && self.st[x.k] == 0
    }

    /// Row `r` of the tile alone.
    #[inline(always)]
    pub fn row(&self, r: usize) -> Tile<K> {
        assert!(r < self.rows, "row {r} of a tile of {} rows", self.rows);
        Tile {
            first_row: self.first_row + r,
            rows: 1,
            at: offsets(self.at, r, &self.rs),
            ..*self
        }
    }

    /// The tile's elements of `x`, row after row, read as `E`: in place when they lie so,
    /// gathered (and converted) into `buf` otherwise ([`view_rows`]).
    #[inline(always)]
    pub fn read<'b, E: Load>(&self, x: &In<E>, buf: &'b mut TileBuf<E>) -> &'b [E] {
        let k = x.k;
        // SAFETY: `at`, `rs` and `st` are the engine's offsets of this tile's elements, which
        // `In::new`'s contract makes valid, readable elements of `x`.
        unsafe {
            view_rows(
                buf,
                x.src.offset(self.at[k]),
                self.rs[k],
                self.st[k],
                self.rows,
                self.len,
            )
        }
    }

    /// Writes `values` (`rows · len` of them, row after row) to the tile's elements of `out`.
    #[inline(always)]
    pub fn write<E: Store>(&self, out: &Out<E>, values: &[E]) {
        assert_eq!(values.len(), self.rows * self.len, "one value per element");
        let k = out.k;
        for (r, row) in values.chunks_exact(self.len.max(1)).enumerate() {
            // SAFETY: the engine's offsets of this tile's row `r`, valid for writes and
            // written by this task only (`Out::new`'s contract: rows and positions own
            // distinct elements, and each tile of a row is handed to one task).
            unsafe {
                out.dst
                    .offset(self.at[k] + r as isize * self.rs[k])
                    .scatter(row, self.st[k])
            };
        }
    }
}

/// A row being finished ([`RowOp::finish`]): its index and where its elements lie.
#[derive(Clone, Copy, Debug)]
pub struct Row<const K: usize> {
    index: usize,
    base: [isize; K],
    /// Operand strides along the row, when the row is one strided dimension.
    st: Option<[isize; K]>,
    len: usize,
}

impl<const K: usize> Row<K> {
    /// The engine's index of the row (operand 0's memory order, the same in every call with
    /// the same rows).
    #[inline(always)]
    pub fn index(&self) -> usize {
        self.index
    }

    /// Element `i` of the row in operand `x`. Panics unless `i` is below the row length and
    /// the row is one strided dimension (as a class axis is).
    #[inline(always)]
    pub fn get<E: Load>(&self, x: &In<E>, i: usize) -> E {
        let st = self.st.expect("a row along one dimension");
        assert!(i < self.len, "element {i} of a row of {}", self.len);
        // SAFETY: element `i < len` of the row lies at `base + i * st` (the engine's offsets),
        // valid for reads by `In::new`'s contract.
        unsafe { x.src.read(self.base[x.k] + i as isize * st[x.k]) }
    }

    /// The value of `x`, an operand holding one value per row (broadcast along it, as class
    /// labels are). Panics if `x` varies along the row.
    #[inline(always)]
    pub fn value<E: Load>(&self, x: &In<E>) -> E {
        assert!(
            self.st.is_some_and(|st| st[x.k] == 0),
            "an operand with one value per row"
        );
        // SAFETY: an operand broadcast along the rows holds a valid element at each row's
        // base offset, empty rows included (`In::new`'s contract).
        unsafe { x.src.read(self.base[x.k]) }
    }

    /// `p`, what this row contributes, with the row's index as `first_bad` when its flags
    /// are set (see [`RowOp::finish_rows`]).
    #[inline(always)]
    pub fn located(&self, mut p: Partial) -> Partial {
        if p.flags != 0 {
            p.first_bad = self.index as u64;
        }
        p
    }

    /// Writes the row's result to `out` (an operand holding one element per row).
    #[inline(always)]
    pub fn write<E: Store>(&self, out: &Out<E>, value: E) {
        // SAFETY: the row's own element of `out` at the engine's offset, written by this
        // row's finish only (`Out::new`'s contract).
        unsafe { out.dst.write(self.base[out.k], value) };
    }
}

/// Consecutive whole rows of a run, handed to [`RowOp::finish_rows`]: row `r` of the batch
/// is the engine's row `first + r`, at offsets `base + r · step`.
#[derive(Clone, Copy, Debug)]
pub struct RowBatch<const K: usize> {
    first: usize,
    base: [isize; K],
    step: [isize; K],
    st: Option<[isize; K]>,
    len: usize,
}

impl<const K: usize> RowBatch<K> {
    /// Row `r` of the batch.
    #[inline(always)]
    pub fn row(&self, r: usize) -> Row<K> {
        Row {
            index: self.first + r,
            base: offsets(self.base, r, &self.step),
            st: self.st,
            len: self.len,
        }
    }
}

/// One value per row, written by the first pass of [`then_with`] ([`RowOp::finish`]) and
/// read by the second.
pub struct PerRow<S> {
    slots: Vec<std::cell::UnsafeCell<S>>,
}

// SAFETY: a slot is written only through `set`, by the finish of its own row, which the engine
// calls once per run, one run at a time (`then_with` runs its passes one after the other and
// lends the slots to nothing else); reads (`get`) happen in the second pass, after the first
// has joined.
unsafe impl<S: Send> Sync for PerRow<S> {}

impl<S: Copy + Default> PerRow<S> {
    /// A slot per row, for `rows` rows.
    pub fn new(rows: usize) -> Self {
        PerRow {
            slots: (0..rows)
                .map(|_| std::cell::UnsafeCell::new(S::default()))
                .collect(),
        }
    }

    /// Stores `row`'s value.
    #[inline(always)]
    pub fn set<const K: usize>(&self, row: &Row<K>, value: S) {
        // SAFETY: only the finish of `row` writes this slot, and nothing reads it during the
        // first pass (see the `Sync` impl).
        unsafe { *self.slots[row.index].get() = value };
    }

    /// The value stored for row `row`.
    #[inline(always)]
    pub fn get(&self, row: usize) -> S {
        // SAFETY: the first pass that wrote the slots has finished (see the `Sync` impl).
        unsafe { *self.slots[row].get() }
    }
}

/// A reduction of each row to one value.
///
/// The op holds its operands as [`In`] / [`Out`] fields; the engine hands it [`Tile`]s of
/// rows to reduce and, once a row's tiles are merged, the [`Row`] to finish, through which it
/// reads and writes them: no op computes an address, and neither method is `unsafe`.
///
/// [`RowOp::tile`] is compiled once per instruction set (see [`super::isa`]): the engine
/// dispatches once per run of rows or per chunk, and everything below is inlined into that
/// dispatch, so `tile` must be `#[inline(always)]` and made of plain loops.
pub trait RowOp<const K: usize>: Sync {
    /// What a tile (or a merged run of tiles) of a row contributes.
    type State: Copy + Send + Sync;
    /// Per-task scratch space (e.g. tile gather buffers).
    type Scratch: Default;

    /// The state of no elements.
    fn empty(&self) -> Self::State;

    /// Reduces the rows of `tile`: `states[r]` (`states.len() == tile.rows()`) receives row
    /// `r`'s state, which must not depend on how many rows are reduced together (the engine
    /// batches short rows and cuts long ones into single-row tiles); [`Tile::read`] reads such
    /// a batch and [`super::lanes::row_sums`] reduces it. Domain-error flags may be raised on
    /// any row of the batch (the caller locates the bad element itself), so `first_bad` is
    /// only a hint for row ops.
    fn tile<A: Arch>(
        &self,
        scratch: &mut Self::Scratch,
        tile: &Tile<K>,
        states: &mut [Self::State],
    );

    /// Combines `a` (earlier elements of a row) with `b` (later elements).
    fn merge(&self, a: Self::State, b: Self::State) -> Self::State;

    /// Turns a row's state into its result, writes it (if the op has an output) and returns
    /// what the row contributes to a reduction over rows. The engine sets `first_bad` to the
    /// row's index when the returned `flags` are not zero.
    fn finish<A: Arch>(&self, row: &Row<K>, state: Self::State) -> Partial;

    /// Finishes the rows of `batch` from their states (`states[r]` that of `batch.row(r)`, as
    /// [`RowOp::tile`] left it), merging what each contributes into `part` in row order:
    /// `part.merge(finish(row, merge(empty(), state)))` row after row, with the row's index as
    /// `first_bad` when its flags are set. An op may override it to finish many short rows at
    /// once (e.g. their logarithms in vector lanes), provided every row gets the very
    /// operations, in the same order, that this default gives it.
    #[inline(always)]
    fn finish_rows<A: Arch>(
        &self,
        batch: &RowBatch<K>,
        states: &[Self::State],
        mut part: Partial,
    ) -> Partial
    where
        Self: Sized,
    {
        for (r, &state) in states.iter().enumerate() {
            let state = self.merge(self.empty(), state);
            part = part.merge(finish_row::<A, K, Self>(self, &batch.row(r), state));
        }
        part
    }
}

/// The `rows × n` elements at `src + r * rs + i * st`, row after row, read as `E`: the array's
/// own memory when they lie so (and are stored as `E`), `buf` (gathered in memory order, and
/// converted, see [`Src`]) otherwise. `rows · n <= TILE`.
///
/// # Safety
/// Every such element must be valid, aligned and initialised, and not written while the slice
/// lives.
#[inline(always)]
unsafe fn view_rows<E: Load>(
    buf: &mut TileBuf<E>,
    src: impl Into<Src<E>>,
    rs: isize,
    st: isize,
    rows: usize,
    n: usize,
) -> &[E] {
    let src = src.into();
    let len = rows * n;
    if rows <= 1 || rs == n as isize * st || (rs == 0 && st == 0) {
        // One strided run (or one broadcast value).
        // SAFETY: forwarded from the caller.
        return unsafe { buf.view_src(src, st, len) };
    }
    let out = buf.scratch(len);
    if !src.stored().is_native() {
        // SAFETY: forwarded from the caller.
        unsafe { gather_converted(out, src, rows, n, rs, st) };
        return out;
    }
    let ptr = src.raw();
    if rs.unsigned_abs() < st.unsigned_abs() {
        // Neighbouring rows are closer in memory than neighbouring elements: read across rows.
        for i in 0..n {
            for r in 0..rows {
                // SAFETY: forwarded from the caller.
                out[r * n + i] = unsafe { *ptr.offset(r as isize * rs + i as isize * st) };
            }
        }
    } else {
        for (r, row) in out.chunks_exact_mut(n).enumerate() {
            for (i, slot) in row.iter_mut().enumerate() {
                // SAFETY: forwarded from the caller.
                *slot = unsafe { *ptr.offset(r as isize * rs + i as isize * st) };
            }
        }
    }
    out
}

/// The iteration space of a row-wise operation: rows (outer) and elements within a row (inner).
#[derive(Clone, Debug)]
pub struct Rows<const K: usize> {
    outer: Layout<K>,
    inner: Layout<K>,
}

/// The tiles of a range of one row: `(start, at, st, n)`, the position in the row of the
/// tile's first element, its offsets relative to the row's first element, its strides and
/// its length. Tiles start at the range's start and every [`TILE`] elements after it, and again
/// at every run of the inner layout (one run when the row is one strided dimension).
pub struct Tiles<'a, const K: usize> {
    inner: &'a Layout<K>,
    /// Multi-index of the current position (only for an inner layout of several dimensions).
    index: Dims<usize>,
    off: [isize; K],
    pos: usize,
    end: usize,
}

impl<const K: usize> Iterator for Tiles<'_, K> {
    type Item = (usize, [isize; K], [isize; K], usize);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let shape = self.inner.shape();
        let strides = self.inner.strides();
        let nd = shape.len();
        let st = strides[nd - 1];
        let run_left = if nd == 1 {
            self.end - self.pos
        } else {
            (shape[nd - 1] - self.index[nd - 1]).min(self.end - self.pos)
        };
        let n = TILE.min(run_left);
        let item = (self.pos, self.off, st, n);
        self.pos += n;
        for (o, s) in self.off.iter_mut().zip(st) {
            *o += n as isize * s;
        }
        if nd > 1 {
            // Carry the multi-index outwards past the end of the innermost run.
            self.index[nd - 1] += n;
            let mut d = nd - 1;
            while d > 0 && self.index[d] == shape[d] {
                for (k, o) in self.off.iter_mut().enumerate() {
                    *o += strides[d - 1][k] - shape[d] as isize * strides[d][k];
                }
                self.index[d] = 0;
                self.index[d - 1] += 1;
                d -= 1;
            }
        }
        Some(item)
    }
}

impl<const K: usize> Rows<K> {
    /// Splits `shape` into rows: dimension `d` is inside a row when `reduced[d]`. `strides[k]`
    /// are operand `k`'s element strides (0 where broadcast; an output has 0 along reduced
    /// dimensions).
    pub fn new(shape: &[usize], strides: [&[isize]; K], reduced: &[bool]) -> Self {
        assert_eq!(reduced.len(), shape.len(), "one flag per dimension");
        for s in &strides {
            assert_eq!(s.len(), shape.len(), "one stride per dimension and operand");
        }
        let part = |inside: bool| {
            Layout::from_dims(
                (0..shape.len())
                    .filter(|&d| reduced[d] == inside)
                    .map(|d| (shape[d], std::array::from_fn(|k| strides[k][d]))),
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

    /// True when every tile the engine hands a [`RowOp`] holds whole rows: rows of at most
    /// `TILE / 2` elements along one (merged) dimension, reduced in batches of whole rows. An
    /// op may then use a row's sums on the row's own elements within [`RowOp::tile`].
    pub fn whole_rows_per_tile(&self) -> bool {
        self.row_len() <= TILE / 2 && self.inner.strides().len() == 1
    }

    /// True when each row is reduced as one chunk (at most [`CHUNK`] elements).
    pub fn one_chunk_per_row(&self) -> bool {
        self.chunks() == 1
    }

    /// Rows per block of [`run_from`]'s reduction over rows: `max(1, CHUNK / row_len)`.
    pub fn rows_per_block(&self) -> usize {
        (CHUNK / self.row_len().max(1)).max(1)
    }

    /// Number of chunks each row is cut into (at least 1, also for empty rows).
    fn chunks(&self) -> usize {
        self.row_len().div_ceil(CHUNK).max(1)
    }

    /// Row `index`, whose first element lies at `base`, to finish.
    #[inline(always)]
    fn row(&self, index: usize, base: [isize; K]) -> Row<K> {
        let strides = self.inner.strides();
        Row {
            index,
            base,
            st: (strides.len() == 1).then(|| strides[0]),
            len: self.row_len(),
        }
    }

    /// The operand offsets of row `r`'s first element.
    pub fn base(&self, r: usize) -> [isize; K] {
        let mut base = [0; K];
        self.outer.for_each_run(r..r + 1, |_, _, off, _| base = off);
        base
    }

    /// The tiles of the elements `range` of a row.
    #[inline(always)]
    pub fn tiles(&self, range: Range<usize>) -> Tiles<'_, K> {
        let shape = self.inner.shape();
        let strides = self.inner.strides();
        let mut index = Dims::empty(0);
        let mut off = [0isize; K];
        if shape.len() == 1 {
            for (o, s) in off.iter_mut().zip(strides[0]) {
                *o = range.start as isize * s;
            }
        } else if !range.is_empty() {
            index = Dims::filled(shape.len(), 0);
            let mut rest = range.start;
            for d in (0..shape.len()).rev() {
                index[d] = rest % shape[d];
                rest /= shape[d];
                for (o, s) in off.iter_mut().zip(strides[d]) {
                    *o += index[d] as isize * s;
                }
            }
        }
        Tiles {
            inner: &self.inner,
            index,
            off,
            pos: range.start,
            end: range.end,
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
    unsafe fn block<O: RowOp<K>>(&self, op: &O, range: Range<usize>, isa: Isa) -> Partial {
        let group = if self.interleave() { GROUP } else { 1 };
        let mut scratch = O::Scratch::default();
        let mut part = Partial::EMPTY;
        self.outer.for_each_run(range, |flat, count, off, ost| {
            let rows = RunOfRows {
                rows: self,
                op,
                scratch: &mut scratch,
                flat,
                count,
                off,
                ost,
                group,
            };
            part = part.merge(isa::dispatch_on(isa, rows));
        });
        part
    }
}

/// Whole rows `flat..flat + count`, the `i`-th at offsets `off + i * ost`: the unit of work
/// compiled per instruction set when rows fit in one chunk.
struct RunOfRows<'a, const K: usize, O: RowOp<K>> {
    rows: &'a Rows<K>,
    op: &'a O,
    scratch: &'a mut O::Scratch,
    flat: usize,
    count: usize,
    off: [isize; K],
    ost: [isize; K],
    group: usize,
}

impl<const K: usize, O: RowOp<K>> Kernel for RunOfRows<'_, K, O> {
    type Output = Partial;

    #[inline(always)]
    fn run<A: Arch>(self) -> Partial {
        let (op, n) = (self.op, self.rows.row_len());
        let mut part = Partial::EMPTY;
        let base_of = |i: usize| offsets(self.off, i, &self.ost);
        if self.rows.whole_rows_per_tile() {
            // Short rows: batches of whole rows, one tile each.
            let st = self.rows.inner.strides()[0];
            let per_tile = (TILE / n.max(1)).min(BATCH_ROWS);
            let mut states = vec![op.empty(); per_tile.min(self.count)];
            let mut i = 0;
            while i < self.count {
                let rows = per_tile.min(self.count - i);
                let states = &mut states[..rows];
                if n > 0 {
                    let tile = Tile {
                        first_row: self.flat + i,
                        rows,
                        len: n,
                        start: 0,
                        at: base_of(i),
                        rs: self.ost,
                        st,
                    };
                    op.tile::<A>(self.scratch, &tile, states);
                }
                // Rows of no elements keep `empty()` states: `tile` never wrote them.
                let batch = RowBatch {
                    first: self.flat + i,
                    base: base_of(i),
                    step: self.ost,
                    st: Some(st),
                    len: n,
                };
                part = op.finish_rows::<A>(&batch, states, part);
                i += rows;
            }
            return part;
        }
        let mut i = 0;
        while i < self.count {
            let g = self.group.min(self.count - i);
            let mut states = [op.empty(); GROUP];
            for (start, at, st, m) in self.rows.tiles(0..n) {
                for (j, state) in states[..g].iter_mut().enumerate() {
                    let base = base_of(i + j);
                    let tile = Tile {
                        first_row: self.flat + i + j,
                        rows: 1,
                        len: m,
                        start,
                        at: offsets(base, 1, &at),
                        rs: [0; K],
                        st,
                    };
                    let mut s = [op.empty()];
                    op.tile::<A>(self.scratch, &tile, &mut s);
                    *state = op.merge(*state, s[0]);
                }
            }
            for (j, &state) in states[..g].iter().enumerate() {
                let row = self.rows.row(self.flat + i + j, base_of(i + j));
                part = part.merge(finish_row::<A, K, O>(op, &row, state));
            }
            i += g;
        }
        part
    }
}

/// Two passes over the same rows, the second built from what the first learnt: runs `first`,
/// then, unless it met a domain error or was cancelled, the op `second` makes from its merged
/// result. Returns the first pass's merge and, when it ran, the second's. The combinator of the
/// two-pass algorithms (normalised Jensen-Shannon over long rows, the softmax gradient), whose
/// first pass stores per-row data through its [`RowOp::finish`] for the second to read.
///
/// # Safety
/// As [`run`], for both ops.
pub unsafe fn then<const K: usize, A: RowOp<K>, B: RowOp<K>>(
    rows: &Rows<K>,
    pool: Option<&ThreadPool>,
    first: &A,
    second: impl FnOnce(&Partial) -> B,
) -> (Partial, Option<Partial>) {
    // SAFETY: forwarded from the caller.
    let part = unsafe { run(rows, first, pool) };
    if part.flags != 0 {
        return (part, None);
    }
    let second = second(&part);
    // SAFETY: forwarded from the caller.
    (part, Some(unsafe { run(rows, &second, pool) }))
}

/// Chunk `range` of the row at `base`: the unit of work compiled per instruction set when
/// rows are cut into chunks.
struct ChunkOfRow<'a, const K: usize, O: RowOp<K>> {
    rows: &'a Rows<K>,
    op: &'a O,
    row: usize,
    base: [isize; K],
    range: Range<usize>,
}

impl<const K: usize, O: RowOp<K>> Kernel for ChunkOfRow<'_, K, O> {
    type Output = O::State;

    #[inline(always)]
    fn run<A: Arch>(self) -> O::State {
        let op = self.op;
        let mut scratch = O::Scratch::default();
        let mut state = op.empty();
        for (start, at, st, m) in self.rows.tiles(self.range) {
            let tile = Tile {
                first_row: self.row,
                rows: 1,
                len: m,
                start,
                at: offsets(self.base, 1, &at),
                rs: [0; K],
                st,
            };
            let mut s = [op.empty()];
            op.tile::<A>(&mut scratch, &tile, &mut s);
            state = op.merge(state, s[0]);
        }
        state
    }
}

/// Finishes row `row` (at `base`) from its merged chunk states: the unit of work compiled
/// per instruction set when rows are cut into chunks.
struct FinishRow<'a, const K: usize, O: RowOp<K>> {
    op: &'a O,
    row: Row<K>,
    state: O::State,
}

impl<const K: usize, O: RowOp<K>> Kernel for FinishRow<'_, K, O> {
    type Output = Partial;

    #[inline(always)]
    fn run<A: Arch>(self) -> Partial {
        finish_row::<A, K, O>(self.op, &self.row, self.state)
    }
}

/// Finishes `row`, recording its index as the first bad one if it is.
#[inline(always)]
fn finish_row<A: Arch, const K: usize, O: RowOp<K>>(
    op: &O,
    row: &Row<K>,
    state: O::State,
) -> Partial {
    row.located(op.finish::<A>(row, state))
}

/// Reduces the whole rows `range` with `op` on the calling thread, finishing each in row
/// order, and returns the merge of what they contribute: exactly one block of [`run_from`]
/// (blocks of [`Rows::rows_per_block`] rows). For reductions that use each row's result
/// otherwise (per group: [`super::groups`]). Only when every row is one chunk
/// ([`Rows::one_chunk_per_row`]).
///
/// # Safety
/// As [`run`].
pub unsafe fn reduce_block<const K: usize, O: RowOp<K>>(
    rows: &Rows<K>,
    op: &O,
    range: Range<usize>,
    isa: Isa,
) -> Partial {
    assert!(rows.one_chunk_per_row(), "rows of one chunk");
    // SAFETY: forwarded from the caller.
    unsafe { rows.block(op, range, isa) }
}

/// Reduces every row of `rows` with `op` (writing each row's result through the op) and
/// returns the merge, in row order, of what the rows contribute. Parallel on `pool` when given;
/// the bits are the same for any thread count. Runs with the active instruction set.
/// Cancellable ([`super::cancel`]): a cancelled run returns a state flagged
/// [`CANCELLED`](super::reduce::flags::CANCELLED), with only some rows finished.
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
    // SAFETY: forwarded from the caller.
    unsafe { run_from(Partial::EMPTY, rows, op, pool) }
}

/// [`run`], continuing from `init`, the state of the rows that come before these (a
/// streaming accumulator's state): what the rows contribute is merged into `init` in blocks
/// of `max(1, CHUNK / row_len)` rows, in row order, as [`reduce_from`] merges blocks. So
/// streaming the rows of one array through successive calls, each but the last covering a
/// whole number of such blocks (and laid out alike, e.g. C-contiguous), gives the very bits
/// of one [`run`] over all the rows.
///
/// # Safety
/// As [`run`].
pub unsafe fn run_from<const K: usize, O: RowOp<K>>(
    init: Partial,
    rows: &Rows<K>,
    op: &O,
    pool: Option<&ThreadPool>,
) -> Partial {
    // SAFETY: forwarded from the caller.
    unsafe { run_on(init, rows, op, pool, isa::active()) }
}

/// [`run_from`] with the instruction set `isa` (clamped to what the CPU supports).
///
/// # Safety
/// As [`run`].
pub unsafe fn run_on<const K: usize, O: RowOp<K>>(
    init: Partial,
    rows: &Rows<K>,
    op: &O,
    pool: Option<&ThreadPool>,
    isa: Isa,
) -> Partial {
    let nrows = rows.rows();
    let n = rows.row_len();
    // Rows per block of the reduction over rows: the same rule for short and long rows.
    let per_block = (CHUNK / n.max(1)).max(1);
    if rows.chunks() == 1 {
        // SAFETY: forwarded from the caller.
        return reduce_from(init, nrows, per_block, pool, |r| unsafe {
            rows.block(op, r, isa)
        });
    }
    // Long rows: every (row, chunk) pair is one task. A row is finished as soon as its last
    // chunk's state is merged, and rows (one per block, as `per_block` is 1 here) are merged
    // in row order, as `reduce_from` merges blocks.
    let chunks = rows.chunks();
    let (mut acc, mut row_state) = (init, op.empty());
    // SAFETY: forwarded from the caller.
    let done = unsafe {
        for_chunk_states(rows, op, pool, isa, 0..nrows * chunks, |i, state| {
            row_state = op.merge(row_state, state);
            if (i + 1) % chunks == 0 {
                let row = i / chunks;
                let finish = FinishRow {
                    op,
                    row: rows.row(row, rows.base(row)),
                    state: std::mem::replace(&mut row_state, op.empty()),
                };
                acc = acc.merge(isa::dispatch_on(isa, finish));
            }
        })
    };
    if done {
        acc
    } else {
        acc.cancelled()
    }
}

/// Hands `consume` the state of each chunk `items` (chunks of [`CHUNK`] elements, at least
/// one per row, numbered row after row: item `i` is chunk `i % chunks` of row `i / chunks`),
/// in that order, through the crate's one parallel engine ([`for_each_ordered`]). Returns
/// false if the call was cancelled ([`super::cancel`]): the chunks from some point on were
/// then not consumed.
///
/// # Safety
/// As [`run`].
unsafe fn for_chunk_states<const K: usize, O: RowOp<K>>(
    rows: &Rows<K>,
    op: &O,
    pool: Option<&ThreadPool>,
    isa: Isa,
    items: Range<usize>,
    consume: impl FnMut(usize, O::State),
) -> bool {
    let (n, chunks) = (rows.row_len(), rows.chunks());
    let item = |i: usize| {
        let (r, c) = (i / chunks, i % chunks);
        let chunk = ChunkOfRow {
            rows,
            op,
            row: r,
            base: rows.base(r),
            range: c * CHUNK..((c + 1) * CHUNK).min(n),
        };
        isa::dispatch_on(isa, chunk)
    };
    for_each_ordered(items, pool, item, consume)
}

/// The *unfinished* state of the single row of `rows` (every dimension reduced: the whole
/// array as one distribution), continuing from `init`, the state of the elements that come
/// before these: the row's chunks of [`CHUNK`] elements are reduced (in parallel on `pool`)
/// and their states merged into `init` in chunk order, as the engine merges a row's chunks
/// from `op.empty()` before finishing it. So streaming one array through successive calls,
/// each but the last covering a whole number of chunks of its element order (and laid out
/// alike, e.g. C-contiguous), gives the very state of one call over the whole array. From
/// `op.empty()` it is the state [`run`] finishes for that row: the same tiles, merged in the
/// same order.
///
/// Runs with the active instruction set.
///
/// # Safety
/// As [`run`]; `rows` must hold exactly one row.
pub unsafe fn fold_row<const K: usize, O: RowOp<K>>(
    init: O::State,
    rows: &Rows<K>,
    op: &O,
    pool: Option<&ThreadPool>,
) -> O::State {
    debug_assert_eq!(rows.rows(), 1, "fold_row folds a single row");
    let mut state = init;
    // SAFETY: forwarded from the caller.
    unsafe {
        for_chunk_states(rows, op, pool, isa::active(), 0..rows.chunks(), |_, s| {
            state = op.merge(state, s)
        })
    };
    // Cancelled: incomplete, as `cancel::cancelled()` tells the caller.
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lanes::sum_lanes;

    /// Sum of each row's elements, written to operand 1, with the row's sum as contribution.
    struct RowSum {
        x: In<f64>,
        out: Out<f64>,
    }

    /// The row sums of `x` (operand 0) into `out` (operand 1).
    ///
    /// # Safety
    /// As [`In::new`] and [`Out::new`] for the rows the op runs over.
    unsafe fn row_sum(x: *const f64, out: *mut f64) -> RowSum {
        // SAFETY: forwarded from the caller.
        unsafe {
            RowSum {
                x: In::new(x, 0),
                out: Out::new(out, 1),
            }
        }
    }

    impl RowOp<2> for RowSum {
        type State = f64;
        type Scratch = crate::strided::TileBuf<f64>;
        fn empty(&self) -> f64 {
            0.0
        }
        #[inline(always)]
        fn tile<A: Arch>(&self, buf: &mut Self::Scratch, tile: &Tile<2>, states: &mut [f64]) {
            let x = tile.read(&self.x, buf);
            for (s, row) in states.iter_mut().zip(x.chunks_exact(tile.len())) {
                *s = sum_lanes(row);
            }
        }
        fn merge(&self, a: f64, b: f64) -> f64 {
            a + b
        }
        #[inline(always)]
        fn finish<A: Arch>(&self, row: &Row<2>, s: f64) -> Partial {
            row.write(&self.out, s);
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
        // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0, 1).
        let op = unsafe { row_sum(x.as_ptr(), out.as_mut_ptr()) };
        let p = pool(threads);
        // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
        // outlive the call (outputs are written by one row each).
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
    fn long_rows_past_one_window_of_chunk_states() {
        // Row `i` is `x[i..i + c]` (overlapping windows of one buffer): 2 chunks per row and
        // more rows than fit in one window of chunk states, with distinct sums per row.
        let (r, c) = (crate::reduce::WINDOW / 2 + 90, CHUNK + 5);
        let x = data(r + c);
        let exact: Vec<f64> = (0..r).map(|i| x[i..i + c].iter().sum::<f64>()).collect();
        let (reference, part) = row_sums(&x, [r, c], [1, 1], 1, 1);
        for (a, b) in reference.iter().zip(&exact) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
        let total = reference.iter().fold(0.0, |s, v| s + v);
        assert_eq!(
            part.sum.to_bits(),
            total.to_bits(),
            "rows merged in row order"
        );
        assert_eq!(part.count, r as u64);
        for threads in [2, 3] {
            let (o, p) = row_sums(&x, [r, c], [1, 1], 1, threads);
            assert!(o
                .iter()
                .zip(&reference)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            assert_eq!(p.sum.to_bits(), part.sum.to_bits(), "{threads} threads");
        }
    }

    /// The rows of the C-ordered `(rows, c)` matrix `x` reduced in batches cut before each
    /// row index of `cuts`, each batch continuing the previous state.
    fn streamed_rows(x: &[f64], [r, c]: [usize; 2], cuts: &[usize], threads: usize) -> Partial {
        let p = pool(threads);
        let mut out = vec![0.0; r];
        let mut state = Partial::EMPTY;
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied());
        bounds.push(r);
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            let rows = Rows::new(&[b - a, c], [&[c as isize, 1], &[1, 0]], &[false, true]);
            // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0, 1).
            let op = unsafe { row_sum(x[a * c..].as_ptr(), out[a..].as_mut_ptr()) };
            // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
            // outlive the call (outputs are written by one row each).
            state = unsafe { run_from(state, &rows, &op, (threads > 1).then_some(&p)) };
        }
        state
    }

    #[test]
    fn rows_streamed_in_whole_blocks_give_the_same_bits() {
        for &(r, c) in &[(20_000, 7), (40, 33_000), (300, 1000), (50, 0)] {
            let x = data(r * c);
            let (_, whole) = row_sums(&x, [r, c], [c as isize, 1], 1, 2);
            let per_block = (CHUNK / c.max(1)).max(1);
            // Batches of whole blocks (one empty), any thread count: the very bits.
            let aligned: Vec<usize> = [1, 1, 3, 4, 7, 11, 29]
                .iter()
                .map(|k| k * per_block)
                .filter(|&k| k <= r)
                .collect();
            for threads in [1, 3] {
                let s = streamed_rows(&x, [r, c], &aligned, threads);
                assert_eq!(s.sum.to_bits(), whole.sum.to_bits(), "({r}, {c}) {threads}");
                assert_eq!(s.count, r as u64);
            }
            // Cut inside blocks: the same sum up to the order of the additions.
            let ragged: Vec<usize> = [1, r / 3, r / 3 + 1, r / 2]
                .iter()
                .copied()
                .filter(|&k| k <= r)
                .collect();
            let s = streamed_rows(&x, [r, c], &ragged, 2);
            let scale: f64 = x.iter().map(|v| v.abs()).sum();
            assert!((s.sum - whole.sum).abs() <= 1e-12 * scale.max(1.0));
            assert_eq!(s.count, r as u64);
        }
    }

    #[test]
    fn one_row_folded_in_pieces_continues_its_state() {
        // The whole array (a (3, n) C-ordered block) as one distribution, in pieces.
        let n = 3 * 23_457;
        let x = data(n);
        let fold = |cuts: &[usize], threads: usize| {
            let p = pool(threads);
            let mut bounds = vec![0];
            bounds.extend(cuts.iter().copied());
            bounds.push(n);
            let mut out = [0.0];
            bounds.windows(2).fold(0.0, |state, w| {
                let len = w[1] - w[0];
                let rows = Rows::new(&[len], [&[1], &[0]], &[true]);
                // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0, 1).
                let op = unsafe { row_sum(x[w[0]..].as_ptr(), out.as_mut_ptr()) };
                // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
                // outlive the call (outputs are written by one row each).
                unsafe { fold_row(state, &rows, &op, (threads > 1).then_some(&p)) }
            })
        };
        // From empty, the state the engine finishes for that row.
        let mut out = [0.0];
        let rows = Rows::new(
            &[3, n / 3],
            [&[(n / 3) as isize, 1], &[0, 0]],
            &[true, true],
        );
        // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0, 1).
        let op = unsafe { row_sum(x.as_ptr(), out.as_mut_ptr()) };
        // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
        // outlive the call (outputs are written by one row each).
        unsafe { run(&rows, &op, Some(&pool(2))) };
        let one = fold(&[], 1);
        assert_eq!(one.to_bits(), out[0].to_bits());
        // Pieces of whole chunks: the same bits, for any thread count.
        for threads in [1, 2, 4] {
            let pieces = fold(&[CHUNK, CHUNK, 2 * CHUNK], threads);
            assert_eq!(pieces.to_bits(), one.to_bits(), "{threads} threads");
        }
        // Anywhere else: the order of additions changes, not the sum.
        let ragged = fold(&[1, 1000, 40_000, 40_001], 2);
        let scale: f64 = x.iter().map(|v| v.abs()).sum();
        assert!((ragged - one).abs() <= 1e-12 * scale);
    }

    #[test]
    fn rows_gathered_from_the_other_float_type_are_converted() {
        // A (6, 5) block of a (6, 9) f32 matrix, read as f64 in batches of rows, both ways
        // round (rows apart more than elements, and the transpose).
        let x: Vec<f32> = (0..54).map(|i| (i as f32).sqrt()).collect();
        for (rs, st) in [(9isize, 1isize), (1, 9)] {
            let (rows, n) = if rs == 9 { (6, 5) } else { (5, 6) };
            let mut buf = TileBuf::<f64>::default();
            // SAFETY: every element read lies inside the buffer, which outlives the view.
            let got = unsafe { view_rows(&mut buf, Src::<f64>::f32(x.as_ptr()), rs, st, rows, n) }
                .to_vec();
            let want: Vec<f64> = (0..rows * n)
                .map(|k| f64::from(x[(k / n) * rs as usize + (k % n) * st as usize]))
                .collect();
            assert_eq!(got, want, "rs {rs} st {st}");
        }
    }

    /// Runs `f` with a hook that cancels at its first call, and checks that it stops within a
    /// second (uncancelled, each call below runs for minutes).
    fn cancelled_within_a_second<R>(f: impl FnOnce() -> R) -> R {
        let start = std::time::Instant::now();
        let r = crate::cancel::with_hook(Box::new(|| true), f);
        assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());
        r
    }

    #[test]
    fn cancelled_runs_stop_for_short_and_long_rows_and_one_row() {
        use crate::reduce::flags::CANCELLED;
        // One value broadcast to 10^11 elements (stride 0), in rows of each kind.
        let x = [0.5f64];
        for threads in [1, 2] {
            let p = pool(threads);
            let pool = (threads > 1).then_some(&p);
            for (r, c) in [(5_000_000, 20_000), (1_000_000, 3 * CHUNK + 5)] {
                let mut out = vec![0.0; r];
                let rows = Rows::new(&[r, c], [&[0, 0], &[1, 0]], &[false, true]);
                // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0, 1).
                let op = unsafe { row_sum(x.as_ptr(), out.as_mut_ptr()) };
                // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
                // outlive the call (outputs are written by one row each).
                let part = cancelled_within_a_second(|| unsafe { run(&rows, &op, pool) });
                assert_ne!(part.flags & CANCELLED, 0, "({r}, {c}) {threads}");
                assert!(part.count < r as u64);
            }
            let rows = Rows::new(&[1 << 20, 100_000], [&[0, 0], &[0, 0]], &[true, true]);
            let mut out = [0.0];
            // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0, 1).
            let op = unsafe { row_sum(x.as_ptr(), out.as_mut_ptr()) };
            cancelled_within_a_second(|| {
                // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
                // outlive the call (outputs are written by one row each).
                unsafe { fold_row(0.0, &rows, &op, pool) };
                assert!(crate::cancel::cancelled());
            });
        }
    }

    #[test]
    fn whole_array_as_one_row() {
        // A (3, 4, 5) Fortran array reduced over all axes.
        let x = data(60);
        let mut out = [0.0f64];
        let rows = Rows::new(&[3, 4, 5], [&[1, 3, 12], &[0, 0, 0]], &[true; 3]);
        assert_eq!((rows.rows(), rows.row_len()), (1, 60));
        // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0, 1).
        let op = unsafe { row_sum(x.as_ptr(), out.as_mut_ptr()) };
        // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
        // outlive the call (outputs are written by one row each).
        let part = unsafe { run(&rows, &op, None) };
        let exact: f64 = x.iter().sum();
        assert!((out[0] - exact).abs() <= 1e-12 * x.iter().map(|v| v.abs()).sum::<f64>());
        assert_eq!(part.sum, out[0]);
    }

    #[test]
    fn every_instruction_set_gives_the_same_row_sums() {
        // Sums without transcendental functions are exact in every instruction set here.
        let x: Vec<f64> = (0..5000).map(|i| (i % 97) as f64).collect();
        let mut outs = vec![];
        for isa in Isa::ALL {
            let mut out = vec![0.0; 50];
            let rows = Rows::new(&[50, 100], [&[100, 1], &[1, 0]], &[false, true]);
            // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0, 1).
            let op = unsafe { row_sum(x.as_ptr(), out.as_mut_ptr()) };
            // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
            // outlive the call (outputs are written by one row each).
            unsafe { run_on(Partial::EMPTY, &rows, &op, None, isa) };
            outs.push(out);
        }
        assert!(outs.iter().all(|o| o == &outs[0]));
    }

    #[test]
    fn tiles_walk_multi_dimensional_rows() {
        // A (3, 700) row stored with strides (1, 5): 700 runs of 3, with gaps between them.
        let rows = Rows::<1>::new(&[3, 700], [&[1, 5]], &[true, true]);
        let mut seen = vec![];
        for (_, at, st, n) in rows.tiles(100..2100) {
            for i in 0..n as isize {
                seen.push(at[0] + i * st[0]);
            }
        }
        // Layout::new orders by stride (memory order): flat f is at 5 (f / 3) + f % 3.
        let want: Vec<isize> = (100..2100).map(|f| 5 * (f / 3) + f % 3).collect();
        assert_eq!(seen, want);
    }
}
