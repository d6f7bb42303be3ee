//! Playbooks: Vigil's automated response to its own alerts.
//!
//! A playbook (a YAML file in a configured directory, see [`playbook`]) is bound to rules
//! and/or tags and names actions: deactivate an IAM access key, quarantine an IAM user,
//! isolate an EC2 instance, rotate a secret, or call a remediation webhook. It runs in one of
//! three modes: `automatic`, `approval` (an analyst approves on the alert's page) or
//! `dry-run` (the plan is recorded, nothing changes).
//!
//! Each (alert, playbook, action) is one *run*, recorded durably in `respond.sqlite` under
//! that key before anything is done ([`runs`]), so a replayed alert does not act twice. The
//! [`Responder`] plans, executes with bounded retries, approves and undoes runs; the
//! pipeline's respond stage feeds it alerts and records each result in the alert's history
//! and the audit log.

pub mod actions;
pub mod playbook;
pub mod runner;
pub mod runs;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use actions::{Action, ActionError, Executed, PlannedAction};
pub use playbook::{Mode, Playbook, PlaybookError};
pub use runner::{RespondError, Responder, RUNS_FILE};
pub use runs::{Run, RunState};

/// `[respond]` in Vigil's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RespondConfig {
    /// Directories (or files) of playbooks; none configured, nothing responds.
    pub playbooks: Vec<PathBuf>,
    /// Where the AWS actions send their calls.
    pub aws: AwsConfig,
    /// The name of the security group `aws.ec2.isolate_instance` moves instances into (made
    /// in the instance's VPC if missing); a playbook's `quarantine_group` overrides it.
    pub quarantine_group: Option<String>,
    /// Lets `webhook` actions reach link-local and cloud-metadata addresses.
    pub allow_link_local: bool,
    /// Attempts per action before its run fails, transient failures only.
    pub max_attempts: u32,
    /// The backoff between attempts: exponential with jitter from `retry_base_ms` up to
    /// `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for RespondConfig {
    fn default() -> Self {
        RespondConfig {
            playbooks: Vec::new(),
            aws: AwsConfig::default(),
            quarantine_group: None,
            allow_link_local: false,
            max_attempts: 5,
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
        }
    }
}

/// `[respond.aws]`: the standard credential chain, with these overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Overrides the region of the AWS chain (`AWS_REGION`, the profile, ...).
    pub region: Option<String>,
    /// Sends requests here instead of the region's endpoints (a VPC endpoint, moto in tests).
    pub endpoint_url: Option<String>,
}
