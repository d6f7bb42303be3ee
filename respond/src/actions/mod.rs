//! What a playbook can do: the [`Action`] trait and the actions that implement it.
//!
//! An action first *plans*: from the alert and its events it resolves every parameter it will
//! use (which key, which user, which instance) into a [`PlannedAction`], which is recorded and
//! shown before anything changes. Executing and undoing work from the plan alone, so what an
//! analyst approved is exactly what runs, and an undo needs nothing but the run's record.

mod aws;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vigil_event::{Alert, Event};

pub use aws::AwsClients;

use crate::playbook::{ActionSpec, Playbook};
use crate::RespondConfig;

/// What an action will do, with every parameter resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// The action's name, e.g. `aws.iam.deactivate_access_key`.
    pub action: String,
    /// One sentence for people: "Deactivate access key AKIA… of IAM user ci-deploy".
    pub summary: String,
    /// The resolved parameters the action executes with.
    pub params: Value,
}

/// What an executed action reports, and what its undo needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Executed {
    pub result: Value,
    /// Kept with the run for [`Action::undo`] (e.g. the security groups an instance had).
    pub undo: Option<Value>,
}

/// Why an action could not be planned or carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The playbook or the events do not give what the action needs; retrying cannot help.
    #[error("cannot plan: {0}")]
    Plan(String),
    /// The service refused (no such key, access denied); retrying would be refused the same.
    #[error("refused: {0}")]
    Rejected(String),
    /// Worth retrying: the service was unreachable, throttled or failing.
    #[error("{0}")]
    Transient(String),
    #[error("this action cannot be undone")]
    NotUndoable,
}

impl ActionError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ActionError::Transient(_))
    }
}

/// One kind of action. Implementations must be idempotent: a crash between the call and its
/// record replays the call.
#[async_trait::async_trait]
pub trait Action: Send + Sync {
    fn name(&self) -> &'static str;

    /// Resolves what the action will do for `alert`, whose events are `events` (oldest first).
    fn plan(&self, alert: &Alert, events: &[Event]) -> Result<PlannedAction, ActionError>;

    async fn execute(&self, plan: &PlannedAction) -> Result<Executed, ActionError>;

    /// Whether [`Action::undo`] is offered.
    fn undoable(&self) -> bool {
        false
    }

    /// Reverses an executed plan, given what execute kept for it.
    async fn undo(
        &self,
        _plan: &PlannedAction,
        _undo: Option<&Value>,
    ) -> Result<Value, ActionError> {
        Err(ActionError::NotUndoable)
    }
}

/// The names of every action, for error messages and docs.
pub const ACTIONS: &[&str] = &[
    aws::DEACTIVATE_ACCESS_KEY,
    aws::QUARANTINE_USER,
    aws::ISOLATE_INSTANCE,
    aws::ROTATE_SECRET,
    webhook::WEBHOOK,
];

/// Builds the actions of `playbook`, checking each one's parameters (unknown ones refused).
/// AWS clients are made lazily, on first use, so loading needs no credentials.
pub fn build_all(
    playbook: &Playbook,
    config: &RespondConfig,
) -> Result<Vec<Arc<dyn Action>>, crate::playbook::PlaybookError> {
    let clients = AwsClients::new(config.aws.clone());
    playbook
        .actions
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            build(spec, &clients, config).map_err(|message| {
                crate::playbook::PlaybookError::Invalid {
                    file: playbook.file.clone(),
                    message: format!("actions[{index}] ({}): {message}", spec.action),
                }
            })
        })
        .collect()
}

fn build(
    spec: &ActionSpec,
    clients: &AwsClients,
    config: &RespondConfig,
) -> Result<Arc<dyn Action>, String> {
    let params = Params::new(&spec.params);
    let action: Arc<dyn Action> = match spec.action.as_str() {
        webhook::WEBHOOK => Arc::new(webhook::Webhook::new(params, config)?),
        name => aws::build(name, params, clients, config)?
            .ok_or_else(|| format!("unknown action {name:?}; one of {}", ACTIONS.join(", ")))?,
    };
    Ok(action)
}

/// An action's parameters as written, read with unknown ones refused.
pub(crate) struct Params<'a> {
    values: &'a BTreeMap<String, Value>,
    known: Vec<&'static str>,
}

impl<'a> Params<'a> {
    fn new(values: &'a BTreeMap<String, Value>) -> Self {
        Params {
            values,
            known: Vec::new(),
        }
    }

    pub(crate) fn string(&mut self, key: &'static str) -> Result<Option<String>, String> {
        self.known.push(key);
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(format!("`{key}` must be a string, not {other}")),
        }
    }

    pub(crate) fn value(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        self.values.get(key).cloned()
    }

    /// Refuses any parameter not asked for: a misspelt one would be silently ignored.
    pub(crate) fn finish(self) -> Result<(), String> {
        match self
            .values
            .keys()
            .find(|k| !self.known.contains(&k.as_str()))
        {
            Some(key) => Err(format!(
                "unknown parameter `{key}`; expected {}",
                if self.known.is_empty() {
                    "none".to_owned()
                } else {
                    self.known.join(", ")
                }
            )),
            None => Ok(()),
        }
    }
}

/// The event documents of an alert, newest first: the last event is the one that completed
/// the match, so it is the one to act on.
pub(crate) fn documents(events: &[Event]) -> Vec<Map<String, Value>> {
    events
        .iter()
        .rev()
        .filter_map(|e| e.document().ok())
        .collect()
}

/// A dotted path into a document (`responseElements.accessKey.accessKeyId`); list items by
/// number (`instancesSet.items.0.instanceId`).
pub(crate) fn lookup<'a>(document: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = document.get(parts.next()?)?;
    for part in parts {
        current = match current {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The first non-empty string found at any of `paths` in the newest event that has one.
pub(crate) fn first_string(documents: &[Map<String, Value>], paths: &[&str]) -> Option<String> {
    documents.iter().find_map(|doc| {
        paths.iter().find_map(|path| match lookup(doc, path) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
    })
}
