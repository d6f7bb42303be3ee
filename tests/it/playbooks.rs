//! Playbooks against moto's IAM and EC2, through the real AWS SDK clients and `endpoint_url`:
//! an access key created by an attacker is deactivated (end to end, through the real binary
//! and Vigil's own rule), an approval-mode run waits until approved through the API, an
//! isolated instance has only the quarantine group and undo restores its groups, and a
//! dry run changes nothing.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tempfile::TempDir;
use vigil_event::{Alert, Event, EventId, Level, LogSource, Record, Source};
use vigil_respond::{Playbook, RespondConfig, Responder, RunState};

use crate::cloudwatch::Moto;
use crate::common::{wait_for, Vigil, TOKEN};

const REGION: &str = "us-east-1";
/// The shipped rule "AWS IAM Access Key Created For A Named User".
const KEY_RULE: &str = "6968dbfa-1c4d-425b-b5cc-a1bae6645e4e";

/// What the tests need of moto besides its server (tests/it/cloudwatch.rs starts it).
trait MotoClients {
    fn sdk(&self, runtime: &tokio::runtime::Runtime) -> aws_config::SdkConfig;
    fn respond_config(&self) -> RespondConfig;
}

impl MotoClients for Moto {
    fn sdk(&self, runtime: &tokio::runtime::Runtime) -> aws_config::SdkConfig {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        runtime.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(http)
                .region(aws_config::Region::new(REGION))
                .endpoint_url(&self.endpoint)
                .credentials_provider(aws_credential_types::Credentials::new(
                    "testing", "testing", None, None, "test",
                ))
                .load(),
        )
    }

    fn respond_config(&self) -> RespondConfig {
        let mut config = RespondConfig::default();
        config.aws.region = Some(REGION.into());
        config.aws.endpoint_url = Some(self.endpoint.clone());
        config.retry_base_ms = 50;
        config.retry_max_ms = 200;
        config.max_attempts = 3;
        config
    }
}

/// The responder's AWS chain reads these; the same fake values in every test.
const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

fn set_aws_env() {
    for (name, value) in AWS_ENV {
        std::env::set_var(name, value);
    }
}

/// A CloudTrail CreateAccessKey: `caller` (with its own key `caller_key`) mints `created` for
/// `target`.
fn create_access_key_event(caller: &str, caller_key: &str, target: &str, created: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "eventTime": Utc::now().to_rfc3339(),
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateAccessKey",
        "awsRegion": REGION,
        "sourceIPAddress": "203.0.113.7",
        "userIdentity": {"type": "IAMUser", "userName": caller, "accessKeyId": caller_key,
                         "arn": format!("arn:aws:iam::123456789012:user/{caller}")},
        "requestParameters": {"userName": target},
        "responseElements": {"accessKey": {"userName": target, "accessKeyId": created,
                                           "status": "Active"}},
        "eventID": format!("create-{created}"),
    })
}

fn alert_for(rule_id: &str, record: &Value) -> (Alert, Vec<Event>) {
    let time = Utc::now();
    let event = Event {
        id: EventId::derive("playbooks test", &[record.to_string().as_bytes()]),
        time,
        received: time,
        source: Source {
            kind: "cloudtrail".into(),
            name: "trail".into(),
        },
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record: Record::json(&record.to_string()).unwrap(),
        fields: Default::default(),
    };
    let event_ids = vec![event.id];
    let alert = Alert {
        id: Alert::derive_id(rule_id, &event_ids),
        rule_id: rule_id.into(),
        rule_title: "test".into(),
        level: Level::High,
        tags: vec![],
        event_ids,
        time,
        detected: time,
        source: event.source.clone(),
        logsource: event.logsource.clone(),
        group: Default::default(),
        matched: Vec::new(),
        event_position: None,
    };
    (alert, vec![event])
}

fn playbook(text: &str) -> Playbook {
    Playbook::parse(text, Path::new("test.yml")).unwrap()
}

/// An IAM user with one access key; gives the key id.
fn user_with_key(
    runtime: &tokio::runtime::Runtime,
    iam: &aws_sdk_iam::Client,
    user: &str,
) -> String {
    runtime.block_on(async {
        iam.create_user().user_name(user).send().await.unwrap();
        let key = iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .unwrap();
        key.access_key().unwrap().access_key_id().to_owned()
    })
}

fn key_status(
    runtime: &tokio::runtime::Runtime,
    iam: &aws_sdk_iam::Client,
    user: &str,
    key: &str,
) -> String {
    runtime.block_on(async {
        let keys = iam.list_access_keys().user_name(user).send().await.unwrap();
        keys.access_key_metadata()
            .iter()
            .find(|k| k.access_key_id() == Some(key))
            .and_then(|k| k.status())
            .map(|s| s.as_str().to_owned())
            .unwrap()
    })
}

#[test]
fn an_attackers_key_is_deactivated_and_an_approval_waits_for_the_api() {
    let moto = Moto::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let iam = aws_sdk_iam::Client::new(&moto.sdk(&runtime));
    // mallory's key was stolen; with it, the attacker mints a key for ci-deploy.
    let stolen = user_with_key(&runtime, &iam, "mallory");
    let minted = user_with_key(&runtime, &iam, "ci-deploy");

    let root = TempDir::new().unwrap();
    let playbooks = root.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("minted.yml"),
        format!("id: minted\ntitle: Deactivate the minted key\nrules: [{KEY_RULE}]\nmode: automatic\nactions:\n  - action: aws.iam.deactivate_access_key\n    key: created\n"),
    )
    .unwrap();
    std::fs::write(
        playbooks.join("stolen.yml"),
        format!("id: stolen\ntitle: Deactivate the key the call was signed with\nrules: [{KEY_RULE}]\nmode: approval\nactions:\n  - action: aws.iam.deactivate_access_key\n    key: caller\n"),
    )
    .unwrap();
    std::fs::write(
        root.path().join("vigil.toml"),
        format!(
            "[respond]\nplaybooks = [{:?}]\n[respond.aws]\nregion = {REGION:?}\nendpoint_url = {:?}\n",
            playbooks.display().to_string(),
            moto.endpoint
        ),
    )
    .unwrap();
    let data = root.path().join("data");
    let vigil = Vigil::start_with_env(&data, AWS_ENV);
    let event = create_access_key_event("mallory", &stolen, "ci-deploy", &minted);
    let posted = vigil.post_ndjson("cloudtrail", format!("{event}\n"));
    assert!(posted.status().is_success(), "{}", posted.status());

    wait_for(
        "the minted key to be deactivated",
        Duration::from_secs(60),
        || (key_status(&runtime, &iam, "ci-deploy", &minted) == "Inactive").then_some(()),
    );
    let alert_id = wait_for("the alert", Duration::from_secs(30), || {
        let alerts = vigil.get_json(&format!("/api/v1/alerts?rule={KEY_RULE}"));
        alerts["alerts"][0]["id"].as_str().map(str::to_owned)
    });
    let runs = wait_for("both runs", Duration::from_secs(30), || {
        let runs = vigil.get_json(&format!("/api/v1/alerts/{alert_id}/playbook-runs"));
        (runs["runs"].as_array()?.len() == 2).then_some(runs)
    });
    let by_playbook = |runs: &Value, id: &str| -> Value {
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["playbook_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_playbook(&runs, "minted")["state"], "succeeded", "{runs}");
    assert_eq!(
        by_playbook(&runs, "minted")["plan"]["access_key_id"],
        minted.as_str()
    );
    let waiting = by_playbook(&runs, "stolen");
    assert_eq!(waiting["state"], "awaiting_approval", "{runs}");
    // Nothing happens to the stolen key until someone approves.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(key_status(&runtime, &iam, "mallory", &stolen), "Active");

    let approve = || {
        vigil
            .client
            .post(vigil.url(&format!(
                "/api/v1/playbook-runs/{}/approve",
                waiting["id"].as_str().unwrap()
            )))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
    };
    let approved = approve();
    assert_eq!(approved.status(), 200);
    let approved: Value = approved.json().unwrap();
    assert_eq!(approved["state"], "succeeded", "{approved}");
    assert_eq!(key_status(&runtime, &iam, "mallory", &stolen), "Inactive");
    // A second approval is refused: the run no longer waits.
    assert_eq!(approve().status(), 409);
    // Each result is in the alert's history, under the playbook or the approver.
    let alert = vigil.get_json(&format!("/api/v1/alerts/{alert_id}"));
    let history = alert["history"].to_string();
    assert!(history.contains("playbook:minted"), "{history}");
    assert!(history.contains("approved"), "{history}");
}

#[test]
fn an_isolated_instance_has_only_the_quarantine_group_and_undo_restores_it() {
    set_aws_env();
    let moto = Moto::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk(&runtime));
    let (instance, old_groups) = runtime.block_on(async {
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.7.0.0/16")
            .send()
            .await
            .unwrap();
        let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.7.1.0/24")
            .send()
            .await
            .unwrap();
        let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_owned();
        let mut groups = Vec::new();
        for name in ["web", "ssh"] {
            let group = ec2
                .create_security_group()
                .group_name(name)
                .description(name)
                .vpc_id(&vpc)
                .send()
                .await
                .unwrap();
            groups.push(group.group_id().unwrap().to_owned());
        }
        let mut run = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet);
        for group in &groups {
            run = run.security_group_ids(group);
        }
        let run = run.send().await.unwrap();
        (run.instances()[0].instance_id().unwrap().to_owned(), groups)
    });
    let groups_of = |instance: &str| -> Vec<(String, String)> {
        runtime.block_on(async {
            let described = ec2
                .describe_instances()
                .instance_ids(instance)
                .send()
                .await
                .unwrap();
            let mut groups: Vec<(String, String)> = described.reservations()[0].instances()[0]
                .security_groups()
                .iter()
                .map(|g| {
                    (
                        g.group_id().unwrap().to_owned(),
                        g.group_name().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            groups.sort();
            groups
        })
    };
    let mut sorted_old = old_groups.clone();
    sorted_old.sort();
    assert_eq!(
        groups_of(&instance)
            .into_iter()
            .map(|g| g.0)
            .collect::<Vec<_>>(),
        sorted_old
    );

    let record = json!({"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
        "responseElements": {"instancesSet": {"items": [{"instanceId": instance}]}}});
    let (alert, events) = alert_for("crypto-miner", &record);
    let dir = TempDir::new().unwrap();
    let responder = Responder::new(
        vec![playbook("id: isolate\ntitle: Isolate\nrules: [crypto-miner]\nmode: automatic\nactions:\n  - action: aws.ec2.isolate_instance\n    quarantine_group: vigil-quarantine-test\n")],
        &moto.respond_config(),
        &dir.path().join("respond.sqlite"),
    )
    .unwrap();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let runs = runtime
        .block_on(responder.respond(&alert, &events, &shutdown))
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Succeeded, "{runs:?}");
    assert!(runs[0].undoable);
    let isolated = groups_of(&instance);
    assert_eq!(isolated.len(), 1, "{isolated:?}");
    assert_eq!(isolated[0].1, "vigil-quarantine-test");
    // A replayed alert does not act twice (nor record the quarantine group as the old ones).
    assert!(runtime
        .block_on(responder.respond(&alert, &events, &shutdown))
        .unwrap()
        .is_empty());

    let undone = runtime
        .block_on(responder.undo(&runs[0].id, "alice"))
        .unwrap();
    assert_eq!(undone.state, RunState::Undone, "{undone:?}");
    assert_eq!(undone.actor.as_deref(), Some("alice"));
    assert_eq!(
        groups_of(&instance)
            .into_iter()
            .map(|g| g.0)
            .collect::<Vec<_>>(),
        sorted_old
    );
    // Undone once; a second undo is refused.
    assert!(runtime
        .block_on(responder.undo(&runs[0].id, "alice"))
        .is_err());
}

#[test]
fn a_dry_run_records_the_plan_and_changes_nothing() {
    set_aws_env();
    let moto = Moto::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let iam = aws_sdk_iam::Client::new(&moto.sdk(&runtime));
    let stolen = user_with_key(&runtime, &iam, "mallory");
    let minted = user_with_key(&runtime, &iam, "ci-deploy");
    let record = create_access_key_event("mallory", &stolen, "ci-deploy", &minted);
    let (alert, events) = alert_for(KEY_RULE, &record);
    let dir = TempDir::new().unwrap();
    let responder = Responder::new(
        vec![playbook(&format!("id: dry\ntitle: Dry\nrules: [{KEY_RULE}]\nmode: dry-run\nactions:\n  - action: aws.iam.deactivate_access_key\n  - action: aws.iam.quarantine_user\n    user: caller\n"))],
        &moto.respond_config(),
        &dir.path().join("respond.sqlite"),
    )
    .unwrap();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let runs = runtime
        .block_on(responder.respond(&alert, &events, &shutdown))
        .unwrap();
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(run.state, RunState::DryRun, "{run:?}");
        assert_eq!(run.attempts, 0);
    }
    let plan = runs[0].plan.as_ref().unwrap();
    assert_eq!(plan.params["access_key_id"], minted.as_str());
    assert_eq!(plan.params["user_name"], "ci-deploy");
    assert!(plan.summary.contains(&minted), "{}", plan.summary);
    assert_eq!(
        runs[1].plan.as_ref().unwrap().params["user_name"],
        "mallory"
    );
    // Recorded durably, and nothing changed in AWS.
    assert_eq!(
        responder
            .runs_for_alert(&alert.id.to_string())
            .unwrap()
            .len(),
        2
    );
    assert_eq!(key_status(&runtime, &iam, "ci-deploy", &minted), "Active");
    let policies = runtime
        .block_on(iam.list_user_policies().user_name("mallory").send())
        .unwrap();
    assert!(policies.policy_names().is_empty(), "{policies:?}");
    // A dry run cannot be approved into action.
    assert!(runtime
        .block_on(responder.approve(&runs[0].id, "alice"))
        .is_err());
    assert_eq!(key_status(&runtime, &iam, "ci-deploy", &minted), "Active");
}
