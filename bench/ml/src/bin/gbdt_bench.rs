//! Placeholder until the benchmark lands (issue #26).
fn main() {}
