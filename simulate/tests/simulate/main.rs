//! The simulation's integration tests: the whole loop in one process.

mod momentum;
mod privacy;
mod repeatable;
