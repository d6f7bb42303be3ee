//! TODO: role of vigil-ui.
