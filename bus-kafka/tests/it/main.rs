//! The Kafka bus's integration tests, in one test binary. They start a broker (tansu; set
//! `TANSU` to its path).

// The root crate's broker helper; these tests use only part of it.
#[allow(dead_code)]
#[path = "../../../tests/it/common/tansu.rs"]
mod tansu;

mod resume;
