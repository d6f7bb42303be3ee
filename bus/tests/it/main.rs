//! The bus crate's integration tests, in one test binary.

mod embedded;
