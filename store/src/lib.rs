//! TODO: role of vigil-store.
