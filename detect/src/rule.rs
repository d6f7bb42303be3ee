//! The rule model and how one YAML document becomes a [`Rule`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use vigil_event::{Id, Level, LogSource};

use crate::detection::Detection;
use crate::error::Problem;
use crate::pattern::eq_ignore_case;
use crate::pipeline::FieldMap;
use crate::prefilter::{self, Need};
use crate::yaml::{Document, Key, Node, Value};
use crate::LoadOptions;

/// A loaded Sigma detection rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's `id`. A rule without one gets an id derived from its origin and title (see
    /// [`Rule::derive_id`]), so it is stable across reloads of the same file.
    pub id: String,
    /// The rule's `name`, by which correlation rules and filters may refer to it.
    pub name: Option<String>,
    pub title: String,
    /// `medium` when the rule states none.
    pub level: Level,
    pub status: Option<Status>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub date: Option<String>,
    pub modified: Option<String>,
    pub references: Vec<String>,
    pub tags: Vec<String>,
    pub falsepositives: Vec<String>,
    pub logsource: RuleLogSource,
    /// Where the rule came from: the origin given to [`crate::parse_rules`] and the line its
    /// document starts on.
    pub origin: String,
    pub line: usize,
    detection: Detection,
    /// Conditions of the meta-filters applied to this rule; each must hold too (see
    /// [`crate::filter`]).
    filters: Vec<Arc<Detection>>,
}

impl Rule {
    /// The id given to a rule that states none: stable for the same origin and title.
    pub fn derive_id(origin: &str, title: &str) -> String {
        Id::derive(
            "vigil-detect rule id v1",
            &[origin.as_bytes(), title.as_bytes()],
        )
        .to_string()
    }

    /// Whether the rule is meant for events of this logsource; see
    /// [`RuleLogSource::applies_to`].
    pub fn applies_to(&self, logsource: &LogSource) -> bool {
        self.logsource.applies_to(logsource)
    }

    /// Whether the event document satisfies the rule's detection, whatever its logsource.
    pub fn matches(&self, doc: &Map<String, Json>) -> bool {
        self.detection.matches(doc) && self.filters.iter().all(|filter| filter.matches(doc))
    }

    /// What an event must contain to match (see [`crate::prefilter`]): the detection and the
    /// filters must all hold.
    pub(crate) fn need(&self) -> Option<Need> {
        prefilter::all(
            std::iter::once(self.detection.need())
                .chain(self.filters.iter().map(|filter| filter.need())),
        )
    }

    /// Adds a meta-filter's detection, which from now on must match too.
    pub(crate) fn add_filter(&mut self, filter: Arc<Detection>) {
        self.filters.push(filter);
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

/// The logsource a rule states. Elements it leaves out match any event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleLogSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl RuleLogSource {
    /// Whether an event of `logsource` is one this rule is meant for: every element the rule
    /// states must equal the event's, ignoring case. An element the event lacks is unknown, so
    /// a rule that states it does not apply.
    pub fn applies_to(&self, logsource: &LogSource) -> bool {
        fits(&self.product, &logsource.product)
            && fits(&self.service, &logsource.service)
            && fits(&self.category, &logsource.category)
    }
}

fn fits(rule: &Option<String>, event: &Option<String>) -> bool {
    match (rule, event) {
        (None, _) => true,
        (Some(rule), Some(event)) => eq_ignore_case(rule, event),
        (Some(_), None) => false,
    }
}

/// Builds a rule from one YAML document, collecting every problem found.
pub(crate) fn from_document(
    doc: &Document,
    origin: &str,
    options: &LoadOptions,
) -> Result<Rule, Vec<Problem>> {
    let Value::Map(entries) = &doc.root.value else {
        return Err(vec![Problem::new(
            doc.line,
            format!("a rule must be a mapping, not {}", doc.root.kind()),
        )]);
    };
    let mut problems = Vec::new();
    let mut title = None;
    let mut id = None;
    let mut name = None;
    let mut level: Option<Option<Level>> = None;
    let mut status: Option<Option<Status>> = None;
    let mut description = None;
    let mut author = None;
    let mut date = None;
    let mut modified = None;
    let mut references = Vec::new();
    let mut tags = Vec::new();
    let mut falsepositives = Vec::new();
    let mut logsource = None;
    let mut detection = None;
    for (key, value) in entries {
        match key.name.as_str() {
            "title" => title = keep(&mut problems, text(key, value)),
            "id" => id = keep(&mut problems, text(key, value)),
            "name" => name = keep(&mut problems, text(key, value)),
            "level" => level = keep(&mut problems, parsed(key, value)),
            "status" => status = keep(&mut problems, parsed(key, value)),
            "description" => description = keep(&mut problems, text(key, value)),
            "author" => author = keep(&mut problems, text(key, value)),
            "date" => date = keep(&mut problems, text(key, value)),
            "modified" => modified = keep(&mut problems, text(key, value)),
            "references" => references = keep(&mut problems, texts(key, value)).unwrap_or_default(),
            "tags" => tags = keep(&mut problems, texts(key, value)).unwrap_or_default(),
            "falsepositives" => {
                falsepositives = keep(&mut problems, texts(key, value)).unwrap_or_default()
            }
            "logsource" => logsource = keep(&mut problems, rule_logsource(value)),
            "detection" => detection = Some(value),
            // Sigma 1 rule collections merged documents through `action: global`.
            "action" => {
                return Err(vec![Problem::new(
                    key.line,
                    "rule collections (`action`) are not supported; write each rule in full",
                )])
            }
            _ => {}
        }
    }
    let present = |name: &str| entries.iter().find(|(key, _)| key.name == name);
    let missing = |what: &str| Problem::new(doc.line, format!("the rule has no `{what}`"));
    // A key that was present but invalid has its problem recorded already.
    let title = match (title, present("title")) {
        (Some(Some(title)), _) if !title.trim().is_empty() => Some(title),
        (Some(_), Some((key, _))) => {
            problems.push(Problem::new(key.line, "`title` is empty"));
            None
        }
        (_, None) => {
            problems.push(missing("title"));
            None
        }
        (None, Some(_)) => None,
    };
    if present("logsource").is_none() {
        problems.push(missing("logsource"));
    }
    let fallback = RuleLogSource::default();
    let fields = FieldMap::for_logsource(options, logsource.as_ref().unwrap_or(&fallback));
    let detection = match detection {
        Some(node) => match Detection::compile_mapped(node, options, &fields) {
            Ok(detection) => Some(detection),
            Err(found) => {
                problems.extend(found);
                None
            }
        },
        None => {
            problems.push(missing("detection"));
            None
        }
    };
    let requirements: Vec<_> = fields.requirements().cloned().collect();
    match (title, logsource, detection) {
        (Some(title), Some(logsource), Some(detection)) if problems.is_empty() => Ok(Rule {
            id: id
                .flatten()
                .unwrap_or_else(|| Rule::derive_id(origin, &title)),
            name: name.flatten(),
            title,
            level: level.flatten().unwrap_or(Level::Medium),
            status: status.flatten(),
            description: description.flatten(),
            author: author.flatten(),
            date: date.flatten(),
            modified: modified.flatten(),
            references,
            tags,
            falsepositives,
            logsource,
            origin: origin.to_owned(),
            line: doc.line,
            detection,
            filters: requirements,
        }),
        _ => {
            problems.sort_by_key(|problem| problem.line);
            Err(problems)
        }
    }
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

pub(crate) fn rule_logsource(node: &Node) -> Result<RuleLogSource, Problem> {
    let Value::Map(entries) = &node.value else {
        return Err(Problem::new(
            node.line,
            format!("`logsource` must be a mapping, not {}", node.kind()),
        ));
    };
    let mut logsource = RuleLogSource::default();
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
    if logsource == RuleLogSource::default() {
        // pySigma refuses these too: a rule for every event is almost always a mistake.
        return Err(Problem::new(
            node.line,
            "`logsource` must state a product, service or category",
        ));
    }
    Ok(logsource)
}
