//! The rules `vigil run` detects with, changed while it runs: reloaded from their files (on
//! SIGHUP, from the API or a page, or when the files change) and enabled or disabled by rule
//! id. Each change builds a whole new rule set and swaps it in at once, numbered by a
//! generation; the detect stage picks a new generation up between batches, carrying over
//! the correlation windows of the correlations that did not change. A reload whose files
//! have errors swaps nothing: the rules running stay, and the errors say why.

mod disabled;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use vigil_detect::{Engine, RuleError, RuleMeta};
use vigil_event::LogSource;
use vigil_ui::rule_catalog::RuleFailure;
use vigil_ui::rule_runtime::{ReloadOutcome, RuleRuntime, RuleRuntimeError};
use vigil_ui::{RuleCatalog, RuleInfo};

pub use self::disabled::{DisabledError, DisabledRules, FILE_NAME as DISABLED_FILE};
pub use self::watch::{reload_on_hangup, watch_files, WATCH_EVERY};
use crate::rules::{build_set, log_built, require_rules, BuiltSet, RuleSources, RulesError};
use crate::stages::{ActiveRules, RuleFeed};

/// One rule set as it runs, with what the pages show of it.
struct RuleSet {
    active: ActiveRules,
    catalog: Arc<RuleCatalog>,
    /// The files it was built from, to rebuild it when a rule is enabled or disabled without
    /// taking in file changes nobody asked to reload.
    texts: Arc<crate::rules::SourceTexts>,
    failed: usize,
}

/// The rules of a detecting process, shared by the detect stage, the pages and the reload
/// triggers.
pub struct LiveRules {
    sources: RuleSources,
    current: Mutex<Arc<RuleSet>>,
    generation: AtomicU64,
    /// Held through a whole reload or change, so two never interleave; holds the disabled
    /// list they change.
    writer: Mutex<DisabledRules>,
    last: Mutex<Option<ReloadOutcome>>,
}

/// A poisoned lock only means a panic elsewhere while it was held; what it guards is always
/// whole (each value is replaced complete).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl LiveRules {
    /// Loads the rules of `sources`, less those disabled in `data_dir`. A rule file with
    /// errors is reported and left out, as start-up always did; only no rule at all (unless
    /// allowed) stops it. Writes nothing.
    pub fn load(sources: RuleSources, data_dir: &Path) -> Result<LiveRules, RulesError> {
        let disabled = DisabledRules::read_in(data_dir)
            .map_err(|error| RulesError::Disabled(Box::new(error)))?;
        let texts = Arc::new(sources.read()?);
        let built = build_set(&texts, &disabled.ids());
        log_built(&built);
        require_rules(&built.full, sources.allow_no_rules)?;
        let set = rule_set(built, texts, &disabled.ids(), 1);
        Ok(LiveRules {
            sources,
            current: Mutex::new(Arc::new(set)),
            generation: AtomicU64::new(1),
            writer: Mutex::new(disabled),
            last: Mutex::new(None),
        })
    }

    /// Sets the rule gauges; called once the metrics recorder is installed, and on each swap.
    pub fn record_metrics(&self) {
        let set = lock(&self.current).clone();
        let catalog = &set.catalog;
        let correlations = catalog.iter().filter(|(_, rule)| rule.correlation).count();
        metrics::gauge!("vigil_rules_loaded").set((catalog.len() - correlations) as f64);
        metrics::gauge!("vigil_correlations_loaded").set(correlations as f64);
        metrics::gauge!("vigil_rules_failed").set(set.failed as f64);
        metrics::gauge!("vigil_rules_disabled").set(catalog.disabled() as f64);
        metrics::gauge!("vigil_rules_generation").set(set.active.generation as f64);
    }

    /// The files a reload reads, for watching.
    pub fn sources(&self) -> &RuleSources {
        &self.sources
    }

    fn swap(&self, set: RuleSet) -> u64 {
        let generation = set.active.generation;
        *lock(&self.current) = Arc::new(set);
        self.generation.store(generation, Ordering::Release);
        self.record_metrics();
        generation
    }

    fn finish(&self, outcome: ReloadOutcome) -> ReloadOutcome {
        let label = if outcome.swapped {
            "swapped"
        } else {
            "refused"
        };
        metrics::counter!("vigil_rules_reloads_total", "outcome" => label).increment(1);
        if outcome.swapped {
            tracing::info!(
                trigger = %outcome.trigger,
                generation = outcome.generation,
                rules = outcome.rules,
                "rules reloaded"
            );
        } else {
            tracing::warn!(
                trigger = %outcome.trigger,
                errors = outcome.errors.len(),
                message = outcome.message.as_deref().unwrap_or(""),
                "rules not reloaded; the rules running stay"
            );
            for error in &outcome.errors {
                tracing::warn!(
                    "rule not loaded: {}:{}: {}",
                    error.file,
                    error.line,
                    error.reason
                );
            }
        }
        *lock(&self.last) = Some(outcome.clone());
        outcome
    }

    fn outcome(&self, trigger: &str, swapped: bool) -> ReloadOutcome {
        let set = lock(&self.current).clone();
        ReloadOutcome {
            at: Utc::now(),
            trigger: trigger.to_owned(),
            swapped,
            generation: set.active.generation,
            rules: set.catalog.len(),
            errors: Vec::new(),
            message: None,
        }
    }

    /// Reads the rule files again and swaps them in, unless any has errors.
    pub fn reload_files(&self, trigger: &str) -> ReloadOutcome {
        let disabled = lock(&self.writer);
        let texts = match self.sources.read() {
            Ok(texts) => Arc::new(texts),
            Err(error) => {
                let mut outcome = self.outcome(trigger, false);
                outcome.message = Some(error.to_string());
                return self.finish(outcome);
            }
        };
        let built = build_set(&texts, &disabled.ids());
        if !built.full.errors.is_empty() {
            let mut outcome = self.outcome(trigger, false);
            outcome.errors = failures(&built.full.errors);
            return self.finish(outcome);
        }
        if let Err(error) = require_rules(&built.full, self.sources.allow_no_rules) {
            let mut outcome = self.outcome(trigger, false);
            outcome.message = Some(error.to_string());
            return self.finish(outcome);
        }
        log_built(&built);
        let generation = self.generation.load(Ordering::Acquire) + 1;
        self.swap(rule_set(built, texts, &disabled.ids(), generation));
        drop(disabled);
        let outcome = self.outcome(trigger, true);
        self.finish(outcome)
    }

    /// Enables or disables `id`, persists it, and swaps in the running rules rebuilt with it.
    pub fn change(
        &self,
        id: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<ReloadOutcome, RuleRuntimeError> {
        let mut disabled = lock(&self.writer);
        let set = lock(&self.current).clone();
        if set.catalog.get(id).is_none() {
            return Err(RuleRuntimeError::UnknownRule(id.to_owned()));
        }
        let next = disabled.with(id, enabled, actor);
        next.save().map_err(|error| {
            tracing::error!(%error, "cannot keep the disabled rules");
            RuleRuntimeError::Failed(error.to_string())
        })?;
        *disabled = next;
        let built = build_set(&set.texts, &disabled.ids());
        let generation = self.generation.load(Ordering::Acquire) + 1;
        self.swap(rule_set(
            built,
            set.texts.clone(),
            &disabled.ids(),
            generation,
        ));
        drop(disabled);
        let trigger = if enabled { "enable" } else { "disable" };
        let outcome = self.outcome(trigger, true);
        Ok(self.finish(outcome))
    }
}

impl RuleFeed for LiveRules {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> ActiveRules {
        lock(&self.current).active.clone()
    }
}

impl RuleRuntime for LiveRules {
    fn catalog(&self) -> Arc<RuleCatalog> {
        lock(&self.current).catalog.clone()
    }

    fn last_reload(&self) -> Option<ReloadOutcome> {
        lock(&self.last).clone()
    }

    fn reload(&self, trigger: &str) -> Result<ReloadOutcome, RuleRuntimeError> {
        Ok(self.reload_files(trigger))
    }

    fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<ReloadOutcome, RuleRuntimeError> {
        self.change(id, enabled, actor)
    }
}

fn failures(errors: &[RuleError]) -> Vec<RuleFailure> {
    errors
        .iter()
        .map(|error| RuleFailure {
            file: error.origin.clone(),
            line: error.line,
            reason: error.message.clone(),
        })
        .collect()
}

fn rule_set(
    built: BuiltSet,
    texts: Arc<crate::rules::SourceTexts>,
    disabled: &BTreeSet<String>,
    generation: u64,
) -> RuleSet {
    let catalog = rule_catalog(&built.full.engine, &texts, disabled)
        .with_failures(failures(&built.full.errors), generation);
    RuleSet {
        failed: built.full.errors.len(),
        active: ActiveRules {
            generation,
            engine: built.engine,
            suppressed: Arc::new(built.suppressed),
        },
        catalog: Arc::new(catalog),
        texts,
    }
}

/// What the pages know about the rules of `engine` (every rule that loaded, disabled or
/// not): each one's own words and its file's text, by id.
pub fn rule_catalog(
    engine: &Engine,
    texts: &crate::rules::SourceTexts,
    disabled: &BTreeSet<String>,
) -> RuleCatalog {
    let info =
        |meta: &RuleMeta, logsource: LogSource, origin: &str, line: usize, correlation: bool| {
            let info = RuleInfo {
                title: meta.title.clone(),
                description: meta.description.clone(),
                falsepositives: meta.falsepositives.clone(),
                references: meta.references.clone(),
                tags: meta.tags.clone(),
                level: Some(meta.level),
                logsource,
                file: origin.to_owned(),
                line,
                status: meta.status.map(|status| status.as_str().to_owned()),
                enabled: !disabled.contains(&meta.id),
                correlation,
                yaml: texts.text_of(origin).unwrap_or_default().to_owned(),
            };
            (meta.id.clone(), info)
        };
    let rules = engine.rules().iter().map(|rule| {
        info(
            &rule.meta,
            rule.logsource.clone(),
            &rule.origin,
            rule.line,
            false,
        )
    });
    let correlations = engine.correlations().iter().map(|correlation| {
        info(
            &correlation.meta,
            LogSource::default(),
            &correlation.origin,
            correlation.line,
            true,
        )
    });
    RuleCatalog::loaded(rules.chain(correlations))
}
