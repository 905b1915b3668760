//! What a kernel does with NaN: SciPy's `nan_policy`.
//!
//! - [`NanPolicy::Propagate`] (the default): NaN flows into the results it touches, as IEEE
//!   arithmetic carries it; the kernels' code is that of a call without the keyword.
//! - [`NanPolicy::Omit`]: the elements that hold a NaN are left out, each family saying which
//!   (a divergence drops the pairs where `p` or `q` is NaN from each distribution, sums
//!   included).
//! - [`NanPolicy::Raise`]: a NaN is a domain error, flagged as a value outside the domain is
//!   (see [`super::reduce::flags`]); the caller locates the first one.
//!
//! Kernels take the policy as a `const` parameter holding its [`NanPolicy::code`], so that
//! each policy is its own compiled loop and the propagate one carries no test for NaN.

/// SciPy's three NaN policies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NanPolicy {
    /// NaN propagates to the results it enters.
    #[default]
    Propagate,
    /// Elements holding NaN are left out.
    Omit,
    /// A NaN is an error.
    Raise,
}

/// [`NanPolicy::Propagate`]'s code.
pub const PROPAGATE: u8 = 0;
/// [`NanPolicy::Omit`]'s code.
pub const OMIT: u8 = 1;
/// [`NanPolicy::Raise`]'s code.
pub const RAISE: u8 = 2;

/// A policy's code as a type, for kernels whose types depend on the policy (e.g. scratch
/// space only [`NanPolicy::Omit`] uses): `Policy<{ OMIT }>`.
pub struct Policy<const NAN: u8>;

impl NanPolicy {
    /// Every policy, in the order their names are listed in messages.
    pub const ALL: [NanPolicy; 3] = [NanPolicy::Propagate, NanPolicy::Omit, NanPolicy::Raise];

    /// A number for each policy, to fix one at compile time.
    pub const fn code(self) -> u8 {
        match self {
            NanPolicy::Propagate => PROPAGATE,
            NanPolicy::Omit => OMIT,
            NanPolicy::Raise => RAISE,
        }
    }

    /// Its spelling, as SciPy's `nan_policy=` takes it.
    pub const fn name(self) -> &'static str {
        match self {
            NanPolicy::Propagate => "propagate",
            NanPolicy::Omit => "omit",
            NanPolicy::Raise => "raise",
        }
    }

    /// The policy spelled `name`, if any.
    pub fn from_name(name: &str) -> Option<NanPolicy> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for p in NanPolicy::ALL {
            assert_eq!(NanPolicy::from_name(p.name()), Some(p));
        }
        assert_eq!(NanPolicy::from_name("Omit"), None);
        let codes = NanPolicy::ALL.map(NanPolicy::code);
        assert_eq!(codes, [PROPAGATE, OMIT, RAISE]);
        assert_eq!(NanPolicy::default(), NanPolicy::Propagate);
    }
}
