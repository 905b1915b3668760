//! The one place that knows the CPU's instruction sets: runtime detection, the
//! `CROSSENT_ISA` override, and the mechanism that compiles a kernel once per instruction set
//! from one generic body.
//!
//! # Convention
//!
//! A kernel's hot loop is written once, as `#[inline(always)]` code generic over an [`Arch`]
//! type, inside an implementation of [`Kernel`]. [`dispatch`] runs it through a wrapper marked
//! `#[target_feature(enable = ...)]` for the active instruction set: the generic body is
//! inlined into the wrapper and compiled there with AVX-512 or AVX2+FMA enabled, so that its
//! lane loops vectorise to that width. Nothing is copied per instruction set or per dtype.
//!
//! - Everything the hot loop calls must be `#[inline(always)]` (or small enough that LLVM
//!   inlines it anyway): a function that is not inlined is compiled for the baseline CPU.
//!   Closures defined in the body count as calls too; prefer plain loops.
//! - Fused multiply-add goes through [`Arch::FMA`] (see [`crate::float::Float`]'s
//!   `mul_add_on`): fused where the wrapper enables FMA, `a * b + c` on the portable path,
//!   where a fused `mul_add` would be a slow library call.
//! - Dispatch at a granularity of hundreds of elements or more (a tile, a row): one dispatch
//!   is an atomic load, a match and a call.
//! - The instruction set may change the last bits of a result (FMA rounds once); the thread
//!   count never does, because the instruction set is chosen once per process (or per call),
//!   never per thread.
//!
//! The choice: the best of AVX-512 (F, VL, DQ, BW), AVX2 + FMA and the portable baseline the
//! CPU supports, detected once with `is_x86_feature_detected!` — every feature a level's
//! wrapper enables ([`AVX512_FEATURES`], [`AVX2_FEATURES`], BMI1/2, LZCNT and POPCNT
//! included), so a wrapper never runs on a CPU that lacks one. The environment variable
//! `CROSSENT_ISA` (`avx512`, `avx2` or `generic`), read once, lowers it, so tests can exercise
//! every path on one machine; a request above what the CPU supports is clamped to the best it
//! has. Other architectures (aarch64, ...) always run the portable path, which LLVM still
//! vectorises for the target's baseline (SSE2, NEON).

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level, ordered from the portable baseline up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Isa {
    /// The compile target's baseline (SSE2 on x86-64), no FMA.
    Generic = 0,
    /// AVX2 with FMA (x86-64).
    Avx2 = 1,
    /// AVX-512 F, VL, DQ and BW, with AVX2 and FMA (x86-64).
    Avx512 = 2,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Generic, Isa::Avx2, Isa::Avx512];

    /// The name used by `CROSSENT_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a `CROSSENT_ISA` value (case and surrounding spaces ignored).
    pub fn parse(value: &str) -> Option<Isa> {
        let v = value.trim().to_ascii_lowercase();
        Isa::ALL.into_iter().find(|isa| isa.name() == v)
    }

    fn from_u8(v: u8) -> Isa {
        match v {
            2 => Isa::Avx512,
            1 => Isa::Avx2,
            _ => Isa::Generic,
        }
    }
}

const UNSET: u8 = u8::MAX;
static DETECTED: AtomicU8 = AtomicU8::new(UNSET);
static ACTIVE: AtomicU8 = AtomicU8::new(UNSET);

/// The best level this CPU supports (detected once).
pub fn detected() -> Isa {
    match DETECTED.load(Ordering::Relaxed) {
        UNSET => {
            let isa = detect();
            DETECTED.store(isa as u8, Ordering::Relaxed);
            isa
        }
        v => Isa::from_u8(v),
    }
}

/// The features the AVX-512 wrapper ([`run_avx512`]) enables: every one is detected before it
/// runs. (`bmi1`, `bmi2`, `lzcnt` and `popcnt` let LLVM use their bit instructions for the
/// loops' masks and counts; every AVX2 CPU made has them, but a virtual machine may hide them,
/// and then the wrapper must not run.) A unit test checks that this list and the wrapper's
/// `#[target_feature]` attribute name the same features.
pub const AVX512_FEATURES: &[&str] = &[
    "avx512f", "avx512vl", "avx512dq", "avx512bw", "avx2", "fma", "bmi1", "bmi2", "lzcnt", "popcnt",
];

/// The features the AVX2 wrapper ([`run_avx2`]) enables, all detected before it runs.
pub const AVX2_FEATURES: &[&str] = &["avx2", "fma", "bmi1", "bmi2", "lzcnt", "popcnt"];

/// Whether the CPU has the x86 feature `name`; `None` for a name this function does not know
/// (a unit test checks it knows every name the wrappers enable).
#[cfg(target_arch = "x86_64")]
fn has_feature(name: &str) -> Option<bool> {
    use std::arch::is_x86_feature_detected as has;
    Some(match name {
        "avx512f" => has!("avx512f"),
        "avx512vl" => has!("avx512vl"),
        "avx512dq" => has!("avx512dq"),
        "avx512bw" => has!("avx512bw"),
        "avx2" => has!("avx2"),
        "fma" => has!("fma"),
        "bmi1" => has!("bmi1"),
        "bmi2" => has!("bmi2"),
        "lzcnt" => has!("lzcnt"),
        "popcnt" => has!("popcnt"),
        _ => return None,
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    detect_with(|f| has_feature(f) == Some(true))
}

/// The best level whose every wrapper feature `has` reports.
#[cfg(target_arch = "x86_64")]
fn detect_with(has: impl Fn(&str) -> bool) -> Isa {
    if AVX512_FEATURES.iter().all(|f| has(f)) {
        Isa::Avx512
    } else if AVX2_FEATURES.iter().all(|f| has(f)) {
        Isa::Avx2
    } else {
        Isa::Generic
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Generic
}

/// The level kernels run with: the detected one, lowered by `CROSSENT_ISA` when that names a
/// lower one. Chosen on first use and then fixed for the life of the process.
pub fn active() -> Isa {
    match ACTIVE.load(Ordering::Relaxed) {
        UNSET => {
            let requested = std::env::var("CROSSENT_ISA")
                .ok()
                .and_then(|v| Isa::parse(&v));
            let isa = requested.map_or(detected(), |r| r.min(detected()));
            // Another thread may have chosen meanwhile: keep its choice.
            match ACTIVE.compare_exchange(UNSET, isa as u8, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => isa,
                Err(v) => Isa::from_u8(v),
            }
        }
        v => Isa::from_u8(v),
    }
}

/// A compile-time instruction-set level: the type parameter of a kernel body.
pub trait Arch: Copy + Send + Sync + 'static {
    /// The level this type stands for.
    const ISA: Isa;
    /// True where fused multiply-add is a single instruction.
    const FMA: bool;
}

/// The portable baseline.
#[derive(Clone, Copy, Debug)]
pub struct Generic;
/// AVX2 + FMA.
#[derive(Clone, Copy, Debug)]
pub struct Avx2;
/// AVX-512 F/VL/DQ/BW (+ AVX2, FMA).
#[derive(Clone, Copy, Debug)]
pub struct Avx512;

impl Arch for Generic {
    const ISA: Isa = Isa::Generic;
    const FMA: bool = false;
}
impl Arch for Avx2 {
    const ISA: Isa = Isa::Avx2;
    const FMA: bool = true;
}
impl Arch for Avx512 {
    const ISA: Isa = Isa::Avx512;
    const FMA: bool = true;
}

/// A kernel compiled once per instruction set from one generic body.
///
/// Implement `run` as `#[inline(always)]`; [`dispatch`] calls it monomorphised for the chosen
/// [`Arch`] inside a `#[target_feature]` wrapper.
pub trait Kernel {
    type Output;
    fn run<A: Arch>(self) -> Self::Output;
}

/// Runs `kernel` with the [`active`] level.
#[inline]
pub fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    dispatch_on(active(), kernel)
}

/// Runs `kernel` with `isa`, clamped to what the CPU supports (so never an illegal
/// instruction).
#[inline]
pub fn dispatch_on<K: Kernel>(isa: Isa, kernel: K) -> K::Output {
    match isa.min(detected()) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detected()` is at least `Avx512` only if the CPU has every feature of
        // `AVX512_FEATURES`, which are exactly those `run_avx512` enables (a unit test
        // compares the two lists).
        Isa::Avx512 => unsafe { run_avx512(kernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detected()` is at least `Avx2` only if the CPU has every feature of
        // `AVX2_FEATURES`, which are exactly those `run_avx2` enables (the same unit test
        // compares them).
        Isa::Avx2 => unsafe { run_avx2(kernel) },
        _ => kernel.run::<Generic>(),
    }
}

/// # Safety
/// The CPU must support every feature of [`AVX512_FEATURES`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
unsafe fn run_avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Avx512>()
}

/// # Safety
/// The CPU must support every feature of [`AVX2_FEATURES`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
unsafe fn run_avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Avx2>()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Which;
    impl Kernel for Which {
        type Output = (Isa, bool);
        #[inline(always)]
        fn run<A: Arch>(self) -> (Isa, bool) {
            (A::ISA, A::FMA)
        }
    }

    /// The features named by the `#[target_feature(enable = ...)]` attribute on the line before
    /// `unsafe fn <wrapper>` in this file.
    fn enabled_features(wrapper: &str) -> Vec<String> {
        let source = include_str!("isa.rs");
        let lines: Vec<&str> = source.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("unsafe fn {wrapper}<")))
            .expect("the wrapper is defined");
        let attr = lines[at - 1];
        let list = attr
            .strip_prefix("#[target_feature(enable = \"")
            .and_then(|rest| rest.strip_suffix("\")]"))
            .expect("the line before the wrapper enables its features");
        let mut features: Vec<String> = list.split(',').map(str::to_string).collect();
        features.sort();
        features
    }

    fn sorted(features: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = features.iter().map(|f| f.to_string()).collect();
        v.sort();
        v
    }

    /// What the wrappers enable is exactly what detection checks (the SAFETY argument of
    /// `dispatch_on`).
    #[test]
    fn wrappers_enable_only_detected_features() {
        assert_eq!(enabled_features("run_avx512"), sorted(AVX512_FEATURES));
        assert_eq!(enabled_features("run_avx2"), sorted(AVX2_FEATURES));
    }

    /// A CPU missing any one feature of a level (as a virtual machine hiding BMI2 would) does
    /// not get that level.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_missing_feature_lowers_the_level() {
        assert_eq!(detect_with(|_| true), Isa::Avx512);
        assert_eq!(detect_with(|_| false), Isa::Generic);
        for &missing in AVX2_FEATURES {
            assert_eq!(detect_with(|f| f != missing), Isa::Generic, "{missing}");
        }
        for &missing in AVX512_FEATURES {
            if !AVX2_FEATURES.contains(&missing) {
                assert_eq!(detect_with(|f| f != missing), Isa::Avx2, "{missing}");
            }
        }
        // Every listed name is one `has_feature` asks the CPU about.
        for &f in AVX512_FEATURES.iter().chain(AVX2_FEATURES) {
            assert!(has_feature(f).is_some(), "{f}");
        }
    }

    #[test]
    fn parse_names() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert_eq!(Isa::parse(" AVX512 "), Some(Isa::Avx512));
        assert_eq!(Isa::parse("sse9"), None);
    }

    #[test]
    fn dispatch_runs_the_clamped_level() {
        for isa in Isa::ALL {
            let (ran, fma) = dispatch_on(isa, Which);
            assert_eq!(ran, isa.min(detected()));
            assert_eq!(fma, ran != Isa::Generic);
        }
        assert!(active() <= detected());
    }
}
