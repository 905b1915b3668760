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
//! that sums the logs (`P`, `Q` and the log sum are reduced together, then corrected).
//! Jensen-Shannon cannot be written that way (`m` needs `P` and `Q` inside the log), so it
//! reads each row twice: once for `P` and `Q`, once for the logs. Without normalisation
//! (`normalize=false`) the rows are used as given: `-Σ p ln p`, `-Σ p ln q`, `Σ p ln(p/q)`.
//!
//! Conventions (those of `scipy.special.entr`/`rel_entr`): a term with `p = 0` is 0 whatever
//! `q` is (`0 · ln 0 = 0`); `p > 0` with `q = 0` gives `+inf` (KL, cross-entropy). An empty row
//! gives 0. A row summing to 0 gives NaN when normalising (0/0, as SciPy). A negative value in
//! `p` (`q`) is a domain error flagged [`flags::INPUT`] ([`flags::TARGET`]). NaN propagates to
//! its row's result.
//!
//! Every element term is computed in `f64`, also for `f32` input: the single-pass forms
//! subtract large, nearly equal quantities when a row's sum is far from 1 (counts, or
//! `1e-30`-scaled rows), and an `f32` logarithm's rounding (up to 4e-6 at `ln ≈ -68`) would
//! survive that subtraction. In `f64` the result is accurate to a few ulp of `f32`.

use super::float::Float;
use super::isa::Arch;
use super::reduce::{flags, Partial};
use super::rows::{row_sums, view_rows, RowOp};
use super::strided::{SendPtr, TileBuf};

/// Which quantity of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `H(p)`; the `q` operand is not read.
    Entropy,
    /// `H(p, q)`.
    CrossEntropy,
    /// `D(p‖q)`.
    KlDivergence,
    /// First pass of Jensen-Shannon: stores each row's `(1/P, 1/Q)` (or `(1, 1)` without
    /// normalisation) in [`Divergence::norms`]; writes no output.
    JensenShannonSums,
    /// Second pass of Jensen-Shannon, reading the factors the first pass stored.
    JensenShannon,
}

/// The per-row state: up to three sums (in `f64`) and the domain errors met.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sums {
    pub v: [f64; 3],
    pub flags: u32,
}

/// One divergence over rows of operands `[p, q, out]` (see [`super::rows::Rows`]).
///
/// `out` (null for none) receives each row's result; `norms` (Jensen-Shannon only) holds one
/// `[f64; 2]` per row, indexed by the engine's row index.
pub struct Divergence<T> {
    pub kind: Kind,
    pub p: SendPtr<T>,
    pub q: SendPtr<T>,
    pub out: SendPtr<T>,
    pub norms: SendPtr<[f64; 2]>,
    /// Elements per row.
    pub len: usize,
    pub normalize: bool,
    /// `ln(base)`, or 1 for natural logarithms.
    pub log_base: f64,
}

/// True if any element is negative (NaN is not).
#[inline(always)]
fn any_negative<T: Float>(x: &[T]) -> bool {
    x.iter().fold(false, |bad, &v| bad | (v < T::ZERO))
}

/// `x · ln(x / y)` with `0 · ln(0 / y) = 0` (branch-free).
#[inline(always)]
fn rel_entr<A: Arch>(x: f64, y: f64) -> f64 {
    let t = x * (x / y).ln_on::<A>();
    if x == 0.0 {
        0.0
    } else {
        t
    }
}

/// `x · ln x` with `0 · ln 0 = 0` (branch-free).
#[inline(always)]
fn x_ln_x<A: Arch>(x: f64) -> f64 {
    let t = x * x.ln_on::<A>();
    if x == 0.0 {
        0.0
    } else {
        t
    }
}

impl<T: Float> RowOp<3> for Divergence<T> {
    type State = Sums;
    /// Gather buffers for `p` and `q`; the element terms; Jensen-Shannon's scale factors;
    /// the per-row sums.
    type Scratch = (
        TileBuf<T>,
        TileBuf<T>,
        TileBuf<f64>,
        TileBuf<f64>,
        TileBuf<f64>,
        TileBuf<f64>,
    );

    fn empty(&self) -> Sums {
        Sums {
            v: [0.0; 3],
            flags: 0,
        }
    }

    #[inline(always)]
    unsafe fn tile<A: Arch>(
        &self,
        (bp, bq, bt, bfa, bfb, bs): &mut Self::Scratch,
        first_row: usize,
        at: [isize; 3],
        rs: [isize; 3],
        st: [isize; 3],
        n: usize,
        states: &mut [Sums],
    ) {
        let rows = states.len();
        // SAFETY: the engine hands out offsets inside the operands (the caller of `run`
        // guarantees them valid).
        let p = unsafe { view_rows(bp, self.p.0.offset(at[0]), rs[0], st[0], rows, n) };
        let terms = bt.scratch(rows * n);
        let seg = |r: usize| r * n..(r + 1) * n;
        // Domain errors are flagged on the batch's first row (the caller locates them).
        let bad_p = if any_negative(p) { flags::INPUT } else { 0 };
        let sums = bs.scratch(3 * rows);
        let (sp, rest) = sums.split_at_mut(rows);
        let (sq, sl) = rest.split_at_mut(rows);
        row_sums(p, n, sp);
        if self.kind == Kind::Entropy {
            for (t, &x) in terms.iter_mut().zip(p) {
                *t = x_ln_x::<A>(x.to_f64());
            }
            row_sums(terms, n, sl);
            for (r, s) in states.iter_mut().enumerate() {
                *s = Sums {
                    v: [sp[r], sl[r], 0.0],
                    flags: if r == 0 { bad_p } else { 0 },
                };
            }
            return;
        }
        // SAFETY: as above.
        let q = unsafe { view_rows(bq, self.q.0.offset(at[1]), rs[1], st[1], rows, n) };
        match self.kind {
            Kind::Entropy | Kind::JensenShannonSums => {}
            Kind::CrossEntropy => {
                for ((t, &x), &y) in terms.iter_mut().zip(p).zip(q) {
                    let (x, y) = (x.to_f64(), y.to_f64());
                    let l = -(x * y.ln_on::<A>());
                    *t = if x == 0.0 { 0.0 } else { l };
                }
            }
            Kind::KlDivergence => {
                for ((t, &x), &y) in terms.iter_mut().zip(p).zip(q) {
                    *t = rel_entr::<A>(x.to_f64(), y.to_f64());
                }
            }
            Kind::JensenShannon => {
                let (fa, fb) = (bfa.scratch(rows * n), bfb.scratch(rows * n));
                for r in 0..rows {
                    // SAFETY: the first pass stored one entry per row.
                    let [a, b] = unsafe { *self.norms.0.add(first_row + r) };
                    fa[seg(r)].fill(a);
                    fb[seg(r)].fill(b);
                }
                for ((((t, &x), &y), &fa), &fb) in
                    terms.iter_mut().zip(p).zip(q).zip(&*fa).zip(&*fb)
                {
                    let (a, b) = (x.to_f64() * fa, y.to_f64() * fb);
                    let m = (a + b) * 0.5;
                    *t = rel_entr::<A>(a, m) + rel_entr::<A>(b, m);
                }
            }
        }
        let bad = bad_p | if any_negative(q) { flags::TARGET } else { 0 };
        match self.kind {
            Kind::JensenShannonSums => row_sums(q, n, sq),
            Kind::JensenShannon => row_sums(terms, n, sp),
            _ => {
                row_sums(q, n, sq);
                row_sums(terms, n, sl);
            }
        }
        for (r, s) in states.iter_mut().enumerate() {
            let v = match self.kind {
                Kind::JensenShannonSums => [sp[r], sq[r], 0.0],
                Kind::JensenShannon => [sp[r], 0.0, 0.0],
                _ => [sp[r], sq[r], sl[r]],
            };
            let flags = if r == 0 { bad } else { 0 };
            *s = Sums { v, flags };
        }
    }

    #[inline(always)]
    fn merge(&self, a: Sums, b: Sums) -> Sums {
        Sums {
            v: std::array::from_fn(|k| a.v[k] + b.v[k]),
            flags: a.flags | b.flags,
        }
    }

    #[inline(always)]
    unsafe fn finish<A: Arch>(&self, row: usize, base: [isize; 3], s: Sums) -> Partial {
        let [sp, sq, sl] = s.v;
        let value = if self.len == 0 {
            0.0
        } else {
            match (self.kind, self.normalize) {
                (Kind::Entropy, true) => -sq / sp + sp.ln_on::<A>(),
                (Kind::Entropy, false) => -sq,
                (Kind::CrossEntropy, true) => sl / sp + sq.ln_on::<A>(),
                (Kind::KlDivergence, true) => sl / sp + sq.ln_on::<A>() - sp.ln_on::<A>(),
                (Kind::CrossEntropy | Kind::KlDivergence, false) => sl,
                (Kind::JensenShannonSums, normalize) => {
                    let norms = if normalize {
                        [1.0 / sp, 1.0 / sq]
                    } else {
                        [1.0, 1.0]
                    };
                    // SAFETY: one entry per row, written by this row only.
                    unsafe { *self.norms.0.add(row) = norms };
                    return Partial {
                        count: 1,
                        flags: s.flags,
                        ..Partial::EMPTY
                    };
                }
                (Kind::JensenShannon, _) => 0.5 * sp,
            }
        } / self.log_base;
        if !self.out.0.is_null() {
            // SAFETY: the output row offset is valid and written by this row only.
            unsafe { *self.out.0.offset(base[2]) = T::from_f64(value) };
        }
        Partial {
            sum: value,
            count: 1,
            flags: s.flags,
            ..Partial::EMPTY
        }
    }
}

/// Computes `kind` for every row of `rows` (operands `[p, q, out]`), writing each row's value
/// to `out` when it is not null. Jensen-Shannon runs its two passes here. Returns the merged
/// row contributions: `sum` is the sum of the row values (the value itself for one row),
/// `flags` the domain errors met.
///
/// # Safety
/// `p`, `q` (and `out`, when not null) stepped over `rows` must address valid, aligned elements
/// that stay alive for the call; `out` must not overlap the inputs nor itself.
#[allow(clippy::too_many_arguments)]
pub unsafe fn divergence<T: Float>(
    kind: Kind,
    rows: &super::rows::Rows<3>,
    p: *const T,
    q: *const T,
    out: *mut T,
    normalize: bool,
    log_base: f64,
    pool: Option<&rayon::ThreadPool>,
) -> Partial {
    let mut op = Divergence {
        kind,
        p: SendPtr::from_const(p),
        q: SendPtr::from_const(q),
        out: SendPtr(out),
        norms: SendPtr(std::ptr::null_mut()),
        len: rows.row_len(),
        normalize,
        log_base,
    };
    if kind != Kind::JensenShannon && kind != Kind::JensenShannonSums {
        // SAFETY: forwarded from the caller.
        return unsafe { super::rows::run(rows, &op, pool) };
    }
    let mut norms = vec![[0f64; 2]; rows.rows()];
    op.norms = SendPtr(norms.as_mut_ptr());
    op.kind = Kind::JensenShannonSums;
    // SAFETY: forwarded from the caller; `norms` has one entry per row.
    let sums = unsafe { super::rows::run(rows, &op, pool) };
    if sums.flags != 0 {
        return sums;
    }
    op.kind = Kind::JensenShannon;
    // SAFETY: as above.
    unsafe { super::rows::run(rows, &op, pool) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rows::Rows;

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
        let mut out = vec![T::ZERO; shape[0]];
        let c = shape[1] as isize;
        let rows = Rows::new(&shape, [&[c, 1], &[c, 1], &[1, 0]], &[false, true]);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let part = unsafe {
            divergence(
                kind,
                &rows,
                p.as_ptr(),
                q.as_ptr(),
                out.as_mut_ptr(),
                true,
                1.0,
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
}
