//! The rule model and how one YAML document becomes a [`Rule`].

use std::ops::Deref;
use std::sync::Arc;

use vigil_event::{LogSource, Object};

use crate::detection::CompiledDetection;
use crate::error::Problem;
use crate::meta::{keep, logsource_within, rule_logsource, text, MetaReader, RuleMeta};
use crate::pipeline::FieldMap;
use crate::prefilter::{KeyNeed, Narrowing, Need};
use crate::yaml::{Document, Value};
use crate::LoadOptions;

/// A loaded Sigma detection rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What the rule states about itself (id, title, level...), which a correlation rule
    /// states too; `rule.title` reads through to it.
    pub meta: RuleMeta,
    pub date: Option<String>,
    pub modified: Option<String>,
    pub logsource: LogSource,
    /// Where the rule came from: the origin given to [`crate::parse_rules`] and the line its
    /// document starts on.
    pub origin: String,
    pub line: usize,
    detection: CompiledDetection,
    /// Conditions of the meta-filters applied to this rule; each must hold too.
    filters: Vec<Arc<CompiledDetection>>,
}

/// A rule's attributes read as its own (`rule.id`, `rule.title`), as callers always have.
impl Deref for Rule {
    type Target = RuleMeta;

    fn deref(&self) -> &RuleMeta {
        &self.meta
    }
}

impl Rule {
    /// The id given to a rule that states none: stable for the same origin and title.
    pub fn derive_id(origin: &str, title: &str) -> String {
        RuleMeta::derive_id(origin, title)
    }

    /// Whether the rule is meant for events of this logsource: every element the rule states
    /// must equal the event's, ignoring case. An element the event lacks is unknown, so a rule
    /// that states it does not apply.
    pub fn applies_to(&self, logsource: &LogSource) -> bool {
        logsource_within(&self.logsource, logsource)
    }

    /// Whether the event document satisfies the rule's detection, whatever its logsource.
    pub fn matches<'d>(&self, doc: impl Into<Object<'d>>) -> bool {
        let doc = doc.into();
        self.detection.matches(doc) && self.filters.iter().all(|filter| filter.matches(doc))
    }

    /// The detection, then the meta-filters: everything [`Rule::matches`] needs to hold.
    pub(crate) fn detections(&self) -> impl Iterator<Item = &CompiledDetection> {
        std::iter::once(&self.detection).chain(self.filters.iter().map(|filter| &**filter))
    }

    /// What an event must contain to match (see [`crate::prefilter`]): the detection and the
    /// filters must all hold.
    pub(crate) fn need(&self) -> Option<Need> {
        Need::all(self.detections().map(|detection| detection.need()))
    }

    /// The values some fields must have for the rule to match (see `prefilter/keys.rs`): the
    /// detection's and the filters'.
    pub(crate) fn key_need(&self) -> Option<KeyNeed> {
        KeyNeed::all(self.detections().map(|detection| detection.key_need()))
    }

    /// Adds a meta-filter's detection, which from now on must match too.
    pub(crate) fn add_filter(&mut self, filter: Arc<CompiledDetection>) {
        self.filters.push(filter);
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
    let mut meta = MetaReader::default();
    let mut date = None;
    let mut modified = None;
    let mut logsource = None;
    let mut detection = None;
    for (key, value) in entries {
        if meta.read(key, value, &mut problems) {
            continue;
        }
        match key.name.as_str() {
            "date" => date = keep(&mut problems, text(key, value)),
            "modified" => modified = keep(&mut problems, text(key, value)),
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
    let title = match (meta.title.clone(), present("title")) {
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
    let fallback = LogSource::default();
    let fields = FieldMap::for_logsource(options, logsource.as_ref().unwrap_or(&fallback));
    let detection = match detection {
        Some(node) => match CompiledDetection::compile_mapped(node, options, &fields) {
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
            meta: meta.finish(title, origin),
            date: date.flatten(),
            modified: modified.flatten(),
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
