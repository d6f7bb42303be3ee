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

/// `mi_option_allow_thp` in mimalloc 3's `mimalloc.h`, checked like the purge delay's.
const MI_OPTION_ALLOW_THP: c_int = 43;

/// Applies Vigil's allocator options. mimalloc reads its options from the environment as the
/// process loads, so they are set here instead. Call it first in `main`, before other
/// threads start: mimalloc stores and reads options as plain values.
pub fn configure() {
    // SAFETY: `mi_option_set` checks the option number against its table and stores one value
    // there. Called before other threads start, nothing reads the value as it changes.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    // No transparent huge pages: the kernel zeroes each 2 MiB page whole on first touch, and on
    // these virtual machines that zeroing was 46% of the time `vigil detect` took to load
    // SigmaHQ's rules (`perf record`), varying from run to run with how fresh the host's memory
    // was. Without them: 66 MB resident against 101, 0.12 to 0.24 s of system time over 300k
    // CloudTrail records against 0.24 to 0.68, and the embedded pipeline indexed 24,100 and
    // 27,200 events/s against 21,800 and 21,000 (bus_throughput, runs alternated). mimalloc
    // asks for huge pages only while the option allows it; the process-wide switch also covers
    // kernels that hand them out unasked (`always`).
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0) };
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument and sets a flag of this process;
    // it reads and writes no memory of ours. Failure (an old kernel) leaves huge pages on.
    unsafe {
        // The kernel reads each argument as an unsigned long.
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(number: c_int) -> c_long {
        // SAFETY: reads one value of mimalloc's option table; this test's thread is the only
        // one that sets it.
        unsafe { libmimalloc_sys::mi_option_get(number) }
    }

    /// mimalloc's default for the option, or the environment's (`MIMALLOC_<NAME>`).
    fn default(name: &str, documented: c_long) -> c_long {
        std::env::var(format!("MIMALLOC_{name}"))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(documented)
    }

    /// One test, as `configure` sets every option at once.
    #[test]
    fn the_options_set_are_the_purge_delay_and_huge_pages() {
        // mimalloc 3 documents a default purge delay of 1000 ms and huge pages allowed (1);
        // another option number would read another default.
        assert_eq!(option(MI_OPTION_PURGE_DELAY), default("PURGE_DELAY", 1000));
        assert_eq!(option(MI_OPTION_ALLOW_THP), default("ALLOW_THP", 1));
        configure();
        assert_eq!(option(MI_OPTION_PURGE_DELAY), PURGE_DELAY_MS);
        assert_eq!(option(MI_OPTION_ALLOW_THP), 0);
        #[cfg(target_os = "linux")]
        {
            // SAFETY: PR_GET_THP_DISABLE reads this process's flag and takes no pointer.
            let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
            assert_eq!(disabled, 1);
        }
    }
}
