//! The wallet-host integration tests: the encrypted store, and the `wallet`
//! binary.

mod cli;
mod store;
