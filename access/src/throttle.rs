//! Sign-in and bearer-token failures, counted per account and per client address in memory.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ThrottleConfig;

/// Whether an attempt may go ahead. Variants are ordered from best to worst, so the worse
/// of two verdicts is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Allowed,
    /// Backing off after recent failures: try again after this long.
    Wait(Duration),
    /// Locked out for this long, right password or not.
    LockedOut(Duration),
}

/// What failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// Lower-cased, as user names compare without case.
    Account(Box<str>),
    /// IPv4 addresses whole; IPv6 addresses by their /64, the least a single host is
    /// routinely given, so that one sender cannot dodge the count by hopping addresses.
    Address(IpAddr),
}

/// The longest account name kept as a key; longer names are not valid user names anyway,
/// and an attacker should not choose how much memory each key takes.
const MAX_ACCOUNT_KEY_BYTES: usize = 128;

impl Key {
    fn account(name: &str) -> Key {
        let mut end = name.len().min(MAX_ACCOUNT_KEY_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        Key::Account(name[..end].to_ascii_lowercase().into_boxed_str())
    }

    fn address(address: IpAddr) -> Key {
        let address = match address {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(prefix))
                }
            },
        };
        Key::Address(address)
    }
}

/// Failures counted against one key.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Failures since the count was last reset.
    count: u32,
    last: Instant,
}

/// The failure counters. Cheap to share (`Arc`); one mutex, held only to count.
pub struct Throttle {
    config: ThrottleConfig,
    entries: Mutex<HashMap<Key, Failures>>,
    /// When a refusal from each address (IPv6 by /64) was last written to the audit log.
    refusals_recorded: Mutex<HashMap<Option<Key>, Instant>>,
}

/// Addresses remembered for [`Throttle::record_refusal`]; past it the stale are forgotten.
const MAX_REFUSING_ADDRESSES: usize = 10_000;

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            entries: Mutex::new(HashMap::new()),
            refusals_recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a refusal from `address` at `now` should be written to the audit log: the
    /// first in each `interval` from the address, counted as failures are (IPv6 by /64), so
    /// a sender hopping through its addresses gets one entry, not one per address. Refused
    /// attempts cost their sender nothing, so every one is counted in metrics, but writing
    /// each to disk would let a flood during a lockout fill it.
    pub fn record_refusal(
        &self,
        address: Option<IpAddr>,
        interval: Duration,
        now: Instant,
    ) -> bool {
        let key = address.map(Key::address);
        let mut recorded = self
            .refusals_recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recorded
            .get(&key)
            .is_some_and(|last| now.saturating_duration_since(*last) < interval)
        {
            return false;
        }
        if recorded.len() >= MAX_REFUSING_ADDRESSES {
            recorded.retain(|_, last| now.saturating_duration_since(*last) < interval);
            if recorded.len() >= MAX_REFUSING_ADDRESSES {
                // Still full of live entries: a sender with that many networks gets its
                // entries written rather than memory grown without bound.
                recorded.clear();
            }
        }
        recorded.insert(key, now);
        true
    }

    /// Whether an attempt for `account` (none for a bearer token) from `address` may be made
    /// at `now`. The worse of the account's and the address's verdicts wins.
    pub fn check(&self, account: Option<&str>, address: Option<IpAddr>, now: Instant) -> Verdict {
        let entries = self.entries();
        let mut verdict = Verdict::Allowed;
        for (key, lockout_at) in self.keys(account, address) {
            if let Some(failures) = entries.get(&key) {
                verdict = verdict.max(self.verdict(failures, lockout_at, now));
            }
        }
        verdict
    }

    /// Counts a failed attempt. Callers should not record an attempt that `check` refused:
    /// it was never tried. One recorded during a lockout is counted but does not extend it,
    /// so a flood of guesses cannot keep an account locked forever.
    pub fn record_failure(&self, account: Option<&str>, address: Option<IpAddr>, now: Instant) {
        let mut entries = self.entries();
        for (key, lockout_at) in self.keys(account, address) {
            if let Some(failures) = entries.get_mut(&key) {
                let since = now.saturating_duration_since(failures.last);
                let locked = failures.count >= lockout_at;
                if since >= self.window() || (locked && since >= self.lockout()) {
                    *failures = Failures {
                        count: 1,
                        last: now,
                    };
                } else if locked {
                    failures.count = failures.count.saturating_add(1);
                } else {
                    failures.count += 1;
                    failures.last = now;
                }
                continue;
            }
            if entries.len() >= self.config.max_tracked.max(1) {
                self.make_room(&mut entries, now);
            }
            entries.insert(
                key,
                Failures {
                    count: 1,
                    last: now,
                },
            );
        }
    }

    /// A success clears the account's count (not the address's: one good password from an
    /// address does not excuse the guesses it made at other accounts). It does not end a
    /// lockout, which holds "right password or not".
    pub fn record_success(&self, account: Option<&str>) {
        let Some(account) = account else {
            return;
        };
        let key = Key::account(account);
        let mut entries = self.entries();
        if let Some(failures) = entries.get(&key) {
            let locked = failures.count >= self.config.lockout_failures
                && Instant::now().saturating_duration_since(failures.last) < self.lockout();
            if !locked {
                entries.remove(&key);
            }
        }
    }

    /// How many accounts and addresses are tracked now.
    pub fn tracked(&self) -> usize {
        self.entries().len()
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Key, Failures>> {
        // Counting cannot leave the map inconsistent, so a panic elsewhere need not stop it.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The keys an attempt counts against, each with its lockout threshold.
    fn keys(
        &self,
        account: Option<&str>,
        address: Option<IpAddr>,
    ) -> impl Iterator<Item = (Key, u32)> {
        let account = account.map(|name| (Key::account(name), self.config.lockout_failures));
        let address = address.map(|ip| (Key::address(ip), self.config.address_lockout_failures));
        account.into_iter().chain(address)
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.config.window_seconds)
    }

    fn lockout(&self) -> Duration {
        Duration::from_secs(self.config.lockout_seconds)
    }

    fn verdict(&self, failures: &Failures, lockout_at: u32, now: Instant) -> Verdict {
        let since = now.saturating_duration_since(failures.last);
        if since >= self.window() {
            return Verdict::Allowed;
        }
        if failures.count >= lockout_at {
            return match self.lockout().checked_sub(since) {
                Some(left) if !left.is_zero() => Verdict::LockedOut(left),
                _ => Verdict::Allowed,
            };
        }
        if failures.count > self.config.free_failures {
            let doublings = failures.count - self.config.free_failures - 1;
            let delay = Duration::from_millis(self.config.backoff_base_ms)
                .saturating_mul(2u32.saturating_pow(doublings.min(31)))
                .min(self.lockout());
            if let Some(left) = delay.checked_sub(since) {
                if !left.is_zero() {
                    return Verdict::Wait(left);
                }
            }
        }
        Verdict::Allowed
    }

    /// Frees room for a new key: forgets expired entries, and if that is not enough, the
    /// stalest eighth, so that the scan's cost is shared by the insertions it makes room for.
    fn make_room(&self, entries: &mut HashMap<Key, Failures>, now: Instant) {
        let window = self.window();
        entries.retain(|_, failures| now.saturating_duration_since(failures.last) < window);
        let cap = self.config.max_tracked.max(1);
        if entries.len() < cap {
            return;
        }
        let evict = (cap / 8).max(1);
        let mut ages: Vec<Instant> = entries.values().map(|failures| failures.last).collect();
        let (_, cutoff, _) = ages.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        let mut evicted = 0;
        entries.retain(|_, failures| {
            if evicted < evict && failures.last <= cutoff {
                evicted += 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            free_failures: 3,
            backoff_base_ms: 1_000,
            lockout_failures: 6,
            address_lockout_failures: 10,
            lockout_seconds: 60,
            window_seconds: 600,
            max_tracked: 16,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const ALICE: Option<&str> = Some("alice");

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn free_failures_then_a_backoff_that_doubles() {
        let throttle = Throttle::new(config());
        let t0 = Instant::now();
        for _ in 0..3 {
            throttle.record_failure(ALICE, None, t0);
            assert_eq!(throttle.check(ALICE, None, t0), Verdict::Allowed);
        }
        throttle.record_failure(ALICE, None, t0);
        assert_eq!(throttle.check(ALICE, None, t0), Verdict::Wait(secs(1)));
        assert_eq!(throttle.check(ALICE, None, t0 + secs(1)), Verdict::Allowed);
        throttle.record_failure(ALICE, None, t0 + secs(1));
        assert_eq!(
            throttle.check(ALICE, None, t0 + secs(1)),
            Verdict::Wait(secs(2))
        );
        assert_eq!(
            throttle.check(ALICE, None, t0 + secs(2)),
            Verdict::Wait(secs(1)),
            "the wait counts from the last failure"
        );
        // Other accounts, and the names' case, are as expected.
        assert_eq!(throttle.check(Some("bob"), None, t0), Verdict::Allowed);
        assert_eq!(
            throttle.check(Some("ALICE"), None, t0 + secs(1)),
            Verdict::Wait(secs(2))
        );
    }

    #[test]
    fn the_backoff_doubles_up_to_the_lockout() {
        let throttle = Throttle::new(ThrottleConfig {
            lockout_failures: 12,
            ..config()
        });
        let t0 = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..11 {
            throttle.record_failure(ALICE, None, t0);
            waits.push(throttle.check(ALICE, None, t0));
        }
        let ms = Duration::from_millis;
        assert_eq!(
            waits[3..],
            [1, 2, 4, 8, 16, 32, 60, 60].map(|s| Verdict::Wait(ms(s * 1000)))
        );
    }

    #[test]
    fn a_huge_backoff_is_capped_at_the_lockout() {
        let throttle = Throttle::new(ThrottleConfig {
            backoff_base_ms: 20_000,
            lockout_failures: 9,
            ..config()
        });
        let t0 = Instant::now();
        for _ in 0..8 {
            throttle.record_failure(ALICE, None, t0);
        }
        // 20 s * 2^4 would be 320 s; the lockout is 60 s.
        assert_eq!(throttle.check(ALICE, None, t0), Verdict::Wait(secs(60)));
    }

    #[test]
    fn a_lockout_refuses_even_the_right_password_until_it_passes() {
        let throttle = Throttle::new(config());
        let t0 = Instant::now();
        for _ in 0..6 {
            throttle.record_failure(ALICE, None, t0);
        }
        assert_eq!(
            throttle.check(ALICE, None, t0),
            Verdict::LockedOut(secs(60))
        );
        // A success reported anyway does not lift it.
        throttle.record_success(ALICE);
        assert_eq!(
            throttle.check(ALICE, None, t0 + secs(59)),
            Verdict::LockedOut(secs(1))
        );
        // Failures during it neither extend it...
        throttle.record_failure(ALICE, None, t0 + secs(30));
        assert_eq!(
            throttle.check(ALICE, None, t0 + secs(59)),
            Verdict::LockedOut(secs(1))
        );
        // ...nor outlive it: once it has passed, the count starts again.
        assert_eq!(throttle.check(ALICE, None, t0 + secs(60)), Verdict::Allowed);
        throttle.record_failure(ALICE, None, t0 + secs(61));
        assert_eq!(throttle.check(ALICE, None, t0 + secs(61)), Verdict::Allowed);
        // And a new run of failures locks it out again.
        for _ in 0..5 {
            throttle.record_failure(ALICE, None, t0 + secs(62));
        }
        assert_eq!(
            throttle.check(ALICE, None, t0 + secs(62)),
            Verdict::LockedOut(secs(60))
        );
    }

    #[test]
    fn a_success_clears_the_account_but_not_the_address() {
        let throttle = Throttle::new(config());
        let t0 = Instant::now();
        let from = ip("192.0.2.7");
        for _ in 0..5 {
            throttle.record_failure(ALICE, from, t0);
        }
        assert_eq!(throttle.check(ALICE, None, t0), Verdict::Wait(secs(2)));
        throttle.record_success(ALICE);
        assert_eq!(throttle.check(ALICE, None, t0), Verdict::Allowed);
        assert_eq!(throttle.check(None, from, t0), Verdict::Wait(secs(2)));
    }

    #[test]
    fn an_address_has_its_own_higher_bar_across_accounts() {
        let throttle = Throttle::new(config());
        let t0 = Instant::now();
        let from = ip("192.0.2.7");
        // Ten names, one guess each: no account is held back, the address is locked out.
        for i in 0..10 {
            let name = format!("user{i}");
            assert_ne!(
                throttle.check(Some(&name), from, t0),
                Verdict::LockedOut(secs(60))
            );
            throttle.record_failure(Some(&name), from, t0);
            assert_eq!(throttle.check(Some(&name), None, t0), Verdict::Allowed);
        }
        assert_eq!(
            throttle.check(Some("anyone"), from, t0),
            Verdict::LockedOut(secs(60))
        );
        assert_eq!(throttle.check(None, from, t0), Verdict::LockedOut(secs(60)));
        assert_eq!(
            throttle.check(Some("anyone"), ip("192.0.2.8"), t0),
            Verdict::Allowed
        );
        // The worse verdict wins: the account backing off, the address not yet.
        let other = ip("198.51.100.1");
        for _ in 0..4 {
            throttle.record_failure(Some("bob"), other, t0);
        }
        let quiet = ip("203.0.113.9");
        throttle.record_failure(None, quiet, t0);
        assert_eq!(throttle.check(None, quiet, t0), Verdict::Allowed);
        assert_eq!(
            throttle.check(Some("bob"), quiet, t0),
            Verdict::Wait(secs(1))
        );
        assert_eq!(
            throttle.check(Some("carol"), from, t0),
            Verdict::LockedOut(secs(60))
        );
    }

    #[test]
    fn ipv6_senders_are_counted_by_their_64() {
        let throttle = Throttle::new(config());
        let t0 = Instant::now();
        for i in 0..10 {
            throttle.record_failure(None, ip(&format!("2001:db8:1:2::{i:x}")), t0);
        }
        assert_eq!(
            throttle.check(None, ip("2001:db8:1:2:ffff::1"), t0),
            Verdict::LockedOut(secs(60))
        );
        assert_eq!(
            throttle.check(None, ip("2001:db8:1:3::1"), t0),
            Verdict::Allowed
        );
        for _ in 0..10 {
            throttle.record_failure(None, ip("::ffff:192.0.2.1"), t0);
        }
        assert_eq!(
            throttle.check(None, ip("192.0.2.1"), t0),
            Verdict::LockedOut(secs(60))
        );
    }

    #[test]
    fn old_failures_are_forgotten() {
        let throttle = Throttle::new(config());
        let t0 = Instant::now();
        for _ in 0..5 {
            throttle.record_failure(ALICE, None, t0);
        }
        let later = t0 + secs(600);
        assert_eq!(throttle.check(ALICE, None, later), Verdict::Allowed);
        throttle.record_failure(ALICE, None, later);
        assert_eq!(
            throttle.check(ALICE, None, later),
            Verdict::Allowed,
            "counting restarted"
        );
    }

    #[test]
    fn memory_is_bounded_and_the_stalest_go_first() {
        let throttle = Throttle::new(config());
        let t0 = Instant::now();
        for _ in 0..6 {
            throttle.record_failure(ALICE, None, t0 + secs(500));
        }
        // An attacker cycling through made-up names, each failure later than the last.
        for i in 0..1_000u64 {
            throttle.record_failure(
                Some(&format!("made-up-{i}")),
                None,
                t0 + Duration::from_millis(i),
            );
            assert!(throttle.tracked() <= 16);
        }
        // Alice's lockout is newer than every made-up name, so it is kept.
        assert_eq!(
            throttle.check(ALICE, None, t0 + secs(501)),
            Verdict::LockedOut(secs(59))
        );
        assert!(throttle.tracked() <= 16);
        // Entries past the window are dropped before anything live.
        let much_later = t0 + secs(2_000);
        for i in 0..16 {
            throttle.record_failure(Some(&format!("late-{i}")), None, much_later);
        }
        assert_eq!(throttle.tracked(), 16);
        // An attacker-chosen name is kept only in part: the key's size is bounded.
        let long_name = "x".repeat(10_000);
        for _ in 0..4 {
            throttle.record_failure(Some(&long_name), None, much_later);
        }
        let prefix = &long_name[..MAX_ACCOUNT_KEY_BYTES];
        assert_eq!(
            throttle.check(Some(prefix), None, much_later),
            Verdict::Wait(secs(1))
        );
    }

    #[test]
    fn nothing_to_count_is_allowed() {
        let throttle = Throttle::new(config());
        let t0 = Instant::now();
        throttle.record_failure(None, None, t0);
        assert_eq!(throttle.check(None, None, t0), Verdict::Allowed);
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn refusals_are_recorded_once_an_interval_per_network() {
        let throttle = Throttle::new(ThrottleConfig::default());
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let host = |n: u16| -> Option<IpAddr> {
            Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, n)))
        };
        assert!(throttle.record_refusal(host(1), second, start));
        // Another address in the same /64 is the same sender.
        assert!(!throttle.record_refusal(host(2), second, start));
        assert!(!throttle.record_refusal(host(1), second, start + second / 2));
        let elsewhere = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 8, 0, 0, 0, 1)));
        assert!(throttle.record_refusal(elsewhere, second, start));
        assert!(throttle.record_refusal(host(3), second, start + second));
    }
}
