//! The live tail against the real binary: a signed-in analyst's tail streams an event posted
//! after it opened (dated long ago, as a sender hiding from recent times would date it), and
//! an open tail does not keep `vigil run` from stopping.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use vigil_access::{AccessDb, Role, Secret};

use crate::common::Vigil;

#[test]
fn a_tail_streams_what_arrives_and_ends_when_vigil_stops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let session = {
        let db = AccessDb::open_in(&data).unwrap();
        db.add_user(
            "tail-analyst",
            Role::Analyst,
            &Secret::new("a long enough password"),
        )
        .unwrap();
        db.start_session("tail-analyst", None, chrono::Utc::now())
            .unwrap()
            .id
            .expose()
            .to_owned()
    };
    let mut vigil = Vigil::start(&data);
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let mut response = client
        .get(vigil.url("/search/tail?q=eventName%3ADeleteTrail"))
        .header("cookie", format!("vigil_session={session}"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The stream is read on a thread of its own, and handed over as it comes.
    let (chunks, read) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        loop {
            match response.read(&mut buffer) {
                Ok(0) | Err(_) => {
                    let _ = chunks.send(None);
                    return;
                }
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    if chunks.send(Some(text)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut text = String::new();
    let read_until = |marker: &str, text: &mut String| {
        while !text.contains(marker) {
            match read.recv_timeout(Duration::from_secs(30)) {
                Ok(Some(chunk)) => text.push_str(&chunk),
                Ok(None) => panic!("the stream ended before {marker}: {text}"),
                Err(_) => panic!("no {marker} within 30 s: {text}"),
            }
        }
    };
    read_until("event: ready", &mut text);

    let line = r#"{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/tail-e2e"},"eventTime":"2003-01-01T00:00:00Z","eventSource":"cloudtrail.amazonaws.com","eventName":"DeleteTrail","awsRegion":"us-east-1","eventID":"tail-e2e-1"}"#;
    let posted = vigil.post_ndjson("cloudtrail", format!("{line}\n"));
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    read_until("user/tail-e2e", &mut text);
    assert!(text.contains("2003-01-01 00:00:00"), "{text}");

    // Stopping ends the tail first, so the server's graceful shutdown is not held up by it.
    let took = vigil.terminate(Duration::from_secs(20));
    assert!(
        took.is_some(),
        "vigil did not stop within 20 s with a tail open"
    );
    eprintln!("vigil stopped {took:?} after SIGTERM with a live tail open");
    read_until("shutdown", &mut text);
}
