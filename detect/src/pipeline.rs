//! Field-mapping pipelines: adapting rules written for one log schema to the fields of another,
//! at load time, in the spirit of pySigma's processing pipelines.
//!
//! SigmaHQ's rules name fields the way the original log source does (W3C `cs-method` for web
//! servers, `hostPath` for Kubernetes pods), while Vigil's events carry the fields of its own
//! parsers and the raw audit paths. A pipeline says, per logsource, how the one becomes the other,
//! so the rules stay unedited. Vigil's format is its own, smaller than pySigma's:
//!
//! ```yaml
//! name: access-log
//! description: W3C webserver fields onto Vigil's parsed access log lines
//! mappings:
//!   - logsource:            # which rules this entry rewrites; left out, every rule
//!       category: webserver
//!     fields:               # exact field names, old: new
//!       cs-method: method
//!       c-ip: client_address
//!     prefixes:             # a field starting with the old text gets the new text instead
//!       "cs(": "header."
//!     require:              # a Sigma search, ANDed into every rule of this entry
//!       source_kind: access-log
//! ```
//!
//! - `logsource` states elements (`product`, `service`, `category`); every one stated must equal
//!   the rule's, ignoring case, as a meta-filter's logsource does. A rule that leaves an element
//!   out does not get the entries that state it.
//! - `fields` renames a field exactly (case-sensitive, as field names are); when no exact name
//!   applies, the longest matching entry of `prefixes` does. Renaming touches the fields of
//!   detection keys (before their modifiers), the field names that `fieldref` values refer to,
//!   and the detections of meta-filters (by the filter's logsource). Correlation `group-by`
//!   fields are left as written.
//! - `require` is one search identifier's definition (a mapping, or a list of them), with the
//!   usual values and modifiers, written with the event's field names: it is not renamed. A rule
//!   matches only when it holds too.
//! - Entries apply in order, and pipelines in the order of [`crate::LoadOptions::pipelines`]:
//!   what one entry renames, a later one sees under its new name.

use std::borrow::Cow;
use std::sync::Arc;

use vigil_event::LogSource;

use crate::detection::{CompiledDetection, FieldNames};
use crate::error::Problem;
use crate::meta::{logsource_within, rule_logsource, text};
use crate::yaml::{self, Node, Value};
use crate::{LoadOptions, RuleError};

/// A loaded field-mapping pipeline; give it to [`crate::LoadOptions::pipelines`].
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    /// The origin given to [`Pipeline::parse`].
    pub origin: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    logsource: LogSource,
    fields: Vec<(String, String)>,
    /// Longest first, so the first that fits is the longest.
    prefixes: Vec<(String, String)>,
    require: Option<Arc<CompiledDetection>>,
}

impl Entry {
    fn applies_to(&self, rule: &LogSource) -> bool {
        logsource_within(&self.logsource, rule)
    }

    fn rename<'a>(&self, field: Cow<'a, str>) -> Cow<'a, str> {
        if let Some((_, to)) = self.fields.iter().find(|(from, _)| *from == field) {
            return Cow::Owned(to.clone());
        }
        match self
            .prefixes
            .iter()
            .find(|(from, _)| field.starts_with(from.as_str()))
        {
            Some((from, to)) => Cow::Owned(format!("{to}{}", &field[from.len()..])),
            None => field,
        }
    }
}

impl Pipeline {
    /// Reads a pipeline file's text; `origin` names it in errors, which carry the line.
    pub fn parse(text: &str, origin: &str) -> Result<Pipeline, RuleError> {
        let error = |problem: Problem| RuleError {
            origin: origin.to_owned(),
            line: problem.line,
            message: problem.message,
        };
        let mut documents = yaml::load_documents(text).into_iter();
        let document = match documents.next() {
            None => return Err(error(Problem::new(1, "the pipeline file is empty"))),
            Some(Err(err)) => return Err(error(err.into())),
            Some(Ok(document)) => document,
        };
        if let Some(extra) = documents.next() {
            let line = match extra {
                Ok(document) => document.line,
                Err(err) => err.line,
            };
            return Err(error(Problem::new(
                line,
                "a pipeline file holds one document",
            )));
        }
        from_node(&document.root, origin).map_err(error)
    }
}

/// The renaming that applies to one rule, from all the pipelines of its load options.
#[derive(Debug, Default)]
pub(crate) struct FieldMap<'a> {
    entries: Vec<&'a Entry>,
}

impl<'a> FieldMap<'a> {
    pub fn for_logsource(options: &'a LoadOptions, logsource: &LogSource) -> Self {
        let mut entries = Vec::new();
        for pipeline in &options.pipelines {
            entries.extend(
                pipeline
                    .entries
                    .iter()
                    .filter(|entry| entry.applies_to(logsource)),
            );
        }
        FieldMap { entries }
    }

    /// The searches that every rule this map belongs to must also satisfy.
    pub fn requirements(&self) -> impl Iterator<Item = &Arc<CompiledDetection>> {
        self.entries
            .iter()
            .filter_map(|entry| entry.require.as_ref())
    }
}

impl FieldNames for FieldMap<'_> {
    fn rename<'b>(&self, field: &'b str) -> Cow<'b, str> {
        self.entries
            .iter()
            .fold(Cow::Borrowed(field), |field, entry| entry.rename(field))
    }
}

fn from_node(root: &Node, origin: &str) -> Result<Pipeline, Problem> {
    let Value::Map(keys) = &root.value else {
        return Err(Problem::new(
            root.line,
            format!("a pipeline must be a mapping, not {}", root.kind()),
        ));
    };
    let mut name = None;
    let mut description = None;
    let mut entries = None;
    for (key, value) in keys {
        match key.name.as_str() {
            "name" => name = text(key, value)?,
            "description" => description = text(key, value)?,
            "mappings" => {
                let Value::Seq(items) = &value.value else {
                    return Err(Problem::new(
                        value.line,
                        format!("`mappings` must be a list, not {}", value.kind()),
                    ));
                };
                entries = Some(items.iter().map(entry).collect::<Result<Vec<_>, _>>()?);
            }
            other => {
                return Err(Problem::new(
                    key.line,
                    format!(
                    "unknown pipeline key `{other}`; expected `name`, `description` or `mappings`"
                ),
                ))
            }
        }
    }
    let Some(name) = name.filter(|name| !name.trim().is_empty()) else {
        return Err(Problem::new(root.line, "the pipeline has no `name`"));
    };
    let Some(entries) = entries else {
        return Err(Problem::new(root.line, "the pipeline has no `mappings`"));
    };
    Ok(Pipeline {
        name,
        description,
        origin: origin.to_owned(),
        entries,
    })
}

fn entry(node: &Node) -> Result<Entry, Problem> {
    let Value::Map(keys) = &node.value else {
        return Err(Problem::new(
            node.line,
            format!("a mapping entry must be a mapping, not {}", node.kind()),
        ));
    };
    let mut entry = Entry {
        logsource: LogSource::default(),
        fields: Vec::new(),
        prefixes: Vec::new(),
        require: None,
    };
    for (key, value) in keys {
        match key.name.as_str() {
            "logsource" => entry.logsource = logsource(value)?,
            "fields" => entry.fields = renames(value, "fields")?,
            "prefixes" => entry.prefixes = renames(value, "prefixes")?,
            "require" => {
                let detection = CompiledDetection::single(value, &LoadOptions::default())
                    .map_err(|mut problems| problems.remove(0))?;
                entry.require = Some(Arc::new(detection));
            }
            other => {
                return Err(Problem::new(
                    key.line,
                    format!(
                        "unknown mapping key `{other}`; expected `logsource`, `fields`, `prefixes` or `require`"
                    ),
                ))
            }
        }
    }
    if entry.fields.is_empty() && entry.prefixes.is_empty() && entry.require.is_none() {
        return Err(Problem::new(
            node.line,
            "a mapping entry needs `fields`, `prefixes` or `require`",
        ));
    }
    entry
        .prefixes
        .sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    Ok(entry)
}

/// An empty logsource is allowed here (unlike a rule's): the entry then applies to every rule.
fn logsource(node: &Node) -> Result<LogSource, Problem> {
    match &node.value {
        Value::Map(keys) => {
            if let Some((key, _)) = keys
                .iter()
                .find(|(key, _)| !matches!(key.name.as_str(), "product" | "service" | "category"))
            {
                return Err(Problem::new(
                    key.line,
                    format!(
                        "unknown logsource element `{}`; expected `product`, `service` or `category`",
                        key.name
                    ),
                ));
            }
            if keys.is_empty() {
                Ok(LogSource::default())
            } else {
                rule_logsource(node)
            }
        }
        _ => Err(Problem::new(
            node.line,
            format!("`logsource` must be a mapping, not {}", node.kind()),
        )),
    }
}

fn renames(node: &Node, what: &str) -> Result<Vec<(String, String)>, Problem> {
    let Value::Map(keys) = &node.value else {
        return Err(Problem::new(
            node.line,
            format!(
                "`{what}` must be a mapping of old names to new, not {}",
                node.kind()
            ),
        ));
    };
    let mut out = Vec::with_capacity(keys.len());
    for (key, value) in keys {
        let Some(to) = value.scalar_text() else {
            return Err(Problem::new(
                value.line,
                format!(
                    "`{}` must map to one field name, not {}",
                    key.name,
                    value.kind()
                ),
            ));
        };
        for name in [key.name.as_str(), to] {
            if name.is_empty() {
                return Err(Problem::new(key.line, "a field name cannot be empty"));
            }
            if name.contains('|') {
                return Err(Problem::new(
                    key.line,
                    format!(
                        "`{name}` holds `|`: modifiers belong in the rules, not in field names"
                    ),
                ));
            }
        }
        out.push((key.name.clone(), to.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(product: Option<&str>, category: Option<&str>) -> LogSource {
        LogSource {
            product: product.map(str::to_owned),
            service: None,
            category: category.map(str::to_owned),
        }
    }

    const WEB: &str = "\
name: web
mappings:
  - logsource:
      category: webserver
    fields:
      cs-method: method
      c-ip: client_address
    prefixes:
      cs-: request.
      cs-uri: uri.
  - fields:
      method: http_method
";

    #[test]
    fn renames_exactly_then_by_longest_prefix_then_in_order() {
        let pipeline = Pipeline::parse(WEB, "web.yml").unwrap();
        let options = LoadOptions {
            pipelines: vec![pipeline],
            ..LoadOptions::default()
        };
        let web = ls(None, Some("WebServer"));
        let map = FieldMap::for_logsource(&options, &web);
        assert_eq!(map.rename("c-ip"), "client_address");
        // The second entry applies to every rule and sees the first one's output.
        assert_eq!(map.rename("cs-method"), "http_method");
        assert_eq!(map.rename("cs-uri-query"), "uri.-query");
        assert_eq!(map.rename("cs-host"), "request.host");
        assert_eq!(map.rename("other"), "other");
        let other = ls(Some("aws"), None);
        let map = FieldMap::for_logsource(&options, &other);
        assert_eq!(map.rename("c-ip"), "c-ip");
        assert_eq!(map.rename("method"), "http_method");
    }

    #[test]
    fn errors_carry_lines() {
        let err = |text: &str| Pipeline::parse(text, "p.yml").unwrap_err();
        let e = err("name: x\nmappings:\n  - fields:\n      a: [b, c]\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("one field name"), "{e}");
        let e = err("name: x\nmappings:\n  - logsource: {product: aws}\n    fieldz: {a: b}\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e
            .to_string()
            .starts_with("p.yml:4: unknown mapping key `fieldz`"));
        let e = err("name: x\nmappings:\n  - require:\n      a|nope: 1\n");
        assert_eq!(e.line, 4, "{e}");
        let e = err("name: x\nmappings:\n  - logsource: {os: linux}\n    fields: {a: b}\n");
        assert_eq!(e.line, 3, "{e}");
        let e = err("name: x\nmappings: {a: b}\n");
        assert_eq!(e.line, 2, "{e}");
        let e = err("mappings: []\n");
        assert!(e.message.contains("no `name`"), "{e}");
        let e = err("name: x\nmappings:\n  - {}\n");
        assert!(e.message.contains("needs"), "{e}");
        let e = err("name: x\nmappings:\n  - fields: {a: 'b|contains'}\n");
        assert!(e.message.contains("`|`"), "{e}");
        let e = err("name: x\nmappings: [\n");
        assert!(e.message.contains("invalid YAML"), "{e}");
        assert!(err("").message.contains("empty"));
        assert_eq!(err("name: x\nmappings: []\n---\nname: y\n").line, 4);
    }
}
