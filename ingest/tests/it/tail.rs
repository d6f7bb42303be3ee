//! The file tailer against real files and a real embedded bus: rotation in both modes, partial
//! lines, restarts from the checkpoint, replacement under the same name, over-long lines.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vigil_bus::{Bus, EmbeddedBus, EmbeddedBusOptions, Subscription, Topics};
use vigil_event::{Event, Quarantined};
use vigil_ingest::tail::{FileTailer, StartAt, TailConfig};
use vigil_ingest::{IngestLimits, Ingestor, SourceCatalog, SourceSpec};

struct Harness {
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    ingestor: Arc<Ingestor>,
    events: Box<dyn Subscription>,
    quarantine: Box<dyn Subscription>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let bus = Arc::new(
            EmbeddedBus::open(dir.path().join("bus"), EmbeddedBusOptions::default()).unwrap(),
        );
        let ingestor = Arc::new(Ingestor::new(
            bus.clone(),
            Topics::default(),
            SourceCatalog::builtin(),
            IngestLimits {
                max_line_bytes: 64,
                ..IngestLimits::default()
            },
        ));
        let events = runtime
            .block_on(bus.subscribe("vigil.events", "test"))
            .unwrap();
        let quarantine = runtime
            .block_on(bus.subscribe("vigil.quarantine", "test"))
            .unwrap();
        fs::create_dir(dir.path().join("logs")).unwrap();
        Harness {
            dir,
            runtime,
            ingestor,
            events,
            quarantine,
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    fn tailer(&self, pattern: &str, start_at: StartAt) -> FileTailer {
        let mut spec = SourceSpec::generic();
        spec.format = vigil_ingest::RecordFormat::Text;
        FileTailer::new(
            TailConfig {
                name: "app".into(),
                spec,
                paths: vec![self.log(pattern).display().to_string()],
                start_at,
                poll_interval: Duration::from_millis(10),
                checkpoint_path: self.dir.path().join("checkpoints/app.json"),
                read_chunk_bytes: 1024,
            },
            self.ingestor.clone(),
        )
        .unwrap()
    }

    /// Polls until nothing new is delivered.
    fn drain(&self, tailer: &mut FileTailer) {
        for _ in 0..3 {
            while tailer.poll_once(self.runtime.handle()).unwrap() {}
        }
    }

    fn delivered(&mut self) -> Vec<String> {
        let batch = self
            .runtime
            .block_on(self.events.next_batch(10_000, Duration::from_millis(50)))
            .unwrap();
        batch
            .iter()
            .map(|d| {
                let event = Event::from_bus(&d.payload).unwrap();
                event.record.as_str().to_owned()
            })
            .collect()
    }

    fn quarantined(&mut self) -> Vec<Quarantined> {
        let batch = self
            .runtime
            .block_on(self.quarantine.next_batch(100, Duration::from_millis(50)))
            .unwrap();
        batch
            .iter()
            .map(|d| serde_json::from_slice(&d.payload).unwrap())
            .collect()
    }
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[test]
fn partial_lines_wait_and_restarts_resume_from_the_checkpoint() {
    let mut h = Harness::new();
    let log = h.log("app.log");
    append(&log, "first line\nsecond line\nthird, still being wri");
    let mut tailer = h.tailer("app.log", StartAt::Beginning);
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["first line", "second line"]);

    append(&log, "tten\n");
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["third, still being written"]);

    // A new tailer over the same checkpoint: nothing again, then only what is new.
    drop(tailer);
    append(&log, "fourth line\n");
    let mut restarted = h.tailer("app.log", StartAt::Beginning);
    h.drain(&mut restarted);
    assert_eq!(h.delivered(), ["fourth line"]);
}

#[test]
fn rename_and_create_rotation_reads_the_old_file_to_its_end() {
    let mut h = Harness::new();
    let log = h.log("app.log");
    append(&log, "old 1\nold 2\n");
    let mut tailer = h.tailer("app.log", StartAt::Beginning);
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["old 1", "old 2"]);

    // Written just before the rotation, read after it: only the open handle still sees it.
    append(&log, "old 3\n");
    fs::rename(&log, h.log("app.log.1")).unwrap();
    append(&log, "new 1\n");
    h.drain(&mut tailer);
    let mut lines = h.delivered();
    lines.sort();
    assert_eq!(lines, ["new 1", "old 3"]);
}

#[test]
fn copytruncate_rotation_loses_nothing_the_copy_still_holds() {
    let mut h = Harness::new();
    let log = h.log("app.log");
    append(&log, "line 1\nline 2\n");
    let mut tailer = h.tailer("app.log*", StartAt::Beginning);
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["line 1", "line 2"]);

    append(&log, "line 3\n");
    fs::copy(&log, h.log("app.log.1")).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, "after truncation\n");
    h.drain(&mut tailer);
    let mut lines = h.delivered();
    lines.sort();
    assert_eq!(lines, ["after truncation", "line 3"]);

    // Nothing is read twice on later polls.
    append(&log, "later\n");
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["later"]);
}

#[test]
fn copytruncate_without_a_glob_for_the_copy_reads_no_stale_offsets() {
    let mut h = Harness::new();
    let log = h.log("app.log");
    append(&log, "line 1\nline 2\n");
    let mut tailer = h.tailer("app.log", StartAt::Beginning);
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["line 1", "line 2"]);

    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, "a longer line after truncation\n");
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["a longer line after truncation"]);
}

#[test]
fn a_file_replaced_under_the_same_name_is_read_from_its_start() {
    let mut h = Harness::new();
    let log = h.log("app.log");
    append(&log, "version one, a long first line\n");
    let mut tailer = h.tailer("app.log", StartAt::Beginning);
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["version one, a long first line"]);

    fs::remove_file(&log).unwrap();
    append(&log, "v2\n");
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["v2"]);
}

#[test]
fn start_at_end_skips_what_was_there_but_not_new_files() {
    let mut h = Harness::new();
    append(&h.log("a.log"), "history\n");
    let mut tailer = h.tailer("*.log", StartAt::End);
    h.drain(&mut tailer);
    assert!(h.delivered().is_empty());

    append(&h.log("a.log"), "fresh\n");
    append(&h.log("b.log"), "new file\n");
    h.drain(&mut tailer);
    let mut lines = h.delivered();
    lines.sort();
    assert_eq!(lines, ["fresh", "new file"]);
}

#[test]
fn over_long_lines_are_quarantined_and_skipped() {
    let mut h = Harness::new();
    let log = h.log("app.log");
    let long = "x".repeat(3000);
    append(
        &log,
        &format!("before\n{long}\nafter\nmid-size {}\n", "y".repeat(100)),
    );
    let mut tailer = h.tailer("app.log", StartAt::Beginning);
    h.drain(&mut tailer);
    assert_eq!(h.delivered(), ["before", "after"]);
    let quarantined = h.quarantined();
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    assert!(
        quarantined[0].reason.contains("longer than 64 bytes"),
        "{}",
        quarantined[0].reason
    );
    assert_eq!(quarantined[0].line, Some(7));
    assert!(
        quarantined[1].reason.contains("the limit is 64"),
        "{}",
        quarantined[1].reason
    );
    assert!(quarantined[1].raw.starts_with(b"mid-size "));
}
