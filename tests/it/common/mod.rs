//! Runs the real `vigil` binary for end-to-end tests.

#![allow(dead_code)]

pub mod tansu;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::Value;

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Vigil {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub client: Client,
}

impl Vigil {
    /// Starts `vigil run` on a free port with our rules, and waits until it listens. It runs in
    /// the data directory's parent, so a `vigil.toml` there configures it.
    pub fn start(data_dir: &Path) -> Vigil {
        Vigil::start_with_env(data_dir, &[])
    }

    /// Like [`Vigil::start`], with extra `VIGIL_*` settings.
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Vigil {
        Vigil::start_with(data_dir, &[], env)
    }

    /// Like [`Vigil::start_with_env`], with extra arguments to `vigil run` (`--role`, say).
    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vigil {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--rules")
            .arg(&rules)
            .args(args)
            .current_dir(data_dir.parent().unwrap())
            .env("VIGIL_API_TOKEN", TOKEN)
            .env("VIGIL_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vigil starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .expect("vigil prints its address")
            .expect("stdout is readable");
        let base = first
            .strip_prefix("Vigil is listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        // Every reqwest client in this process needs a TLS provider chosen first.
        vigil_notify::install_tls_provider();
        Vigil {
            child,
            base,
            data_dir: data_dir.to_owned(),
            // No pooled connections: after an early 413 the server closes the connection, and a
            // pooled client could pick that dead connection for the next request.
            client: Client::builder()
                .timeout(Duration::from_secs(180))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn post_ndjson(&self, source: &str, body: impl Into<reqwest::blocking::Body>) -> Response {
        self.client
            .post(self.url(&format!("/api/v1/ingest/{source}")))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .unwrap()
    }

    pub fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().unwrap()
    }

    /// The total of events matching `query`.
    pub fn search_total(&self, query: &str) -> u64 {
        let response = self
            .client
            .get(self.url("/api/v1/search"))
            .query(&[("q", query), ("limit", "1")])
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json::<Value>().unwrap()["total"].as_u64().unwrap()
    }

    /// What `/metrics` shows now, in Prometheus's text format.
    pub fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// The sum of the samples of `name{...}` on `/metrics` whose labels include every one of
    /// `labels` (each written `key="value"`), 0 when there are none.
    pub fn labelled_metric(&self, name: &str, labels: &[&str]) -> f64 {
        let series = format!("{name}{{");
        self.metrics_text()
            .lines()
            .filter(|line| line.starts_with(&series))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of an unlabelled Prometheus counter or gauge on `/metrics`, 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics_text()
            .lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .filter_map(|value| value.trim().parse().ok())
            .next()
            .unwrap_or(0.0)
    }

    /// The process id, to send it signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the process to stop as a service manager does (SIGTERM) and gives how long it
    /// took to exit, or `None` if it was still running after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
        while started.elapsed() < timeout {
            if !self.is_running() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Stops the process the hard way: no shutdown hooks, no final commits.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client like a browser without a cookie jar: it sends the cookies a test gives it, and
/// leaves redirects (a sign-in's 303, a page's redirect to `/login`) for the test to see.
pub fn client_without_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Polls `check` until it gives a value or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
