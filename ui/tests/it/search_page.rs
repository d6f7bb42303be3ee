//! The search page through the real page routes behind the real gate: the time range in the
//! URL, the histogram's zoom links, the field sidebar's filters, the rows' summaries and
//! trees, query errors, and that attacker text stays text and audit events stay hidden.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Map;
use vigil_access::Role;
use vigil_event::{Event, EventId, LogSource, Record, Source, AUDIT_SOURCE};

use crate::pages::{fixture, Fixture};
use axum::http::StatusCode;

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, hour, minute, 0).unwrap()
}

fn event(n: u32, kind: &str, time: DateTime<Utc>, record: &str) -> Event {
    Event {
        id: EventId::derive("search page test", &[&n.to_le_bytes()]),
        time,
        received: time,
        source: Source {
            kind: kind.into(),
            name: format!("{kind}-source"),
        },
        logsource: LogSource::default(),
        record: Record::json(record).unwrap(),
        fields: Map::new(),
    }
}

/// Text that must never reach a page as markup.
const HOSTILE: [&str; 5] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(2)>",
    "javascript:alert(3)",
    "<svg onload=alert(4)>",
    "</style><style>*{background:url(//evil)}",
];

/// The fixture's event (a CloudTrail StopLogging at 09:00) plus one of each kind, an audit
/// event, and a record whose keys and values are hostile.
async fn searchable() -> Fixture {
    let f = fixture().await;
    let hostile_record = serde_json::json!({
        "msg_kind": "hostile",
        HOSTILE[0]: HOSTILE[1],
        "nested": { HOSTILE[3]: HOSTILE[2], "css": HOSTILE[4] },
        "quote": "x\" OR source_kind:*",
    })
    .to_string();
    let events = [
        event(
            1,
            "cloudtrail",
            at(9, 30),
            r#"{"eventName":"ConsoleLogin","userIdentity":{"arn":"arn:aws:iam::1:user/bob"},"sourceIPAddress":"203.0.113.9","awsRegion":"eu-west-1","errorCode":"Failed authentication"}"#,
        ),
        event(
            2,
            "kubernetes-audit",
            at(10, 15),
            r#"{"verb":"get","objectRef":{"resource":"secrets","namespace":"payments","name":"db-creds"},"user":{"username":"system:serviceaccount:payments:builder"}}"#,
        ),
        event(
            3,
            "flask-app",
            at(10, 45),
            r#"{"levelname":"WARNING","message":"login failed for user","username":"mallory","remote_addr":"198.51.100.7","status":401}"#,
        ),
        event(
            4,
            AUDIT_SOURCE,
            at(11, 0),
            r#"{"action":"auth.login","actor":"secret-admin-audit-entry"}"#,
        ),
        event(5, "custom", at(11, 30), &hostile_record),
    ];
    f.store.index_events(&events).unwrap();
    f.store.commit().unwrap();
    f
}

/// Every `href` in `html`, its entities undone.
fn hrefs(html: &str) -> Vec<String> {
    html.match_indices("href=\"")
        .map(|(at, m)| {
            let rest = &html[at + m.len()..];
            unescape(&rest[..rest.find('"').unwrap()])
        })
        .collect()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The decoded value of parameter `name` in a URL.
fn param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| decode(value))
    })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The search links on a page whose query is `q`.
fn links_with_query(html: &str, q: &str) -> Vec<String> {
    hrefs(html)
        .into_iter()
        .filter(|h| h.starts_with("/search?") && param(h, "q").as_deref() == Some(q))
        .collect()
}

/// How many events a page says match.
fn total(html: &str) -> u64 {
    let marker = "<p class=\"muted\">";
    let at = html.find(marker).expect("a result count") + marker.len();
    html[at..].split(' ').next().unwrap().parse().unwrap()
}

fn assert_no_markup(page: &str) {
    for text in HOSTILE.iter().filter(|t| t.contains(['<', '"'])) {
        assert!(!page.contains(text), "{text} appears raw in the page");
    }
    assert!(!page.contains("<img") && !page.contains("<svg onload"));
    // The one kind of script a page holds: its own files from this origin (scripts.rs).
    assert!(
        page.match_indices("<script")
            .all(|(at, _)| page[at..].starts_with(r#"<script src="/static/"#)),
        "{page}"
    );
    assert!(!page.contains("<style>"));
    // Links stay on this origin: a path, or a fragment of this page.
    assert!(
        hrefs(page)
            .iter()
            .all(|h| h.starts_with('/') || h.starts_with('#')),
        "{page}"
    );
}

#[tokio::test]
async fn the_time_range_is_kept_in_the_url_and_bad_times_are_explained() {
    let f = searchable().await;
    let (status, page) = f
        .get("/search?q=*&from=2026-11-28T09:15:00Z&to=2026-11-28T10:30:00Z")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // ConsoleLogin at 09:30 and the Kubernetes event at 10:15; not 09:00 or 10:45.
    assert_eq!(total(&page), 2, "{page}");
    assert!(page.contains(r#"name="from" value="2026-11-28T09:15:00Z""#));
    assert!(page.contains(r#"name="to" value="2026-11-28T10:30:00Z""#));
    // The presets keep the query and set a relative range.
    let presets: Vec<String> = links_with_query(&page, "*")
        .into_iter()
        .filter(|h| param(h, "to").as_deref() == Some("now"))
        .filter_map(|h| param(&h, "from"))
        .collect();
    assert_eq!(
        presets,
        ["now-15m", "now-1h", "now-24h", "now-7d", "now-30d"]
    );
    let (status, page) = f.get("/search?q=*&from=now-15m&to=now").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(total(&page), 0, "{page}");
    assert!(page.contains("aria-current=\"true\">15 min"), "{page}");

    for (uri, said) in [
        (
            "/search?q=*&from=yesterday",
            "from: `yesterday` is not a time",
        ),
        ("/search?q=*&to=now-5x", "to: `now-5x` is not a time"),
        (
            "/search?q=*&from=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            "from: `&lt;script&gt;",
        ),
    ] {
        let (status, page) = f.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {page}");
        assert!(page.contains(said), "{uri}: {page}");
        assert_no_markup(&page);
    }
}

#[tokio::test]
async fn histogram_bars_link_to_their_bucket() {
    let f = searchable().await;
    let (status, page) = f
        .get("/search?q=source_kind:cloudtrail&from=2026-11-28T08:00:00Z&to=2026-11-28T12:00:00Z")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let svg = &page[page.find("<svg").expect("a histogram")..page.find("</svg>").unwrap()];
    assert!(!svg.contains("style="), "{svg}");
    let bars = links_with_query(svg, "source_kind:cloudtrail");
    assert!(bars.len() > 10, "{svg}");
    // The bar over 09:30 links to exactly its bucket, and its title gives the count.
    let nine_thirty = at(9, 30);
    let bar = bars
        .iter()
        .find(|h| {
            let from: DateTime<Utc> = param(h, "from").unwrap().parse().unwrap();
            let to: DateTime<Utc> = param(h, "to").unwrap().parse().unwrap();
            from <= nine_thirty && nine_thirty < to && to - from < chrono::Duration::hours(1)
        })
        .expect("a bar over 09:30");
    let from = param(bar, "from").unwrap();
    assert!(
        svg.contains(&format!("<title>1 event from {from}")),
        "{svg}"
    );
    let (status, zoomed) = f.get(bar).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(total(&zoomed), 1, "{zoomed}");
    assert!(zoomed.contains("ConsoleLogin") && !zoomed.contains("org-trail"));
}

#[tokio::test]
async fn sidebar_values_add_a_filter_or_its_negation_and_hostile_values_stay_one_term() {
    let f = searchable().await;
    let (status, page) = f.get("/search?q=*").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // The analyst is no admin: the audit event is not among them.
    assert_eq!(total(&page), 5, "{page}");
    let aside = &page[page.find("<aside").unwrap()..page.find("</aside>").unwrap()];
    let adds: Vec<String> = hrefs(aside).iter().filter_map(|h| param(h, "q")).collect();
    assert!(
        adds.contains(&r#"eventName:"ConsoleLogin""#.to_owned()),
        "{adds:?}"
    );
    assert!(
        adds.contains(&r#"-eventName:"ConsoleLogin""#.to_owned()),
        "{adds:?}"
    );
    assert!(
        adds.contains(&r#"source_kind:"flask-app""#.to_owned()),
        "{adds:?}"
    );
    // The value holding a quote and `OR` is one escaped phrase, and finds only its event.
    let quoted = r#"quote:"x\" OR source_kind:*""#;
    assert!(adds.contains(&quoted.to_owned()), "{adds:?}");
    let (status, only) = f.get(&format!("/search?q={}", encode(quoted))).await;
    assert_eq!(status, StatusCode::OK, "{only}");
    assert_eq!(total(&only), 1, "{only}");
    let (_, without) = f
        .get(&format!(
            "/search?q={}",
            encode(r#"-eventName:"ConsoleLogin""#)
        ))
        .await;
    assert_eq!(total(&without), 4, "{without}");
    // A keyword field's value, quoted, still matches the whole value.
    let (_, flask) = f
        .get(&format!(
            "/search?q={}",
            encode(r#"source_kind:"flask-app""#)
        ))
        .await;
    assert_eq!(total(&flask), 1, "{flask}");
    // Filters add to the query there is.
    let (_, page) = f.get("/search?q=a+OR+b").await;
    let aside = &page[page.find("<aside").unwrap()..page.find("</aside>").unwrap()];
    assert!(hrefs(aside)
        .iter()
        .all(|h| param(h, "q").unwrap().starts_with("(a OR b) ")));
    assert_no_markup(&page);
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text of a row's summary: the `<summary>` in the `<td class="event">` after `marker`.
fn row_summary<'a>(page: &'a str, marker: &str) -> &'a str {
    let table = page
        .find("<table class=\"events\"")
        .expect("a results table");
    let row = table
        + page[table..]
            .find(marker)
            .unwrap_or_else(|| panic!("{marker}: {page}"));
    let start = page[..row].rfind("<tr>").unwrap();
    let summary = start + page[start..].find("<summary>").unwrap();
    &page[summary..summary + page[summary..].find("</summary>").unwrap()]
}

#[tokio::test]
async fn rows_summarise_each_kind_and_the_tree_values_are_filter_links() {
    let f = searchable().await;
    let (_, page) = f.get("/search?q=*").await;
    let trail = row_summary(&page, "arn:aws:iam::1:user/bob");
    for part in [
        "ConsoleLogin",
        "arn:aws:iam::1:user/bob",
        "203.0.113.9",
        "eu-west-1",
        "Failed authentication",
    ] {
        assert!(trail.contains(part), "{part}: {trail}");
    }
    let kube = row_summary(&page, "payments/db-creds");
    for part in [
        "get",
        "secrets",
        "payments/db-creds",
        "system:serviceaccount:payments:builder",
    ] {
        assert!(kube.contains(part), "{part}: {kube}");
    }
    let app = row_summary(&page, "login failed for user");
    for part in [
        "WARNING",
        "login failed for user",
        "mallory",
        "198.51.100.7",
    ] {
        assert!(app.contains(part), "{part}: {app}");
    }
    // The tree: nested values link to their path, a quoted value.
    let trees: String = page
        .split("<div class=\"tree\">")
        .skip(1)
        .map(|tree| &tree[..tree.find("</div>").unwrap()])
        .collect();
    let links: Vec<String> = hrefs(&trees).iter().filter_map(|h| param(h, "q")).collect();
    for wanted in [
        r#"userIdentity.arn:"arn:aws:iam::1:user/bob""#,
        r#"objectRef.namespace:"payments""#,
        r#"remote_addr:"198.51.100.7""#,
        "status:401",
    ] {
        assert!(links.contains(&wanted.to_owned()), "{wanted}: {links:?}");
    }
    let (_, narrowed) = f
        .get(&format!(
            "/search?q={}",
            encode(r#"objectRef.namespace:"payments""#)
        ))
        .await;
    assert_eq!(total(&narrowed), 1, "{narrowed}");
    let (_, narrowed) = f.get("/search?q=status%3A401").await;
    assert_eq!(total(&narrowed), 1, "{narrowed}");
    // Chosen columns.
    let (_, page) = f.get("/search?q=*&columns=awsRegion,verb").await;
    assert!(page.contains("<th>awsRegion</th><th>verb</th>"), "{page}");
    assert!(page.contains("<td>eu-west-1</td>"), "{page}");
    assert_no_markup(&page);
}

#[tokio::test]
async fn a_query_error_points_at_its_position() {
    let f = searchable().await;
    let (status, page) = f
        .get(&format!("/search?q={}", encode("é bytes:[1 TO")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("Query error"), "{page}");
    let marker = page.find("class=\"query-marker\"").expect("a marker");
    let pre = &page[marker..page[marker..].find("</pre>").unwrap() + marker];
    let lines: Vec<&str> = pre.split('\n').collect();
    // The query ends where a range bound was expected: the marker sits just past its end,
    // counted in characters, not bytes.
    assert!(lines[0].ends_with("é bytes:[1 TO"), "{pre}");
    assert_eq!(
        lines[1],
        format!("{}^", " ".repeat("é bytes:[1 TO".chars().count()))
    );
    let (status, page) = f.get(&format!("/search?q={}", encode(HOSTILE[1]))).await;
    assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST);
    assert_no_markup(&page);
}

#[tokio::test]
async fn a_viewer_sees_no_audit_events_anywhere_on_the_page() {
    let f = searchable().await;
    let viewer = f.user("vera", Role::Viewer).await;
    for uri in [
        "/search?q=*",
        "/search?q=actor:*",
        "/search?q=*&from=2026-11-28T10:59:00Z&to=2026-11-28T11:01:00Z",
    ] {
        let (status, page) = f.get_as(&viewer, uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(!page.contains("secret-admin-audit-entry"), "{uri}: {page}");
        assert!(!page.contains(">actor<"), "{uri}: {page}");
        assert!(!page.contains(AUDIT_SOURCE), "{uri}: {page}");
        assert!(!page.contains("auth.login"), "{uri}: {page}");
        // The histogram counts none of them either.
        assert!(
            !page.contains("<title>1 event from 2026-11-28T11:00"),
            "{page}"
        );
    }
    // An admin does see them, so the check above can fail.
    let admin = f.user("ada", Role::Admin).await;
    let (_, page) = f.get_as(&admin, "/search?q=actor:*").await;
    assert_eq!(total(&page), 1, "{page}");
    assert!(page.contains("secret-admin-audit-entry"), "{page}");
    assert!(page.contains(">actor<"), "{page}");
}

/// Gets `uri` with a fresh session of `role`, giving the status, content type and body.
async fn download(f: &Fixture, name: &str, role: Role, uri: &str) -> (StatusCode, String, String) {
    let session = f.user(name, role).await;
    let (status, headers, body) = crate::pages::send(
        &f.app,
        axum::http::Method::GET,
        uri,
        &[("cookie", &session)],
        None,
    )
    .await;
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, body)
}

#[tokio::test]
async fn exports_stream_ndjson_and_csv_with_formulas_kept_as_text() {
    let f = searchable().await;
    let formula = event(
        6,
        "cloudtrail",
        at(9, 45),
        r#"{"eventName":"=cmd|' /C calc'!A0","userIdentity":{"arn":"@SUM(1+1)"},"sourceIPAddress":"+1","awsRegion":"-2","errorCode":"a \"quoted\", comma"}"#,
    );
    f.store
        .index_events(std::slice::from_ref(&formula))
        .unwrap();
    f.store.commit().unwrap();
    // The search page links to its export.
    let (_, page) = f.get("/search?q=*&from=2026-11-28").await;
    assert!(hrefs(&page).contains(&"/search/export?format=csv&q=%2A&from=2026-11-28".to_owned()));

    let (status, kind, body) = download(
        &f,
        "nina",
        Role::Analyst,
        "/search/export?format=ndjson&q=*",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kind, "application/x-ndjson");
    let lines: Vec<&str> = body.lines().collect();
    // Five events of the fixture without the audit one, and the formula event.
    assert_eq!(lines.len(), 6, "{body}");
    // Newest first: the formula event (09:45) is the fourth.
    assert_eq!(lines[3], serde_json::to_string(&formula).unwrap());
    for line in &lines {
        let event: Event = serde_json::from_str(line).unwrap();
        assert_ne!(event.source.kind, AUDIT_SOURCE);
    }

    let (status, kind, body) = download(
        &f,
        "carl",
        Role::Analyst,
        "/search/export?format=csv&q=source_kind:cloudtrail",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kind, "text/csv; charset=utf-8");
    let rows: Vec<&str> = body.lines().collect();
    assert_eq!(rows.len(), 4, "{body}");
    assert!(rows[0].starts_with(r#""time","source_kind","source_name","id","event","#));
    let row = rows[1];
    assert!(row.contains(&format!(r#""{}""#, formula.id)), "{row}");
    for cell in [
        r#""'=cmd|' /C calc'!A0""#,
        r#""'@SUM(1+1)""#,
        r#""'+1""#,
        r#""'-2""#,
        r#""a ""quoted"", comma""#,
    ] {
        assert!(row.contains(cell), "{cell} in {row}");
    }
    assert!(!body.contains(",\"=") && !body.contains(",\"@") && !body.contains(",\"+"));
}

#[tokio::test]
async fn exports_page_through_every_match_and_refuse_bad_requests() {
    let f = fixture().await;
    let events: Vec<Event> = (0..1100)
        .map(|n| {
            event(
                100 + n,
                "flask-app",
                at(10, 0) + chrono::Duration::seconds(n.into()),
                &format!(r#"{{"message":"line {n}"}}"#),
            )
        })
        .collect();
    f.store.index_events(&events).unwrap();
    f.store.commit().unwrap();
    let (status, _, body) = download(
        &f,
        "nina",
        Role::Analyst,
        "/search/export?q=source_kind:flask-app",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.lines().count(), 1100);
    let ids: std::collections::BTreeSet<&str> = body.lines().collect();
    assert_eq!(ids.len(), 1100, "no event twice");
    // The page shows the newest hundred and links to the next ones.
    let (_, page) = f.get("/search?q=source_kind:flask-app").await;
    assert!(
        page.contains("line 1099") && !page.contains("line 999<"),
        "{page}"
    );
    let older = hrefs(&page)
        .into_iter()
        .find(|h| h.contains("&cursor="))
        .expect("a link to older events");
    let (status, page) = f.get(&older).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("line 999<") && !page.contains("line 1099"),
        "{page}"
    );
    for (uri, said) in [
        ("/search/export?format=xml", "unknown format"),
        ("/search/export?q=a:[1", "query:"),
        (
            "/search/export?from=yesterday",
            "from: `yesterday` is not a time",
        ),
    ] {
        let (status, _, body) = download(&f, &format!("u{}", uri.len()), Role::Analyst, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body.contains(said), "{uri}: {body}");
    }
}

#[tokio::test]
async fn a_viewer_exports_no_audit_events() {
    let f = searchable().await;
    for format in ["ndjson", "csv"] {
        let uri = format!("/search/export?format={format}&q=*");
        let (status, _, body) = download(&f, &format!("v-{format}"), Role::Viewer, &uri).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !body.contains(AUDIT_SOURCE) && !body.contains("secret-admin-audit-entry"),
            "{body}"
        );
        let (_, _, body) = download(&f, &format!("a-{format}"), Role::Admin, &uri).await;
        assert!(body.contains(AUDIT_SOURCE), "{body}");
    }
}
