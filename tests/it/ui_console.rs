//! The analyst's console in headless Chromium, against the real `vigil` binary holding
//! CloudTrail, Kubernetes audit and application events and the alerts our rules raise from
//! them: sign in; search with a preset and an absolute time range; zoom through the
//! histogram; filter from the field sidebar (include and exclude) and from a value in an
//! event's tree; triage alert groups in bulk (acknowledge, close with a reason, assign); open
//! an alert and pivot to its events; read the health and audit pages; and the main flows with
//! the keyboard alone.
//!
//! Each page is photographed to `target/screenshots/<name>.png` and checked with axe-core,
//! which fails the test on any serious or critical accessibility violation.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, SubsecRound, Utc};
use reqwest::Url;
use serde_json::{json, Value};

use vigil_access::{AccessDb, Role, Secret};

use crate::browser::axe::assert_accessible;
use crate::browser::console_events::{
    app_logs, arn, cloudtrail, cloudtrail_ndjson, kubernetes_audit, stamp, Trail,
};
use crate::browser::{keys, Browser};
use crate::common::{wait_for, Vigil, TOKEN};

const ANALYST: &str = "ana";
const ANALYST_PASSWORD: &str = "analyst password, long enough";
const ADMIN: &str = "root-admin";
const ADMIN_PASSWORD: &str = "admin password, long enough";

const STOP_LOGGING_RULE: &str = "AWS CloudTrail Logging Stopped Or Trail Deleted";
const STOP_LOGGING_ID: &str = "8839b791-6198-4751-84ca-948372583b72";
const POD_EXEC_RULE: &str = "Kubernetes Interactive Exec Into A Pod By A User";
const BRUTE_FORCE_RULE: &str = "Flask User Management Login Brute Force";

/// The alerts of the fixture by rule title, once all of them are in the list.
fn alerts_by_rule(vigil: &Vigil) -> BTreeMap<String, Vec<Value>> {
    let alerts = vigil.get_json("/api/v1/alerts?limit=200");
    let mut by_rule: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for alert in alerts["alerts"].as_array().unwrap() {
        by_rule
            .entry(alert["rule_title"].as_str().unwrap().to_owned())
            .or_default()
            .push(alert.clone());
    }
    by_rule
}

/// The page's count of matching events ("N matching events").
fn shown_total(browser: &Browser) -> u64 {
    let total = browser.eval(
        "const p = [...document.querySelectorAll('main p')]
             .find((p) => /matching events/.test(p.innerText));
         return p ? parseInt(p.innerText, 10) : null;",
        json!([]),
    );
    total
        .as_u64()
        .unwrap_or_else(|| panic!("no count of matching events: {total}"))
}

/// A search URL's parameter.
fn parameter(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Photographs the page and checks it with axe-core.
fn page_done(browser: &Browser, name: &str) {
    browser.screenshot(name);
    assert_accessible(browser, name);
}

/// Loads a search URL and waits for its results.
fn search(browser: &Browser, vigil: &Vigil, path: &str) {
    browser.goto(&vigil.url(path));
    browser.text_showing(&["matching events"]);
}

struct Console {
    vigil: Vigil,
    trail: Vec<Trail>,
    _dir: tempfile::TempDir,
}

fn start_console() -> Console {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let access = AccessDb::open_in(&data).unwrap();
    access
        .add_user(ANALYST, Role::Analyst, &Secret::new(ANALYST_PASSWORD))
        .unwrap();
    access
        .add_user(ADMIN, Role::Admin, &Secret::new(ADMIN_PASSWORD))
        .unwrap();
    drop(access);
    let vigil = Vigil::start(&data);
    // Whole seconds, so that an absolute range typed in RFC 3339 splits the events exactly.
    let now = Utc::now().trunc_subsecs(0);
    let trail = cloudtrail(now);
    let response = vigil.post_ndjson("cloudtrail", cloudtrail_ndjson(&trail));
    assert!(response.status().is_success(), "{}", response.status());
    let response = vigil
        .client
        .post(vigil.url("/api/v1/webhooks/kubernetes-audit/prod-cluster"))
        .bearer_auth(TOKEN)
        .json(&kubernetes_audit(now))
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let response = vigil.post_ndjson("flask-app", app_logs(now));
    assert!(response.status().is_success(), "{}", response.status());
    wait_for("every event indexed", Duration::from_secs(60), || {
        (vigil.search_total("source_kind:cloudtrail") == trail.len() as u64
            && vigil.search_total("source_kind:kubernetes-audit") == 12
            && vigil.search_total("source_name:flask-app") == 15)
            .then_some(())
    });
    wait_for("the alerts", Duration::from_secs(60), || {
        let by_rule = alerts_by_rule(&vigil);
        let count = |rule: &str| by_rule.get(rule).map_or(0, Vec::len);
        (count(STOP_LOGGING_RULE) == 3 && count(POD_EXEC_RULE) == 2 && count(BRUTE_FORCE_RULE) == 1)
            .then_some(())
    });
    Console {
        vigil,
        trail,
        _dir: dir,
    }
}

#[test]
fn an_analyst_works_through_the_console() {
    let console = start_console();
    let vigil = &console.vigil;
    let browser = Browser::start();

    browser.goto(&vigil.url("/"));
    browser.wait_for_url(&vigil.url("/login"));
    page_done(&browser, "login");
    browser.sign_in(vigil, ANALYST, ANALYST_PASSWORD);
    browser.text_showing(&[STOP_LOGGING_RULE, POD_EXEC_RULE, BRUTE_FORCE_RULE]);
    page_done(&browser, "alerts");

    search_with_time_ranges(&browser, &console);
    zoom_through_the_histogram(&browser, &console);
    filter_from_the_sidebar_and_the_tree(&browser, &console);
    triage_groups_in_bulk(&browser, vigil);
    open_an_alert_and_pivot(&browser, vigil);

    // A saved search, the list of them, and the live tail's page without scripts.
    browser.goto(&vigil.url("/search?q=source_kind%3Acloudtrail&from=now-24h&to=now"));
    browser.type_into("#save-search-name", "CloudTrail, last day");
    browser.click("form#save-search button[type=submit]");
    browser.wait_for_url_where("the saved searches", |url| url.ends_with("/searches"));
    browser.text_showing(&["CloudTrail, last day", "source_kind:cloudtrail"]);
    page_done(&browser, "saved-searches");
    browser.goto(&vigil.url("/search/live?q=source_kind%3Acloudtrail"));
    browser.wait_until("the live page", || browser.loaded().then_some(()));
    page_done(&browser, "live");

    browser.goto(&vigil.url("/health"));
    browser.text_showing(&["Sources", "cloudtrail", "prod-cluster", "flask-app"]);
    page_done(&browser, "health");

    keyboard_only(&browser, vigil);

    // The audit log is an administrator's page: it shows the analyst's bulk triage.
    browser.click("header form.sign-out button[type=submit]");
    browser.wait_for_url(&vigil.url("/login"));
    browser.sign_in(vigil, ADMIN, ADMIN_PASSWORD);
    rules_at_runtime(&browser, &console);
    browser.goto(&vigil.url("/audit"));
    browser.text_showing(&["Audit log", ANALYST]);
    page_done(&browser, "audit");
}

/// Whether the running rules hold `rule_id` enabled, as the API says.
fn rule_enabled(vigil: &Vigil, rule_id: &str) -> bool {
    let rules = vigil.get_json("/api/v1/rules");
    let rule = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == rule_id)
        .unwrap_or_else(|| panic!("{rule_id} is not loaded: {rules}"));
    rule["enabled"].as_bool().unwrap()
}

/// A StopLogging call by `user`, now.
fn stop_logging(user: &str) -> String {
    cloudtrail_ndjson(&[Trail {
        time: Utc::now().trunc_subsecs(0),
        name: "StopLogging",
        arn: arn(user),
        address: "192.0.2.99",
    }])
    .replace("console-0", &format!("console-{user}"))
}

/// A rule author's flows: the rules list and a rule's page, disabling and enabling it (and
/// what that does to detection), a reload, a backtest and the ATT&CK coverage.
fn rules_at_runtime(browser: &Browser, console: &Console) {
    let vigil = &console.vigil;
    browser.goto(&vigil.url("/rules"));
    browser.text_showing(&["Rules", STOP_LOGGING_RULE, POD_EXEC_RULE]);
    page_done(browser, "rules");
    browser.click_element(&browser.find_link(STOP_LOGGING_RULE));
    let path = format!("/rules/{STOP_LOGGING_ID}");
    browser.wait_for_url(&vigil.url(&path));
    browser.text_showing(&["YAML", "eventName:", "Disable this rule"]);
    page_done(browser, "rule");

    // Disabled, the rule lets a StopLogging call pass; enabled again, it alerts on the next.
    browser.click("form.rule-state button[type=submit]");
    browser.text_showing(&["Enable this rule"]);
    assert!(!rule_enabled(vigil, STOP_LOGGING_ID));
    let alerts_of = |vigil: &Vigil| {
        alerts_by_rule(vigil)
            .get(STOP_LOGGING_RULE)
            .map_or(0, Vec::len)
    };
    // Behind the call, in the same source and so detected after it, a call another rule
    // alerts on: its alert says detection has passed the first.
    let marker = json!({
        "eventVersion": "1.10", "eventTime": stamp(Utc::now()),
        "userIdentity": {"type": "IAMUser", "arn": arn("mallory")},
        "eventSource": "iam.amazonaws.com", "eventName": "AttachUserPolicy",
        "requestParameters": {"userName": "mallory",
                              "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        "eventID": "console-marker",
    });
    let body = stop_logging("while-disabled") + &marker.to_string() + "\n";
    assert!(vigil.post_ndjson("cloudtrail", body).status().is_success());
    wait_for("the marker's alert", Duration::from_secs(30), || {
        alerts_by_rule(vigil)
            .contains_key("AWS AdministratorAccess Policy Attached To An IAM Identity")
            .then_some(())
    });
    browser.click("form.rule-state button[type=submit]");
    browser.text_showing(&["Disable this rule"]);
    assert!(rule_enabled(vigil, STOP_LOGGING_ID));
    assert!(vigil
        .post_ndjson("cloudtrail", stop_logging("after-enable"))
        .status()
        .is_success());
    let event_id = |marker: &str| {
        wait_for(marker, Duration::from_secs(30), || {
            let found = vigil.get_json(&format!("/api/v1/search?q=eventID:console-{marker}"));
            found["hits"][0]["id"].as_str().map(str::to_owned)
        })
    };
    let (disabled, enabled) = (event_id("while-disabled"), event_id("after-enable"));
    let raised_for = |id: &str| {
        alerts_by_rule(vigil)[STOP_LOGGING_RULE]
            .iter()
            .any(|alert| alert["event_ids"].as_array().unwrap().contains(&json!(id)))
    };
    wait_for("the alert after enabling", Duration::from_secs(30), || {
        raised_for(&enabled).then_some(())
    });
    assert!(!raised_for(&disabled), "the disabled rule alerted");
    assert_eq!(alerts_of(vigil), 4);

    // A reload from the files swaps in a new generation, with the rule still enabled.
    browser.goto(&vigil.url("/rules"));
    browser.text_showing(&["Reload rules from their files"]);
    let before = vigil.get_json("/api/v1/rules")["generation"].clone();
    browser.click("form.reload button[type=submit]");
    // The page already says which generation the last enable started; the reload's own notice
    // names its trigger. Waiting for that, not for any notice, keeps the check below from
    // reading the generation before the reload (seen once on a loaded machine).
    browser.text_showing(&["Last change (page, ", "is running, with"]);
    let after = vigil.get_json("/api/v1/rules")["generation"].clone();
    assert_ne!(before, after, "the reload changed no generation");
    assert!(rule_enabled(vigil, STOP_LOGGING_ID));

    // A backtest of the rule over the last day finds every StopLogging call.
    browser.goto(&vigil.url("/rules/backtest"));
    browser.text_showing(&["Backtest a rule"]);
    assert_accessible(browser, "the backtest form");
    browser.click(&format!("#backtest-rule option[value='{STOP_LOGGING_ID}']"));
    browser.clear("#backtest-from");
    browser.type_into("#backtest-from", "now-24h");
    browser.clear("#backtest-to");
    browser.type_into("#backtest-to", "now");
    browser.click("form.backtest button[type=submit]");
    browser.wait_for_url_where("the backtest's page", |url| {
        url.contains("/rules/backtest/")
    });
    let calls = console
        .trail
        .iter()
        .filter(|t| t.name == "StopLogging")
        .count()
        + 2;
    let text = browser.text_showing(&["Alerts it would have raised", "Matched events"]);
    assert!(
        text.contains(&format!("Events matched\n{calls}")),
        "not {calls} matches:\n{text}"
    );
    page_done(browser, "backtest");

    browser.goto(&vigil.url("/rules/attack"));
    browser.text_showing(&["ATT&CK coverage", "T1562"]);
    page_done(browser, "attack");
}

fn search_with_time_ranges(browser: &Browser, console: &Console) {
    let vigil = &console.vigil;
    let trail = &console.trail;
    browser.goto(&vigil.url("/search"));
    browser.text_showing(&["matching events"]);
    browser.type_into("#q", "source_kind:cloudtrail");
    browser.click("form.search button[type=submit]");
    browser.wait_for_url_where("the query's results", |url| url.contains("q=source_kind"));
    // A preset keeps the query and puts its range in the URL.
    browser.click_element(&browser.find_link("24 h"));
    let url = browser.wait_for_url_where("the 24 h preset", |url| url.contains("from=now-24h"));
    assert_eq!(
        parameter(&url, "q").as_deref(),
        Some("source_kind:cloudtrail")
    );
    assert_eq!(parameter(&url, "to").as_deref(), Some("now"));
    assert_eq!(shown_total(browser), trail.len() as u64);

    // An absolute range, typed: the events of the last hour but the five newest minutes.
    let now = trail[0].time + Span::minutes(5);
    let (from, to) = (now - Span::minutes(60), now - Span::minutes(7));
    browser.clear("form.search input[name=from]");
    browser.type_into("form.search input[name=from]", &stamp(from));
    browser.clear("form.search input[name=to]");
    browser.type_into("form.search input[name=to]", &stamp(to));
    browser.click("form.search button[type=submit]");
    let url = browser.wait_for_url_where("the absolute range", |url| {
        parameter(url, "from") == Some(stamp(from))
    });
    assert_eq!(parameter(&url, "to"), Some(stamp(to)));
    let expected = trail
        .iter()
        .filter(|t| t.time >= from && t.time < to)
        .count();
    assert!(expected > 0 && expected < trail.len());
    assert_eq!(shown_total(browser), expected as u64, "{url}");
}

fn zoom_through_the_histogram(browser: &Browser, console: &Console) {
    let vigil = &console.vigil;
    search(browser, vigil, "/search?from=now-4h&to=now");
    page_done(browser, "search");
    search(
        browser,
        vigil,
        "/search?q=source_kind%3Acloudtrail&from=now-24h&to=now",
    );
    let before = shown_total(browser);
    // The fullest bar: its title says how many events it holds.
    let bar = browser.element_by_script(
        "const bars = [...document.querySelectorAll('figure.histogram svg a')];
         const count = (a) => parseInt(a.querySelector('title').textContent, 10);
         return bars.reduce((best, a) => (count(a) > count(best) ? a : best), bars[0]);",
        json!([]),
    );
    let title = browser.eval(
        "return arguments[0].querySelector('title').textContent",
        json!([{"element-6066-11e4-a52e-4f735466cecf": bar}]),
    );
    let in_bar: u64 = title
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    browser.click_element(&bar);
    let url = browser.wait_for_url_where("the zoomed range", |url| !url.contains("now-24h"));
    let from = DateTime::parse_from_rfc3339(&parameter(&url, "from").unwrap()).unwrap();
    let to = DateTime::parse_from_rfc3339(&parameter(&url, "to").unwrap()).unwrap();
    assert!(
        to - from < Span::hours(24),
        "{url} did not narrow the range"
    );
    let after = shown_total(browser);
    assert!(
        after > 0 && after < before,
        "{after} of {before} after zooming"
    );
    assert_eq!(after, in_bar, "{title}");
    let expected = console
        .trail
        .iter()
        .filter(|t| t.time >= from && t.time < to)
        .count();
    assert_eq!(after, expected as u64);
}

fn filter_from_the_sidebar_and_the_tree(browser: &Browser, console: &Console) {
    let vigil = &console.vigil;
    let trail = &console.trail;
    search(browser, vigil, "/search?q=source_kind%3Acloudtrail");
    // Include: a top value of eventName.
    let field = |name: &str| {
        browser.element_by_script(
            "return [...document.querySelectorAll('aside.fields details')]
                 .find((d) => d.querySelector('summary').textContent.trim() === arguments[0]);",
            json!([name]),
        )
    };
    let open_field = |name: &str| {
        let details = field(name);
        let summary = browser.element_by_script(
            "return arguments[0].querySelector('summary')",
            json!([{"element-6066-11e4-a52e-4f735466cecf": details}]),
        );
        browser.click_element(&summary);
        details
    };
    let value_link = |details: &str, class: &str, value: &str| {
        browser.element_by_script(
            "return [...arguments[0].querySelectorAll('li')]
                 .find((li) => li.querySelector('a.value')?.textContent === arguments[2])
                 .querySelector('a.' + arguments[1]);",
            json!([{"element-6066-11e4-a52e-4f735466cecf": details}, class, value]),
        )
    };
    let names = open_field("eventName");
    browser.click_element(&value_link(&names, "value", "ConsoleLogin"));
    let url = browser.wait_for_url_where("the eventName filter", |url| {
        parameter(url, "q").is_some_and(|q| q.contains("eventName"))
    });
    let logins: Vec<&Trail> = trail.iter().filter(|t| t.name == "ConsoleLogin").collect();
    assert_eq!(shown_total(browser), logins.len() as u64, "{url}");
    // Exclude: one user's ARN.
    let arns = open_field("userIdentity.arn");
    browser.click_element(&value_link(&arns, "exclude", &arn("alice")));
    let url = browser.wait_for_url_where("the excluded ARN", |url| {
        parameter(url, "q").is_some_and(|q| q.contains("-userIdentity.arn"))
    });
    let expected = logins.iter().filter(|t| t.arn != arn("alice")).count();
    assert!(expected > 0 && expected < logins.len());
    assert_eq!(shown_total(browser), expected as u64, "{url}");
    let text = browser.eval(
        "return document.querySelector('table.events').innerText",
        json!([]),
    );
    assert!(!text.as_str().unwrap().contains(&arn("alice")), "{text}");

    // From the tree: the newest event opened, and its address followed.
    search(browser, vigil, "/search?q=source_kind%3Acloudtrail");
    browser.click("table.events td.event > details > summary");
    browser.text_showing(&["Raw JSON"]);
    page_done(browser, "search-event-expanded");
    let address = trail[0].address;
    let link = browser.element_by_script(
        "return [...document.querySelectorAll('table.events details[open] .tree a.filter')]
             .find((a) => a.textContent === arguments[0]);",
        json!([address]),
    );
    browser.click_element(&link);
    let url = browser.wait_for_url_where("the address filter", |url| {
        parameter(url, "q").is_some_and(|q| q.contains("sourceIPAddress"))
    });
    let expected = trail.iter().filter(|t| t.address == address).count();
    assert_eq!(shown_total(browser), expected as u64, "{url}");
}

/// Ticks the group of `rule` in the alerts page's bulk form; returns the group's token.
fn tick_group(browser: &Browser, rule: &str) -> String {
    let checkbox = browser.element_by_script(
        "return [...document.querySelectorAll('table.alert-groups tr.group')]
             .find((tr) => tr.querySelector('.rule-title').textContent === arguments[0])
             .querySelector('input[name=group]');",
        json!([rule]),
    );
    browser.click_element(&checkbox);
    browser
        .eval(
            "return arguments[0].checked ? arguments[0].value : null",
            json!([{"element-6066-11e4-a52e-4f735466cecf": checkbox}]),
        )
        .as_str()
        .expect("the group is ticked")
        .to_owned()
}

/// Chooses `value` in the bulk form's select `name`, as a click on an option would.
fn choose(browser: &Browser, name: &str, value: &str) {
    browser.click(&format!(
        "form.bulk select[name={name}] option[value={value}]"
    ));
}

fn triage_groups_in_bulk(browser: &Browser, vigil: &Vigil) {
    let apply = |expected: &str| {
        browser.click("form.bulk fieldset.bulk-actions button[type=submit]");
        browser.text_showing(&[expected]);
    };
    browser.goto(&vigil.url("/"));
    browser.text_showing(&[STOP_LOGGING_RULE]);
    tick_group(browser, STOP_LOGGING_RULE);
    choose(browser, "action", "acknowledge");
    apply("3 alerts acknowledged.");

    tick_group(browser, POD_EXEC_RULE);
    choose(browser, "action", "close");
    choose(browser, "reason", "false_positive");
    apply("2 alerts closed.");

    tick_group(browser, BRUTE_FORCE_RULE);
    choose(browser, "action", "assign");
    browser.type_into("form.bulk input[name=assign_to]", ANALYST);
    apply("1 alert assigned.");

    let by_rule = alerts_by_rule(vigil);
    for alert in &by_rule[STOP_LOGGING_RULE] {
        assert_eq!(alert["status"], "acknowledged", "{alert}");
    }
    for alert in &by_rule[POD_EXEC_RULE] {
        assert_eq!(alert["status"], "closed", "{alert}");
        assert_eq!(alert["reason"], "false_positive", "{alert}");
    }
    assert_eq!(by_rule[BRUTE_FORCE_RULE][0]["assignee"], ANALYST);
    assert_eq!(by_rule[BRUTE_FORCE_RULE][0]["status"], "open");
}

fn open_an_alert_and_pivot(browser: &Browser, vigil: &Vigil) {
    let alert = alerts_by_rule(vigil)[STOP_LOGGING_RULE][0].clone();
    let id = alert["id"].as_str().unwrap();
    browser.goto(&vigil.url("/"));
    browser.text_showing(&[STOP_LOGGING_RULE]);
    // A group opens to its alerts, each a link to its page.
    let summary = browser.element_by_script(
        "return [...document.querySelectorAll('table.alert-groups tr.group')]
             .find((tr) => tr.querySelector('.rule-title').textContent === arguments[0])
             .querySelector('summary');",
        json!([STOP_LOGGING_RULE]),
    );
    browser.click_element(&summary);
    browser.click(&format!("a[href='/alerts/{id}']"));
    browser.wait_for_url(&vigil.url(&format!("/alerts/{id}")));
    browser.text_showing(&[
        "Turning off CloudTrail blinds the audit trail",
        "attack.t1562.008",
        "Search around",
    ]);
    page_done(browser, "alert");

    // The alert's own events.
    browser.click("dl.facts a[href^='/search']");
    browser.wait_for_url_where("the alert's events", |url| url.contains("/search?q=id"));
    assert_eq!(shown_total(browser), 1);

    // Around it: mallory's address within 15 minutes, which finds the StopLogging call.
    browser.goto(&vigil.url(&format!("/alerts/{id}")));
    let around = browser.element_by_script(
        "return [...document.querySelectorAll('section.around a')]
             .find((a) => a.textContent.includes('192.0.2.66'));",
        json!([]),
    );
    browser.click_element(&around);
    let url = browser.wait_for_url_where("the search around", |url| url.contains("/search?"));
    let from = DateTime::parse_from_rfc3339(&parameter(&url, "from").unwrap()).unwrap();
    let to = DateTime::parse_from_rfc3339(&parameter(&url, "to").unwrap()).unwrap();
    assert_eq!(to - from, Span::minutes(30), "{url}");
    assert_eq!(shown_total(browser), 1, "{url}");
    browser.text_showing(&["StopLogging", "192.0.2.66"]);
}

/// Search, open a result and triage from the alerts list with the keyboard alone.
fn keyboard_only(browser: &Browser, vigil: &Vigil) {
    // From the alerts page to the search page's query box: the search page puts the focus
    // there itself.
    browser.goto(&vigil.url("/"));
    browser.text_showing(&["Recent alerts"]);
    browser.tab_to("header a[href='/search']", 10);
    browser.press(&[keys::ENTER]);
    browser.wait_for_url(&vigil.url("/search"));
    browser.tab_to("#q", 10);
    browser.press(&["source_kind:kubernetes-audit", keys::ENTER]);
    browser.wait_for_url_where("the typed search", |url| url.contains("kubernetes-audit"));
    assert_eq!(shown_total(browser), 12);
    let first_row = "table.events tbody tr:first-child td.event > details > summary";
    // Past the histogram's bars and the sidebar in one step: the skip link before them.
    browser.tab_to("a.skip-link", 20);
    browser.press(&[keys::ENTER]);
    let tabs = browser.tab_to(first_row, 3);
    browser.press(&[keys::ENTER]);
    assert_eq!(
        browser.eval(
            "return document.querySelector(arguments[0]).parentElement.open",
            json!([first_row])
        ),
        json!(true),
        "Enter did not open the event"
    );
    browser.press(&[keys::TAB]);
    assert!(
        browser.focus_matches("table.events details[open] .tree a.filter"),
        "after the opened event, the focus is on {}",
        browser.focused()
    );
    eprintln!("keyboard: {tabs} Tabs from the skip link to the first result");
    // The shortcuts of keys.js go there at once: j and k move through the rows, o opens
    // one, / goes back to the query box.
    browser.press(&["j", "j"]);
    let second_row = "table.events tbody tr:nth-child(2) td.event > details > summary";
    assert!(
        browser.focus_matches(second_row),
        "j j: {}",
        browser.focused()
    );
    browser.press(&["o"]);
    assert_eq!(
        browser.eval(
            "return document.querySelector(arguments[0]).parentElement.open",
            json!([second_row])
        ),
        json!(true),
        "o did not open the event"
    );
    browser.press(&["/"]);
    assert!(browser.focus_matches("#q"), "/: {}", browser.focused());

    // The bulk form: action, reason, assignee, the button, then the first group.
    browser.goto(&vigil.url("/"));
    browser.text_showing(&["With the selected alerts and groups"]);
    browser.tab_to("form.bulk select[name=action]", 40);
    browser.press(&[keys::DOWN, keys::DOWN]);
    assert_eq!(
        browser.eval("return document.activeElement.value", json!([])),
        json!("assign")
    );
    browser.press(&[keys::TAB]);
    assert!(
        browser.focus_matches("form.bulk select[name=reason]"),
        "{}",
        browser.focused()
    );
    browser.press(&[keys::TAB]);
    assert!(
        browser.focus_matches("form.bulk input[name=assign_to]"),
        "{}",
        browser.focused()
    );
    browser.press(&["kim"]);
    browser.press(&[keys::TAB]);
    assert!(
        browser.focus_matches("form.bulk fieldset button[type=submit]"),
        "{}",
        browser.focused()
    );
    browser.tab_to("form.bulk input[name=group]", 10);
    let token = browser
        .eval("return document.activeElement.value", json!([]))
        .as_str()
        .unwrap()
        .to_owned();
    browser.press(&[keys::SPACE]);
    assert_eq!(
        browser.eval("return document.activeElement.checked", json!([])),
        json!(true)
    );
    // Back to the assignee field and Enter, which submits the form.
    for _ in 0..20 {
        if browser.focus_matches("form.bulk input[name=assign_to]") {
            break;
        }
        browser.press_shift_tab();
    }
    assert!(
        browser.focus_matches("form.bulk input[name=assign_to]"),
        "{}",
        browser.focused()
    );
    browser.press(&[keys::ENTER]);
    browser.text_showing(&["assigned."]);
    let (rule_id, _group): (String, Value) = serde_json::from_str(&token).unwrap();
    let alerts = vigil.get_json("/api/v1/alerts?limit=200");
    let of_rule: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule_id"] == rule_id.as_str())
        .collect();
    assert!(!of_rule.is_empty());
    for alert in of_rule {
        assert_eq!(alert["assignee"], "kim", "{alert}");
    }
}
