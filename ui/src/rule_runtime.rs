//! The rules as the pages see them at runtime: the current catalogue, and the ways a rule
//! author changes it (reload, enable, disable). The process that detects implements
//! [`RuleRuntime`] over its engine; the ui crate knows only this trait, so it does not depend
//! on the detection engine, and a process that does not detect uses [`Rules::fixed`].

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::rule_catalog::{RuleCatalog, RuleFailure};

/// What one reload or enable/disable did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReloadOutcome {
    pub at: DateTime<Utc>,
    /// What asked for it: `api`, `page`, `sighup`, `watch`, `enable`, `disable`.
    pub trigger: String,
    /// Whether the new rule set replaced the old one. False when it had errors (the old set
    /// stays, and `errors` says why) or could not be read (`message`).
    pub swapped: bool,
    /// The generation detection runs after this reload.
    pub generation: u64,
    /// Rules and correlations in the set now running.
    pub rules: usize,
    /// Why the new set was refused: each file and document that did not load.
    pub errors: Vec<RuleFailure>,
    /// Why the rules could not be read at all, such as a rule directory gone missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a change to the rules was not made.
#[derive(Debug, thiserror::Error)]
pub enum RuleRuntimeError {
    #[error("this process does not run detection, so it has no rules to change")]
    NotDetecting,
    #[error("no loaded rule has id {0:?}")]
    UnknownRule(String),
    /// Something on our side failed; the message is for the log and the operator.
    #[error("{0}")]
    Failed(String),
}

/// The rules a process detects with, as they stand and as a rule author changes them. The
/// changing calls read files and compile rules: call them off the async workers.
pub trait RuleRuntime: Send + Sync {
    /// The rules as they stand now.
    fn catalog(&self) -> Arc<RuleCatalog>;
    /// The outcome of the last reload or change, if any since start-up.
    fn last_reload(&self) -> Option<ReloadOutcome>;
    /// Reads the rule files again and swaps them in, unless any has errors.
    fn reload(&self, trigger: &str) -> Result<ReloadOutcome, RuleRuntimeError>;
    /// Enables or disables the rule or correlation `id` (persisted), swapping the engine.
    fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<ReloadOutcome, RuleRuntimeError>;
}

/// The handle the pages hold.
#[derive(Clone)]
pub struct Rules(Arc<dyn RuleRuntime>);

impl Rules {
    pub fn new(runtime: Arc<dyn RuleRuntime>) -> Self {
        Rules(runtime)
    }

    /// Rules that never change: a process that does not detect, or a test.
    pub fn fixed(catalog: Arc<RuleCatalog>) -> Self {
        Rules(Arc::new(FixedRules(catalog)))
    }
}

impl Default for Rules {
    /// A process that does not detect: no rules loaded.
    fn default() -> Self {
        Rules::fixed(Arc::new(RuleCatalog::not_loaded()))
    }
}

impl From<Arc<RuleCatalog>> for Rules {
    fn from(catalog: Arc<RuleCatalog>) -> Self {
        Rules::fixed(catalog)
    }
}

impl std::ops::Deref for Rules {
    type Target = dyn RuleRuntime;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// A catalogue that cannot be changed here.
struct FixedRules(Arc<RuleCatalog>);

impl RuleRuntime for FixedRules {
    fn catalog(&self) -> Arc<RuleCatalog> {
        self.0.clone()
    }

    fn last_reload(&self) -> Option<ReloadOutcome> {
        None
    }

    fn reload(&self, _trigger: &str) -> Result<ReloadOutcome, RuleRuntimeError> {
        Err(RuleRuntimeError::NotDetecting)
    }

    fn set_enabled(
        &self,
        _id: &str,
        _enabled: bool,
        _actor: &str,
    ) -> Result<ReloadOutcome, RuleRuntimeError> {
        Err(RuleRuntimeError::NotDetecting)
    }
}
