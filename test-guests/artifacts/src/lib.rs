//! Paths of the components that the build script compiled: every algorithm in
//! `algorithms/` and every hostile guest in `test-guests/examples/`, as
//! `pub const NAME: &str`. `foreach_hostile!` lets a test file prove at
//! compile time that it has a test for each hostile guest.
#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/paths.rs"));
include!(concat!(env!("OUT_DIR"), "/hostile.rs"));
