//! The store's integration tests, as one test binary: each module was its own binary, and
//! each linked tantivy and SQLite again. The fixtures stay in `tests/fixtures`.

mod arrival;
mod earlier_dictionaries;
mod live_tail;
mod off_the_bus;
mod pages;
mod partitions;
mod quarantine;
mod query;
mod store;
