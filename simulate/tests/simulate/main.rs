//! The simulation's integration tests: the whole loop in one process.

mod privacy;
mod repeatable;
