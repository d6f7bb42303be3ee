//! The triggers that reload the rules without a request: SIGHUP, and (with
//! `detect.watch_rules`) a change to the rule files, found by polling their names, sizes and
//! modification times. Polling a rule directory costs a few `stat` calls every couple of
//! seconds and needs no watcher per platform.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::LiveRules;

/// How often `detect.watch_rules` looks at the rule files.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Each file's path, size and modification time (none when it cannot be read).
type Fingerprint = Vec<(PathBuf, Option<(u64, SystemTime)>)>;

fn fingerprint(rules: &LiveRules) -> Fingerprint {
    rules
        .sources()
        .watched_files()
        .into_iter()
        .map(|path| {
            let seen = std::fs::metadata(&path).ok().map(|meta| {
                (
                    meta.len(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                )
            });
            (path, seen)
        })
        .collect()
}

async fn reload(rules: &Arc<LiveRules>, trigger: &'static str) {
    let rules = rules.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || rules.reload_files(trigger)).await {
        tracing::error!(%error, "reloading the rules failed");
    }
}

/// Reloads the rules when their files change, until `shutdown`. A change is taken in once
/// the files have stayed the same for one more look, so a file caught half-written by an
/// editor or a `git pull` is not loaded (and refused) first.
pub fn watch_files(rules: Arc<LiveRules>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let look = |rules: Arc<LiveRules>| async move {
            tokio::task::spawn_blocking(move || fingerprint(&rules))
                .await
                .unwrap_or_default()
        };
        let mut loaded = look(rules.clone()).await;
        if loaded.is_empty() {
            // Built-in rules live in the binary; there is nothing on disk to watch.
            tracing::warn!(
                "detect.watch_rules is on, but no rule or pipeline file is named on disk to watch"
            );
        } else {
            tracing::info!(files = loaded.len(), "watching the rule files for changes");
        }
        let mut pending: Option<Fingerprint> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            let now = look(rules.clone()).await;
            if now == loaded {
                pending = None;
                continue;
            }
            if pending.as_ref() == Some(&now) {
                reload(&rules, "watch").await;
                loaded = now;
                pending = None;
            } else {
                pending = Some(now);
            }
        }
    });
}

/// Reloads the rules on every SIGHUP until `shutdown`. The TLS certificate listens for
/// SIGHUP too: each listener gets every signal.
pub fn reload_on_hangup(rules: Arc<LiveRules>, mut shutdown: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; rules reload only on request");
                return;
            }
        };
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    received = hangups.recv() => received,
                    _ = shutdown.wait_for(|stop| *stop) => None,
                };
                match received {
                    Some(()) => reload(&rules, "sighup").await,
                    None => break,
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (&rules, &mut shutdown);
}
