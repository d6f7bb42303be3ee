//! TODO: role of vigil-bus.
