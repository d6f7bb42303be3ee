//! The pipeline library's own integration tests: its pieces driven from outside, without the
//! `vigil` binary (whose end-to-end tests live in the workspace's `tests/it`).
//!
//! One test binary for the crate, so modules added here link one executable, not one each.

mod tls;
