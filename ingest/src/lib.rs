//! TODO: role of vigil-ingest.
