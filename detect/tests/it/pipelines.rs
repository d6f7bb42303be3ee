//! Field-mapping pipelines: rules written with another schema's field names match Vigil's
//! events through a pipeline, and only through it.

use serde_json::{json, Map, Value};
use vigil_detect::{parse_rules_with, Engine, LoadOptions, Pipeline, RuleSetBuilder};
use vigil_event::LogSource;

fn doc(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("{other}"),
    }
}

fn shipped(name: &str) -> Pipeline {
    let path = format!("{}/../pipelines/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    Pipeline::parse(&text, &path).unwrap_or_else(|err| panic!("{err}"))
}

fn engine(rule: &str, pipelines: Vec<Pipeline>) -> Engine {
    let options = LoadOptions {
        pipelines,
        ..LoadOptions::default()
    };
    let rules = parse_rules_with(rule, "rule.yml", &options)
        .into_result()
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    Engine::new(rules)
}

/// A line as ingest's access-log parser gives it (see ingest/src/parse/access_log.rs).
fn access_line() -> Map<String, Value> {
    doc(json!({
        "client_address": "203.0.113.7",
        "remote_user": "alice",
        "time": "28/Nov/2026:10:15:32 +0000",
        "request": "GET /cgi-bin/../../../etc/passwd?x=1 HTTP/1.1",
        "method": "GET",
        "target": "/cgi-bin/../../../etc/passwd?x=1",
        "path": "/cgi-bin/../../../etc/passwd",
        "query": "x=1",
        "protocol": "HTTP/1.1",
        "status": 404,
        "bytes": 153,
        "user_agent": "Nikto/2.5.0",
        "message": "203.0.113.7 - alice [28/Nov/2026:10:15:32 +0000] \"GET /cgi-bin/../../../etc/passwd?x=1 HTTP/1.1\" 404 153 \"-\" \"Nikto/2.5.0\"",
    }))
}

const WEB_RULE: &str = "\
title: Traversal that failed
logsource:
  category: webserver
detection:
  selection:
    cs-method: GET
    cs-uri-query|contains: '/../../'
    cs-uri-stem|endswith: /passwd
    sc-status: 404
    c-ip|cidr: 203.0.113.0/24
    cs-user-agent|contains: nikto
    cs-version: HTTP/1.1
    sc-bytes|lt: 1000
    cs-referer: null
  condition: selection
";

#[test]
fn webserver_rules_match_parsed_access_logs_through_the_pipeline_only() {
    let web = LogSource::new(None, None, Some("webserver"));
    let event = access_line();
    let with = engine(WEB_RULE, vec![shipped("access-log.yml")]);
    assert_eq!(with.matching(&web, &event), [0]);
    let without = engine(WEB_RULE, Vec::new());
    assert!(without.matching(&web, &event).is_empty());
    // Any one condition failing still fails the rule.
    let mut other = event.clone();
    other.insert("status".into(), json!(200));
    assert!(with.matching(&web, &other).is_empty());
}

#[test]
fn kubernetes_short_names_reach_the_audit_paths() {
    let rule = "\
title: Pod with host path and added capabilities
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    verb: create
    objectRef.resource: pods
    apiGroup: ''
    hostPath: '*'
    capabilities: SYS_ADMIN
  condition: selection
";
    let k8s = LogSource::new(Some("kubernetes"), Some("audit"), None);
    let event = doc(json!({
        "kind": "Event",
        "verb": "create",
        "objectRef": {"resource": "pods", "apiGroup": "", "namespace": "default"},
        "requestObject": {"spec": {
            "volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "root", "hostPath": {"path": "/"}}],
            "containers": [
                {"name": "a"},
                {"name": "b", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN"]}}}
            ]
        }}
    }));
    let with = engine(rule, vec![shipped("kubernetes-audit.yml")]);
    assert_eq!(with.matching(&k8s, &event), [0]);
    assert!(engine(rule, Vec::new()).matching(&k8s, &event).is_empty());
    let mut no_host_path = event.clone();
    no_host_path["requestObject"]["spec"]["volumes"] = json!([{"name": "cfg"}]);
    assert!(with.matching(&k8s, &no_host_path).is_empty());
}

#[test]
fn every_shipped_pipeline_loads() {
    let dir = format!("{}/../pipelines", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yml") {
            shipped(&name);
            count += 1;
        }
    }
    assert!(count >= 4, "one pipeline per source");
}

#[test]
fn mappings_apply_only_to_their_logsource_and_rename_field_references() {
    let pipeline = Pipeline::parse(
        "name: t\nmappings:\n  - logsource: {product: aws}\n    fields: {user: userIdentity.userName, who: requestParameters.userName}\n",
        "t.yml",
    )
    .unwrap();
    let rules = "\
title: Same user on both sides
logsource: {product: aws, service: cloudtrail}
detection:
  sel:
    user|fieldref: who
  condition: sel
---
title: Other product
logsource: {product: gcp}
detection:
  sel:
    user: bob
  condition: sel
";
    let options = LoadOptions {
        pipelines: vec![pipeline],
        ..LoadOptions::default()
    };
    let engine = Engine::new(
        parse_rules_with(rules, "r.yml", &options)
            .into_result()
            .unwrap(),
    );
    let event = doc(json!({
        "userIdentity": {"userName": "Bob"},
        "requestParameters": {"userName": "bob"},
        "user": "bob",
    }));
    let hits: Vec<usize> = engine
        .rules()
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.matches(&event))
        .map(|(i, _)| i)
        .collect();
    // The gcp rule kept `user` as written.
    assert_eq!(hits, [0, 1]);
    let mut other = event.clone();
    other["requestParameters"]["userName"] = json!("carol");
    other.insert("user".into(), json!("carol"));
    assert!(!engine.rules()[0].matches(&other));
}

#[test]
fn require_adds_a_search_to_the_rules_of_its_logsource() {
    let pipeline = Pipeline::parse(
        "name: t\nmappings:\n  - logsource: {category: webserver}\n    require:\n      source|startswith: nginx\n",
        "t.yml",
    )
    .unwrap();
    let options = LoadOptions {
        pipelines: vec![pipeline],
        ..LoadOptions::default()
    };
    let mut builder = RuleSetBuilder::new();
    builder.add_parsed(parse_rules_with(
        "title: Any GET\nlogsource: {category: webserver}\ndetection: {sel: {method: GET}, condition: sel}\n",
        "r.yml",
        &options,
    ));
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    let web = LogSource::new(None, None, Some("webserver"));
    let nginx = doc(json!({"method": "GET", "source": "nginx-edge"}));
    let other = doc(json!({"method": "GET", "source": "apache"}));
    assert_eq!(built.engine.matching(&web, &nginx), [0]);
    assert!(built.engine.matching(&web, &other).is_empty());
}
