//! Walking N-d strided operands in place: no copies, whatever the layout.
//!
//! Several operands (inputs, broadcast weights, an output) are described on one common
//! iteration shape by their element strides (0 where an operand is broadcast). [`Layout`]
//! drops unit dimensions, orders the rest so that the first operand is read in memory order,
//! and merges dimensions that are contiguous for every operand, so a C- or Fortran-contiguous
//! array becomes a single run. [`Layout::for_each_run`] then visits any range of the flat
//! (logical) index space as 1-D runs, each with one inner stride per operand.
//!
//! Kernels consume runs in tiles of at most [`TILE`] elements: a run with unit stride is handed
//! over as a slice of the array itself, anything else is gathered into a small stack buffer.
//!
//! An operand may be stored in another floating-point type than the one a kernel computes in
//! (a float32 `p` with a float64 `q`, a float64 weight of float32 logits): [`Src`] says how it
//! is stored, and [`TileBuf::view_src`] converts it element by element as it gathers a tile,
//! never the whole array. One compiled kernel thus serves every mix of float32 and float64
//! operands; only the gather loop exists per stored type. The 16-bit formats (binary16 and
//! bfloat16, [`Half`]) are read the same way, widened exactly; an output may be stored in
//! one of them too ([`Dst`]): each element is then rounded to it as a tile is written.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::float::Float;
use super::half::{Half, HalfConvert};

/// Elements per tile: small enough for the gather buffers to live in L1.
pub const TILE: usize = 512;

/// Dimensions held inline: most calls have at most this many once unit dimensions are dropped
/// and contiguous ones merged.
const INLINE_DIMS: usize = 4;

/// A short list of per-dimension values: inline up to [`INLINE_DIMS`], on the heap beyond, so
/// that describing a call's iteration space, or an operand's shape and strides, allocates
/// nothing in the common case (a call on a small array otherwise spends a good part of its
/// time in the allocator).
#[derive(Clone, Debug)]
pub enum Dims<T: Copy> {
    Inline(usize, [T; INLINE_DIMS]),
    Heap(Vec<T>),
}

impl<T: Copy> Dims<T> {
    /// No values (`blank` fills the unused inline slots).
    pub(crate) fn empty(blank: T) -> Self {
        Dims::Inline(0, [blank; INLINE_DIMS])
    }

    /// `n` copies of `value`.
    pub(crate) fn filled(n: usize, value: T) -> Self {
        if n <= INLINE_DIMS {
            Dims::Inline(n, [value; INLINE_DIMS])
        } else {
            Dims::Heap(vec![value; n])
        }
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T], blank: T) -> Self {
        if values.len() <= INLINE_DIMS {
            let mut items = [blank; INLINE_DIMS];
            items[..values.len()].copy_from_slice(values);
            Dims::Inline(values.len(), items)
        } else {
            Dims::Heap(values.to_vec())
        }
    }

    /// The values of `values`, in order.
    pub fn collect(values: impl ExactSizeIterator<Item = T>, blank: T) -> Self {
        let mut dims = Dims::filled(values.len(), blank);
        for (d, v) in dims.iter_mut().zip(values) {
            *d = v;
        }
        dims
    }

    pub(crate) fn push(&mut self, value: T) {
        match self {
            Dims::Inline(n, items) if *n < INLINE_DIMS => {
                items[*n] = value;
                *n += 1;
            }
            Dims::Inline(n, items) => {
                let mut heap = items[..*n].to_vec();
                heap.push(value);
                *self = Dims::Heap(heap);
            }
            Dims::Heap(heap) => heap.push(value),
        }
    }
}

impl<T: Copy> std::ops::Deref for Dims<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        match self {
            Dims::Inline(n, items) => &items[..*n],
            Dims::Heap(heap) => heap,
        }
    }
}

impl<T: Copy> std::ops::DerefMut for Dims<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Dims::Inline(n, items) => &mut items[..*n],
            Dims::Heap(heap) => heap,
        }
    }
}

impl<T: Copy + PartialEq> PartialEq for Dims<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Copy + Eq> Eq for Dims<T> {}

/// Each operand's offset `at[k] + i · step[k]`: where the `i`-th row or tile of a run lies.
///
/// A plain loop, unrolled for each operand count: the per-row paths of the engines call this
/// once per row, and `std::array::from_fn`, used there before, was seen left as a call per
/// operand in a profile of one build (the gain measured in the next build was 2 instructions
/// per softmax row).
#[inline(always)]
pub fn offsets<const K: usize>(at: [isize; K], i: usize, step: &[isize; K]) -> [isize; K] {
    let mut out = at;
    for (o, &s) in out.iter_mut().zip(step) {
        *o += i as isize * s;
    }
    out
}

/// Common iteration space of `K` operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout<const K: usize> {
    /// Extents, outermost first; the last dimension is the inner (fastest) one.
    shape: Dims<usize>,
    /// `strides[d][k]`: element stride of operand `k` along dimension `d`.
    strides: Dims<[isize; K]>,
    len: usize,
}

impl<const K: usize> Layout<K> {
    /// Builds the iteration space of `shape`, with `strides[k]` the element strides of operand
    /// `k` (one per dimension of `shape`; 0 for broadcast dimensions).
    pub fn new(shape: &[usize], strides: [&[isize]; K]) -> Self {
        for s in &strides {
            assert_eq!(s.len(), shape.len(), "one stride per dimension and operand");
        }
        Self::from_dims(
            (0..shape.len()).map(|d| (shape[d], std::array::from_fn(|k| strides[k][d]))),
        )
    }

    /// [`Layout::new`] from `(extent, strides of each operand)` per dimension, outermost first.
    pub fn from_dims(all: impl Iterator<Item = (usize, [isize; K])>) -> Self {
        // Keep the dimensions that matter, then order them by operand 0's stride magnitude,
        // largest first (a stable sort keeps C order for ties, e.g. broadcast dimensions).
        let mut len = 1;
        let blank = (0, [0; K]);
        let mut dims = Dims::empty(blank);
        for (extent, s) in all {
            len *= extent;
            if extent != 1 {
                dims.push((extent, s));
            }
        }
        if len == 0 {
            dims = Dims::empty(blank);
        }
        dims.sort_by_key(|&(_, s)| std::cmp::Reverse(s[0].unsigned_abs()));
        // Merge dimension d into d+1 when, for every operand, stepping d is stepping d+1
        // extent(d+1) times.
        let mut merged = Dims::empty(blank);
        for &(extent, s) in dims.iter() {
            if let Some(last) = merged.last_mut() {
                if (0..K).all(|k| last.1[k] == s[k] * extent as isize) {
                    last.0 *= extent;
                    last.1 = s;
                    continue;
                }
            }
            merged.push((extent, s));
        }
        if merged.is_empty() {
            // 0-d or all-unit shape: one element (or none, if `len == 0`).
            merged.push((len, [0; K]));
        }
        let mut shape = Dims::empty(0);
        let mut strides = Dims::empty([0; K]);
        for &(extent, s) in merged.iter() {
            shape.push(extent);
            strides.push(s);
        }
        Layout {
            shape,
            strides,
            len,
        }
    }

    /// Number of elements in the iteration space.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The extents after merging (outermost first).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element strides after merging: `strides()[d][k]` for operand `k` along dimension `d`.
    pub fn strides(&self) -> &[[isize; K]] {
        &self.strides
    }

    /// Visits the flat indices `range` in tiles of at most [`TILE`] elements, each inside one
    /// run of [`Layout::for_each_run`]: `f(flat_start, n, offsets, inner_strides)` with the
    /// tile's first flat index, its length, and operand `k`'s element offset and step.
    pub fn for_each_tile(
        &self,
        range: Range<usize>,
        mut f: impl FnMut(usize, usize, [isize; K], [isize; K]),
    ) {
        self.for_each_run(range, |flat, len, off, st| {
            let mut done = 0;
            while done < len {
                let n = TILE.min(len - done);
                let at = offsets(off, done, &st);
                f(flat + done, n, at, st);
                done += n;
            }
        });
    }

    /// Visits the flat indices `range` as runs along the inner dimension:
    /// `f(flat_start, len, offsets, inner_strides)`, where `offsets[k]` is operand `k`'s
    /// element offset of the run's first element and `inner_strides[k]` its step.
    pub fn for_each_run(
        &self,
        range: Range<usize>,
        mut f: impl FnMut(usize, usize, [isize; K], [isize; K]),
    ) {
        if range.is_empty() {
            return;
        }
        let nd = self.shape.len();
        let inner = self.shape[nd - 1];
        let inner_strides = self.strides[nd - 1];
        // Multi-index of range.start over the outer dimensions, and the running offsets.
        let mut index = Dims::filled(nd, 0usize);
        let mut rest = range.start;
        for d in (0..nd).rev() {
            index[d] = rest % self.shape[d];
            rest /= self.shape[d];
        }
        let mut offsets = [0isize; K];
        for (i, strides) in index.iter().zip(self.strides.iter()) {
            for (o, s) in offsets.iter_mut().zip(strides) {
                *o += *i as isize * s;
            }
        }
        let mut flat = range.start;
        while flat < range.end {
            let len = (inner - index[nd - 1]).min(range.end - flat);
            f(flat, len, offsets, inner_strides);
            flat += len;
            // Step the multi-index by `len` along the inner dimension, carrying outwards.
            index[nd - 1] += len;
            for (k, o) in offsets.iter_mut().enumerate() {
                *o += len as isize * inner_strides[k];
            }
            let mut d = nd - 1;
            while d > 0 && index[d] == self.shape[d] {
                for (k, o) in offsets.iter_mut().enumerate() {
                    *o -= self.shape[d] as isize * self.strides[d][k];
                    *o += self.strides[d - 1][k];
                }
                index[d] = 0;
                index[d - 1] += 1;
                d -= 1;
            }
        }
    }
}

/// How an operand's elements are stored, relative to the type `E` a kernel reads them as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// As `E` itself: read in place.
    Native,
    /// As `f32`, converted to `E` on load.
    F32,
    /// As `f64`, converted to `E` on load.
    F64,
    /// As the raw bits of a 16-bit float, widened to `E` on load (exact), or rounded to it on
    /// store (to nearest, ties to even).
    Half(Half),
}

impl Stored {
    /// True when stored as the type read (in place). A `matches!` the compiler sees through,
    /// for the per-row reads: the derived `==` compares the payload of `Half` as well.
    #[inline(always)]
    pub const fn is_native(self) -> bool {
        matches!(self, Stored::Native)
    }

    /// Bytes per element, `native` being the size of the type read.
    #[inline(always)]
    fn size(self, native: usize) -> isize {
        (match self {
            Stored::Native => native,
            Stored::F32 => 4,
            Stored::F64 => 8,
            Stored::Half(_) => 2,
        }) as isize
    }
}

/// An element type that operands stored as `f32` or `f64` can be read as (see [`Src`]).
pub trait Load: Copy + Default + Send + Sync + 'static {
    /// How an operand of this very type is stored (`Native` for types nothing converts to).
    const STORED: Stored;
    /// `v` as this type: exact for `f32` and `f64`; rounded to nearest for `f64` to `f32`,
    /// as NumPy's `astype` rounds.
    fn from_f32(v: f32) -> Self;
    /// As [`Load::from_f32`].
    fn from_f64(v: f64) -> Self;
    /// The 16-bit float `bits` of the format `half` as this type: exact for `f32` and `f64`.
    #[inline(always)]
    fn from_half_bits(bits: u16, half: Half) -> Self {
        Self::from_f32(f32::from_half(bits, half))
    }
}

/// `f32` and `f64`.
impl<T: Float> Load for T {
    const STORED: Stored = if T::NARROW { Stored::F32 } else { Stored::F64 };
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        T::from_f64(f64::from(v))
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        T::from_f64(v)
    }
}

/// Class labels are always read as stored (their `Src`s are `Native`); the conversions exist
/// for the trait only.
macro_rules! impl_load_native {
    ($($t:ty),*) => {$(
        impl Load for $t {
            const STORED: Stored = Stored::Native;
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    )*};
}
impl_load_native!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Where an operand read as `E` lies, and how it is stored ([`Stored`]): a pointer a kernel
/// offsets and reads like a `*const E`, converting on load when the operand is stored as the
/// other floating-point type. May cross to rayon workers, with [`SendPtr`]'s contract.
#[derive(Clone, Copy, Debug)]
pub struct Src<E> {
    /// The first element; of type `E` only when `stored` is `Native`.
    ptr: SendPtr<E>,
    stored: Stored,
}

impl<E: Load> From<*const E> for Src<E> {
    fn from(ptr: *const E) -> Self {
        Src::native(ptr)
    }
}

impl<E: Load> From<*mut E> for Src<E> {
    fn from(ptr: *mut E) -> Self {
        Src::native(ptr)
    }
}

impl<E: Load> Src<E> {
    /// Elements of type `E` at `ptr`.
    pub fn native(ptr: *const E) -> Self {
        Src {
            ptr: SendPtr::from_const(ptr),
            stored: Stored::Native,
        }
    }

    /// `f32` elements at `ptr`, read as `E`.
    pub fn f32(ptr: *const f32) -> Self {
        Self::stored_as(ptr.cast(), Stored::F32)
    }

    /// `f64` elements at `ptr`, read as `E`.
    pub fn f64(ptr: *const f64) -> Self {
        Self::stored_as(ptr.cast(), Stored::F64)
    }

    /// 16-bit floats of the format `half` at `ptr` (their bits), read as `E`.
    pub fn half(ptr: *const u16, half: Half) -> Self {
        Self::stored_as(ptr.cast(), Stored::Half(half))
    }

    fn stored_as(ptr: *const E, stored: Stored) -> Self {
        debug_assert!(E::STORED != Stored::Native, "only floats are converted");
        Src {
            ptr: SendPtr::from_const(ptr),
            stored: if stored == E::STORED {
                Stored::Native
            } else {
                stored
            },
        }
    }

    /// How the elements are stored.
    #[inline(always)]
    pub fn stored(self) -> Stored {
        self.stored
    }

    /// The first element's address (of an `E` only when stored `Native`).
    #[inline(always)]
    pub fn raw(self) -> *const E {
        self.ptr.0
    }

    /// True if this points at `ptr` (e.g. a constant operand such as [`Float::one_ref`]).
    ///
    /// [`Float::one_ref`]: super::float::Float::one_ref
    pub fn is(self, ptr: *const E) -> bool {
        std::ptr::eq(self.ptr.0, ptr)
    }

    /// The element `count` elements on, as `ptr.offset(count)` for a `*const E`.
    ///
    /// # Safety
    /// As [`pointer::offset`]: the result must lie within the operand.
    #[inline(always)]
    #[must_use]
    pub unsafe fn offset(self, count: isize) -> Self {
        let size = self.stored.size(std::mem::size_of::<E>());
        // SAFETY: forwarded from the caller.
        let ptr = unsafe { self.ptr.0.cast::<u8>().offset(count * size) };
        Src {
            ptr: SendPtr(ptr.cast()),
            stored: self.stored,
        }
    }

    /// The element `count` elements on, read as `E`.
    ///
    /// # Safety
    /// That element must be valid, aligned and initialised.
    #[inline(always)]
    pub unsafe fn read(self, count: isize) -> E {
        // SAFETY: forwarded from the caller.
        unsafe {
            // The native case first: a row's finish reads single elements this way. Types
            // nothing converts to (class labels) skip the test at compile time.
            if E::STORED.is_native() || self.stored.is_native() {
                return *self.ptr.0.offset(count);
            }
            match self.stored {
                Stored::F32 => E::from_f32(*self.ptr.0.cast::<f32>().offset(count)),
                Stored::F64 => E::from_f64(*self.ptr.0.cast::<f64>().offset(count)),
                Stored::Half(h) => E::from_half_bits(*self.ptr.0.cast::<u16>().offset(count), h),
                Stored::Native => *self.ptr.0.offset(count),
            }
        }
    }
}

/// Gathers the `rows × n` elements at `src + r * rs + i * st`, row after row, into `out`,
/// converting each to `E`: the path of operands stored as another type than the one read.
///
/// Out of line on purpose: one copy per element type and stored type, whatever instruction
/// set the calling kernel is compiled for (a conversion loop vectorises on the baseline too),
/// so that reading mixed dtypes adds almost nothing to the size of the kernels.
///
/// # Safety
/// Every such element must be valid, aligned and initialised; `out.len() == rows * n`.
#[inline(never)]
pub unsafe fn gather_converted<E: Load>(
    out: &mut [E],
    src: Src<E>,
    rows: usize,
    n: usize,
    rs: isize,
    st: isize,
) {
    debug_assert_eq!(out.len(), rows * n);
    // SAFETY: forwarded from the caller.
    unsafe {
        match src.stored {
            Stored::F32 => gather(out, src.ptr.0.cast::<f32>(), rows, n, rs, st, E::from_f32),
            Stored::F64 => gather(out, src.ptr.0.cast::<f64>(), rows, n, rs, st, E::from_f64),
            Stored::Half(Half::F16) => gather(out, src.ptr.0.cast::<u16>(), rows, n, rs, st, |b| {
                E::from_half_bits(b, Half::F16)
            }),
            Stored::Half(Half::Bf16) => {
                gather(out, src.ptr.0.cast::<u16>(), rows, n, rs, st, |b| {
                    E::from_half_bits(b, Half::Bf16)
                })
            }
            Stored::Native => gather(out, src.ptr.0, rows, n, rs, st, |v| v),
        }
    }
}

/// [`gather_converted`] for one stored type `S`: in memory order, across rows when
/// neighbouring rows are closer in memory than neighbouring elements.
///
/// # Safety
/// As [`gather_converted`].
#[inline(always)]
unsafe fn gather<S: Copy, E>(
    out: &mut [E],
    ptr: *const S,
    rows: usize,
    n: usize,
    rs: isize,
    st: isize,
    convert: impl Fn(S) -> E,
) {
    if st == 1 {
        // Contiguous rows: a plain loop over a slice, which vectorises (the conversions of
        // the 16-bit formats are branch-free), where the strided loop below stays scalar.
        for (r, row) in out.chunks_exact_mut(n.max(1)).enumerate() {
            // SAFETY: the caller guarantees the `n` elements of row `r`, `ptr + r * rs + i`
            // for `i < n`, are valid and initialised: with `st == 1` they are contiguous.
            let src = unsafe { std::slice::from_raw_parts(ptr.offset(r as isize * rs), row.len()) };
            for (slot, &v) in row.iter_mut().zip(src) {
                *slot = convert(v);
            }
        }
        return;
    }
    // SAFETY: forwarded from the caller.
    let at =
        |r: usize, i: usize| convert(unsafe { *ptr.offset(r as isize * rs + i as isize * st) });
    if rows > 1 && rs.unsigned_abs() < st.unsigned_abs() {
        for i in 0..n {
            for r in 0..rows {
                out[r * n + i] = at(r, i);
            }
        }
    } else {
        for (r, row) in out.chunks_exact_mut(n.max(1)).enumerate() {
            for (i, slot) in row.iter_mut().enumerate() {
                *slot = at(r, i);
            }
        }
    }
}

/// A stack buffer for gathering one strided tile of an operand.
///
/// The storage starts uninitialised and is initialised only as far as it is used (`init`
/// grows, never shrinks): a kernel holds one buffer per operand, most of which are never
/// touched when the operands are contiguous, and zeroing them all on every block is a
/// measurable share of a small call.
pub struct TileBuf<E> {
    data: [MaybeUninit<E>; TILE],
    /// `data[..init]` is initialised.
    init: usize,
    /// The source of a broadcast (stride 0) fill still held in `data`, to skip refilling.
    filled_from: *const E,
    filled_len: usize,
}

impl<E: Copy + Default> Default for TileBuf<E> {
    // Inlined where the buffer is made: otherwise each 4 KiB buffer is built in a temporary
    // and copied into its place (six copies per block of a divergence, most of a small
    // call's memory traffic).
    #[inline(always)]
    fn default() -> Self {
        TileBuf {
            data: [MaybeUninit::uninit(); TILE],
            init: 0,
            filled_from: std::ptr::null(),
            filled_len: 0,
        }
    }
}

impl<E: Copy + Default> TileBuf<E> {
    /// Sets the first `n <= TILE` slots to `value(i)`.
    #[inline(always)]
    fn write(&mut self, n: usize, value: impl Fn(usize) -> E) {
        for (i, slot) in self.data[..n].iter_mut().enumerate() {
            slot.write(value(i));
        }
        self.init = self.init.max(n);
    }

    /// The first `n <= TILE` slots, initialising (with `E::default()`) those never used yet.
    #[inline(always)]
    fn slots(&mut self, n: usize) -> &mut [E] {
        assert!(n <= TILE);
        if n > self.init {
            for slot in &mut self.data[self.init..n] {
                slot.write(E::default());
            }
            self.init = n;
        }
        // SAFETY: `data[..init]` is initialised and `n <= init`; `MaybeUninit<E>` has `E`'s
        // layout.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast::<E>(), n) }
    }

    /// The `n <= TILE` elements at `ptr + i * stride`, as a slice: the array's own memory when
    /// `stride == 1`, this buffer (gathered) otherwise.
    ///
    /// # Safety
    /// `ptr + i * stride` must be a valid, aligned, initialised `E` for every `i < n`, and
    /// nothing may write to those elements while the returned slice lives.
    #[inline(always)]
    pub unsafe fn view(&mut self, ptr: *const E, stride: isize, n: usize) -> &[E] {
        debug_assert!(n <= TILE);
        if stride == 1 {
            // SAFETY: the caller guarantees n contiguous valid elements at ptr.
            return unsafe { std::slice::from_raw_parts(ptr, n) };
        }
        if stride == 0 {
            if self.filled_from != ptr || self.filled_len < n {
                // SAFETY: the caller guarantees ptr is valid.
                let v = unsafe { *ptr };
                self.write(n, |_| v);
                self.filled_from = ptr;
                self.filled_len = n;
            }
            return self.slots(n);
        }
        self.filled_from = std::ptr::null();
        // SAFETY: the caller guarantees ptr + i * stride is valid for i < n.
        self.write(n, |i| unsafe { *ptr.offset(i as isize * stride) });
        self.slots(n)
    }

    /// [`TileBuf::view`] of an operand that may be stored as another type ([`Src`]): read in
    /// place when stored as `E` with `stride == 1`, gathered otherwise, each element converted
    /// as it is gathered.
    ///
    /// # Safety
    /// As [`TileBuf::view`], for the elements as stored.
    #[inline(always)]
    pub unsafe fn view_src(&mut self, src: Src<E>, stride: isize, n: usize) -> &[E]
    where
        E: Load,
    {
        debug_assert!(n <= TILE);
        if src.stored.is_native() {
            // SAFETY: a `Native` source holds `E` itself, and the caller guarantees its n
            // elements from `src` with step `stride` are valid while the view lives, which is
            // `view`'s contract.
            return unsafe { self.view(src.ptr.0, stride, n) };
        }
        if stride == 0 {
            if self.filled_from != src.ptr.0.cast_const() || self.filled_len < n {
                // SAFETY: the caller guarantees the element is valid.
                let v = unsafe { src.read(0) };
                self.write(n, |_| v);
                self.filled_from = src.ptr.0;
                self.filled_len = n;
            }
            return self.slots(n);
        }
        self.filled_from = std::ptr::null();
        let out = self.slots(n);
        // SAFETY: the caller guarantees src + i * stride is valid for i < n.
        unsafe { gather_converted(out, src, 1, n, 0, stride) };
        out
    }

    /// A scratch slice of `n <= TILE` elements for results that are scattered afterwards.
    #[inline(always)]
    pub fn scratch(&mut self, n: usize) -> &mut [E] {
        self.filled_from = std::ptr::null();
        self.slots(n)
    }
}

/// Writes `values` to `ptr + i * stride`.
///
/// # Safety
/// Every `ptr + i * stride` for `i < values.len()` must be valid for writes, aligned, and not
/// read or written by anyone else meanwhile.
#[inline(always)]
pub unsafe fn scatter<E: Copy>(values: &[E], ptr: *mut E, stride: isize) {
    for (i, &v) in values.iter().enumerate() {
        // SAFETY: guaranteed by the caller.
        unsafe { *ptr.offset(i as isize * stride) = v };
    }
}

/// An output element type that may be stored rounded to a 16-bit float ([`Dst`]).
pub trait Store: Copy + Send + Sync + 'static {
    /// This value rounded to the 16-bit format `half` (nearest, ties to even).
    fn to_half(self, half: Half) -> u16;
}

impl<T: Float> Store for T {
    #[inline(always)]
    fn to_half(self, half: Half) -> u16 {
        HalfConvert::to_half(self, half)
    }
}

/// Where an output written as `E` lies, and how it is stored: as `E` itself (`Native`), or as
/// a 16-bit float ([`Stored::Half`]) that each value is rounded to as it is written. The
/// write-side twin of [`Src`]; may cross to rayon workers, with [`SendPtr`]'s contract.
#[derive(Clone, Copy, Debug)]
pub struct Dst<E> {
    /// The first element; of type `E` only when `stored` is `Native`.
    ptr: SendPtr<E>,
    stored: Stored,
}

impl<E> From<*mut E> for Dst<E> {
    fn from(ptr: *mut E) -> Self {
        Dst {
            ptr: SendPtr(ptr),
            stored: Stored::Native,
        }
    }
}

impl<E: Store> Dst<E> {
    /// No output (a null pointer): nothing is written.
    pub fn null() -> Self {
        Dst::from(std::ptr::null_mut())
    }

    /// 16-bit floats of the format `half` at `ptr` (their bits), written from `E` values.
    pub fn half(ptr: *mut u16, half: Half) -> Self {
        Dst {
            ptr: SendPtr(ptr.cast()),
            stored: Stored::Half(half),
        }
    }

    /// True for no output.
    #[inline(always)]
    pub fn is_null(self) -> bool {
        self.ptr.0.is_null()
    }

    /// The first element when it is stored as `E` (to be written in place); `None` when the
    /// values are rounded to another format on the way.
    #[inline(always)]
    pub fn native(self) -> Option<*mut E> {
        self.stored.is_native().then_some(self.ptr.0)
    }

    /// The element `count` elements on, as `ptr.offset(count)` for a `*mut E`.
    ///
    /// # Safety
    /// As [`pointer::offset`]: the result must lie within the output.
    #[inline(always)]
    #[must_use]
    pub unsafe fn offset(self, count: isize) -> Self {
        let size = self.stored.size(std::mem::size_of::<E>());
        // SAFETY: forwarded from the caller.
        let ptr = unsafe { self.ptr.0.cast::<u8>().offset(count * size) };
        Dst {
            ptr: SendPtr(ptr.cast()),
            stored: self.stored,
        }
    }

    /// Writes `value` to the element `count` elements on.
    ///
    /// # Safety
    /// That element must be valid for writes, aligned, and not read or written by anyone else
    /// meanwhile.
    #[inline(always)]
    pub unsafe fn write(self, count: isize, value: E) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match self.stored {
                Stored::Half(h) => *self.ptr.0.cast::<u16>().offset(count) = value.to_half(h),
                _ => *self.ptr.0.offset(count) = value,
            }
        }
    }

    /// Writes `values` to the elements `i * stride` on, as [`scatter`] does, rounding each to
    /// the stored format.
    ///
    /// # Safety
    /// As [`scatter`], for the elements as stored.
    #[inline(always)]
    pub unsafe fn scatter(self, values: &[E], stride: isize) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match self.stored {
                Stored::Half(h) => scatter_half(values, self.ptr.0.cast(), stride, h),
                _ => scatter(values, self.ptr.0, stride),
            }
        }
    }
}

/// [`Dst::scatter`] to a 16-bit float output: out of line, one copy per element type and
/// format, as [`gather_converted`] is.
///
/// # Safety
/// As [`scatter`].
#[inline(never)]
unsafe fn scatter_half<E: Store>(values: &[E], ptr: *mut u16, stride: isize, half: Half) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match half {
            Half::F16 => scatter_with(values, ptr, stride, |v| v.to_half(Half::F16)),
            Half::Bf16 => scatter_with(values, ptr, stride, |v| v.to_half(Half::Bf16)),
        }
    }
}

/// Writes `convert(values[i])` to `ptr + i * stride`, contiguous outputs in a loop that
/// vectorises.
///
/// # Safety
/// As [`scatter`].
#[inline(always)]
unsafe fn scatter_with<E: Copy, S: Copy>(
    values: &[E],
    ptr: *mut S,
    stride: isize,
    convert: impl Fn(E) -> S,
) {
    if stride == 1 {
        // SAFETY: with unit stride the elements are `values.len()` contiguous ones from `ptr`,
        // which the caller guarantees are valid and exclusively this call's.
        let out = unsafe { std::slice::from_raw_parts_mut(ptr, values.len()) };
        for (o, &v) in out.iter_mut().zip(values) {
            *o = convert(v);
        }
        return;
    }
    for (i, &v) in values.iter().enumerate() {
        // SAFETY: guaranteed by the caller.
        unsafe { *ptr.offset(i as isize * stride) = convert(v) };
    }
}

/// The C-order multi-index and value of the first element for which `bad` holds: the cold
/// path that turns a kernel's domain-error flag into a message naming the position.
///
/// # Safety
/// `ptr` stepped by `strides` over `shape` must address valid, aligned, initialised elements.
pub unsafe fn find_first<E: Copy>(
    ptr: *const E,
    shape: &[usize],
    strides: &[isize],
    bad: impl Fn(E) -> bool,
) -> Option<(Vec<usize>, E)> {
    let len: usize = shape.iter().product();
    let mut index = vec![0usize; shape.len()];
    for _ in 0..len {
        let offset: isize = index
            .iter()
            .zip(strides)
            .map(|(&i, &s)| i as isize * s)
            .sum();
        // SAFETY: index is inside shape, so the offset addresses a valid element.
        let v = unsafe { *ptr.offset(offset) };
        if bad(v) {
            return Some((index, v));
        }
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    None
}

/// A raw pointer that may cross to rayon workers.
///
/// The owner of a `SendPtr` promises that the memory stays valid (and, for writes, that each
/// element is written by at most one block) for as long as the parallel work runs.
#[derive(Clone, Copy, Debug)]
pub struct SendPtr<E>(pub *mut E);
// SAFETY: a SendPtr is only an address; the code that dereferences it upholds the aliasing
// and lifetime contract stated on the type.
unsafe impl<E> Send for SendPtr<E> {}
// SAFETY: sharing a `SendPtr` between threads shares only the address; every access
// through it is an `unsafe` read or write whose caller guarantees no two threads touch
// the same element while one of them writes it.
unsafe impl<E> Sync for SendPtr<E> {}

impl<E> SendPtr<E> {
    pub fn from_const(p: *const E) -> Self {
        SendPtr(p as *mut E)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs<const K: usize>(l: &Layout<K>, r: Range<usize>) -> Vec<(usize, usize, [isize; K])> {
        let mut v = vec![];
        l.for_each_run(r, |flat, len, off, _| v.push((flat, len, off)));
        v
    }

    #[test]
    fn c_and_fortran_contiguous_merge_to_one_run() {
        let c = Layout::new(&[3, 4, 5], [&[20, 5, 1]]);
        assert_eq!(c.shape(), &[60]);
        let f = Layout::new(&[3, 4, 5], [&[1, 3, 12]]);
        assert_eq!(f.shape(), &[60]);
    }

    #[test]
    fn broadcast_operand_keeps_dims_apart() {
        // input (3, 4) C-contiguous, weight (4,) broadcast along rows.
        let l = Layout::new(&[3, 4], [&[4, 1], &[0, 1]]);
        assert_eq!(l.shape(), &[3, 4]);
        assert_eq!(
            runs(&l, 2..9),
            vec![(2, 2, [2, 2]), (4, 4, [4, 0]), (8, 1, [8, 0])]
        );
    }

    #[test]
    fn runs_visit_every_offset_once_in_order() {
        // A transposed, sliced view: shape (5, 3) with strides (2, 30), plus a C output.
        let l = Layout::new(&[5, 3], [&[2, 30], &[3, 1]]);
        let mut seen = vec![];
        l.for_each_run(0..15, |_, len, off, st| {
            for i in 0..len as isize {
                seen.push((off[0] + i * st[0], off[1] + i * st[1]));
            }
        });
        // Operand 0 is walked in memory order, and operand 1 follows it element by element.
        let mut expected = vec![];
        for j in 0..3 {
            for i in 0..5 {
                expected.push((2 * i + 30 * j, 3 * i + j));
            }
        }
        assert_eq!(seen, expected);
    }

    #[test]
    fn more_dimensions_than_held_inline() {
        // Seven dimensions that cannot merge (every other element of each): past the inline
        // capacity of `Dims`, and walked from a start inside them.
        let shape = [2usize, 3, 2, 2, 3, 2, 2];
        let mut c = vec![0isize; shape.len()];
        let mut step = 2isize;
        for d in (0..shape.len()).rev() {
            c[d] = step;
            step *= 2 * shape[d] as isize;
        }
        let l = Layout::new(&shape, [&c]);
        assert_eq!(l.shape().len(), shape.len());
        let n: usize = shape.iter().product();
        let mut seen = vec![];
        l.for_each_run(5..n, |_, len, off, st| {
            for i in 0..len as isize {
                seen.push(off[0] + i * st[0]);
            }
        });
        let want: Vec<isize> = (5..n)
            .map(|f| {
                let (mut rest, mut off) = (f, 0);
                for d in (0..shape.len()).rev() {
                    off += (rest % shape[d]) as isize * c[d];
                    rest /= shape[d];
                }
                off
            })
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn zero_d_and_empty() {
        let l = Layout::<1>::new(&[], [&[]]);
        assert_eq!(l.len(), 1);
        assert_eq!(runs(&l, 0..1), vec![(0, 1, [0])]);
        let e = Layout::new(&[3, 0], [&[0, 1]]);
        assert!(e.is_empty());
        assert_eq!(runs(&e, 0..0), vec![]);
    }

    #[test]
    fn find_first_is_in_c_order() {
        // Fortran-ordered (2, 3): element [i, j] at i + 2 j; bad values at [0, 2] and [1, 0].
        let data = [0, 9, 0, 0, 9, 0];
        // SAFETY: every element read lies inside the buffer, which outlives the view.
        let hit = unsafe { find_first(data.as_ptr(), &[2, 3], &[1, 2], |v| v == 9) };
        assert_eq!(hit, Some((vec![0, 2], 9)));
        // SAFETY: the same (2, 3) walk over the same six elements of `data`.
        let none = unsafe { find_first(data.as_ptr(), &[2, 3], &[1, 2], |v| v > 9) };
        assert_eq!(none, None);
    }

    #[test]
    fn sources_stored_as_the_other_float_are_converted_on_load() {
        let x64: Vec<f64> = (0..40).map(|i| 1.0 / (i as f64 + 3.0)).collect();
        let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        // (first element, stride, count): contiguous, strided, broadcast, reversed.
        for (start, stride, n) in [
            (0usize, 1isize, 40usize),
            (1, 3, 13),
            (5, 0, 9),
            (39, -2, 10),
        ] {
            let at = |i: usize| (start as isize + i as isize * stride) as usize;
            let mut b32 = TileBuf::<f32>::default();
            // SAFETY: every element read lies inside the buffer, which outlives the view.
            let src = unsafe { Src::<f32>::f64(x64.as_ptr()).offset(start as isize) };
            assert_eq!(src.stored(), Stored::F64);
            // SAFETY: the n elements from `start` with step `stride` lie inside `x64` (at most
            // index 39), which outlives the copied-out view.
            let got = unsafe { b32.view_src(src, stride, n) }.to_vec();
            let want: Vec<f32> = (0..n).map(|i| x64[at(i)] as f32).collect();
            assert_eq!(got, want, "f64 as f32, stride {stride}");
            let mut b64 = TileBuf::<f64>::default();
            // SAFETY: every element read lies inside the buffer, which outlives the view.
            let src = unsafe { Src::<f64>::f32(x32.as_ptr()).offset(start as isize) };
            // SAFETY: the n elements from `start` with step `stride` lie inside `x32` (at most
            // index 39), which outlives the copied-out view.
            let got = unsafe { b64.view_src(src, stride, n) }.to_vec();
            let want: Vec<f64> = (0..n).map(|i| f64::from(x32[at(i)])).collect();
            assert_eq!(got, want, "f32 as f64, stride {stride}");
            // SAFETY: element 2 of the walk, inside `x32` (n ≥ 9 > 2).
            assert_eq!(unsafe { src.read(2 * stride) }, want[2]);
        }
        // Stored as read: in place, the `Native` source whichever constructor made it.
        let src = Src::<f64>::f64(x64.as_ptr());
        assert_eq!(src.stored(), Stored::Native);
        let mut b = TileBuf::<f64>::default();
        // SAFETY: every element read lies inside the buffer, which outlives the view.
        let view = unsafe { b.view_src(src, 1, 40) };
        assert!(std::ptr::eq(view.as_ptr(), x64.as_ptr()));
        // A broadcast value is refilled when the source moves.
        let mut b32 = TileBuf::<f32>::default();
        // SAFETY: stride 0 reads only `x64[0]`.
        let first = unsafe { b32.view_src(Src::f64(x64.as_ptr()), 0, 4) }.to_vec();
        // SAFETY: stride 0 reads only `x64[1]`.
        let second = unsafe { b32.view_src(Src::f64(x64[1..].as_ptr()), 0, 4) }.to_vec();
        assert_eq!((first[3], second[3]), (x64[0] as f32, x64[1] as f32));
    }

    #[test]
    fn negative_strides() {
        let l = Layout::new(&[4], [&[-1]]);
        assert_eq!(runs(&l, 1..4), vec![(1, 3, [-1])]);
    }
}
