//! What the benchmarks share: a seeded generator, so every run indexes the same events, and
//! the process's CPU time, which says what a core does when the work spreads over threads.
//! Each benchmark includes this module; not every one uses all of it.

#![allow(dead_code)]

pub mod records;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The checkout the benchmarks are built from.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// SigmaHQ's `rules/`: `VIGIL_SIGMA_CORPUS`, else `../shared/corpus/sigma/rules` beside the
/// checkout.
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("VIGIL_SIGMA_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/corpus/sigma/rules"))
}

/// splitmix64: deterministic runs without a dependency on `rand` in the root crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Index into a pool of `n`, skewed so the first entries are drawn far more often than the
    /// last, as a few service principals dominate real logs.
    pub fn skewed(&mut self, n: usize) -> usize {
        ((self.unit().powi(3) * n as f64) as usize).min(n - 1)
    }

    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// CPU seconds this process has used, all threads: tantivy indexes on its own threads, so
/// wall time alone would not say what a core does. `None` off Linux.
pub fn cpu_seconds() -> Option<f64> {
    cpu_seconds_in(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The CPU time (user and system, all threads) that process `pid` has used so far, in seconds:
/// `None` where `/proc` does not say, or once the process has been reaped.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    cpu_seconds_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Waits until `cpu` (CPU seconds used so far) grows by less than 50 ms over a `step`, for at
/// most `limit`: indexing merges, and detection drains, on threads a benchmark cannot join.
/// Says how long it waited, and whether the work fell idle (false after `limit`, or once `cpu`
/// cannot be read).
pub fn until_idle(
    cpu: impl Fn() -> Option<f64>,
    step: Duration,
    limit: Duration,
) -> (Duration, bool) {
    let start = Instant::now();
    let mut last = cpu();
    while start.elapsed() < limit {
        std::thread::sleep(step);
        let now = cpu();
        match last.zip(now) {
            Some((before, after)) if after - before < 0.05 => return (start.elapsed(), true),
            None => break,
            _ => last = now,
        }
    }
    (start.elapsed(), false)
}

fn cpu_seconds_in(stat: &str) -> Option<f64> {
    // The name, in parentheses, may hold spaces: the fields are counted after its end.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; the kernel
    // reports them in USER_HZ, 100 on every mainstream Linux.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
