//! Why a rule did or did not match one event: the result of every search identifier, every
//! field and every value, and of the condition over them.
//!
//! This re-walks the rule's YAML rather than the compiled [`crate::Rule`], because the compiled
//! form keeps neither the values as written nor their lines, and the hot path should not pay
//! for what only an author debugging a rule needs. Each key is compiled by the same code the
//! engine uses (`modifier_chain::compile`), so a value's result here is the engine's result for it. The
//! overall verdict is still taken from [`crate::Rule::matches`]; the two agreeing is tested.

use serde::Serialize;
use serde_json::{Map, Value as Json};
use vigil_event::{JsonRef, Object};

use crate::condition::{self, Expr};
use crate::modifier::{self, Modifier};
use crate::modifier_chain::{self, Test};
use crate::path::{self, FieldPath};
use crate::yaml::{self, Key, Node, Value};
use crate::{parse_rules_with, LoadOptions, RuleError};
use vigil_event::LogSource;

/// At most this many of an event's values are shown per field, each cut to `MAX_SHOWN_CHARS`,
/// so one huge or list-valued field cannot drown the explanation.
const MAX_SHOWN_VALUES: usize = 10;
const MAX_SHOWN_CHARS: usize = 200;

/// What [`explain`] found in one rule file.
#[derive(Debug, Clone, Default)]
pub struct Explained {
    pub rules: Vec<RuleExplanation>,
    /// Documents that are not detection rules (correlations and filters) and so have no
    /// per-event verdict of their own, by title and line.
    pub skipped: Vec<Skipped>,
    /// Documents that failed to load.
    pub errors: Vec<RuleError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub line: usize,
    pub kind: &'static str,
    pub reason: String,
}

/// One detection rule against one event.
#[derive(Debug, Clone, Serialize)]
pub struct RuleExplanation {
    pub id: String,
    pub title: String,
    pub line: usize,
    pub logsource: LogSource,
    pub searches: Vec<SearchExplanation>,
    /// The condition as written; a list of conditions is shown joined by ` | ` (any of them).
    pub condition: String,
    pub condition_result: bool,
    /// The engine's own verdict on the detection ([`crate::Rule::matches`]); logsource routing
    /// is the caller's to report.
    pub matched: bool,
}

impl RuleExplanation {
    /// Whether the rule is meant for events of `logsource`, as the engine routes them.
    pub fn applies_to(&self, logsource: &LogSource) -> bool {
        crate::meta::logsource_within(&self.logsource, logsource)
    }
}

/// One search identifier: a mapping is one alternative, a list of mappings several (any of
/// them), and a list's plain values one keyword alternative.
#[derive(Debug, Clone, Serialize)]
pub struct SearchExplanation {
    pub name: String,
    pub line: usize,
    pub result: bool,
    pub alternatives: Vec<AlternativeExplanation>,
}

/// One mapping (every item must hold) or the keywords of a list.
#[derive(Debug, Clone, Serialize)]
pub struct AlternativeExplanation {
    pub line: usize,
    pub result: bool,
    pub items: Vec<ItemExplanation>,
}

/// One key and its values.
#[derive(Debug, Clone, Serialize)]
pub struct ItemExplanation {
    /// The key as written (`eventName|contains`), or `keywords` for a list's plain values.
    pub key: String,
    /// The field, `None` for a keyword search over every string of the event.
    pub field: Option<String>,
    pub line: usize,
    /// `all`: every value had to match.
    pub all: bool,
    /// `neq`: the item holds when the values do not match.
    pub negate: bool,
    /// The event's values at the field (strings as they are, others as JSON), at most ten; empty
    /// when the field is missing.
    pub found: Vec<String>,
    pub field_present: bool,
    /// Each rule value and whether it matched, before `neq`.
    pub values: Vec<ValueExplanation>,
    pub result: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValueExplanation {
    pub value: String,
    pub line: usize,
    pub matched: bool,
}

/// Explains every detection rule of one rule file's `text` against `doc`.
pub fn explain(
    text: &str,
    origin: &str,
    options: &LoadOptions,
    doc: &Map<String, Json>,
) -> Explained {
    let parsed = parse_rules_with(text, origin, options);
    let mut explained = Explained {
        errors: parsed.errors,
        ..Explained::default()
    };
    let correlations = parsed.correlations.iter().map(|correlation| Skipped {
        line: correlation.line,
        kind: "correlation",
        reason: format!(
            "correlation {:?} counts matches of other rules over time; explain those rules, or run `vigil rules test`",
            correlation.title
        ),
    });
    let filters = parsed.filters.iter().map(|filter| Skipped {
        line: filter.line,
        kind: "filter",
        reason: format!(
            "filter {:?} applies to other rules; explain those with their filters loaded",
            filter.title
        ),
    });
    explained.skipped.extend(correlations.chain(filters));
    // Documents that loaded as rules are paired with their YAML by the line they start on.
    let documents: Vec<yaml::Document> = yaml::load_documents(text)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    for rule in &parsed.rules {
        let Some(document) = documents.iter().find(|d| d.line == rule.line) else {
            continue;
        };
        let Some(detection) = map_get(&document.root, "detection") else {
            continue;
        };
        let (searches, condition, condition_result) = explain_detection(detection, options, doc);
        explained.rules.push(RuleExplanation {
            id: rule.id.clone(),
            title: rule.title.clone(),
            line: rule.line,
            logsource: rule.logsource.clone(),
            searches,
            condition,
            condition_result,
            matched: rule.matches(doc),
        });
    }
    explained
}

fn map_get<'a>(node: &'a Node, name: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(key, _)| key.name == name)
            .map(|(_, value)| value),
        _ => None,
    }
}

fn explain_detection(
    node: &Node,
    options: &LoadOptions,
    doc: &Map<String, Json>,
) -> (Vec<SearchExplanation>, String, bool) {
    let Value::Map(entries) = &node.value else {
        return (Vec::new(), String::new(), false);
    };
    let mut searches = Vec::new();
    let mut condition_node = None;
    for (key, value) in entries {
        match key.name.as_str() {
            "condition" => condition_node = Some(value),
            "timeframe" => {}
            name => searches.push(explain_search(name, key, value, options, doc)),
        }
    }
    let names: Vec<&str> = searches.iter().map(|s| s.name.as_str()).collect();
    let conditions: Vec<&Node> = match condition_node.map(|n| &n.value) {
        Some(Value::Seq(items)) => items.iter().collect(),
        Some(_) => condition_node.into_iter().collect(),
        None => Vec::new(),
    };
    let written: Vec<&str> = conditions.iter().filter_map(|n| n.scalar_text()).collect();
    let exprs: Vec<Expr> = written
        .iter()
        .filter_map(|text| condition::parse(text, &names).ok())
        .collect();
    let results: Vec<bool> = searches.iter().map(|s| s.result).collect();
    let mut lookup = |index: usize| results.get(index).copied().unwrap_or(false);
    let result = exprs.iter().any(|expr| expr.eval(&mut lookup));
    (searches, written.join(" | "), result)
}

fn explain_search(
    name: &str,
    key: &Key,
    node: &Node,
    options: &LoadOptions,
    doc: &Map<String, Json>,
) -> SearchExplanation {
    let mut alternatives = Vec::new();
    match &node.value {
        Value::Map(entries) => alternatives.push(explain_map(node.line, entries, options, doc)),
        Value::Seq(items) => {
            let mut keywords = Vec::new();
            for item in items {
                match &item.value {
                    Value::Map(entries) => {
                        alternatives.push(explain_map(item.line, entries, options, doc))
                    }
                    Value::Seq(_) => {}
                    _ => keywords.push(item),
                }
            }
            if !keywords.is_empty() {
                let item = explain_item("keywords", None, &[], &keywords, node.line, options, doc);
                alternatives.push(AlternativeExplanation {
                    line: node.line,
                    result: item.result,
                    items: vec![item],
                });
            }
        }
        _ => {}
    }
    SearchExplanation {
        name: name.to_owned(),
        line: key.line,
        result: alternatives.iter().any(|a| a.result),
        alternatives,
    }
}

fn explain_map(
    line: usize,
    entries: &[(Key, Node)],
    options: &LoadOptions,
    doc: &Map<String, Json>,
) -> AlternativeExplanation {
    let items: Vec<ItemExplanation> = entries
        .iter()
        .map(|(key, node)| {
            let (field, modifiers) =
                modifier::parse_key(&key.name).unwrap_or((key.name.as_str(), Vec::new()));
            let values: Vec<&Node> = match &node.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![node],
            };
            let field = (!field.is_empty()).then_some(field);
            explain_item(
                &key.name, field, &modifiers, &values, key.line, options, doc,
            )
        })
        .collect();
    AlternativeExplanation {
        line,
        result: items.iter().all(|item| item.result),
        items,
    }
}

fn explain_item(
    key: &str,
    field: Option<&str>,
    modifiers: &[Modifier],
    values: &[&Node],
    line: usize,
    options: &LoadOptions,
    doc: &Map<String, Json>,
) -> ItemExplanation {
    let doc = Object::from(doc);
    let path = field.map(FieldPath::new);
    let mut found = Vec::new();
    if let Some(path) = &path {
        path.any(doc, &mut |got| {
            if let Some(got) = got {
                found.push(shown(got));
            }
            found.len() >= MAX_SHOWN_VALUES
        });
    }
    let field_present = path.as_ref().is_some_and(|p| p.exists(doc));
    let written = |node: &Node| node.scalar_text().unwrap_or("null").to_owned();
    let mut explanation = ItemExplanation {
        key: key.to_owned(),
        field: field.map(str::to_owned),
        line,
        all: false,
        negate: false,
        found,
        field_present,
        values: Vec::new(),
        result: false,
    };
    // The rule loaded, so its keys compile; if one somehow does not, it is shown as failing.
    let Ok(compiled) = modifier_chain::compile(field, modifiers, values, line, options) else {
        explanation.values = values
            .iter()
            .map(|node| ValueExplanation {
                value: written(node),
                line: node.line,
                matched: false,
            })
            .collect();
        return explanation;
    };
    explanation.all = compiled.all;
    explanation.negate = compiled.negate;
    let matched: Vec<bool> = match (&compiled.test, &path) {
        (Test::Exists(want), Some(path)) => vec![path.exists(doc) == *want],
        (Test::Exists(_), None) => vec![false],
        (Test::Values(matchers), Some(path)) => matchers
            .iter()
            .map(|want| path.any(doc, &mut |got| want.matches(got, doc)))
            .collect(),
        (Test::Values(matchers), None) => matchers
            .iter()
            .map(|want| path::any_string(doc, &mut |got| want.matches_text(got)))
            .collect(),
    };
    explanation.values = values
        .iter()
        .zip(&matched)
        .map(|(node, &matched)| ValueExplanation {
            value: written(node),
            line: node.line,
            matched,
        })
        .collect();
    let hit = if compiled.all {
        matched.iter().all(|&m| m)
    } else {
        matched.iter().any(|&m| m)
    };
    explanation.result = hit != compiled.negate;
    explanation
}

fn shown(value: JsonRef<'_>) -> String {
    let text = match value {
        JsonRef::String(s) => s.to_owned(),
        other => other.to_value().to_string(),
    };
    if text.chars().count() > MAX_SHOWN_CHARS {
        let mut cut: String = text.chars().take(MAX_SHOWN_CHARS).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Map<String, Json> {
        serde_json::from_str(json).unwrap()
    }

    const RULE: &str = "\
title: Stop
logsource: {product: aws}
detection:
    selection:
        eventName:
            - StopLogging
            - DeleteTrail
        eventSource|endswith: cloudtrail.amazonaws.com
    filter:
        userIdentity.type|neq: Root
    keywords:
        - '*evil*'
    condition: selection and not filter or keywords
";

    #[test]
    fn reports_each_search_item_and_value() {
        let event = doc(
            r#"{"eventName":"StopLogging","eventSource":"cloudtrail.amazonaws.com","userIdentity":{"type":"IAMUser"}}"#,
        );
        let explained = explain(RULE, "r.yml", &LoadOptions::default(), &event);
        assert!(explained.errors.is_empty(), "{:?}", explained.errors);
        let rule = &explained.rules[0];
        assert_eq!(rule.condition, "selection and not filter or keywords");
        assert!(!rule.condition_result && !rule.matched);
        let selection = &rule.searches[0];
        assert!(selection.result);
        let event_name = &selection.alternatives[0].items[0];
        assert_eq!(event_name.found, vec!["StopLogging"]);
        let matched: Vec<bool> = event_name.values.iter().map(|v| v.matched).collect();
        assert_eq!(matched, vec![true, false]);
        // `neq` holds because the type is not Root, so `not filter` fails.
        let filter = &rule.searches[1].alternatives[0].items[0];
        assert!(filter.negate && filter.result && !filter.values[0].matched);
        let keywords = &rule.searches[2];
        assert_eq!(keywords.alternatives[0].items[0].field, None);
        assert!(!keywords.result);
    }

    #[test]
    fn agrees_with_the_engine() {
        let events = [
            r#"{"eventName":"StopLogging","eventSource":"cloudtrail.amazonaws.com","userIdentity":{"type":"Root"}}"#,
            r#"{"eventName":"DeleteTrail","eventSource":"x.cloudtrail.amazonaws.com"}"#,
            r#"{"eventName":"Other","note":"so evil"}"#,
            r#"{"eventName":"Other"}"#,
        ];
        let verdicts: Vec<bool> = events
            .iter()
            .map(|json| {
                let rule = &explain(RULE, "r.yml", &LoadOptions::default(), &doc(json)).rules[0];
                assert_eq!(rule.condition_result, rule.matched, "{json}");
                rule.matched
            })
            .collect();
        assert_eq!(verdicts, vec![true, false, true, false]);
    }

    #[test]
    fn skips_correlations_and_reports_errors() {
        let text = "title: C\ncorrelation: {type: event_count, rules: [a], timespan: 1m, condition: {gte: 2}}\n---\ntitle: Bad\nlogsource: {product: x}\ndetection: {sel: {a|nosuch: 1}, condition: sel}\n";
        let explained = explain(text, "c.yml", &LoadOptions::default(), &doc("{}"));
        assert_eq!(explained.skipped.len(), 1);
        assert_eq!(explained.errors.len(), 1);
        assert!(explained.rules.is_empty());
    }
}
