//! The simulation's integration tests: the whole loop in one process.

mod momentum;
mod newton;
mod privacy;
mod repeatable;
