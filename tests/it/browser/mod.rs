//! Headless Chromium for the web UI's end-to-end tests, driven through chromedriver with the
//! W3C WebDriver protocol over plain HTTP: start a session, go to pages, find and click
//! elements, type, press keys, run scripts, take screenshots, run axe-core.
//!
//! `./scripts/test` installs Debian's `chromium` and `chromium-driver`, and axe-core from npm
//! (`VIGIL_AXE_JS`); `VIGIL_CHROMEDRIVER` and `VIGIL_CHROMIUM` point elsewhere.

#![allow(dead_code)]

pub mod axe;
pub mod console_events;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::common::tansu::free_port;
use crate::common::{wait_for, Vigil};

/// The W3C name of the key holding an element's reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The window the pages are shown (and photographed) in: a laptop's screen.
const WINDOW: (u32, u32) = (1400, 900);

/// WebDriver's codes for the keys a keyboard-only flow presses.
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const SPACE: &str = "\u{E00D}";
    pub const SHIFT: &str = "\u{E008}";
    pub const DOWN: &str = "\u{E015}";
}

pub fn executable(variable: &str, name: &str, package: &str) -> PathBuf {
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

/// The build's target directory (where `vigil` was built: `<target>/debug/vigil`), which
/// holds `CARGO_TARGET_DIR` when it is set.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_vigil"))
        .parent()
        .and_then(Path::parent)
        .expect("vigil is built inside a target directory")
        .to_owned()
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
pub struct Browser {
    http: Client,
    session: String,
    // Declared after `session` so that the session is closed (in `Drop`) before the driver
    // stops.
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start() -> Browser {
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
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    "--hide-scrollbars",
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
        let browser = Browser {
            http,
            session: format!("{endpoint}/session/{session}"),
            _driver: driver,
            _profile: profile,
        };
        browser.command(
            "/window/rect",
            Some(json!({"width": WINDOW.0, "height": WINDOW.1})),
        );
        browser
    }

    /// Sends one WebDriver command and returns its value, or the WebDriver error.
    pub fn try_command(&self, path: &str, body: Option<Value>) -> Result<Value, Value> {
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
    pub fn command(&self, path: &str, body: Option<Value>) -> Value {
        self.try_command(path, body)
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    /// Polls `check` until it gives a value. A click that submits a form can return before
    /// the browser has left the page, so every step after one waits for what it expects. A
    /// wait that times out fails with the page the browser is showing.
    pub fn wait_until<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
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
    pub fn wait_for_url(&self, url: &str) {
        self.wait_until(url, || {
            let current = self.try_command("/url", None).ok()?;
            (current == url && self.loaded()).then_some(())
        });
    }

    /// Waits until the browser has loaded a page whose URL passes `check`, and returns it.
    pub fn wait_for_url_where(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        self.wait_until(what, || {
            let current = self.try_command("/url", None).ok()?;
            let current = current.as_str()?;
            (check(current) && self.loaded()).then(|| current.to_owned())
        })
    }

    pub fn goto(&self, url: &str) {
        self.command("/url", Some(json!({"url": url})));
    }

    pub fn current_url(&self) -> String {
        self.command("/url", None).as_str().unwrap().to_owned()
    }

    /// Runs `script` in the page, with `arguments` as its arguments.
    pub fn eval(&self, script: &str, arguments: Value) -> Value {
        self.command(
            "/execute/sync",
            Some(json!({"script": script, "args": arguments})),
        )
    }

    /// Runs `script` in the page and waits for it to call its last argument with the result.
    pub fn eval_async(&self, script: &str, arguments: Value) -> Value {
        self.command(
            "/execute/async",
            Some(json!({"script": script, "args": arguments})),
        )
    }

    /// The reference of the first element matching `css`; a missing element fails the test.
    pub fn find(&self, css: &str) -> String {
        let found = self.command(
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT_KEY].as_str().unwrap().to_owned()
    }

    /// The element `script` returns (run with `arguments`); fails when it returns none.
    pub fn element_by_script(&self, script: &str, arguments: Value) -> String {
        let found = self.eval(script, arguments);
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element from {script}: {found}"))
            .to_owned()
    }

    /// The first link whose text is `text`.
    pub fn find_link(&self, text: &str) -> String {
        let found = self.command(
            "/element",
            Some(json!({"using": "link text", "value": text})),
        );
        found[ELEMENT_KEY].as_str().unwrap().to_owned()
    }

    pub fn click_element(&self, element: &str) {
        self.command(&format!("/element/{element}/click"), Some(json!({})));
    }

    /// Empties the input matching `css`.
    pub fn clear(&self, css: &str) {
        let element = self.find(css);
        self.command(&format!("/element/{element}/clear"), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.command(
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Presses `keys` (characters or [`keys`] codes) one after the other on whatever has the
    /// focus, as a person at the keyboard would.
    pub fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for key in keys {
            for c in key.chars() {
                actions.push(json!({"type": "keyDown", "value": c.to_string()}));
                actions.push(json!({"type": "keyUp", "value": c.to_string()}));
            }
        }
        self.command(
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// What has the focus: its tag, id, name, class, link and text, for assertions on where
    /// the keyboard is.
    pub fn focused(&self) -> Value {
        self.eval(
            "const e = document.activeElement;
             return e ? {
                 tag: e.tagName.toLowerCase(),
                 id: e.id,
                 name: e.getAttribute('name'),
                 class: e.getAttribute('class'),
                 href: e.getAttribute('href'),
                 text: (e.innerText || '').slice(0, 200),
             } : null;",
            json!([]),
        )
    }

    /// Whether the focused element matches `css`.
    pub fn focus_matches(&self, css: &str) -> bool {
        self.eval(
            "return !!document.activeElement && document.activeElement.matches(arguments[0])",
            json!([css]),
        ) == json!(true)
    }

    /// Presses Shift+Tab: the focus goes back one element.
    pub fn press_shift_tab(&self) {
        let actions = json!([
            {"type": "keyDown", "value": keys::SHIFT},
            {"type": "keyDown", "value": keys::TAB},
            {"type": "keyUp", "value": keys::TAB},
            {"type": "keyUp", "value": keys::SHIFT},
        ]);
        self.command(
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// Presses Tab until the focused element matches `css`, at most `most` times, and
    /// returns how many it took; fails with where the focus went otherwise.
    pub fn tab_to(&self, css: &str, most: usize) -> usize {
        for tabs in 0..=most {
            if self.focus_matches(css) {
                return tabs;
            }
            if tabs < most {
                self.press(&[keys::TAB]);
            }
        }
        panic!(
            "{most} Tabs did not reach {css}; the focus is on {}",
            self.focused()
        );
    }

    /// How many elements match `css` on the page.
    pub fn count(&self, css: &str) -> u64 {
        self.eval(
            "return document.querySelectorAll(arguments[0]).length",
            json!([css]),
        )
        .as_u64()
        .unwrap()
    }

    /// Signs in through the page's form and waits for the alert list.
    pub fn sign_in(&self, vigil: &Vigil, name: &str, password: &str) {
        self.type_into("#username", name);
        self.type_into("#password", password);
        self.click("form.login button[type=submit]");
        self.wait_for_url(&vigil.url("/"));
    }

    /// Goes to the sign-in page and signs in.
    pub fn sign_in_from_start(&self, vigil: &Vigil, name: &str, password: &str) {
        self.goto(&vigil.url("/login"));
        self.wait_for_url(&vigil.url("/login"));
        self.sign_in(vigil, name, password);
    }

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.command(&format!("/element/{element}/click"), Some(json!({})));
    }

    /// Runs `script` in the page; `None` while the page is being replaced.
    pub fn try_eval(&self, script: &str) -> Option<Value> {
        self.try_command("/execute/sync", Some(json!({"script": script, "args": []})))
            .ok()
    }

    pub fn loaded(&self) -> bool {
        self.try_eval("return document.readyState").as_ref() == Some(&json!("complete"))
    }

    /// The page's text as the analyst sees it, once the loaded page shows all of `expected`.
    pub fn text_showing(&self, expected: &[&str]) -> String {
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

    /// Opens every `<details>` in the page's content: event trees, raw JSON, sidebar fields.
    pub fn open_all_details(&self) {
        self.eval(
            "document.querySelectorAll('main details').forEach(d => { d.open = true; })",
            json!([]),
        );
    }

    /// Checks that the page shows `hostile` as text and built nothing from it: no image,
    /// script, SVG or injected element in the page's content, and no script of it ran.
    pub fn assert_shown_as_text(&self, page: &str, hostile: &[&str]) {
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

    /// Writes what the window shows to `<target>/screenshots/<name>.png`, and returns where.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.command("/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a screenshot is base64 text"))
            .expect("a screenshot is valid base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let dir = target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The browser's cookies, as a `Cookie` header's value: for requests a test makes
    /// itself in the signed-in person's name (a download the browser would save).
    pub fn cookie_header(&self) -> String {
        self.command("/cookie", None)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap(),
                    c["value"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.session).send();
    }
}
