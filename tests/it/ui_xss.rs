//! Hostile events on every page, in headless Chromium against the real `vigil` binary.
//!
//! Everything Vigil shows comes from whoever writes its logs, so this test ingests CloudTrail,
//! Kubernetes audit and application events whose keys and values hold script tags, event
//! handlers, `javascript:` URLs, SVG, CSS and attribute break-outs, also in the fields the
//! result rows summarise and the group keys of an alert they raise. Every payload would set
//! `window.vigilXss` if it ran, and the elements it would build carry `id="injected"`.
//!
//! On each page (the search rows, the opened event trees and raw JSON, the field sidebar, the
//! histogram, a query error, the alerts list, an alert, health with its quarantine samples,
//! the audit log) the test checks that the payloads are shown as text, that no element,
//! handler, style or non-HTTP link was built from them and that nothing ran. The export is
//! checked as a download (its type, `attachment`, `nosniff`) and its CSV for formulas.

use std::time::Duration;

use chrono::{Duration as Span, SecondsFormat, Utc};
use reqwest::header;
use serde_json::{json, Value};

use vigil_access::{AccessDb, Role, Secret};

use crate::browser::Browser;
use crate::common::{client_without_redirects, wait_for, Vigil, TOKEN};

const ADMIN: &str = "xss-admin";
const ADMIN_PASSWORD: &str = "admin password, long enough";
const STOP_LOGGING_RULE: &str = "AWS CloudTrail Logging Stopped Or Trail Deleted";
const BRUTE_FORCE_RULE: &str = "Flask User Management Login Brute Force";

/// A script element.
const SCRIPT: &str = "<script>window.vigilXss='script'</script>";
/// An image whose failing load runs a handler.
const IMG: &str = r#"<img id="injected" src="x" onerror="window.vigilXss='img'">"#;
/// A link to run script, as a value a page might put in an `href`.
const JS_URL: &str = "javascript:window.vigilXss='js-url'//";
/// A link element with one.
const ANCHOR: &str = r#"<a id="injected" href="javascript:window.vigilXss='anchor'">click</a>"#;
/// SVG with a load handler and a script inside.
const SVG: &str = r#"<svg id="injected" onload="window.vigilXss='svg'"><script>window.vigilXss='svg-script'</script></svg>"#;
/// A style sheet breaking out of one and painting the page from another origin.
const CSS: &str = "</style><style>body{background:url(https://attacker.invalid/x.png)}</style>";
/// Old IE's script-in-CSS, in a style attribute.
const CSS_EXPRESSION: &str =
    r#"<b id="injected" style="width:expression(window.vigilXss='css')">css</b>"#;
/// Breaking out of a quoted attribute.
const ATTRIBUTE: &str = r#""><img id="injected" src=x onerror="window.vigilXss='attribute'">"#;
/// Spreadsheet formulas, for the CSV export.
const FORMULAS: [&str; 4] = [
    r#"=HYPERLINK("https://attacker.invalid","open")"#,
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
];

const PAYLOADS: [&str; 8] = [
    SCRIPT,
    IMG,
    JS_URL,
    ANCHOR,
    SVG,
    CSS,
    CSS_EXPRESSION,
    ATTRIBUTE,
];

/// A StopLogging call (which the logging-disabled rule alerts on) with payloads in the
/// summarised fields, in keys, nested and in arrays; and a CloudTrail event whose name and
/// every summarised field is one.
fn cloudtrail() -> String {
    let now = Utc::now();
    let at =
        |minutes: i64| (now - Span::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let stop = json!({
        "eventVersion": "1.10",
        "userIdentity": {"type": "IAMUser", "arn": IMG, "userName": SCRIPT},
        "eventTime": at(3),
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging",
        "awsRegion": CSS,
        "sourceIPAddress": SVG,
        "userAgent": ATTRIBUTE,
        "errorCode": ANCHOR,
        "requestParameters": {
            "name": JS_URL,
            IMG: "an image as a key",
            SVG: {CSS: [SCRIPT, CSS_EXPRESSION]},
            JS_URL: ATTRIBUTE,
        },
        "eventID": "xss-stop",
    });
    let named = json!({
        "eventVersion": "1.10",
        "userIdentity": {"type": "IAMUser", "arn": ANCHOR},
        "eventTime": at(4),
        "eventSource": "ec2.amazonaws.com",
        "eventName": SVG,
        "awsRegion": CSS_EXPRESSION,
        "sourceIPAddress": JS_URL,
        "errorCode": FORMULAS[0],
        "eventID": "xss-named",
    });
    format!("{stop}\n{named}\n")
}

/// The event the live tail is open for when it arrives.
fn tail_event() -> String {
    json!({
        "eventVersion": "1.10",
        "userIdentity": {"type": "IAMUser", "arn": SVG},
        "eventTime": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "eventSource": "ec2.amazonaws.com",
        "eventName": IMG,
        "awsRegion": CSS,
        "sourceIPAddress": ATTRIBUTE,
        "errorCode": ANCHOR,
        "eventID": "xss-tail",
    })
    .to_string()
        + "\n"
}

/// Kubernetes audit events whose verb, user, resource and object hold payloads.
fn kubernetes_audit() -> Value {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": [{
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": "xss-audit-1", "stage": "ResponseComplete",
        "requestURI": JS_URL,
        "verb": SCRIPT,
        "user": {"username": IMG, "groups": [SVG]},
        "sourceIPs": [ATTRIBUTE],
        "userAgent": CSS,
        "objectRef": {"resource": ANCHOR, "namespace": CSS_EXPRESSION, "name": FORMULAS[1]},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": now,
        "stageTimestamp": now,
        "annotations": {SVG: IMG}
    }]})
}

/// Five failed logins for a hostile user from a hostile address, which the brute-force
/// correlation groups by both; and log lines whose message, user and keys are payloads.
fn app_logs() -> String {
    let start = Utc::now() - Span::minutes(2);
    let mut body = String::new();
    for i in 0..5 {
        let at = start + Span::seconds(i * 10);
        body += &(json!({
            "asctime": at.format("%Y-%m-%d %H:%M:%S,%3f").to_string(),
            "levelname": "WARNING",
            "name": "usermgmt.auth",
            "message": "Login failed",
            "event": "login_failed",
            "username": SVG,
            "remote_addr": ATTRIBUTE,
        })
        .to_string()
            + "\n");
    }
    for (i, message) in PAYLOADS.iter().chain(FORMULAS.iter()).enumerate() {
        let at = start + Span::seconds(i as i64);
        body += &(json!({
            "asctime": at.format("%Y-%m-%d %H:%M:%S,%3f").to_string(),
            "levelname": FORMULAS[3],
            "message": message,
            "username": FORMULAS[2],
            "remote_addr": JS_URL,
            CSS: IMG,
            SCRIPT: {SVG: ANCHOR},
        })
        .to_string()
            + "\n");
    }
    body
}

/// What the page built that it should not have: elements from the payloads, handlers,
/// styles, links that are not HTTP, a changed background, and whether any payload ran.
const INSPECT: &str = r#"
    const links = [];
    for (const el of document.querySelectorAll('*')) {
        for (const name of ['href', 'src', 'action', 'formaction', 'data', 'poster', 'xlink:href']) {
            const value = el.getAttribute(name);
            if (value === null) continue;
            const url = new URL(value, document.baseURI);
            if (url.protocol !== 'http:' && url.protocol !== 'https:') links.push(el.outerHTML.slice(0, 200));
        }
    }
    const handlers = [...document.querySelectorAll('*')]
        .filter((el) => [...el.attributes].some((a) => a.name.toLowerCase().startsWith('on')))
        .map((el) => el.outerHTML.slice(0, 200));
    // The pages' own SVG: the search histogram and the sparklines.
    const own_svg = 'figure.histogram > svg, svg.sparkline';
    const injected = [...document.querySelectorAll(
        `#injected, main img, main iframe, main object, main embed, main style, main link,
         main base, main meta, main svg:not(${own_svg}), main b, script:not([src^="/static/"]),
         style, [style]`)]
        .map((el) => el.outerHTML.slice(0, 200));
    // The histogram's and sparklines' insides are drawing and links, nothing else.
    const drawing = [...document.querySelectorAll(`${own_svg}`)]
        .flatMap((svg) => [...svg.querySelectorAll('*')])
        .filter((el) => !['a', 'title', 'rect', 'line', 'polyline', 'path', 'circle', 'g'].includes(el.tagName))
        .map((el) => el.outerHTML.slice(0, 200));
    return {
        links, handlers, injected, drawing,
        background: getComputedStyle(document.body).backgroundImage,
        ran: window.vigilXss === undefined ? null : String(window.vigilXss),
    };
"#;

/// Checks the page shows `shown` as text and built and ran nothing from any payload.
fn assert_inert(browser: &Browser, page: &str, shown: &[&str]) {
    browser.wait_until("the page loaded", || browser.loaded().then_some(()));
    browser.open_all_details();
    browser.text_showing(shown);
    // Time for an injected image's error or an SVG's load to fire its handler.
    std::thread::sleep(Duration::from_millis(300));
    let found = browser.eval(INSPECT, json!([]));
    assert_eq!(
        found,
        json!({"links": [], "handlers": [], "injected": [], "drawing": [],
               "background": "none", "ran": null}),
        "{page}: a payload became part of the page"
    );
}

#[test]
fn hostile_events_stay_text_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    AccessDb::open_in(&data)
        .unwrap()
        .add_user(ADMIN, Role::Admin, &Secret::new(ADMIN_PASSWORD))
        .unwrap();
    let vigil = Vigil::start(&data);
    for (source, body) in [("cloudtrail", cloudtrail()), ("flask-app", app_logs())] {
        let response = vigil.post_ndjson(source, body);
        assert!(response.status().is_success(), "{}", response.status());
    }
    // A line that is not a record at all is quarantined, and shown as a sample.
    let response = vigil.post_ndjson("cloudtrail", format!("{{\"eventName\": \"{SVG}\"\n"));
    assert_eq!(response.status(), 400, "the broken line was taken");
    let response = vigil
        .client
        .post(vigil.url("/api/v1/webhooks/kubernetes-audit/prod-cluster"))
        .bearer_auth(TOKEN)
        .json(&kubernetes_audit())
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let alerts = wait_for("both alerts", Duration::from_secs(60), || {
        let alerts = vigil.get_json("/api/v1/alerts");
        let alerts: Vec<Value> = alerts["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["rule_title"] == STOP_LOGGING_RULE || a["rule_title"] == BRUTE_FORCE_RULE)
            .cloned()
            .collect();
        (alerts.len() == 2).then_some(alerts)
    });
    wait_for("every event indexed", Duration::from_secs(60), || {
        (vigil.search_total("*") >= 20).then_some(())
    });

    let browser = Browser::start();
    // A failed sign-in in a hostile name, which the audit log records.
    browser.goto(&vigil.url("/login"));
    browser.type_into("#username", IMG);
    browser.type_into("#password", "not the password");
    browser.click("form.login button[type=submit]");
    browser.text_showing(&["That user name and password do not match."]);
    assert_inert(&browser, "the sign-in page", &[]);
    browser.clear("#username");
    browser.sign_in(&vigil, ADMIN, ADMIN_PASSWORD);

    // The alerts list, with the brute force's hostile group values.
    assert_inert(&browser, "the alerts", &[SVG, ATTRIBUTE]);
    for alert in &alerts {
        let id = alert["id"].as_str().unwrap();
        browser.goto(&vigil.url(&format!("/alerts/{id}")));
        browser.wait_for_url(&vigil.url(&format!("/alerts/{id}")));
        let shown: &[&str] = if alert["rule_title"] == STOP_LOGGING_RULE {
            &[IMG, SVG]
        } else {
            &[SVG, ATTRIBUTE]
        };
        assert_inert(
            &browser,
            &format!("the alert {}", alert["rule_title"]),
            shown,
        );
    }

    // Every event: rows, trees, raw JSON, the sidebar's values and the histogram.
    browser.goto(&vigil.url("/search?from=now-1h&to=now"));
    assert_inert(
        &browser,
        "the search",
        &[
            SCRIPT,
            IMG,
            ANCHOR,
            SVG,
            CSS,
            CSS_EXPRESSION,
            ATTRIBUTE,
            JS_URL,
        ],
    );
    assert!(browser.count("figure.histogram svg a") > 0, "no histogram");
    assert!(browser.count("aside.fields details") > 3, "no sidebar");
    // A filter link from a hostile value, followed: the query box holds it as text.
    let link = browser.element_by_script(
        "return [...document.querySelectorAll('.tree a.filter')]
             .find((a) => a.textContent === arguments[0]);",
        json!([ATTRIBUTE]),
    );
    browser.click_element(&link);
    browser.wait_for_url_where("the hostile filter", |url| url.contains("onerror"));
    assert_inert(&browser, "a search for a hostile value", &[ATTRIBUTE]);
    let typed = browser.eval("return document.querySelector('#q').value", json!([]));
    // Quoted as one term, its own quotes escaped.
    assert!(
        typed
            .as_str()
            .unwrap()
            .contains(r#"<img id=\"injected\" src=x onerror="#),
        "{typed}"
    );
    // Saved under a hostile name, it is listed as text.
    browser.type_into("#save-search-name", ANCHOR);
    browser.click("form#save-search button[type=submit]");
    browser.wait_for_url_where("the saved searches", |url| url.contains("/searches"));
    assert_inert(&browser, "the saved searches", &[ANCHOR, "onerror="]);

    // The live tail, open while a hostile event arrives: tail.js writes it as text.
    browser.goto(&vigil.url("/search?q=eventID%3Axss-tail"));
    browser.text_showing(&["0 matching events"]);
    browser.click("#live-tail-toggle");
    browser.wait_until("the tail streaming", || {
        let status =
            browser.try_eval("return document.querySelector('#live-tail-status').textContent")?;
        status.as_str()?.starts_with("Live").then_some(())
    });
    let response = vigil.post_ndjson("cloudtrail", tail_event());
    assert!(response.status().is_success(), "{}", response.status());
    browser.wait_until("the hostile event in the tail", || {
        (browser.count("#live-tail-rows tr") == 1).then_some(())
    });
    assert_inert(&browser, "the live tail", &[IMG, SVG, ATTRIBUTE, CSS]);
    // And the tail's page without scripts.
    browser.goto(&vigil.url("/search/live?q=eventID%3Axss-tail"));
    assert_inert(&browser, "the live page", &[IMG, SVG, ATTRIBUTE]);

    // A query error quotes the query under its marker.
    let mut url = reqwest::Url::parse(&vigil.url("/search")).unwrap();
    url.query_pairs_mut()
        .append_pair("q", &format!("({IMG} AND"));
    browser.goto(url.as_str());
    assert_inert(&browser, "a query error", &["Query error", IMG]);

    // A backtest of a pasted rule with a hostile title, over the hostile events: its page
    // lists the matches and the alerts it would raise.
    browser.goto(&vigil.url("/rules/backtest"));
    browser.text_showing(&["Backtest a rule"]);
    let rule = format!(
        "title: '{}'\nid: 5d3c7a0e-6f7e-4f57-9d0e-2b1f6c1a9e11\nstatus: test\n\
         logsource:\n    product: aws\n    service: cloudtrail\n\
         detection:\n    selection:\n        eventSource: cloudtrail.amazonaws.com\n\
         \x20   condition: selection\nlevel: high\n",
        SVG.replace('\'', "''")
    );
    browser.type_into("#backtest-yaml", &rule);
    browser.clear("#backtest-from");
    browser.type_into("#backtest-from", "now-1h");
    browser.click("form.backtest button[type=submit]");
    browser.wait_for_url_where("the backtest", |url| url.contains("/rules/backtest/"));
    assert_inert(&browser, "the backtest", &["Matched events", IMG, CSS]);

    browser.goto(&vigil.url("/health"));
    // Samples are shown escaped, as Rust writes a string's debug form.
    assert_inert(
        &browser,
        "the health page",
        &["Quarantine", "<svg id=", "<script>window.vigilXss="],
    );
    browser.goto(&vigil.url("/audit"));
    assert_inert(&browser, "the audit log", &[IMG]);

    // Parameters a link could carry, reflected into inputs, headers and error messages.
    let with = |path: &str, pairs: &[(&str, &str)]| {
        let mut url = reqwest::Url::parse(&vigil.url(path)).unwrap();
        url.query_pairs_mut().extend_pairs(pairs);
        url.to_string()
    };
    for (url, shown) in [
        (
            with(
                "/",
                &[
                    ("rule", ATTRIBUTE),
                    ("assignee", IMG),
                    ("tag", SVG),
                    ("source", CSS),
                ],
            ),
            "Recent alerts",
        ),
        (with("/", &[("status", SVG)]), "unknown status"),
        (
            with("/search", &[("columns", ATTRIBUTE), ("q", "*")]),
            "matching events",
        ),
        (
            with("/search", &[("from", ATTRIBUTE), ("to", IMG)]),
            "Time range",
        ),
        (
            with("/audit", &[("actor", ATTRIBUTE), ("action", SVG)]),
            "Audit log",
        ),
        (with("/rules", &[("q", ATTRIBUTE)]), "Rules"),
    ] {
        browser.goto(&url);
        assert_inert(&browser, &url, &[shown]);
        let values = browser.eval(
            "return [...document.querySelectorAll('main input:not([type=hidden])')].map((i) => i.value).join('\\n')",
            json!([]),
        );
        let text = browser.eval("return document.body.innerText", json!([]));
        assert!(
            // An error message may quote a value in its debug form, escaped.
            ["onerror=", "onload="].iter().any(|handler| values
                .as_str()
                .unwrap()
                .contains(handler)
                || text.as_str().unwrap().contains(handler)),
            "{url}: the parameters are neither in the inputs nor in the text"
        );
    }

    // The export is a download, never a page, and its CSV runs no formula.
    let cookies = browser.cookie_header();
    let http = client_without_redirects();
    for (format, content_type) in [("ndjson", "application/x-ndjson"), ("csv", "text/csv")] {
        let response = http
            .get(vigil.url(&format!("/search/export?format={format}&from=now-1h")))
            .header(header::COOKIE, &cookies)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{format}");
        let headers = response.headers().clone();
        let value = |name: header::HeaderName| {
            headers
                .get(&name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_else(|| panic!("{format}: no {name}"))
        };
        assert!(
            value(header::CONTENT_TYPE).starts_with(content_type),
            "{format}"
        );
        assert!(
            value(header::CONTENT_DISPOSITION).starts_with("attachment"),
            "{format}"
        );
        assert_eq!(value(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{format}");
        let body = response.text().unwrap();
        if format == "csv" {
            assert_csv_has_no_formula(&body);
        } else {
            assert!(body.contains(&serde_json::to_string(SVG).unwrap()));
        }
    }
    // In the browser, following the export link leaves the page as it was.
    browser.goto(&vigil.url("/search?from=now-1h&to=now"));
    browser.text_showing(&["matching events"]);
    browser.click_element(&browser.find_link("CSV"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        browser.current_url().contains("/search?"),
        "{}",
        browser.current_url()
    );
    assert_inert(&browser, "the search after the export", &[SVG]);
}

/// Splits CSV text into rows of cells (RFC 4180: quoted cells, doubled quotes).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => cell.push(c),
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    rows
}

/// No CSV cell begins as a formula would (`=`, `+`, `-`, `@`, tab, carriage return), and
/// the formulas of the fixture are there, kept as text.
fn assert_csv_has_no_formula(text: &str) {
    let rows = csv_rows(text);
    assert!(rows.len() > 10, "{text}");
    for row in &rows {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a CSV cell a spreadsheet would run: {cell:?}"
            );
        }
    }
    for formula in FORMULAS {
        let kept = format!("'{formula}");
        assert!(
            rows.iter().flatten().any(|cell| cell == &kept),
            "{formula:?} is not in the CSV as text"
        );
    }
}
