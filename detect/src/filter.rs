//! Sigma meta-filters: documents with a `filter` section that tune other rules.
//!
//! A filter names the rules it applies to and carries its own search identifiers and condition.
//! As pySigma does it, the condition of each named rule becomes `(rule condition) and (filter
//! condition)`: the filter's condition is ANDed *as written*, so a filter that excludes events
//! says so itself (`condition: not selection`). The filter is applied only to rules whose
//! logsource it contains, that is every element the filter states (product, service, category)
//! equals the rule's; for other rules it is left out (and reported as a warning at build time).
//! Filters never apply to correlation rules.

use std::sync::Arc;

use crate::detection::CompiledDetection;
use crate::error::Problem;
use crate::meta::{keep, logsource_within, rule_logsource, text, texts, RuleMeta};
use crate::pipeline::FieldMap;
use crate::yaml::{Document, Node, Value};
use crate::LoadOptions;
use crate::Rule;
use vigil_event::LogSource;

/// A loaded meta-filter document.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The filter's `id`, or one derived from its origin and title like a rule's.
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub logsource: LogSource,
    pub targets: FilterTargets,
    pub origin: String,
    pub line: usize,
    pub(crate) detection: Arc<CompiledDetection>,
}

/// The rules a filter applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterTargets {
    /// Rules named by `id` or `name`.
    Rules(Vec<String>),
    /// Every rule whose logsource fits: pySigma's `rules: any` (or `all`, or an empty list).
    Any,
}

impl Filter {
    /// Whether a rule named by the filter is also one whose logsource the filter contains.
    pub fn fits_logsource(&self, rule: &Rule) -> bool {
        logsource_within(&self.logsource, &rule.logsource)
    }
}

/// Builds a filter from a document whose root mapping has a `filter` key.
pub(crate) fn from_document(
    doc: &Document,
    origin: &str,
    options: &LoadOptions,
) -> Result<Filter, Vec<Problem>> {
    let Value::Map(entries) = &doc.root.value else {
        return Err(vec![Problem::new(doc.line, "a filter must be a mapping")]);
    };
    let mut problems = Vec::new();
    let mut title = None;
    let mut id = None;
    let mut description = None;
    let mut logsource = None;
    let mut section = None;
    for (key, value) in entries {
        match key.name.as_str() {
            "title" => title = keep(&mut problems, text(key, value)).flatten(),
            "id" => id = keep(&mut problems, text(key, value)).flatten(),
            "description" => description = keep(&mut problems, text(key, value)).flatten(),
            "logsource" => logsource = keep(&mut problems, logsource_of(value)),
            "filter" => section = Some(value),
            _ => {}
        }
    }
    let title = match title {
        Some(title) if !title.trim().is_empty() => Some(title),
        _ => {
            problems.push(Problem::new(doc.line, "the filter has no `title`"));
            None
        }
    };
    if logsource.is_none() && !entries.iter().any(|(key, _)| key.name == "logsource") {
        problems.push(Problem::new(doc.line, "the filter has no `logsource`"));
    }
    let fallback = LogSource::default();
    let fields = FieldMap::for_logsource(options, logsource.as_ref().unwrap_or(&fallback));
    let compiled = section.and_then(|node| match filter_section(node, options, &fields) {
        Ok(compiled) => Some(compiled),
        Err(found) => {
            problems.extend(found);
            None
        }
    });
    match (title, logsource, compiled) {
        (Some(title), Some(logsource), Some((targets, detection))) if problems.is_empty() => {
            Ok(Filter {
                id: id.unwrap_or_else(|| RuleMeta::derive_id(origin, &title)),
                title,
                description,
                logsource,
                targets,
                origin: origin.to_owned(),
                line: doc.line,
                detection: Arc::new(detection),
            })
        }
        _ => {
            problems.sort_by_key(|problem| problem.line);
            Err(problems)
        }
    }
}

/// A filter's logsource may be empty (pySigma accepts that: the filter then fits every rule),
/// unlike a rule's.
fn logsource_of(node: &Node) -> Result<LogSource, Problem> {
    match &node.value {
        Value::Map(entries) if entries.is_empty() => Ok(LogSource::default()),
        Value::Map(_) => match rule_logsource(node) {
            Err(problem) if problem.message.contains("must state") => Ok(LogSource::default()),
            other => other,
        },
        _ => rule_logsource(node),
    }
}

fn filter_section(
    node: &Node,
    options: &LoadOptions,
    fields: &FieldMap,
) -> Result<(FilterTargets, CompiledDetection), Vec<Problem>> {
    let Value::Map(entries) = &node.value else {
        return Err(vec![Problem::new(
            node.line,
            format!("`filter` must be a mapping, not {}", node.kind()),
        )]);
    };
    let mut targets = None;
    let mut rest = Vec::new();
    let mut problems = Vec::new();
    for (key, value) in entries {
        match key.name.as_str() {
            "rules" => match &value.value {
                Value::String(word)
                    if word.eq_ignore_ascii_case("any") || word.eq_ignore_ascii_case("all") =>
                {
                    targets = Some(FilterTargets::Any)
                }
                Value::Seq(items) if items.is_empty() => targets = Some(FilterTargets::Any),
                _ => match texts(key, value) {
                    Ok(list) => targets = Some(FilterTargets::Rules(list)),
                    Err(problem) => problems.push(problem),
                },
            },
            "condition" => {
                // pySigma takes exactly one condition string, not a list.
                if !matches!(value.value, Value::String(_)) {
                    problems.push(Problem::new(
                        value.line,
                        format!(
                            "a filter's condition must be a string, not {}",
                            value.kind()
                        ),
                    ));
                }
                rest.push((key.clone(), value.clone()));
            }
            _ => rest.push((key.clone(), value.clone())),
        }
    }
    if targets.is_none() && problems.is_empty() {
        problems.push(Problem::new(
            node.line,
            "`filter` has no `rules` (name the rules, or `any` for every rule of the logsource)",
        ));
    }
    let section = Node {
        line: node.line,
        value: Value::Map(rest),
    };
    let detection = CompiledDetection::compile_mapped(&section, options, fields);
    match (targets, detection) {
        (Some(targets), Ok(detection)) if problems.is_empty() => Ok((targets, detection)),
        (_, detection) => {
            if let Err(found) = detection {
                problems.extend(found);
            }
            Err(problems)
        }
    }
}
