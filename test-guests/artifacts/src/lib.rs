//! Paths of the components that the build script compiled: every algorithm in
//! `algorithms/` and every guest in `test-guests/examples/` (hostile ones
//! and privacy attacks, `attack_*.rs`), as `pub const NAME: &str`.
//! `foreach_hostile!` and `foreach_attack!` let a test file prove at compile
//! time that it has a test for each.
#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/paths.rs"));
include!(concat!(env!("OUT_DIR"), "/hostile.rs"));
