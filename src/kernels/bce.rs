//! Binary cross-entropy, on probabilities and on logits.
//!
//! With `p` the predicted probability, `x` the logit, `y` the target in `[0, 1]`, `w` the
//! element weight and `c` the positive-class weight (`pos_weight`), each element's loss is,
//! exactly as PyTorch defines it:
//!
//! ```text
//! bce(p, y)            = -w · [ y · max(ln p, -100) + (1 - y) · max(ln(1 - p), -100) ]
//! bce_with_logits(x, y) = w · [ (1 - y) · x - (1 + (c - 1) · y) · log_sigmoid(x) ]
//! log_sigmoid(x)       = min(x, 0) - ln(1 + e^-|x|)          (never overflows)
//! ```
//!
//! The logits loss is evaluated in a form without PyTorch's cancellation (see [`logits_loss`]):
//! within a few ulp of the exact loss of its inputs for `y ∈ [0, 1]` and `c ≥ 0`, where
//! PyTorch's formula loses up to `|x| / loss` ulp (e.g. `x = -50`, small `y`).
//! `ln(1 - p)` keeps full accuracy for tiny `p` (see [`super::math`]). Hard labels (integer or
//! bool targets, and float targets that are all exactly 0 or 1 within a tile) take a path with
//! one log per element, `ln(y ? p : 1 - p)`. Each tile is one fused pass (loss, domain checks,
//! weights, sum) compiled per instruction set ([`super::isa`]); logs and exponentials are the
//! vectorised ones of [`super::math`] (`f32` within 2 ulp, `f64` within about 1 ulp). Conventions: a probability outside `[0, 1]`
//! or a target outside `[0, 1]` (for integer labels: other than 0 or 1) is a domain error
//! reported through [`Partial::flags`] (`INPUT` / `TARGET`) with its flat index; NaN is not an
//! error and propagates into the result. Sums are accumulated in `f64` for `f32` input too.
//!
//! Sample weights (scikit-learn's `sample_weight`, layout operand 5 when given) multiply each
//! element's loss by `w · sw` (that product formed first, in `T`; `sw` alone without `w`),
//! and their sum `Σ sw` is the mean's denominator ([`Partial::weight`]). The tile loop does
//! all of it in its one pass over the tile ([`SampleTiles`] only gathers them): the multiply,
//! the sign check and `Σ sw`, summed in `f64` in the lanes and fold order of
//! [`super::lanes::sum_lanes`] over the tile (element `i` into lane `i mod 16`, lanes folded
//! by halves), tile after tile. A negative sample weight is a domain error
//! ([`flags::WEIGHT`], at the first one); NaN propagates.
//!
//! NaN policy ([`NanPolicy`], SciPy's `nan_policy`, in [`Operands::nan`]): under
//! [`NanPolicy::Omit`] the tile loop runs in a mode of its own (`OMIT`): an element where any
//! operand is NaN (input, a float target, weight, pos_weight, sample weight) keeps its NaN loss
//! in `out` but is left out of the sum, of `count` and of `Σ sw`, which is then summed over
//! the elements kept in the loop's own `L` lanes (8 or 16, see [`LANES`]), folded by halves.
//! A NaN operand always makes its loss NaN, so under [`NanPolicy::Raise`] the kernel
//! runs as under [`NanPolicy::Propagate`] and the caller looks for a NaN only when the sum is
//! NaN.

/// The gradient and diagonal Hessian of the logits loss, beside it.
pub mod grad;

use rayon::ThreadPool;

use super::float::{Float, Target};
use super::isa::{self, Arch, Isa, Kernel};
use super::lanes::LANES as SUM_LANES;
use super::nan::NanPolicy;
use super::reduce::{flags, reduce_from, Partial, BLOCK};
use super::strided::{Dst, Layout, Src, TileBuf};

/// Which binary cross-entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `input` holds probabilities in `[0, 1]`.
    Probabilities,
    /// `input` holds logits (any real number).
    Logits,
}

/// What every binary-target kernel reads, in place in memory: operands 0 to 3 of its
/// [`Layout`] (input, target, weight, pos_weight). A missing weight or pos_weight points at a
/// single `1` ([`Float::one_ref`]) with stride 0. Each is read as `T` (the target as `Y`)
/// whatever float type it is stored in ([`Src`]: a float16 input is widened to `f32` as its
/// tiles are gathered), and targets as probabilities ([`Target::prob`]).
pub struct Inputs<T, Y> {
    pub input: Src<T>,
    pub target: Src<Y>,
    pub weight: Src<T>,
    pub pos_weight: Src<T>,
}

impl<T: Float, Y: Target> Inputs<T, Y> {
    /// True when there is no element weight (every weight is the constant 1).
    pub fn unweighted(&self) -> bool {
        self.weight.is(T::one_ref())
    }

    /// True when there is no positive-class weight.
    pub fn no_pos_weight(&self) -> bool {
        self.pos_weight.is(T::one_ref())
    }
}

/// Gather buffers for one tile of each of the four [`Inputs`].
pub struct InputTiles<T, Y> {
    x: TileBuf<T>,
    y: TileBuf<Y>,
    w: TileBuf<T>,
    pw: TileBuf<T>,
}

impl<T: Float, Y: Target> Default for InputTiles<T, Y> {
    fn default() -> Self {
        InputTiles {
            x: TileBuf::default(),
            y: TileBuf::default(),
            w: TileBuf::default(),
            pw: TileBuf::default(),
        }
    }
}

impl<T: Float, Y: Target> InputTiles<T, Y> {
    /// The `n` elements of each input from the offsets `at` with steps `st` (layout operands
    /// 0 to 3): `(input, target, weight, pos_weight)`, read in place when contiguous.
    ///
    /// # Safety
    /// Those elements must be valid and unmodified while the slices live (see
    /// [`TileBuf::view`]).
    #[inline(always)]
    pub unsafe fn view<'a>(
        &'a mut self,
        ins: &Inputs<T, Y>,
        at: &[isize],
        st: &[isize],
        n: usize,
    ) -> (&'a [T], &'a [Y], &'a [T], &'a [T]) {
        // SAFETY: the caller guarantees the elements are valid and unmodified while the slices
        // live; that is the whole of `gather`'s contract.
        unsafe { self.gather(ins, at, st, n, false) }
    }

    /// [`InputTiles::view`] for a kernel that never reads an absent weight: the weight and
    /// the positive-class weight come back empty when the call has none ([`Inputs::unweighted`],
    /// [`Inputs::no_pos_weight`]), instead of as `n` gathered ones. (Each block starts with
    /// fresh buffers, so those ones cost a buffer allocation and a fill per operand and block.)
    ///
    /// # Safety
    /// As for [`InputTiles::view`].
    #[inline(always)]
    pub unsafe fn view_present<'a>(
        &'a mut self,
        ins: &Inputs<T, Y>,
        at: &[isize],
        st: &[isize],
        n: usize,
    ) -> (&'a [T], &'a [Y], &'a [T], &'a [T]) {
        // SAFETY: the caller guarantees the elements are valid and unmodified while the slices
        // live; that is the whole of `gather`'s contract.
        unsafe { self.gather(ins, at, st, n, true) }
    }

    /// [`InputTiles::view`], with absent weights left empty when `skip_absent` (a constant at
    /// each call site, so the branch folds away).
    ///
    /// # Safety
    /// As for [`InputTiles::view`].
    #[inline(always)]
    unsafe fn gather<'a>(
        &'a mut self,
        ins: &Inputs<T, Y>,
        at: &[isize],
        st: &[isize],
        n: usize,
        skip_absent: bool,
    ) -> (&'a [T], &'a [Y], &'a [T], &'a [T]) {
        // SAFETY: the caller guarantees the n elements of each operand from `at` with steps
        // `st` are valid and unmodified while the slices live (a skipped absent weight is not
        // read at all), which is what each `view` / `view_src` requires; the offsets stay
        // inside those operands.
        unsafe {
            (
                self.x.view_src(ins.input.offset(at[0]), st[0], n),
                self.y.view_src(ins.target.offset(at[1]), st[1], n),
                if skip_absent && ins.unweighted() {
                    &[]
                } else {
                    self.w.view_src(ins.weight.offset(at[2]), st[2], n)
                },
                if skip_absent && ins.no_pos_weight() {
                    &[]
                } else {
                    self.pw.view_src(ins.pos_weight.offset(at[3]), st[3], n)
                },
            )
        }
    }
}

/// The operands of one binary cross-entropy call: the [`Inputs`], `out` (layout operand
/// 4, stored as `T` or as a 16-bit float, see [`Dst`]), null when nothing is written, and the
/// sample weights (layout operand 5, read as `T` whatever float type they are stored in),
/// `None` when not given; and the NaN policy (the kernel acts on [`NanPolicy::Omit`] only:
/// under [`NanPolicy::Raise`] it computes what [`NanPolicy::Propagate`] does, whose NaN sum
/// tells the caller to look for a NaN).
pub struct Operands<T, Y> {
    pub inputs: Inputs<T, Y>,
    pub out: Dst<T>,
    pub sample_weight: Option<Src<T>>,
    pub nan: NanPolicy,
    pub layout: Layout<6>,
}

/// The gather buffer for one tile of sample weights. The tile kernel ([`lanes`]) multiplies
/// them into the losses, sums them and checks their sign, in its own pass over the tile.
pub struct SampleTiles<T> {
    sw: TileBuf<T>,
}

impl<T: Float> Default for SampleTiles<T> {
    fn default() -> Self {
        SampleTiles {
            sw: TileBuf::default(),
        }
    }
}

impl<T: Float> SampleTiles<T> {
    /// The `n` sample weights of one tile, from `src` at offset `at` with step `st`, read in
    /// place when contiguous (and widened to `T` as [`Src`] reads them).
    ///
    /// # Safety
    /// The `n` sample weights from `src.offset(at)` with step `st` must be valid and
    /// unmodified while the slice lives (see [`TileBuf::view_src`]).
    #[inline(always)]
    pub unsafe fn view(&mut self, src: Src<T>, at: isize, st: isize, n: usize) -> &[T] {
        // SAFETY: the caller's contract.
        unsafe { self.sw.view_src(src.offset(at), st, n) }
    }
}

/// Elements per group of the tile loop (and independent `f64` accumulators of its sum) with
/// AVX-512 and `f32`: one 512-bit register. `f64`, and narrower instruction sets, use
/// [`LANES_NARROW`], which keeps the loop's working set in registers (16 `f64` lanes would need
/// two registers per value, and the logits loop spilled).
const LANES: usize = 16;
const LANES_NARROW: usize = 8;

/// Loss of one element on probabilities with a soft (probability) target:
/// `y·(-max(ln p, -100)) + (1 - y)·(-max(ln(1 - p), -100))`.
#[inline(always)]
fn prob_soft<A: Arch, T: Float>(p: T, y: T) -> T {
    let lp = p.bce_nlog_on::<A>(true);
    let lq = p.bce_nlog_on::<A>(false);
    y.mul_add_on::<A>(lp, (T::ONE - y) * lq)
}

/// Loss of one element on probabilities with a hard target (`one` = label 1): one log.
#[inline(always)]
fn prob_hard<A: Arch, T: Float>(p: T, one: bool) -> T {
    p.bce_nlog_on::<A>(one)
}

/// Loss of one element on logits (before the element weight); `PW`: with a positive-class
/// weight `c` (otherwise `c` is 1 and not read).
///
/// PyTorch's `(1 - y)·x - (1 + (c - 1)·y)·log_sigmoid(x)` subtracts two terms of size `|x|`
/// for `x < 0` (`x = -50`, `y = 10^-3`: 50 - 49.95), and its factor `1 + (c - 1)·y` cancels
/// for small `c` and `y` near 1. Written with `sp = ln(1 + e^-|x|)` and `L = (1 - y) + c·y`
/// (the same factor, without the cancellation), the `x` terms cancel algebraically:
///
/// ```text
/// x ≥ 0:  (1 - y)·x + L·sp          x < 0:  -c·y·x + L·sp
/// ```
///
/// For `y ∈ [0, 1]` and `c ≥ 0` both terms are non-negative: no subtraction is left, and the
/// loss is within a few ulp of the exact loss of its inputs (4 ulp tested, any weight). For
/// other `y` or `c` the error is a few ulp of the larger term. A `-inf` logit gives NaN, as
/// PyTorch's `∞ - ∞` does (the `x · 0` below, 0 for every finite `x`).
#[inline(always)]
fn logits_loss<A: Arch, T: Float, const PW: bool>(x: T, y: T, pos_weight: T) -> T {
    let sp = (-x.abs()).softplus_nonpos_on::<A>();
    let pos = x >= T::ZERO;
    let keep = T::ONE - y;
    if PW {
        let cy = pos_weight * y;
        let lin = if pos {
            keep * x
        } else {
            (-cy).mul_add_on::<A>(x, x * T::ZERO)
        };
        (keep + cy).mul_add_on::<A>(sp, lin)
    } else {
        let lin = if pos {
            keep * x
        } else {
            (-y).mul_add_on::<A>(x, x * T::ZERO)
        };
        lin + sp
    }
}

/// True if `p` is a valid probability (NaN passes: it propagates instead).
#[inline(always)]
fn prob_in_range<T: Float>(p: T) -> bool {
    !((p < T::ZERO) | (p > T::ONE))
}

/// One tile of at most [`TILE`](super::strided::TILE) elements, all slices of the same length: the unit of work
/// that [`isa::dispatch_on`] compiles per instruction set.
struct Tile<'a, T, Y> {
    kind: Kind,
    x: &'a [T],
    y: &'a [Y],
    /// `None`: every weight is 1 (no multiplication).
    w: Option<&'a [T]>,
    /// `None`: every positive-class weight is 1.
    pw: Option<&'a [T]>,
    /// Where each element's loss goes, when requested.
    out: Option<&'a mut [T]>,
    /// [`NanPolicy::Omit`]: elements with a NaN operand are left out of the sums.
    omit: bool,
    /// The sample weights (`None`: none): each loss is multiplied by `w · sw` (formed in
    /// `T`, `w` first), and they are summed and checked for sign in the same pass.
    sw: Option<&'a [T]>,
}

/// What one tile adds up: its loss sum, the domain-error flags met (with [`flags::WEIGHT`]
/// for a negative sample weight), the number of elements kept (under [`NanPolicy::Omit`];
/// the tile's length otherwise) and the sum of their sample weights (0 without them).
#[derive(Clone, Copy, Debug)]
struct TileSums {
    sum: f64,
    flags: u32,
    kept: u64,
    sw_sum: f64,
}

impl<T: Float, Y: Target> Kernel for Tile<'_, T, Y> {
    type Output = TileSums;

    /// Chooses the element formula once per tile, then runs [`lanes`]: hard labels take the
    /// one-log path; float targets take it too until one that is not exactly 0 or 1 shows
    /// up, and then the tile is done again with the two-log formula.
    #[inline(always)]
    fn run<A: Arch>(self) -> TileSums {
        let n = self.x.len();
        let (x, y) = (self.x, &self.y[..n]);
        let w = self.w.map(|w| &w[..n]);
        let pw = self.pw.map(|pw| &pw[..n]);
        let sw = self.sw.map(|sw| &sw[..n]);
        let omit = self.omit;
        let mut out = self.out.map(|o| &mut o[..n]);
        // Absent operands are passed as `x` and never read (the const flags say so). `@pick`
        // turns each optional operand (`w`, `pw`, `sw`, in the order of `lanes`' flags) into
        // its const flag and its slice.
        macro_rules! go {
            (@pick [$($c:tt)*] [$($arg:expr),*];) => {
                lanes::<A, T, Y, $($c)*>(x, y, $($arg,)* out.as_deref_mut())
            };
            (@pick [$($c:tt)*] [$($arg:expr),*]; $opt:expr $(, $rest:expr)*) => {
                match $opt {
                    None => go!(@pick [$($c)* false,] [$($arg,)* x]; $($rest),*),
                    Some(v) => go!(@pick [$($c)* true,] [$($arg,)* v]; $($rest),*),
                }
            };
            ($mode:expr, $l:expr) => {
                if omit {
                    go!(@pick [{ $mode }, $l, true,] []; w, pw, sw)
                } else {
                    go!(@pick [{ $mode }, $l, false,] []; w, pw, sw)
                }
            };
            ($mode:expr) => {
                if A::ISA == Isa::Avx512 && T::NARROW {
                    go!($mode, LANES)
                } else {
                    go!($mode, LANES_NARROW)
                }
            };
        }
        let first = match self.kind {
            Kind::Probabilities if Y::HARD => go!(HARD),
            Kind::Probabilities => go!(HARD_FLOAT),
            Kind::Logits => go!(LOGITS),
        };
        match first {
            Some(done) => done,
            None => go!(SOFT).expect("the two-log formula takes every target"),
        }
    }
}

/// Element formulas of [`lanes`]. `HARD_FLOAT` is `HARD` for float targets: it also checks
/// that each target is exactly 0 or 1, and gives up (see [`lanes`]) at the first that is not.
const HARD: u8 = 0;
const SOFT: u8 = 1;
const LOGITS: u8 = 2;
const HARD_FLOAT: u8 = 3;

/// Per-lane state of [`lanes`]: everything is an array of `L` lanes, updated lane by lane, so
/// that no loop carries a reduction the vectoriser would have to recognise.
struct LaneState<T, Y, const L: usize> {
    /// Loss sums, in `f64`.
    acc: [f64; L],
    /// Smallest and largest probability seen (NaN never enters: it is not an error).
    lo: [T; L],
    hi: [T; L],
    /// Non-zero where a target outside its domain was seen (labels).
    bad_y: [u32; L],
    /// Non-zero (all ones) where a float target other than 0 and 1 was seen (`HARD_FLOAT`).
    soft: [u32; L],
    /// Smallest and largest target seen (float targets, see [`Target::BY_EXTREMES`]).
    ylo: [Y; L],
    yhi: [Y; L],
    /// Under `OMIT`: the elements kept, counted in `T` (exact: at most `TILE / L` per lane,
    /// one register), and their sample weights' sum (`SW`), in `f64`.
    kept: [T; L],
    kept_sw: [f64; L],
    /// `SW` without `OMIT`: the sample weights' sum in the lanes of [`super::lanes::sum_lanes`]
    /// (element `i` of the tile into lane `i mod 16`), lane `L·h + k` in `sw_acc[h][k]`:
    /// `sw_acc[0]` alone when `L` is 16, both halves when `L` is 8 ([`fold_halves`]).
    sw_acc: [[f64; L]; 2],
    /// `SW`: non-zero (all ones) where a negative sample weight was seen.
    neg_sw: [u32; L],
}

/// One group of `L` elements: loss, weight, domain checks and sums, all lane-wise.
/// Returns the losses (weighted), and the losses that go into the sum: under `OMIT`, 0 for
/// an element with a NaN operand (`x`, a float `y`, and `w`, `pw`, `sw` where present), whose
/// lanes of `kept` (and `kept_sw`) it leaves alone; the losses themselves otherwise. `SW`:
/// the losses are multiplied by the sample weights `sw` too (by `w · sw`, formed first), and
/// a negative sample weight is marked in `neg_sw` (NaN is not negative).
/// Selects in `T` and `f64` lanes, no `bool` array: the loop vectorises as the plain one.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn group<
    A: Arch,
    T: Float,
    Y: Target,
    const MODE: u8,
    const L: usize,
    const OMIT: bool,
    const W: bool,
    const PW: bool,
    const SW: bool,
>(
    st: &mut LaneState<T, Y, L>,
    x: &[T; L],
    y: &[Y; L],
    w: &[T; L],
    pw: &[T; L],
    sw: &[T; L],
) -> ([T; L], [T; L]) {
    let mut l = [T::ZERO; L];
    let mut summed = [T::ZERO; L];
    for k in 0..L {
        let (v, t) = (x[k], y[k]);
        if MODE != LOGITS {
            st.lo[k] = if v < st.lo[k] { v } else { st.lo[k] };
            st.hi[k] = if v > st.hi[k] { v } else { st.hi[k] };
        }
        if Y::BY_EXTREMES {
            // A float target of 0 or 1 is in its domain; any other ends `HARD_FLOAT`.
            if MODE == HARD_FLOAT {
                // A select, not `|= u32::from(..)`: two compares and one masked move, where
                // the widened flag took seven vector instructions per group.
                let soft = (t.prob::<T>() != T::ZERO) & !t.is_one();
                st.soft[k] = if soft { u32::MAX } else { st.soft[k] };
            } else {
                st.ylo[k] = t.lesser(st.ylo[k]);
                st.yhi[k] = t.greater(st.yhi[k]);
            }
        } else if Y::HARD {
            st.bad_y[k] |= u32::from(!t.in_range());
        }
        if SW {
            st.neg_sw[k] = if sw[k] < T::ZERO {
                u32::MAX
            } else {
                st.neg_sw[k]
            };
        }
        let loss = match MODE {
            HARD | HARD_FLOAT => prob_hard::<A, T>(v, t.is_one()),
            SOFT => prob_soft::<A, T>(v, t.prob()),
            _ => logits_loss::<A, T, PW>(v, t.prob(), pw[k]),
        };
        let scale = match (W, SW) {
            (true, true) => w[k] * sw[k],
            (false, true) => sw[k],
            _ => w[k],
        };
        l[k] = if W || SW { loss * scale } else { loss };
        summed[k] = l[k];
        if OMIT {
            let nan = nan_operand(
                v,
                t,
                W.then_some(w[k]),
                PW.then_some(pw[k]),
                SW.then_some(sw[k]),
            );
            summed[k] = if nan { T::ZERO } else { l[k] };
            st.kept[k] = st.kept[k] + if nan { T::ZERO } else { T::ONE };
            if SW {
                st.kept_sw[k] += if nan { 0.0 } else { sw[k].to_f64() };
            }
        }
    }
    (l, summed)
}

/// True if an operand of an element is NaN: the input `x`, a float target `y`, or the
/// weight `w`, the positive-class weight `pw` or the sample weight `sw` where given. The
/// elements `nan_policy='omit'` leaves out, in the tile loop ([`group`]) and per group
/// ([`OmitTile::is_omitted`]).
#[inline(always)]
fn nan_operand<T: Float, Y: Target>(
    x: T,
    y: Y,
    w: Option<T>,
    pw: Option<T>,
    sw: Option<T>,
) -> bool {
    let nan = |v: Option<T>| v.is_some_and(|v| v.is_nan());
    x.is_nan() | (!Y::HARD && y.prob::<T>().is_nan()) | nan(w) | nan(pw) | nan(sw)
}

/// The tile loop: groups of `L` elements through [`group`], the last, partial group
/// padded with valid values (probability 1/2, target 0, weight 1) whose losses are dropped.
/// `w` is only read when `W`, `pw` when `PW`, `sw` when `SW`. Returns the tile's sums and
/// domain-error flags; `None` (in `HARD_FLOAT` mode only) as soon as a group holds a float
/// target other than 0 and 1. Under `OMIT` an element with a NaN operand is written to
/// `out` (its loss is NaN) but left out of the sum, of the count of elements kept and of the
/// sum of sample weights kept. With `SW` the sample weights are summed here too (see
/// [`TileSums::sw_sum`] for the order) and a negative one is flagged [`flags::WEIGHT`].
#[inline(always)]
fn lanes<
    A: Arch,
    T: Float,
    Y: Target,
    const MODE: u8,
    const L: usize,
    const OMIT: bool,
    const W: bool,
    const PW: bool,
    const SW: bool,
>(
    x: &[T],
    y: &[Y],
    w: &[T],
    pw: &[T],
    sw: &[T],
    mut out: Option<&mut [T]>,
) -> Option<TileSums> {
    const { assert!(L == SUM_LANES || 2 * L == SUM_LANES) };
    let n = x.len();
    let half = T::from_f64(0.5);
    let mut st = LaneState {
        acc: [0.0; L],
        lo: [half; L],
        hi: [half; L],
        bad_y: [0; L],
        soft: [0; L],
        ylo: [Y::default(); L],
        yhi: [Y::default(); L],
        kept: [T::ZERO; L],
        kept_sw: [0.0; L],
        sw_acc: [[0.0; L]; 2],
        neg_sw: [0; L],
    };
    // Which half of `sw_acc` the group at `i` adds to: its place in the lanes of `sum_lanes`.
    let sw_half = |i: usize| if L == SUM_LANES { 0 } else { (i / L) & 1 };
    let full = n - n % L;
    let arr = |s: &[T], i: usize| -> [T; L] { s[i..i + L].try_into().unwrap() };
    let mut i = 0;
    while i < full {
        let ys: [Y; L] = y[i..i + L].try_into().unwrap();
        let ws = if W { arr(w, i) } else { [T::ONE; L] };
        let pws = if PW { arr(pw, i) } else { [T::ONE; L] };
        let sws = if SW { arr(sw, i) } else { [T::ONE; L] };
        let (l, summed) =
            group::<A, T, Y, MODE, L, OMIT, W, PW, SW>(&mut st, &arr(x, i), &ys, &ws, &pws, &sws);
        if MODE == HARD_FLOAT && any_soft(&st.soft) {
            return None;
        }
        if let Some(out) = out.as_deref_mut() {
            out[i..i + L].copy_from_slice(&l);
        }
        for (a, v) in st.acc.iter_mut().zip(summed) {
            *a += v.to_f64();
        }
        if SW && !OMIT {
            for (a, v) in st.sw_acc[sw_half(i)].iter_mut().zip(sws) {
                *a += v.to_f64();
            }
        }
        i += L;
    }
    let rest = n - full;
    if rest > 0 {
        // Under `OMIT` the padding is NaN, so that it is neither summed nor counted.
        let pad = if OMIT { T::from_f64(f64::NAN) } else { half };
        let (mut xs, mut ys) = ([pad; L], [Y::default(); L]);
        let (mut ws, mut pws, mut sws) = ([T::ONE; L], [T::ONE; L], [T::ONE; L]);
        xs[..rest].copy_from_slice(&x[full..]);
        ys[..rest].copy_from_slice(&y[full..]);
        if PW {
            pws[..rest].copy_from_slice(&pw[full..]);
        }
        if W {
            ws[..rest].copy_from_slice(&w[full..]);
        }
        if SW {
            sws[..rest].copy_from_slice(&sw[full..]);
        }
        let (l, summed) =
            group::<A, T, Y, MODE, L, OMIT, W, PW, SW>(&mut st, &xs, &ys, &ws, &pws, &sws);
        if let Some(out) = out {
            out[full..].copy_from_slice(&l[..rest]);
        }
        for (a, v) in st.acc.iter_mut().zip(&summed[..rest]) {
            *a += v.to_f64();
        }
        if SW && !OMIT {
            for (a, v) in st.sw_acc[sw_half(full)].iter_mut().zip(&sws[..rest]) {
                *a += v.to_f64();
            }
        }
    }
    if MODE == HARD_FLOAT && any_soft(&st.soft) {
        return None;
    }
    let mut bad_x = false;
    let mut bad_y = 0;
    for k in 0..L {
        bad_x |= (st.lo[k] < T::ZERO) | (st.hi[k] > T::ONE);
        bad_y |= st.bad_y[k] | u32::from(!Y::extremes_in_range(st.ylo[k], st.yhi[k]));
    }
    let flags = if bad_x { flags::INPUT } else { 0 }
        | if bad_y != 0 { flags::TARGET } else { 0 }
        | if SW && any_soft(&st.neg_sw) {
            flags::WEIGHT
        } else {
            0
        };
    Some(TileSums {
        sum: pairwise(st.acc),
        flags,
        // Whole numbers below 2^53: exact in `f64`.
        kept: if OMIT {
            st.kept.iter().map(|k| k.to_f64()).sum::<f64>() as u64
        } else {
            n as u64
        },
        sw_sum: match (SW, OMIT) {
            (false, _) => 0.0,
            (true, true) => pairwise(st.kept_sw),
            (true, false) => fold_halves(st.sw_acc),
        },
    })
}

/// True if any lane saw a soft target (no early exit, so it stays one vector test).
#[inline(always)]
fn any_soft<const L: usize>(soft: &[u32; L]) -> bool {
    soft.iter().fold(0, |a, &s| a | s) != 0
}

/// Sums the lane accumulators in a fixed tree order.
#[inline(always)]
fn pairwise<const L: usize>(acc: [f64; L]) -> f64 {
    let mut v = acc;
    let mut width = L;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            v[i] += v[i + width];
        }
    }
    v[0]
}

/// Sums `sw_acc` of [`LaneState`] as [`super::lanes::sum_lanes`] folds its 16 lanes: the
/// halves added lane by lane (lanes `k` and `k + 8`), then the tree of [`pairwise`]. With
/// `L = 16` the second half is unused (all zero) and this is `pairwise(acc[0])`.
#[inline(always)]
fn fold_halves<const L: usize>(acc: [[f64; L]; 2]) -> f64 {
    if L == SUM_LANES {
        return pairwise(acc[0]);
    }
    let mut v = acc[0];
    for (a, b) in v.iter_mut().zip(acc[1]) {
        *a += b;
    }
    pairwise(v)
}

/// The flat index (within a tile starting at `flat`) of the first domain error of `flag`
/// (a negative sample weight in `sw` for [`flags::WEIGHT`]).
fn first_bad<T: Float, Y: Target>(
    kind: Kind,
    flat: usize,
    x: &[T],
    y: &[Y],
    sw: Option<&[T]>,
    flag: u32,
) -> u64 {
    let pos = (0..x.len()).position(|i| {
        (flag & flags::TARGET != 0 && !y[i].in_range())
            || (flag & flags::INPUT != 0 && kind == Kind::Probabilities && !prob_in_range(x[i]))
            || (flag & flags::WEIGHT != 0 && sw.is_some_and(|sw| sw[i] < T::ZERO))
    });
    (flat + pos.unwrap_or(0)) as u64
}

impl<'a, T: Float, Y: Target> Tile<'a, T, Y> {
    /// The tile of `n` elements at the offsets `at` with the steps `st`: operands 0 to 3 of
    /// `ins` gathered into `tiles` (absent weights left out), with the sample weights `sw`
    /// and no `out` yet.
    ///
    /// # Safety
    /// As for [`InputTiles::view`].
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn gather(
        kind: Kind,
        omit: bool,
        ins: &Inputs<T, Y>,
        tiles: &'a mut InputTiles<T, Y>,
        sw: Option<&'a [T]>,
        at: &[isize],
        st: &[isize],
        n: usize,
    ) -> Self {
        // SAFETY: forwarded: the caller guarantees the tile's elements are valid and unmodified.
        let (x, y, w, pw) = unsafe { tiles.view_present(ins, at, st, n) };
        Tile {
            kind,
            x,
            y,
            w: (!ins.unweighted()).then_some(w),
            pw: (!ins.no_pos_weight()).then_some(pw),
            out: None,
            omit,
            sw,
        }
    }

    /// This tile, writing its losses to `out`.
    #[inline(always)]
    fn with_out(self, out: &'a mut [T]) -> Self {
        Tile {
            out: Some(out),
            ..self
        }
    }

    /// Runs the tile with `isa` and adds its loss sum, its sample weights' sum and its domain
    /// errors (at the first position of each) to `part`; returns its sums.
    #[inline(always)]
    fn add_to(self, isa: isa::Isa, flat: usize, part: &mut Partial) -> TileSums {
        let (kind, x, y, sw) = (self.kind, self.x, self.y, self.sw);
        let sums = isa::dispatch_on(isa, self);
        part.sum += sums.sum;
        if sw.is_some() {
            part.weight += sums.sw_sum;
        }
        let bad = sums.flags;
        if bad != 0 && part.flags & bad != bad {
            part.flag(bad, first_bad(kind, flat, x, y, sw, bad));
        }
        sums
    }
}

/// Computes binary cross-entropy over all elements of `ops`, continuing from `init`, the state
/// of earlier elements (see [`reduce_from`]; [`Partial::EMPTY`] for none, a streaming
/// accumulator folds each batch into its state): writes each element's loss to `ops.out` when
/// it is not null, and returns the sum (with `count` = number of elements, and `weight` =
/// `Σ sw` when there are sample weights).
///
/// # Safety
/// Every pointer of `ops`, stepped by its strides over `ops.layout`, must address valid,
/// aligned elements that stay alive and unmodified (except `out`, written here) for the whole
/// call; `out`, when not null, must not overlap any input nor itself.
pub unsafe fn binary_cross_entropy_from<T: Float, Y: Target>(
    init: Partial,
    ops: &Operands<T, Y>,
    kind: Kind,
    pool: Option<&ThreadPool>,
) -> Partial {
    // One instruction set for the whole call: the bits never depend on which thread ran what.
    // SAFETY: `binary_cross_entropy_on` has this function's contract, which the caller upholds
    // for `ops`; `isa::active()` is clamped to the CPU.
    unsafe { binary_cross_entropy_on(init, ops, kind, pool, isa::active()) }
}

/// [`binary_cross_entropy_from`] with the instruction set `isa` (clamped to what the CPU
/// has).
///
/// # Safety
/// As for [`binary_cross_entropy_from`].
pub unsafe fn binary_cross_entropy_on<T: Float, Y: Target>(
    init: Partial,
    ops: &Operands<T, Y>,
    kind: Kind,
    pool: Option<&ThreadPool>,
    isa: isa::Isa,
) -> Partial {
    let omit = ops.nan == NanPolicy::Omit;
    reduce_from(init, ops.layout.len(), BLOCK, pool, |range| {
        let mut part = Partial::EMPTY;
        // Under `omit`, the elements kept are counted tile by tile.
        part.count = if omit { 0 } else { range.len() as u64 };
        let mut tiles = InputTiles::<T, Y>::default();
        let mut samples = SampleTiles::<T>::default();
        let mut bout = TileBuf::<T>::default();
        ops.layout.for_each_tile(range, |flat, n, at, st| {
            // SAFETY: the caller guarantees every element of the layout is valid; `at` and
            // `st` stay inside it for the n elements of this tile (operand 5: the sample
            // weights).
            let sw = ops
                .sample_weight
                .map(|src| unsafe { samples.view(src, at[5], st[5], n) });
            // SAFETY: as above, for operands 0 to 3.
            let tile =
                unsafe { Tile::gather(kind, omit, &ops.inputs, &mut tiles, sw, &at, &st, n) };
            let sums = if ops.out.is_null() {
                tile.add_to(isa, flat, &mut part)
            } else {
                // SAFETY: out is valid and written by this block only (blocks partition the
                // flat index space and out does not overlap itself or the inputs).
                let dst = unsafe { ops.out.offset(at[4]) };
                if let (1, Some(dst)) = (st[4], dst.native()) {
                    // SAFETY: with unit stride this tile's n elements of out are contiguous from
                    // dst; only this block writes them (blocks partition the flat index space)
                    // and out overlaps no input, so no other reference to them exists.
                    let slice = unsafe { std::slice::from_raw_parts_mut(dst, n) };
                    tile.with_out(slice).add_to(isa, flat, &mut part)
                } else {
                    let scratch = bout.scratch(n);
                    let r = tile.with_out(&mut *scratch).add_to(isa, flat, &mut part);
                    // SAFETY: dst + i * st[4] for i < n are this block's out elements.
                    unsafe { dst.scatter(scratch, st[4]) };
                    r
                }
            };
            if omit {
                part.count += sums.kept;
            }
        });
        part
    })
}

/// The losses of one tile of `out.len()` elements (layout operands 0 to 3 at the offsets `at`
/// with the steps `st`, the tile starting at flat index `flat`; the sample weights, when
/// `samples` holds their source, operand 5), each weighted, written to `out`; the tile's sum,
/// count, sample-weight sum and domain errors are added to `part` exactly as a block of
/// [`binary_cross_entropy_on`] adds them, under the NaN policy `nan` (under
/// [`NanPolicy::Omit`] the loss of an element left out is NaN in `out`, and it is not counted).
/// For reductions other than the sum (per group: [`super::groups`]), with the very
/// per-element values the sum is made of.
///
/// # Safety
/// The elements of each operand from `at` with steps `st` must be valid and unmodified while
/// this runs (see [`InputTiles::view`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub unsafe fn tile_losses<'s, T: Float, Y: Target>(
    ins: &Inputs<T, Y>,
    tiles: &'s mut InputTiles<T, Y>,
    samples: Option<(Src<T>, &'s mut SampleTiles<T>)>,
    kind: Kind,
    nan: NanPolicy,
    isa: isa::Isa,
    flat: usize,
    at: &[isize],
    st: &[isize],
    out: &mut [T],
    part: &mut Partial,
) -> TileLosses<'s, T, Y> {
    let n = out.len();
    let omit = nan == NanPolicy::Omit;
    // SAFETY: forwarded, for operand 5 (the sample weights).
    let sw = samples.map(|(src, s)| unsafe { s.view(src, at[5], st[5], n) });
    // SAFETY: forwarded: the caller guarantees the tile's elements are valid and unmodified.
    let tile = unsafe { Tile::gather(kind, omit, ins, tiles, sw, at, st, n) };
    let (x, y, w, pw) = (tile.x, tile.y, tile.w, tile.pw);
    let sums = tile.with_out(out).add_to(isa, flat, part);
    part.count += sums.kept;
    TileLosses {
        sample_weight: sw,
        omitted: (sums.kept < n as u64).then_some(OmitTile { x, y, w, pw, sw }),
    }
}

/// What [`tile_losses`] says of a tile besides its losses.
pub struct TileLosses<'s, T, Y> {
    /// The tile's sample weights, as given (`None` without them).
    pub sample_weight: Option<&'s [T]>,
    /// Under [`NanPolicy::Omit`], when the tile left elements out: its operands, which tell
    /// which ([`OmitTile::is_omitted`]); `None` when every element counts.
    pub omitted: Option<OmitTile<'s, T, Y>>,
}

/// The operands of a tile from which [`NanPolicy::Omit`] left elements out, as the tile
/// kernel read them (element weights and sample weights as given, `None` where absent).
pub struct OmitTile<'s, T, Y> {
    x: &'s [T],
    y: &'s [Y],
    w: Option<&'s [T]>,
    pw: Option<&'s [T]>,
    sw: Option<&'s [T]>,
}

impl<T: Float, Y: Target> OmitTile<'_, T, Y> {
    /// True if the tile kernel left element `k` of the tile out (a NaN operand): the test of
    /// the tile loop itself ([`nan_operand`]).
    #[inline(always)]
    pub fn is_omitted(&self, k: usize) -> bool {
        let at = |v: Option<&[T]>| v.map(|v| v[k]);
        nan_operand(self.x[k], self.y[k], at(self.w), at(self.pw), at(self.sw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::Bool;

    static ONE32: f32 = 1.0;

    /// Contiguous 1-D operands without weights.
    fn flat<T: Float, Y: Target>(x: &[T], y: &[Y], one: &'static T, out: *mut T) -> Operands<T, Y> {
        let n = x.len();
        Operands {
            inputs: Inputs {
                input: Src::native(x.as_ptr()),
                target: Src::native(y.as_ptr()),
                weight: Src::native(one),
                pos_weight: Src::native(one),
            },
            out: Dst::from(out),
            sample_weight: None,
            nan: NanPolicy::Propagate,
            layout: Layout::new(&[n], [&[1], &[1], &[0], &[0], &[1], &[0]]),
        }
    }

    /// The PyTorch formulas in f64, one element at a time.
    fn reference_prob(p: f64, y: f64) -> f64 {
        (y - 1.0) * (-p).ln_1p().max(-100.0) - y * p.ln().max(-100.0)
    }

    fn reference_logits(x: f64, y: f64, c: f64) -> f64 {
        let ls = x.min(0.0) - (-x.abs()).exp().ln_1p();
        (1.0 - y) * x - (1.0 + (c - 1.0) * y) * ls
    }

    fn sample(n: usize) -> (Vec<f32>, Vec<f32>, Vec<Bool>) {
        let p = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 + 0.5) / 1000.0)
            .collect();
        let y = (0..n)
            .map(|i| ((i * 104729 % 997) as f32) / 996.0)
            .collect();
        let b = (0..n)
            .map(|i| Bool(((i * 31) % 3 == 0) as u8 * (1 + (i % 5) as u8)))
            .collect();
        (p, y, b)
    }

    #[test]
    fn probabilities_match_reference_and_write_out() {
        let (p, y, _) = sample(5000);
        let mut out = vec![0f32; p.len()];
        let ops = flat(&p, &y, &ONE32, out.as_mut_ptr());
        // SAFETY: `flat` addresses the live slices `p` and `y` (1000 elements each, contiguous) and
        // a `'static` one for the weights; `out` is a separate buffer of that length.
        let part =
            unsafe { binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Probabilities, None) };
        let exact: f64 = p
            .iter()
            .zip(&y)
            .map(|(&p, &y)| reference_prob(p as f64, y as f64))
            .sum();
        assert!(
            (part.sum - exact).abs() <= 1e-6 * exact.abs(),
            "{} vs {exact}",
            part.sum
        );
        assert_eq!(part.count, 5000);
        assert_eq!(part.flags, 0);
        for i in 0..p.len() {
            let r = reference_prob(p[i] as f64, y[i] as f64);
            assert!(
                (out[i] as f64 - r).abs() <= 1e-6 * r.abs().max(1e-3),
                "element {i}"
            );
        }
    }

    #[test]
    fn bool_targets_take_any_nonzero_byte_as_true() {
        let (p, _, b) = sample(3000);
        let ops = flat(&p, &b, &ONE32, std::ptr::null_mut());
        // SAFETY: `flat` addresses the live slices `p` and `b` (equal lengths, contiguous) and a
        // `'static` one for the weights; `out` is null, so nothing is written.
        let part =
            unsafe { binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Probabilities, None) };
        let exact: f64 = p
            .iter()
            .zip(&b)
            .map(|(&p, &b)| reference_prob(p as f64, (b.0 != 0) as u8 as f64))
            .sum();
        assert!((part.sum - exact).abs() <= 1e-6 * exact.abs());
    }

    #[test]
    fn logits_extremes_are_finite_and_exact() {
        let x = [1e4f32, -1e4, 0.0, 88.0, -88.0, 20.0, -20.0, 1e-7];
        let y = [0f32, 1.0, 0.5, 1.0, 0.0, 0.3, 0.7, 1.0];
        let mut out = [0f32; 8];
        let ops = flat(&x, &y, &ONE32, out.as_mut_ptr());
        // SAFETY: `flat` addresses the live slices `x` and `y` (8 elements each, contiguous) and a
        // `'static` one for the weights; `out` is a separate `[f32; 8]`.
        let part = unsafe { binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Logits, None) };
        assert!(part.sum.is_finite());
        for i in 0..8 {
            let r = reference_logits(x[i] as f64, y[i] as f64, 1.0);
            assert!(
                (out[i] as f64 - r).abs() <= 1e-6 * r.abs().max(1e-6),
                "{i}: {} vs {r}",
                out[i]
            );
        }
    }

    /// Float targets start on the one-log path and leave it at the first that is not 0 or 1:
    /// wherever in a tile (or its partial last group) that target is, every element comes
    /// out as its formula gives it, and a target outside [0, 1] is still reported.
    #[test]
    fn one_soft_float_target_anywhere_takes_the_two_log_formula() {
        let n = 1100;
        let (p, _, _) = sample(n);
        let hard: Vec<f32> = (0..n).map(|i| (i % 3 == 0) as u8 as f32).collect();
        for at in [0, 15, 16, 511, 512, 1000, n - 1] {
            for (soft, flag) in [(0.25f32, 0), (2.0, flags::TARGET)] {
                let mut y = hard.clone();
                y[at] = soft;
                let mut out = vec![0f32; n];
                let ops = flat(&p, &y, &ONE32, out.as_mut_ptr());
                // SAFETY: `flat` addresses the live slices `p` and `y` (n elements each,
                // contiguous) and a `'static` one for the weights; `out` is a separate buffer of n.
                let part = unsafe {
                    binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Probabilities, None)
                };
                assert_eq!(part.flags, flag, "target {soft} at {at}");
                if flag != 0 {
                    assert_eq!(part.first_bad, at as u64);
                    continue;
                }
                for i in 0..n {
                    let r = reference_prob(p[i] as f64, y[i] as f64);
                    assert!(
                        (out[i] as f64 - r).abs() <= 1e-6 * r,
                        "element {i}, soft target at {at}: {} vs {r}",
                        out[i]
                    );
                }
                let exact: f64 = (0..n)
                    .map(|i| reference_prob(p[i] as f64, y[i] as f64))
                    .sum();
                assert!((part.sum - exact).abs() <= 1e-7 * exact);
            }
        }
    }

    #[test]
    fn domain_errors_report_first_position() {
        let mut p = vec![0.5f64; 70_000];
        p[50_000] = 1.5;
        p[60_000] = -0.1;
        let y = vec![0u8; 70_000];
        static ONE64: f64 = 1.0;
        let ops = flat(&p, &y, &ONE64, std::ptr::null_mut());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        // SAFETY: `flat` addresses the live slices `p` and `y` (70 000 elements each, contiguous)
        // and a `'static` one for the weights; `out` is null.
        let part = unsafe {
            binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Probabilities, Some(&pool))
        };
        assert_eq!(part.flags, flags::INPUT);
        assert_eq!(part.first_bad, 50_000);
        let labels = [0i64, 1, 2, 1];
        let ops = flat(&p[..4], &labels, &ONE64, std::ptr::null_mut());
        // SAFETY: `flat` addresses the live slices `p[..4]` and `labels` (4 elements each,
        // contiguous) and a `'static` one for the weights; `out` is null.
        let part = unsafe { binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Logits, None) };
        assert_eq!((part.flags, part.first_bad), (flags::TARGET, 2));
    }

    #[test]
    fn nan_propagates_without_flag() {
        let p = [0.5f32, f32::NAN, 0.25];
        let y = [1f32, 0.0, 1.0];
        let ops = flat(&p, &y, &ONE32, std::ptr::null_mut());
        // SAFETY: `flat` addresses the live slices `p` and `y` (equal lengths, contiguous) and a
        // `'static` one for the weights; `out` is null.
        let part =
            unsafe { binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Probabilities, None) };
        assert!(part.sum.is_nan());
        assert_eq!(part.flags, 0);
    }

    #[test]
    fn strided_broadcast_weight_matches_reference() {
        // input (4, 300) read through a transposed view, weight (300,) broadcast along rows.
        let (p, y, _) = sample(1200);
        let w: Vec<f32> = (0..300).map(|j| 0.5 + j as f32 / 300.0).collect();
        let ops = Operands {
            inputs: Inputs {
                input: Src::native(p.as_ptr()),
                target: Src::native(y.as_ptr()),
                weight: Src::native(w.as_ptr()),
                pos_weight: Src::native(&ONE32),
            },
            out: Dst::null(),
            sample_weight: None,
            nan: NanPolicy::Propagate,
            // logical (4, 300): element [i, j] at i + 4 j (a Fortran-ordered buffer).
            layout: Layout::new(
                &[4, 300],
                [&[1, 4], &[1, 4], &[0, 1], &[0, 0], &[0, 0], &[0, 0]],
            ),
        };
        // SAFETY: the (4, 300) layout reaches `p`/`y` at i + 4 j ≤ 1199 (1200 elements), `w` at j <
        // 300 and the `'static` one at offset 0; `out` is null.
        let part =
            unsafe { binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Probabilities, None) };
        let mut exact = 0.0;
        for i in 0..4 {
            for (j, &wj) in w.iter().enumerate() {
                let k = i + 4 * j;
                exact += wj as f64 * reference_prob(p[k] as f64, y[k] as f64);
            }
        }
        assert!((part.sum - exact).abs() <= 1e-6 * exact.abs());
    }

    /// A call without weights skips them (`view_present` gives them empty, never gathered),
    /// and gives the bits of the same call with weights of 1 stored apart (a broadcast 1 that
    /// the kernel reads and multiplies by), on both kinds and with several blocks.
    #[test]
    fn absent_weights_are_not_gathered_and_change_no_bit() {
        let n = 3 * BLOCK + 77;
        let (p, y, _) = sample(n);
        let x: Vec<f32> = p.iter().map(|&v| (v - 0.5) * 20.0).collect();
        for (kind, input) in [(Kind::Probabilities, &p), (Kind::Logits, &x)] {
            let absent = flat(input, &y, f32::one_ref(), std::ptr::null_mut());
            let ones = flat(input, &y, &ONE32, std::ptr::null_mut());
            assert!(absent.inputs.unweighted() && absent.inputs.no_pos_weight());
            assert!(!ones.inputs.unweighted() && !ones.inputs.no_pos_weight());
            let mut tiles = InputTiles::<f32, f32>::default();
            let (at, st) = ([0isize; 4], [1isize, 1, 0, 0]);
            // SAFETY: at 0 with unit strides, the 100 elements read lie inside `input` and `y` (n >
            // 100 each); the weights are read at stride 0 from `'static` ones.
            let (vx, vy, w, pw) = unsafe { tiles.view_present(&absent.inputs, &at, &st, 100) };
            assert_eq!((vx.len(), vy.len(), w.len(), pw.len()), (100, 100, 0, 0));
            // SAFETY: `ones` reads the same `input` and `y` (n > 100 elements each) at 0 with unit
            // strides, and its weights at stride 0 from the `'static` `ONE32`.
            let (_, _, w, pw) = unsafe { tiles.view_present(&ones.inputs, &at, &st, 100) };
            assert_eq!((w, pw), (&[1f32; 100][..], &[1f32; 100][..]));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            for pool in [None, Some(&pool)] {
                // SAFETY: `absent` and `ones` come from `flat` over the live `input` and `y` (n
                // elements each) and `'static` ones, with null `out`.
                let a = unsafe { binary_cross_entropy_from(Partial::EMPTY, &absent, kind, pool) };
                // SAFETY: `ones` is `flat` over the same live slices with `ONE32` as its weights,
                // and null `out`.
                let b = unsafe { binary_cross_entropy_from(Partial::EMPTY, &ones, kind, pool) };
                assert_eq!(a.sum.to_bits(), b.sum.to_bits(), "{kind:?}");
                assert_eq!((a.count, a.flags), (b.count, b.flags));
            }
        }
    }

    /// Sample weights multiply each loss and sum into `weight`, in the same pass; the bits
    /// do not depend on the thread count; a negative one is flagged at its flat index.
    #[test]
    fn sample_weights_scale_losses_and_sum_into_weight() {
        let n = 2 * BLOCK + 123;
        let (p, y, _) = sample(n);
        let sw: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.5).collect();
        let w: Vec<f32> = (0..n).map(|i| 1.0 + (i % 3) as f32).collect();
        let mut out = vec![0f32; n];
        let mut ops = flat(&p, &y, &ONE32, out.as_mut_ptr());
        ops.sample_weight = Some(Src::native(sw.as_ptr()));
        ops.inputs.weight = Src::native(w.as_ptr());
        ops.layout = Layout::new(&[n], [&[1], &[1], &[1], &[0], &[1], &[1]]);
        // SAFETY: every operand addresses n live elements at unit stride (pos_weight a
        // `'static` one at stride 0); `out` is a separate buffer of n.
        let part =
            unsafe { binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Probabilities, None) };
        let (mut sum, mut total) = (0.0, 0.0);
        for i in 0..n {
            let l = sw[i] as f64 * w[i] as f64 * reference_prob(p[i] as f64, y[i] as f64);
            assert!(
                (out[i] as f64 - l).abs() <= 1e-6 * l.max(1e-3),
                "element {i}"
            );
            sum += l;
            total += sw[i] as f64;
        }
        assert!((part.sum - sum).abs() <= 1e-6 * sum);
        assert_eq!(part.weight, total);
        assert_eq!((part.count, part.flags), (n as u64, 0));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        // SAFETY: the same operands as above.
        let par = unsafe {
            binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Probabilities, Some(&pool))
        };
        assert_eq!(par.sum.to_bits(), part.sum.to_bits());
        let mut bad = sw.clone();
        bad[BLOCK + 5] = -1.0;
        bad[n - 1] = -2.0;
        ops.sample_weight = Some(Src::native(bad.as_ptr()));
        // SAFETY: as above, with `bad` (n live elements) as the sample weights.
        let part = unsafe {
            binary_cross_entropy_from(Partial::EMPTY, &ops, Kind::Probabilities, Some(&pool))
        };
        assert_eq!(
            (part.flags, part.first_bad),
            (flags::WEIGHT, BLOCK as u64 + 5)
        );
    }

    /// The tile loop sums the sample weights in the order of `sum_lanes` over each tile (16
    /// lanes, whatever its own lane count: 8 for `f64` and below AVX-512), tile after tile and
    /// block after block, on every instruction set, `f32` and `f64`, both kinds, with and
    /// without an element weight; and flags the first negative one wherever it is in a tile.
    #[test]
    fn sample_weight_sum_has_the_bits_of_sum_lanes_per_tile_on_every_isa() {
        use super::super::lanes::sum_lanes;
        use super::super::strided::TILE;
        fn check<T: Float + Target>(one: &'static T) {
            let f = <T as Float>::from_f64;
            let n = 2 * BLOCK + 517;
            let (p, y, _) = sample(n);
            let p: Vec<T> = p.iter().map(|&v| f(v as f64)).collect();
            let y: Vec<T> = y.iter().map(|&v| f((v > 0.5) as u8 as f64)).collect();
            // Not dyadic, spread over decades: the order of the additions shows in the bits.
            let sw: Vec<T> = (0..n)
                .map(|i| f(((i * 7919 % 1013) as f64 / 97.0).exp() / 3.0))
                .collect();
            let w: Vec<T> = (0..n).map(|i| f(0.5 + (i % 5) as f64)).collect();
            let mut expect = Partial::EMPTY.weight;
            for block in sw.chunks(BLOCK) {
                let mut part = Partial::EMPTY.weight;
                for tile in block.chunks(TILE) {
                    part += sum_lanes(tile);
                }
                expect += part;
            }
            for isa in isa::Isa::ALL {
                for kind in [Kind::Probabilities, Kind::Logits] {
                    for weighted in [false, true] {
                        let mut ops = flat(&p, &y, one, std::ptr::null_mut());
                        ops.sample_weight = Some(Src::native(sw.as_ptr()));
                        if weighted {
                            ops.inputs.weight = Src::native(w.as_ptr());
                        }
                        let ws = weighted as isize;
                        ops.layout = Layout::new(&[n], [&[1], &[1], &[ws], &[0], &[1], &[1]]);
                        // SAFETY: every operand addresses n live elements at unit stride (the
                        // weight, when absent, and pos_weight a `'static` one at stride 0);
                        // `out` is null.
                        let part = unsafe {
                            binary_cross_entropy_on(Partial::EMPTY, &ops, kind, None, isa)
                        };
                        assert_eq!(
                            part.weight.to_bits(),
                            expect.to_bits(),
                            "{isa:?} {kind:?} weighted {weighted}"
                        );
                        assert_eq!(part.flags, 0);
                        for bad in [[3, 700], [BLOCK + 515, BLOCK + 513], [n - 1, n - 2]] {
                            let mut neg = sw.clone();
                            for &i in &bad {
                                neg[i] = f(-0.5);
                            }
                            ops.sample_weight = Some(Src::native(neg.as_ptr()));
                            // SAFETY: as above, with `neg` (n live elements) as the sample
                            // weights.
                            let part = unsafe {
                                binary_cross_entropy_on(Partial::EMPTY, &ops, kind, None, isa)
                            };
                            assert_eq!(
                                (part.flags, part.first_bad),
                                (flags::WEIGHT, bad[0].min(bad[1]) as u64),
                                "{isa:?} {kind:?} {bad:?}"
                            );
                        }
                    }
                }
            }
        }
        static ONE64: f64 = 1.0;
        check::<f32>(&ONE32);
        check::<f64>(&ONE64);
    }

    /// Every instruction set the CPU has gives the reference result (to f32 rounding), and the
    /// same bits for any thread count.
    #[test]
    fn every_isa_matches_reference_and_is_thread_independent() {
        let n = 200_003;
        let (p, y, b) = sample(n);
        let labels: Vec<f32> = b.iter().map(|b| (b.0 != 0) as u8 as f32).collect();
        let logits: Vec<f32> = p.iter().map(|&p| (p - 0.5) * 40.0).collect();
        let cases: [(&[f32], &[f32], Kind); 3] = [
            (&p, &y, Kind::Probabilities),
            (&p, &labels, Kind::Probabilities),
            (&logits, &y, Kind::Logits),
        ];
        let pools: Vec<_> = [1, 2, 3]
            .map(|t| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap()
            })
            .into();
        for (x, t, kind) in cases {
            let exact: f64 = x
                .iter()
                .zip(t)
                .map(|(&x, &t)| match kind {
                    Kind::Probabilities => reference_prob(x as f64, t as f64),
                    Kind::Logits => reference_logits(x as f64, t as f64, 1.0),
                })
                .sum();
            for isa in isa::Isa::ALL {
                let ops = flat(x, t, &ONE32, std::ptr::null_mut());
                // SAFETY: `flat` addresses the live slices `x` and `t` (equal lengths, contiguous)
                // and a `'static` one for the weights; `out` is null.
                let serial =
                    unsafe { binary_cross_entropy_on(Partial::EMPTY, &ops, kind, None, isa) };
                assert!(
                    (serial.sum - exact).abs() <= 1e-6 * exact.abs(),
                    "{isa:?} {kind:?}: {} vs {exact}",
                    serial.sum
                );
                for pool in &pools {
                    // SAFETY: the same `ops` as the serial call (live slices, null `out`).
                    let par = unsafe {
                        binary_cross_entropy_on(Partial::EMPTY, &ops, kind, Some(pool), isa)
                    };
                    assert_eq!(par.sum.to_bits(), serial.sum.to_bits(), "{isa:?} {kind:?}");
                }
            }
        }
    }

    /// Float targets that are all 0/1 (the hard path) give the same bits as bool labels, and
    /// tiny probabilities keep their exact logs on every instruction set.
    #[test]
    fn hard_path_is_exact_for_tiny_probabilities() {
        let p = [
            1e-45f32,
            1e-30,
            1e-8,
            0.3,
            0.5,
            0.7,
            1.0 - 1e-7,
            1.0,
            0.0,
            2e-38,
        ];
        let b: Vec<Bool> = (0..p.len()).map(|i| Bool((i % 2) as u8)).collect();
        let f: Vec<f32> = b.iter().map(|b| b.0 as f32).collect();
        for isa in isa::Isa::ALL {
            let mut out_b = [0f32; 10];
            let mut out_f = [0f32; 10];
            let ops = flat(&p, &b, &ONE32, out_b.as_mut_ptr());
            // SAFETY: `flat` addresses the live slices `p` and `b` (10 elements each, contiguous)
            // and a `'static` one for the weights; `out_b` is a separate `[f32; 10]`.
            unsafe {
                binary_cross_entropy_on(Partial::EMPTY, &ops, Kind::Probabilities, None, isa)
            };
            let ops = flat(&p, &f, &ONE32, out_f.as_mut_ptr());
            // SAFETY: `flat` addresses the live slices `p` and `f` (10 elements each, contiguous)
            // and a `'static` one for the weights; `out_f` is a separate `[f32; 10]`.
            unsafe {
                binary_cross_entropy_on(Partial::EMPTY, &ops, Kind::Probabilities, None, isa)
            };
            for i in 0..p.len() {
                assert_eq!(out_b[i].to_bits(), out_f[i].to_bits(), "{isa:?} {i}");
                let r = reference_prob(p[i] as f64, f[i] as f64);
                let tol = 2.0 * f32::EPSILON as f64 * r.abs() + 1e-45;
                assert!(
                    (out_b[i] as f64 - r).abs() <= tol,
                    "{isa:?} {i}: {} vs {r}",
                    out_b[i]
                );
            }
        }
    }
}
