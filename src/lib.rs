//! crossent: information-theory losses over NumPy arrays, computed in place, in parallel and
//! deterministically.
//!
//! [`kernels`] is the pure-Rust core (no Python types); [`bindings`] parses Python arguments,
//! dispatches on dtypes, releases the GIL and converts results.

pub mod bindings;
/// The kernels are a crate of their own (`src/kernels/Cargo.toml`, no Python dependency), so the
/// compiler keeps Python types out of them; re-exported here under their old path.
pub use crossent_kernels as kernels;

use pyo3::prelude::*;

/// The compiled core of crossent; import the functions from `crossent` itself.
#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use crate::bindings::accumulate::{
        BinaryCrossEntropyAccumulator, BinaryCrossEntropyWithLogitsAccumulator,
        CrossEntropyAccumulator, EntropyAccumulator, JensenShannonAccumulator,
        KLDivergenceAccumulator, SoftmaxCrossEntropyAccumulator,
    };
    #[pymodule_export]
    use crate::bindings::bce::{binary_cross_entropy, binary_cross_entropy_with_logits};
    #[pymodule_export]
    use crate::bindings::divergence::{cross_entropy, entropy, jensen_shannon, kl_divergence};
    #[pymodule_export]
    use crate::bindings::errors::DomainError;
    #[pymodule_export]
    use crate::bindings::grad::{
        binary_cross_entropy_with_logits_grad, softmax_cross_entropy_grad,
    };
    #[pymodule_export]
    use crate::bindings::groups::_log_loss_groups;
    #[pymodule_export]
    use crate::bindings::logloss::{_log_loss, LogLossAccumulator};
    #[pymodule_export]
    use crate::bindings::nan_policy::_nan_policy;
    #[pymodule_export]
    use crate::bindings::reduction::_reduction;
    #[pymodule_export]
    use crate::bindings::softmax::softmax_cross_entropy;
    #[pymodule_export]
    use crate::bindings::threads::{get_num_threads, set_num_threads};

    use pyo3::prelude::*;

    /// The instruction set crossent's kernels run with: ``"avx512"``, ``"avx2"`` or
    /// ``"generic"`` (the best the CPU has, lowered by ``CROSSENT_ISA`` at import). Private:
    /// for tests and diagnostics.
    #[pyfunction]
    fn _isa() -> &'static str {
        crate::kernels::isa::active().name()
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        crate::kernels::pool::register_fork_handlers();
        m.add("BLOCK", crate::kernels::reduce::BLOCK)?;
        m.add("CHUNK", crate::kernels::rows::CHUNK)?;
        crate::bindings::threads::isa_from_env(m.py())?;
        crate::bindings::threads::init_from_env(m.py())
    }
}
