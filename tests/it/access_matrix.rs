//! The role matrix: every route Vigil serves, pages and API, crossed with no credentials,
//! each role's session, each token scope and the bootstrap token, against the real binary.
//!
//! The expectations are written out here from the issue's role table, not computed from
//! `vigil_access::GRANTS`, so a wrong grant or a wrong route entry fails this test. Two
//! further checks keep the table whole: every route in the sources (`.route("PATH", ...)`
//! with its methods) must be in `vigil_access::routes::ROUTES` and the other way round, and
//! every entry of `ROUTES` must have an expectation here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::StatusCode;
use serde_json::Value;
use vigil_access::{AccessDb, Role, Secret};

use crate::common::{wait_for, Vigil, TOKEN};

const PASSWORD: &str = "matrix password for everyone";
const FIREHOSE_KEY: &str = "matrix-firehose-access-key";

/// Who makes a request. People sign in to pages with a session cookie; tokens call the API
/// with `Authorization: Bearer`. Each surface is also tried with the other's credentials,
/// which it must ignore: the API takes no cookies (so it has no CSRF exposure), pages no
/// bearer tokens.
const PAGE_CALLERS: &[&str] = &[
    "nobody",
    "viewer",
    "analyst",
    "rule-author",
    "admin",
    "bearer-on-page",
];
const API_CALLERS: &[&str] = &[
    "nobody",
    "token:ingest",
    "token:ingest:cloudtrail",
    "token:read",
    "token:triage",
    "token:admin",
    "bootstrap",
    "cookie-on-api",
];

/// Who may: from the issue's table. `viewer`: search, read alerts; `analyst`: as viewer,
/// plus triage; `rule-author`: as analyst, plus rules; `admin`: all, plus users, tokens and
/// the audit log. Tokens: `read` as a viewer, `triage` as an analyst, `admin` everything,
/// `ingest` posting events only; the bootstrap token is an admin token.
const READERS: &[&str] = &[
    "viewer",
    "analyst",
    "rule-author",
    "admin",
    "token:read",
    "token:triage",
    "token:admin",
    "bootstrap",
];
const TRIAGERS: &[&str] = &[
    "analyst",
    "rule-author",
    "admin",
    "token:triage",
    "token:admin",
    "bootstrap",
];
const ADMINS: &[&str] = &["admin", "token:admin", "bootstrap"];
/// Who reloads, enables and disables rules: rule authors and admins (no token scope but
/// admin carries the rule-author level).
const RULE_MANAGERS: &[&str] = &["rule-author", "admin", "token:admin", "bootstrap"];
/// Who keeps saved searches: people from analyst up (they are pages only).
const SAVERS: &[&str] = &["analyst", "rule-author", "admin"];
const SIGNED_IN: &[&str] = &[
    "viewer",
    "analyst",
    "rule-author",
    "admin",
    "token:ingest",
    "token:ingest:cloudtrail",
    "token:read",
    "token:triage",
    "token:admin",
    "bootstrap",
];
const ANY_SENDER: &[&str] = &["token:ingest", "token:admin", "bootstrap"];
const CLOUDTRAIL_SENDERS: &[&str] = &[
    "token:ingest",
    "token:ingest:cloudtrail",
    "token:admin",
    "bootstrap",
];

/// Who gets the route's success status.
#[derive(Clone, Copy)]
enum Who {
    /// Everyone, with or without credentials: the route decides for itself.
    Everyone,
    Only(&'static [&'static str]),
}

#[derive(Clone, Copy)]
enum Body {
    None,
    Ndjson(&'static str),
    Json(&'static str),
    Form(&'static str),
}

/// One route's expectation: the request to make (`{alert}`, `{who}` and `{csrf}` are filled
/// in), the status when it is allowed, and who is allowed. A refusal is 401 (API) or a 303
/// to `/login` (pages) without credentials, and 403 with credentials that do not allow it.
struct Expect {
    method: &'static str,
    route: &'static str,
    uri: &'static str,
    body: Body,
    allowed: u16,
    who: Who,
}

const fn expect(
    method: &'static str,
    route: &'static str,
    uri: &'static str,
    body: Body,
    allowed: u16,
    who: Who,
) -> Expect {
    Expect {
        method,
        route,
        uri,
        body,
        allowed,
        who,
    }
}

use Who::{Everyone, Only};

const CLOUDTRAIL_LINE: &str = "{\"eventVersion\":\"1.09\",\"eventTime\":\"2026-11-28T10:00:00Z\",\"eventSource\":\"cloudtrail.amazonaws.com\",\"eventName\":\"DescribeTrails\",\"awsRegion\":\"us-east-1\",\"eventID\":\"matrix-{who}\"}\n";
const EVENT_LIST: &str = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"matrix-{who}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"alice"},"objectRef":{"resource":"pods","namespace":"default"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-11-28T11:00:00.000000Z","stageTimestamp":"2026-11-28T11:00:00.010000Z"}]}"#;

const BACKTEST_JSON: &str = r#"{"yaml":"title: matrix\nlogsource: {product: aws}\ndetection: {sel: {eventName: x}, condition: sel}\n","from":"now-1h","to":"now"}"#;
const BACKTEST_FORM: &str = "rule=&yaml=title%3A+matrix%0Alogsource%3A+%7Bproduct%3A+aws%7D%0Adetection%3A+%7Bsel%3A+%7BeventName%3A+x%7D%2C+condition%3A+sel%7D%0A&from=now-1h&to=now&csrf={csrf}";

/// Every route in `ROUTES`, with its expectation.
const TABLE: &[Expect] = &[
    // Senders.
    expect(
        "POST",
        "/api/v1/ingest/{source}",
        "/api/v1/ingest/cloudtrail",
        Body::Ndjson(CLOUDTRAIL_LINE),
        202,
        Only(CLOUDTRAIL_SENDERS),
    ),
    expect(
        "POST",
        "/api/v1/webhooks/kubernetes-audit/{source}",
        "/api/v1/webhooks/kubernetes-audit/prod-cluster",
        Body::Json(EVENT_LIST),
        200,
        Only(ANY_SENDER),
    ),
    // Firehose checks its own access key, which none of these callers sends.
    expect(
        "POST",
        "/ingest/firehose",
        "/ingest/firehose",
        Body::Json("{}"),
        401,
        Everyone,
    ),
    // Search and alerts.
    expect(
        "GET",
        "/api/v1/search",
        "/api/v1/search?q=*",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "GET",
        "/api/v1/search/histogram",
        "/api/v1/search/histogram?q=*",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "GET",
        "/api/v1/search/facets",
        "/api/v1/search/facets?field=eventName",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "GET",
        "/api/v1/alerts",
        "/api/v1/alerts",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "GET",
        "/api/v1/alerts/{id}",
        "/api/v1/alerts/{alert}",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "PATCH",
        "/api/v1/alerts/{id}",
        "/api/v1/alerts/{alert}",
        Body::Json(r#"{"note":"seen by {who}"}"#),
        200,
        Only(TRIAGERS),
    ),
    expect(
        "GET",
        "/api/v1/alerts/{id}/events",
        "/api/v1/alerts/{alert}/events",
        Body::None,
        200,
        Only(READERS),
    ),
    // No playbooks are configured here: the list is empty and a run is not found, for
    // those allowed; the gate refuses the others first.
    expect(
        "GET",
        "/api/v1/alerts/{id}/playbook-runs",
        "/api/v1/alerts/{alert}/playbook-runs",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "POST",
        "/api/v1/playbook-runs/{id}/approve",
        "/api/v1/playbook-runs/{alert}:p:0/approve",
        Body::None,
        404,
        Only(TRIAGERS),
    ),
    expect(
        "POST",
        "/api/v1/playbook-runs/{id}/undo",
        "/api/v1/playbook-runs/{alert}:p:0/undo",
        Body::None,
        404,
        Only(TRIAGERS),
    ),
    expect(
        "GET",
        "/api/v1/quarantine",
        "/api/v1/quarantine",
        Body::None,
        200,
        Only(READERS),
    ),
    // Backtests (an analyst's right, as the grant table has it). A pasted rule over the last
    // hour starts a job; nobody has a job of this id, so the allowed are told there is none.
    expect(
        "POST",
        "/api/v1/rules/backtest",
        "/api/v1/rules/backtest",
        Body::Json(BACKTEST_JSON),
        202,
        Only(TRIAGERS),
    ),
    expect(
        "GET",
        "/api/v1/rules/backtest/{job}",
        "/api/v1/rules/backtest/no-such-job",
        Body::None,
        404,
        Only(TRIAGERS),
    ),
    // Rules.
    expect(
        "GET",
        "/api/v1/rules",
        "/api/v1/rules",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "POST",
        "/api/v1/rules/reload",
        "/api/v1/rules/reload",
        Body::None,
        200,
        Only(RULE_MANAGERS),
    ),
    expect(
        "POST",
        "/api/v1/rules/{id}/enable",
        "/api/v1/rules/no-such-rule/enable",
        Body::None,
        404,
        Only(RULE_MANAGERS),
    ),
    expect(
        "POST",
        "/api/v1/rules/{id}/disable",
        "/api/v1/rules/no-such-rule/disable",
        Body::None,
        404,
        Only(RULE_MANAGERS),
    ),
    // Notifications.
    expect(
        "GET",
        "/api/v1/notifications",
        "/api/v1/notifications?state=dead",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "POST",
        "/api/v1/notifications/{id}/resend",
        "/api/v1/notifications/no-such-notification/resend",
        Body::None,
        404,
        Only(TRIAGERS),
    ),
    // Silences: this process notifies nobody, so it keeps none; the allowed reach the
    // handler, which says so.
    expect(
        "GET",
        "/api/v1/silences",
        "/api/v1/silences",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "POST",
        "/api/v1/silences",
        "/api/v1/silences",
        Body::Json(r#"{"matchers":{"rule_id":"r1"},"comment":"c","duration":"1h"}"#),
        404,
        Only(TRIAGERS),
    ),
    expect(
        "POST",
        "/api/v1/silences/{id}/expire",
        "/api/v1/silences/1/expire",
        Body::None,
        404,
        Only(TRIAGERS),
    ),
    // Identity.
    expect(
        "GET",
        "/api/v1/whoami",
        "/api/v1/whoami",
        Body::None,
        200,
        Only(SIGNED_IN),
    ),
    expect(
        "GET",
        "/api/v1/users",
        "/api/v1/users",
        Body::None,
        200,
        Only(ADMINS),
    ),
    expect(
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        Body::Json(r#"{"name":"made-by-{who}","role":"viewer"}"#),
        201,
        Only(ADMINS),
    ),
    expect(
        "POST",
        "/api/v1/users/{name}/disable",
        "/api/v1/users/disable-{who}/disable",
        Body::None,
        200,
        Only(ADMINS),
    ),
    expect(
        "POST",
        "/api/v1/users/{name}/password",
        "/api/v1/users/victim/password",
        Body::Json(r#"{"password":"a new password by {who}"}"#),
        200,
        Only(ADMINS),
    ),
    expect(
        "GET",
        "/api/v1/tokens",
        "/api/v1/tokens",
        Body::None,
        200,
        Only(ADMINS),
    ),
    expect(
        "POST",
        "/api/v1/tokens",
        "/api/v1/tokens",
        Body::Json(r#"{"name":"made-by-{who}","scopes":"read"}"#),
        201,
        Only(ADMINS),
    ),
    expect(
        "DELETE",
        "/api/v1/tokens/{name}",
        "/api/v1/tokens/revoke-{who}",
        Body::None,
        200,
        Only(ADMINS),
    ),
    expect(
        "GET",
        "/api/v1/audit",
        "/api/v1/audit",
        Body::None,
        200,
        Only(ADMINS),
    ),
    // Pages.
    expect("GET", "/", "/", Body::None, 200, Only(READERS)),
    expect(
        "GET",
        "/alerts/{id}",
        "/alerts/{alert}",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "POST",
        "/alerts/{id}",
        "/alerts/{alert}",
        Body::Form("action=note&note=seen&csrf={csrf}"),
        303,
        Only(TRIAGERS),
    ),
    expect(
        "POST",
        "/alerts/{id}/playbook-runs/{run}/approve",
        "/alerts/{alert}/playbook-runs/{alert}:p:0/approve",
        Body::Form("csrf={csrf}"),
        404,
        Only(TRIAGERS),
    ),
    expect(
        "POST",
        "/alerts/{id}/playbook-runs/{run}/undo",
        "/alerts/{alert}/playbook-runs/{alert}:p:0/undo",
        Body::Form("csrf={csrf}"),
        404,
        Only(TRIAGERS),
    ),
    expect(
        "POST",
        "/alerts/bulk",
        "/alerts/bulk",
        Body::Form("action=assign&assign_to={who}&id={alert}&csrf={csrf}"),
        303,
        Only(TRIAGERS),
    ),
    expect(
        "GET",
        "/search",
        "/search?q=*",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "GET",
        "/search/export",
        "/search/export?q=*&format=csv",
        Body::None,
        200,
        Only(READERS),
    ),
    // Its stream is left once the headers are in; dropping it ends the tail.
    expect(
        "GET",
        "/search/tail",
        "/search/tail?q=*",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "GET",
        "/search/live",
        "/search/live?q=*",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "GET",
        "/searches",
        "/searches",
        Body::None,
        200,
        Only(SAVERS),
    ),
    expect(
        "POST",
        "/searches",
        "/searches",
        Body::Form("name=by+{who}&q=eventName%3A*&csrf={csrf}"),
        303,
        Only(SAVERS),
    ),
    // Nobody has a search of this id: the allowed reach the handler, which finds none.
    expect(
        "POST",
        "/searches/{id}/delete",
        "/searches/999999/delete",
        Body::Form("csrf={csrf}"),
        404,
        Only(SAVERS),
    ),
    expect("GET", "/audit", "/audit", Body::None, 200, Only(ADMINS)),
    expect(
        "GET",
        "/notifications",
        "/notifications",
        Body::None,
        200,
        Only(READERS),
    ),
    // No dead letter has this id: the allowed reach the handler, which finds none.
    expect(
        "POST",
        "/notifications/{id}/resend",
        "/notifications/no-such-notification/resend",
        Body::Form("csrf={csrf}"),
        404,
        Only(TRIAGERS),
    ),
    expect(
        "GET",
        "/silences",
        "/silences",
        Body::None,
        200,
        Only(READERS),
    ),
    expect(
        "POST",
        "/silences",
        "/silences",
        Body::Form("csrf={csrf}&matchers=rule_id%3Dr1&comment=c&duration=1h"),
        404,
        Only(TRIAGERS),
    ),
    expect(
        "POST",
        "/silences/{id}/expire",
        "/silences/1/expire",
        Body::Form("csrf={csrf}"),
        404,
        Only(TRIAGERS),
    ),
    expect("GET", "/health", "/health", Body::None, 200, Only(READERS)),
    expect("GET", "/rules", "/rules", Body::None, 200, Only(READERS)),
    // No rule has this id: the allowed reach the handler, which finds none.
    expect(
        "GET",
        "/rules/{id}",
        "/rules/no-such-rule",
        Body::None,
        404,
        Only(READERS),
    ),
    expect(
        "POST",
        "/rules/reload",
        "/rules/reload",
        Body::Form("csrf={csrf}"),
        303,
        Only(RULE_MANAGERS),
    ),
    expect(
        "POST",
        "/rules/{id}/state",
        "/rules/no-such-rule/state",
        Body::Form("csrf={csrf}&enabled=false"),
        404,
        Only(RULE_MANAGERS),
    ),
    expect(
        "GET",
        "/rules/backtest",
        "/rules/backtest",
        Body::None,
        200,
        Only(TRIAGERS),
    ),
    expect(
        "POST",
        "/rules/backtest",
        "/rules/backtest",
        Body::Form(BACKTEST_FORM),
        303,
        Only(TRIAGERS),
    ),
    expect(
        "GET",
        "/rules/backtest/{job}",
        "/rules/backtest/no-such-job",
        Body::None,
        404,
        Only(TRIAGERS),
    ),
    expect(
        "GET",
        "/rules/attack",
        "/rules/attack",
        Body::None,
        200,
        Only(READERS),
    ),
    expect("GET", "/login", "/login", Body::None, 200, Everyone),
    // A correct sign-in, which is for everyone.
    expect(
        "POST",
        "/login",
        "/login",
        Body::Form("username=signer&password=matrix+password+for+everyone"),
        303,
        Everyone,
    ),
    // Checked to end the session it was sent with.
    expect(
        "POST",
        "/logout",
        "/logout",
        Body::Form("csrf={csrf}"),
        303,
        Only(&["viewer", "analyst", "rule-author", "admin"]),
    ),
    expect(
        "GET",
        "/static/vigil.css",
        "/static/vigil.css",
        Body::None,
        200,
        Everyone,
    ),
    expect(
        "GET",
        "/static/tail.js",
        "/static/tail.js",
        Body::None,
        200,
        Everyone,
    ),
    expect(
        "GET",
        "/static/keys.js",
        "/static/keys.js",
        Body::None,
        200,
        Everyone,
    ),
    expect("GET", "/healthz", "/healthz", Body::None, 200, Everyone),
    expect(
        "GET",
        "/api/v1/openapi.json",
        "/api/v1/openapi.json",
        Body::None,
        200,
        Everyone,
    ),
    expect("GET", "/metrics", "/metrics", Body::None, 200, Everyone),
];

/// The credentials of each caller.
struct Credentials {
    bearer: BTreeMap<&'static str, String>,
    /// Role name to (session id, CSRF token).
    sessions: BTreeMap<&'static str, (String, String)>,
}

/// A client that shows redirects instead of following them and keeps no cookies.
fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn role_of(name: &str) -> Role {
    name.parse().unwrap()
}

/// A name safe in user and token names and URLs.
fn slug(who: &str) -> String {
    who.replace(':', "-")
}

fn setup(data: &Path) -> Credentials {
    let db = AccessDb::open_in(data).unwrap();
    let password = Secret::new(PASSWORD);
    let mut sessions = BTreeMap::new();
    for role in ["viewer", "analyst", "rule-author", "admin"] {
        let name = format!("matrix-{role}");
        db.add_user(&name, role_of(role), &password).unwrap();
        let session = db.start_session(&name, None, chrono::Utc::now()).unwrap();
        sessions.insert(role, (session.id.expose().to_owned(), session.csrf));
    }
    db.add_user("signer", Role::Viewer, &password).unwrap();
    db.add_user("victim", Role::Viewer, &password).unwrap();
    let mut bearer = BTreeMap::new();
    for who in API_CALLERS.iter().filter(|who| who.starts_with("token:")) {
        let scopes = who.strip_prefix("token:").unwrap();
        let token = db
            .create_token(&slug(scopes), &scopes.parse().unwrap(), None, "matrix")
            .unwrap();
        bearer.insert(*who, token.secret.expose().to_owned());
    }
    bearer.insert("bootstrap", TOKEN.to_owned());
    // What each caller's allowed request acts on, so none undoes another's.
    let everyone: BTreeSet<&str> = API_CALLERS.iter().chain(PAGE_CALLERS).copied().collect();
    for who in everyone {
        db.add_user(&format!("disable-{}", slug(who)), Role::Viewer, &password)
            .unwrap();
        db.create_token(
            &format!("revoke-{}", slug(who)),
            &"read".parse().unwrap(),
            None,
            "matrix",
        )
        .unwrap();
    }
    Credentials { bearer, sessions }
}

/// Raises one alert (a CloudTrail trail stopped) and returns its id.
fn raise_alert(vigil: &Vigil) -> String {
    let line = "{\"eventVersion\":\"1.09\",\"userIdentity\":{\"type\":\"IAMUser\",\"userName\":\"ops\"},\"eventTime\":\"2026-11-28T10:00:00Z\",\"eventSource\":\"cloudtrail.amazonaws.com\",\"eventName\":\"StopLogging\",\"awsRegion\":\"us-east-1\",\"sourceIPAddress\":\"198.51.100.7\",\"eventID\":\"matrix-stop\",\"eventType\":\"AwsApiCall\"}\n";
    let response = vigil.post_ndjson("cloudtrail", line);
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    wait_for("the alert", Duration::from_secs(60), || {
        let alerts = vigil.get_json("/api/v1/alerts");
        alerts["alerts"][0]["id"].as_str().map(str::to_owned)
    })
}

/// The request `who` makes for `entry`; `session` is the page session to use, if any.
fn request(
    vigil: &Vigil,
    client: &Client,
    entry: &Expect,
    who: &str,
    alert: &str,
    credentials: &Credentials,
    session: Option<&(String, String)>,
) -> RequestBuilder {
    let fill = |text: &str| {
        text.replace("{alert}", alert)
            .replace("{who}", &slug(who))
            .replace("{csrf}", session.map_or("", |(_, csrf)| csrf.as_str()))
    };
    let method = reqwest::Method::from_bytes(entry.method.as_bytes()).unwrap();
    let mut builder = client.request(method, vigil.url(&fill(entry.uri)));
    builder = match entry.body {
        Body::None => builder,
        Body::Ndjson(text) => builder
            .header("content-type", "application/x-ndjson")
            .body(fill(text)),
        Body::Json(text) => builder
            .header("content-type", "application/json")
            .body(fill(text)),
        Body::Form(text) => builder
            .header("content-type", "application/x-www-form-urlencoded")
            .body(fill(text)),
    };
    if let Some(bearer) = credentials.bearer.get(who) {
        builder = builder.bearer_auth(bearer);
    }
    if who == "bearer-on-page" {
        builder = builder.bearer_auth(TOKEN);
    }
    if who == "cookie-on-api" {
        let (id, _) = &credentials.sessions["admin"];
        builder = builder.header("cookie", format!("vigil_session={id}"));
    }
    if let Some((id, _)) = session {
        builder = builder.header("cookie", format!("vigil_session={id}"));
    }
    builder
}

#[test]
fn every_route_answers_each_caller_as_the_role_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let credentials = setup(&data);
    let vigil = Vigil::start_with_env(&data, &[("VIGIL_FIREHOSE__ACCESS_KEY", FIREHOSE_KEY)]);
    let alert = raise_alert(&vigil);
    let client = client();
    let db = AccessDb::open_in(&data).unwrap();

    let mut wrong = Vec::new();
    for entry in TABLE {
        let route = vigil_access::routes::lookup(entry.method, entry.route)
            .unwrap_or_else(|| panic!("{} {} is not in ROUTES", entry.method, entry.route));
        let page = route.surface == vigil_access::routes::Surface::Page;
        let callers = if page { PAGE_CALLERS } else { API_CALLERS };
        for &who in callers {
            // Sign-out ends the session it is sent with, and sign-in the one it replaces: each
            // role does these with a session of its own, so the others stay signed in.
            let session = if !page {
                None
            } else if matches!(entry.route, "/logout" | "/login")
                && entry.method == "POST"
                && credentials.sessions.contains_key(who)
            {
                let user = format!("matrix-{who}");
                let fresh = db.start_session(&user, None, chrono::Utc::now()).unwrap();
                Some((fresh.id.expose().to_owned(), fresh.csrf))
            } else {
                credentials.sessions.get(who).cloned()
            };
            let response = request(
                &vigil,
                &client,
                entry,
                who,
                &alert,
                &credentials,
                session.as_ref(),
            )
            .send()
            .unwrap();
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let allowed = match entry.who {
                Everyone => true,
                Only(list) => list.contains(&who),
            };
            let credentialed = !matches!(who, "nobody" | "bearer-on-page" | "cookie-on-api");
            let expected = match (allowed, credentialed, page) {
                (true, _, _) => entry.allowed,
                (false, false, false) => 401,
                (false, false, true) => 303,
                (false, true, _) => 403,
            };
            let mut fine = status == expected;
            if fine && !allowed && expected == 303 {
                fine = location == "/login";
            }
            if fine && allowed && entry.route == "/logout" {
                // The session it was sent with no longer opens a page.
                let (id, _) = session.as_ref().unwrap();
                let after = client
                    .get(vigil.url("/"))
                    .header("cookie", format!("vigil_session={id}"))
                    .send()
                    .unwrap();
                fine = after.status() == StatusCode::SEE_OTHER;
            }
            if !fine {
                let body = response.text().unwrap_or_default();
                wrong.push(format!(
                    "{} {} as {who}: got {status} {location}, expected {expected}: {}",
                    entry.method,
                    entry.uri,
                    body.chars().take(160).collect::<String>()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // What the allowed requests did is recorded under each caller's name.
    let whoami = |bearer: &str| -> Value {
        client
            .get(vigil.url("/api/v1/whoami"))
            .bearer_auth(bearer)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let shipper = whoami(&credentials.bearer["token:ingest:cloudtrail"]);
    assert_eq!(shipper["actor"], "token:ingest-cloudtrail");
    assert_eq!(shipper["scopes"], "ingest:cloudtrail");
    assert_eq!(whoami(TOKEN)["actor"], "bootstrap-token");
    let detail = vigil.get_json(&format!("/api/v1/alerts/{alert}"));
    let authors: BTreeSet<&str> = detail["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|note| note["author"].as_str())
        .collect();
    for author in [
        "matrix-analyst",
        "matrix-rule-author",
        "matrix-admin",
        "token:triage",
        "token:admin",
        "bootstrap-token",
    ] {
        assert!(authors.contains(author), "{author} in {authors:?}");
    }
    assert_eq!(authors.len(), 6, "{authors:?}");
}

#[test]
fn a_method_the_table_lacks_is_the_routers_405_and_an_unknown_path_404() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let vigil = Vigil::start(&data);
    let client = client();
    let put = client
        .put(vigil.url("/api/v1/search"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    let missing = client
        .get(vigil.url("/api/v1/nothing-here"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

/// Every `(method, path)` the sources route: `.route("PATH", get(..).post(..))` in the
/// workspace's `*/src` and `src` files, outside inline test modules.
fn routes_in_sources() -> Result<BTreeSet<(String, String)>, Vec<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        let src = if dir.file_name().is_some_and(|n| n == "src") {
            dir
        } else {
            dir.join("src")
        };
        if src.is_dir() && !src.starts_with(root.join("target")) {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut found = BTreeSet::new();
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let text = &text[..inline_tests(&text).unwrap_or(text.len())];
        for unsupported in [".nest(", ".route_service(", ".nest_service("] {
            if text.contains(unsupported) {
                problems.push(format!(
                    "{}: `{unsupported}` hides routes from this scan; use .route",
                    file.display()
                ));
            }
        }
        for (at, _) in text.match_indices(".route(") {
            let rest = text[at + ".route(".len()..].trim_start();
            let Some((path, after)) = rest.strip_prefix('"').and_then(|r| r.split_once('"')) else {
                problems.push(format!(
                    "{}: a route whose path is not a literal: {}",
                    file.display(),
                    rest.chars().take(40).collect::<String>()
                ));
                continue;
            };
            let methods = route_methods(call_argument(after));
            if methods.is_empty() {
                problems.push(format!(
                    "{}: {path} routes no method this scan knows",
                    file.display()
                ));
            }
            for method in methods {
                found.insert((method, path.to_owned()));
            }
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
            out.push(path);
        }
    }
}

/// Where a file's `#[cfg(test)] mod tests {` starts, if it has one.
fn inline_tests(text: &str) -> Option<usize> {
    text.match_indices("#[cfg(test)]")
        .map(|(at, _)| at)
        .find(|&at| {
            text[at..]
                .lines()
                .skip(1)
                .map(str::trim)
                .find(|line| !line.starts_with("#[") && !line.starts_with("//"))
                .is_some_and(|line| line.starts_with("mod ") && line.ends_with('{'))
        })
}

/// The rest of a call's arguments after its first: up to the `)` that closes the call.
fn call_argument(after_path: &str) -> &str {
    let mut depth = 1usize;
    for (at, c) in after_path.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &after_path[..at];
                }
            }
            _ => {}
        }
    }
    after_path
}

/// The HTTP methods a method router names: `get(`, `post(`, ..., also as `.post(` and
/// `axum::routing::post(`, but not inside a longer name such as `get_alert(`.
fn route_methods(argument: &str) -> BTreeSet<String> {
    let mut methods = BTreeSet::new();
    for name in [
        "get", "post", "put", "patch", "delete", "head", "options", "any",
    ] {
        let call = format!("{name}(");
        for (at, _) in argument.match_indices(&call) {
            let before = argument[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            methods.insert(name.to_uppercase());
        }
    }
    methods
}

#[test]
fn every_route_in_the_sources_is_in_the_table_and_has_an_expectation() {
    let in_sources =
        routes_in_sources().unwrap_or_else(|problems| panic!("{}", problems.join("\n")));
    let in_table: BTreeSet<(String, String)> = vigil_access::routes::ROUTES
        .iter()
        .map(|route| (route.method.to_owned(), route.path.to_owned()))
        .collect();
    let missing: Vec<_> = in_sources.difference(&in_table).collect();
    assert!(
        missing.is_empty(),
        "routes served but missing from vigil_access::routes::ROUTES (so refused to everyone): {missing:?}"
    );
    let stale: Vec<_> = in_table.difference(&in_sources).collect();
    assert!(
        stale.is_empty(),
        "ROUTES lists routes nothing serves: {stale:?}"
    );
    let expected: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|e| (e.method.to_owned(), e.route.to_owned()))
        .collect();
    assert_eq!(expected.len(), TABLE.len(), "a route is in TABLE twice");
    let untested: Vec<_> = in_table.difference(&expected).collect();
    assert!(
        untested.is_empty(),
        "routes without an expectation in this test's TABLE: {untested:?}"
    );
}

#[test]
fn the_route_scan_reads_methods_and_refuses_what_it_cannot_read() {
    let argument = call_argument(", get(get_alert).patch(patch_alert))\n .route(\"/x\", post(y))");
    assert_eq!(argument, ", get(get_alert).patch(patch_alert)");
    assert_eq!(
        route_methods(argument),
        BTreeSet::from(["GET".to_owned(), "PATCH".to_owned()])
    );
    assert_eq!(
        route_methods(", axum::routing::post(logout)"),
        BTreeSet::from(["POST".to_owned()])
    );
    assert!(route_methods(", forget(x)").is_empty());
}
