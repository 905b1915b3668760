//! Softmax cross-entropy of logits rows (see [`super::rows`]), as PyTorch's `cross_entropy`.
//!
//! With `x` a row of `C` logits, `w` the class weights (1 when absent, `W = Σ w`), `ε` the
//! label smoothing and `lse = ln Σ_c e^{x_c}`, a row's loss is
//!
//! ```text
//! class index y:      (1 - ε) · w_y · (lse - x_y)  +  ε / C · Σ_c w_c · (lse - x_c)
//! probabilities t:    Σ_c w_c · t'_c · (lse - x_c),      t'_c = (1 - ε) · t_c + ε / C
//! ```
//!
//! exactly as `torch.nn.functional.cross_entropy` defines it. `lse` is computed in one read of
//! the row, never materialising the softmax. Every difference of logits is taken against a
//! reference `r`, the row's largest logit `m` (0 for a row without a finite one):
//!
//! ```text
//! lse - x_c = (r - x_c) + ln S,    S = Σ_c e^{x_c - r} = k + s,    ln S = ln_1p((k - 1) + s)
//! ```
//!
//! with `k` the number of logits equal to `r` (their terms are exactly 1) and `s` the sum of
//! the others' (below 1). `r - x_c ≥ 0` and `ln S ≥ 0`, so the loss is a sum of non-negative
//! terms, each computed to a few ulp of itself: its error follows the size of the loss, not
//! that of the logits (PyTorch's, and a `W·lse - Σ w x` form's, grow as `eps·|x|`). When the
//! label is the row's maximum, the loss is `ln_1p` of the other classes' share, so a confident
//! row's tiny loss keeps its relative accuracy (PyTorch rounds `ln(1 + 10^-10)` in the working
//! precision).
//!
//! Each tile contributes `(m, s, k)` (exponentials in the input's precision, sums in `f64`)
//! and the sums the loss needs, taken against its own reference; states merge onto the larger
//! reference `R` (`s ← s + (k + s')·e^{r' - R}` for the lower one, and each reference-relative
//! sum `Σ w·(r' - x)` gains `(R - r')·Σ w`):
//!
//! ```text
//! class index y:      (1 - ε) · w_y · ((r - x_y) + ln S)  +  ε / C · (Σ_c w_c·(r - x_c) + W·ln S)
//! probabilities t:    Σ_c w_c·t'_c·(r - x_c)  +  (Σ_c w_c·t'_c) · ln S
//! ```
//!
//! Accuracy (tested against `mpmath`): within a few ulp of the exact loss of the given logits,
//! up to the rounding of `x - r` in the exponentials (at most `|x - r|` half-ulps of a term), for
//! any common offset of the logits and for confident rows alike.
//!
//! Conventions: a row whose label equals `ignore_index` contributes 0 to the sum and to the
//! mean's denominator; a label outside `[0, C)` is a domain error ([`flags::TARGET`]), as is a
//! negative target probability. NaN anywhere in a row's logits makes that row's loss NaN;
//! `+inf` logits give NaN (as PyTorch). A `-inf` logit is a class of probability 0: it adds
//! `+inf` when it is the label, when label smoothing spreads mass on it, or when its target
//! probability is positive, and NaN (`0 · ∞`, as PyTorch) when its target probability is 0
//! (or its class weight is 0 under smoothing). A row of `-inf` only gives NaN. The mean's
//! denominator is the returned `weight`: `Σ w_y` over the rows not ignored for class indices
//! (so PyTorch's weighted mean is `sum / weight`), the number of rows for probabilities.
//!
//! Sample weights (scikit-learn's `sample_weight`, one per row, operand 4 of the rows when
//! given) multiply each row's loss above (class weights included), `sw · ℓ`, and replace the
//! row's share of the denominator: `weight` is then `Σ sw` over the rows not ignored, so
//! `sum / weight` is `numpy.average(ℓ, weights=sw)` over those rows. A negative sample weight
//! is a domain error ([`flags::WEIGHT`], also on an ignored row); NaN propagates.
//!
//! NaN policy ([`NanPolicy`], SciPy's `nan_policy`): under [`NanPolicy::Propagate`] the
//! kernels are those above. Under the others each tile also marks the rows whose logits (or
//! target probabilities) hold a NaN, in the tile's gather buffers as they are read ([`nan_rows`]).
//! [`NanPolicy::Omit`] then leaves such a row out, as an ignored row is left out (of the sum
//! and of the mean's denominator, `Σ w_y`, the row count or `Σ sw`), and a row whose sample
//! weight is NaN likewise; its loss, when written, is NaN. [`NanPolicy::Raise`] flags
//! [`flags::NAN`] on such a row (ignored or not) for the caller to locate. Class weights are
//! parameters, not data: a NaN among them propagates under `omit`.

/// The gradient and diagonal Hessian of the loss, on the same log-sum-exp state ([`Lse`]).
pub mod grad;

use super::float::Float;
use super::isa::Arch;
use super::lanes::{max_lanes, row_sums, LANES};
use super::math;
use super::nan::NanPolicy;
use super::reduce::{flags, Partial};
use super::rows::{In, Out, Row, RowBatch, RowOp, Tile};
use super::strided::{Load, TileBuf};

/// An integer class-label element type (the class-index targets of the loss and, through
/// [`grad::ClassTarget`], of its gradient).
pub trait Label: Copy + Send + Sync + std::fmt::Debug + Default + 'static {
    /// The label as a class index (may be out of range; checked by the kernel).
    fn index(self) -> i64;
}

macro_rules! impl_label {
    ($($t:ty),*) => {$(
        impl Label for $t {
            #[inline(always)]
            fn index(self) -> i64 {
                self as i64
            }
        }
    )*};
}
impl_label!(i8, i16, i32, i64, u8, u16, u32);

/// The reference of a state whose largest logit is `m`: `m` itself, or 0 when no logit is
/// above `-inf` (so that `r - x` is `+inf` for a `-inf` logit, not `-inf - -inf`).
#[inline(always)]
pub(crate) fn reference(m: f64) -> f64 {
    if m == f64::NEG_INFINITY {
        0.0
    } else {
        m
    }
}

/// The running state of a row: its largest logit `m`, `S = Σ e^{x - r}` (`r` its
/// [`reference`]) as `k + s`, and the sums a loss needs, those marked relative taken against
/// `r`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lse {
    /// Largest logit seen (`-inf` for none); NaN logits are skipped here and poison `s`.
    pub m: f64,
    /// `Σ e^{x - r}` over the logits other than those equal to `r` (NaN if a logit is NaN or
    /// `m` is `+inf`).
    pub s: f64,
    /// The number of logits equal to `r`, each contributing exactly 1 to `S`.
    pub k: f64,
    /// Class indices with label smoothing: `Σ w·(r - x)` (relative). Probabilities: `Σ w t'`.
    pub a: f64,
    /// Class indices with label smoothing: `Σ w`. Probabilities: `Σ w t'·(r - x)` (relative).
    pub b: f64,
    pub flags: u32,
}

impl Lse {
    pub(crate) const EMPTY: Lse = Lse {
        m: f64::NEG_INFINITY,
        s: 0.0,
        k: 0.0,
        a: 0.0,
        b: 0.0,
        flags: 0,
    };

    /// True for a state that contributes nothing: no logits, or only `-inf` ones with no sums.
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.m == f64::NEG_INFINITY
            && self.s == 0.0
            && self.k == 0.0
            && self.a == 0.0
            && self.b == 0.0
    }

    /// This state taken against the reference of `to` (a largest logit at least `m`): the
    /// exponential sum scaled by `e^{r - R}` (its logits at `r` are no longer at the
    /// reference), the relative sum (`a` for class indices, `b` for probabilities) raised by
    /// `(R - r)` times its weight sum.
    #[inline(always)]
    fn moved(self, to: f64, probs: bool) -> Lse {
        if self.m == to {
            return self;
        }
        let (r, big_r) = (reference(self.m), reference(to));
        // No finite logit: `s` is 0 (or NaN, kept) and `k` is 0.
        let s = if self.m == f64::NEG_INFINITY {
            self.s
        } else {
            (self.k + self.s) * (r - big_r).exp()
        };
        let d = big_r - r;
        let (a, b) = if probs {
            (self.a, self.b + d * self.a)
        } else {
            (self.a + d * self.b, self.b)
        };
        Lse {
            m: to,
            s,
            k: 0.0,
            a,
            b,
            flags: self.flags,
        }
    }

    /// `self` (earlier elements of a row) followed by `o`; `probs`: states of
    /// [`SoftmaxProbs`] (which of `a`, `b` is relative).
    #[inline(always)]
    pub(crate) fn merge(self, o: Lse, probs: bool) -> Lse {
        let flags = self.flags | o.flags;
        if o.is_empty() {
            return Lse { flags, ..self };
        }
        if self.is_empty() {
            return Lse { flags, ..o };
        }
        let m = if o.m > self.m { o.m } else { self.m };
        let (x, y) = (self.moved(m, probs), o.moved(m, probs));
        Lse {
            m,
            s: x.s + y.s,
            k: x.k + y.k,
            a: x.a + y.a,
            b: x.b + y.b,
            flags,
        }
    }

    /// `ln S = ln_1p((k - 1) + s)`: `k - 1` is exact and `s ≥ 0`, so `S - 1` (the other
    /// classes' share when the label is the maximum) keeps its relative accuracy however small
    /// it is. `-inf` for a row without a finite logit (`k = s = 0`), NaN with `s`.
    #[inline(always)]
    pub(crate) fn ln_s<A: Arch>(&self) -> f64 {
        Self::ln_s_of::<A>(self.k, self.s)
    }

    /// [`Lse::ln_s`] of a state with these `k` and `s`: one formula for the row-by-row and the
    /// batched finish ([`finish_batch`]), which must give a row the same bits.
    #[inline(always)]
    fn ln_s_of<A: Arch>(k: f64, s: f64) -> f64 {
        math::ln_1p_nonneg_f64::<A>((k - 1.0) + s)
    }
}

/// The largest element of `x` (NaN ignored, `-inf` for none; see [`max_lanes`]) and how many
/// elements equal it. Rows of a few elements take both in one left-to-right scan, whose count
/// chain runs beside the maximum's; longer ones are counted in a second, vectorised pass.
#[inline(always)]
fn max_count<T: Float>(x: &[T]) -> (T, u32) {
    if x.len() <= LANES {
        let neg_inf = T::from_f64(f64::NEG_INFINITY);
        return x.iter().fold((neg_inf, 0u32), |(m, k), &v| {
            let k = if v > m { 1 } else { k + u32::from(v == m) };
            (if v > m { v } else { m }, k)
        });
    }
    let m = max_lanes(x);
    (m, x.iter().fold(0u32, |k, &v| k + u32::from(v == m)))
}

/// Sets `m`, `s` and `k` of each row's state from a batch of rows of `n` logits (`x`, row
/// after row), and each row's reference into `shift` (`x`'s length, element by element); `e`
/// is scratch space of `x`'s length, `sums` of one `f64` per row. The exponentials run over
/// the whole batch in one loop, each against its row's reference; a logit at the reference
/// adds 1 to `k` (counted with the maximum) instead of `e^0` to `s` (`+inf - +inf`, NaN, to
/// `s`).
#[inline(always)]
fn batch_lse<A: Arch, T: Float>(
    x: &[T],
    n: usize,
    e: &mut [T],
    shift: &mut [T],
    sums: &mut [f64],
    states: &mut [Lse],
) {
    let neg_inf = T::from_f64(f64::NEG_INFINITY);
    for (r, state) in states.iter_mut().enumerate() {
        let row = &x[r * n..(r + 1) * n];
        let (m, k) = max_count(row);
        // A row of -inf (and NaN) has nothing to scale by: e^{x - 0} is 0 (or NaN) there.
        let reference = if m == neg_inf { T::ZERO } else { m };
        shift[r * n..(r + 1) * n].fill(reference);
        state.m = m.to_f64();
        // No logit equals the reference 0 of a row without a finite one.
        state.k = if m == neg_inf { 0.0 } else { f64::from(k) };
    }
    for ((e, &v), &m) in e.iter_mut().zip(x).zip(&*shift) {
        let d = v - m;
        *e = if v == m { d } else { d.exp_on::<A>() };
    }
    row_sums(e, n, sums);
    for (state, &s) in states.iter_mut().zip(&*sums) {
        state.s = s;
    }
}

/// What the softmax kernels share: the class count, the class weights, label smoothing.
#[derive(Clone, Copy, Debug)]
pub struct Classes<T> {
    /// Number of classes `C` (the row length).
    pub count: usize,
    /// Class weights (operand 2 of the rows; a single 1 with stride 0 when absent), read as
    /// `T` whatever float type they are stored in ([`super::strided::Src`]).
    pub weight: In<T>,
    /// `Σ_c w_c` (`C` without weights).
    pub weight_total: f64,
    /// Label smoothing `ε` in `[0, 1]`.
    pub smoothing: f64,
}

/// Softmax cross-entropy against class indices, over rows of operands
/// `[logits, labels, weight, out, sample_weight]` (labels, out, sample weights: stride 0
/// along the class axis).
pub struct SoftmaxLabels<T, L> {
    pub logits: In<T>,
    pub labels: In<L>,
    pub classes: Classes<T>,
    pub ignore_index: i64,
    /// Per-row losses (`None`: not written).
    pub out: Option<Out<T>>,
    /// Per-row sample weights, read as `T` whatever float type they are stored in (`None`:
    /// PyTorch's mean).
    pub sample_weight: Option<In<T>>,
    /// The NaN policy (see the module doc).
    pub nan: NanPolicy,
}

/// Marks with [`flags::NAN`] the state of each row (of `n` elements, row after row in `x`)
/// that holds a NaN. A branch-free fold per row, over the tile's gather buffer while it is
/// in cache: no pass over the input of its own, no mask.
#[inline(always)]
fn nan_rows<T: Float>(x: &[T], n: usize, states: &mut [Lse]) {
    if n == 0 {
        return;
    }
    for (row, state) in x.chunks_exact(n).zip(states.iter_mut()) {
        if row.iter().fold(false, |nan, &v| nan | v.is_nan()) {
            state.flags |= flags::NAN;
        }
    }
}

/// What [`NanPolicy`] `nan` makes of a row that [`nan_rows`] marked in `st_flags`, or whose
/// sample weight `sw` (1 without sample weights) is NaN: `None` when it is not such a row (or
/// NaN propagates), else the row's contribution: nothing (`omit`; its loss, written, is NaN),
/// or the [`flags::NAN`] error (`raise`).
#[inline(always)]
fn nan_row(nan: NanPolicy, st_flags: u32, sw: f64) -> Option<Partial> {
    if nan == NanPolicy::Propagate {
        return None;
    }
    if st_flags & flags::NAN == 0 && !sw.is_nan() {
        return None;
    }
    Some(match nan {
        NanPolicy::Raise => Partial {
            flags: flags::NAN,
            ..Partial::EMPTY
        },
        _ => Partial::EMPTY,
    })
}

/// A row's sample weight, 1 without sample weights (`loss · 1` is `loss`, bit for bit), or
/// the [`flags::WEIGHT`] error of a negative one.
///
/// A number in both cases, not an `Option`: the compiler computes `sw · loss` before it
/// selects between the cases, and with `None` that multiply read whatever the register held;
/// when that was a subnormal, every row paid a microcode assist (about 150 cycles; a softmax
/// call over short rows ran twice as slow, and how often depended on what the stack held).
#[inline(always)]
fn sample_weight<T: Float>(row: &Row<5>, sw: &Option<In<T>>) -> Result<f64, Partial> {
    match sw {
        None => Ok(1.0),
        Some(sw) => {
            let v = row.value(sw).to_f64();
            if v < 0.0 {
                Err(Partial {
                    flags: flags::WEIGHT,
                    ..Partial::EMPTY
                })
            } else {
                Ok(v)
            }
        }
    }
}

/// What [`RowOp::finish_rows`]' default gives for the rows of `batch` (states `states`),
/// with `finish(row, state, ln_s)` the op's [`RowOp::finish`] given the state's `ln S`: the
/// logarithms, the longest chain of a short row's finish (a scalar `f64` log), are taken a
/// batch of rows at a time in vector lanes, on the same operations per row, so every row gets
/// the same bits.
#[inline(always)]
fn finish_batch<A: Arch, O: RowOp<5, State = Lse>>(
    op: &O,
    batch: &RowBatch<5>,
    states: &[Lse],
    mut part: Partial,
    finish: impl Fn(&Row<5>, Lse, f64) -> Partial,
) -> Partial {
    // The two fields the logarithm needs, an array each (a state is 48 bytes: read field by
    // field, the loop would not vectorise); `ln S` replaces `k - 1 + s` in place. Chunks of
    // 64 rows: enough for the vector lanes, and the arrays are zeroed on every call.
    const CHUNK: usize = 64;
    let (mut ln_s, mut s) = ([0.0; CHUNK], [0.0; CHUNK]);
    for (c, states) in states.chunks(CHUNK).enumerate() {
        let n = states.len();
        for ((k, s), st) in ln_s.iter_mut().zip(s.iter_mut()).zip(states) {
            (*k, *s) = (st.k, st.s);
        }
        for (l, &s) in ln_s[..n].iter_mut().zip(&s) {
            *l = Lse::ln_s_of::<A>(*l, s);
        }
        for (r, (&st, &ln_s)) in states.iter().zip(&ln_s).enumerate() {
            let row = batch.row(c * CHUNK + r);
            part = part.merge(row.located(finish(&row, op.merge(op.empty(), st), ln_s)));
        }
    }
    part
}

impl<T: Float, L: Label + Load> RowOp<5> for SoftmaxLabels<T, L> {
    type State = Lse;
    /// Gather buffers for logits and weights; the exponentials and their references;
    /// `w · (r - x)`; per-row sums (two per row).
    type Scratch = (
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<f64>,
        TileBuf<f64>,
    );

    fn empty(&self) -> Lse {
        Lse::EMPTY
    }

    #[inline(always)]
    fn tile<A: Arch>(
        &self,
        (bx, bw, be, bm, bt, bs): &mut Self::Scratch,
        tile: &Tile<5>,
        states: &mut [Lse],
    ) {
        let (rows, n) = (states.len(), tile.len());
        let x = tile.read(&self.logits, bx);
        for s in states.iter_mut() {
            *s = Lse::EMPTY;
        }
        let (sums, ks) = bs.scratch(2 * rows).split_at_mut(rows);
        let shift = bm.scratch(rows * n);
        batch_lse::<A, T>(x, n, be.scratch(rows * n), shift, sums, states);
        if self.nan != NanPolicy::Propagate {
            nan_rows(x, n, states);
        }
        if self.classes.smoothing > 0.0 {
            let w = tile.read(&self.classes.weight, bw);
            let wx = bt.scratch(rows * n);
            for (((t, &w), &x), &r) in wx.iter_mut().zip(w).zip(x).zip(&*shift) {
                // 0 at the reference, also for an infinite weight (whose `w·(lse - x)` is
                // `∞·ln S`, not `∞·0`).
                let d = r.to_f64() - x.to_f64();
                *t = if d == 0.0 { 0.0 } else { w.to_f64() * d };
            }
            row_sums(wx, n, sums);
            if tile.is_broadcast(&self.classes.weight) {
                // One weight for every class (none given): `Σ w` without a pass.
                ks.fill(w[0].to_f64() * n as f64);
            } else {
                row_sums(w, n, ks);
            }
            for ((s, &a), &b) in states.iter_mut().zip(&*sums).zip(&*ks) {
                s.a = a;
                s.b = b;
            }
        }
    }

    #[inline(always)]
    fn merge(&self, a: Lse, b: Lse) -> Lse {
        a.merge(b, false)
    }

    /// [`finish`](Self::finish) row after row, their `ln S` a batch at a time ([`finish_batch`]).
    #[inline(always)]
    fn finish_rows<A: Arch>(&self, batch: &RowBatch<5>, states: &[Lse], part: Partial) -> Partial {
        finish_batch::<A, _>(self, batch, states, part, |row, st, ln_s| {
            self.finish_ln::<A>(row, st, ln_s)
        })
    }

    #[inline(always)]
    fn finish<A: Arch>(&self, row: &Row<5>, st: Lse) -> Partial {
        self.finish_ln::<A>(row, st, st.ln_s::<A>())
    }
}

impl<T: Float, L: Label + Load> SoftmaxLabels<T, L> {
    /// [`RowOp::finish`] of a row whose `ln S` ([`Lse::ln_s`]) is `ln_s`.
    #[inline(always)]
    fn finish_ln<A: Arch>(&self, row: &Row<5>, st: Lse, ln_s: f64) -> Partial {
        let y = row.value(&self.labels).index();
        let write = |loss: f64| {
            if let Some(out) = &self.out {
                row.write(out, T::from_f64(loss));
            }
        };
        let sw = match sample_weight(row, &self.sample_weight) {
            Ok(sw) => sw,
            Err(bad) => return bad,
        };
        // `raise` looks at every row, ignored ones too.
        if self.nan == NanPolicy::Raise {
            if let Some(bad) = nan_row(self.nan, st.flags, sw) {
                return bad;
            }
        }
        if y == self.ignore_index {
            write(0.0);
            return Partial::EMPTY;
        }
        let classes = &self.classes;
        if y < 0 || y as u64 >= classes.count as u64 {
            return Partial {
                flags: flags::TARGET,
                ..Partial::EMPTY
            };
        }
        let r = reference(st.m);
        // 0 <= y < C: class y of the row.
        let xy = row.get(&self.logits, y as usize).to_f64();
        let wy = row.get(&classes.weight, y as usize).to_f64();
        // `lse - x_y` as a sum of two non-negative terms.
        let mut loss = wy * ((r - xy) + ln_s);
        if classes.smoothing > 0.0 {
            let eps = classes.smoothing;
            // `Σ w (lse - x)`, likewise.
            let smooth = classes.weight_total.mul_add_on::<A>(ln_s, st.a);
            loss = (1.0 - eps) * loss + eps / classes.count as f64 * smooth;
        }
        let weight = if self.sample_weight.is_some() { sw } else { wy };
        let loss = sw * loss;
        write(loss);
        if let Some(omitted) = nan_row(self.nan, st.flags, sw) {
            return omitted;
        }
        Partial {
            sum: loss,
            weight,
            count: 1,
            ..Partial::EMPTY
        }
    }
}

/// Softmax cross-entropy against class probabilities, over rows of operands
/// `[logits, target, weight, out, sample_weight]` (target: the logits' shape; out and sample
/// weights: stride 0 along classes).
pub struct SoftmaxProbs<T> {
    pub logits: In<T>,
    /// Read as `T` whatever float type it is stored in ([`super::strided::Src`]).
    pub target: In<T>,
    pub classes: Classes<T>,
    pub out: Option<Out<T>>,
    /// As for [`SoftmaxLabels`].
    pub sample_weight: Option<In<T>>,
    /// The NaN policy (see the module doc): a NaN target probability counts as a NaN logit.
    pub nan: NanPolicy,
}

impl<T: Float> RowOp<5> for SoftmaxProbs<T> {
    type State = Lse;
    /// Gather buffers for logits, targets and weights; the exponentials and their references;
    /// `w t'` and `w t' (r - x)`; per-row sums.
    type Scratch = (
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<f64>,
        TileBuf<f64>,
        TileBuf<f64>,
    );

    fn empty(&self) -> Lse {
        Lse::EMPTY
    }

    #[inline(always)]
    fn tile<A: Arch>(
        &self,
        (bx, bt, bw, be, bm, ba, bb, bs): &mut Self::Scratch,
        tile: &Tile<5>,
        states: &mut [Lse],
    ) {
        let (rows, n) = (states.len(), tile.len());
        let len = rows * n;
        let (x, t, w) = (
            tile.read(&self.logits, bx),
            tile.read(&self.target, bt),
            tile.read(&self.classes.weight, bw),
        );
        let sums = bs.scratch(2 * rows);
        let shift = bm.scratch(len);
        batch_lse::<A, T>(x, n, be.scratch(len), shift, &mut sums[..rows], states);
        let eps = self.classes.smoothing;
        let (keep, spread) = (1.0 - eps, eps / self.classes.count as f64);
        let (wt, wtx) = (ba.scratch(len), bb.scratch(len));
        let terms = wt.iter_mut().zip(wtx.iter_mut()).zip(x).zip(t).zip(w);
        for (((((a, b), &x), &t), &w), &r) in terms.zip(&*shift) {
            *a = w.to_f64() * (t.to_f64() * keep + spread);
            // 0 at the reference, also for an infinite target (`∞·ln S`, not `∞·0`).
            let d = r.to_f64() - x.to_f64();
            *b = if d == 0.0 { 0.0 } else { *a * d };
        }
        // A negative target is flagged on the batch's first row (the caller locates it).
        let negative = t.iter().fold(false, |bad, &v| bad | (v < T::ZERO));
        let (sa, sb) = sums.split_at_mut(rows);
        row_sums(wt, n, sa);
        row_sums(wtx, n, sb);
        for (r, s) in states.iter_mut().enumerate() {
            s.a = sa[r];
            s.b = sb[r];
            s.flags = if negative && r == 0 { flags::TARGET } else { 0 };
        }
        if self.nan != NanPolicy::Propagate {
            nan_rows(x, n, states);
            nan_rows(t, n, states);
        }
    }

    #[inline(always)]
    fn merge(&self, a: Lse, b: Lse) -> Lse {
        a.merge(b, true)
    }

    /// [`finish`](Self::finish) row after row, their `ln S` a batch at a time ([`finish_batch`]).
    #[inline(always)]
    fn finish_rows<A: Arch>(&self, batch: &RowBatch<5>, states: &[Lse], part: Partial) -> Partial {
        finish_batch::<A, _>(self, batch, states, part, |row, st, ln_s| {
            self.finish_ln::<A>(row, st, ln_s)
        })
    }

    #[inline(always)]
    fn finish<A: Arch>(&self, row: &Row<5>, st: Lse) -> Partial {
        self.finish_ln::<A>(row, st, st.ln_s::<A>())
    }
}

impl<T: Float> SoftmaxProbs<T> {
    /// [`RowOp::finish`] of a row whose `ln S` ([`Lse::ln_s`]) is `ln_s`.
    #[inline(always)]
    fn finish_ln<A: Arch>(&self, row: &Row<5>, st: Lse, ln_s: f64) -> Partial {
        let sw = match sample_weight(row, &self.sample_weight) {
            Ok(sw) => sw,
            Err(bad) => return bad,
        };
        // No classes: an empty sum, 0 as in PyTorch (not `0 · lse = 0 · -inf = NaN`).
        let loss = if self.classes.count == 0 {
            0.0
        } else {
            // `Σ w t' (lse - x)` as a sum of two non-negative terms.
            st.a.mul_add_on::<A>(ln_s, st.b)
        };
        let loss = sw * loss;
        if let Some(out) = &self.out {
            row.write(out, T::from_f64(loss));
        }
        // The domain errors stay (a negative target raises whatever the policy).
        let errors = st.flags & !flags::NAN;
        if let Some(omitted) = nan_row(self.nan, st.flags, sw) {
            return Partial {
                flags: omitted.flags | errors,
                ..omitted
            };
        }
        Partial {
            sum: loss,
            // The row count's share without sample weights (`sw` is then 1).
            weight: sw,
            count: 1,
            flags: errors,
            ..Partial::EMPTY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{run, Rows};

    /// PyTorch's definition in f64: log_softmax, then the weighted (smoothed) NLL.
    fn reference(x: &[f64], target: &[f64], w: &[f64], eps: f64) -> f64 {
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let c = x.len() as f64;
        x.iter()
            .zip(target)
            .zip(w)
            .map(|((xi, ti), wi)| wi * (ti * (1.0 - eps) + eps / c) * (lse - xi))
            .sum()
    }

    fn logits(rows: usize, c: usize) -> Vec<f64> {
        (0..rows * c)
            .map(|i| ((i as f64) * 0.731).sin() * 30.0 + if i % 7 == 0 { 1e4 } else { 0.0 })
            .collect()
    }

    fn labels_loss(
        x: &[f64],
        labels: &[i64],
        w: &[f64],
        eps: f64,
        c: usize,
        threads: usize,
    ) -> (Vec<f64>, Partial) {
        let r = labels.len();
        let mut out = vec![f64::NAN; r];
        let ci = c as isize;
        let rows = Rows::new(
            &[r, c],
            [&[ci, 1], &[1, 0], &[0, 1], &[1, 0], &[0, 0]],
            &[false, true],
        );
        // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0 to 3).
        let op = unsafe {
            SoftmaxLabels {
                logits: In::new(x.as_ptr(), 0),
                labels: In::new(labels.as_ptr(), 1),
                classes: Classes {
                    count: c,
                    weight: In::new(w.as_ptr(), 2),
                    weight_total: w.iter().sum(),
                    smoothing: eps,
                },
                ignore_index: -100,
                out: Some(Out::new(out.as_mut_ptr(), 3)),
                sample_weight: None,
                nan: NanPolicy::Propagate,
            }
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
        // outlive the call (outputs are written by one row each).
        let part = unsafe { run(&rows, &op, (threads > 1).then_some(&pool)) };
        (out, part)
    }

    #[test]
    fn labels_match_reference_short_and_long_rows() {
        for &(r, c) in &[(300, 10), (3, 100_000)] {
            let x = logits(r, c);
            let w: Vec<f64> = (0..c).map(|k| 0.5 + (k % 5) as f64 * 0.25).collect();
            let labels: Vec<i64> = (0..r)
                .map(|i| {
                    if i % 11 == 3 {
                        -100
                    } else {
                        ((i * 7) % c) as i64
                    }
                })
                .collect();
            for eps in [0.0, 0.1] {
                let (out, part) = labels_loss(&x, &labels, &w, eps, c, 1);
                let (mut sum, mut wsum) = (0.0, 0.0);
                for i in 0..r {
                    if labels[i] == -100 {
                        assert_eq!(out[i], 0.0);
                        continue;
                    }
                    let mut onehot = vec![0.0; c];
                    onehot[labels[i] as usize] = 1.0;
                    let row = &x[i * c..(i + 1) * c];
                    let want = reference(row, &onehot, &w, eps);
                    assert!(
                        (out[i] - want).abs() <= 1e-9 * want.abs().max(1.0),
                        "({r}, {c}) eps {eps} row {i}: {} vs {want}",
                        out[i]
                    );
                    sum += want;
                    wsum += w[labels[i] as usize];
                }
                assert!((part.sum - sum).abs() <= 1e-9 * sum.abs());
                assert!((part.weight - wsum).abs() <= 1e-12 * wsum);
                for threads in [2, 3, 7] {
                    let (o, p) = labels_loss(&x, &labels, &w, eps, c, threads);
                    assert_eq!(p.sum.to_bits(), part.sum.to_bits());
                    assert!(o.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
        }
    }

    #[test]
    fn probabilities_match_reference() {
        let (r, c) = (40, 70_000);
        let x = logits(r, c);
        let t: Vec<f32> = (0..r * c)
            .map(|i| ((i * 13) % 17) as f32 / 16.0 / c as f32)
            .collect();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let one = 1f32;
        let mut out = vec![0f32; r];
        let ci = c as isize;
        let rows = Rows::new(
            &[r, c],
            [&[ci, 1], &[ci, 1], &[0, 0], &[1, 0], &[0, 0]],
            &[false, true],
        );
        // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0 to 3).
        let op = unsafe {
            SoftmaxProbs {
                logits: In::new(x32.as_ptr(), 0),
                target: In::new(t.as_ptr(), 1),
                classes: Classes {
                    count: c,
                    weight: In::new(&one as *const f32, 2),
                    weight_total: c as f64,
                    smoothing: 0.2,
                },
                out: Some(Out::new(out.as_mut_ptr(), 3)),
                sample_weight: None,
                nan: NanPolicy::Propagate,
            }
        };
        // SAFETY: the layout is built from these buffers' own shapes and strides, and the buffers
        // outlive the call (outputs are written by one row each).
        let part = unsafe { run(&rows, &op, None) };
        assert_eq!(part.flags, 0);
        let ones = vec![1.0; c];
        for i in 0..r {
            let row: Vec<f64> = x32[i * c..(i + 1) * c].iter().map(|&v| v as f64).collect();
            let ti: Vec<f64> = t[i * c..(i + 1) * c].iter().map(|&v| v as f64).collect();
            let want = reference(&row, &ti, &ones, 0.2);
            assert!(
                (out[i] as f64 - want).abs() <= 2e-6 * want.abs(),
                "row {i}: {} vs {want}",
                out[i]
            );
        }
    }

    /// A row's loss (class weights included) is multiplied by its sample weight, which
    /// replaces `w[y]` in the denominator; ignored rows count in neither; a negative weight
    /// is flagged, also on an ignored row.
    #[test]
    fn sample_weights_scale_rows_and_form_the_denominator() {
        let (r, c) = (50, 4);
        let x = logits(r, c);
        let w = [1.0, 2.0, 0.5, 3.0];
        let labels: Vec<i64> = (0..r)
            .map(|i| if i % 9 == 4 { -100 } else { (i % c) as i64 })
            .collect();
        let run_with = |sw: &[f64]| {
            let mut out = vec![f64::NAN; r];
            let ci = c as isize;
            let rows = Rows::new(
                &[r, c],
                [&[ci, 1], &[1, 0], &[0, 1], &[1, 0], &[1, 0]],
                &[false, true],
            );
            // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0 to 4).
            let op = unsafe {
                SoftmaxLabels {
                    logits: In::new(x.as_ptr(), 0),
                    labels: In::new(labels.as_ptr(), 1),
                    classes: Classes {
                        count: c,
                        weight: In::new(w.as_ptr(), 2),
                        weight_total: w.iter().sum(),
                        smoothing: 0.0,
                    },
                    ignore_index: -100,
                    out: Some(Out::new(out.as_mut_ptr(), 3)),
                    sample_weight: Some(In::new(sw.as_ptr(), 4)),
                    nan: NanPolicy::Propagate,
                }
            };
            // SAFETY: the buffers outlive the call; each output row is written by one row.
            let part = unsafe { run(&rows, &op, None) };
            (out, part)
        };
        let sw: Vec<f64> = (0..r).map(|i| (i % 5) as f64 * 0.75).collect();
        let (out, part) = run_with(&sw);
        let (mut sum, mut total) = (0.0, 0.0);
        for i in 0..r {
            if labels[i] == -100 {
                assert_eq!(out[i], 0.0);
                continue;
            }
            let mut onehot = vec![0.0; c];
            onehot[labels[i] as usize] = 1.0;
            let want = sw[i] * reference(&x[i * c..(i + 1) * c], &onehot, &w, 0.0);
            assert!(
                (out[i] - want).abs() <= 1e-12 * want.abs().max(1.0),
                "row {i}"
            );
            sum += want;
            total += sw[i];
        }
        assert!((part.sum - sum).abs() <= 1e-12 * sum);
        assert_eq!(part.weight, total);
        let mut bad = sw.clone();
        bad[4] = -1.0; // an ignored row
        let (_, part) = run_with(&bad);
        assert_eq!((part.flags, part.first_bad), (flags::WEIGHT, 4));
    }

    #[test]
    fn extremes_and_domain_errors() {
        let inf = f64::INFINITY;
        let w = [1.0; 3];
        // -inf logits are impossible classes; the row's loss stays finite.
        let (out, _) = labels_loss(&[-inf, 0.0, 0.0], &[1], &w, 0.0, 3, 1);
        assert!((out[0] - std::f64::consts::LN_2).abs() < 1e-15);
        // Logits of ±1e4 stay exact; NaN poisons only its own row.
        let (out, _) = labels_loss(&[-1e4, 1e4, 0.0], &[0], &w, 0.0, 3, 1);
        assert_eq!(out[0], 2e4);
        let (out, _) = labels_loss(&[0.0, f64::NAN, 0.0, 1.0, 2.0, 3.0], &[0, 2], &w, 0.0, 3, 1);
        assert!(out[0].is_nan() && out[1].is_finite());
        let (_, part) = labels_loss(&[0.0; 6], &[1, 3], &w, 0.0, 3, 1);
        assert_eq!((part.flags, part.first_bad), (flags::TARGET, 1));
        let (_, part) = labels_loss(&[0.0; 6], &[-1, 0], &w, 0.0, 3, 1);
        assert_eq!((part.flags, part.first_bad), (flags::TARGET, 0));
    }

    /// The batched finish of short rows ([`finish_batch`]: logarithms in vector lanes) gives
    /// each row the bits the row gets alone (one row per call, the lanes' scalar tail), for
    /// rows of every kind: ordinary, confident, ignored, all `-inf`, with a NaN, with and
    /// without sample weights and smoothing, with either target form; and the batch's
    /// denominator and count are those of the rows one by one.
    #[test]
    fn batched_finish_gives_each_row_its_own_bits() {
        // 4 classes: 128 rows per tile, finished in more than one chunk.
        for c in [4, 10] {
            batched_finish_case(300, c);
        }
    }

    fn batched_finish_case(r: usize, c: usize) {
        let mut x = logits(r, c);
        for (i, row) in x.chunks_mut(c).enumerate() {
            match i % 11 {
                3 => row.fill(f64::NEG_INFINITY),
                5 => row[2] = f64::NAN,
                7 => row[1] = 1e3,
                _ => {}
            }
        }
        let labels: Vec<i64> = (0..r)
            .map(|i| {
                if i % 13 == 4 {
                    -100
                } else {
                    (i * 7 % c) as i64
                }
            })
            .collect();
        let t: Vec<f64> = (0..r * c).map(|i| ((i * 37 % 11) as f64) / 50.0).collect();
        let sw: Vec<f64> = (0..r).map(|i| (i % 5) as f64 * 0.75).collect();
        let w: Vec<f64> = (0..c).map(|i| 0.5 + i as f64 / 4.0).collect();
        // Rows `first..first + n`: per-row losses and the call's (weight, count).
        let call = |first: usize, n: usize, probs: bool, eps: f64, weighted: bool| {
            let mut out = vec![0.0; n];
            let ci = c as isize;
            let sws: isize = if weighted { 1 } else { 0 };
            let rows = Rows::new(
                &[n, c],
                [
                    &[ci, 1],
                    &[if probs { ci } else { 1 }, if probs { 1 } else { 0 }],
                    &[0, 1],
                    &[1, 0],
                    &[sws, 0],
                ],
                &[false, true],
            );
            let classes = || Classes {
                count: c,
                // SAFETY: `w` holds the `c` class weights (stride 1 along classes).
                weight: unsafe { In::new(w.as_ptr(), 2) },
                weight_total: w.iter().sum(),
                smoothing: eps,
            };
            // SAFETY: `rows` is built from these buffers' shapes and strides (operands 0 to 4);
            // they outlive the call, and each row writes its own element of `out`.
            let part = unsafe {
                let x = In::new(x[first * c..].as_ptr(), 0);
                let out = Some(Out::new(out.as_mut_ptr(), 3));
                let sample_weight = weighted.then(|| In::new(sw[first..].as_ptr(), 4));
                if probs {
                    let op = SoftmaxProbs {
                        logits: x,
                        target: In::new(t[first * c..].as_ptr(), 1),
                        classes: classes(),
                        out,
                        sample_weight,
                        nan: NanPolicy::Propagate,
                    };
                    run(&rows, &op, None)
                } else {
                    let op = SoftmaxLabels {
                        logits: x,
                        labels: In::new(labels[first..].as_ptr(), 1),
                        classes: classes(),
                        ignore_index: -100,
                        out,
                        sample_weight,
                        nan: NanPolicy::Propagate,
                    };
                    run(&rows, &op, None)
                }
            };
            (out, part.weight, part.count)
        };
        for probs in [false, true] {
            for eps in [0.0, 0.1] {
                for weighted in [false, true] {
                    let (batch, weight, count) = call(0, r, probs, eps, weighted);
                    let (mut weights, mut counts) = (0.0, 0);
                    for (i, &got) in batch.iter().enumerate() {
                        let (alone, w1, n1) = call(i, 1, probs, eps, weighted);
                        assert_eq!(
                            got.to_bits(),
                            alone[0].to_bits(),
                            "row {i} (probs {probs}, eps {eps}, weighted {weighted}): {got} vs {}",
                            alone[0]
                        );
                        (weights, counts) = (weights + w1, counts + n1);
                    }
                    assert_eq!((weight, count), (weights, counts));
                }
            }
        }
    }
}
