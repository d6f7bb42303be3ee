//! Realistic generated records: the demo's CloudTrail records and Kubernetes audit events with
//! their values varied (ids, users, addresses, regions, accounts, namespaces, resource names,
//! times, and for read-only calls the API called), so that no two are alike. Shared by the
//! benchmarks that measure detection and the pipeline on records of real size (about 1.3 KB and
//! 0.9 KB).

use serde_json::{Map, Value};

use super::Rng;

pub const DEMO_CLOUDTRAIL: &str = include_str!("../../demo/cloudtrail.ndjson");
pub const DEMO_KUBERNETES: &str = include_str!("../../demo/kubernetes-audit.ndjson");

const ACCOUNTS: &[&str] = &[
    "123456789012",
    "210987654321",
    "555501234567",
    "999912340000",
];
const REGIONS: &[&str] = &[
    "us-east-1",
    "eu-west-1",
    "us-west-2",
    "ap-southeast-2",
    "eu-central-1",
];
const USERS: &[&str] = &[
    "alice.nguyen",
    "deploy-bot",
    "priya.shah",
    "bob",
    "carol.diaz",
    "terraform-ci",
    "erin.okafor",
    "backup-svc",
    "daniel.kim",
    "frank",
];
/// The calls that make most of a real trail: reads by services and consoles.
const READ_CALLS: &[(&str, &str)] = &[
    ("ec2.amazonaws.com", "DescribeInstances"),
    ("s3.amazonaws.com", "GetBucketAcl"),
    ("sts.amazonaws.com", "GetCallerIdentity"),
    ("kms.amazonaws.com", "Decrypt"),
    ("iam.amazonaws.com", "ListRoles"),
    ("ec2.amazonaws.com", "DescribeSecurityGroups"),
    ("logs.amazonaws.com", "DescribeLogGroups"),
    ("lambda.amazonaws.com", "ListFunctions20150331"),
    ("secretsmanager.amazonaws.com", "GetSecretValue"),
    ("cloudtrail.amazonaws.com", "LookupEvents"),
    ("rds.amazonaws.com", "DescribeDBInstances"),
    ("ssm.amazonaws.com", "GetParameter"),
];
const NAMESPACES: &[&str] = &[
    "payments",
    "default",
    "checkout",
    "monitoring",
    "search",
    "ingress-nginx",
    "data",
    "staging",
];

impl Rng {
    fn ipv4(&mut self) -> String {
        let n = self.next();
        match n % 4 {
            0 => format!(
                "10.{}.{}.{}",
                (n >> 8) % 64,
                (n >> 16) % 256,
                (n >> 24) % 254 + 1
            ),
            1 => format!("198.51.100.{}", (n >> 8) % 254 + 1),
            2 => format!("203.0.113.{}", (n >> 8) % 254 + 1),
            _ => format!("192.0.2.{}", (n >> 8) % 254 + 1),
        }
    }

    fn upper(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }

    fn lower_hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap())
            .collect()
    }

    /// A time on the demo's day, and its microseconds.
    fn time_of_day(&mut self) -> (String, u32) {
        let second = self.below(86_400);
        let time = format!(
            "2026-11-28T{:02}:{:02}:{:02}",
            second / 3600,
            second / 60 % 60,
            second % 60
        );
        (time, self.below(1_000_000) as u32)
    }
}

/// The JSON objects of an NDJSON text, one a line; blank lines are skipped.
pub fn objects(ndjson: &str) -> Vec<Map<String, Value>> {
    ndjson
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn text<'a>(doc: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    doc.get(key).and_then(Value::as_str)
}

fn set(doc: &mut Map<String, Value>, key: &str, value: String) {
    doc.insert(key.into(), Value::String(value));
}

pub fn cloudtrail_events(count: usize, rng: &mut Rng) -> Vec<String> {
    let templates = objects(DEMO_CLOUDTRAIL);
    (0..count)
        .map(|_| {
            let mut doc = templates[rng.below(templates.len())].clone();
            set(&mut doc, "eventID", rng.uuid());
            for key in ["requestID", "sharedEventID"] {
                if doc.contains_key(key) {
                    set(&mut doc, key, rng.uuid());
                }
            }
            set(&mut doc, "eventTime", format!("{}Z", rng.time_of_day().0));
            if rng.below(3) == 0 {
                set(
                    &mut doc,
                    "awsRegion",
                    REGIONS[rng.skewed(REGIONS.len())].into(),
                );
            }
            if text(&doc, "sourceIPAddress")
                .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
            {
                set(&mut doc, "sourceIPAddress", rng.ipv4());
            }
            let read_api_call = doc.get("readOnly") == Some(&Value::Bool(true))
                && text(&doc, "eventType") == Some("AwsApiCall");
            if read_api_call && rng.below(2) == 0 {
                let (source, name) = READ_CALLS[rng.skewed(READ_CALLS.len())];
                set(&mut doc, "eventSource", source.into());
                set(&mut doc, "eventName", name.into());
            }
            if let Some(Value::Object(identity)) = doc.get_mut("userIdentity") {
                if text(identity, "type") == Some("IAMUser") {
                    let user = USERS[rng.skewed(USERS.len())];
                    set(identity, "userName", user.into());
                    set(
                        identity,
                        "arn",
                        format!("arn:aws:iam::123456789012:user/{user}"),
                    );
                    set(identity, "principalId", format!("AIDA{}", rng.upper(17)));
                }
                if text(identity, "type") == Some("AssumedRole") {
                    if let Some((role, _session)) =
                        text(identity, "arn").and_then(|arn| arn.rsplit_once('/'))
                    {
                        let session = format!("{}@example.com", USERS[rng.skewed(USERS.len())]);
                        let arn = format!("{role}/{session}");
                        set(identity, "arn", arn);
                    }
                }
                if let Some(key) = text(identity, "accessKeyId") {
                    let prefix = key[..4.min(key.len())].to_owned();
                    set(
                        identity,
                        "accessKeyId",
                        format!("{prefix}{}", rng.upper(16)),
                    );
                }
            }
            let line = serde_json::to_string(&doc).unwrap();
            // Several accounts, as an organisation's trail holds.
            let account = ACCOUNTS[rng.skewed(ACCOUNTS.len())];
            line.replace("123456789012", account)
        })
        .collect()
}

pub fn kubernetes_events(count: usize, rng: &mut Rng) -> Vec<String> {
    let templates = objects(DEMO_KUBERNETES);
    // Reads by people and services at the Metadata level make most of a real audit log; the
    // rest (writes, lease renewals, Request-level records with their bodies, anonymous
    // probes) are drawn from all the demo's shapes.
    let size = |doc: &Map<String, Value>| serde_json::to_string(doc).unwrap().len();
    let common: Vec<&Map<String, Value>> = templates
        .iter()
        .filter(|doc| {
            let user = doc
                .get("user")
                .and_then(|user| text(user.as_object()?, "username"));
            size(doc) < 1000 && user != Some("system:anonymous")
        })
        .collect();
    (0..count)
        .map(|_| {
            let mut doc = if rng.below(4) == 0 {
                templates[rng.below(templates.len())].clone()
            } else {
                common[rng.below(common.len())].clone()
            };
            set(&mut doc, "auditID", rng.uuid());
            doc.insert("sourceIPs".into(), Value::from(vec![rng.ipv4()]));
            let (time, micros) = rng.time_of_day();
            let later = (micros + 200 + rng.below(20_000) as u32).min(999_999);
            set(
                &mut doc,
                "requestReceivedTimestamp",
                format!("{time}.{micros:06}Z"),
            );
            set(&mut doc, "stageTimestamp", format!("{time}.{later:06}Z"));
            if let Some(Value::Object(user)) = doc.get_mut("user") {
                if text(user, "username").is_some_and(|name| !name.starts_with("system:")) {
                    let name = format!("{}@example.com", USERS[rng.skewed(USERS.len())]);
                    set(user, "username", name);
                }
            }
            let mut uri = text(&doc, "requestURI").unwrap_or_default().to_owned();
            if let Some(Value::Object(object)) = doc.get_mut("objectRef") {
                if let Some(old) = text(object, "namespace").map(str::to_owned) {
                    if !old.starts_with("kube-") {
                        let new = NAMESPACES[rng.skewed(NAMESPACES.len())];
                        uri = uri.replace(
                            &format!("/namespaces/{old}/"),
                            &format!("/namespaces/{new}/"),
                        );
                        set(object, "namespace", new.into());
                    }
                }
                let resource = text(object, "resource").unwrap_or_default();
                let generated =
                    matches!(resource, "pods" | "deployments" | "secrets" | "configmaps");
                if let Some(old) = text(object, "name").map(str::to_owned) {
                    if generated && !old.starts_with("kube-") {
                        let base = old.rsplit_once('-').map_or(old.as_str(), |(base, _)| base);
                        let new = format!("{base}-{}", rng.lower_hex(5));
                        uri = uri.replace(&format!("/{old}"), &format!("/{new}"));
                        set(object, "name", new);
                    }
                }
                if object.contains_key("uid") {
                    set(object, "uid", rng.uuid());
                }
            }
            if doc.contains_key("requestURI") {
                set(&mut doc, "requestURI", uri);
            }
            serde_json::to_string(&doc).unwrap()
        })
        .collect()
}
