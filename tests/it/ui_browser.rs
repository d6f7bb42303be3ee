//! The web UI in a real browser: headless Chromium driven through chromedriver (the W3C
//! WebDriver protocol), against the real `vigil` binary.
//!
//! An attacker chooses much of what the pages show (user names, messages, anything in a log
//! line), so the test feeds Vigil events carrying HTML and script, raises an alert from them,
//! and walks the pages an analyst would: sign in with a user name and password, the alert
//! list, the alert, its events, a status change with a note, sign out. On every page the
//! hostile text must be shown as text, and must not have become elements or run. Then a
//! viewer signs in and is shown the alert without any triage form.
//!
//! `./scripts/test` installs Debian's `chromium` and `chromium-driver`; `VIGIL_CHROMEDRIVER`
//! and `VIGIL_CHROMIUM` point elsewhere.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use reqwest::blocking::Client;
use serde_json::{json, Value};

use vigil_access::{AccessDb, Role, Secret};

use crate::common::tansu::free_port;
use crate::common::{wait_for, Vigil};

const ANALYST_PASSWORD: &str = "analyst password, long enough";
const VIEWER_PASSWORD: &str = "viewer password, long enough";

/// What an attacker puts in the user name of failed logins: markup that would load an image
/// and run script if a page built elements from it.
const HOSTILE_USER: &str = r#"<img src="x" onerror="window.vigilXss='user'"><script>window.vigilXss='user-script'</script>"#;
/// ...and in the reason and a note an analyst pastes from it.
const HOSTILE_REASON: &str =
    r#"</pre><b id="injected">bold</b><svg onload="window.vigilXss='svg'">"#;

/// The W3C name of the key holding an element's reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn executable(variable: &str, name: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed; ./scripts/test installs it (apt-get install {package})"
            )
        })
}

/// The chromedriver process, stopped when dropped: also when starting the session fails.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One Chromium session through a chromedriver this test started.
struct Browser {
    http: Client,
    session: String,
    // Declared after `session` so that the session is closed (in `Drop`) before the driver
    // stops.
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let chromedriver = executable("VIGIL_CHROMEDRIVER", "chromedriver", "chromium-driver");
        let chromium = executable("VIGIL_CHROMIUM", "chromium", "chromium");
        let port = free_port();
        let driver = Driver(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let http = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver ready", Duration::from_secs(30), || {
            let status: Value = http
                .get(format!("{endpoint}/status"))
                .send()
                .ok()?
                .json()
                .ok()?;
            (status["value"]["ready"] == true).then_some(())
        });
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Tests run as root in CI containers, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let created: Value = http
            .post(format!("{endpoint}/session"))
            .json(&capabilities)
            .send()
            .expect("chromedriver answers")
            .json()
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        Browser {
            http,
            session: format!("{endpoint}/session/{session}"),
            _driver: driver,
            _profile: profile,
        }
    }

    /// Sends one WebDriver command and returns its value, or the WebDriver error.
    fn try_command(&self, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}{path}", self.session);
        let request = match body {
            Some(body) => self.http.post(url).json(&body),
            None => self.http.get(url),
        };
        let answer: Value = request.send().unwrap().json().unwrap();
        if answer["value"]["error"].is_string() {
            return Err(answer["value"].clone());
        }
        Ok(answer["value"].clone())
    }

    /// Sends one WebDriver command and returns its value; a WebDriver error fails the test.
    fn command(&self, path: &str, body: Option<Value>) -> Value {
        self.try_command(path, body)
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    /// Polls `check` until it gives a value. A click that submits a form can return before
    /// the browser has left the page, so every step after one waits for what it expects. A
    /// wait that times out fails with the page the browser is showing.
    fn wait_until<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = check() {
                return value;
            }
            if Instant::now() >= deadline {
                let url = self.try_command("/url", None);
                let text = self.try_eval("return document.body.innerText");
                panic!(
                    "timed out waiting for {what}; the browser is at {url:?}, showing:\n{text:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the browser has loaded `url`.
    fn wait_for_url(&self, url: &str) {
        self.wait_until(url, || {
            let current = self.try_command("/url", None).ok()?;
            (current == url && self.loaded()).then_some(())
        });
    }

    fn goto(&self, url: &str) {
        self.command("/url", Some(json!({"url": url})));
    }

    fn current_url(&self) -> String {
        self.command("/url", None).as_str().unwrap().to_owned()
    }

    /// Runs `script` in the page, with `arguments` as its arguments.
    fn eval(&self, script: &str, arguments: Value) -> Value {
        self.command(
            "/execute/sync",
            Some(json!({"script": script, "args": arguments})),
        )
    }

    fn find(&self, css: &str) -> String {
        let found = self.command(
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT_KEY].as_str().unwrap().to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.command(
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        );
    }

    /// How many elements match `css` on the page.
    fn count(&self, css: &str) -> u64 {
        self.eval(
            "return document.querySelectorAll(arguments[0]).length",
            json!([css]),
        )
        .as_u64()
        .unwrap()
    }

    /// Signs in through the page's form and waits for the alert list.
    fn sign_in(&self, vigil: &Vigil, name: &str, password: &str) {
        self.type_into("#username", name);
        self.type_into("#password", password);
        self.click("form.login button[type=submit]");
        self.wait_for_url(&vigil.url("/"));
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.command(&format!("/element/{element}/click"), Some(json!({})));
    }

    /// Runs `script` in the page; `None` while the page is being replaced.
    fn try_eval(&self, script: &str) -> Option<Value> {
        self.try_command("/execute/sync", Some(json!({"script": script, "args": []})))
            .ok()
    }

    fn loaded(&self) -> bool {
        self.try_eval("return document.readyState").as_ref() == Some(&json!("complete"))
    }

    /// The page's text as the analyst sees it, once the loaded page shows all of `expected`.
    fn text_showing(&self, expected: &[&str]) -> String {
        self.wait_until(&format!("a page showing {expected:?}"), || {
            if !self.loaded() {
                return None;
            }
            let text = self.try_eval("return document.body.innerText")?;
            let text = text.as_str()?;
            expected
                .iter()
                .all(|expected| text.contains(expected))
                .then(|| text.to_owned())
        })
    }

    /// Checks that the page shows `hostile` as text and built nothing from it: no image,
    /// script, SVG or injected element in the page's content, and no script of it ran.
    fn assert_shown_as_text(&self, page: &str, hostile: &[&str]) {
        self.text_showing(hostile);
        // Give an injected image's load error, if any, the time to fire its handler. The
        // search page's own histogram is the one SVG a page may hold.
        std::thread::sleep(Duration::from_millis(300));
        let built = self.eval(
            "return {
                elements: document.querySelectorAll('main img, main script, main svg:not(figure.histogram > svg), #injected').length,
                ran: window.vigilXss === undefined ? null : String(window.vigilXss),
            }",
            json!([]),
        );
        assert_eq!(
            built,
            json!({"elements": 0, "ran": null}),
            "{page}: hostile text became part of the page"
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.session).send();
    }
}

/// Five failed logins for `HOSTILE_USER` within a minute: the brute-force correlation's
/// threshold, which raises a high alert grouped by the user name.
fn failed_logins() -> String {
    let start = Utc::now() - Span::minutes(2);
    (0..5)
        .map(|i| {
            let at = start + Span::seconds(i * 10);
            json!({
                "asctime": at.format("%Y-%m-%d %H:%M:%S,%3f").to_string(),
                "levelname": "WARNING",
                "name": "usermgmt.auth",
                "message": "Login failed",
                "event": "login_failed",
                "username": HOSTILE_USER,
                "reason": HOSTILE_REASON,
                "remote_addr": "203.0.113.66",
            })
            .to_string()
                + "\n"
        })
        .collect()
}

#[test]
fn an_analyst_triages_hostile_events_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let access = AccessDb::open_in(&data).unwrap();
    access
        .add_user("ana", Role::Analyst, &Secret::new(ANALYST_PASSWORD))
        .unwrap();
    access
        .add_user("vic", Role::Viewer, &Secret::new(VIEWER_PASSWORD))
        .unwrap();
    let vigil = Vigil::start(&data);
    let response = vigil.post_ndjson("flask-app", failed_logins());
    assert!(response.status().is_success(), "{}", response.status());
    let alert_id = wait_for("the brute-force alert", Duration::from_secs(60), || {
        let alerts = vigil.get_json("/api/v1/alerts");
        alerts["alerts"]
            .as_array()?
            .iter()
            .find(|alert| alert["rule_title"] == "Flask User Management Login Brute Force")?["id"]
            .as_str()
            .map(str::to_owned)
    });

    let browser = Browser::start();

    // Pages need a session: the browser is sent to sign in first.
    browser.goto(&vigil.url("/"));
    assert_eq!(browser.current_url(), vigil.url("/login"));
    browser.type_into("#username", "ana");
    browser.type_into("#password", "not the password");
    browser.click("form.login button[type=submit]");
    browser.text_showing(&["That user name and password do not match."]);
    // The form keeps the name tried; the password is typed again.
    browser.type_into("#password", ANALYST_PASSWORD);
    browser.click("form.login button[type=submit]");
    browser.wait_for_url(&vigil.url("/"));
    browser.text_showing(&["ana", "analyst", "Sign out"]);

    // The alert list, then the alert, which shows the user name it was grouped by.
    browser.text_showing(&["Flask User Management Login Brute Force"]);
    // Alerts are grouped by rule and group key; a group opens to its alerts.
    browser.click("table.alert-groups tr.group summary");
    browser.click(&format!("a[href='/alerts/{alert_id}']"));
    browser.wait_for_url(&vigil.url(&format!("/alerts/{alert_id}")));
    browser.assert_shown_as_text("the alert", &[HOSTILE_USER]);

    // Acknowledge it with a note quoting the attacker, through the page's own form (and its
    // CSRF token).
    browser.eval(
        "const form = document.querySelector('form.triage');
         form.querySelector('select[name=status]').value = 'acknowledged';",
        json!([]),
    );
    browser.type_into("form.triage textarea[name=note]", HOSTILE_REASON);
    browser.click("form.triage button[type=submit]");
    browser.assert_shown_as_text("the acknowledged alert", &[HOSTILE_USER, HOSTILE_REASON]);
    let detail = wait_for("the alert acknowledged", Duration::from_secs(30), || {
        let detail = vigil.get_json(&format!("/api/v1/alerts/{alert_id}"));
        (detail["status"] == "acknowledged").then_some(detail)
    });
    assert_eq!(detail["notes"][0]["text"], HOSTILE_REASON, "{detail}");

    // The alert's events, whose records carry the hostile text in full.
    browser.goto(&vigil.url(&format!("/alerts/{alert_id}")));
    browser.click("dl.facts a[href^='/search']");
    browser.text_showing(&["5 matching events"]);
    // The search page folds each event's tree and raw JSON into `<details>`: open them all.
    browser.eval(
        "document.querySelectorAll('main details').forEach(d => { d.open = true; })",
        json!([]),
    );
    browser.assert_shown_as_text(
        "the alert's events",
        &["window.vigilXss", "id=\\\"injected\\\""],
    );

    // A search typed into the page's own form finds them too.
    browser.goto(&vigil.url("/search"));
    browser.type_into("form.search input[name=q]", "username:*onerror*");
    browser.click("form.search button[type=submit]");
    // The empty search may list the same five events, so wait for the query's own page.
    browser.wait_until("the search's results", || {
        let url = browser.try_command("/url", None).ok()?;
        (url.as_str()?.contains("q=username") && browser.loaded()).then_some(())
    });
    browser.text_showing(&["5 matching events"]);
    // The search page folds each event's tree and raw JSON into `<details>`: open them all.
    browser.eval(
        "document.querySelectorAll('main details').forEach(d => { d.open = true; })",
        json!([]),
    );
    browser.assert_shown_as_text("the search", &["window.vigilXss"]);

    // Signing out ends the session: the pages send the browser back to sign in.
    browser.click("header form button[type=submit]");
    browser.wait_for_url(&vigil.url("/login"));
    browser.goto(&vigil.url("/"));
    assert_eq!(browser.current_url(), vigil.url("/login"));

    // A viewer reads the same alert, hostile text as text, and is shown no triage form.
    browser.sign_in(&vigil, "vic", VIEWER_PASSWORD);
    browser.text_showing(&["vic", "viewer"]);
    browser.goto(&vigil.url(&format!("/alerts/{alert_id}")));
    browser.wait_for_url(&vigil.url(&format!("/alerts/{alert_id}")));
    browser.assert_shown_as_text("the alert, to a viewer", &[HOSTILE_USER, HOSTILE_REASON]);
    assert_eq!(browser.count("main form"), 0, "a viewer was shown a form");
    assert_eq!(browser.count("main select, main textarea"), 0);
    assert_eq!(browser.count("header form[action='/logout']"), 1);
}
