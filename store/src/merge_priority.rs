//! tantivy's merges run below the pipeline's CPU priority.
//!
//! Each index writer merges its segments on threads of its own, in the background. A merge of
//! the bigger segments keeps one core busy for seconds, and on a small machine that is half of
//! it: with the pipeline at half its top rate, the stages then fell behind for as long as the
//! merge ran, and an alert's latency climbed past a second (`benches/RESULTS.md`, session 42).
//! Run a little below the pipeline's priority, merges take the CPU the stages leave, so at a
//! steady rate they slow down rather than the alerts. Only a little below: under a flood that
//! fills both cores, Linux's weights should still give them a share close to what they took
//! before, so that segments do not pile up unmerged (reckoned from the weights, not measured).
//!
//! tantivy offers no hook on the threads it spawns, but on Linux a thread starts at its
//! creator's priority. So a writer is opened from a thread of lower priority
//! ([`below_priority`]), and what tantivy spawns as it opens inherits that priority:
//! - its merge pool, the point of it;
//! - its `segment_updater` thread, which also finishes each commit (saving the index's meta,
//!   applying deletes) while the committer waits, so a commit can wait a little longer when
//!   the cores are busy; the bench at a fixed rate still showed a lower p99 with it;
//! - its first indexing threads, until the first commit: tantivy spawns them again at every
//!   commit, from the committing thread, at the pipeline's priority. A partition rewritten
//!   for an older layout commits once, so its rewrite runs at the lower priority throughout,
//!   which suits a background chore.

use std::io;

/// How many steps of nice below the caller merges run. Linux weighs a thread at nice 5 at a
/// third of one at nice 0 (335 against 1024), so by those weights a merge that shares a core
/// with one or two busy stages still gets between a seventh and a quarter of it.
pub(crate) const MERGE_NICE_STEPS: i32 = 5;

/// Runs `work` on a thread of its own, `MERGE_NICE_STEPS` below the caller's priority (at most
/// nice 19), and returns what it returns. Where the priority cannot be read or lowered, `work`
/// runs all the same and a warning says so: merges at the pipeline's priority cost latency,
/// never correctness. The error is the thread's failure to start.
pub(crate) fn below_priority<T: Send>(work: impl FnOnce() -> T + Send) -> io::Result<T> {
    let target = match current_priority() {
        Ok(Some(nice)) => lowered(nice),
        Ok(None) => return Ok(work()),
        Err(error) => {
            tracing::warn!(%error, "could not read the priority to run an index's merges below");
            return Ok(work());
        }
    };
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

/// The nice value `MERGE_NICE_STEPS` below `nice`, at most 19, the lowest there is.
pub(crate) fn lowered(nice: i32) -> i32 {
    (nice + MERGE_NICE_STEPS).min(19)
}

/// The calling thread's nice value; `None` where a priority may be the whole process's
/// rather than the thread's, so it is left alone. On Linux a priority belongs to a thread, and
/// PRIO_PROCESS with 0 reads or sets the calling thread's alone.
#[cfg(target_os = "linux")]
pub(crate) fn current_priority() -> io::Result<Option<i32>> {
    Ok(Some(rustix::process::getpriority_process(None)?))
}

#[cfg(target_os = "linux")]
fn set_current_priority(nice: i32) -> io::Result<()> {
    Ok(rustix::process::setpriority_process(None, nice)?)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn current_priority() -> io::Result<Option<i32>> {
    Ok(None)
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
        let own = current_priority().unwrap().unwrap();
        let inside = below_priority(current_priority).unwrap().unwrap().unwrap();
        assert_eq!(inside, lowered(own));
        assert!(inside > own || own == 19, "{inside} against {own}");
        assert_eq!(current_priority().unwrap(), Some(own));
    }
}
