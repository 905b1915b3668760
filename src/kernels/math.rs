//! Scalar transcendental functions used inside the kernels' lane loops.
//!
//! These currently forward to the platform's libm (correctly rounded to within 1 ulp), which is
//! exact but opaque to the vectoriser.
//! TODO(#4): branch-free polynomial versions so that lane loops vectorise.

#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    x.ln()
}
#[inline(always)]
pub fn ln_1p_f32(x: f32) -> f32 {
    x.ln_1p()
}
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    x.exp()
}
#[inline(always)]
pub fn ln_f64(x: f64) -> f64 {
    x.ln()
}
#[inline(always)]
pub fn ln_1p_f64(x: f64) -> f64 {
    x.ln_1p()
}
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    x.exp()
}

/// `ln(p)` if `one`, else `ln(1 - p)` (computed as `ln_1p(-p)`, accurate for tiny `p`).
/// The hard-label case of binary cross-entropy: one log per element.
#[inline(always)]
pub fn ln_p_or_1m_p<T: super::float::Float>(p: T, one: bool) -> T {
    if one {
        p.ln()
    } else {
        (-p).ln_1p()
    }
}
