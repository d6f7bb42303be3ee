//! The `detection` section: search identifiers compiled into matchers, and the condition over
//! them.

use std::borrow::Cow;

use vigil_event::Object;

use crate::condition::{self, Expr};
use crate::error::Problem;
use crate::matcher::Matcher;
use crate::modifier;
use crate::modifier_chain::{self, Compiled, Test};
use crate::path::{self, FieldPath};
use crate::prefilter::{union_keys, KeyNeed, Narrowing, Need};
use crate::yaml::{Key, Node, Value};
use crate::LoadOptions;

/// A compiled `detection` section.
#[derive(Debug, Clone)]
pub(crate) struct CompiledDetection {
    /// Search identifiers in the order the rule gives them.
    pub(crate) searches: Vec<(String, Search)>,
    pub(crate) condition: Expr,
}

/// One search identifier's definition.
#[derive(Debug, Clone)]
pub(crate) enum Search {
    /// A mapping: every item must match.
    All(Vec<Item>),
    /// A list: any alternative must match.
    Any(Vec<Search>),
}

/// One key of a search mapping, or the keywords of a list.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Field {
        path: FieldPath,
        values: Vec<Matcher>,
        /// `all` modifier: each value must match, not just one.
        all: bool,
        /// `neq` modifier: the item holds when the values do not match.
        negate: bool,
    },
    /// `exists`: whether the field is present, whatever its value.
    Exists {
        path: FieldPath,
        want: bool,
        negate: bool,
    },
    /// Values searched for in every string of the event.
    Keywords {
        matchers: Vec<Matcher>,
        all: bool,
        negate: bool,
    },
}

/// How a rule's field names become the event's: what field-mapping pipelines provide (see
/// `pipeline.rs`), kept as a trait here so that compiling a detection does not depend on them.
pub(crate) trait FieldNames {
    /// The name a rule's field has in the event.
    fn rename<'b>(&self, field: &'b str) -> Cow<'b, str>;
}

/// Field names as the rule writes them.
pub(crate) struct AsWritten;

impl FieldNames for AsWritten {
    fn rename<'b>(&self, field: &'b str) -> Cow<'b, str> {
        Cow::Borrowed(field)
    }
}

impl CompiledDetection {
    /// Compiles a `detection` mapping, collecting every problem rather than stopping at the
    /// first, so one load shows the author all of them.
    // Rules and filters compile through `compile_mapped`; this stays for detections that no
    // pipeline applies to.
    #[allow(dead_code)]
    pub fn compile(node: &Node, options: &LoadOptions) -> Result<CompiledDetection, Vec<Problem>> {
        Self::compile_mapped(node, options, &AsWritten)
    }

    /// [`CompiledDetection::compile`] with the field names renamed by pipelines.
    pub fn compile_mapped(
        node: &Node,
        options: &LoadOptions,
        fields: &dyn FieldNames,
    ) -> Result<CompiledDetection, Vec<Problem>> {
        let Value::Map(entries) = &node.value else {
            return Err(vec![Problem::new(
                node.line,
                format!("`detection` must be a mapping, not {}", node.kind()),
            )]);
        };
        let mut problems = Vec::new();
        let mut searches = Vec::new();
        let mut names = Vec::new();
        let mut condition_node = None;
        for (key, value) in entries {
            match key.name.as_str() {
                "condition" => condition_node = Some((key, value)),
                // Only meaningful for the aggregations of Sigma 1, which conditions refuse.
                "timeframe" => {}
                name => {
                    names.push(name);
                    match compile_search(value, options, fields) {
                        Ok(search) => searches.push((name.to_owned(), search)),
                        Err(problem) => problems.push(problem),
                    }
                }
            }
        }
        let condition = match condition_node {
            None => Err(Problem::new(node.line, "`detection` has no `condition`")),
            Some(_) if names.is_empty() => Err(Problem::new(
                node.line,
                "`detection` defines no search identifier",
            )),
            Some((key, value)) => compile_condition(key, value, &names),
        };
        match condition {
            Ok(condition) if problems.is_empty() => Ok(CompiledDetection {
                searches,
                condition,
            }),
            Ok(_) => Err(problems),
            Err(problem) => {
                problems.push(problem);
                Err(problems)
            }
        }
    }

    /// A detection of one search (a mapping or a list, as a search identifier's definition),
    /// which is its whole condition: what a pipeline's `require` adds to rules.
    pub fn single(node: &Node, options: &LoadOptions) -> Result<CompiledDetection, Vec<Problem>> {
        let search = compile_search(node, options, &AsWritten).map_err(|p| vec![p])?;
        Ok(CompiledDetection {
            searches: vec![("require".to_owned(), search)],
            condition: Expr::Search(0),
        })
    }

    /// What an event must contain to satisfy the condition (see [`crate::prefilter`]).
    pub fn need(&self) -> Option<Need> {
        self.condition
            .need(&|index| self.searches[index].1.narrowing(&Item::need))
    }

    /// The values some fields must have to satisfy the condition (see `prefilter/keys.rs`).
    pub fn key_need(&self) -> Option<KeyNeed> {
        self.condition
            .need(&|index| self.searches[index].1.narrowing(&Item::key_need))
    }

    /// Whether the event document satisfies the condition.
    pub fn matches<'d>(&self, doc: impl Into<Object<'d>>) -> bool {
        let doc = doc.into();
        // `compile` succeeds only when every search compiled, so the condition's indices
        // (positions among all identifiers) are positions in `searches`.
        self.condition
            .eval(&mut |index| self.searches[index].1.matches(doc))
    }
}

fn compile_condition(key: &Key, value: &Node, names: &[&str]) -> Result<Expr, Problem> {
    let one = |node: &Node| match &node.value {
        Value::String(text) => {
            condition::parse(text, names).map_err(|message| Problem::new(node.line, message))
        }
        _ => Err(Problem::new(
            node.line,
            format!("a condition must be a string, not {}", node.kind()),
        )),
    };
    match &value.value {
        // A list of conditions means any of them, as in pySigma.
        Value::Seq(items) if !items.is_empty() => {
            let mut any = items.iter().map(one).collect::<Result<Vec<_>, _>>()?;
            Ok(if any.len() == 1 {
                any.remove(0)
            } else {
                Expr::Or(any)
            })
        }
        Value::Seq(_) => Err(Problem::new(key.line, "the condition list is empty")),
        _ => one(value),
    }
}

fn compile_search(
    node: &Node,
    options: &LoadOptions,
    fields: &dyn FieldNames,
) -> Result<Search, Problem> {
    match &node.value {
        Value::Map(entries) => compile_map(node, entries, options, fields),
        Value::Seq(items) if items.is_empty() => Err(Problem::new(
            node.line,
            "a search identifier's list is empty",
        )),
        Value::Seq(items) => {
            // Plain values of a list are keywords; mappings are alternatives. pySigma allows
            // both in one list, ORed together.
            let mut alternatives = Vec::new();
            let mut keywords = Vec::new();
            for item in items {
                match &item.value {
                    Value::Map(entries) => {
                        alternatives.push(compile_map(item, entries, options, fields)?)
                    }
                    Value::Seq(_) => {
                        return Err(Problem::new(
                            item.line,
                            "a search identifier's list cannot hold lists",
                        ))
                    }
                    _ => keywords.push(item),
                }
            }
            if !keywords.is_empty() {
                let compiled = modifier_chain::compile(None, &[], &keywords, node.line, options)?;
                alternatives.push(Search::All(vec![item(None, compiled)]));
            }
            Ok(if alternatives.len() == 1 {
                alternatives.remove(0)
            } else {
                Search::Any(alternatives)
            })
        }
        _ => Err(Problem::new(
            node.line,
            format!(
                "a search identifier must be a mapping or a list, not {}",
                node.kind()
            ),
        )),
    }
}

fn compile_map(
    node: &Node,
    entries: &[(Key, Node)],
    options: &LoadOptions,
    fields: &dyn FieldNames,
) -> Result<Search, Problem> {
    if entries.is_empty() {
        return Err(Problem::new(node.line, "a search mapping is empty"));
    }
    let items = entries
        .iter()
        .map(|(key, value)| compile_item(key, value, options, fields))
        .collect::<Result<_, _>>()?;
    Ok(Search::All(items))
}

fn compile_item(
    key: &Key,
    node: &Node,
    options: &LoadOptions,
    fields: &dyn FieldNames,
) -> Result<Item, Problem> {
    let (field, modifiers) =
        modifier::parse_key(&key.name).map_err(|message| Problem::new(key.line, message))?;
    let field = fields.rename(field);
    let field = field.as_ref();
    let values: Vec<&Node> = match &node.value {
        Value::Seq(items) if items.is_empty() => {
            return Err(Problem::new(node.line, "the list of values is empty"))
        }
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    if field.is_empty() {
        if let Some(null) = values.iter().find(|value| value.value == Value::Null) {
            return Err(Problem::new(null.line, "a keyword cannot be `null`"));
        }
    }
    let field = (!field.is_empty()).then_some(field);
    let mut compiled = modifier_chain::compile(field, &modifiers, &values, key.line, options)?;
    if let Test::Values(matchers) = &mut compiled.test {
        matchers
            .iter_mut()
            .for_each(|m| rename_references(m, fields));
    }
    Ok(item(field, compiled))
}

/// `fieldref` names a field of the event too, so it is renamed like the keys.
fn rename_references(matcher: &mut Matcher, fields: &dyn FieldNames) {
    match matcher {
        Matcher::FieldRef { path, .. } => {
            if let Cow::Owned(renamed) = fields.rename(path.name()) {
                *path = FieldPath::new(&renamed);
            }
        }
        Matcher::AnyOf(variants) => variants
            .iter_mut()
            .for_each(|m| rename_references(m, fields)),
        _ => {}
    }
}

fn item(field: Option<&str>, compiled: Compiled) -> Item {
    let Compiled { test, all, negate } = compiled;
    match (field, test) {
        (Some(field), Test::Exists(want)) => Item::Exists {
            path: FieldPath::new(field),
            want,
            negate,
        },
        (Some(field), Test::Values(values)) => Item::Field {
            path: FieldPath::new(field),
            values,
            all,
            negate,
        },
        // `modifier_chain::compile` refuses `exists` without a field.
        (None, Test::Exists(_)) => Item::Keywords {
            matchers: Vec::new(),
            all,
            negate,
        },
        (None, Test::Values(matchers)) => Item::Keywords {
            matchers,
            all,
            negate,
        },
    }
}

impl Search {
    /// What the search needs, from what each item needs.
    fn narrowing<N: Narrowing>(&self, item: &impl Fn(&Item) -> Option<N>) -> Option<N> {
        match self {
            Search::All(items) => N::all(items.iter().map(item)),
            Search::Any(alternatives) => {
                N::any(alternatives.iter().map(|search| search.narrowing(item)))
            }
        }
    }

    pub(crate) fn matches(&self, doc: Object<'_>) -> bool {
        match self {
            Search::All(items) => items.iter().all(|item| item.matches(doc)),
            Search::Any(alternatives) => alternatives.iter().any(|search| search.matches(doc)),
        }
    }
}

impl Item {
    /// Negated items and `exists` hold on events without any given text, so they need none.
    fn need(&self) -> Option<Need> {
        let (matchers, all) = match self {
            Item::Field {
                values,
                all,
                negate: false,
                ..
            } => (values, *all),
            Item::Keywords {
                matchers,
                all,
                negate: false,
            } => (matchers, *all),
            _ => return None,
        };
        let needs = matchers.iter().map(Matcher::need);
        if all {
            Need::all(needs)
        } else {
            Need::any(needs)
        }
    }

    /// A field compared with exact strings only must hold one of them; with `all`, each of
    /// them, so any one's key will do (the one of fewest variants).
    fn key_need(&self) -> Option<KeyNeed> {
        let Item::Field {
            path,
            values,
            all,
            negate: false,
        } = self
        else {
            return None;
        };
        let keys = values.iter().map(Matcher::keys);
        let keys = if *all {
            keys.flatten().min_by_key(Vec::len)?
        } else {
            union_keys(keys)?
        };
        (!keys.is_empty()).then(|| KeyNeed::field(path.name(), keys))
    }

    fn matches(&self, doc: Object<'_>) -> bool {
        match self {
            // With `all`, each value may be met by a different element of a list-valued field,
            // the way `field=a AND field=b` behaves in a search backend.
            Item::Field {
                path,
                values,
                all: true,
                negate,
            } => {
                values
                    .iter()
                    .all(|want| path.any(doc, &mut |got| want.matches(got, doc)))
                    != *negate
            }
            Item::Field {
                path,
                values,
                all: false,
                negate,
            } => {
                path.any(doc, &mut |got| {
                    values.iter().any(|want| want.matches(got, doc))
                }) != *negate
            }
            Item::Exists { path, want, negate } => (path.exists(doc) == *want) != *negate,
            Item::Keywords {
                matchers,
                all: true,
                negate,
            } => {
                matchers
                    .iter()
                    .all(|want| path::any_string(doc, &mut |got| want.matches_text(got)))
                    != *negate
            }
            Item::Keywords {
                matchers,
                all: false,
                negate,
            } => {
                path::any_string(doc, &mut |got| {
                    matchers.iter().any(|want| want.matches_text(got))
                }) != *negate
            }
        }
    }
}
