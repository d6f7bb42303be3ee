//! Which fields and values made a rule match an event, for the alert it raises: the short
//! answer to what [`super::explain`] tells a rule author at length.
//!
//! `explain` re-reads the rule's YAML, which the engine does not keep and which names fields
//! before field-mapping pipelines rename them; this walks the compiled detection instead, so
//! the fields reported are the event's own and the verdicts the engine's. It runs only for
//! rules that matched (the caller asks after a match), never on the path that rejects events.
//!
//! Only what made the condition true is reported: the searches that hold where the condition
//! needs them to (`sel1 and not sel2` reports `sel1`, never `sel2`), and within them the items
//! that matched a value. Negated items (`neq`), `exists: false` and `null` on a missing field
//! hold by a value's absence, so they report nothing. An event is attacker-sized, so the report is bounded:
//! at most [`MAX_MATCHED_FIELDS`] fields, names and values cut to [`MAX_MATCHED_CHARS`].

use std::borrow::Cow;

use serde::Serialize;
use smallvec::SmallVec;
use vigil_event::{JsonRef as Json, LogSource, MatchedField, Object};

use crate::condition::Expr;
use crate::detection::{CompiledDetection, Item, Search};
use crate::path::{FieldPath, MAX_DEPTH};
use crate::{Engine, Finding, Rule};

/// The most fields one rule match reports.
pub const MAX_MATCHED_FIELDS: usize = 32;
/// The longest field name or value reported, in characters; longer ones end with `…`.
pub const MAX_MATCHED_CHARS: usize = 256;

/// A [`MatchedField`] that borrows its name from the rule and its value from the event where
/// it can: reporting a CloudTrail record's matches allocated two strings a field. It serialises
/// as the [`MatchedField`] it converts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedRef<'a> {
    pub field: Cow<'a, str>,
    pub value: Cow<'a, str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keyword: bool,
}

impl From<MatchedRef<'_>> for MatchedField {
    fn from(matched: MatchedRef<'_>) -> Self {
        MatchedField {
            field: matched.field.into_owned(),
            value: matched.value.into_owned(),
            keyword: matched.keyword,
        }
    }
}

impl Rule {
    /// The fields and values of `doc` that made the rule match it: those of its detection, then
    /// of its filters, at most [`MAX_MATCHED_FIELDS`]. Empty when the rule does not match.
    pub fn matched_fields<'d>(&self, doc: impl Into<Object<'d>>) -> Vec<MatchedField> {
        let doc = doc.into();
        let mut found = Found::default();
        add_rule(self, doc, &mut found);
        found.fields.into_iter().map(MatchedField::from).collect()
    }
}

impl Engine {
    /// What made `finding` on the event `doc` (of `logsource`): for a rule, its matched fields;
    /// for a correlation, those of each rule it counts (directly or through inner correlations)
    /// that matched this event, the one that completed it. The earlier events of the window
    /// are not at hand: the detector keeps their ids, not their documents.
    pub fn matched_fields<'d>(
        &self,
        finding: &Finding,
        logsource: &LogSource,
        doc: impl Into<Object<'d>>,
    ) -> Vec<MatchedField> {
        self.matched_refs(finding, logsource, doc.into())
            .into_iter()
            .map(MatchedField::from)
            .collect()
    }

    /// [`Engine::matched_fields`], borrowed from the rules and `doc` where they can be.
    pub fn matched_refs<'a>(
        &'a self,
        finding: &Finding,
        logsource: &LogSource,
        doc: Object<'a>,
    ) -> Vec<MatchedRef<'a>> {
        let mut found = Found::default();
        match finding {
            Finding::Rule { rule, .. } => {
                if let Some(rule) = self.rules().get(*rule) {
                    add_matched_rule(rule, doc, &mut found);
                }
            }
            Finding::Correlation(matched) => {
                let members = self.member_correlations(matched.correlation);
                let graph = self.graph();
                for (index, rule) in self.rules().iter().enumerate() {
                    let feeds = graph.rule_feeds.get(index).map_or(&[][..], Vec::as_slice);
                    if feeds.iter().any(|feed| members.contains(&feed.correlation))
                        && rule.applies_to(logsource)
                    {
                        add_rule(rule, doc, &mut found);
                    }
                }
            }
        }
        found.fields
    }

    /// The correlation at `index` and every correlation whose matches feed it, however deep.
    fn member_correlations(&self, index: usize) -> Vec<usize> {
        let feeds = &self.graph().correlation_feeds;
        let mut members = vec![index];
        let mut at = 0;
        while let Some(&outer) = members.get(at) {
            at += 1;
            for (inner, inner_feeds) in feeds.iter().enumerate() {
                if !members.contains(&inner) && inner_feeds.iter().any(|f| f.correlation == outer) {
                    members.push(inner);
                }
            }
        }
        members
    }
}

/// The searches of a detection that hold where its condition needs them, by index. On the
/// stack for up to eight: a rule's report is asked for each match, and the allocations of these
/// lists and of the searches' results were about 2% of a CloudTrail file's samples in
/// `vigil detect`, where most records match some rule.
type Holding = SmallVec<[usize; 8]>;

/// [`add_rule`] for a rule known to match `doc`, as a rule's finding on it is. Where a
/// detection's condition only joins searches with `and`, each of them holds, so the searches
/// are not evaluated a first time to learn which: `vigil detect` spent about a tenth of a
/// CloudTrail record's time reporting what matched, half of it on that.
fn add_matched_rule<'a>(rule: &'a Rule, doc: Object<'a>, found: &mut Found<'a>) {
    let mut holding = Holding::new();
    let mut joined = |detection: &CompiledDetection| {
        holding.clear();
        conjunction(&detection.condition, &mut holding)
    };
    if !rule.detections().all(&mut joined) {
        return add_rule(rule, doc, found);
    }
    for detection in rule.detections() {
        holding.clear();
        conjunction(&detection.condition, &mut holding);
        for &index in &holding {
            if let Some((_, search)) = detection.searches.get(index) {
                search_fields(search, doc, found);
            }
        }
    }
}

/// Whether `expr` only joins searches with `and`; if so its searches are pushed onto `out`,
/// once each and in their order, as [`witnesses`] gives them for a condition that holds.
fn conjunction(expr: &Expr, out: &mut Holding) -> bool {
    match expr {
        Expr::Search(index) => {
            if !out.contains(index) {
                out.push(*index);
            }
            true
        }
        Expr::And(all) => all.iter().all(|operand| conjunction(operand, out)),
        Expr::Not(_) | Expr::Or(_) => false,
    }
}

/// Adds what made `rule` match `doc`; nothing when it does not.
fn add_rule<'a>(rule: &'a Rule, doc: Object<'a>, found: &mut Found<'a>) {
    // Each search is evaluated once, and its results say both whether the rule matches (every
    // detection's condition holds) and which searches made it.
    let mut witnessed: SmallVec<[(&CompiledDetection, Holding); 2]> = SmallVec::new();
    for detection in rule.detections() {
        let results: SmallVec<[bool; 16]> = detection
            .searches
            .iter()
            .map(|(_, search)| search.matches(doc))
            .collect();
        let mut result = |index: usize| results.get(index).copied().unwrap_or(false);
        if !detection.condition.eval(&mut result) {
            return;
        }
        let mut holding = Holding::new();
        witnesses(&detection.condition, true, &mut result, &mut holding);
        witnessed.push((detection, holding));
    }
    for (detection, holding) in witnessed {
        for index in holding {
            if let Some((_, search)) = detection.searches.get(index) {
                search_fields(search, doc, found);
            }
        }
    }
}

/// The searches that give `expr` its value `value`, pushed onto `out`: a search counts when it
/// holds and sits under an even number of `not`s. `and` that holds needs all its operands, `or`
/// that holds has each operand that holds; `and` that fails is shown by its first failing
/// operand, `or` that fails by all of them (which matters only under `not`).
fn witnesses(expr: &Expr, value: bool, result: &mut impl FnMut(usize) -> bool, out: &mut Holding) {
    match expr {
        Expr::Search(index) => {
            if value && !out.contains(index) {
                out.push(*index);
            }
        }
        Expr::Not(inner) => witnesses(inner, !value, result, out),
        Expr::And(all) if value => all.iter().for_each(|e| witnesses(e, true, result, out)),
        Expr::Or(any) if !value => any.iter().for_each(|e| witnesses(e, false, result, out)),
        Expr::And(operands) | Expr::Or(operands) => {
            for operand in operands {
                if operand.eval(result) == value {
                    witnesses(operand, value, result, out);
                    if matches!(expr, Expr::And(_)) {
                        break;
                    }
                }
            }
        }
    }
}

fn search_fields<'a>(search: &'a Search, doc: Object<'a>, found: &mut Found<'a>) {
    match search {
        Search::All(items) => items.iter().for_each(|item| item_fields(item, doc, found)),
        Search::Any(alternatives) => alternatives
            .iter()
            .filter(|alternative| alternative.matches(doc))
            .for_each(|alternative| search_fields(alternative, doc, found)),
    }
}

fn item_fields<'a>(item: &'a Item, doc: Object<'a>, found: &mut Found<'a>) {
    match item {
        Item::Field {
            negate: false,
            path,
            values,
            all,
        } => {
            if *all {
                // Each rule value by the first of the field's values that meets it.
                for want in values {
                    path.any(doc, &mut |got| match got {
                        Some(got) if want.matches(Some(got), doc) => {
                            found.field(path, got);
                            true
                        }
                        _ => false,
                    });
                }
            } else {
                // Every value of a list-valued field that matched, not only the first.
                path.any(doc, &mut |got| {
                    if let Some(got) = got {
                        if values.iter().any(|want| want.matches(Some(got), doc)) {
                            found.field(path, got);
                        }
                    }
                    found.full()
                });
            }
        }
        Item::Exists { path, want, negate } if want != negate => {
            path.any(doc, &mut |got| {
                if let Some(got) = got {
                    found.field(path, got);
                }
                found.full()
            });
        }
        Item::Keywords {
            matchers,
            all,
            negate: false,
        } => {
            if *all {
                for want in matchers {
                    let mut keys = Vec::new();
                    strings_with_paths(doc, &mut keys, 0, &mut |keys, text| {
                        want.matches_text(text) && {
                            found.keyword(keys, text);
                            true
                        }
                    });
                }
            } else {
                let mut keys = Vec::new();
                strings_with_paths(doc, &mut keys, 0, &mut |keys, text| {
                    if matchers.iter().any(|want| want.matches_text(text)) {
                        found.keyword(keys, text);
                    }
                    found.full()
                });
            }
        }
        _ => {}
    }
}

/// Calls `visit` with every string of the document and the keys that lead to it, as
/// [`crate::path::any_string`] visits them for keyword searches, until it returns true.
fn strings_with_paths<'a>(
    object: Object<'a>,
    keys: &mut Vec<&'a str>,
    depth: usize,
    visit: &mut dyn FnMut(&[&'a str], &'a str) -> bool,
) -> bool {
    object.members().any(|(key, value)| {
        keys.push(key);
        let stop = string_in(value, keys, depth, visit);
        keys.pop();
        stop
    })
}

fn string_in<'a>(
    value: Json<'a>,
    keys: &mut Vec<&'a str>,
    depth: usize,
    visit: &mut dyn FnMut(&[&'a str], &'a str) -> bool,
) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match value {
        Json::String(text) => visit(keys, text),
        Json::Array(items) => items
            .items()
            .any(|item| string_in(item, keys, depth + 1, visit)),
        Json::Object(object) => strings_with_paths(object, keys, depth + 1, visit),
        Json::Null | Json::Bool(_) | Json::Number(_) => false,
    }
}

/// The fields found so far, each once, at most [`MAX_MATCHED_FIELDS`].
#[derive(Default)]
struct Found<'a> {
    fields: Vec<MatchedRef<'a>>,
}

impl<'a> Found<'a> {
    fn full(&self) -> bool {
        self.fields.len() >= MAX_MATCHED_FIELDS
    }

    fn field(&mut self, path: &'a FieldPath, value: Json<'a>) {
        let value = match value {
            Json::String(text) => cut(text),
            other => cut_owned(other.to_value().to_string()),
        };
        self.push(cut(path.name()), value, false);
    }

    fn keyword(&mut self, keys: &[&str], text: &'a str) {
        // The dotted keys, as a rule would name the field; cut before joining, since an
        // attacker's keys may be long and many.
        let mut field = String::new();
        for key in keys {
            if field.chars().count() > MAX_MATCHED_CHARS {
                break;
            }
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(key);
        }
        self.push(cut_owned(field), cut(text), true);
    }

    fn push(&mut self, field: Cow<'a, str>, value: Cow<'a, str>, keyword: bool) {
        let known = self
            .fields
            .iter()
            .any(|f| f.field == field && f.value == value);
        if !known && !self.full() {
            self.fields.push(MatchedRef {
                field,
                value,
                keyword,
            });
        }
    }
}

/// [`cut`] for a text already owned, which is kept rather than copied when it is short enough.
fn cut_owned<'a>(text: String) -> Cow<'a, str> {
    if let Cow::Owned(shorter) = cut(&text) {
        return Cow::Owned(shorter);
    }
    Cow::Owned(text)
}

/// `text` cut to [`MAX_MATCHED_CHARS`] characters, ending with `…` when cut.
fn cut(text: &str) -> Cow<'_, str> {
    // No more bytes than that is no more characters: most values, without counting them.
    if text.len() <= MAX_MATCHED_CHARS {
        return Cow::Borrowed(text);
    }
    match text.char_indices().nth(MAX_MATCHED_CHARS) {
        None => Cow::Borrowed(text),
        Some((at, _)) => {
            let mut cut = text[..at].to_owned();
            cut.push('…');
            Cow::Owned(cut)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;
    use crate::{parse_rules, RuleSetBuilder};

    fn doc(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    fn rule(text: &str) -> Rule {
        let mut rules = parse_rules(text, "t.yml").into_result().unwrap();
        rules.remove(0)
    }

    fn pairs(fields: &[MatchedField]) -> Vec<(&str, &str, bool)> {
        fields
            .iter()
            .map(|f| (f.field.as_str(), f.value.as_str(), f.keyword))
            .collect()
    }

    #[test]
    fn reports_only_the_searches_that_made_the_condition_true() {
        let rule = rule(
            "title: T\nlogsource: {product: aws}\ndetection:\n  sel1:\n    eventName: StopLogging\n    userIdentity.type: IAMUser\n  sel2:\n    other: x\n    userIdentity.arn|endswith: ':root'\n  condition: sel1 and not sel2\n",
        );
        let event = doc(
            r#"{"eventName":"StopLogging","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/bob"},"other":"x"}"#,
        );
        assert_eq!(
            pairs(&rule.matched_fields(&event)),
            vec![
                ("eventName", "StopLogging", false),
                ("userIdentity.type", "IAMUser", false),
            ]
        );
        // When `sel2` holds the rule does not match, and nothing is reported.
        let root = doc(
            r#"{"eventName":"StopLogging","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:root"},"other":"x"}"#,
        );
        assert!(rule.matched_fields(&root).is_empty());
    }

    #[test]
    fn a_negated_search_under_two_nots_counts_and_or_reports_each_search_that_holds() {
        let rule = rule(
            "title: T\nlogsource: {product: aws}\ndetection:\n  a: {x: 1}\n  b: {y: 2}\n  c: {z: 3}\n  condition: not (a and not b) or c\n",
        );
        // `a` fails, so `not (a and not b)` holds whatever `b` is; `c` holds too.
        assert_eq!(
            pairs(&rule.matched_fields(&doc(r#"{"x":0,"y":2,"z":3}"#))),
            vec![("z", "3", false)]
        );
        // `a` and `b` hold: `not b` fails, which `b` holding explains.
        assert_eq!(
            pairs(&rule.matched_fields(&doc(r#"{"x":1,"y":2,"z":0}"#))),
            vec![("y", "2", false)]
        );
    }

    #[test]
    fn a_modifier_reports_the_field_and_the_events_value() {
        let rule = rule(
            "title: T\nlogsource: {product: app}\ndetection:\n  sel:\n    message|contains: 'union select'\n    status: [200, 500]\n    tags|contains|all: [a, b]\n  condition: sel\n",
        );
        let event = doc(
            r#"{"message":"GET /?q=1 UNION SELECT password","status":500,"tags":["xa","yb","zc"]}"#,
        );
        assert_eq!(
            pairs(&rule.matched_fields(&event)),
            vec![
                ("message", "GET /?q=1 UNION SELECT password", false),
                ("status", "500", false),
                ("tags", "xa", false),
                ("tags", "yb", false),
            ]
        );
    }

    #[test]
    fn neq_exists_false_and_null_report_nothing() {
        let rule = rule(
            "title: T\nlogsource: {product: app}\ndetection:\n  sel:\n    user|neq: admin\n    token|exists: false\n    session: null\n    level|exists: true\n  condition: sel\n",
        );
        assert_eq!(
            pairs(&rule.matched_fields(&doc(r#"{"user":"bob","level":"warn"}"#))),
            vec![("level", "warn", false)]
        );
    }

    #[test]
    fn a_keyword_reports_where_it_was_found() {
        let rule = rule(
            "title: T\nlogsource: {product: app}\ndetection:\n  keywords:\n    - '*/etc/passwd*'\n    - '*<script*'\n  condition: keywords\n",
        );
        let event = doc(
            r#"{"message":"ok","request":{"args":["a","cat /etc/passwd"]},"ua":"<script>alert(1)</script>"}"#,
        );
        assert_eq!(
            pairs(&rule.matched_fields(&event)),
            vec![
                ("request.args", "cat /etc/passwd", true),
                ("ua", "<script>alert(1)</script>", true),
            ]
        );
    }

    #[test]
    fn the_report_is_bounded() {
        let rule = rule(
            "title: T\nlogsource: {product: app}\ndetection:\n  sel:\n    items|contains: x\n  keywords:\n    - '*y*'\n  condition: sel or keywords\n",
        );
        let long = "x".repeat(10_000);
        let items: Vec<String> = (0..100).map(|n| format!("x{n}")).collect();
        let long_key = "k".repeat(1_000);
        let event = serde_json::json!({
            "items": items,
            "first": long,
            long_key.clone(): "y",
        });
        let event = event.as_object().unwrap();
        let fields = rule.matched_fields(event);
        assert_eq!(fields.len(), MAX_MATCHED_FIELDS);
        let fields =
            rule.matched_fields(&doc(&format!(r#"{{"items":"{long}","{long_key}":"y"}}"#)));
        assert_eq!(fields.len(), 2);
        for field in &fields {
            assert!(field.value.chars().count() <= MAX_MATCHED_CHARS + 1);
            assert!(field.field.chars().count() <= MAX_MATCHED_CHARS + 1);
        }
        assert!(fields[0].value.ends_with('…'));
        assert!(fields[1].field.ends_with('…') && fields[1].keyword);
    }

    #[test]
    fn agrees_with_the_engine_and_explain_on_what_matched() {
        // Every field reported is one `explain` shows as holding, with the event's value.
        let text = "title: T\nlogsource: {product: aws}\ndetection:\n  selection:\n    eventName: [StopLogging, DeleteTrail]\n    eventSource|endswith: cloudtrail.amazonaws.com\n  filter:\n    userIdentity.type: Root\n  condition: selection and not filter\n";
        let event = doc(
            r#"{"eventName":"DeleteTrail","eventSource":"cloudtrail.amazonaws.com","userIdentity":{"type":"IAMUser"}}"#,
        );
        let explained = crate::explain(text, "t.yml", &crate::LoadOptions::default(), &event).rules;
        let holding: Vec<(String, String)> = explained[0]
            .searches
            .iter()
            .filter(|search| search.result && search.name == "selection")
            .flat_map(|search| &search.alternatives[0].items)
            .flat_map(|item| {
                item.found
                    .iter()
                    .map(|value| (item.field.clone().unwrap_or_default(), value.clone()))
            })
            .collect();
        let reported: Vec<(String, String)> = rule(text)
            .matched_fields(&event)
            .into_iter()
            .map(|f| (f.field, f.value))
            .collect();
        assert_eq!(reported, holding);
    }

    #[test]
    fn a_correlation_reports_its_rules_fields_in_the_completing_event() {
        let mut builder = RuleSetBuilder::new();
        builder.add_text(
            "title: Failed\nname: failed\nlogsource: {product: app}\ndetection:\n  sel: {outcome: failure}\n  condition: sel\n\
             ---\ntitle: Other\nname: other\nlogsource: {product: app}\ndetection:\n  sel: {user: bob}\n  condition: sel\n\
             ---\ntitle: Brute\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [user]\n  timespan: 1m\n  condition: {gte: 1}\n",
            "c.yml",
        );
        let built = builder.build();
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        let engine = built.engine;
        let logsource = LogSource {
            product: Some("app".into()),
            ..LogSource::default()
        };
        let event = doc(r#"{"outcome":"failure","user":"bob"}"#);
        let finding = Finding::Correlation(crate::CorrelationMatch {
            correlation: 0,
            group: vec![("user".into(), "bob".into())],
            aggregate: 1.0,
            inputs: 1,
            first_time: 0,
            last_time: 0,
            event_ids: Vec::new(),
            event_ids_truncated: false,
        });
        // `other` matches too but is not the correlation's: only `failed` is reported.
        assert_eq!(
            pairs(&engine.matched_fields(&finding, &logsource, &event)),
            vec![("outcome", "failure", false)]
        );
        let other_logsource = LogSource {
            product: Some("aws".into()),
            ..LogSource::default()
        };
        assert!(engine
            .matched_fields(&finding, &other_logsource, &event)
            .is_empty());
        let index = engine
            .rules()
            .iter()
            .position(|r| r.title == "Other")
            .unwrap();
        assert_eq!(
            pairs(&engine.matched_fields(&Finding::Rule { rule: index }, &logsource, &event)),
            vec![("user", "bob", false)]
        );
    }
}
