//! A tansu broker (a Kafka-protocol broker from crates.io) for tests and benchmarks.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

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

    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "tansu is already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let child = Command::new(Tansu::binary())
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
        self.child = Some(child);
        let address = self.brokers();
        wait_for("tansu to listen", Duration::from_secs(30), || {
            TcpStream::connect(&address).ok()
        });
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
