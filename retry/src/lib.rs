//! Vigil's one backoff, for every loop that retries a failing step: a source calling a
//! throttled API, a stage whose bus or store is briefly away.
//!
//! The delays grow exponentially up to a cap, with "equal jitter": each wait is at least half
//! its step and at most all of it, so many callers failing together spread out without any of
//! them retrying at once. [`BackoffPolicy`] is the pure part (attempt number to delay);
//! [`Backoff`] counts the attempts of one step and waits, and shutdown interrupts the wait.
//! What to retry, how often and what to log stay with the caller.

use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

/// The steps grow no further after this many doublings, whatever the cap.
const MAX_DOUBLINGS: u32 = 16;

/// How delays grow: step `n` (from 1, the wait after the `n`-th failure) is `base · 2ⁿ`,
/// capped at `cap`, and the delay is between half the step and all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl BackoffPolicy {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        BackoffPolicy { base, cap }
    }

    /// The upper bound of the delay after the `attempt`-th failure.
    pub fn step(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.min(MAX_DOUBLINGS))
            .min(self.cap)
    }

    /// The delay after the `attempt`-th failure, jittered with `rng`: at least half the step,
    /// so a retry never comes at once.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let half = self.step(attempt) / 2;
        half + half.mul_f64(rng.random::<f64>())
    }
}

/// The attempts of one failing step, and the waits between them.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// How many failures were counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts one more failure and gives the delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures, &mut rand::rng())
    }

    /// Counts one more failure and waits before the next attempt; false, at once or as soon
    /// as it is signalled, when shutdown has begun instead, so the caller stops retrying.
    pub async fn wait(&mut self, shutdown: &watch::Receiver<bool>) -> bool {
        if *shutdown.borrow() {
            return false;
        }
        let delay = self.next_delay();
        sleep_or_stop(delay, shutdown).await
    }
}

/// Sleeps for `duration`; false when shutdown was signalled (or its sender is gone) before
/// or meanwhile, true when the time passed with no shutdown.
pub async fn sleep_or_stop(duration: Duration, shutdown: &watch::Receiver<bool>) -> bool {
    // A clone of our own, so a shared receiver works, marked as having seen the current value
    // so that only a change from now on ends the sleep early.
    let mut shutdown = shutdown.clone();
    if *shutdown.borrow_and_update() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => !*shutdown.borrow(),
        changed = shutdown.changed() => changed.is_ok() && !*shutdown.borrow(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const POLICY: BackoffPolicy =
        BackoffPolicy::new(Duration::from_millis(250), Duration::from_secs(30));

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut rng = rand::rng();
        for attempt in 1..20 {
            let delay = POLICY.delay(attempt, &mut rng);
            let step = POLICY
                .base
                .saturating_mul(1 << attempt.min(16))
                .min(POLICY.cap);
            assert!(delay >= step / 2 && delay <= step, "{attempt}: {delay:?}");
        }
        assert_eq!(POLICY.step(1), Duration::from_millis(500));
        assert_eq!(POLICY.step(6), Duration::from_secs(16));
        assert_eq!(POLICY.step(7), POLICY.cap);
        assert_eq!(POLICY.step(u32::MAX), POLICY.cap);
    }

    #[test]
    fn each_failure_moves_to_the_next_step() {
        let mut backoff = Backoff::new(POLICY);
        for attempt in 1..=8 {
            let delay = backoff.next_delay();
            assert_eq!(backoff.failures(), attempt);
            let step = POLICY.step(attempt);
            assert!(delay >= step / 2 && delay <= step, "{attempt}: {delay:?}");
        }
    }

    #[tokio::test]
    async fn a_wait_ends_after_its_delay_without_shutdown() {
        let (_stop, shutdown) = watch::channel(false);
        let quick = BackoffPolicy::new(Duration::from_millis(5), Duration::from_millis(20));
        let mut backoff = Backoff::new(quick);
        let started = Instant::now();
        assert!(backoff.wait(&shutdown).await);
        assert!(started.elapsed() >= Duration::from_millis(5));
        assert_eq!(backoff.failures(), 1);
    }

    #[tokio::test]
    async fn shutdown_interrupts_a_wait() {
        let (stop, shutdown) = watch::channel(false);
        let slow = BackoffPolicy::new(Duration::from_secs(60), Duration::from_secs(60));
        let started = Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stop.send(true);
            stop
        });
        assert!(!Backoff::new(slow).wait(&shutdown).await);
        assert!(started.elapsed() < Duration::from_secs(5));
        let stop = stopper.await.unwrap();
        // Once shutdown has begun, no wait starts at all.
        assert!(!Backoff::new(slow).wait(&shutdown).await);
        assert!(!sleep_or_stop(Duration::from_secs(60), &shutdown).await);
        drop(stop);
    }

    #[tokio::test]
    async fn a_dropped_sender_stops_the_wait() {
        let (stop, shutdown) = watch::channel(false);
        drop(stop);
        let started = Instant::now();
        assert!(!sleep_or_stop(Duration::from_secs(60), &shutdown).await);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
