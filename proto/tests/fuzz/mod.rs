//! Strategies and seeds of the `fuzz_convert` test.

pub mod seeds;
pub mod strategies;
