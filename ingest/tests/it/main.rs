//! ingest's integration tests, as one test binary: the HTTP NDJSON endpoint, the push
//! sources (the Kubernetes audit webhook and Firehose) and the file tailer, each against a
//! real embedded bus.

mod bus_message;
mod http_ingest;
mod push_sources;
mod tail;
