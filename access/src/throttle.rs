//! Sign-in and bearer-token failures, counted per account and per client address in memory.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ThrottleConfig;

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Backing off after recent failures: try again after this long.
    Wait(Duration),
    /// Locked out for this long, right password or not.
    LockedOut(Duration),
}

/// The failure counters. Cheap to share (`Arc`); one mutex, held only to count.
pub struct Throttle {
    config: ThrottleConfig,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle { config }
    }

    /// Whether an attempt for `account` (none for a bearer token) from `address` may be made
    /// at `now`.
    pub fn check(&self, account: Option<&str>, address: Option<IpAddr>, now: Instant) -> Verdict {
        let _ = (account, address, now, &self.config);
        todo!("H1")
    }

    pub fn record_failure(&self, account: Option<&str>, address: Option<IpAddr>, now: Instant) {
        let _ = (account, address, now);
        todo!("H1")
    }

    /// A success clears the account's count (not the address's: one good password from an
    /// address does not excuse the guesses it made at other accounts).
    pub fn record_success(&self, account: Option<&str>) {
        let _ = account;
        todo!("H1")
    }
}
