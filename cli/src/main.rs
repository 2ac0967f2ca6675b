//! The `cloudai` binary (being built).

fn main() {}
