//! The `reportjob` command line.
fn main() {}
