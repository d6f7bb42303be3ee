//! How a YAML document with a `correlation` section becomes a [`CorrelationRule`].

use super::{Alias, CompareOp, CorrelationRule, CorrelationType, Threshold, Timespan};
use crate::error::Problem;
use crate::meta::{keep, text, texts, MetaReader};
use crate::yaml::{Document, Key, Node, Value};

/// Builds a correlation rule from a document whose root mapping has a `correlation` key,
/// collecting every problem found.
pub(crate) fn from_document(doc: &Document, origin: &str) -> Result<CorrelationRule, Vec<Problem>> {
    let Value::Map(entries) = &doc.root.value else {
        return Err(vec![Problem::new(
            doc.line,
            "a correlation rule must be a mapping",
        )]);
    };
    let mut problems = Vec::new();
    let mut meta = MetaReader::default();
    let mut section = None;
    for (key, value) in entries {
        if meta.read(key, value, &mut problems) {
            continue;
        }
        if key.name == "correlation" {
            section = Some(value);
        }
    }
    let title = match meta.title.clone().flatten() {
        Some(title) if !title.trim().is_empty() => Some(title),
        _ => {
            problems.push(Problem::new(
                doc.line,
                "the correlation rule has no `title`",
            ));
            None
        }
    };
    let section = section.and_then(|node| keep(&mut problems, section_of(node)).flatten());
    match (title, section) {
        (Some(title), Some(section)) if problems.is_empty() => Ok(CorrelationRule {
            meta: meta.finish(title, origin),
            kind: section.kind,
            rules: section.rules,
            group_by: section.group_by,
            timespan: section.timespan,
            condition: section.condition,
            fields: section.fields,
            percentile: section.percentile,
            aliases: section.aliases,
            generate: section.generate,
            origin: origin.to_owned(),
            line: doc.line,
        }),
        _ => {
            problems.sort_by_key(|problem| problem.line);
            Err(problems)
        }
    }
}

struct Section {
    kind: CorrelationType,
    rules: Vec<String>,
    group_by: Vec<String>,
    timespan: Timespan,
    condition: Vec<Threshold>,
    fields: Vec<String>,
    percentile: Option<f64>,
    aliases: Vec<Alias>,
    generate: bool,
}

/// Reads the `correlation` mapping. Stops at the first problem: the parts depend on each other
/// (the condition's requirements depend on the type).
fn section_of(node: &Node) -> Result<Option<Section>, Problem> {
    let Value::Map(entries) = &node.value else {
        return Err(Problem::new(
            node.line,
            format!("`correlation` must be a mapping, not {}", node.kind()),
        ));
    };
    let find = |name: &str| entries.iter().find(|(key, _)| key.name == name);
    let missing = |what: &str| Problem::new(node.line, format!("`correlation` has no `{what}`"));

    let (type_key, type_node) = find("type").ok_or_else(|| missing("type"))?;
    let type_text = text(type_key, type_node)?.unwrap_or_default();
    let kind = CorrelationType::ALL
        .into_iter()
        .find(|kind| kind.as_str() == type_text)
        .ok_or_else(|| {
            Problem::new(
                type_node.line,
                format!(
                    "unknown correlation type {type_text:?}; expected one of {}",
                    CorrelationType::ALL.map(|kind| kind.as_str()).join(", ")
                ),
            )
        })?;

    let (rules_key, rules_node) = find("rules").ok_or_else(|| missing("rules"))?;
    let rules = texts(rules_key, rules_node)?;
    if rules.is_empty() {
        return Err(Problem::new(rules_node.line, "`rules` is empty"));
    }
    if kind == CorrelationType::TemporalOrdered && rules.len() < 2 {
        return Err(Problem::new(
            rules_node.line,
            "`temporal_ordered` needs at least two rules to order",
        ));
    }

    // The spec calls `group-by` mandatory, but pySigma accepts its absence: one group for all.
    let group_by = match find("group-by") {
        Some((key, value)) => texts(key, value)?,
        None => Vec::new(),
    };

    let (span_key, span_node) = find("timespan").ok_or_else(|| missing("timespan"))?;
    let timespan = timespan(span_key, span_node)?;

    let generate = match find("generate") {
        None => false,
        Some((_, value)) => match value.value {
            Value::Bool(generate) => generate,
            Value::Null => false,
            _ => {
                return Err(Problem::new(
                    value.line,
                    format!("`generate` must be true or false, not {}", value.kind()),
                ))
            }
        },
    };

    let aliases = match find("aliases") {
        Some((_, value)) => aliases(value)?,
        None => Vec::new(),
    };

    let mut condition = Vec::new();
    let mut fields = Vec::new();
    let mut percentile = None;
    match find("condition") {
        Some((_, value)) => {
            let Value::Map(items) = &value.value else {
                return Err(Problem::new(
                    value.line,
                    format!(
                        "a correlation `condition` must be a mapping such as `gte: 10`, not {}",
                        value.kind()
                    ),
                ));
            };
            for (key, item) in items {
                if key.name == "field" {
                    fields = texts(key, item)?;
                    continue;
                }
                if key.name == "percentile" {
                    let p = number(key, item)?;
                    if !(0.0..=100.0).contains(&p) {
                        return Err(Problem::new(
                            item.line,
                            "`percentile` must be between 0 and 100",
                        ));
                    }
                    percentile = Some(p);
                    continue;
                }
                let op = CompareOp::ALL
                    .into_iter()
                    .find(|op| op.as_str() == key.name)
                    .ok_or_else(|| {
                        Problem::new(
                            key.line,
                            format!(
                                "unknown correlation condition `{}`; expected gt, gte, lt, lte, eq, neq, field or percentile",
                                key.name
                            ),
                        )
                    })?;
                condition.push(Threshold {
                    op,
                    value: number(key, item)?,
                });
            }
            if condition.is_empty() {
                return Err(Problem::new(
                    value.line,
                    "the correlation condition has no comparison (gt, gte, lt, lte, eq or neq)",
                ));
            }
        }
        // pySigma's default for the temporal types: every referenced rule must have matched.
        None if kind.is_temporal() => condition.push(Threshold {
            op: CompareOp::Gte,
            value: rules.len() as f64,
        }),
        None => return Err(missing("condition")),
    }
    if kind.needs_field() && fields.is_empty() {
        return Err(Problem::new(
            node.line,
            format!("a `{kind}` correlation needs a `field` in its condition"),
        ));
    }
    if kind.is_numeric() && fields.len() > 1 {
        return Err(Problem::new(
            node.line,
            format!("a `{kind}` correlation aggregates one `field`, not a list"),
        ));
    }
    if !kind.needs_field() && !fields.is_empty() {
        return Err(Problem::new(
            node.line,
            format!("a `{kind}` correlation takes no `field`"),
        ));
    }
    match kind {
        CorrelationType::ValueMedian => percentile = Some(50.0),
        // The spec hints that the median is the 50th percentile, its default here too.
        CorrelationType::ValuePercentile => percentile = Some(percentile.unwrap_or(50.0)),
        _ if percentile.is_some() => {
            return Err(Problem::new(
                node.line,
                format!("a `{kind}` correlation takes no `percentile`"),
            ))
        }
        _ => {}
    }
    Ok(Some(Section {
        kind,
        rules,
        group_by,
        timespan,
        condition,
        fields,
        percentile,
        aliases,
        generate,
    }))
}

fn number(key: &Key, node: &Node) -> Result<f64, Problem> {
    let value = match &node.value {
        Value::Int(i, _) => *i as f64,
        Value::Float(f, _) => *f,
        _ => {
            return Err(Problem::new(
                node.line,
                format!("`{}` must be a number, not {}", key.name, node.kind()),
            ))
        }
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Problem::new(
            node.line,
            format!("`{}` must be a finite number", key.name),
        ))
    }
}

/// Parses `<count><unit>`. The spec defines `s`, `m`, `h` and `d`; pySigma also accepts `w`,
/// `M` (30.436875 days) and `y` (365.2425 days), and so does Vigil.
fn timespan(key: &Key, node: &Node) -> Result<Timespan, Problem> {
    let text = text(key, node)?.unwrap_or_default();
    let bad = || {
        Problem::new(
            node.line,
            format!(
                "invalid timespan {text:?}; expected a number and a unit such as 30s, 5m, 1h or 2d"
            ),
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (count, unit) = text.split_at(split);
    let count: i64 = count.parse().map_err(|_| bad())?;
    let unit_seconds: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "M" => 2_629_746,
        "y" => 31_556_952,
        _ => return Err(bad()),
    };
    if count <= 0 {
        return Err(Problem::new(
            node.line,
            "the timespan must be greater than zero",
        ));
    }
    let millis = count
        .checked_mul(unit_seconds)
        .and_then(|seconds| seconds.checked_mul(1000))
        .ok_or_else(|| Problem::new(node.line, "the timespan is too long"))?;
    Ok(Timespan { text, millis })
}

fn aliases(node: &Node) -> Result<Vec<Alias>, Problem> {
    let Value::Map(entries) = &node.value else {
        return Err(Problem::new(
            node.line,
            format!("`aliases` must be a mapping, not {}", node.kind()),
        ));
    };
    let mut out = Vec::new();
    for (alias, mapping) in entries {
        let Value::Map(pairs) = &mapping.value else {
            return Err(Problem::new(
                mapping.line,
                format!(
                    "alias `{}` must map rule names to fields, not be {}",
                    alias.name,
                    mapping.kind()
                ),
            ));
        };
        let mut fields = Vec::new();
        for (rule, field) in pairs {
            let Some(field_name) = text(rule, field)? else {
                return Err(Problem::new(
                    field.line,
                    format!("alias `{}` gives no field for `{}`", alias.name, rule.name),
                ));
            };
            fields.push((rule.name.clone(), field_name));
        }
        out.push((alias.name.clone(), fields));
    }
    Ok(out)
}
