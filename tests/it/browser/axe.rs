//! axe-core (Deque's accessibility engine, from npm) run inside the page under test.
//!
//! The script is handed to the page through WebDriver's execute-script, which Chromium runs
//! through its DevTools protocol, outside the page's Content-Security-Policy: the pages keep
//! their `default-src 'none'` and need serve nothing for the test.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::Browser;

/// Where `./scripts/test` installs axe-core when `VIGIL_AXE_JS` is not set.
fn default_path() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(cache.join("vigil-test/axe/node_modules/axe-core/axe.min.js"))
}

/// axe.min.js's text, read once per test binary.
fn source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = std::env::var_os("VIGIL_AXE_JS")
            .map(PathBuf::from)
            .or_else(default_path)
            .filter(|path| path.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "axe-core is not installed; ./scripts/test installs it with npm \
                     (or set VIGIL_AXE_JS to axe.min.js)"
                )
            });
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
    })
}

/// The impacts that fail a page: what keeps people from using it, not what merely slows them.
const FAILING: [&str; 2] = ["serious", "critical"];

/// Runs axe-core over the page the browser shows and fails on any serious or critical
/// violation, listing each with its rule, impact and the elements it found.
pub fn assert_accessible(browser: &Browser, page: &str) {
    let violations = violations(browser);
    let (failing, lesser): (Vec<&Value>, Vec<&Value>) = violations
        .iter()
        .partition(|v| FAILING.contains(&v["impact"].as_str().unwrap_or_default()));
    // Moderate and minor findings do not fail the test; they are listed for whoever runs
    // it with --nocapture.
    for violation in lesser {
        let targets: Vec<&Value> = violation["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|node| &node["target"])
            .collect();
        eprintln!(
            "axe-core on {page}: {} ({}) at {targets:?}",
            violation["id"].as_str().unwrap_or("?"),
            violation["impact"].as_str().unwrap_or("?"),
        );
    }
    if failing.is_empty() {
        return;
    }
    let mut report = String::new();
    for violation in failing {
        report.push_str(&format!(
            "\n- {} ({}): {}\n",
            violation["id"].as_str().unwrap_or("?"),
            violation["impact"].as_str().unwrap_or("?"),
            violation["help"].as_str().unwrap_or("")
        ));
        for node in violation["nodes"].as_array().into_iter().flatten() {
            report.push_str(&format!("    at {} : {}\n", node["target"], node["html"]));
        }
    }
    panic!("{page}: axe-core finds serious or critical violations:{report}");
}

/// Every violation axe-core reports on the shown page, whatever its impact.
pub fn violations(browser: &Browser) -> Vec<Value> {
    browser.command("/timeouts", Some(json!({"script": 60_000})));
    let present = browser.eval("return typeof window.axe === 'object'", json!([]));
    if present != json!(true) {
        browser.eval(source(), json!([]));
    }
    let result = browser.eval_async(
        "const done = arguments[arguments.length - 1];
         window.axe.run(document, {resultTypes: ['violations']}).then(
             (r) => done(r.violations.map((v) => ({
                 id: v.id, impact: v.impact, help: v.help,
                 nodes: v.nodes.map((n) => ({target: n.target, html: n.html.slice(0, 300)})),
             }))),
             (error) => done({error: String(error)}),
         );",
        json!([]),
    );
    match result {
        Value::Array(violations) => violations,
        other => panic!("axe-core did not run: {other}"),
    }
}
