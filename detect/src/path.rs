//! Finding a rule's field in an event document.
//!
//! Sigma rules for JSON sources name nested fields with dots (`userIdentity.arn`,
//! `objectRef.resource`). Some sources also use keys that contain dots themselves (Kubernetes
//! labels, flattened exports), so at every level each dot may either step into an object or be
//! part of the key.

use vigil_event::{JsonRef, Object};

/// Nesting deeper than this is not searched. The bound keeps a document built in code (bypassing
/// the parser's limit) from exhausting the stack.
///
/// It is the record parser's own limit, and not a smaller one: a parsed document never holds a
/// container deeper than `vigil_event::json::MAX_DEPTH` (what lies below is kept there as one
/// string of raw JSON), so keyword and field matching see every value the parser kept, and
/// nothing is lost to a fixed limit that ingest did not apply and report.
pub(crate) const MAX_DEPTH: usize = vigil_event::json::MAX_DEPTH;
const _: () = assert!(MAX_DEPTH >= vigil_event::json::MAX_DEPTH);

/// A field name split at its dots, ready to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    name: String,
    /// Byte offsets of the dots in `name`.
    dots: Vec<usize>,
}

impl FieldPath {
    pub fn new(name: &str) -> Self {
        FieldPath {
            name: name.to_owned(),
            dots: name.match_indices('.').map(|(at, _)| at).collect(),
        }
    }

    /// The field name as the rule (after pipelines) gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls `visit` with every value the field has in `doc` until it returns true.
    ///
    /// Arrays stand for each of their elements, both on the way (`a.b` looks into every object
    /// of an array `a`) and at the end (a list-valued field is each of its values). Where the
    /// path leads nowhere, `visit` gets `None`, which `null` in a rule matches.
    pub fn any<'d>(
        &self,
        doc: Object<'d>,
        visit: &mut dyn FnMut(Option<JsonRef<'d>>) -> bool,
    ) -> bool {
        self.in_object(doc, 0, 0, visit)
    }

    /// The first value of the field that is not null, as text (strings as they are, others as
    /// JSON): what a correlation groups and counts by. `rules explain` reports the same.
    pub fn first_text(&self, doc: Object<'_>) -> Option<String> {
        let mut found = None;
        self.any(doc, &mut |value| match value {
            Some(JsonRef::Null) | None => false,
            Some(value) => {
                found = Some(match value {
                    JsonRef::String(s) => s.to_owned(),
                    other => other.to_value().to_string(),
                });
                true
            }
        });
        found
    }

    /// The first value of the field that is a finite number, or a string that spells one: what
    /// the numeric correlations (`value_sum` and the like) aggregate.
    pub fn first_number(&self, doc: Object<'_>) -> Option<f64> {
        let mut found = None;
        self.any(doc, &mut |value| {
            found = match value {
                Some(JsonRef::Number(n)) => n.as_f64().filter(|n| n.is_finite()),
                Some(JsonRef::String(s)) => parse_number(s),
                _ => None,
            };
            found.is_some()
        });
        found
    }

    /// Whether the field is present anywhere in `doc`, whatever its value (even null or an
    /// empty list): what `exists` tests.
    pub fn exists(&self, doc: Object<'_>) -> bool {
        self.present_in_object(doc, 0, 0)
    }

    fn present_in_object(&self, object: Object<'_>, start: usize, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        if self.one_key_from(start) {
            return object.get(&self.name[start..]).is_some();
        }
        if !object.keys_may_hold_dots() {
            let end = self.next_dot(start);
            return object
                .get(&self.name[start..end])
                .is_some_and(|value| self.present_in_value(value, end + 1, depth + 1));
        }
        let ends = std::iter::once(self.name.len())
            .chain(self.dots.iter().rev().copied().filter(|&dot| dot >= start));
        for end in ends {
            let Some(value) = object.get(&self.name[start..end]) else {
                continue;
            };
            if end == self.name.len() || self.present_in_value(value, end + 1, depth + 1) {
                return true;
            }
        }
        false
    }

    fn present_in_value(&self, value: JsonRef<'_>, start: usize, depth: usize) -> bool {
        match value {
            JsonRef::Object(object) => self.present_in_object(object, start, depth),
            JsonRef::Array(items) if depth <= MAX_DEPTH => items
                .items()
                .any(|item| self.present_in_value(item, start, depth + 1)),
            _ => false,
        }
    }

    /// Whether no dot is left from byte `start`: the rest is then one key, looked up as it is,
    /// without the split points a dotted rest has to try (most fields, and the last part of
    /// every nested one).
    fn one_key_from(&self, start: usize) -> bool {
        self.dots.last().is_none_or(|&dot| dot < start)
    }

    /// The first dot at or after byte `start`, where the path has one (not [`Self::one_key_from`]).
    fn next_dot(&self, start: usize) -> usize {
        let at = self.dots.partition_point(|&dot| dot < start);
        self.dots[at]
    }

    /// Resolves the part of the path from byte `start` (just after a dot, or 0) in `object`.
    fn in_object<'d>(
        &self,
        object: Object<'d>,
        start: usize,
        depth: usize,
        visit: &mut dyn FnMut(Option<JsonRef<'d>>) -> bool,
    ) -> bool {
        if self.one_key_from(start) {
            return match object.get(&self.name[start..]) {
                Some(value) => leaves(value, depth, visit),
                None => visit(None),
            };
        }
        // No key here holds a dot, so only the part before the next dot can be one: the other
        // split points' lookups, most of a CloudTrail record's, would all miss. A branch of its
        // own (as in `present_in_object`), not one split point fed to the loop below: through
        // the loop's iterator, parsing and matching a CloudTrail record cost 3% more.
        if !object.keys_may_hold_dots() {
            let end = self.next_dot(start);
            return match object.get(&self.name[start..end]) {
                Some(value) => self.in_value(value, end + 1, depth + 1, visit),
                None => visit(None),
            };
        }
        let mut found = false;
        // The whole rest as one key, then every shorter prefix that ends before a dot.
        let ends = std::iter::once(self.name.len())
            .chain(self.dots.iter().rev().copied().filter(|&dot| dot >= start));
        for end in ends {
            let Some(value) = object.get(&self.name[start..end]) else {
                continue;
            };
            found = true;
            let hit = if end == self.name.len() {
                leaves(value, depth, visit)
            } else {
                self.in_value(value, end + 1, depth + 1, visit)
            };
            if hit {
                return true;
            }
        }
        !found && visit(None)
    }

    fn in_value<'d>(
        &self,
        value: JsonRef<'d>,
        start: usize,
        depth: usize,
        visit: &mut dyn FnMut(Option<JsonRef<'d>>) -> bool,
    ) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match value {
            JsonRef::Object(object) => self.in_object(object, start, depth, visit),
            JsonRef::Array(items) => {
                let mut any = false;
                for item in items.items() {
                    any = true;
                    if self.in_value(item, start, depth + 1, visit) {
                        return true;
                    }
                }
                !any && visit(None)
            }
            _ => visit(None),
        }
    }
}

/// A string that spells a finite number, as the numeric correlations read it.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Visits a field's value, or each element of it if it is an array.
fn leaves<'d>(
    value: JsonRef<'d>,
    depth: usize,
    visit: &mut dyn FnMut(Option<JsonRef<'d>>) -> bool,
) -> bool {
    match value {
        JsonRef::Array(items) if depth <= MAX_DEPTH => {
            items.items().any(|item| leaves(item, depth + 1, visit))
        }
        JsonRef::Array(_) => false,
        value => visit(Some(value)),
    }
}

/// Calls `visit` with every string value anywhere in the document (not keys) until it returns
/// true. Keyword searches look at these.
pub(crate) fn any_string(doc: Object<'_>, visit: &mut dyn FnMut(&str) -> bool) -> bool {
    doc.members().any(|(_, value)| string_in(value, 0, visit))
}

fn string_in(value: JsonRef<'_>, depth: usize, visit: &mut dyn FnMut(&str) -> bool) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match value {
        JsonRef::String(s) => visit(s),
        JsonRef::Array(items) => items.items().any(|item| string_in(item, depth + 1, visit)),
        JsonRef::Object(object) => object
            .members()
            .any(|(_, item)| string_in(item, depth + 1, visit)),
        JsonRef::Null | JsonRef::Bool(_) | JsonRef::Number(_) => false,
    }
}

/// A record `{"x": [[..."leaf"...]]}` whose text nests `depth` lists deep, read by the record
/// parser as ingest reads it: for tests that deep nesting hides nothing.
#[cfg(test)]
pub(crate) fn nested_record(
    depth: usize,
    leaf: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let text = format!(
        r#"{{"x":{}"{leaf}"{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    vigil_event::json::parse_object(&text).unwrap()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::*;

    fn doc(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("{other}"),
        }
    }

    /// Every value the path gives, with `None` for missing. The same through the record
    /// parsed, whose objects know whether their keys hold dots (and skip the splits that
    /// could find nothing where none does), as through the map.
    fn values(path: &str, doc: &Map<String, Value>) -> Vec<Option<Value>> {
        let field = FieldPath::new(path);
        let text = serde_json::to_string(doc).unwrap();
        let parsed = vigil_event::Document::parse(&text).unwrap();
        let mut by_object = Vec::new();
        for object in [Object::from(doc), parsed.root()] {
            let mut out = Vec::new();
            field.any(object, &mut |v| {
                out.push(v.map(JsonRef::to_value));
                false
            });
            by_object.push((out, field.exists(object)));
        }
        assert_eq!(by_object[1], by_object[0], "{path} in {text}");
        by_object.swap_remove(0).0
    }

    #[test]
    fn resolves_nested_objects() {
        let d = doc(json!({"userIdentity": {"arn": "x", "type": "Root"}}));
        assert_eq!(values("userIdentity.arn", &d), [Some(json!("x"))]);
        assert_eq!(values("userIdentity.nope", &d), [None]);
        assert_eq!(values("arn", &d), [None]);
    }

    #[test]
    fn looks_through_arrays_on_the_way_and_at_the_end() {
        let d = doc(json!({
            "resources": [{"ARN": "a"}, {"type": "t"}, {"ARN": ["b", "c"]}],
            "tags": ["x", ["y"]],
        }));
        assert_eq!(
            values("resources.ARN", &d),
            [Some(json!("a")), None, Some(json!("b")), Some(json!("c"))]
        );
        assert_eq!(values("tags", &d), [Some(json!("x")), Some(json!("y"))]);
    }

    #[test]
    fn keys_with_dots_match_literally() {
        let d = doc(json!({
            "objectRef.resource": "flat",
            "objectRef": {"resource": "nested"},
            "labels": {"app.kubernetes.io/name": "web"},
        }));
        assert_eq!(
            values("objectRef.resource", &d),
            [Some(json!("flat")), Some(json!("nested"))]
        );
        assert_eq!(
            values("labels.app.kubernetes.io/name", &d),
            [Some(json!("web"))]
        );
    }

    #[test]
    fn parsed_records_resolve_every_split_of_a_path() {
        for segments in [4, 8, 72] {
            let path: Vec<String> = (0..segments).map(|i| format!("k{i}")).collect();
            // One key a level, with every third level's key joined to the next by its dot, and
            // beside each a key that differs in its last byte.
            let mut text = String::from("\"found\"");
            let mut level = segments;
            while level > 0 {
                let joined = level >= 2 && level % 3 == 0;
                let first = if joined { level - 2 } else { level - 1 };
                let key = path[first..level].join(".");
                text = format!(r#"{{"{key}x":1,"{key}":{text}}}"#);
                level = first;
            }
            let document = vigil_event::Document::parse(&text).unwrap();
            assert!(matches!(document, vigil_event::Document::Tape(_)));
            let map = doc(serde_json::from_str(&text).unwrap());
            for (name, want) in [
                (path.join("."), Some(json!("found"))),
                (path[..segments - 1].join(".") + ".k", None),
            ] {
                let mut got = Vec::new();
                FieldPath::new(&name).any(document.root(), &mut |v| {
                    got.push(v.map(JsonRef::to_value));
                    false
                });
                assert_eq!(got, values(&name, &map), "{segments} segments: {name}");
                assert_eq!(got, [want], "{segments} segments: {name}");
                let present = FieldPath::new(&name).exists(document.root());
                assert_eq!(present, FieldPath::new(&name).exists(Object::from(&map)));
                assert_eq!(present, got[0].is_some(), "{segments} segments: {name}");
            }
        }
    }

    /// A key whose dot is written escaped still holds a dot, in a sorted object (more than 32
    /// members) as in a scanned one: the dotted key and the nested path are both found.
    #[test]
    fn escaped_dots_in_keys_count_as_dots() {
        for filler in [0, 40] {
            let members: String = (0..filler).map(|i| format!(r#""k{i}":{i},"#)).collect();
            let text =
                format!(r#"{{{members}"a\u002eb":{{"c":"flat"}},"a":{{"b":{{"c":"nested"}}}}}}"#);
            let document = vigil_event::Document::parse(&text).unwrap();
            assert!(matches!(document, vigil_event::Document::Tape(_)));
            let mut got = Vec::new();
            FieldPath::new("a.b.c").any(document.root(), &mut |v| {
                got.push(v.map(JsonRef::to_value));
                false
            });
            assert_eq!(got, [Some(json!("flat")), Some(json!("nested"))], "{text}");
        }
    }

    #[test]
    fn scalars_on_the_way_mean_missing() {
        let d = doc(json!({"a": "text", "b": null, "c": []}));
        assert_eq!(values("a.b", &d), [None]);
        assert_eq!(values("b", &d), [Some(json!(null))]);
        assert_eq!(values("c.d", &d), [None]);
    }

    #[test]
    fn presence_ignores_the_value() {
        let d = doc(json!({"a": {"b": null, "c": []}, "l": [{"x": 1}, {"y": ""}], "d.e": 0}));
        for present in ["a", "a.b", "a.c", "l.y", "l.x", "d.e"] {
            assert!(
                FieldPath::new(present).exists(Object::from(&d)),
                "{present}"
            );
            values(present, &d);
        }
        for absent in ["b", "a.d", "a.b.c", "l.z", "d", "l.x.y"] {
            assert!(!FieldPath::new(absent).exists(Object::from(&d)), "{absent}");
            values(absent, &d);
        }
    }

    #[test]
    fn stops_at_the_first_hit() {
        let d = doc(json!({"a": [1, 2, 3]}));
        let mut seen = 0;
        assert!(FieldPath::new("a").any(Object::from(&d), &mut |_| {
            seen += 1;
            seen == 2
        }));
        assert_eq!(seen, 2);
    }

    #[test]
    fn finds_strings_anywhere_but_not_too_deep() {
        let d = doc(json!({"a": {"b": [1, "needle"]}, "needle-key": 5}));
        let mut strings = Vec::new();
        any_string(Object::from(&d), &mut |s| {
            strings.push(s.to_owned());
            false
        });
        assert_eq!(strings, ["needle"]);

        let mut deep = json!("deep");
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let d = doc(json!({ "x": deep }));
        assert!(!any_string(Object::from(&d), &mut |_| true));
        assert!(!FieldPath::new("x").any(Object::from(&d), &mut |_| true));
    }

    /// Every value a parsed record holds is within reach, however deep its text nests: the
    /// deepest kept value, and the text of what the parser kept as raw JSON.
    #[test]
    fn reaches_every_value_the_record_parser_keeps() {
        for depth in [vigil_event::json::MAX_DEPTH - 2, 100_000] {
            let d = nested_record(depth, "needle");
            let mut found = false;
            any_string(Object::from(&d), &mut |s| {
                found = s.contains("needle");
                found
            });
            assert!(found, "{depth}");
            let mut leaf = false;
            FieldPath::new("x").any(Object::from(&d), &mut |v| {
                leaf = matches!(v, Some(JsonRef::String(s)) if s.contains("needle"));
                leaf
            });
            assert!(leaf, "{depth}");
        }
    }
}
