//! The element types the kernels are generic over.
//!
//! [`Float`] is implemented for `f32` and `f64`: every kernel is written once against it.
//! [`Target`] is implemented for every dtype a target/label array may have, so that label
//! arrays (`bool`, `uint8`, `int8`, `int32`, `int64`) are read where they lie, without a
//! conversion pass.

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

use super::isa::Arch;
use super::math;

/// A floating-point element type of an input array (`f32` or `f64`).
///
/// All methods are `#[inline(always)]` and branch-free so that loops over `Float`s vectorise;
/// the transcendental functions come from [`math`]. They take the instruction-set level of the
/// enclosing kernel (see [`super::isa`]) and fuse multiply-adds where it has FMA.
///
/// Naming convention: no method here whose result can differ from the standard library's
/// shares a name with an inherent method of `f32`/`f64`. On a concrete `f64` an inherent method
/// wins over a trait method of the same name, so a shared name (`ln`, `exp`, `ln_1p`,
/// `mul_add`) would silently call the standard library (a libm call, or a fused `mul_add`
/// where the crate's is not) as soon as code stops being generic. The crate's functions are
/// therefore only reachable as `*_on::<A>` (`::<Generic>` for the portable form), a name std
/// never uses. `abs` and `is_nan` keep std's names on purpose: both are exact, so either
/// resolution gives the same bits.
pub trait Float:
    Copy
    + super::half::HalfConvert
    + Send
    + Sync
    + Debug
    + PartialOrd
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    /// PyTorch clamps each log term of binary cross-entropy at -100.
    const LOG_CLAMP: Self;
    /// NumPy's name for the dtype, for error messages.
    const NAME: &'static str;
    /// Narrower than `f64` (`f32`): its values widened to `f64` are never subnormal, a result
    /// stored in it needs only its own accuracy, and twice as many fit in a vector register.
    const NARROW: bool;

    /// A `'static` one, for operands that default to 1 (read with stride 0).
    fn one_ref() -> &'static Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// Natural logarithm (see [`math`] for the accuracy promise), for instruction set `A`.
    fn ln_on<A: Arch>(self) -> Self;
    /// `ln(1 + self)`, accurate for small `self`, for instruction set `A`.
    fn ln_1p_on<A: Arch>(self) -> Self;
    /// `e^self`, for instruction set `A`.
    fn exp_on<A: Arch>(self) -> Self;
    /// `ln(self)` if `one`, else `ln(1 - self)`: one log, accurate for tiny `self` either way
    /// (the hard-label term of binary cross-entropy), for instruction set `A`.
    fn ln_p_or_1m_p_on<A: Arch>(self, one: bool) -> Self;
    /// `min(-ln(one ? self : 1 - self), 100)`: the hard-label loss of binary cross-entropy
    /// (the log clamped at -100), one log, for `self ∈ [0, 1]` (NaN gives NaN; other values a
    /// value of no meaning).
    fn bce_nlog_on<A: Arch>(self, one: bool) -> Self;
    /// `ln(1 + e^self)` for `self ≤ 0` (softplus; NaN gives NaN), for instruction set `A`.
    fn softplus_nonpos_on<A: Arch>(self) -> Self;
    /// `self * a + b`: one fused instruction where `A` has FMA, a multiply and an add
    /// otherwise (never a library call).
    fn mul_add_on<A: Arch>(self, a: Self, b: Self) -> Self;
    /// Maximum that propagates NaN from `self` (`self` is NaN → NaN).
    fn max_nan(self, other: Self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! impl_float {
    ($t:ty, $name:literal, $ln:ident, $ln1p:ident, $exp:ident, $hard:ident, $bce:ident, $sp:ident) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const LOG_CLAMP: Self = -100.0;
            const NAME: &'static str = $name;
            const NARROW: bool = std::mem::size_of::<$t>() < 8;

            fn one_ref() -> &'static Self {
                static ONE: $t = 1.0;
                &ONE
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn ln_on<A: Arch>(self) -> Self {
                math::$ln::<A>(self)
            }
            #[inline(always)]
            fn ln_1p_on<A: Arch>(self) -> Self {
                math::$ln1p::<A>(self)
            }
            #[inline(always)]
            fn exp_on<A: Arch>(self) -> Self {
                math::$exp::<A>(self)
            }
            #[inline(always)]
            fn ln_p_or_1m_p_on<A: Arch>(self, one: bool) -> Self {
                math::$hard::<A>(self, one)
            }
            #[inline(always)]
            fn bce_nlog_on<A: Arch>(self, one: bool) -> Self {
                math::$bce::<A>(self, one)
            }
            #[inline(always)]
            fn softplus_nonpos_on<A: Arch>(self) -> Self {
                math::$sp::<A>(self)
            }
            #[inline(always)]
            fn mul_add_on<A: Arch>(self, a: Self, b: Self) -> Self {
                if A::FMA {
                    <$t>::mul_add(self, a, b)
                } else {
                    self * a + b
                }
            }
            #[inline(always)]
            fn max_nan(self, other: Self) -> Self {
                // `a < b` is false when `a` is NaN, so NaN in `self` survives.
                if self < other {
                    other
                } else {
                    self
                }
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

impl_float!(
    f32,
    "float32",
    ln_f32,
    ln_1p_f32,
    exp_f32,
    ln_p_or_1m_p_f32,
    bce_nlog_f32,
    softplus_nonpos_f32
);
impl_float!(
    f64,
    "float64",
    ln_f64,
    ln_1p_f64,
    exp_f64,
    ln_p_or_1m_p_f64,
    bce_nlog_f64,
    softplus_nonpos_f64
);

/// The element type of a target array of binary cross-entropy.
///
/// Float targets are probabilities in `[0, 1]`; integer targets are hard labels that must be
/// `0` or `1`; [`Bool`] targets are hard labels where any non-zero byte means true.
///
/// A target operand may be stored in another float type than the one it is read as (a
/// float16 target read as `f32`), hence the [`Load`](super::strided::Load) bound.
pub trait Target: super::strided::Load + Debug {
    /// Hard labels: every valid value is 0 or 1, so one log per element suffices.
    const HARD: bool;
    /// NumPy's name for the dtype, for error messages.
    const NAME: &'static str;
    /// The target as a probability (for hard labels: 0 or 1).
    fn prob<T: Float>(self) -> T;
    /// True if this value is a valid target (in `[0, 1]`; NaN counts as valid and propagates).
    fn in_range(self) -> bool;
    /// True if this is the label 1 (only meaningful for hard labels and exact 0/1 floats).
    fn is_one(self) -> bool;
    /// Float targets are range-checked by their smallest and largest value over a tile
    /// ([`Target::lesser`], [`Target::greater`], [`Target::extremes_in_range`]): two vector
    /// instructions per group instead of a flag per element. Labels use [`Target::in_range`].
    const BY_EXTREMES: bool = false;
    /// The lesser of two values, ignoring NaN in `self` (a select, so it vectorises).
    #[inline(always)]
    fn lesser(self, _other: Self) -> Self {
        self
    }
    /// The greater of two values, ignoring NaN in `self`.
    #[inline(always)]
    fn greater(self, _other: Self) -> Self {
        self
    }
    /// True if every value between `lo` and `hi` is in range.
    #[inline(always)]
    fn extremes_in_range(lo: Self, hi: Self) -> bool {
        lo.in_range() & hi.in_range()
    }
}

/// A NumPy `bool` element, read as its raw byte: NumPy arrays can hold bytes other than 0/1
/// in a bool array (e.g. through `view`), and any non-zero byte means true, as in NumPy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bool(pub u8);

impl Target for Bool {
    const HARD: bool = true;
    const NAME: &'static str = "bool";
    #[inline(always)]
    fn prob<T: Float>(self) -> T {
        if self.0 != 0 {
            T::ONE
        } else {
            T::ZERO
        }
    }
    #[inline(always)]
    fn in_range(self) -> bool {
        true
    }
    #[inline(always)]
    fn is_one(self) -> bool {
        self.0 != 0
    }
}

/// A bool operand is read as stored, byte by byte (the conversions exist for the trait only):
/// what lets a [`View`](super::view::View) hold a bool target.
impl super::strided::Load for Bool {
    const STORED: super::strided::Stored = super::strided::Stored::Native;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        Bool(u8::from(v != 0.0))
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        Bool(u8::from(v != 0.0))
    }
}

macro_rules! impl_int_target {
    ($($t:ty => $name:literal),*) => {$(
        impl Target for $t {
            const HARD: bool = true;
            const NAME: &'static str = $name;
            #[inline(always)]
            fn prob<T: Float>(self) -> T {
                if self == 1 { T::ONE } else { T::ZERO }
            }
            #[inline(always)]
            fn in_range(self) -> bool {
                (self == 0) | (self == 1)
            }
            #[inline(always)]
            fn is_one(self) -> bool {
                self == 1
            }
        }
    )*};
}
impl_int_target!(u8 => "uint8", i8 => "int8", i32 => "int32", i64 => "int64");

macro_rules! impl_float_target {
    ($($t:ty),*) => {$(
        impl Target for $t {
            const HARD: bool = false;
            const NAME: &'static str = <$t as Float>::NAME;
            #[inline(always)]
            fn prob<T: Float>(self) -> T {
                T::from_f64(self as f64)
            }
            #[inline(always)]
            fn in_range(self) -> bool {
                // NaN is let through: it propagates into the result instead.
                // Branch-free (`|`), so that it vectorises; not `contains`, which rejects NaN.
                #[allow(clippy::manual_range_contains)]
                let outside = (self < 0.0) | (self > 1.0);
                !outside
            }
            #[inline(always)]
            fn is_one(self) -> bool {
                self == 1.0
            }
            const BY_EXTREMES: bool = true;
            #[inline(always)]
            fn lesser(self, other: Self) -> Self {
                if self < other { self } else { other }
            }
            #[inline(always)]
            fn greater(self, other: Self) -> Self {
                if self > other { self } else { other }
            }
        }
    )*};
}
impl_float_target!(f32, f64);
