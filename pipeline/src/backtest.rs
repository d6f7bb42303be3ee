//! Backtests: a rule run over stored events, as detection would have run it.
//!
//! The detection engine does no I/O, so the loop is here: it reads the events of a time range
//! from the store oldest first, a page at a time, and feeds them to a fresh [`Detector`] of
//! the rule alone (a correlation with the rules it counts), so correlations see the events in
//! order and nothing of the running detection is touched. What it scans and keeps is capped
//! by the request; totals are counted whatever it keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use vigil_detect::{
    parse_rules_with, CorrelationRule, Detector, Engine, Finding, LoadOptions, Rule, RuleSetBuilder,
};
use vigil_event::Event;
use vigil_store::{SearchRequest, Store};
use vigil_ui::backtest_jobs::{
    BacktestError, BacktestProgress, BacktestReport, BacktestRequest, BacktestRule, Backtester,
    MatchedEvent, PreparedBacktest, RuleProblem, WouldAlert,
};

use crate::rules::{build_set, RuleSources};

/// Events read from the store at a time.
const PAGE: usize = 500;

/// What pasted rule text is called in its errors.
const PASTED: &str = "pasted rule";

/// The rules a backtest may name, disabled ones included, and the options (field-mapping
/// pipelines, placeholders) they load with, which pasted rules are read with too; or why
/// they cannot be had.
pub type CurrentRules = Arc<dyn Fn() -> Result<(Engine, LoadOptions), String> + Send + Sync>;

/// The rules of `sources` as their files stand now, every one that loads (disabled or not,
/// since a backtest is how one decides to enable a rule), with their options: what
/// `vigil run` backtests with.
pub fn rules_of(sources: &RuleSources) -> Result<(Engine, LoadOptions), String> {
    let texts = sources.read().map_err(|error| error.to_string())?;
    let built = build_set(&texts, &BTreeSet::new());
    Ok((built.full.engine, texts.options))
}

/// Backtests over the rules `current` gives at the moment each one is prepared.
pub struct EngineBacktester {
    current: CurrentRules,
}

impl EngineBacktester {
    pub fn new(current: CurrentRules) -> Self {
        EngineBacktester { current }
    }
}

impl Backtester for EngineBacktester {
    fn prepare(&self, rule: &BacktestRule) -> Result<Box<dyn PreparedBacktest>, BacktestError> {
        let (loaded, options) = (self.current)().map_err(|error| {
            tracing::error!(%error, "backtest: the rules cannot be read");
            BacktestError::Failed
        })?;
        let engine = match rule {
            BacktestRule::Stored(id) => stored_engine(&loaded, id)?,
            BacktestRule::Yaml(text) => pasted_engine(&loaded, text, &options)?,
        };
        Ok(Box::new(Prepared { engine }))
    }
}

/// A rule or correlation that a reference names, by id first and then by name, as the rule
/// set builder resolves them.
enum Found<'a> {
    Rule(&'a Rule),
    Correlation(&'a CorrelationRule),
}

fn find<'a>(engine: &'a Engine, reference: &str) -> Option<Found<'a>> {
    let rules = engine.rules();
    let correlations = engine.correlations();
    rules
        .iter()
        .find(|r| r.id == reference)
        .map(Found::Rule)
        .or_else(|| {
            correlations
                .iter()
                .find(|c| c.id == reference)
                .map(Found::Correlation)
        })
        .or_else(|| {
            rules
                .iter()
                .find(|r| r.name.as_deref() == Some(reference))
                .map(Found::Rule)
        })
        .or_else(|| {
            correlations
                .iter()
                .find(|c| c.name.as_deref() == Some(reference))
                .map(Found::Correlation)
        })
}

/// Adds what `reference` names in `loaded` to `builder`, and for a correlation what it
/// refers to in turn; `added` keeps each document in once (and ends any cycle).
fn add_loaded(
    loaded: &Engine,
    reference: &str,
    builder: &mut RuleSetBuilder,
    added: &mut BTreeSet<String>,
) -> bool {
    match find(loaded, reference) {
        None => false,
        Some(Found::Rule(rule)) => {
            if added.insert(rule.id.clone()) {
                builder.add_rule(rule.clone());
            }
            true
        }
        Some(Found::Correlation(correlation)) => {
            if added.insert(correlation.id.clone()) {
                builder.add_correlation(correlation.clone());
                for inner in &correlation.rules {
                    add_loaded(loaded, inner, builder, added);
                }
            }
            true
        }
    }
}

/// The engine of one loaded rule, or of one correlation and what it counts.
fn stored_engine(loaded: &Engine, id: &str) -> Result<Engine, BacktestError> {
    let is_id = loaded.rules().iter().any(|r| r.id == id)
        || loaded.correlations().iter().any(|c| c.id == id);
    let mut builder = RuleSetBuilder::new();
    if !is_id || !add_loaded(loaded, id, &mut builder, &mut BTreeSet::new()) {
        return Err(BacktestError::UnknownRule { id: id.to_owned() });
    }
    built(builder)
}

/// The engine of pasted rule text: its documents, plus the loaded rules its correlations
/// name that it does not define itself.
fn pasted_engine(
    loaded: &Engine,
    text: &str,
    options: &LoadOptions,
) -> Result<Engine, BacktestError> {
    let parsed = parse_rules_with(text, PASTED, options);
    if !parsed.errors.is_empty() {
        return Err(BacktestError::Rule {
            problems: parsed
                .errors
                .into_iter()
                .map(|error| RuleProblem {
                    line: error.line,
                    reason: error.message,
                })
                .collect(),
        });
    }
    if parsed.rules.is_empty() && parsed.correlations.is_empty() {
        return Err(BacktestError::Rule {
            problems: vec![RuleProblem {
                line: 1,
                reason: "the text holds no detection or correlation rule".into(),
            }],
        });
    }
    let defined: BTreeSet<String> = parsed
        .rules
        .iter()
        .map(|r| (r.id.clone(), r.name.clone()))
        .chain(
            parsed
                .correlations
                .iter()
                .map(|c| (c.id.clone(), c.name.clone())),
        )
        .flat_map(|(id, name)| std::iter::once(id).chain(name))
        .collect();
    let wanted: Vec<String> = parsed
        .correlations
        .iter()
        .flat_map(|c| c.rules.iter().cloned())
        .filter(|reference| !defined.contains(reference))
        .collect();
    let mut builder = RuleSetBuilder::new();
    let mut added: BTreeSet<String> = defined.clone();
    builder.add_parsed(parsed);
    for reference in &wanted {
        // One that is nowhere is reported by the builder, with the correlation's line.
        add_loaded(loaded, reference, &mut builder, &mut added);
    }
    built(builder)
}

fn built(builder: RuleSetBuilder) -> Result<Engine, BacktestError> {
    let built = builder.build();
    if !built.errors.is_empty() {
        return Err(BacktestError::Rule {
            problems: built
                .errors
                .into_iter()
                .map(|error| RuleProblem {
                    line: error.line,
                    reason: if error.origin == PASTED {
                        error.message
                    } else {
                        format!("{}: {}", error.origin, error.message)
                    },
                })
                .collect(),
        });
    }
    Ok(built.engine)
}

struct Prepared {
    engine: Engine,
}

impl PreparedBacktest for Prepared {
    fn rules(&self) -> Vec<String> {
        let rules = self.engine.rules().iter().map(|r| r.id.clone());
        let correlations = self.engine.correlations().iter().map(|c| c.id.clone());
        rules.chain(correlations).collect()
    }

    fn run(
        self: Box<Self>,
        store: &Store,
        request: &BacktestRequest,
        progress: &BacktestProgress,
    ) -> Result<BacktestReport, BacktestError> {
        let failed = |error: vigil_store::StoreError| {
            tracing::error!(%error, "backtest: reading events failed");
            BacktestError::Failed
        };
        let started = Instant::now();
        let mut report = BacktestReport {
            rules: self.rules(),
            ..BacktestReport::default()
        };
        let estimate = store
            .search(&SearchRequest {
                from: Some(request.from),
                to: Some(request.to),
                limit: 0,
                visibility: request.visibility.clone(),
                ..SearchRequest::default()
            })
            .map_err(failed)?;
        progress.set_estimated_total(estimate.total);
        let mut detector = Detector::new(self.engine);
        let mut cursor: Option<String> = None;
        'pages: loop {
            let page = store
                .events_in_time_order(
                    request.from,
                    request.to,
                    &request.visibility,
                    cursor.as_deref(),
                    PAGE,
                )
                .map_err(failed)?;
            for event in &page.events {
                if report.events_scanned >= request.max_events {
                    report.scan_truncated = true;
                    break 'pages;
                }
                report.events_scanned += 1;
                progress.add_scanned(1);
                evaluate(&mut detector, event, request, &mut report);
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}

/// Runs one event through the detector, as the detect stage does, and keeps what it found.
fn evaluate(
    detector: &mut Detector,
    event: &Event,
    request: &BacktestRequest,
    report: &mut BacktestReport,
) {
    // The index accepted only events whose record reads as a document.
    let Ok(document) = event.document() else {
        return;
    };
    let engine = detector.engine();
    let matched: Vec<String> = engine
        .matching(&event.logsource, &document)
        .into_iter()
        .map(|index| engine.rules()[index].id.clone())
        .collect();
    if !matched.is_empty() {
        report.matched_events += 1;
        if report.matches.len() < request.max_matches {
            report.matches.push(MatchedEvent {
                id: event.id.to_string(),
                time: event.time,
                source_kind: event.source.kind.clone(),
                source_name: event.source.name.clone(),
                rules: matched,
                fields: (request.summarise)(event, &document),
            });
        } else {
            report.matches_truncated = true;
        }
    }
    // As the detect stage: a record's own time counts no later than its arrival, and each
    // source is a stream of its own.
    let time = event.time.min(event.received).timestamp_millis();
    let evaluation = detector.evaluate(
        &event.source.name,
        time,
        Some(event.id),
        &event.logsource,
        &document,
    );
    let engine = detector.engine();
    for finding in evaluation.detections {
        report.alerts_total += 1;
        if report.alerts.len() >= request.max_matches {
            report.alerts_truncated = true;
            continue;
        }
        report.alerts.push(match finding {
            Finding::Rule { rule } => {
                let rule = &engine.rules()[rule];
                WouldAlert {
                    rule_id: rule.id.clone(),
                    rule_title: rule.title.clone(),
                    level: rule.level,
                    time: event.time,
                    group: BTreeMap::new(),
                    event_ids: vec![event.id.to_string()],
                }
            }
            Finding::Correlation(matched) => {
                let correlation = &engine.correlations()[matched.correlation];
                WouldAlert {
                    rule_id: correlation.id.clone(),
                    rule_title: correlation.title.clone(),
                    level: correlation.level,
                    time: Utc
                        .timestamp_millis_opt(matched.last_time)
                        .single()
                        .unwrap_or(event.time),
                    group: matched.group.into_iter().collect(),
                    event_ids: matched.event_ids.iter().map(ToString::to_string).collect(),
                }
            }
        });
    }
}

#[cfg(test)]
#[path = "backtest_tests.rs"]
mod tests;
