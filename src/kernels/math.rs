//! Branch-free `ln`, `ln_1p`, `exp` and the hard-label log `ln(one ? p : 1 - p)`, for `f32`
//! and `f64`, written so that LLVM vectorises the kernels' lane loops around them.
//!
//! Every function is `#[inline(always)]` scalar code made of bit manipulation, polynomials and
//! selects: no library calls, no branches, no tables. Inlined into a loop, each becomes a
//! handful of vector instructions per lane group, at whatever width the enclosing
//! [`isa`](super::isa) wrapper enables. The type parameter `A` decides whether multiply-adds
//! are fused ([`Arch::FMA`]); results may differ in the last bit between the two, never
//! between threads.
//!
//! # Method
//! - `ln`: `x = 2^k · m` with `m ∈ [2/3, 4/3)` (subnormals are scaled by `2^23` / `2^54`
//!   first), `f = m - 1` (exact), `ln x = k·ln2 + ln(1 + f)` with `ln 2` split in a high part
//!   whose products with `k` are exact and a low part. `f32`: `ln(1+f) = f - f²/2 + f³·Q(f)`,
//!   `Q` of degree 7. `f64`: `s = f/(2+f)`, `ln(1+f) = f - (f²/2 - s·(f²/2 + R(s²)))`, `R` of
//!   degree 8 in `s²`. Coefficients are near-minimax (Chebyshev) fits.
//! - `ln_1p(x)`: reduces `u = 1 + x` but rebuilds `f` from `x` itself,
//!   `f = (2^-k - 1) + x·2^-k`, so the rounding of `1 + x` is not lost.
//! - `ln_p_or_1m_p(p, one)`: one log of `q = one ? p : 1 - p`. For `p < 1/2`, `1 - p` may round,
//!   but its reduced argument does not: with `k ∈ {0, -1}`, `f = (2^-k - 1) - p·2^-k` is exact.
//!   So `ln(1 - p)` is as accurate as `ln p`, also for tiny `p`.
//! - `exp`: `x = n·ln2 + r`, `|r| ≤ ln2/2`, `e^r = 1 + r + r²·P(r)` (`P` of degree 4 / 10),
//!   scaled by `2^n` as two factors `2^(n/2)` so that subnormal results round once and
//!   overflow gives `+inf`.
//!
//! # Edge conventions (IEEE 754)
//! `ln`: `ln(±0) = -inf`, `ln(x < 0) = NaN`, `ln(+inf) = +inf`, `ln(NaN) = NaN`; subnormals
//! give their exact log (`ln(1e-45f32) ≈ -103.28`). `ln_1p`: `-1 → -inf`, `< -1 → NaN`,
//! `±0 → ±0`. `exp`: `-inf → 0`, `+inf → +inf`, overflow `→ +inf`, deep underflow `→ 0`,
//! gradual underflow to subnormals. NaN in, NaN out, everywhere.
//!
//! # Accuracy
//! Measured against the platform's `f64` functions (see the tests, and the exhaustive `f32`
//! log test run with `cargo test --release -- --ignored`): `f32` `ln` ≤ 2 ulp over all 2^32
//! inputs, `ln_1p`, hard-label log and `exp` ≤ 2 ulp on dense samples; `f64` all ≤ 2 ulp on
//! dense samples (measured against glibc, itself within about 0.52 ulp). The mean signed
//! error is below 0.01 ulp: no systematic bias that would survive summing 10^8 terms. The
//! `f32`-lane logarithm returned in `f64` ([`ln_nonneg_f32_wide_shifted`],
//! [`x_ln_x_f32_wide_shifted`]) is within 2e-8 absolute, unbiased.

use super::isa::Arch;

/// `a * b + c`, fused when `A` has FMA.
#[inline(always)]
fn fma32<A: Arch>(a: f32, b: f32, c: f32) -> f32 {
    if A::FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `a * b + c`, fused when `A` has FMA.
#[inline(always)]
fn fma64<A: Arch>(a: f64, b: f64, c: f64) -> f64 {
    if A::FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Branch-free select (compiles to a blend in vector code).
#[inline(always)]
fn sel32(c: bool, a: f32, b: f32) -> f32 {
    if c {
        a
    } else {
        b
    }
}

#[inline(always)]
fn sel64(c: bool, a: f64, b: f64) -> f64 {
    if c {
        a
    } else {
        b
    }
}

// ---------------------------------------------------------------------------------------------
// f32

/// `ln 2` in two parts: 16 significant bits (so `k · LN2_HI_32` is exact for `|k| < 256`)
/// and the rest.
const LN2_HI_32: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO_32: f32 = f32::from_bits(0x35bf_be8e);
/// `Q(f) ≈ (ln(1+f) - f + f²/2) / f³` on `[-1/3, 1/3]`, lowest degree first.
const LN_Q32: [f32; 8] = [
    0.333_333_2,
    -0.249_999_88,
    0.200_037_85,
    -0.166_701_45,
    0.141_181_63,
    -0.123_460_55,
    0.134_268_08,
    -0.121_265_545,
];
/// Bits of `2/3` rounded up: `m = x · 2^-k` lands in `[2/3, 4/3)`.
const TWO_THIRDS_32: i32 = 0x3f2a_aaab;

/// `(k, m)` with `x = 2^k · m`, `m ∈ [2/3, 4/3)`, for positive normal `x` (garbage, but no
/// undefined behaviour, otherwise).
#[inline(always)]
fn reduce32(x: f32) -> (i32, f32) {
    let ix = x.to_bits() as i32;
    let t = ix.wrapping_sub(TWO_THIRDS_32);
    let k = t >> 23;
    let m = f32::from_bits(ix.wrapping_sub(t & (0xff80_0000_u32 as i32)) as u32);
    (k, m)
}

/// [`reduce32`] with `k` as `f32`, for positive `x` that may be subnormal when `SUBNORMALS`
/// (scaled by `2^23` first, and the 23 taken off `k`).
#[inline(always)]
fn reduce_scaled32<const SUBNORMALS: bool>(x: f32) -> (f32, f32) {
    let sub = SUBNORMALS & (x < f32::MIN_POSITIVE);
    let xs = sel32(sub, x * 8_388_608.0, x);
    let (k, m) = reduce32(xs);
    (k as f32 - sel32(sub, 23.0, 0.0), m)
}

/// `t(f) = Q(f)·f - 1/2`, so that `ln(1 + f) = f + f²·t(f)` for `f ∈ [-1/3, 1/3]`.
#[inline(always)]
fn ln_t32<A: Arch>(f: f32) -> f32 {
    let mut q = LN_Q32[7];
    for &c in LN_Q32[..7].iter().rev() {
        q = fma32::<A>(q, f, c);
    }
    fma32::<A>(q, f, -0.5)
}

/// `k·ln2 + ln(1 + f)` for `f ∈ [-1/3, 1/3]` (slightly beyond is fine).
#[inline(always)]
fn ln_core32<A: Arch>(k: f32, f: f32) -> f32 {
    let t = ln_t32::<A>(f);
    let f2 = f * f;
    let lo = fma32::<A>(f2, t, k * LN2_LO_32);
    fma32::<A>(k, LN2_HI_32, f + lo)
}

/// `-(k·ln2 + ln(1 + f))`, rounded as [`ln_core32`] (the negation is folded into the
/// constants, so it costs nothing).
#[inline(always)]
fn neg_ln_core32<A: Arch>(k: f32, f: f32) -> f32 {
    let t = ln_t32::<A>(f);
    let f2 = f * f;
    let neg_lo = fma32::<A>(-f2, t, k * -LN2_LO_32);
    fma32::<A>(k, -LN2_HI_32, neg_lo - f)
}

/// The IEEE result of `ln` where `x` is not positive finite; `y` where it is.
#[inline(always)]
fn ln_special32(x: f32, y: f32) -> f32 {
    let special = sel32(x == 0.0, f32::NEG_INFINITY, sel32(x < 0.0, f32::NAN, x));
    sel32((x > 0.0) & (x < f32::INFINITY), y, special)
}

/// Natural logarithm, `f32`.
#[inline(always)]
pub fn ln_f32<A: Arch>(x: f32) -> f32 {
    let (k, m) = reduce_scaled32::<true>(x);
    ln_special32(x, ln_core32::<A>(k, m - 1.0))
}

/// `ln(1 + x)`, `f32`, accurate for small `|x|`.
#[inline(always)]
pub fn ln_1p_f32<A: Arch>(x: f32) -> f32 {
    let u = 1.0 + x;
    let (k, m) = reduce32(u);
    // Beyond 2^24 the 1 is below x's last bit: ln(1 + x) = ln(u) = k·ln2 + ln(m).
    let big = k > 24;
    let s = f32::from_bits((127i32.wrapping_sub(k.min(24)) << 23) as u32);
    let f = sel32(big, m - 1.0, (s - 1.0) + x * s);
    let y = ln_core32::<A>(k as f32, f);
    // u = 1 + x carries the domain: u = 0 → -inf, u < 0 → NaN, +inf, NaN; x = ±0 → x.
    sel32(x == 0.0, x, ln_special32(u, y))
}

/// The reduced argument `(q, k, f)` of the hard-label log: `q = one ? p : 1 - p` (rounded),
/// `ln q = k·ln2 + ln(1 + f)`. For `p < 1/2` and label 0, `1 - p` may round, but `f` does not:
/// `q ∈ (1/2, 1]`, `k ∈ {0, -1}`, and `f = 2^-k·(1 - p) - 1 = (s - 1) - p·s` with `s = 2^-k`
/// is exact. Subnormal `q` is scaled first when `SUBNORMALS`.
#[inline(always)]
fn hard_arg32<const SUBNORMALS: bool>(p: f32, one: bool) -> (f32, f32, f32) {
    let q = sel32(one, p, 1.0 - p);
    let (k, m) = reduce_scaled32::<SUBNORMALS>(q);
    let exact = !one & (0.0..0.5).contains(&p);
    let s = 1.0 - k;
    let f = sel32(exact, (s - 1.0) - p * s, m - 1.0);
    (q, k, f)
}

/// `ln(p)` if `one`, else `ln(1 - p)`, `f32`: one log, accurate for tiny `p` either way.
/// Meant for `p ∈ [0, 1]`; outside it gives `ln` of the rounded `1 - p` (NaN below 0).
#[inline(always)]
pub fn ln_p_or_1m_p_f32<A: Arch>(p: f32, one: bool) -> f32 {
    let (q, k, f) = hard_arg32::<true>(p, one);
    ln_special32(q, ln_core32::<A>(k, f))
}

/// `min(-ln(one ? p : 1 - p), 100)`, `f32`: the hard-label loss of binary cross-entropy
/// (with PyTorch's clamp of the log at -100), one log, as accurate as [`ln_p_or_1m_p_f32`]
/// for `p ∈ [0, 1]`; NaN gives NaN, other `p` a value of no meaning (callers report them as
/// domain errors).
///
/// Cheaper than clamping the IEEE log, with no select for subnormals and no special case:
/// `q` is always scaled by `2^23` (exact: subnormals become normal, nothing overflows for
/// `q ≤ 1`) and the 23 taken off `k`; `m - 1` is rebuilt as `q·2^23·2^-(k+23) - 1` by one
/// fused multiply-add (exact: the scale is a power of two, and `m ∈ [2/3, 4/3)`), so a NaN
/// `p` carries through to the result; `q = 0` reduces to `k = -150`, `f = -1`, a loss above
/// 100, clamped; the exact reduction of `1 - p` is `f = -p·s - k`; and the negation is
/// folded into the constants.
#[inline(always)]
pub fn bce_nlog_f32<A: Arch>(p: f32, one: bool) -> f32 {
    let q = sel32(one, p, 1.0 - p);
    // + 0 turns q = -0 into +0 (its bits would reduce to garbage), at no cost.
    let ix = fma32::<A>(q, 8_388_608.0, 0.0).to_bits() as i32;
    // As in `reduce32`, on q·2^23: t's top bits are (k + 23) << 23, so the bits of
    // 2^-(k + 23) are 127 << 23 minus them.
    let t = ix.wrapping_sub(TWO_THIRDS_32);
    let scale = f32::from_bits((127i32 << 23).wrapping_sub(t & (0xff80_0000_u32 as i32)) as u32);
    let k = (t >> 23) as f32 - 23.0;
    // As in `hard_arg32`: with s = 2^-k, (s - 1) - p·s = -p·s - k for k ∈ {0, -1}.
    let s = 1.0 - k;
    let f = sel32(
        !one & (p < 0.5),
        fma32::<A>(-p, s, -k),
        fma32::<A>(f32::from_bits(ix as u32), scale, -1.0),
    );
    let y = neg_ln_core32::<A>(k, f);
    sel32(y > 100.0, 100.0, y)
}

/// `ln(1 + e^z)` for `z ≤ 0` (softplus; NaN gives NaN), `f32`: the log-sigmoid term of binary
/// cross-entropy with logits, `log_sigmoid(x) = min(x, 0) - ln(1 + e^-|x|)`.
///
/// `e = e^z ∈ [0, 1]` is computed as in [`exp_f32`], but since `2^n ≤ 1` it is scaled once by
/// the normal `2^(n+64)` and once by the constant `2^-64` (subnormal `e` still rounds once).
/// Then `ln(1 + e) = e + e²·Q(e)` by one polynomial over all of `[0, 1]`: no reduction of
/// `1 + e`, whose rounding would be lost, and no special cases. Q's degree 8 keeps the
/// approximation within 8e-9 relative, `ln(1 + e)` within about 1.2 ulp of `e`'s exact value,
/// and with `e`'s own rounding the result within 1.5 ulp (dense sampling, FMA).
#[inline(always)]
pub fn softplus_nonpos_f32<A: Arch>(z: f32) -> f32 {
    let z = sel32(z < -104.0, -104.0, z);
    let t = fma32::<A>(z, LOG2E_32, SHIFT_32);
    let n = t - SHIFT_32;
    let r = fma32::<A>(n, -LN2_HI_32, z);
    let r = fma32::<A>(n, -LN2_LO_32, r);
    let mut p = EXP_P32[4];
    for &c in EXP_P32[..4].iter().rev() {
        p = fma32::<A>(p, r, c);
    }
    let y = 1.0 + fma32::<A>(r * r, p, r);
    // bits of 2^(n + 64): t's low bits hold n + 1.5·2^23; re-bias them (wrapping: NaN).
    let bias = (127 + 64) - SHIFT_32.to_bits() as i32;
    let scale = f32::from_bits(((t.to_bits() as i32).wrapping_add(bias) << 23) as u32);
    let e = y * scale * f32::from_bits((127 - 64) << 23);
    let mut q = LN1P_UNIT_Q32[8];
    for &c in LN1P_UNIT_Q32[..8].iter().rev() {
        q = fma32::<A>(q, e, c);
    }
    fma32::<A>(e * e, q, e)
}

/// `Q(e) ≈ (ln(1+e) - e) / e²` on `[0, 1]`, lowest degree first: minimax for the relative
/// error of `e + e²·Q(e)`, the constant fixed at `-1/2` (exact near 0), each coefficient
/// refitted after the ones below it were rounded to `f32`.
const LN1P_UNIT_Q32: [f32; 9] = [
    -0.5,
    0.333_322_5,
    -0.249_750_87,
    0.197_742_82,
    -0.155_694_89,
    0.110_251_87,
    -0.060_923_453,
    0.021_877_242,
    -0.003_678_040_3,
];

/// `e^x` in two parts: `ln2` with 16 significant bits and the rest (`n·LN2_HI_32` is exact).
const LOG2E_32: f32 = std::f32::consts::LOG2_E;
/// Rounds to an integer when added: 1.5 · 2^23.
const SHIFT_32: f32 = 12_582_912.0;
/// `P(r) ≈ (e^r - 1 - r) / r²` on `[-ln2/2, ln2/2]`, lowest degree first.
const EXP_P32: [f32; 5] = [
    0.5,
    0.166_665_76,
    0.041_666_556,
    0.008_363_19,
    0.001_392_619_8,
];

/// `e^x`, `f32`.
#[inline(always)]
pub fn exp_f32<A: Arch>(x: f32) -> f32 {
    // Clamp (NaN passes): e^-104 rounds to 0 and e^89 overflows, as they should.
    let x = sel32(x < -104.0, -104.0, x);
    let x = sel32(x > 89.0, 89.0, x);
    let t = fma32::<A>(x, LOG2E_32, SHIFT_32);
    let n = t - SHIFT_32;
    let r = fma32::<A>(n, -LN2_HI_32, x);
    let r = fma32::<A>(n, -LN2_LO_32, r);
    let mut p = EXP_P32[4];
    for &c in EXP_P32[..4].iter().rev() {
        p = fma32::<A>(p, r, c);
    }
    let y = 1.0 + fma32::<A>(r * r, p, r);
    // n ∈ [-151, 129]: 2^n as two normal factors.
    let ni = (t.to_bits() as i32).wrapping_sub(SHIFT_32.to_bits() as i32);
    // (Wrapping: NaN gives garbage integers here, and NaN from y anyway.)
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) << 23) as u32);
    let s2 = f32::from_bits((n2.wrapping_add(127) << 23) as u32);
    y * s1 * s2
}

// ---------------------------------------------------------------------------------------------
// f64

/// `ln 2` in two parts: 32 significant bits (so `k · LN2_HI_64` is exact for `|k| < 2^21`)
/// and the rest.
const LN2_HI_64: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO_64: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// `T(z) ≈ (2·atanh(s)/s - 2) / z`, `z = s² ∈ [0, 0.04]`, lowest degree first.
const LN_T64: [f64; 8] = [
    0.666_666_666_666_666_6,
    0.400_000_000_000_079_4,
    0.285_714_285_672_759_36,
    0.222_222_230_483_515_9,
    0.181_817_376_263_029_38,
    0.153_888_678_056_137_18,
    0.132_097_082_420_594_62,
    0.136_090_302_628_584_99,
];
const TWO_THIRDS_64: u64 = 0x3fe5_5555_5555_5555;
/// Added to the exponent field before shifting so that it stays non-negative.
const KBIAS_64: u64 = 1100;
/// `2^52`: `from_bits(MAGIC_64_BITS | i) - MAGIC_64` is `i` as `f64` for `i < 2^52`.
const MAGIC_64: f64 = 4_503_599_627_370_496.0;

/// `(k + KBIAS_64, m)` with `x = 2^k · m`, `m ∈ [2/3, 4/3)`, for positive normal `x`.
/// Works on unsigned integers only, so that it vectorises without AVX-512.
#[inline(always)]
fn reduce64(x: f64) -> (u64, f64) {
    let ix = x.to_bits();
    let t = ix.wrapping_sub(TWO_THIRDS_64);
    let kb = t.wrapping_add(KBIAS_64 << 52) >> 52;
    let m = f64::from_bits(ix.wrapping_sub(t & 0xfff0_0000_0000_0000));
    (kb, m)
}

/// A biased exponent from [`reduce64`] as `f64`, without a 64-bit integer conversion.
#[inline(always)]
fn k_to_f64(kb: u64) -> f64 {
    f64::from_bits(MAGIC_64.to_bits() | kb) - (MAGIC_64 + KBIAS_64 as f64)
}

/// `hfsq - lo` of [`ln_core64`]: with `s = f / (2 + f)`, `ln(1 + f) = f - (hfsq - lo)` up to
/// the `k·ln2` parts, `hfsq = f²/2`, `lo = s·(hfsq + R(s²)) + k·ln2_lo`.
#[inline(always)]
fn ln_tail64<A: Arch>(k: f64, f: f64) -> f64 {
    let s = f / (2.0 + f);
    let z = s * s;
    let mut t = LN_T64[7];
    for &c in LN_T64[..7].iter().rev() {
        t = fma64::<A>(t, z, c);
    }
    let r = z * t;
    let hfsq = 0.5 * f * f;
    let lo = fma64::<A>(s, hfsq + r, k * LN2_LO_64);
    hfsq - lo
}

/// `k·ln2 + ln(1 + f)` for `f ∈ [-1/3, 1/3]`.
#[inline(always)]
fn ln_core64<A: Arch>(k: f64, f: f64) -> f64 {
    fma64::<A>(k, LN2_HI_64, f - ln_tail64::<A>(k, f))
}

/// `-(k·ln2 + ln(1 + f))`, rounded as [`ln_core64`].
#[inline(always)]
fn neg_ln_core64<A: Arch>(k: f64, f: f64) -> f64 {
    fma64::<A>(k, -LN2_HI_64, ln_tail64::<A>(k, f) - f)
}

#[inline(always)]
fn ln_special64(x: f64, y: f64) -> f64 {
    let special = sel64(x == 0.0, f64::NEG_INFINITY, sel64(x < 0.0, f64::NAN, x));
    sel64((x > 0.0) & (x < f64::INFINITY), y, special)
}

/// Natural logarithm, `f64`.
#[inline(always)]
pub fn ln_f64<A: Arch>(x: f64) -> f64 {
    ln_special64(x, ln_pos64::<A, true>(x))
}

/// `ln x` for positive finite `x`, `f64` (a finite value of no meaning otherwise); subnormal
/// `x` is scaled first only when `SUBNORMALS`.
#[inline(always)]
fn ln_pos64<A: Arch, const SUBNORMALS: bool>(x: f64) -> f64 {
    ln_pos_shifted64::<A, SUBNORMALS>(x, 0.0)
}

/// `(k, m)` with `x = 2^k · m`, `m ∈ [2/3, 4/3)`, `k` as `f64`, for positive finite `x`;
/// subnormal `x` is scaled first only when `SUBNORMALS`.
#[inline(always)]
fn reduce_scaled64<const SUBNORMALS: bool>(x: f64) -> (f64, f64) {
    let sub = SUBNORMALS & (x < f64::MIN_POSITIVE);
    let xs = sel64(sub, x * 18_014_398_509_481_984.0, x);
    let (kb, m) = reduce64(xs);
    (k_to_f64(kb) - sel64(sub, 54.0, 0.0), m)
}

/// `ln x - shift·ln2` for positive finite `x` and an integer `shift` (`|shift| < 2^20`), as
/// accurate as [`ln_f64`] of the result: the shift is taken off the exponent, exactly.
#[inline(always)]
fn ln_pos_shifted64<A: Arch, const SUBNORMALS: bool>(x: f64, shift: f64) -> f64 {
    let (k, m) = reduce_scaled64::<SUBNORMALS>(x);
    ln_core64::<A>(k - shift, m - 1.0)
}

/// `ln x - shift·ln2` for `x ≥ 0` and an integer `shift` (`|shift| < 2^20`): within about 2 ulp
/// of the result (not of `ln x`), the log of `x` scaled by `2^-shift` without forming the
/// scaled value (which may overflow or underflow). `ln 0 = -inf`, `+inf` and NaN are kept.
#[inline(always)]
pub fn ln_nonneg_shifted_f64<A: Arch, const SUBNORMALS: bool>(x: f64, shift: f64) -> f64 {
    ln_nonneg_special64(x, ln_pos_shifted64::<A, SUBNORMALS>(x, shift))
}

/// `x·(ln x - shift·ln2)` for `x ≥ 0` and an integer `shift`, with `0·ln 0 = 0`, `f64`: the
/// entropy term (the log as in [`ln_nonneg_shifted_f64`]). Cheaper than `x` times that log: no
/// special-case selects, since the reduction of `+inf` and NaN is finite and the product with
/// `x` gives them back (`+inf`, NaN); negative `x` gives a value of no meaning (callers report
/// it as a domain error). Subnormal `x` is scaled only when `SUBNORMALS`: an `f32` widened to
/// `f64` never is one.
#[inline(always)]
pub fn x_ln_x_shifted_f64<A: Arch, const SUBNORMALS: bool>(x: f64, shift: f64) -> f64 {
    let t = x * ln_pos_shifted64::<A, SUBNORMALS>(x, shift);
    sel64(x == 0.0, 0.0, t)
}

/// `ln(x / y) - shift·ln2` for `x, y ≥ 0` and an integer `shift` (`|shift| < 2^20`), without
/// forming `x / y` (which overflows for `x = 1`, `y = 10^-310`): with `x = 2^i·u`,
/// `y = 2^j·v` (`u, v ∈ [2/3, 4/3)`) and `u / v = 2^l·w`, it is `ln w + (i - j + l - shift)·ln2`,
/// within about 2 ulp of the result (the division's rounding costs at most `eps` absolute).
/// Where `x` or `y` is 0, infinite or NaN it is the IEEE `ln(x / y)`: `-inf`, `+inf` or NaN.
#[inline(always)]
pub fn ln_ratio_shifted_f64<A: Arch, const SUBNORMALS: bool>(x: f64, y: f64, shift: f64) -> f64 {
    let (i, u) = reduce_scaled64::<SUBNORMALS>(x);
    let (j, v) = reduce_scaled64::<SUBNORMALS>(y);
    let (lb, w) = reduce64(u / v);
    let k = (i - j) + (k_to_f64(lb) - shift);
    let value = ln_core64::<A>(k, w - 1.0);
    let finite = (x > 0.0) & (x < f64::INFINITY) & (y > 0.0) & (y < f64::INFINITY);
    sel64(finite, value, ln_nonneg_special64(x / y, value))
}

/// [`ln_special64`] for `x ≥ 0`: `y` where `x` is positive finite, `ln 0 = -inf`, and `+inf`
/// and NaN as they are (negative `x` gives `x`, a value of no meaning).
#[inline(always)]
fn ln_nonneg_special64(x: f64, y: f64) -> f64 {
    sel64(
        (x > 0.0) & (x < f64::INFINITY),
        y,
        sel64(x == 0.0, f64::NEG_INFINITY, x),
    )
}

/// `ln x` for positive finite `x` given as `f32`, in `f64`, at `f32` cost: within 2e-8
/// *absolute* (1.6e-8 measured, unbiased; see the tests), a finite value of no meaning for
/// other `x`.
///
/// `x = 2^k·(1 + f)` is reduced as in [`ln_f32`] (subnormals scaled first), and
/// `ln x = k·ln2 + f + w` with `w = f²·(Q(f)·f - 1/2)` from [`ln_f32`]'s polynomial. `k·ln2 + f`
/// is formed in `f64` (`f` is exact), so only `w`, at most 0.072 in magnitude, carries `f32`
/// rounding, and the polynomial runs on twice as many lanes as an `f64` one. In a distribution
/// the error is relatively small, below 3e-8, for every share `a ≤ 1/2` (its `ln(1/a) ≥ ln 2`),
/// but not for a share near 1, whose exact log is tiny: a caller that needs it relative to its
/// size computes that one element in `f64` (see `divergence`).
#[inline(always)]
///
/// Less `shift·ln2` (`shift` an integer), taken off the exponent exactly: within 2e-8 absolute
/// of `ln x - shift·ln2`.
fn ln_pos_f32_wide_shifted<A: Arch>(x: f32, shift: f64) -> f64 {
    // `reduce_scaled32` and `ln_t32` written out: through the helpers, LLVM compiles the
    // entropy loop to 0.5 more instructions per element (callgrind, AVX2), for the same ops.
    let sub = x < f32::MIN_POSITIVE;
    let xs = sel32(sub, x * 8_388_608.0, x);
    let (k, m) = reduce32(xs);
    let k = k as f32 - sel32(sub, 23.0, 0.0);
    let f = m - 1.0;
    let mut q = LN_Q32[7];
    for &c in LN_Q32[..7].iter().rev() {
        q = fma32::<A>(q, f, c);
    }
    let w = (f * f) * fma32::<A>(q, f, -0.5);
    fma64::<A>(f64::from(k) - shift, std::f64::consts::LN_2, f64::from(f)) + f64::from(w)
}

/// `x·(ln x - shift·ln2)` for `x ≥ 0` given as `f32`, in `f64`, with `0·ln 0 = 0`, from
/// [`ln_pos_f32_wide_shifted`] (the term within `2e-8·x`): the entropy term of `f32` input.
/// `+inf`, NaN and `0` need no special case: their reduction is finite, and the product with
/// `x` gives them back. Negative `x` gives a value of no meaning (callers report it as a domain
/// error).
#[inline(always)]
pub fn x_ln_x_f32_wide_shifted<A: Arch>(x: f32, shift: f64) -> f64 {
    f64::from(x) * ln_pos_f32_wide_shifted::<A>(x, shift)
}

/// `ln x - shift·ln2` for `x ≥ 0` given as `f32`, in `f64`, from [`ln_pos_f32_wide_shifted`]
/// (within 2e-8 absolute): the cross-entropy log of `f32` input. `ln 0 = -inf`, `+inf` and NaN
/// are kept; negative `x` gives a value of no meaning (callers report it as a domain error).
#[inline(always)]
pub fn ln_nonneg_f32_wide_shifted<A: Arch>(x: f32, shift: f64) -> f64 {
    ln_nonneg_special64(f64::from(x), ln_pos_f32_wide_shifted::<A>(x, shift))
}

/// `ln(1 + x)`, `f64`, accurate for small `|x|`.
#[inline(always)]
pub fn ln_1p_f64<A: Arch>(x: f64) -> f64 {
    let u = 1.0 + x;
    let (kb, m) = reduce64(u);
    // Beyond 2^53 the 1 is below x's last bit.
    let big = kb > KBIAS_64 + 53;
    let s = f64::from_bits((1023 + KBIAS_64 - kb.min(KBIAS_64 + 53)) << 52);
    let f = sel64(big, m - 1.0, (s - 1.0) + x * s);
    let y = ln_core64::<A>(k_to_f64(kb), f);
    sel64(x == 0.0, x, ln_special64(u, y))
}

/// `ln(1 + t)` for `t ≥ 0`, `f64`, as accurate as [`ln_1p_f64`] for such `t` and cheaper: where
/// `1 + t < 4/3` the reduced argument is `t` itself (exact), elsewhere `1 + t` is reduced as
/// [`ln_f64`] reduces (its rounding costs at most `eps/2` relative, and `ln(1 + t) ≥ 0.28`).
/// `-1` gives `-inf`, NaN gives NaN; other negative `t` a value of no meaning.
#[inline(always)]
pub fn ln_1p_nonneg_f64<A: Arch>(t: f64) -> f64 {
    let u = 1.0 + t;
    let (kb, m) = reduce64(u);
    let f = sel64(kb == KBIAS_64, t, m - 1.0);
    ln_nonneg_special64(u, ln_core64::<A>(k_to_f64(kb), f))
}

/// The reduced argument `(q, k, f)` of the hard-label log, `f64` (see [`hard_arg32`]).
#[inline(always)]
fn hard_arg64<const SUBNORMALS: bool>(p: f64, one: bool) -> (f64, f64, f64) {
    let q = sel64(one, p, 1.0 - p);
    let sub = SUBNORMALS & (q < f64::MIN_POSITIVE);
    let qs = sel64(sub, q * 18_014_398_509_481_984.0, q);
    let (kb, m) = reduce64(qs);
    let k = k_to_f64(kb) - sel64(sub, 54.0, 0.0);
    let exact = !one & (0.0..0.5).contains(&p);
    let s = 1.0 - k;
    let f = sel64(exact, (s - 1.0) - p * s, m - 1.0);
    (q, k, f)
}

/// `ln(p)` if `one`, else `ln(1 - p)`, `f64`: one log, accurate for tiny `p` either way.
#[inline(always)]
pub fn ln_p_or_1m_p_f64<A: Arch>(p: f64, one: bool) -> f64 {
    let (q, k, f) = hard_arg64::<true>(p, one);
    ln_special64(q, ln_core64::<A>(k, f))
}

/// `min(-ln(one ? p : 1 - p), 100)`, `f64` (see [`bce_nlog_f32`]). Subnormal `q` needs no
/// scaling here: unscaled, its loss still comes out above 700, and is clamped.
#[inline(always)]
pub fn bce_nlog_f64<A: Arch>(p: f64, one: bool) -> f64 {
    // + 0 turns q = -0 into +0, whose bits reduce like those of 0.
    let q = sel64(one, p, 1.0 - p) + 0.0;
    let (kb, m) = reduce64(q);
    let k = k_to_f64(kb);
    let s = 1.0 - k;
    let f = sel64(!one & (p < 0.5), fma64::<A>(-p, s, -k), m - 1.0);
    let y = fma64::<A>(q, 0.0, neg_ln_core64::<A>(k, f));
    sel64(y > 100.0, 100.0, y)
}

const LOG2E_64: f64 = std::f64::consts::LOG2_E;
/// 1.5 · 2^52.
const SHIFT_64: f64 = 6_755_399_441_055_744.0;
/// `P(r) ≈ (e^r - 1 - r) / r²` on `[-ln2/2, ln2/2]`, lowest degree first.
const EXP_P64: [f64; 11] = [
    0.5,
    0.166_666_666_666_666_7,
    0.041_666_666_666_666_67,
    0.008_333_333_333_326_124,
    0.001_388_888_888_888_374_2,
    0.000_198_412_698_748_586_12,
    2.480_158_732_557_486_8e-5,
    2.755_725_535_203_267_3e-6,
    2.755_727_360_870_900_7e-7,
    2.510_523_705_076_03e-8,
    2.091_470_128_310_328_5e-9,
];

/// `e^x`, `f64`.
#[inline(always)]
pub fn exp_f64<A: Arch>(x: f64) -> f64 {
    let x = sel64(x < -746.0, -746.0, x);
    let x = sel64(x > 710.0, 710.0, x);
    let t = fma64::<A>(x, LOG2E_64, SHIFT_64);
    let n = t - SHIFT_64;
    let r = fma64::<A>(n, -LN2_HI_64, x);
    let r = fma64::<A>(n, -LN2_LO_64, r);
    let mut p = EXP_P64[10];
    for &c in EXP_P64[..10].iter().rev() {
        p = fma64::<A>(p, r, c);
    }
    let y = 1.0 + fma64::<A>(r * r, p, r);
    // n + 2048 ∈ [971, 3073]: split without signed 64-bit shifts.
    let nb = t
        .to_bits()
        .wrapping_sub(SHIFT_64.to_bits())
        .wrapping_add(2048);
    let n1b = nb >> 1; // n1 + 1024
    let n2b = nb.wrapping_sub(n1b); // n2 + 1024
    let s1 = f64::from_bits(n1b.wrapping_sub(1) << 52);
    let s2 = f64::from_bits(n2b.wrapping_sub(1) << 52);
    y * s1 * s2
}

/// `ln(1 + e^z)` for `z ≤ 0` (NaN gives NaN), `f64` (see [`softplus_nonpos_f32`]; here the
/// scale is `2^(n+600) · 2^-600`).
#[inline(always)]
pub fn softplus_nonpos_f64<A: Arch>(z: f64) -> f64 {
    let z = sel64(z < -746.0, -746.0, z);
    let t = fma64::<A>(z, LOG2E_64, SHIFT_64);
    let n = t - SHIFT_64;
    let r = fma64::<A>(n, -LN2_HI_64, z);
    let r = fma64::<A>(n, -LN2_LO_64, r);
    let mut p = EXP_P64[10];
    for &c in EXP_P64[..10].iter().rev() {
        p = fma64::<A>(p, r, c);
    }
    let y = 1.0 + fma64::<A>(r * r, p, r);
    let bias = (1023 + 600_u64).wrapping_sub(SHIFT_64.to_bits());
    let scale = f64::from_bits(t.to_bits().wrapping_add(bias) << 52);
    let e = y * scale * f64::from_bits((1023 - 600) << 52);
    let (kb, _) = reduce64(1.0 + e);
    let k = k_to_f64(kb);
    let s = fma64::<A>(k, -0.5, 1.0);
    ln_core64::<A>(k, fma64::<A>(e, s, s - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::{dispatch_on, Arch, Isa, Kernel};

    /// Error of `got` against `exact`, in units of the last place of `f32` at `exact`.
    fn ulp32(got: f32, exact: f64) -> f64 {
        if got.is_nan() || exact.is_nan() {
            return if got.is_nan() && exact.is_nan() {
                0.0
            } else {
                f64::INFINITY
            };
        }
        if (exact as f32).is_infinite() {
            return if got == exact as f32 {
                0.0
            } else {
                f64::INFINITY
            };
        }
        let e = ((exact.abs().to_bits() >> 52) as i32 - 1023).max(-126);
        (got as f64 - exact) / 2f64.powi(e - 23)
    }

    /// Error of `got` against `exact` in `f64` ulps.
    fn ulp64(got: f64, exact: f64) -> f64 {
        if got.is_nan() || exact.is_nan() {
            return if got.is_nan() && exact.is_nan() {
                0.0
            } else {
                f64::INFINITY
            };
        }
        if exact.is_infinite() {
            return if got == exact { 0.0 } else { f64::INFINITY };
        }
        let e = exact.abs().max(f64::MIN_POSITIVE);
        let ulp = f64::from_bits(e.to_bits() + 1) - e;
        (got - exact) / ulp
    }

    // Closures cannot be generic over the arch, so the functions under test are chosen by name.
    #[derive(Clone, Copy, Debug)]
    enum Fun {
        Ln,
        Ln1p,
        Exp,
        HardOne,
        HardZero,
        BceOne,
        BceZero,
        Softplus,
    }

    struct Eval32<'a>(Fun, &'a [f32], &'a mut [f32]);
    impl Kernel for Eval32<'_> {
        type Output = ();
        #[inline(always)]
        fn run<A: Arch>(self) {
            for (o, &x) in self.2.iter_mut().zip(self.1) {
                *o = match self.0 {
                    Fun::Ln => ln_f32::<A>(x),
                    Fun::Ln1p => ln_1p_f32::<A>(x),
                    Fun::Exp => exp_f32::<A>(x),
                    Fun::HardOne => ln_p_or_1m_p_f32::<A>(x, true),
                    Fun::HardZero => ln_p_or_1m_p_f32::<A>(x, false),
                    Fun::BceOne => bce_nlog_f32::<A>(x, true),
                    Fun::BceZero => bce_nlog_f32::<A>(x, false),
                    Fun::Softplus => softplus_nonpos_f32::<A>(x),
                };
            }
        }
    }

    struct Eval64<'a>(Fun, &'a [f64], &'a mut [f64]);
    impl Kernel for Eval64<'_> {
        type Output = ();
        #[inline(always)]
        fn run<A: Arch>(self) {
            for (o, &x) in self.2.iter_mut().zip(self.1) {
                *o = match self.0 {
                    Fun::Ln => ln_f64::<A>(x),
                    Fun::Ln1p => ln_1p_f64::<A>(x),
                    Fun::Exp => exp_f64::<A>(x),
                    Fun::HardOne => ln_p_or_1m_p_f64::<A>(x, true),
                    Fun::HardZero => ln_p_or_1m_p_f64::<A>(x, false),
                    Fun::BceOne => bce_nlog_f64::<A>(x, true),
                    Fun::BceZero => bce_nlog_f64::<A>(x, false),
                    Fun::Softplus => softplus_nonpos_f64::<A>(x),
                };
            }
        }
    }

    fn reference(fun: Fun, x: f64) -> f64 {
        match fun {
            Fun::Ln | Fun::HardOne => x.ln(),
            Fun::Ln1p => x.ln_1p(),
            Fun::Exp => x.exp(),
            Fun::HardZero => (-x).ln_1p(),
            Fun::BceOne => -x.ln().max(-100.0),
            Fun::BceZero => -(-x).ln_1p().max(-100.0),
            Fun::Softplus => x.exp().ln_1p(),
        }
    }

    /// (max |ulp|, mean signed ulp, worst input) of `fun` over `xs` on `isa`.
    fn measure32(isa: Isa, fun: Fun, xs: &[f32]) -> (f64, f64, f32) {
        let mut out = vec![0f32; xs.len()];
        dispatch_on(isa, Eval32(fun, xs, &mut out));
        let (mut max, mut sum, mut worst, mut n) = (0f64, 0f64, 0f32, 0usize);
        for (&x, &y) in xs.iter().zip(&out) {
            let e = ulp32(y, reference(fun, x as f64));
            if e.abs() > max {
                (max, worst) = (e.abs(), x);
            }
            if e.is_finite() {
                sum += e;
                n += 1;
            }
        }
        (max, sum / n.max(1) as f64, worst)
    }

    /// (max |ulp|, mean signed ulp, worst input) of `fun` over `xs` on `isa`, against `exact`.
    fn measure64(isa: Isa, fun: Fun, xs: &[f64]) -> (f64, f64, f64) {
        let mut out = vec![0f64; xs.len()];
        dispatch_on(isa, Eval64(fun, xs, &mut out));
        let (mut max, mut sum, mut worst, mut n) = (0f64, 0f64, 0f64, 0usize);
        for (&x, &y) in xs.iter().zip(&out) {
            let e = ulp64(y, reference(fun, x));
            if e.abs() > max {
                (max, worst) = (e.abs(), x);
            }
            if e.is_finite() {
                sum += e;
                n += 1;
            }
        }
        (max, sum / n.max(1) as f64, worst)
    }

    /// A deterministic pseudo-random stream (SplitMix64).
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    /// Uniform in log scale over all positive finite f32 (bit patterns), plus uniform in [lo, hi].
    fn samples32(n: usize, lo: f32, hi: f32) -> Vec<f32> {
        let mut r = rng(n as u64 ^ lo.to_bits() as u64);
        let mut v: Vec<f32> = (0..n)
            .map(|i| {
                let u = r();
                if i % 2 == 0 {
                    f32::from_bits((u as u32) % 0x7f80_0000)
                } else {
                    lo + (hi - lo) * ((u >> 40) as f32 / (1u64 << 24) as f32)
                }
            })
            .collect();
        v.retain(|x| (lo..=hi).contains(x));
        v
    }

    fn samples64(n: usize, lo: f64, hi: f64) -> Vec<f64> {
        let mut r = rng(n as u64 ^ lo.to_bits());
        let mut v: Vec<f64> = (0..n)
            .map(|i| {
                let u = r();
                if i % 2 == 0 {
                    f64::from_bits(u % 0x7ff0_0000_0000_0000)
                } else {
                    lo + (hi - lo) * ((u >> 11) as f64 / (1u64 << 53) as f64)
                }
            })
            .collect();
        v.retain(|x| (lo..=hi).contains(x));
        v
    }

    fn isas() -> impl Iterator<Item = Isa> {
        Isa::ALL
            .into_iter()
            .filter(|&i| i <= crate::isa::detected())
    }

    #[test]
    fn f32_dense_accuracy() {
        let cases: [(Fun, f32, f32, f64); 8] = [
            (Fun::Ln, 0.0, f32::MAX, 2.0),
            (Fun::Ln1p, -1.0, f32::MAX, 2.0),
            (Fun::Exp, -104.0, 89.0, 2.0),
            (Fun::HardOne, 0.0, 1.0, 2.0),
            (Fun::HardZero, 0.0, 1.0, 2.0),
            (Fun::BceOne, 0.0, 1.0, 2.0),
            (Fun::BceZero, 0.0, 1.0, 2.0),
            (Fun::Softplus, -120.0, 0.0, 2.0),
        ];
        for isa in isas() {
            for &(fun, lo, hi, bound) in &cases {
                let mut xs = samples32(400_000, lo, hi);
                if matches!(fun, Fun::Ln1p) {
                    xs.extend(samples32(200_000, -1.0, 1.0));
                    xs.extend(samples32(100_000, -1e-3, 1e-3));
                }
                if matches!(fun, Fun::Softplus) {
                    xs.extend(samples32(200_000, -2.0, 0.0));
                }
                if matches!(
                    fun,
                    Fun::HardZero | Fun::HardOne | Fun::BceOne | Fun::BceZero
                ) {
                    xs.extend(samples32(200_000, 0.0, 1e-3));
                    xs.extend(samples32(200_000, 0.999, 1.0));
                }
                let (max, mean, worst) = measure32(isa, fun, &xs);
                println!("{isa:?} f32 {fun:?}: max {max:.3} ulp at {worst:e}, mean {mean:.1e}");
                assert!(
                    max <= bound && mean.abs() < 0.02,
                    "{isa:?} f32 max {max} ulp at {worst:e}, mean {mean}"
                );
            }
        }
    }

    #[test]
    fn f64_dense_accuracy() {
        let cases: [(Fun, f64, f64); 8] = [
            (Fun::Ln, 0.0, f64::MAX),
            (Fun::Ln1p, -1.0, f64::MAX),
            (Fun::Exp, -746.0, 710.0),
            (Fun::HardOne, 0.0, 1.0),
            (Fun::HardZero, 0.0, 1.0),
            (Fun::BceOne, 0.0, 1.0),
            (Fun::BceZero, 0.0, 1.0),
            (Fun::Softplus, -800.0, 0.0),
        ];
        for isa in isas() {
            for &(fun, lo, hi) in &cases {
                let mut xs = samples64(400_000, lo, hi);
                if matches!(fun, Fun::Ln | Fun::Ln1p) {
                    xs.extend(samples64(200_000, 0.5, 2.0));
                }
                if matches!(fun, Fun::Ln1p) {
                    xs.extend(samples64(200_000, -1.0, 1.0));
                    xs.extend(samples64(100_000, -1e-3, 1e-3));
                }
                if matches!(fun, Fun::Softplus) {
                    xs.extend(samples64(200_000, -2.0, 0.0));
                }
                if matches!(
                    fun,
                    Fun::HardZero | Fun::HardOne | Fun::BceOne | Fun::BceZero
                ) {
                    xs.extend(samples64(200_000, 0.0, 1e-3));
                    xs.extend(samples64(200_000, 0.999, 1.0));
                }
                let (max, mean, worst) = measure64(isa, fun, &xs);
                println!("{isa:?} f64 {fun:?}: max {max:.3} ulp at {worst:e}, mean {mean:.1e}");
                assert!(
                    max <= 2.0 && mean.abs() < 0.02,
                    "{isa:?} f64 max {max} ulp at {worst:e}, mean {mean}"
                );
            }
        }
    }

    #[test]
    fn special_values() {
        for isa in isas() {
            let xs32 = [
                0.0f32,
                -0.0,
                -1.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                1e-45,
                1.0,
                f32::MAX,
            ];
            let mut o = [0f32; 9];
            dispatch_on(isa, Eval32(Fun::Ln, &xs32, &mut o));
            assert_eq!(o[0], f32::NEG_INFINITY);
            assert_eq!(o[1], f32::NEG_INFINITY);
            assert!(o[2].is_nan() && o[4].is_nan() && o[5].is_nan());
            assert_eq!(o[3], f32::INFINITY);
            assert!(
                (o[6] as f64 - (1e-45f32 as f64).ln()).abs() < 1e-5,
                "{}",
                o[6]
            );
            assert_eq!(o[7], 0.0);
            assert!((o[8] as f64 - (f32::MAX as f64).ln()).abs() < 1e-5);

            let xs = [-1.0f32, -2.0, -0.0, 0.0, f32::INFINITY, f32::NAN, 1e-40];
            let mut o = [0f32; 7];
            dispatch_on(isa, Eval32(Fun::Ln1p, &xs, &mut o));
            assert_eq!(o[0], f32::NEG_INFINITY);
            assert!(o[1].is_nan() && o[5].is_nan());
            assert_eq!(o[2].to_bits(), (-0.0f32).to_bits());
            assert_eq!(o[3].to_bits(), 0);
            assert_eq!(o[4], f32::INFINITY);
            assert_eq!(o[6], 1e-40);

            let xs = [
                f32::NEG_INFINITY,
                f32::INFINITY,
                f32::NAN,
                89.0,
                -104.0,
                -100.0,
                0.0,
            ];
            let mut o = [0f32; 7];
            dispatch_on(isa, Eval32(Fun::Exp, &xs, &mut o));
            assert_eq!(&o[..2], &[0.0, f32::INFINITY]);
            assert!(o[2].is_nan());
            assert_eq!(o[3], f32::INFINITY);
            assert_eq!(o[4], 0.0);
            assert!(ulp32(o[5], (-100f64).exp()).abs() <= 1.0, "{:e}", o[5]);
            assert_eq!(o[6], 1.0);

            let ps = [0.0f32, 1.0, 1e-45, f32::NAN];
            let mut one = [0f32; 4];
            let mut zero = [0f32; 4];
            dispatch_on(isa, Eval32(Fun::HardOne, &ps, &mut one));
            dispatch_on(isa, Eval32(Fun::HardZero, &ps, &mut zero));
            assert_eq!([one[0], one[1]], [f32::NEG_INFINITY, 0.0]);
            assert_eq!([zero[0], zero[1]], [0.0, f32::NEG_INFINITY]);
            assert!((one[2] + 103.278_93).abs() < 1e-4);
            assert_eq!(zero[2], -1e-45);
            assert!(one[3].is_nan() && zero[3].is_nan());

            // The clamped loss: zeros come out +0, subnormal p is exact, NaN carries.
            let ps = [0.0f32, -0.0, 1.0, 1e-45, 1e-40, 0.5, f32::NAN];
            let mut one = [0f32; 7];
            let mut zero = [0f32; 7];
            dispatch_on(isa, Eval32(Fun::BceOne, &ps, &mut one));
            dispatch_on(isa, Eval32(Fun::BceZero, &ps, &mut zero));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one[..4]), bits(&[100.0, 100.0, 0.0, 100.0]));
            assert!(ulp32(one[4], -(1e-40f32 as f64).ln()).abs() <= 1.0);
            assert_eq!(one[5], zero[5]);
            assert!(ulp32(one[5], 2f64.ln()).abs() <= 1.0);
            assert_eq!(bits(&zero[..5]), bits(&[0.0, 0.0, 100.0, 1e-45, 1e-40]));
            assert!(one[6].is_nan() && zero[6].is_nan());

            let xs64 = [
                0.0,
                -0.0,
                -1.0,
                f64::INFINITY,
                f64::NAN,
                5e-324,
                1.0,
                f64::MAX,
            ];
            let mut o = [0f64; 8];
            dispatch_on(isa, Eval64(Fun::Ln, &xs64, &mut o));
            assert_eq!([o[0], o[1]], [f64::NEG_INFINITY; 2]);
            assert!(o[2].is_nan() && o[4].is_nan());
            assert_eq!(o[3], f64::INFINITY);
            assert!(ulp64(o[5], (5e-324f64).ln()).abs() <= 1.0);
            assert_eq!(o[6], 0.0);
            assert!(ulp64(o[7], f64::MAX.ln()).abs() <= 1.0);

            let xs = [
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NAN,
                710.0,
                -746.0,
                -740.0,
            ];
            let mut o = [0f64; 6];
            dispatch_on(isa, Eval64(Fun::Exp, &xs, &mut o));
            assert_eq!(&o[..2], &[0.0, f64::INFINITY]);
            assert!(o[2].is_nan());
            assert_eq!([o[3], o[4]], [f64::INFINITY, 0.0]);
            assert!((o[5] - (-740f64).exp()).abs() <= 5e-324);

            let ps = [0.0f64, -0.0, 1.0, 5e-324, 1e-300, f64::NAN];
            let mut one = [0f64; 6];
            let mut zero = [0f64; 6];
            dispatch_on(isa, Eval64(Fun::BceOne, &ps, &mut one));
            dispatch_on(isa, Eval64(Fun::BceZero, &ps, &mut zero));
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one[..5]), bits(&[100.0, 100.0, 0.0, 100.0, 100.0]));
            assert_eq!(bits(&zero[..5]), bits(&[0.0, 0.0, 100.0, 5e-324, 1e-300]));
            assert!(one[5].is_nan() && zero[5].is_nan());
        }
    }

    /// The entropy term without special-case selects: its specials come out of the product.
    #[test]
    fn x_ln_x_special_values() {
        struct Terms<'a, const SUB: bool>(&'a [f64], &'a mut [f64]);
        impl<const SUB: bool> Kernel for Terms<'_, SUB> {
            type Output = ();
            #[inline(always)]
            fn run<A: Arch>(self) {
                for (o, &x) in self.1.iter_mut().zip(self.0) {
                    *o = x_ln_x_shifted_f64::<A, SUB>(x, 0.0);
                }
            }
        }
        let xs = [
            0.0,
            -0.0,
            1.0,
            f64::INFINITY,
            f64::NAN,
            0.5,
            1e-300,
            5e-324,
            1e300,
        ];
        for isa in isas() {
            let mut o = [0f64; 9];
            dispatch_on(isa, Terms::<true>(&xs, &mut o));
            assert_eq!(&o[..4], &[0.0, 0.0, 0.0, f64::INFINITY]);
            assert!(o[4].is_nan());
            for i in 5..9 {
                let exact = xs[i] * xs[i].ln();
                assert!(
                    ulp64(o[i], exact).abs() <= 1.0,
                    "{isa:?} {}: {}",
                    xs[i],
                    o[i]
                );
            }
            // ln for x ≥ 0: the IEEE specials but for negative x, and ln_f64's bits elsewhere.
            struct Logs<'a>(&'a [f64], &'a mut [f64], &'a mut [f64]);
            impl Kernel for Logs<'_> {
                type Output = ();
                #[inline(always)]
                fn run<A: Arch>(self) {
                    for ((a, b), &x) in self.1.iter_mut().zip(self.2.iter_mut()).zip(self.0) {
                        (*a, *b) = (ln_nonneg_shifted_f64::<A, true>(x, 0.0), ln_f64::<A>(x));
                    }
                }
            }
            let (mut nonneg, mut ieee) = ([0f64; 9], [0f64; 9]);
            dispatch_on(isa, Logs(&xs, &mut nonneg, &mut ieee));
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&nonneg), bits(&ieee), "{isa:?}");
            assert_eq!(nonneg[1], f64::NEG_INFINITY);
            // Without subnormal scaling, every normal value is still exact.
            let mut o2 = [0f64; 9];
            dispatch_on(isa, Terms::<false>(&xs, &mut o2));
            assert_eq!(
                o[..7].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                o2[..7].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    /// `x_ln_x_f32_wide_shifted` (shift 0): the log inside it within 2e-8 absolute (its term
    /// within `2e-8·x`) over all positive `f32` and densely on `[1/4, 4]`, unbiased, and the
    /// specials of `x_ln_x_shifted_f64`; `ln_nonneg_f32_wide_shifted`: that log, with the
    /// specials of `ln`.
    #[test]
    fn f32_wide_log_absolute_error() {
        // `x_ln_x_f32_wide_shifted` when the flag is set, else `ln_nonneg_f32_wide_shifted`
        // (both with shift 0).
        struct Wide<'a>(bool, &'a [f32], &'a mut [f64]);
        impl Kernel for Wide<'_> {
            type Output = ();
            #[inline(always)]
            fn run<A: Arch>(self) {
                for (o, &x) in self.2.iter_mut().zip(self.1) {
                    *o = if self.0 {
                        x_ln_x_f32_wide_shifted::<A>(x, 0.0)
                    } else {
                        ln_nonneg_f32_wide_shifted::<A>(x, 0.0)
                    };
                }
            }
        }
        let mut xs = samples32(400_000, 0.0, f32::MAX);
        xs.extend(samples32(400_000, 0.25, 4.0));
        xs.retain(|&x| x > 0.0);
        for isa in isas() {
            let mut o_all = vec![0f64; xs.len()];
            dispatch_on(isa, Wide(true, &xs, &mut o_all));
            let (mut max, mut sum) = (0f64, 0f64);
            for (&x, &t) in xs.iter().zip(&o_all) {
                let x = x as f64;
                let e = (t - x * x.ln()) / x;
                max = max.max(e.abs());
                sum += e;
            }
            let mean = sum / xs.len() as f64;
            println!("{isa:?} x_ln_x_f32_wide_shifted: log error max {max:.2e}, mean {mean:.1e}");
            assert!(
                max <= 2e-8 && mean.abs() < 1e-10,
                "{isa:?} {max:e} {mean:e}"
            );
            let specials = [0.0, -0.0, 1.0, f32::INFINITY, f32::NAN];
            let mut o = [1f64; 5];
            dispatch_on(isa, Wide(true, &specials, &mut o));
            assert_eq!(&o[..4], &[0.0, 0.0, 0.0, f64::INFINITY], "{isa:?}");
            assert!(o[4].is_nan());
            // ln_nonneg_f32_wide_shifted: the same log (x·ln x is x times it), with ln's specials.
            let mut l = vec![0f64; xs.len()];
            dispatch_on(isa, Wide(false, &xs, &mut l));
            for ((&x, &t), &y) in xs.iter().zip(&o_all).zip(&l) {
                assert_eq!((x as f64 * y).to_bits(), t.to_bits(), "{isa:?} {x:e}");
            }
            let mut l = [1f64; 5];
            dispatch_on(isa, Wide(false, &specials, &mut l));
            assert_eq!(
                &l[..4],
                &[f64::NEG_INFINITY, f64::NEG_INFINITY, 0.0, f64::INFINITY]
            );
            assert!(l[4].is_nan());
        }
    }

    /// Every f32 bit pattern through `ln`, on every ISA the CPU has: prints the max ulp and
    /// mean signed error. Slow (about a minute per ISA in release); run with
    /// `cargo test --release -- --ignored exhaustive --nocapture`.
    #[test]
    #[ignore]
    fn exhaustive_f32_ln() {
        use rayon::prelude::*;
        let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
        for isa in isas() {
            let chunks: Vec<(f64, f64, u64, u32)> = pool.install(|| {
                (0u32..1 << 16)
                    .into_par_iter()
                    .map(|hi| {
                        let xs: Vec<f32> = (0u32..1 << 16)
                            .map(|lo| f32::from_bits(hi << 16 | lo))
                            .collect();
                        let mut out = vec![0f32; xs.len()];
                        dispatch_on(isa, Eval32(Fun::Ln, &xs, &mut out));
                        let (mut max, mut sum, mut n, mut worst) = (0f64, 0f64, 0u64, 0u32);
                        for (&x, &y) in xs.iter().zip(&out) {
                            let e = ulp32(y, (x as f64).ln());
                            if e.abs() > max {
                                (max, worst) = (e.abs(), x.to_bits());
                            }
                            if e.is_finite() && x > 0.0 && x.is_finite() {
                                sum += e;
                                n += 1;
                            }
                        }
                        (max, sum, n, worst)
                    })
                    .collect()
            });
            let max = chunks.iter().map(|c| c.0).fold(0.0, f64::max);
            let worst = chunks.iter().find(|c| c.0 == max).map_or(0, |c| c.3);
            let sum: f64 = chunks.iter().map(|c| c.1).sum();
            let n: u64 = chunks.iter().map(|c| c.2).sum();
            println!(
                "{isa:?}: f32 ln max {max:.3} ulp at {:e}, mean signed {:.2e} ulp over {n} inputs",
                f32::from_bits(worst),
                sum / n as f64
            );
            assert!(max <= 4.0);
        }
    }
}
