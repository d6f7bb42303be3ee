//! TODO: role of vigil-detect.
