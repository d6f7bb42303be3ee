//! Kubernetes audit events through the real binary: webhook batches and a tailed audit log
//! rotated mid-way, every event indexed once, and the exec rule firing.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use crate::common::{wait_for, Vigil, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `rules/kubernetes/k8s_pod_exec_by_user.yml`.
const POD_EXEC_RULE: &str = "e479c62a-6213-4128-9b29-b87658a928ca";

fn audit_event(
    id: &str,
    verb: &str,
    resource: &str,
    subresource: Option<&str>,
    user: &str,
) -> Value {
    let mut object_ref =
        json!({"resource": resource, "namespace": "payments", "name": "api-1", "apiVersion": "v1"});
    if let Some(sub) = subresource {
        object_ref["subresource"] = json!(sub);
    }
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": id, "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/payments/{resource}/api-1"),
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.4.7"],
        "userAgent": "kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8",
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-28T11:00:00.000000Z",
        "stageTimestamp": "2026-11-28T11:00:00.010000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}
    })
}

fn append_lines(path: &std::path::Path, events: &[Value]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for event in events {
        writeln!(file, "{event}").unwrap();
    }
}

#[test]
fn webhook_and_rotated_audit_log_index_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("audit");
    fs::create_dir(&logs).unwrap();
    fs::write(
        dir.path().join("vigil.toml"),
        format!(
            "[[sources.files]]\nname = \"apiserver-audit\"\npreset = \"kubernetes-audit\"\npaths = [\"{}/audit*.log\"]\npoll_interval_ms = 50\n",
            logs.display()
        ),
    )
    .unwrap();
    let audit_log = logs.join("audit.log");
    append_lines(
        &audit_log,
        &[
            audit_event("file-1", "get", "pods", None, "alice@example.com"),
            audit_event("file-2", "list", "configmaps", None, "alice@example.com"),
        ],
    );
    let vigil = Vigil::start(&dir.path().join("data"));

    let list = json!({
        "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
        "items": [
            audit_event("hook-1", "get", "pods", None, "system:serviceaccount:kube-system:replicaset-controller"),
            audit_event("hook-2", "create", "pods", Some("exec"), "mallory@example.com"),
            audit_event("hook-3", "list", "secrets", None, "mallory@example.com"),
        ]
    });
    let response = vigil
        .client
        .post(vigil.url("/api/v1/webhooks/kubernetes-audit/prod-cluster"))
        .bearer_auth(TOKEN)
        .json(&list)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().unwrap()["accepted"], 3);

    wait_for("the first file lines", Duration::from_secs(30), || {
        (vigil.search_total("source_name:apiserver-audit") == 2).then_some(())
    });
    // Rotation by rename while lines are still being written, then a new file.
    append_lines(
        &audit_log,
        &[audit_event(
            "file-3",
            "get",
            "pods",
            None,
            "bob@example.com",
        )],
    );
    fs::rename(&audit_log, logs.join("audit-2026-11-28T11.log")).unwrap();
    append_lines(
        &audit_log,
        &[audit_event(
            "file-4",
            "delete",
            "pods",
            None,
            "bob@example.com",
        )],
    );

    wait_for("every event", Duration::from_secs(30), || {
        (vigil.search_total("source_kind:kubernetes-audit") == 7).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(vigil.search_total("source_kind:kubernetes-audit"), 7);
    for id in [
        "file-1", "file-2", "file-3", "file-4", "hook-1", "hook-2", "hook-3",
    ] {
        assert_eq!(vigil.search_total(&format!("auditID:{id}")), 1, "{id}");
    }

    let alerts = wait_for("the exec alert", Duration::from_secs(30), || {
        let alerts = vigil.get_json("/api/v1/alerts");
        let exec: Vec<Value> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule_id"] == POD_EXEC_RULE)
            .cloned()
            .collect();
        (!exec.is_empty()).then_some(exec)
    });
    assert_eq!(alerts.len(), 1, "only the exec event matches: {alerts:?}");
    assert_eq!(alerts[0]["source"]["name"], "prod-cluster");
}
