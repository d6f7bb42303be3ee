//! tantivy's merges run below the pipeline's CPU priority.
//!
//! Each index writer merges its segments on threads of its own, in the background. A merge of
//! the bigger segments keeps one core busy for seconds, and on a small machine that is half of
//! it: with the pipeline at half its top rate, the stages then fell behind for as long as the
//! merge ran, and an alert's latency climbed past a second (`benches/RESULTS.md`, session 42).
//! Run a little below the pipeline's priority, merges take the CPU the stages leave, so at a
//! steady rate they slow down rather than the alerts. Only a little below: under a flood that
//! fills both cores, Linux's weights still give them a share close to what they took before,
//! so segments do not pile up unmerged.
//!
//! tantivy offers no hook on the threads it spawns, but on Linux a thread starts at its
//! creator's priority. So a writer is opened from a thread of lower priority
//! ([`below_priority`]): the merge pool it spawns then inherits that priority, and so does its
//! `segment_updater` thread, whose work is a few milliseconds a commit. The indexing threads
//! start again at every commit, spawned by the committing thread, so they run at the
//! pipeline's priority.

use std::io;

/// How many steps of nice below the caller merges run. Linux weighs a thread at nice 5 at a
/// third of one at nice 0 (335 against 1024), so a merge that contends with two busy stages
/// still gets about a seventh of a core, close to the tenth of the machine merges took during
/// a flood before.
pub(crate) const MERGE_NICE_STEPS: i32 = 5;

/// Runs `work` on a thread of its own, `MERGE_NICE_STEPS` below the caller's priority (at most
/// nice 19), and returns what it returns. If the priority cannot be lowered, `work` runs all
/// the same and only a warning says so: merges at the pipeline's priority cost latency, never
/// correctness.
pub(crate) fn below_priority<T: Send>(work: impl FnOnce() -> T + Send) -> io::Result<T> {
    let target = lowered(current_priority()?);
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("vigil-low-prio".into())
            .spawn_scoped(scope, move || {
                if let Err(error) = set_current_priority(target) {
                    tracing::warn!(%error, "could not lower the priority of an index's merges");
                }
                work()
            })?;
        Ok(thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

pub(crate) fn lowered(nice: i32) -> i32 {
    (nice + MERGE_NICE_STEPS).min(19)
}

// On Linux a priority belongs to a thread, and PRIO_PROCESS with 0 reads or sets the calling
// thread's alone. Elsewhere it may be the whole process's, so it is left alone.
#[cfg(target_os = "linux")]
pub(crate) fn current_priority() -> io::Result<i32> {
    Ok(rustix::process::getpriority_process(None)?)
}

#[cfg(target_os = "linux")]
fn set_current_priority(nice: i32) -> io::Result<()> {
    Ok(rustix::process::setpriority_process(None, nice)?)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn current_priority() -> io::Result<i32> {
    Ok(0)
}

#[cfg(not(target_os = "linux"))]
fn set_current_priority(_nice: i32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn work_runs_below_the_callers_priority_and_the_caller_keeps_its_own() {
        let own = current_priority().unwrap();
        let inside = below_priority(current_priority).unwrap().unwrap();
        assert_eq!(inside, lowered(own));
        assert!(inside > own || own == 19, "{inside} against {own}");
        assert_eq!(current_priority().unwrap(), own);
    }
}
