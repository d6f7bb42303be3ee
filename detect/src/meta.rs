//! What every rule document states about itself, and how it is read from YAML.
//!
//! Detection rules and correlation rules share ten attributes ([`RuleMeta`]); meta-filters and
//! pipelines share the `logsource` mapping and the readers of plain values. One reader here
//! keeps them from drifting apart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vigil_event::{Id, Level, LogSource};

use crate::error::Problem;
use crate::pattern::eq_ignore_case;
use crate::yaml::{Key, Node, Value};

/// The attributes detection rules and correlation rules both state about themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMeta {
    /// The rule's `id`. A rule without one gets an id derived from its origin and title (see
    /// [`RuleMeta::derive_id`]), so it is stable across reloads of the same file.
    pub id: String,
    /// The rule's `name`, by which correlation rules and filters may refer to it.
    pub name: Option<String>,
    pub title: String,
    /// `medium` when the rule states none.
    pub level: Level,
    pub status: Option<Status>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub references: Vec<String>,
    pub tags: Vec<String>,
    pub falsepositives: Vec<String>,
}

impl RuleMeta {
    /// The id given to a rule that states none: stable for the same origin and title.
    pub fn derive_id(origin: &str, title: &str) -> String {
        Id::derive(
            "vigil-detect rule id v1",
            &[origin.as_bytes(), title.as_bytes()],
        )
        .to_string()
    }
}

/// Reads the [`RuleMeta`] attributes of a document, one top-level key at a time.
#[derive(Debug, Default)]
pub(crate) struct MetaReader {
    /// `None` when absent or invalid (its problem recorded), `Some(None)` when null.
    pub title: Option<Option<String>>,
    id: Option<String>,
    name: Option<String>,
    level: Option<Level>,
    status: Option<Status>,
    description: Option<String>,
    author: Option<String>,
    references: Vec<String>,
    tags: Vec<String>,
    falsepositives: Vec<String>,
}

impl MetaReader {
    /// Reads `key` if it is one of the shared attributes, recording a problem if its value is
    /// invalid; false for any other key.
    pub fn read(&mut self, key: &Key, value: &Node, problems: &mut Vec<Problem>) -> bool {
        match key.name.as_str() {
            "title" => self.title = keep(problems, text(key, value)),
            "id" => self.id = keep(problems, text(key, value)).flatten(),
            "name" => self.name = keep(problems, text(key, value)).flatten(),
            "level" => self.level = keep(problems, parsed(key, value)).flatten(),
            "status" => self.status = keep(problems, parsed(key, value)).flatten(),
            "description" => self.description = keep(problems, text(key, value)).flatten(),
            "author" => self.author = keep(problems, text(key, value)).flatten(),
            "references" => self.references = keep(problems, texts(key, value)).unwrap_or_default(),
            "tags" => self.tags = keep(problems, texts(key, value)).unwrap_or_default(),
            "falsepositives" => {
                self.falsepositives = keep(problems, texts(key, value)).unwrap_or_default()
            }
            _ => return false,
        }
        true
    }

    /// The attributes read, under the `title` the caller has checked; the id is derived from
    /// `origin` and the title when the document states none.
    pub fn finish(self, title: String, origin: &str) -> RuleMeta {
        RuleMeta {
            id: self
                .id
                .unwrap_or_else(|| RuleMeta::derive_id(origin, &title)),
            name: self.name,
            title,
            level: self.level.unwrap_or(Level::Medium),
            status: self.status,
            description: self.description,
            author: self.author,
            references: self.references,
            tags: self.tags,
            falsepositives: self.falsepositives,
        }
    }
}

/// The `status` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Stable,
    Test,
    Experimental,
    Deprecated,
    Unsupported,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Stable,
        Status::Test,
        Status::Experimental,
        Status::Deprecated,
        Status::Unsupported,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Stable => "stable",
            Status::Test => "test",
            Status::Experimental => "experimental",
            Status::Deprecated => "deprecated",
            Status::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown status {s:?}; expected one of stable, test, experimental, deprecated, unsupported")
            })
    }
}

/// Whether every element `outer` states equals `inner`'s, ignoring case: a rule's logsource
/// against an event's (an element the event lacks is unknown, so a rule that states it does not
/// apply), and a filter's or pipeline entry's against a rule's.
pub(crate) fn logsource_within(outer: &LogSource, inner: &LogSource) -> bool {
    fn fits(outer: &Option<String>, inner: &Option<String>) -> bool {
        match (outer, inner) {
            (None, _) => true,
            (Some(outer), Some(inner)) => eq_ignore_case(outer, inner),
            (Some(_), None) => false,
        }
    }
    fits(&outer.product, &inner.product)
        && fits(&outer.service, &inner.service)
        && fits(&outer.category, &inner.category)
}

/// The value of a successful result; a problem is recorded instead, so that loading goes on and
/// reports every problem of the rule.
pub(crate) fn keep<T>(problems: &mut Vec<Problem>, result: Result<T, Problem>) -> Option<T> {
    result.map_err(|problem| problems.push(problem)).ok()
}

/// A scalar as text; `None` for null, which optional attributes treat as absent.
pub(crate) fn text(key: &Key, value: &Node) -> Result<Option<String>, Problem> {
    match value.scalar_text() {
        Some(text) => Ok(Some(text.to_owned())),
        None if value.value == Value::Null => Ok(None),
        None => Err(Problem::new(
            value.line,
            format!("`{}` must be a plain value, not {}", key.name, value.kind()),
        )),
    }
}

pub(crate) fn parsed<T: FromStr<Err = String>>(
    key: &Key,
    value: &Node,
) -> Result<Option<T>, Problem> {
    text(key, value)?
        .map(|text| text.parse().map_err(|err| Problem::new(value.line, err)))
        .transpose()
}

/// A list of plain values; a single value counts as a list of one.
pub(crate) fn texts(key: &Key, value: &Node) -> Result<Vec<String>, Problem> {
    match &value.value {
        Value::Seq(items) => items
            .iter()
            .filter_map(|item| text(key, item).transpose())
            .collect(),
        _ => Ok(text(key, value)?.into_iter().collect()),
    }
}

/// A rule's `logsource`: a mapping that states at least one of product, service and category
/// (other elements, such as `definition`, are for people and left out).
pub(crate) fn rule_logsource(node: &Node) -> Result<LogSource, Problem> {
    let Value::Map(entries) = &node.value else {
        return Err(Problem::new(
            node.line,
            format!("`logsource` must be a mapping, not {}", node.kind()),
        ));
    };
    let mut logsource = LogSource::default();
    for (key, value) in entries {
        let slot = match key.name.as_str() {
            "product" => &mut logsource.product,
            "service" => &mut logsource.service,
            "category" => &mut logsource.category,
            // `definition` and custom elements are for people, not routing.
            _ => continue,
        };
        *slot = text(key, value)?;
    }
    if logsource == LogSource::default() {
        // pySigma refuses these too: a rule for every event is almost always a mistake.
        return Err(Problem::new(
            node.line,
            "`logsource` must state a product, service or category",
        ));
    }
    Ok(logsource)
}
