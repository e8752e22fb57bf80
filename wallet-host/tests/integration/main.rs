//! The wallet-host integration tests: the sandbox against real algorithm and
//! hostile components, the encrypted store, and the `wallet` binary.

mod support;

mod cli;
mod sandbox_algorithms;
mod sandbox_hostile;
mod store;
