//! vigil-detect's integration tests, as one test binary (one link instead of one per file):
//! each module is what was once a file of its own under `tests/`.

mod common;
mod conformance_correlations;
mod conformance_filters;
mod conformance_modifiers;
mod corpus_meta;
mod correlation_pressure;
mod fuzz_smoke;
mod key_equivalence;
mod pipelines;
mod prefilter_equivalence;
mod rules;
mod sigma_corpus;
