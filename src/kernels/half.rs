//! The two 16-bit float formats operands may be stored in, as raw bits: IEEE binary16
//! (NumPy's `float16`) and bfloat16 (the upper half of a binary32, `ml_dtypes.bfloat16`).
//!
//! Reading widens exactly (every 16-bit value is a binary32 value): bfloat16 is a 16-bit
//! shift, binary16 a branch-free rebias of exponent and significand (subnormals renormalised
//! by one exact float subtraction), which vectorises in the gather loops on every instruction
//! set. Writing rounds a binary32 to nearest, ties to even, as NumPy's `astype` and
//! `ml_dtypes` round: overflow gives infinity, NaN stays NaN (its sign and leading payload
//! bits kept, quiet). A binary64 is first rounded to binary32 *to odd*, which makes the
//! second rounding exact (binary32 has more than 11 + 2 significand bits).

/// The 16-bit float format of an operand's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// IEEE binary16: 1 sign, 5 exponent, 10 significand bits.
    F16,
    /// bfloat16: 1 sign, 8 exponent, 7 significand bits.
    Bf16,
}

/// The binary32 value of the binary16 `bits` (exact).
#[inline(always)]
pub fn f16_to_f32(bits: u16) -> f32 {
    const SHIFTED_EXP: u32 = 0x7c00 << 13;
    let h = u32::from(bits);
    let mut o = (h & 0x7fff) << 13;
    let exp = o & SHIFTED_EXP;
    o += (127 - 15) << 23;
    // Infinity and NaN: the exponent goes to 255.
    let o_special = o + ((128 - 16) << 23);
    // Zero and subnormals: value = significand · 2^-24, that is (2^-14 + s · 2^-24) - 2^-14
    // with the exponent set to that of 2^-14; exact.
    let o_sub = f32::from_bits(o + (1 << 23)) - f32::from_bits(113 << 23);
    let o = if exp == SHIFTED_EXP {
        o_special
    } else if exp == 0 {
        o_sub.to_bits()
    } else {
        o
    };
    f32::from_bits(o | ((h & 0x8000) << 16))
}

/// The binary32 value of the bfloat16 `bits` (exact).
#[inline(always)]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `v` rounded to binary16 (nearest, ties to even).
#[inline(always)]
pub fn f32_to_f16(v: f32) -> u16 {
    let u = v.to_bits();
    let sign = ((u >> 16) & 0x8000) as u16;
    let a = u & 0x7fff_ffff;
    let bits = if a >= 0x7f80_0000 {
        // Infinity, or NaN kept quiet with its leading payload bits.
        if a > 0x7f80_0000 {
            0x7e00 | ((a >> 13) & 0x3ff) as u16
        } else {
            0x7c00
        }
    } else if a >= (127 + 16) << 23 {
        // At or beyond 2^16: overflow.
        0x7c00
    } else if a < 113 << 23 {
        // Below 2^-14: a binary16 subnormal (or zero). Adding 0.5 (exponent 126) lines the
        // significand up so that the float addition rounds at 2^-24, to nearest even.
        const MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23;
        let r = f32::from_bits(a) + f32::from_bits(MAGIC);
        (r.to_bits() - MAGIC) as u16
    } else {
        // Normal: rebias, round the 13 dropped bits to nearest even (a carry into the
        // exponent is the correct result, up to infinity).
        let odd = (a >> 13) & 1;
        let r = a
            .wrapping_add(((15u32).wrapping_sub(127)) << 23)
            .wrapping_add(0xfff + odd);
        (r >> 13) as u16
    };
    bits | sign
}

/// `v` rounded to bfloat16 (nearest, ties to even).
#[inline(always)]
pub fn f32_to_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    if v.is_nan() {
        // Quiet, with the sign and the leading payload bits.
        return ((u >> 16) | 0x40) as u16;
    }
    let odd = (u >> 16) & 1;
    (u.wrapping_add(0x7fff + odd) >> 16) as u16
}

/// `v` rounded to binary32 *to odd*: toward zero, then the last bit set if inexact. A second
/// rounding of the result to a format with at least two bits fewer is then the correctly
/// rounded conversion of `v` itself.
#[inline(always)]
pub fn f64_to_f32_odd(v: f64) -> f32 {
    let near = v as f32;
    if !near.is_finite() || f64::from(near) == v {
        // Exact, NaN, or beyond the binary32 range (both roundings overflow alike).
        return near;
    }
    // Toward zero: step back from a neighbour rounded away from zero.
    let toward = if f64::from(near).abs() > v.abs() {
        f32::from_bits(near.to_bits() - 1)
    } else {
        near
    };
    f32::from_bits(toward.to_bits() | 1)
}

/// Converting the value `v` to and from the 16-bit formats: what an operand stored in one
/// of them is read as, and what an output stored in one of them is written from.
pub trait HalfConvert: Copy {
    /// `bits` of the format `half`, as this type (exact).
    fn from_half(bits: u16, half: Half) -> Self;
    /// This value rounded to the format `half` (nearest, ties to even).
    fn to_half(self, half: Half) -> u16;
}

impl HalfConvert for f32 {
    #[inline(always)]
    fn from_half(bits: u16, half: Half) -> Self {
        match half {
            Half::F16 => f16_to_f32(bits),
            Half::Bf16 => bf16_to_f32(bits),
        }
    }
    #[inline(always)]
    fn to_half(self, half: Half) -> u16 {
        match half {
            Half::F16 => f32_to_f16(self),
            Half::Bf16 => f32_to_bf16(self),
        }
    }
}

impl HalfConvert for f64 {
    #[inline(always)]
    fn from_half(bits: u16, half: Half) -> Self {
        f64::from(f32::from_half(bits, half))
    }
    #[inline(always)]
    fn to_half(self, half: Half) -> u16 {
        f64_to_f32_odd(self).to_half(half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of a binary16 from its fields, in f64 (independent of the bit tricks).
    fn f16_value(bits: u16) -> f64 {
        let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((bits >> 10) & 0x1f);
        let man = f64::from(bits & 0x3ff);
        match exp {
            0 => sign * man * 2f64.powi(-24),
            31 if man == 0.0 => sign * f64::INFINITY,
            31 => f64::NAN,
            _ => sign * (1.0 + man / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    /// The nearest binary16 (ties to even) of a finite or infinite `v`, by search over the
    /// finite values in f64 (independent of the bit tricks).
    fn f16_nearest(v: f64) -> u16 {
        let sign: u16 = if v.is_sign_negative() { 0x8000 } else { 0 };
        let a = v.abs();
        // 65520 = max + half an ulp: from there on, infinity.
        if a >= 65520.0 {
            return sign | 0x7c00;
        }
        // Binary16 values grow with their bits: the largest at most `a`, then its successor.
        let (mut lo, mut hi) = (0u16, 0x7bffu16);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if f16_value(mid) <= a {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let (below, above) = (f16_value(lo), f16_value(lo + 1));
        let best = if a - below < above - a || (a - below == above - a && lo & 1 == 0) {
            lo
        } else {
            lo + 1
        };
        sign | best
    }

    #[test]
    fn f16_widens_exactly() {
        for b in 0..=u16::MAX {
            let got = f16_to_f32(b);
            let want = f16_value(b);
            if want.is_nan() {
                assert!(got.is_nan(), "{b:#06x}");
                // The payload survives, so it rounds back to the same bits.
                assert_eq!(f32_to_f16(got) & 0x7dff, b & 0x7dff, "{b:#06x}");
            } else {
                assert_eq!(f64::from(got), want, "{b:#06x}");
                assert_eq!(got.is_sign_negative(), b & 0x8000 != 0, "{b:#06x}");
                assert_eq!(f32_to_f16(got), b, "round trip {b:#06x}");
            }
        }
    }

    #[test]
    fn bf16_widens_exactly() {
        for b in 0..=u16::MAX {
            let got = bf16_to_f32(b);
            let sign = if b & 0x8000 != 0 { -1.0 } else { 1.0 };
            let exp = i32::from((b >> 7) & 0xff);
            let man = f64::from(b & 0x7f);
            let want = match exp {
                0 => sign * man * 2f64.powi(-133),
                255 if man == 0.0 => sign * f64::INFINITY,
                255 => f64::NAN,
                _ => sign * (1.0 + man / 128.0) * 2f64.powi(exp - 127),
            };
            if want.is_nan() {
                assert!(got.is_nan());
            } else {
                assert_eq!(f64::from(got), want, "{b:#06x}");
                assert_eq!(f32_to_bf16(got), b, "round trip {b:#06x}");
            }
        }
    }

    #[test]
    fn f16_rounds_to_nearest_even() {
        // Midpoints and their neighbours around every binary16 in a few binades, subnormals,
        // the overflow threshold, and a spread of arbitrary values.
        let mut cases: Vec<f32> = vec![65504.0, 65519.996, 65520.0, 1e9, 6e-8, 3e-8, 2.98e-8];
        for b in (0..0x7c00u16).step_by(7).chain(0x3bf0..0x3c10).chain(0..40) {
            let lo = f16_value(b);
            let hi = f16_value(b + 1);
            let mid = (lo + hi) / 2.0;
            let m = mid as f32;
            cases.extend([
                m,
                f32::from_bits(m.to_bits() + 1),
                f32::from_bits(m.to_bits() - 1),
            ]);
        }
        let mut x = 0x1234_5678u32;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = f32::from_bits(x & 0x7fff_ffff);
            if v.is_finite() && v < 1e6 {
                cases.push(v);
            }
        }
        for v in cases {
            for s in [v, -v] {
                assert_eq!(f32_to_f16(s), f16_nearest(f64::from(s)), "{s:e}");
            }
        }
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7c00);
        assert_eq!(f32_to_f16(f32::NEG_INFINITY), 0xfc00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        for (v, want) in [
            (1.0f32, 0x3f80u16),
            // 1 + 2^-8 is the midpoint of 1 and 1 + 2^-7: ties to even (1).
            (1.0 + 2f32.powi(-8), 0x3f80),
            (1.0 + 3.0 * 2f32.powi(-8), 0x3f82),
            (1.0 + 2f32.powi(-8) + 2f32.powi(-20), 0x3f81),
            (f32::MAX, 0x7f80),
            (-0.0, 0x8000),
        ] {
            assert_eq!(f32_to_bf16(v), want, "{v:e}");
        }
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert!(bf16_to_f32(f32_to_bf16(f32::from_bits(0x7f80_0001))).is_nan());
    }

    #[test]
    fn f64_rounds_once() {
        // A value just above a binary16 midpoint, below it in binary32 after a plain rounding:
        // 1 + 2^-11 + 2^-40 rounds (as f32) to 1 + 2^-11, a tie that goes to 1; correctly, up.
        let v = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(f32_to_f16(v as f32), 0x3c00);
        assert_eq!(v.to_half(Half::F16), 0x3c01);
        assert_eq!(
            (1.0 + 2f64.powi(-8) + 2f64.powi(-40)).to_half(Half::Bf16),
            0x3f81
        );
        for v in [0.1f64, -2.5e-6, 65519.0, 1e300, -1e-300, 0.0] {
            assert_eq!(v.to_half(Half::F16), f16_nearest(v), "{v:e}");
        }
    }
}
