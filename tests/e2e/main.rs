//! End-to-end tests: the real `collective` and `wallet` binaries, talking
//! HTTP on 127.0.0.1, as their users run them.

mod attacks;
mod crash;
mod meddling;
mod proxy;
mod roles;
mod support;
mod sybils;
mod training;
