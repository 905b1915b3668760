//! Entropy, cross-entropy, Kullback-Leibler and Jensen-Shannon divergence of distributions
//! laid out along rows (see [`super::rows`]).
//!
//! With `p`, `q` the rows as given, `P = Σ p`, `Q = Σ q` and the normalised rows `a = p / P`,
//! `b = q / Q`, each row's result is, as SciPy defines it (natural log; divided by `ln(base)`
//! when a base is given):
//!
//! ```text
//! entropy        H(a)    = -Σ a ln a                 = -(Σ p ln p) / P + ln P
//! cross-entropy  H(a, b) = -Σ a ln b                 = -(Σ p ln q) / P + ln Q
//! KL divergence  D(a‖b)  =  Σ a ln(a / b)            =  (Σ p ln(p / q)) / P + ln Q - ln P
//! Jensen-Shannon JS(a,b) = ½ D(a‖m) + ½ D(b‖m),  m = (a + b) / 2
//! ```
//!
//! The right-hand forms let entropy, cross-entropy and KL normalise in the same single pass
//! that sums the logs (`P`, `Q` and the log sum are reduced together, then corrected). Taken
//! literally they would overflow (`p / q` for `p = 7e5`, `q = 1e-304`) and cancel (`Σ p ln q / P`
//! and `ln Q` are both about `ln Q`, which is ±690 at scales of 1e±300, while the divergence
//! may be 1e-9). So each tile (a row of at most half a tile, or a piece of a longer one) first
//! sums its `P` and `Q`, takes a reference exponent `K` (the binary exponent of `P` for
//! entropy, of `Q` for cross-entropy, their difference for KL) and sums its log terms against
//! it: `-p (ln p - K ln2)`, `-p (ln q - K ln2)`, `p (ln(p/q) - K ln2)`, each logarithm computed
//! from the exponents and significands of its arguments ([`math::ln_ratio_shifted_f64`]: no
//! quotient is formed, nothing overflows, the shift is exact). The finish adds back
//! `ln(P/2^K)`, `ln(Q/2^K)` or `-ln(P/(Q 2^K))` — logarithms of numbers near 1, computed the
//! same way. Pieces of a row (long rows, `axis=None`, streamed batches) merge onto the
//! reference of the piece with the larger `P` ([`merge_states`]). Accuracy: the result is
//! within a few `eps · (|value| + Σ a |ln term| + 1)`, SciPy's own error bound (its logs of
//! normalised values each rounded), on any scales of `p` and `q` (tested from 1e-300 to 1e300,
//! subnormal values, KL of 1e-9), and finite whenever the exact normalised value is.
//! Jensen-Shannon cannot be written that way (`m` needs `P` and `Q` inside the log): a row
//! that the engine hands over whole in one tile (at most `TILE / 2` elements) takes its sums
//! and then its logs in that tile; any other row (longer, or laid out over several
//! dimensions that do not merge) is read twice, once for `P` and `Q`, once for the logs, with
//! its factors `(1/P, 1/Q)` kept in between (16 bytes per row). Without normalisation
//! (`normalize=false`) the rows are used as given: `-Σ p ln p`, `-Σ p ln q`, `Σ p ln(p/q)`, and
//! Jensen-Shannon with `m = (p + q) / 2` takes one pass.
//!
//! A row's state is a [`Partial`]: `sum` is the sum of the element terms of the unnormalised
//! quantity taken against the reference exponent `K`, held in `weight` (`-p (ln p - K ln2)`,
//! `-p (ln q - K ln2)`, `p (ln(p/q) - K ln2)`, or Jensen-Shannon's two relative entropies, for
//! which `K = 0`), `mass` is `[P, Q]`, `count` the number of elements. States merge by adding
//! once on one reference ([`merge_states`]), so the state of a whole array seen in pieces is
//! the merge of the pieces' states ([`whole`] continues one),
//! and [`Finish::value`] turns any such state into the result — for one row of a call, for
//! `axis=None`, and for the streaming accumulators alike.
//!
//! Conventions (those of `scipy.special.entr`/`rel_entr`): a term with `p = 0` is 0 whatever
//! `q` is (`0 · ln 0 = 0`); `p > 0` with `q = 0` gives `+inf` (KL, cross-entropy). An empty row
//! gives 0. A row summing to 0 gives NaN when normalising (0/0, as SciPy). A negative value in
//! `p` (`q`) is a domain error flagged [`flags::INPUT`] ([`flags::TARGET`]). NaN propagates to
//! its row's result.
//!
//! Every element term is computed in `f64`, also for `f32` input: an `f32` logarithm's
//! rounding (up to 4e-6 at `ln ≈ -68`) would survive the finish's subtraction.
//!
//! One exception is cheaper at the same `f32` accuracy: entropy and cross-entropy rows written
//! to an `f32` output take `ln x = k·ln2 + f + w` with `k·ln2 + f` in `f64` and only `w`
//! (`|w| < 0.072`) in `f32` lanes ([`math::ln_nonneg_f32_wide_shifted`]), and the log of the
//! largest element in `f64` where it could matter ([`top_log_fix`]): within 1 ulp of `f32` of
//! SciPy's `f64` result on near one-hot, count, scaled and subnormal rows (the tests). A result
//! returned as a Python float (`axis=None`, the streaming accumulators) keeps `f64` terms. KL
//! cannot take this route: its terms cancel when `p ≈ q`, so its logs of `p / q` need `f64`.

use std::iter;

use super::float::Float;
use super::isa::{self, Arch, Kernel};
use super::lanes::{max_lanes, row_sums, LANES};
use super::math;
use super::nan::{self, NanPolicy, Policy};
use super::reduce::{flags, Partial};
use super::rows::{
    fold_row, run, then, In, Out, PerRow, Row, RowBatch, RowOp, Rows, Tile, BATCH_ROWS,
};
use super::strided::{Dst, Src, TileBuf};

/// Which quantity of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `H(p)`; the `q` operand is not read.
    Entropy,
    /// `H(p, q)`.
    CrossEntropy,
    /// `D(p‖q)`.
    KlDivergence,
    /// `JS(p, q)`: its terms take each row's factors `(1/P, 1/Q)` from [`Divergence::norms`]
    /// when set (stored by a first pass, [`JsMasses`]), from the tile's own sums otherwise
    /// (`(1, 1)` without normalisation).
    JensenShannon,
}

/// How a state (see the module doc) becomes a value: which quantity, whether the
/// distribution is normalised, and `ln(base)` (1 for natural logarithms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Finish {
    pub kind: Kind,
    pub normalize: bool,
    pub log_base: f64,
}

impl Kind {
    /// A number for each kind, to fix one at compile time (`row_values`).
    const fn code(self) -> u8 {
        match self {
            Kind::Entropy => 0,
            Kind::CrossEntropy => 1,
            Kind::KlDivergence => 2,
            Kind::JensenShannon => 3,
        }
    }

    /// The kind of [`Kind::code`] `c`.
    const fn from_code(c: u8) -> Kind {
        match c {
            0 => Kind::Entropy,
            1 => Kind::CrossEntropy,
            2 => Kind::KlDivergence,
            _ => Kind::JensenShannon,
        }
    }
}

impl Finish {
    /// The value of the distribution whose state is `s`, `S = s.sum`, `[P, Q] = s.mass`,
    /// `K = s.weight` (the state's reference exponent, see the module doc):
    ///
    /// ```text
    /// entropy         S / P + (ln P - K ln2)          (normalised)    S - K ln2·P   (as given)
    /// cross-entropy   S / P + (ln Q - K ln2)                          S - K ln2·P
    /// KL divergence   S / P - (ln(P / Q) - K ln2)                     S + K ln2·P
    /// Jensen-Shannon  S / 2   (its terms are taken on normalised values already; K = 0)
    /// ```
    ///
    /// each bracket a shifted logarithm ([`math::ln_nonneg_shifted_f64`],
    /// [`math::ln_ratio_shifted_f64`]) that neither overflows nor rounds at the size of
    /// `K ln2`; divided by `log_base`; 0 for a state of no elements. The pure function every
    /// result comes from, with instruction set `A` (its `ln`).
    #[inline(always)]
    pub fn value_on<A: Arch>(&self, s: &Partial) -> f64 {
        if s.count == 0 {
            return 0.0;
        }
        let ([sp, sq], sum, k) = (s.mass, s.sum, s.weight);
        let ln2k = k * std::f64::consts::LN_2;
        let value = match (self.kind, self.normalize) {
            (Kind::Entropy, true) => sum / sp + math::ln_nonneg_shifted_f64::<A, true>(sp, k),
            (Kind::CrossEntropy, true) => sum / sp + math::ln_nonneg_shifted_f64::<A, true>(sq, k),
            (Kind::KlDivergence, true) => {
                sum / sp - math::ln_ratio_shifted_f64::<A, true>(sp, sq, k)
            }
            (Kind::Entropy | Kind::CrossEntropy, false) => sum - ln2k * sp,
            (Kind::KlDivergence, false) => sum + ln2k * sp,
            (Kind::JensenShannon, _) => 0.5 * sum,
        };
        // Natural logarithms (the default) skip the division: `x / 1` is `x`, and a division
        // is a long step in the latency of each short row's finish.
        if self.log_base == 1.0 {
            value
        } else {
            value / self.log_base
        }
    }

    /// The sum of the element terms of the unnormalised quantity (`-p ln p`, `-p ln q`,
    /// `p ln(p/q)`) that the state `s` holds relative to its reference exponent.
    pub fn terms_sum(&self, s: &Partial) -> f64 {
        let shift = s.weight * std::f64::consts::LN_2 * s.mass[0];
        match self.kind {
            Kind::Entropy | Kind::CrossEntropy => s.sum - shift,
            Kind::KlDivergence => s.sum + shift,
            Kind::JensenShannon => s.sum,
        }
    }

    /// [`Finish::value_on`] with the active instruction set, the one the row engine runs
    /// with: a state finished here has the bits it has when a call finishes it.
    pub fn value(&self, s: &Partial) -> f64 {
        struct Value<'a>(&'a Finish, &'a Partial);
        impl Kernel for Value<'_> {
            type Output = f64;
            #[inline(always)]
            fn run<A: Arch>(self) -> f64 {
                self.0.value_on::<A>(self.1)
            }
        }
        isa::dispatch(Value(self, s))
    }
}

/// Merges the states `a` (earlier elements) and `b` (later ones) of `kind`: their sums are
/// taken against one reference exponent, that of the state with the larger `P` (a state of
/// no elements has none), the other's sum moved onto it by `±(K' - K)·ln2·P'` (`+` for KL,
/// `-` for entropy and cross-entropy, whose terms are negated). Moving costs `eps·|K' - K|·P'`
/// absolute, which is small next to the divergence itself when the exponents differ (a piece
/// whose ratio `P'/Q'` is far from the whole's makes the divergence at least of order `P'/P`).
#[inline(always)]
pub fn merge_states(kind: Kind, a: Partial, b: Partial) -> Partial {
    let k = if a.count == 0 {
        b.weight
    } else if b.count == 0 || a.mass[0] >= b.mass[0] {
        a.weight
    } else {
        b.weight
    };
    let sign = if kind == Kind::KlDivergence {
        1.0
    } else {
        -1.0
    };
    let moved = |s: &Partial| {
        if s.weight == k {
            s.sum
        } else {
            s.sum + sign * ((s.weight - k) * std::f64::consts::LN_2) * s.mass[0]
        }
    };
    Partial {
        sum: moved(&a) + moved(&b),
        weight: k,
        ..a.merge(b)
    }
}

/// The reference exponent of a piece whose masses are `p`, `q` for `kind` (see the module
/// doc): the binary exponent of `P` (entropy), of `Q` (cross-entropy), or their difference
/// (KL); an exponent is 0 for a mass that is 0, infinite or NaN.
#[inline(always)]
fn reference(kind: Kind, p: f64, q: f64) -> f64 {
    // Written without branches (every case computed, one selected), so that the exponents of
    // a batch of short rows are taken in vector lanes.
    let exponent = |x: f64| {
        // A subnormal mass is scaled into the normal range first.
        let sub = x < f64::MIN_POSITIVE;
        let (xs, scaled) = if sub {
            (x * 18_014_398_509_481_984.0, 54.0)
        } else {
            (x, 0.0)
        };
        let e = ((xs.to_bits() >> 52) & 0x7ff) as f64 - 1023.0 - scaled;
        if (x > 0.0) & (x < f64::INFINITY) {
            e
        } else {
            0.0
        }
    };
    match kind {
        Kind::Entropy => exponent(p),
        Kind::CrossEntropy => exponent(q),
        Kind::KlDivergence => exponent(p) - exponent(q),
        Kind::JensenShannon => 0.0,
    }
}

/// The values of the rows whose states (as [`Divergence::tile`] leaves them) are `states`,
/// into `values`, in natural logarithms: each is `Finish::value_on(merge_states(EMPTY, s))`,
/// what [`RowOp::finish_rows`]' default computes row by row, but with the quantity and the
/// normalisation fixed at compile time (`KIND` is [`Kind::code`]), so that the loop has no
/// branch and runs in vector lanes: a batch of short rows takes its logarithms and divisions
/// several at a time instead of one row's scalar chain after another.
#[inline(always)]
fn row_values<A: Arch, const KIND: u8, const NORMALIZE: bool>(
    states: &[Partial],
    values: &mut [f64],
) {
    let kind = Kind::from_code(KIND);
    let finish = Finish {
        kind,
        normalize: NORMALIZE,
        log_base: 1.0,
    };
    // The fields the values need, one array each (a state is 56 bytes: read field by field,
    // the loop below would not vectorise).
    let n = states.len().min(BATCH_ROWS);
    let (mut sum, mut weight, mut count) = ([0.0; BATCH_ROWS], [0.0; BATCH_ROWS], [0; BATCH_ROWS]);
    let (mut sp, mut sq) = ([0.0; BATCH_ROWS], [0.0; BATCH_ROWS]);
    for (r, s) in states[..n].iter().enumerate() {
        (sum[r], weight[r], count[r]) = (s.sum, s.weight, s.count);
        (sp[r], sq[r]) = (s.mass[0], s.mass[1]);
    }
    for (r, v) in values[..n].iter_mut().enumerate() {
        let s = Partial {
            sum: sum[r],
            weight: weight[r],
            count: count[r],
            mass: [sp[r], sq[r]],
            ..Partial::EMPTY
        };
        *v = finish.value_on::<A>(&merge_states(kind, Partial::EMPTY, s));
    }
}

/// One divergence over rows of operands `[p, q, out]` (see [`super::rows::Rows`]).
///
/// `out` (when given) receives each row's result; `norms` (Jensen-Shannon only) holds one
/// `[f64; 2]` per row, indexed by the engine's row index, or is `None`: then each tile takes its
/// rows' factors from its own sums (`1/P`, `1/Q`; the tiles must hold whole rows) or 1
/// without normalisation. Rows written to an `f32` `out` get
/// entropy and cross-entropy logs only as accurate as an `f32` result needs (see the module
/// doc). `p` and `q` are read as `T` where they lie, whatever float type each is stored in
/// ([`Src`]). `NAN` is the [`NanPolicy::code`] of the NaN policy (see [`omit_pairs`] and
/// [`outside`]).
pub struct Divergence<'a, T, const NAN: u8> {
    pub kind: Kind,
    pub p: In<T>,
    pub q: In<T>,
    pub out: Option<Out<T>>,
    pub norms: Option<&'a PerRow<[f64; 2]>>,
    pub normalize: bool,
    /// `ln(base)`, or 1 for natural logarithms.
    pub log_base: f64,
}

/// True if any element is negative (NaN is not).
#[inline(always)]
fn any_negative<T: Float>(x: &[T]) -> bool {
    x.iter().fold(false, |bad, &v| bad | (v < T::ZERO))
}

/// True if any element is outside the domain of NaN policy `NAN`: negative, or, under
/// [`NanPolicy::Raise`], NaN as well.
#[inline(always)]
fn outside<T: Float, const NAN: u8>(x: &[T]) -> bool {
    if NAN == nan::RAISE {
        x.iter()
            .fold(false, |bad, &v| bad | (v < T::ZERO) | v.is_nan())
    } else {
        any_negative(x)
    }
}

/// [`NanPolicy::Omit`] on a tile of rows of `n` elements: `p` and `q` copied into `cp`,
/// `cq` with every pair where either is NaN replaced by `(0, 0)`, and each row's number of
/// pairs kept in `kept` (from `ck`, 1 or 0 per pair, summed by row). A zero pair adds nothing
/// to any sum: its term is 0 (`0 · ln 0 = 0`, `0 · ln(0/0) = 0` by the kernels' convention,
/// Jensen-Shannon's `m` is 0 too) and so are its masses, so the kernels then compute the rows
/// without those pairs; a row with none kept is empty (0, as SciPy gives). Entropy, whose `q`
/// is `p`, goes to [`omit_nan`]. One branch-free pass over the whole tile (short rows
/// included), in the gather buffers' cache; nothing the size of the input.
#[inline(always)]
fn omit_pairs<'b, T: Float>(
    p: &[T],
    q: &[T],
    n: usize,
    (cp, cq, ck): (&'b mut [T], &'b mut [T], &mut [T]),
    kept: &mut [f64],
) -> (&'b [T], &'b [T]) {
    let pairs = p
        .iter()
        .zip(q)
        .zip(cp.iter_mut().zip(cq.iter_mut()).zip(ck.iter_mut()));
    for ((&x, &y), ((a, b), k)) in pairs {
        let keep = !(x.is_nan() | y.is_nan());
        *a = if keep { x } else { T::ZERO };
        *b = if keep { y } else { T::ZERO };
        *k = if keep { T::ONE } else { T::ZERO };
    }
    row_sums(ck, n, kept);
    (cp, cq)
}

/// [`omit_pairs`] of one operand (entropy's `p`): `p` copied into `cp` with each NaN replaced
/// by 0, each row's number of values kept in `kept`.
#[inline(always)]
fn omit_nan<'b, T: Float>(
    p: &[T],
    n: usize,
    (cp, ck): (&'b mut [T], &mut [T]),
    kept: &mut [f64],
) -> &'b [T] {
    for ((&x, a), k) in p.iter().zip(cp.iter_mut()).zip(ck.iter_mut()) {
        let keep = !x.is_nan();
        *a = if keep { x } else { T::ZERO };
        *k = if keep { T::ONE } else { T::ZERO };
    }
    row_sums(ck, n, kept);
    cp
}

/// The buffers [`NanPolicy::Omit`] adds to a divergence's tile scratch: the copies of `p` and
/// `q` without their NaN pairs, the pairs' keep marks ([`omit_pairs`]) and the rows' counts.
pub struct OmitBufs<T> {
    cp: TileBuf<T>,
    cq: TileBuf<T>,
    ck: TileBuf<T>,
    kept: TileBuf<f64>,
}

impl<T: Float> Default for OmitBufs<T> {
    #[inline(always)]
    fn default() -> Self {
        OmitBufs {
            cp: TileBuf::default(),
            cq: TileBuf::default(),
            ck: TileBuf::default(),
            kept: TileBuf::default(),
        }
    }
}

/// The omit buffers a NaN policy's divergence scratch holds: [`OmitBufs`] under
/// [`NanPolicy::Omit`], nothing (`()`) under the others, so that a call without `omit` does
/// not make (nor copy) 10 KiB of buffers it never touches each time a block starts.
pub trait OmitScratch<T> {
    /// `OmitBufs<T>` or `()`.
    type Bufs: Default;
    /// The buffers, where the policy has them.
    fn get(bufs: &mut Self::Bufs) -> Option<&mut OmitBufs<T>>;
}

impl<T: Float> OmitScratch<T> for Policy<{ nan::OMIT }> {
    type Bufs = OmitBufs<T>;
    #[inline(always)]
    fn get(bufs: &mut OmitBufs<T>) -> Option<&mut OmitBufs<T>> {
        Some(bufs)
    }
}

impl<T: Float> OmitScratch<T> for Policy<{ nan::PROPAGATE }> {
    type Bufs = ();
    #[inline(always)]
    fn get(_: &mut ()) -> Option<&mut OmitBufs<T>> {
        None
    }
}

impl<T: Float> OmitScratch<T> for Policy<{ nan::RAISE }> {
    type Bufs = ();
    #[inline(always)]
    fn get(_: &mut ()) -> Option<&mut OmitBufs<T>> {
        None
    }
}

/// `x · ln(x / y)` with `0 · ln(0 / y) = 0` (branch-free), for `x`, `y` computed from values
/// read as `T`: from `f32` values (widened, scaled by a row's `1/P`, or averaged) the ratio is
/// never subnormal in `f64`.
#[inline(always)]
fn rel_entr<A: Arch, T: Float>(x: f64, y: f64) -> f64 {
    let t = x * ln_nonneg::<A, T>(x / y, 0.0);
    if x == 0.0 {
        0.0
    } else {
        t
    }
}

/// `ln x - k·ln2` for `x ≥ 0` computed from values read as `T` (see
/// [`math::ln_nonneg_shifted_f64`]).
#[inline(always)]
fn ln_nonneg<A: Arch, T: Float>(x: f64, k: f64) -> f64 {
    if T::NARROW {
        math::ln_nonneg_shifted_f64::<A, false>(x, k)
    } else {
        math::ln_nonneg_shifted_f64::<A, true>(x, k)
    }
}

/// `x · (ln x - k·ln2)` with `0 · ln 0 = 0` (branch-free), for `x` read as a `T`.
#[inline(always)]
fn x_ln_x<A: Arch, T: Float>(x: T, k: f64) -> f64 {
    if T::NARROW {
        math::x_ln_x_shifted_f64::<A, false>(x.to_f64(), k)
    } else {
        math::x_ln_x_shifted_f64::<A, true>(x.to_f64(), k)
    }
}

/// The KL term `x · (ln(x / y) - k·ln2)` with `0 · ln(0 / y) = 0` (branch-free), for `x`, `y`
/// read as `T`: the ratio is never formed, so it cannot overflow ([`math::ln_ratio_shifted_f64`]).
#[inline(always)]
fn kl_term<A: Arch, T: Float>(x: T, y: T, k: f64) -> f64 {
    let x = x.to_f64();
    let l = if T::NARROW {
        math::ln_ratio_shifted_f64::<A, false>(x, y.to_f64(), k)
    } else {
        math::ln_ratio_shifted_f64::<A, true>(x, y.to_f64(), k)
    };
    let t = x * l;
    if x == 0.0 {
        0.0
    } else {
        t
    }
}

/// [`kl_term`] through the quotient `x / y`: one division and one logarithm, as accurate as
/// [`kl_term`] where the quotient is a normal number or `x` is 0 (see [`quotients_normal`]).
#[inline(always)]
fn kl_term_fast<A: Arch, T: Float>(x: T, y: T, k: f64) -> f64 {
    let x = x.to_f64();
    let t = x * ln_nonneg::<A, T>(x / y.to_f64(), k);
    if x == 0.0 {
        0.0
    } else {
        t
    }
}

/// True if every quotient `x / y` of elements of `p` and `q` is a normal number, infinite
/// (`y = 0`) or has `x = 0`: so for `f32` input; for `f64`, when every non-zero element lies
/// in `[2^-500, 2^500]` (quotients within `2^±1000`).
#[inline(always)]
fn quotients_normal<T: Float>(p: &[T], q: &[T]) -> bool {
    if T::NARROW {
        return true;
    }
    let (lo, hi) = (T::from_f64(2f64.powi(-500)), T::from_f64(2f64.powi(500)));
    let outside = |bad: bool, &v: &T| bad | ((v != T::ZERO) & !((v >= lo) & (v <= hi)));
    !(p.iter().fold(false, outside) | q.iter().fold(false, outside))
}

/// `x · (ln x - k·ln2)` of an `f32` read as a `T`, as accurate as an `f32` result needs:
/// [`math::x_ln_x_f32_wide_shifted`], within `2e-8·x`, which [`top_log_fix`] completes.
#[inline(always)]
fn x_ln_x_for_f32<A: Arch, T: Float>(x: T, k: f64) -> f64 {
    math::x_ln_x_f32_wide_shifted::<A>(x.to_f64() as f32, k)
}

/// `ln y - k·ln2` of an `f32` read as a `T`, as accurate as an `f32` result needs:
/// [`math::ln_nonneg_f32_wide_shifted`], within 2e-8, which [`top_log_fix`] completes.
#[inline(always)]
fn ln_for_f32<A: Arch, T: Float>(y: T, k: f64) -> f64 {
    math::ln_nonneg_f32_wide_shifted::<A>(y.to_f64() as f32, k)
}

/// The element terms of entropy, cross-entropy or KL divergence (`kind`) of `p`, `q` and the
/// per-element reference exponents `ks` into `terms`, with the `f32`-accurate logs where
/// `f32_rows` (entropy and cross-entropy; see the module doc).
#[inline(always)]
fn element_terms<A: Arch, T: Float>(
    kind: Kind,
    f32_rows: bool,
    terms: &mut [f64],
    p: &[T],
    q: &[T],
    ks: impl Iterator<Item = f64>,
) {
    match kind {
        Kind::Entropy if f32_rows => {
            for ((t, &x), k) in terms.iter_mut().zip(p).zip(ks) {
                *t = x_ln_x_for_f32::<A, T>(x, k);
            }
        }
        Kind::Entropy => {
            for ((t, &x), k) in terms.iter_mut().zip(p).zip(ks) {
                *t = x_ln_x::<A, T>(x, k);
            }
        }
        Kind::CrossEntropy if f32_rows => neg_x_ln_y(terms, p, q, ks, ln_for_f32::<A, T>),
        Kind::CrossEntropy => {
            neg_x_ln_y(terms, p, q, ks, |y: T, k| ln_nonneg::<A, T>(y.to_f64(), k))
        }
        // The quotient, unless one might overflow or underflow somewhere in the tile.
        Kind::KlDivergence if quotients_normal(p, q) => {
            for (((t, &x), &y), k) in terms.iter_mut().zip(p).zip(q).zip(ks) {
                *t = kl_term_fast::<A, T>(x, y, k);
            }
        }
        Kind::KlDivergence => {
            for (((t, &x), &y), k) in terms.iter_mut().zip(p).zip(q).zip(ks) {
                *t = kl_term::<A, T>(x, y, k);
            }
        }
        Kind::JensenShannon => {
            unreachable!("Jensen-Shannon's terms are not taken against a reference")
        }
    }
}

/// The cross-entropy terms `-x (ln y - k ln2)` (0 where `x = 0`) of `p`, `q` and the
/// per-element reference exponents `ks` into `terms`.
#[inline(always)]
fn neg_x_ln_y<T: Float>(
    terms: &mut [f64],
    p: &[T],
    q: &[T],
    ks: impl Iterator<Item = f64>,
    ln: impl Fn(T, f64) -> f64,
) {
    for (((t, &x), &y), k) in terms.iter_mut().zip(p).zip(q).zip(ks) {
        let x = x.to_f64();
        let l = -(x * ln(y, k));
        *t = if x == 0.0 { 0.0 } else { l };
    }
}

/// What completes the `f32`-accurate logs ([`ln_for_f32`]) of a row (or a piece of one) `x`
/// whose elements sum to `mass`, into sums whose error is small next to the result: for its
/// largest element `top`, when that is above half of `mass`, `(top, ln top - ln_for_f32(top))`
/// with the `f64` log. The caller adds its term's share of that difference.
///
/// Entropy is `Σ a ln(1/a)` over shares `a = p / P` (cross-entropy `Σ a ln(1/b)`, `b = q / Q`).
/// A share `≤ 1/2` has `ln(1/a) ≥ ln 2`, so the log's absolute error 2e-8 is relatively small;
/// only a share above one half, whose exact log can be as small as we like (a near one-hot
/// row), needs its log to `f64` accuracy. There is at most one such element, the largest, and
/// it is above half of every piece it lies in, since the piece's mass is at most the row's:
/// each piece fixes its largest element's log when it is above half of the piece's mass. The
/// fix depends only on the piece, so the bits do not depend on how pieces are scheduled.
#[inline(always)]
fn top_log_fix<A: Arch, T: Float>(x: &[T], mass: f64, k: f64) -> Option<(T, f64)> {
    let top = max_lanes(x);
    (top.to_f64() > 0.5 * mass).then(|| {
        (
            top,
            ln_nonneg::<A, T>(top.to_f64(), k) - ln_for_f32::<A, T>(top, k),
        )
    })
}

impl<T: Float, const NAN: u8> RowOp<3> for Divergence<'_, T, NAN>
where
    Policy<NAN>: OmitScratch<T>,
{
    type State = Partial;
    /// Gather buffers for `p` and `q`; the element terms; Jensen-Shannon's scale factors
    /// (the second buffer also holds the other kinds' per-element reference exponents of a
    /// batch of short rows); the per-row sums; under [`NanPolicy::Omit`], the copies of `p` and `q` without their
    /// NaN pairs and the rows' counts of pairs kept ([`omit_pairs`]; `()` under the other
    /// policies, see [`OmitScratch`]).
    type Scratch = (
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<f64>,
        TileBuf<f64>,
        TileBuf<f64>,
        TileBuf<f64>,
        <Policy<NAN> as OmitScratch<T>>::Bufs,
    );

    fn empty(&self) -> Partial {
        Partial::EMPTY
    }

    #[inline(always)]
    fn tile<A: Arch>(
        &self,
        (bp, bq, bt, bfa, bfb, bs, omit): &mut Self::Scratch,
        tile: &Tile<3>,
        states: &mut [Partial],
    ) {
        let (rows, n, first_row) = (states.len(), tile.len(), tile.first_row());
        let p = tile.read(&self.p, bp);
        // Domain errors are flagged on the batch's first row (the caller locates them).
        let bad_p = if outside::<T, NAN>(p) {
            flags::INPUT
        } else {
            0
        };
        let q = if self.kind == Kind::Entropy {
            p
        } else {
            tile.read(&self.q, bq)
        };
        let bad = bad_p
            | if self.kind != Kind::Entropy && outside::<T, NAN>(q) {
                flags::TARGET
            } else {
                0
            };
        // Under `omit`, the rows without their NaN pairs from here on.
        let (p, q, kept) = if let Some(OmitBufs { cp, cq, ck, kept }) = Policy::<NAN>::get(omit) {
            let kept = kept.scratch(rows);
            let len = rows * n;
            let (cp, ck) = (cp.scratch(len), ck.scratch(len));
            let (p, q) = if self.kind == Kind::Entropy {
                let p = omit_nan(p, n, (cp, ck), kept);
                (p, p)
            } else {
                omit_pairs(p, q, n, (cp, cq.scratch(len), ck), kept)
            };
            (p, q, &*kept)
        } else {
            (p, q, &[][..])
        };
        let sums = bs.scratch(4 * rows);
        let (sp, rest) = sums.split_at_mut(rows);
        let (sq, rest) = rest.split_at_mut(rows);
        let (sl, kr) = rest.split_at_mut(rows);
        let seg = |r: usize| r * n..(r + 1) * n;
        // Rows written as `f32` get logs as accurate as that needs, unless rows are so short
        // that finding their largest element costs more than the cheaper logs save.
        let f32_rows = T::NARROW && self.out.is_some() && n > LANES;
        row_sums(p, n, sp);
        if self.kind == Kind::Entropy {
            sq.fill(0.0);
        } else if self.kind != Kind::JensenShannon || self.norms.is_none() {
            // The second pass of Jensen-Shannon reads its factors instead.
            row_sums(q, n, sq);
        }
        // Each row's reference exponent; the term loops take it per element: the one value
        // repeated for a tile of one row (a piece of a long row), a copy filled row by row
        // for a batch of short rows.
        for ((k, &p), &q) in kr.iter_mut().zip(&*sp).zip(&*sq) {
            *k = reference(self.kind, p, q);
        }
        let terms = bt.scratch(rows * n);
        match self.kind {
            Kind::JensenShannon => {
                let (fa, fb) = (bfa.scratch(rows * n), bfb.scratch(rows * n));
                for r in 0..rows {
                    let [a, b] = if let Some(norms) = self.norms {
                        norms.get(first_row + r)
                    } else if self.normalize {
                        // The factors the first pass would store for this (whole) row.
                        [1.0 / sp[r], 1.0 / sq[r]]
                    } else {
                        [1.0, 1.0]
                    };
                    fa[seg(r)].fill(a);
                    fb[seg(r)].fill(b);
                }
                for ((((t, &x), &y), &fa), &fb) in
                    terms.iter_mut().zip(p).zip(q).zip(&*fa).zip(&*fb)
                {
                    let (a, b) = (x.to_f64() * fa, y.to_f64() * fb);
                    let m = (a + b) * 0.5;
                    *t = rel_entr::<A, T>(a, m) + rel_entr::<A, T>(b, m);
                }
            }
            kind if rows == 1 => {
                element_terms::<A, T>(kind, f32_rows, terms, p, q, iter::repeat(kr[0]))
            }
            kind => {
                let ks = bfb.scratch(rows * n);
                for (r, &k) in kr.iter().enumerate() {
                    ks[seg(r)].fill(k);
                }
                element_terms::<A, T>(kind, f32_rows, terms, p, q, ks.iter().copied())
            }
        }
        row_sums(terms, n, sl);
        if f32_rows && matches!(self.kind, Kind::Entropy | Kind::CrossEntropy) {
            for r in 0..rows {
                let (p, q) = (&p[seg(r)], &q[seg(r)]);
                let mass = if self.kind == Kind::Entropy {
                    sp[r]
                } else {
                    sq[r]
                };
                if let Some((top, fix)) = top_log_fix::<A, T>(q, mass, kr[r]) {
                    if self.kind == Kind::Entropy {
                        // The terms are `p ln p` (negated once, below).
                        sl[r] += top.to_f64() * fix;
                        continue;
                    }
                    // The weight of the one element at `top` (above half the mass, so unique).
                    let w: f64 = p
                        .iter()
                        .zip(q)
                        .map(|(&x, &y)| if y == top { x.to_f64() } else { 0.0 })
                        .sum();
                    sl[r] -= w * fix;
                }
            }
        }
        for (r, s) in states.iter_mut().enumerate() {
            let (sum, mass) = match self.kind {
                Kind::JensenShannon => (sl[r], [0.0; 2]),
                Kind::Entropy => (-sl[r], [sp[r], 0.0]),
                _ => (sl[r], [sp[r], sq[r]]),
            };
            *s = Partial {
                sum,
                weight: kr[r],
                count: if NAN == nan::OMIT {
                    kept[r] as u64
                } else {
                    n as u64
                },
                mass,
                flags: if r == 0 { bad } else { 0 },
                ..Partial::EMPTY
            };
        }
    }

    #[inline(always)]
    fn merge(&self, a: Partial, b: Partial) -> Partial {
        merge_states(self.kind, a, b)
    }

    /// The default's operations row by row, their values taken a batch at a time
    /// ([`row_values`]).
    #[inline(always)]
    fn finish_rows<A: Arch>(
        &self,
        batch: &RowBatch<3>,
        states: &[Partial],
        mut part: Partial,
    ) -> Partial {
        const E: u8 = Kind::Entropy.code();
        const C: u8 = Kind::CrossEntropy.code();
        const K: u8 = Kind::KlDivergence.code();
        const J: u8 = Kind::JensenShannon.code();
        let mut values = [0.0; BATCH_ROWS];
        for (c, states) in states.chunks(BATCH_ROWS).enumerate() {
            let values = &mut values[..states.len()];
            match (self.kind, self.normalize) {
                (Kind::Entropy, true) => row_values::<A, E, true>(states, values),
                (Kind::Entropy, false) => row_values::<A, E, false>(states, values),
                (Kind::CrossEntropy, true) => row_values::<A, C, true>(states, values),
                (Kind::CrossEntropy, false) => row_values::<A, C, false>(states, values),
                (Kind::KlDivergence, true) => row_values::<A, K, true>(states, values),
                (Kind::KlDivergence, false) => row_values::<A, K, false>(states, values),
                (Kind::JensenShannon, _) => row_values::<A, J, false>(states, values),
            }
            // As `Finish::value_on` divides, for a base other than e.
            if self.log_base != 1.0 {
                for v in values.iter_mut() {
                    *v /= self.log_base;
                }
            }
            for (r, (s, &value)) in states.iter().zip(values.iter()).enumerate() {
                let row = batch.row(c * BATCH_ROWS + r);
                if let Some(out) = &self.out {
                    row.write(out, T::from_f64(value));
                }
                // `finish`'s contribution, with `finish_rows`' `first_bad`.
                part = part.merge(row.located(Partial {
                    sum: value,
                    count: 1,
                    flags: s.flags,
                    ..Partial::EMPTY
                }));
            }
        }
        part
    }

    #[inline(always)]
    fn finish<A: Arch>(&self, row: &Row<3>, s: Partial) -> Partial {
        let finish = Finish {
            kind: self.kind,
            normalize: self.normalize,
            log_base: self.log_base,
        };
        let value = finish.value_on::<A>(&s);
        if let Some(out) = &self.out {
            row.write(out, T::from_f64(value));
        }
        Partial {
            sum: value,
            count: 1,
            flags: s.flags,
            ..Partial::EMPTY
        }
    }
}

/// The first pass of normalised Jensen-Shannon over rows that do not fit in one tile: each
/// row's masses `P`, `Q` (summed as [`Divergence`] sums them), finished into its factors
/// `(1/P, 1/Q)`, stored in `norms` (one entry per row) for the second pass ([`then`]).
pub struct JsMasses<'a, T, const NAN: u8> {
    pub p: In<T>,
    pub q: In<T>,
    pub norms: &'a PerRow<[f64; 2]>,
}

impl<T: Float, const NAN: u8> RowOp<3> for JsMasses<'_, T, NAN>
where
    Policy<NAN>: OmitScratch<T>,
{
    type State = Partial;
    /// Gather buffers for `p` and `q`; the per-row sums; under [`NanPolicy::Omit`], the
    /// copies without NaN pairs and the counts kept ([`omit_pairs`]).
    type Scratch = (
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<f64>,
        <Policy<NAN> as OmitScratch<T>>::Bufs,
    );

    fn empty(&self) -> Partial {
        Partial::EMPTY
    }

    #[inline(always)]
    fn tile<A: Arch>(
        &self,
        (bp, bq, bs, omit): &mut Self::Scratch,
        tile: &Tile<3>,
        states: &mut [Partial],
    ) {
        let (rows, n) = (states.len(), tile.len());
        let p = tile.read(&self.p, bp);
        let q = tile.read(&self.q, bq);
        let bad = if outside::<T, NAN>(p) {
            flags::INPUT
        } else {
            0
        } | if outside::<T, NAN>(q) {
            flags::TARGET
        } else {
            0
        };
        let (p, q) = if let Some(OmitBufs { cp, cq, ck, kept }) = Policy::<NAN>::get(omit) {
            let len = rows * n;
            let (cp, cq, ck) = (cp.scratch(len), cq.scratch(len), ck.scratch(len));
            omit_pairs(p, q, n, (cp, cq, ck), kept.scratch(rows))
        } else {
            (p, q)
        };
        let (sp, sq) = bs.scratch(2 * rows).split_at_mut(rows);
        row_sums(p, n, sp);
        row_sums(q, n, sq);
        for (r, s) in states.iter_mut().enumerate() {
            *s = Partial {
                sum: 0.0,
                count: n as u64,
                mass: [sp[r], sq[r]],
                // Domain errors are flagged on the batch's first row (the caller locates them).
                flags: if r == 0 { bad } else { 0 },
                ..Partial::EMPTY
            };
        }
    }

    #[inline(always)]
    fn merge(&self, a: Partial, b: Partial) -> Partial {
        a.merge(b)
    }

    #[inline(always)]
    fn finish<A: Arch>(&self, row: &Row<3>, s: Partial) -> Partial {
        let [sp, sq] = s.mass;
        self.norms.set(row, [1.0 / sp, 1.0 / sq]);
        Partial {
            count: 1,
            flags: s.flags,
            ..Partial::EMPTY
        }
    }
}

/// The arguments of a call of [`divergence`] besides its operands: which quantity, whether
/// rows are normalised, `ln(base)` (1 for natural logarithms) and the NaN policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    pub kind: Kind,
    pub normalize: bool,
    pub log_base: f64,
    pub nan: NanPolicy,
}

/// Computes `opts.kind` for every row of `rows` (operands `[p, q, out]`), writing each row's
/// value to `out` when it is not null. Returns the merged row contributions: `sum` is the sum
/// of the row values (the value itself for one row), `flags` the domain errors met (under
/// [`NanPolicy::Raise`], a NaN among them).
///
/// A single row (e.g. `axis=None`) is reduced by [`whole`] and finished by [`Finish::value`]:
/// the code of the streaming accumulators, so that they give the bits of this call.
/// Normalised Jensen-Shannon over rows longer than half a tile runs its two passes here.
///
/// # Safety
/// `p`, `q` (and `out`, when not null) stepped over `rows` must address valid, aligned elements
/// that stay alive for the call; `out` must not overlap the inputs nor itself.
pub unsafe fn divergence<T: Float>(
    opts: Options,
    rows: &Rows<3>,
    p: impl Into<Src<T>>,
    q: impl Into<Src<T>>,
    out: impl Into<Dst<T>>,
    pool: Option<&rayon::ThreadPool>,
) -> Partial {
    let (p, q, out) = (p.into(), q.into(), out.into());
    // SAFETY (each arm): forwarded from the caller.
    match opts.nan {
        NanPolicy::Propagate => unsafe {
            divergence_with::<T, { nan::PROPAGATE }>(opts, rows, p, q, out, pool)
        },
        NanPolicy::Omit => unsafe {
            divergence_with::<T, { nan::OMIT }>(opts, rows, p, q, out, pool)
        },
        NanPolicy::Raise => unsafe {
            divergence_with::<T, { nan::RAISE }>(opts, rows, p, q, out, pool)
        },
    }
}

/// [`divergence`] with the NaN policy fixed at compile time (`NAN` is its code).
///
/// # Safety
/// As [`divergence`].
unsafe fn divergence_with<T: Float, const NAN: u8>(
    opts: Options,
    rows: &Rows<3>,
    p: Src<T>,
    q: Src<T>,
    out: Dst<T>,
    pool: Option<&rayon::ThreadPool>,
) -> Partial
where
    Policy<NAN>: OmitScratch<T>,
{
    let Options {
        kind,
        normalize,
        log_base,
        ..
    } = opts;
    let finish = Finish {
        kind,
        normalize,
        log_base,
    };
    let js = kind == Kind::JensenShannon;
    if rows.rows() == 1 && !(js && normalize) {
        // SAFETY: forwarded from the caller.
        let state = unsafe { whole_with::<T, NAN>(kind, rows, p, q, Partial::EMPTY, pool) };
        let value = finish.value(&state);
        if !out.is_null() {
            // SAFETY: the row's output offset is valid (caller's contract).
            unsafe { out.write(rows.base(0)[2], T::from_f64(value)) };
        }
        return Partial {
            sum: value,
            count: 1,
            flags: state.flags,
            first_bad: if state.flags != 0 { 0 } else { u64::MAX },
            ..Partial::EMPTY
        };
    }
    // SAFETY: `p`, `q` and `out` are the operands 0, 1 and 2 of `rows`, valid along them
    // (the caller's contract).
    let op = unsafe {
        Divergence::<T, NAN> {
            kind,
            p: In::new(p, 0),
            q: In::new(q, 1),
            out: (!out.is_null()).then(|| Out::new(out, 2)),
            norms: None,
            normalize,
            log_base,
        }
    };
    if !js {
        // SAFETY: forwarded from the caller.
        return unsafe { run(rows, &op, pool) };
    }
    if !normalize || rows.whole_rows_per_tile() {
        // One pass: the factors are 1, or each tile's own rows' sums.
        // SAFETY: forwarded from the caller.
        return unsafe { run(rows, &op, pool) };
    }
    // Rows longer than half a tile: a first pass stores each row's factors, which the terms
    // of the second read.
    let norms = PerRow::new(rows.rows());
    let masses = JsMasses::<T, NAN> {
        p: op.p,
        q: op.q,
        norms: &norms,
    };
    let second = |_: &Partial| Divergence {
        norms: Some(&norms),
        ..op
    };
    // SAFETY: forwarded from the caller; `norms` has one slot per row, used by these two
    // passes only.
    let (first, second) = unsafe { then(rows, pool, &masses, second) };
    second.unwrap_or(first)
}

/// The *unfinished* state (see the module doc) of `kind` over the single row of `rows` (every
/// dimension reduced: the whole array as one distribution), continuing from `init`, the state
/// of the elements seen before: [`fold_row`] with this kernel, under NaN policy `nan` (under
/// [`NanPolicy::Omit`], `count` counts the pairs kept). Streaming an array through calls that
/// each cover a whole number of the engine's chunks gives the very state of one call;
/// [`Finish::value`] then gives the result. For Jensen-Shannon the state of the unnormalised
/// divergence (`m = (p + q) / 2`): the normalised one needs `P` and `Q` inside every
/// logarithm, so no state of part of the data determines it.
///
/// # Safety
/// As [`divergence`] (there is no output); `rows` must hold exactly one row.
pub unsafe fn whole<T: Float>(
    kind: Kind,
    nan: NanPolicy,
    rows: &Rows<3>,
    p: impl Into<Src<T>>,
    q: impl Into<Src<T>>,
    init: Partial,
    pool: Option<&rayon::ThreadPool>,
) -> Partial {
    let (p, q) = (p.into(), q.into());
    // SAFETY (each arm): forwarded from the caller.
    match nan {
        NanPolicy::Propagate => unsafe {
            whole_with::<T, { nan::PROPAGATE }>(kind, rows, p, q, init, pool)
        },
        NanPolicy::Omit => unsafe { whole_with::<T, { nan::OMIT }>(kind, rows, p, q, init, pool) },
        NanPolicy::Raise => unsafe {
            whole_with::<T, { nan::RAISE }>(kind, rows, p, q, init, pool)
        },
    }
}

/// [`whole`] with the NaN policy fixed at compile time.
///
/// # Safety
/// As [`whole`].
unsafe fn whole_with<T: Float, const NAN: u8>(
    kind: Kind,
    rows: &Rows<3>,
    p: Src<T>,
    q: Src<T>,
    init: Partial,
    pool: Option<&rayon::ThreadPool>,
) -> Partial
where
    Policy<NAN>: OmitScratch<T>,
{
    // SAFETY: `p` and `q` are the operands 0 and 1 of `rows`, valid along them (the caller's
    // contract). Without normalisation Jensen-Shannon's factors are 1.
    let op = unsafe {
        Divergence::<T, NAN> {
            kind,
            p: In::new(p, 0),
            q: In::new(q, 1),
            out: None,
            norms: None,
            normalize: false,
            log_base: 1.0,
        }
    };
    // SAFETY: forwarded from the caller.
    unsafe { fold_row(init, rows, &op, pool) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Rows;

    /// SciPy's definitions in f64, normalising first.
    fn reference(kind: Kind, p: &[f64], q: &[f64]) -> f64 {
        let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
        let a: Vec<f64> = p.iter().map(|x| x / sp).collect();
        let b: Vec<f64> = q.iter().map(|x| x / sq).collect();
        let rel = |x: f64, y: f64| if x == 0.0 { 0.0 } else { x * (x / y).ln() };
        match kind {
            Kind::Entropy => -a.iter().map(|&x| rel(x, 1.0)).sum::<f64>(),
            Kind::CrossEntropy => -a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| if x == 0.0 { 0.0 } else { x * y.ln() })
                .sum::<f64>(),
            Kind::KlDivergence => a.iter().zip(&b).map(|(&x, &y)| rel(x, y)).sum(),
            _ => {
                let m: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
                let d = |u: &[f64]| u.iter().zip(&m).map(|(&x, &y)| rel(x, y)).sum::<f64>();
                (d(&a) + d(&b)) / 2.0
            }
        }
    }

    fn rows_of<T: Float>(
        kind: Kind,
        p: &[T],
        q: &[T],
        shape: [usize; 2],
        threads: usize,
    ) -> (Vec<T>, Partial) {
        rows_with(kind, NanPolicy::Propagate, p, q, shape, threads)
    }

    fn rows_with<T: Float>(
        kind: Kind,
        nan: NanPolicy,
        p: &[T],
        q: &[T],
        shape: [usize; 2],
        threads: usize,
    ) -> (Vec<T>, Partial) {
        let mut out = vec![T::ZERO; shape[0]];
        let c = shape[1] as isize;
        let rows = Rows::new(&shape, [&[c, 1], &[c, 1], &[1, 0]], &[false, true]);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
        // outlive the call (outputs are written by one row each).
        let part = unsafe {
            divergence(
                Options {
                    kind,
                    normalize: true,
                    log_base: 1.0,
                    nan,
                },
                &rows,
                p.as_ptr(),
                q.as_ptr(),
                out.as_mut_ptr(),
                (threads > 1).then_some(&pool),
            )
        };
        (out, part)
    }

    fn sample(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| match (i * 7 + seed) % 11 {
                0 => 0.0,
                k => ((i * 7919 + seed * 31) % 1000) as f64 / 1000.0 + k as f64 * 1e-3,
            })
            .collect()
    }

    #[test]
    fn matches_scipy_definitions_short_and_long_rows() {
        let kinds = [
            Kind::Entropy,
            Kind::CrossEntropy,
            Kind::KlDivergence,
            Kind::JensenShannon,
        ];
        for &(r, c) in &[(50, 7), (2, 70_000)] {
            let p = sample(r * c, 1);
            let q: Vec<f64> = sample(r * c, 2).iter().map(|x| x + 0.01).collect();
            for kind in kinds {
                let (out, part) = rows_of(kind, &p, &q, [r, c], 1);
                assert_eq!(part.flags, 0);
                for (i, &got) in out.iter().enumerate() {
                    let row = i * c..(i + 1) * c;
                    let want = reference(kind, &p[row.clone()], &q[row]);
                    assert!(
                        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                        "{kind:?} ({r}, {c}) row {i}: {got} vs {want}"
                    );
                }
                for threads in [2, 3, 7] {
                    let (o, _) = rows_of(kind, &p, &q, [r, c], threads);
                    assert!(o.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
                // float32 input: logs in f32, sums in f64.
                let p32: Vec<f32> = p.iter().map(|&x| x as f32).collect();
                let q32: Vec<f32> = q.iter().map(|&x| x as f32).collect();
                let (o32, _) = rows_of(kind, &p32, &q32, [r, c], 2);
                for (a, b) in o32.iter().zip(&out) {
                    assert!((*a as f64 - b).abs() <= 1e-5 * b.abs().max(1e-2), "{a} {b}");
                }
            }
        }
    }

    /// The whole-array state of `kind` over `p`, `q` fed in pieces cut before each index of
    /// `cuts`, each continuing the previous state.
    fn streamed(kind: Kind, p: &[f64], q: &[f64], cuts: &[usize], threads: usize) -> Partial {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied());
        bounds.push(p.len());
        bounds.windows(2).fold(Partial::EMPTY, |state, w| {
            let rows = Rows::new(&[w[1] - w[0]], [&[1], &[1], &[0]], &[true]);
            // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
            // outlive the call (outputs are written by one row each).
            unsafe {
                whole(
                    kind,
                    NanPolicy::Propagate,
                    &rows,
                    p[w[0]..].as_ptr(),
                    q[w[0]..].as_ptr(),
                    state,
                    (threads > 1).then_some(&pool),
                )
            }
        })
    }

    #[test]
    fn whole_array_state_streams_and_finishes_as_one_call() {
        use crate::rows::CHUNK;
        let n = 3 * CHUNK + 1234;
        let p = sample(n, 3);
        let q: Vec<f64> = sample(n, 4).iter().map(|x| x + 0.01).collect();
        let kinds = [
            Kind::Entropy,
            Kind::CrossEntropy,
            Kind::KlDivergence,
            Kind::JensenShannon,
        ];
        for kind in kinds {
            let one = streamed(kind, &p, &q, &[], 2);
            assert_eq!((one.count, one.flags), (n as u64, 0));
            for normalize in [true, false] {
                if kind == Kind::JensenShannon && normalize {
                    continue;
                }
                let finish = Finish {
                    kind,
                    normalize,
                    log_base: 2f64.ln(),
                };
                let value = finish.value(&one);
                // The engine's own finish of the same row, in a call of two rows (the
                // multi-row path): the same state, so the same bits.
                let mut out = [0f64; 2];
                let pp: Vec<f64> = p.iter().chain(&p).copied().collect();
                let qq: Vec<f64> = q.iter().chain(&q).copied().collect();
                let rows = Rows::new(
                    &[2, n],
                    [&[n as isize, 1], &[n as isize, 1], &[1, 0]],
                    &[false, true],
                );
                // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
                // outlive the call (outputs are written by one row each).
                let part = unsafe {
                    divergence(
                        Options {
                            kind,
                            normalize,
                            log_base: finish.log_base,
                            nan: NanPolicy::Propagate,
                        },
                        &rows,
                        pp.as_ptr(),
                        qq.as_ptr(),
                        out.as_mut_ptr(),
                        None,
                    )
                };
                assert_eq!(part.flags, 0);
                assert_eq!(out[0].to_bits(), value.to_bits(), "{kind:?} {normalize}");
                if normalize {
                    let want = reference(kind, &p, &q) / finish.log_base;
                    assert!(
                        (value - want).abs() <= 1e-12 * want.abs(),
                        "{value} vs {want}"
                    );
                }
                // Pieces of whole chunks (one of them empty), any thread count: the very
                // state; cut anywhere else, the same up to the order of the additions.
                for threads in [1, 3] {
                    let s = streamed(kind, &p, &q, &[CHUNK, CHUNK, 3 * CHUNK], threads);
                    assert_eq!(finish.value(&s).to_bits(), value.to_bits());
                    assert_eq!(s.mass.map(f64::to_bits), one.mass.map(f64::to_bits));
                }
                let s = streamed(kind, &p, &q, &[1, 777, 40_000, 90_001], 2);
                assert_eq!(s.count, n as u64);
                let got = finish.value(&s);
                assert!(
                    (got - value).abs() <= 1e-12 * value.abs(),
                    "{got} vs {value}"
                );
            }
        }
        // Jensen-Shannon without normalisation is the normalised one of distributions that
        // are normalised already.
        let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
        let a: Vec<f64> = p.iter().map(|x| x / sp).collect();
        let b: Vec<f64> = q.iter().map(|x| x / sq).collect();
        let js = Finish {
            kind: Kind::JensenShannon,
            normalize: false,
            log_base: 1.0,
        }
        .value(&streamed(Kind::JensenShannon, &a, &b, &[CHUNK], 2));
        let want = reference(Kind::JensenShannon, &p, &q);
        assert!((js - want).abs() <= 1e-12 * want, "{js} vs {want}");
        // Nothing seen: 0, as an empty row.
        let none = Finish {
            kind: Kind::KlDivergence,
            normalize: true,
            log_base: 1.0,
        };
        assert_eq!(none.value(&Partial::EMPTY), 0.0);
    }

    #[test]
    fn conventions() {
        let nan = f64::NAN;
        let one = |kind, p: &[f64], q: &[f64]| rows_of(kind, p, q, [1, p.len()], 1).0[0];
        // 0 ln 0 = 0; one-hot rows have zero entropy; KL(p‖p) = 0 exactly.
        assert_eq!(one(Kind::Entropy, &[0.0, 1.0, 0.0], &[0.0; 3]), 0.0);
        assert_eq!(
            one(Kind::KlDivergence, &[0.2, 0.0, 0.7], &[0.2, 0.0, 0.7]),
            0.0
        );
        // p > 0 where q = 0: infinite KL and cross-entropy.
        assert_eq!(
            one(Kind::KlDivergence, &[0.5, 0.5], &[1.0, 0.0]),
            f64::INFINITY
        );
        assert_eq!(
            one(Kind::CrossEntropy, &[0.5, 0.5], &[1.0, 0.0]),
            f64::INFINITY
        );
        // Rows summing to zero: NaN, as SciPy; empty rows: 0.
        assert!(one(Kind::Entropy, &[0.0, 0.0], &[0.0; 2]).is_nan());
        assert!(one(Kind::JensenShannon, &[0.0, 0.0], &[1.0, 1.0]).is_nan());
        assert_eq!(one(Kind::Entropy, &[], &[]), 0.0);
        // NaN propagates to its row only.
        let (out, _) = rows_of(
            Kind::KlDivergence,
            &[0.5, nan, 0.5, 0.5],
            &[0.5; 4],
            [2, 2],
            1,
        );
        assert!(out[0].is_nan() && out[1] == 0.0);
        // JS is bounded by ln 2 (disjoint supports reach it).
        let js = one(Kind::JensenShannon, &[1.0, 0.0], &[0.0, 1.0]);
        assert!((js - std::f64::consts::LN_2).abs() < 1e-15);
    }

    #[test]
    fn negative_values_are_flagged() {
        let (_, part) = rows_of(Kind::Entropy, &[0.5, -0.1, 0.5, 0.5], &[0.0; 4], [2, 2], 1);
        assert_eq!((part.flags, part.first_bad), (flags::INPUT, 0));
        let (_, part) = rows_of(
            Kind::KlDivergence,
            &[0.5; 4],
            &[0.5, 0.5, 0.5, -1.0],
            [2, 2],
            1,
        );
        // Short rows are flagged per batch: the bindings locate the element itself.
        assert_eq!(part.flags, flags::TARGET);
        assert!(part.first_bad <= 1);
        let (_, part) = rows_of(
            Kind::JensenShannon,
            &[0.5; 4],
            &[0.5, 0.5, 0.5, -1.0],
            [2, 2],
            1,
        );
        assert_eq!(part.flags, flags::TARGET);
    }

    /// `omit`: each row as SciPy's `entropy(..., nan_policy="omit")` gives it, that is the
    /// row without the pairs where `p` or `q` is NaN (an empty row gives 0), for short rows
    /// (batched), long rows (several tiles; Jensen-Shannon's two passes), any thread count.
    #[test]
    fn omit_drops_nan_pairs_from_each_row() {
        let kinds = [
            Kind::Entropy,
            Kind::CrossEntropy,
            Kind::KlDivergence,
            Kind::JensenShannon,
        ];
        for &(r, c) in &[(40, 9), (3, 5000)] {
            let mut p = sample(r * c, 5);
            let mut q: Vec<f64> = sample(r * c, 6).iter().map(|x| x + 0.01).collect();
            for i in (0..r * c).step_by(7) {
                p[i] = f64::NAN;
            }
            for i in (3..r * c).step_by(11) {
                q[i] = f64::NAN;
            }
            // A row all NaN: empty once omitted.
            p[c..2 * c].fill(f64::NAN);
            for kind in kinds {
                let (out, part) = rows_with(kind, NanPolicy::Omit, &p, &q, [r, c], 1);
                assert_eq!(part.flags, 0);
                for (i, &got) in out.iter().enumerate() {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    for j in i * c..(i + 1) * c {
                        let use_q = kind != Kind::Entropy;
                        if p[j].is_nan() || (use_q && q[j].is_nan()) {
                            continue;
                        }
                        a.push(p[j]);
                        b.push(q[j]);
                    }
                    let want = if a.is_empty() {
                        0.0
                    } else {
                        reference(kind, &a, &b)
                    };
                    assert!(
                        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                        "{kind:?} ({r}, {c}) row {i}: {got} vs {want}"
                    );
                }
                for threads in [2, 3] {
                    let (o, _) = rows_with(kind, NanPolicy::Omit, &p, &q, [r, c], threads);
                    assert!(o.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
                // Propagate: the NaN rows are NaN.
                let (o, _) = rows_with(kind, NanPolicy::Propagate, &p, &q, [r, c], 1);
                assert!(o[1].is_nan());
            }
        }
    }

    /// `raise`: a NaN is flagged as a domain error of its operand; without NaN the values
    /// are those of `propagate`, bit for bit.
    #[test]
    fn raise_flags_nan_of_its_operand() {
        let (p, q) = (sample(60, 7), sample(60, 8));
        for kind in [Kind::Entropy, Kind::KlDivergence, Kind::JensenShannon] {
            let (a, pa) = rows_with(kind, NanPolicy::Raise, &p, &q, [4, 15], 2);
            let (b, _) = rows_with(kind, NanPolicy::Propagate, &p, &q, [4, 15], 2);
            assert_eq!(pa.flags, 0);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
            let mut pn = p.clone();
            pn[31] = f64::NAN;
            let (_, part) = rows_with(kind, NanPolicy::Raise, &pn, &q, [4, 15], 2);
            assert_eq!(part.flags, flags::INPUT, "{kind:?}");
            let (_, part) = rows_with(kind, NanPolicy::Propagate, &pn, &q, [4, 15], 2);
            assert_eq!(part.flags, 0);
            let mut qn = q.clone();
            qn[59] = f64::NAN;
            let (_, part) = rows_with(kind, NanPolicy::Raise, &p, &qn, [1, 60], 1);
            let want = if kind == Kind::Entropy {
                0
            } else {
                flags::TARGET
            };
            assert_eq!(part.flags, want, "{kind:?}");
        }
    }
}
