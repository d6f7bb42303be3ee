//! The memory allocator the `vigil` binary and its benchmarks run on: mimalloc, tuned for
//! the store's indexing. Linking this crate installs it as the global allocator; call
//! [`configure`] first thing in `main`.
//!
//! Why mimalloc: indexing builds each document on the calling thread and tantivy frees it on
//! its own threads. With glibc's malloc those frees and the allocator's bookkeeping took a
//! tenth of the store's indexing CPU at a million events (benches/store_throughput.rs, builds
//! run side by side).

#![allow(unsafe_code, reason = "mimalloc's options are set through its C API")]

use std::os::raw::{c_int, c_long};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h`. The sys crate names only the options
/// mimalloc 2 shares, so the number is taken from the header; a test below checks it against
/// the option's documented default.
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// How long memory mimalloc has freed stays mapped before it is returned to the system; arenas
/// wait ten times as long. A segment flush frees the writer's whole arena at once (hundreds of
/// megabytes), and the next segment fills again over the following seconds. At mimalloc's
/// default of one second most of that memory went back to the system and was faulted in and
/// zeroed by the kernel again. With a minute's delay the store benchmark used 1.03x less CPU
/// per event (two side-by-side runs), and 1.04x to 1.07x with freed memory never returned;
/// a minute keeps most of that and still lets the process shrink back after a burst.
pub const PURGE_DELAY_MS: c_long = 60_000;

/// Applies Vigil's allocator options. mimalloc reads its options from the environment as the
/// process loads, so they are set here instead. Call it first in `main`, before other
/// threads start: mimalloc stores and reads options as plain values.
pub fn configure() {
    // SAFETY: `mi_option_set` checks the option number against its table and stores one value
    // there. Called before other threads start, nothing reads the value as it changes.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay() -> c_long {
        // SAFETY: reads one value of mimalloc's option table; this test's thread is the only
        // one that sets it.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // mimalloc 3 documents a default purge delay of 1000 ms; another option number would
        // read another default (or MIMALLOC_PURGE_DELAY, if the environment sets it).
        let default = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        assert_eq!(purge_delay(), default);
        configure();
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }
}
