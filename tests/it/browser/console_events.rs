//! The events the console test walks through: CloudTrail calls, Kubernetes audit events and
//! application logs over the last three hours, some of which our rules alert on.

use chrono::{DateTime, Duration as Span, SecondsFormat, Utc};
use serde_json::{json, Value};

pub const EVENT_NAMES: [&str; 5] = [
    "ConsoleLogin",
    "DescribeInstances",
    "GetObject",
    "AssumeRole",
    "ListBuckets",
];
pub const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
pub const ADDRESSES: [&str; 3] = ["198.51.100.7", "198.51.100.23", "203.0.113.40"];

/// One CloudTrail event of the fixture, as the test expects to find it.
#[derive(Debug, Clone)]
pub struct Trail {
    pub time: DateTime<Utc>,
    pub name: &'static str,
    pub arn: String,
    pub address: &'static str,
}

pub fn arn(user: &str) -> String {
    format!("arn:aws:iam::123456789012:user/{user}")
}

pub fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Thirty ordinary CloudTrail events over the last three hours, and three StopLogging calls
/// by mallory, which the logging-disabled rule alerts on.
pub fn cloudtrail(now: DateTime<Utc>) -> Vec<Trail> {
    let mut trail: Vec<Trail> = (0..30)
        .map(|i| Trail {
            time: now - Span::minutes(5) - Span::seconds(i * 331),
            // ConsoleLogin leads, so that it is among the sidebar's top values.
            name: if i % 3 == 0 {
                EVENT_NAMES[0]
            } else {
                EVENT_NAMES[1 + i as usize % (EVENT_NAMES.len() - 1)]
            },
            arn: arn(USERS[i as usize % USERS.len()]),
            address: ADDRESSES[i as usize % ADDRESSES.len()],
        })
        .collect();
    for minutes in [21, 43, 67] {
        trail.push(Trail {
            time: now - Span::minutes(minutes),
            name: "StopLogging",
            arn: arn("mallory"),
            address: "192.0.2.66",
        });
    }
    trail
}

pub fn cloudtrail_ndjson(trail: &[Trail]) -> String {
    trail
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let source = if event.name == "StopLogging" {
                "cloudtrail.amazonaws.com"
            } else {
                "ec2.amazonaws.com"
            };
            let mut record = json!({
                "eventVersion": "1.10",
                "userIdentity": {"type": "IAMUser", "arn": event.arn,
                                 "userName": event.arn.rsplit('/').next().unwrap()},
                "eventTime": stamp(event.time),
                "eventSource": source,
                "eventName": event.name,
                "awsRegion": if i % 2 == 0 { "eu-west-1" } else { "us-east-1" },
                "sourceIPAddress": event.address,
                "userAgent": "aws-cli/2.15.0",
                "requestParameters": {"name": "management-trail"},
                "eventID": format!("console-{i}"),
            });
            if i % 7 == 3 {
                record["errorCode"] = json!("AccessDenied");
            }
            record.to_string() + "\n"
        })
        .collect()
}

/// Twelve Kubernetes audit events, two of them an exec into a pod by a person.
pub fn kubernetes_audit(now: DateTime<Utc>) -> Value {
    let items: Vec<Value> = (0..12)
        .map(|i| {
            let exec = i == 3 || i == 8;
            let (verb, resource) = match i % 3 {
                _ if exec => ("create", "pods"),
                0 => ("get", "pods"),
                1 => ("list", "secrets"),
                _ => ("update", "configmaps"),
            };
            let mut object = json!({"resource": resource, "namespace": "payments",
                                    "name": format!("api-{i}"), "apiVersion": "v1"});
            if exec {
                object["subresource"] = json!("exec");
            }
            let at = now - Span::minutes(2) - Span::minutes(i * 7);
            json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": format!("console-audit-{i}"), "stage": "ResponseComplete",
                "requestURI": format!("/api/v1/namespaces/payments/{resource}/api-{i}"),
                "verb": verb,
                "user": {"username": if exec { "mallory@example.com" } else { "deploy@example.com" },
                         "groups": ["system:authenticated"]},
                "sourceIPs": ["10.0.4.7"],
                "userAgent": "kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8",
                "objectRef": object,
                "responseStatus": {"metadata": {}, "code": 200},
                "requestReceivedTimestamp": at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "stageTimestamp": at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "annotations": {"authorization.k8s.io/decision": "allow"}
            })
        })
        .collect();
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
}

/// Ten served requests and, within a minute, five failed logins for one user from one
/// address: the brute-force correlation's threshold.
pub fn app_logs(now: DateTime<Utc>) -> String {
    let line = |at: DateTime<Utc>, level: &str, message: &str, event: &str, user: &str| {
        json!({
            "asctime": at.format("%Y-%m-%d %H:%M:%S,%3f").to_string(),
            "levelname": level,
            "name": "usermgmt.auth",
            "message": message,
            "event": event,
            "username": user,
            "remote_addr": "203.0.113.66",
        })
        .to_string()
            + "\n"
    };
    let mut body = String::new();
    for i in 0..10 {
        let at = now - Span::minutes(10) - Span::minutes(i * 9);
        body += &line(
            at,
            "INFO",
            "Profile viewed",
            "profile_view",
            USERS[i as usize % 4],
        );
    }
    for i in 0..5 {
        let at = now - Span::minutes(2) + Span::seconds(i * 10);
        body += &line(at, "WARNING", "Login failed", "login_failed", "mallory");
    }
    body
}
