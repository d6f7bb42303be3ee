//! Whether one event counts towards a correlation: for each rule the correlation refers to, the
//! rule's own explanation on the event, and the group-by (and `value_*` field) values the
//! detector would read from it.
//!
//! A correlation never matches one event: it counts matches of other rules over time. So this
//! says whether the event is an input, not whether anything fires. The values are read by the
//! detector's own code ([`FieldPath::first_text`], [`FieldPath::first_number`], and
//! [`CorrelationRule::alias_for`] with the names the rule set resolves aliases by), so the
//! groups shown are the groups the detector forms.

use serde::Serialize;
use serde_json::{json, Map, Value as Json};
use vigil_event::LogSource;

use super::rule::{explain, RuleExplanation};
use crate::correlation::CorrelationRule;
use crate::path::FieldPath;
use crate::{parse_rules_with, LoadOptions};

/// Said with every correlation explained, since a reader may expect a verdict on the event.
pub const SEQUENCE_NOTE: &str =
    "a correlation matches a sequence of events over time, never one event alone; \
     this shows whether the event counts towards it. Feed a sequence to `vigil detect`, or write \
     cases for `vigil rules test`";

/// A detection rule's explanation with whether it applies to the event's logsource and the
/// resulting verdict, as the engine routes and matches it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleVerdict {
    #[serde(flatten)]
    pub rule: RuleExplanation,
    pub logsource_applies: bool,
    /// The logsource applies and the detection holds.
    pub verdict: bool,
}

impl RuleVerdict {
    pub fn new(rule: RuleExplanation, logsource: &LogSource) -> Self {
        let logsource_applies = rule.applies_to(logsource);
        RuleVerdict {
            verdict: logsource_applies && rule.matched,
            logsource_applies,
            rule,
        }
    }
}

/// The rule documents a correlation may refer to, in the order they were added: the first
/// document whose id or name is a reference is the one it means. Callers add the rule file's
/// own text first, then whatever else they read.
#[derive(Debug, Default)]
pub struct RuleLibrary {
    /// (origin, text) of each text added.
    files: Vec<(String, String)>,
    entries: Vec<LibraryEntry>,
}

#[derive(Debug)]
struct LibraryEntry {
    id: String,
    name: Option<String>,
    is_correlation: bool,
    /// Index into `files`.
    file: usize,
}

/// A document found in a [`RuleLibrary`].
struct Found<'a> {
    id: &'a str,
    name: Option<&'a str>,
    is_correlation: bool,
    origin: &'a str,
    text: &'a str,
}

impl RuleLibrary {
    pub fn new() -> Self {
        RuleLibrary::default()
    }

    /// Adds the rules and correlations of one rule text; documents that do not load are left
    /// out (reporting them is `rules check`'s job).
    pub fn add(&mut self, origin: String, text: String, options: &LoadOptions) {
        let parsed = parse_rules_with(&text, &origin, options);
        let file = self.files.len();
        let rules = parsed.rules.into_iter().map(|rule| (rule.meta, false));
        let correlations = parsed.correlations.into_iter().map(|c| (c.meta, true));
        for (meta, is_correlation) in rules.chain(correlations) {
            self.entries.push(LibraryEntry {
                id: meta.id,
                name: meta.name,
                is_correlation,
                file,
            });
        }
        self.files.push((origin, text));
    }

    fn find(&self, reference: &str) -> Option<Found<'_>> {
        self.entries
            .iter()
            .find(|entry| entry.id == reference || entry.name.as_deref() == Some(reference))
            .map(|entry| {
                let (origin, text) = &self.files[entry.file];
                Found {
                    id: &entry.id,
                    name: entry.name.as_deref(),
                    is_correlation: entry.is_correlation,
                    origin,
                    text,
                }
            })
    }
}

/// One correlation against one event.
#[derive(Debug, Clone, Serialize)]
pub struct CorrelationExplanation {
    pub id: String,
    pub title: String,
    pub line: usize,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timespan: String,
    pub group_by: Vec<String>,
    pub condition: Vec<ThresholdShown>,
    pub note: &'static str,
    pub rules: Vec<ReferenceExplanation>,
    /// Whether the event counts towards the correlation through any referenced rule.
    pub counts: bool,
}

/// One threshold of the condition; whole numbers are shown as integers, as rules write them.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdShown {
    pub op: &'static str,
    pub value: Json,
}

/// What a correlation reference turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReferenceKind {
    #[serde(rename = "rule")]
    Rule,
    #[serde(rename = "correlation")]
    Correlation,
    #[serde(rename = "not found")]
    NotFound,
}

/// Fields and their values, in the order the rule gives them (a JSON map would sort them):
/// the text (or, for numeric aggregates, the number) the detector reads, `null` when it reads
/// none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldValues(pub Vec<(String, Json)>);

impl FieldValues {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for FieldValues {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// One rule a correlation refers to, on the event.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceExplanation {
    /// The id or name as the correlation writes it.
    pub reference: String,
    /// Where it was found; `None` when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub kind: ReferenceKind,
    /// The detection rule's explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<RuleVerdict>,
    /// The event's value for each group-by field (after aliases).
    pub group: FieldValues,
    /// The event's value for the condition's field(s) of a `value_*` correlation.
    #[serde(skip_serializing_if = "FieldValues::is_empty")]
    pub fields: FieldValues,
    pub counts: bool,
    /// Why it does not count, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Explains `correlation` on one event (`doc`, of `logsource`): each rule it refers to, found
/// in `library`, on the event, and whether the event counts towards it.
pub fn explain_correlation(
    correlation: &CorrelationRule,
    library: &RuleLibrary,
    options: &LoadOptions,
    doc: &Map<String, Json>,
    logsource: &LogSource,
) -> CorrelationExplanation {
    let rules: Vec<ReferenceExplanation> = correlation
        .rules
        .iter()
        .map(|reference| {
            explain_reference(correlation, reference, library, options, doc, logsource)
        })
        .collect();
    CorrelationExplanation {
        id: correlation.id.clone(),
        title: correlation.title.clone(),
        line: correlation.line,
        kind: correlation.kind.as_str(),
        timespan: correlation.timespan.text.clone(),
        group_by: correlation.group_by.clone(),
        condition: correlation
            .condition
            .iter()
            .map(|t| ThresholdShown {
                op: t.op.as_str(),
                value: if t.value.fract() == 0.0 && t.value.abs() < 1e15 {
                    json!(t.value as i64)
                } else {
                    json!(t.value)
                },
            })
            .collect(),
        note: SEQUENCE_NOTE,
        counts: rules.iter().any(|r| r.counts),
        rules,
    }
}

/// The values the detector reads for `correlation` from an event matched by the rule
/// `reference` (as written in `rules`) whose id and name are `id` and `name`: the group-by
/// values, the `value_*` field values, and the fields it finds no value for.
fn read_values(
    correlation: &CorrelationRule,
    reference: &str,
    id: &str,
    name: Option<&str>,
    doc: &Map<String, Json>,
) -> (FieldValues, FieldValues, Vec<String>) {
    // The names an alias may map the referenced rule by, as the rule set resolves them.
    let mut known = vec![reference, id];
    known.extend(name);
    let mut missing = Vec::new();
    let mut group = FieldValues::default();
    for field in &correlation.group_by {
        let source = correlation.alias_for(field, &known).to_owned();
        let value = FieldPath::new(&source)
            .first_text(doc.into())
            .map(Json::String);
        if value.is_none() {
            missing.push(source.clone());
        }
        group.0.push((source, value.unwrap_or(Json::Null)));
    }
    let mut fields = FieldValues::default();
    if correlation.kind.needs_field() {
        // Numeric aggregates read their first field only, as the detector does.
        let read = if correlation.kind.is_numeric() {
            &correlation.fields[..correlation.fields.len().min(1)]
        } else {
            &correlation.fields[..]
        };
        for field in read {
            let source = correlation.alias_for(field, &known).to_owned();
            let path = FieldPath::new(&source);
            let value = if correlation.kind.is_numeric() {
                path.first_number(doc.into()).map(|n| json!(n))
            } else {
                path.first_text(doc.into()).map(Json::String)
            };
            if value.is_none() {
                missing.push(source.clone());
            }
            fields.0.push((source, value.unwrap_or(Json::Null)));
        }
    }
    (group, fields, missing)
}

fn explain_reference(
    correlation: &CorrelationRule,
    reference: &str,
    library: &RuleLibrary,
    options: &LoadOptions,
    doc: &Map<String, Json>,
    logsource: &LogSource,
) -> ReferenceExplanation {
    let mut explanation = ReferenceExplanation {
        reference: reference.to_owned(),
        file: None,
        kind: ReferenceKind::NotFound,
        explanation: None,
        group: FieldValues::default(),
        fields: FieldValues::default(),
        counts: false,
        reason: None,
    };
    let Some(found) = library.find(reference) else {
        explanation.reason = Some(format!(
            "no rule with id or name {reference:?} in the rule file or the places searched (--rules)"
        ));
        return explanation;
    };
    explanation.file = Some(found.origin.to_owned());
    let (group, fields, missing) = read_values(correlation, reference, found.id, found.name, doc);
    explanation.group = group;
    explanation.fields = fields;
    if found.is_correlation {
        explanation.kind = ReferenceKind::Correlation;
        explanation.reason = Some(format!(
            "{reference:?} is itself a correlation, whose matches feed this one; explain it on its own"
        ));
        return explanation;
    }
    explanation.kind = ReferenceKind::Rule;
    let Some(rule) = explain(found.text, found.origin, options, doc)
        .rules
        .into_iter()
        .find(|rule| rule.id == found.id)
    else {
        explanation.reason = Some(format!("{reference:?} did not load"));
        return explanation;
    };
    let verdict = RuleVerdict::new(rule, logsource);
    explanation.reason = if !verdict.logsource_applies {
        Some("the rule's logsource does not apply to this event".to_owned())
    } else if !verdict.rule.matched {
        Some("the rule does not match this event".to_owned())
    } else if !missing.is_empty() {
        Some(format!(
            "the event lacks {}, so it cannot be grouped",
            missing.join(", ")
        ))
    } else {
        None
    };
    explanation.counts = explanation.reason.is_none();
    explanation.explanation = Some(verdict);
    explanation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Detector, Finding, RuleSetBuilder};

    const RULES: &str = "\
title: Failed login
id: failed
logsource: {product: app}
detection:
    selection: {event: login_failed}
    condition: selection
---
title: Many failures
id: many
correlation:
    type: event_count
    rules: [failed]
    group-by: [a.b.c]
    timespan: 5m
    condition: {gte: 1}
";

    fn doc(json: &str) -> Map<String, Json> {
        serde_json::from_str(json).unwrap()
    }

    /// The group the detector forms for the event when the correlation fires.
    fn detector_group(event: &Map<String, Json>) -> Vec<(String, String)> {
        let mut builder = RuleSetBuilder::new();
        builder.add_text(RULES, "r.yml");
        let built = builder.build();
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        let mut detector = Detector::new(built.engine);
        let logsource = LogSource::new(Some("app"), None, None);
        detector
            .process(0, None, &logsource, event)
            .into_iter()
            .find_map(|d| match d {
                Finding::Correlation(m) => Some(m.group),
                Finding::Rule { .. } => None,
            })
            .expect("the correlation fires")
    }

    fn explained_group(event: &Map<String, Json>) -> FieldValues {
        let mut library = RuleLibrary::new();
        library.add("r.yml".into(), RULES.into(), &LoadOptions::default());
        let correlation = &crate::parse_rules(RULES, "r.yml").correlations[0];
        let logsource = LogSource::new(Some("app"), None, None);
        let explained = explain_correlation(
            correlation,
            &library,
            &LoadOptions::default(),
            event,
            &logsource,
        );
        assert!(explained.counts, "{explained:#?}");
        explained.rules[0].group.clone()
    }

    /// Events whose group-by value a looser reading of the path would get wrong: a key holding
    /// dots beside nested objects (the detector prefers the longest key), nested lists (the
    /// detector reads their elements), numbers (grouped by their text).
    #[test]
    fn reports_the_group_the_detector_forms() {
        for event in [
            r#"{"event":"login_failed","a":{"b.c":"short key first"},"a.b":{"c":"long key first"}}"#,
            r#"{"event":"login_failed","a":{"b":{"c":[[null,"inner"]]}}}"#,
            r#"{"event":"login_failed","a":{"b":{"c":[null,17]}}}"#,
            r#"{"event":"login_failed","a":[{"b":null},{"b":{"c":"second"}}]}"#,
        ] {
            let event = doc(event);
            let detected = detector_group(&event);
            let explained = explained_group(&event);
            let shown: Vec<(String, String)> = explained
                .0
                .iter()
                .map(|(field, value)| {
                    (field.clone(), value.as_str().unwrap_or_default().to_owned())
                })
                .collect();
            assert_eq!(shown, detected, "{event:?}");
        }
    }

    #[test]
    fn a_missing_group_field_does_not_count() {
        let mut library = RuleLibrary::new();
        library.add("r.yml".into(), RULES.into(), &LoadOptions::default());
        let correlation = &crate::parse_rules(RULES, "r.yml").correlations[0];
        let logsource = LogSource::new(Some("app"), None, None);
        let event = doc(r#"{"event":"login_failed","a":{"b":{"c":null}}}"#);
        let explained = explain_correlation(
            correlation,
            &library,
            &LoadOptions::default(),
            &event,
            &logsource,
        );
        let reference = &explained.rules[0];
        assert!(!explained.counts && !reference.counts);
        assert_eq!(reference.group.0, vec![("a.b.c".to_owned(), Json::Null)]);
        assert!(reference.reason.as_deref().unwrap().contains("a.b.c"));
        // Another logsource: the rule does not apply, whatever the group.
        let other = LogSource::new(Some("web"), None, None);
        let explained = explain_correlation(
            correlation,
            &library,
            &LoadOptions::default(),
            &event,
            &other,
        );
        assert!(explained.rules[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("logsource does not apply"));
    }
}
