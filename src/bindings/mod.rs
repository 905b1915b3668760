//! The Python binding layer: parses arguments, checks and dispatches dtypes, releases the GIL
//! around the kernels and converts results. No loss formula lives here.

pub mod accumulate;
pub mod args;
pub mod arrays;
pub mod arrow;
pub mod axes;
pub mod bce;
pub mod binary;
pub mod divergence;
pub mod errors;
pub mod grad;
pub mod groups;
pub mod logloss;
pub mod operand;
pub mod precision;
pub mod reduction;
pub mod softmax;
pub mod threads;
