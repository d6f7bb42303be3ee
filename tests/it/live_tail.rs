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

/// A CloudTrail line of `eventName` whose user ARN is `arn`.
fn trail_line(n: u32, event_name: &str, arn: &str) -> String {
    let record = serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": arn},
        "eventTime": "2003-01-01T00:00:00Z",
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "eventID": format!("tail-browser-{n}"),
    });
    format!("{record}\n")
}

#[test]
fn the_live_tail_streams_into_the_search_page_pauses_and_keeps_text_text() {
    use crate::browser::Browser;
    const PASSWORD: &str = "a long enough password";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    AccessDb::open_in(&data)
        .unwrap()
        .add_user("tail-watcher", Role::Analyst, &Secret::new(PASSWORD))
        .unwrap();
    let vigil = Vigil::start(&data);
    let browser = Browser::start();
    browser.sign_in_from_start(&vigil, "tail-watcher", PASSWORD);
    browser.goto(&vigil.url("/search?q=eventName%3ADeleteTrail"));
    browser.text_showing(&["Live tail"]);
    browser.click("#live-tail-toggle");
    browser.wait_until("the tail to connect", || {
        let status =
            browser.try_eval("return document.getElementById('live-tail-status').textContent")?;
        status.as_str()?.starts_with("Live:").then_some(())
    });
    let rows = "#live-tail-rows tr.live-tail-row";

    let hostile = "<img src=x onerror=\"window.vigilXss=1\">";
    let posted = vigil.post_ndjson("cloudtrail", trail_line(1, "DeleteTrail", hostile));
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    vigil.post_ndjson("cloudtrail", trail_line(2, "DescribeTrails", "not-tailed"));
    browser.wait_until("the first row", || (browser.count(rows) == 1).then_some(()));
    browser.assert_shown_as_text("the live tail", &[hostile]);

    // Paused, nothing comes; resumed, what arrived meanwhile does.
    browser.click("#live-tail-pause");
    browser.text_showing(&["Resume"]);
    vigil.post_ndjson(
        "cloudtrail",
        trail_line(3, "DeleteTrail", "arn:aws:iam::1:user/while-paused"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(browser.count(rows), 1);
    browser.click("#live-tail-pause");
    browser.wait_until("the row from the pause", || {
        (browser.count(rows) == 2).then_some(())
    });
    let text = browser.text_showing(&["user/while-paused"]);
    assert!(!text.contains("not-tailed"), "{text}");
    browser.screenshot("live-tail");

    // keys.js: `/` goes to the query box.
    browser.press(&["/"]);
    assert!(browser.focus_matches("#q"), "{}", browser.focused());

    // On the results (the tail closed), `j` and `k` move between rows, `o` opens one, and
    // `?` lists the keys.
    browser.goto(&vigil.url("/search?q=eventName%3ADeleteTrail"));
    browser.text_showing(&["2 matching events"]);
    let selected = "section.results table.events tr.key-selected";
    // The query box has the focus (autofocus), where keys are typed; Escape leaves it.
    browser.press(&["\u{E00C}", "j", "j", "k"]);
    assert_eq!(browser.count(selected), 1);
    assert_eq!(
        browser.eval(
            "return document.querySelector('section.results table.events tbody tr').classList.contains('key-selected')",
            serde_json::json!([]),
        ),
        serde_json::json!(true)
    );
    browser.press(&["o"]);
    assert_eq!(
        browser.count("section.results tr.key-selected td.event > details[open]"),
        1
    );
    browser.press(&["?"]);
    browser.text_showing(&["Keyboard shortcuts", "Next row"]);
}
