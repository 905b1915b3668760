//! The Python binding layer: parses arguments, checks and dispatches dtypes, views arrays as
//! the kernels' typed views, calls one driver per family ([`crate::kernels::drive`]) with the
//! GIL policy ([`threads::Gil`]) and converts results. No loss formula, no iteration space
//! (`Layout`, rows, row ops) lives here.

pub mod accumulate;
pub mod args;
pub mod arrays;
pub mod arrow;
pub mod bce;
pub mod binary;
pub mod divergence;
pub mod errors;
pub mod grad;
pub mod groups;
pub mod half;
pub mod logloss;
pub mod nan_policy;
pub mod operand;
pub mod precision;
pub mod reduction;
pub mod softmax;
pub mod threads;
