//! A tansu broker (a Kafka-protocol broker from crates.io) for tests and benchmarks.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A tansu broker, stopped when dropped.
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    storage: String,
    dir: PathBuf,
}

impl Tansu {
    pub fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os("TANSU") {
            return path.into();
        }
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
        if let Some(path) = cargo_home.map(|home| home.join("bin/tansu")) {
            if path.exists() {
                return path;
            }
        }
        panic!("tansu is not installed; ./scripts/test installs it (cargo install --locked tansu --version 0.6.0 --features dynostore,libsql)");
    }

    /// Starts a broker with `storage` (`memory://tansu/`, or `sqlite://FILE` relative to
    /// `dir`, which keeps topics and messages across a restart).
    pub fn start(dir: &Path, storage: &str) -> Tansu {
        let mut tansu = Tansu {
            child: None,
            port: free_port(),
            storage: storage.to_owned(),
            dir: dir.to_owned(),
        };
        tansu.resume();
        tansu
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id while it runs: the bus bench counts its CPU apart from Vigil's.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "tansu is already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let address = self.brokers();
        // tansu binds without SO_REUSEADDR, so right after a stop it may fail to bind while
        // the old connections linger in TIME_WAIT; it exits, and we try again.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("tansu.log"))
                .unwrap();
            let mut child = Command::new(Tansu::binary())
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", &self.storage])
                .current_dir(&self.dir)
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("tansu starts");
            let listening = wait_until(Duration::from_secs(10), || {
                TcpStream::connect(&address).is_ok() || matches!(child.try_wait(), Ok(Some(_)))
            }) && matches!(child.try_wait(), Ok(None));
            if listening {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                std::time::Instant::now() < deadline,
                "tansu did not start; see {}",
                self.dir.join("tansu.log").display()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `done` for up to `timeout`; whether it became true.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
