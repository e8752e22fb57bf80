//! The sandbox's integration tests: real algorithm components, and every
//! hostile component of `test-guests/`, each stopped with its own error.

mod support;

mod algorithms;
mod bomb_builders;
mod compile_bombs;
mod hostile;
