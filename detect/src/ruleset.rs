//! Building one [`Engine`] from the documents of many files: detection rules, correlation rules
//! and meta-filters, which may refer to each other across files.

use std::collections::{HashMap, HashSet};

use crate::correlation::state::{Feed, Graph, Lookup, SlotSpec};
use crate::correlation::CorrelationRule;
use crate::filter::{Filter, FilterTargets};
use crate::path::FieldPath;
use crate::{parse_rules, Engine, ParsedRules, Rule, RuleError};

/// Collects the documents of every rule file, then resolves the references between them.
///
/// ```
/// use vigil_detect::RuleSetBuilder;
///
/// let mut builder = RuleSetBuilder::new();
/// let rule = "title: A\nname: a\nlogsource: {product: aws}\n\
///             detection: {sel: {x: 1}, condition: sel}\n";
/// let correlation = "title: Many A\ncorrelation:\n  type: event_count\n  rules: [a]\n  \
///                    group-by: [user]\n  timespan: 5m\n  condition: {gte: 3}\n";
/// builder.add_text(rule, "a.yml").add_text(correlation, "many_a.yml");
/// let built = builder.build();
/// assert!(built.errors.is_empty(), "{:?}", built.errors);
/// assert_eq!(built.engine.correlations().len(), 1);
/// ```
#[derive(Debug, Default)]
pub struct RuleSetBuilder {
    rules: Vec<Rule>,
    correlations: Vec<CorrelationRule>,
    filters: Vec<Filter>,
    errors: Vec<RuleError>,
}

/// What [`RuleSetBuilder::build`] gives: the engine of everything that loaded, the errors of
/// what did not (including parse errors given to the builder), and warnings about documents
/// that loaded but may not do what their author meant.
#[derive(Debug, Default)]
pub struct BuiltRules {
    pub engine: Engine,
    pub errors: Vec<RuleError>,
    pub warnings: Vec<RuleError>,
}

/// A rule or correlation that a reference resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Rule(usize),
    Correlation(usize),
}

impl RuleSetBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one file's text (`origin` names it in errors) and adds all its documents.
    pub fn add_text(&mut self, text: &str, origin: &str) -> &mut Self {
        self.add_parsed(parse_rules(text, origin))
    }

    /// Adds what [`parse_rules`] gave, errors included, so they are reported with the rest.
    pub fn add_parsed(&mut self, parsed: ParsedRules) -> &mut Self {
        self.rules.extend(parsed.rules);
        self.correlations.extend(parsed.correlations);
        self.filters.extend(parsed.filters);
        self.errors.extend(parsed.errors);
        self
    }

    pub fn add_rule(&mut self, rule: Rule) -> &mut Self {
        self.rules.push(rule);
        self
    }

    pub fn add_correlation(&mut self, correlation: CorrelationRule) -> &mut Self {
        self.correlations.push(correlation);
        self
    }

    pub fn add_filter(&mut self, filter: Filter) -> &mut Self {
        self.filters.push(filter);
        self
    }

    /// Resolves references and compiles the engine. Never fails as a whole: every document
    /// that cannot be used is reported in `errors` and left out.
    pub fn build(self) -> BuiltRules {
        let RuleSetBuilder {
            rules,
            correlations,
            filters,
            mut errors,
        } = self;
        let mut warnings = Vec::new();
        let error = |origin: &str, line: usize, message: String| RuleError {
            origin: origin.to_owned(),
            line,
            message,
        };

        // Ids are unique across rules and correlations: the first document keeps its id.
        let mut ids: HashMap<String, (String, usize)> = HashMap::new();
        let mut keep_id = |id: &str, origin: &str, line: usize, errors: &mut Vec<RuleError>| {
            if let Some((first_origin, first_line)) = ids.get(id) {
                errors.push(error(
                    origin,
                    line,
                    format!("id {id} is already used by {first_origin}:{first_line}"),
                ));
                false
            } else {
                ids.insert(id.to_owned(), (origin.to_owned(), line));
                true
            }
        };
        let mut rules: Vec<Rule> = rules
            .into_iter()
            .filter(|rule| keep_id(&rule.id, &rule.origin, rule.line, &mut errors))
            .collect();
        let correlations: Vec<CorrelationRule> = correlations
            .into_iter()
            .filter(|c| keep_id(&c.id, &c.origin, c.line, &mut errors))
            .collect();

        // References name an id first, then a `name`.
        let mut by_id: HashMap<String, Target> = HashMap::new();
        let mut by_name: HashMap<String, Target> = HashMap::new();
        let mut names: Vec<(Option<&str>, Target, &str, usize)> = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            by_id.insert(rule.id.clone(), Target::Rule(index));
            names.push((
                rule.name.as_deref(),
                Target::Rule(index),
                &rule.origin,
                rule.line,
            ));
        }
        for (index, c) in correlations.iter().enumerate() {
            by_id.insert(c.id.clone(), Target::Correlation(index));
            names.push((
                c.name.as_deref(),
                Target::Correlation(index),
                &c.origin,
                c.line,
            ));
        }
        let mut name_origin: HashMap<&str, (&str, usize)> = HashMap::new();
        for (name, target, origin, line) in names {
            let Some(name) = name else { continue };
            match name_origin.get(name) {
                Some((first_origin, first_line)) => errors.push(error(
                    origin,
                    line,
                    format!("name {name:?} is already used by {first_origin}:{first_line}; references by this name go there"),
                )),
                None => {
                    name_origin.insert(name, (origin, line));
                    by_name.insert(name.to_owned(), target);
                }
            }
        }
        let resolve = |reference: &str| {
            by_id
                .get(reference)
                .or_else(|| by_name.get(reference))
                .copied()
        };

        // Filters.
        for filter in &filters {
            let targets: Vec<usize> = match &filter.targets {
                FilterTargets::Any => (0..rules.len())
                    .filter(|&index| filter.fits_logsource(&rules[index]))
                    .collect(),
                FilterTargets::Rules(references) => {
                    let mut found = Vec::new();
                    for reference in references {
                        match resolve(reference) {
                            None => errors.push(error(
                                &filter.origin,
                                filter.line,
                                format!("filter {:?} names unknown rule {reference:?}", filter.title),
                            )),
                            Some(Target::Correlation(_)) => warnings.push(error(
                                &filter.origin,
                                filter.line,
                                format!("filter {:?} names correlation rule {reference:?}; filters apply to detection rules only", filter.title),
                            )),
                            Some(Target::Rule(index)) if !filter.fits_logsource(&rules[index]) => {
                                warnings.push(error(
                                    &filter.origin,
                                    filter.line,
                                    format!("filter {:?} is not applied to rule {reference:?}: the filter's logsource does not contain the rule's", filter.title),
                                ))
                            }
                            Some(Target::Rule(index)) => found.push(index),
                        }
                    }
                    found
                }
            };
            let mut seen = HashSet::new();
            for index in targets {
                if seen.insert(index) {
                    rules[index].add_filter(filter.detection.clone());
                }
            }
        }

        // Correlations: resolve their references; one that cannot be resolved is left out, and
        // so, in turn, is every correlation that refers to it.
        let mut resolved: Vec<Option<Vec<Target>>> = correlations
            .iter()
            .map(|c| {
                let mut targets = Vec::new();
                let mut ok = true;
                for reference in &c.rules {
                    match resolve(reference) {
                        Some(target) if targets.contains(&target) => {
                            errors.push(error(
                                &c.origin,
                                c.line,
                                format!("correlation {:?} refers to {reference:?} twice", c.title),
                            ));
                            ok = false;
                        }
                        Some(target) => targets.push(target),
                        None => {
                            errors.push(error(
                                &c.origin,
                                c.line,
                                format!(
                                    "correlation {:?} refers to unknown rule {reference:?}",
                                    c.title
                                ),
                            ));
                            ok = false;
                        }
                    }
                }
                ok.then_some(targets)
            })
            .collect();
        // Cycles: repeatedly keep the correlations whose inputs are all detection rules or
        // correlations kept already. What never becomes ready is in (or behind) a cycle or
        // behind a correlation that failed.
        let mut ready = vec![false; correlations.len()];
        loop {
            let mut progress = false;
            for index in 0..correlations.len() {
                if ready[index] {
                    continue;
                }
                let Some(targets) = &resolved[index] else {
                    continue;
                };
                if targets.iter().all(|target| match target {
                    Target::Rule(_) => true,
                    Target::Correlation(inner) => ready[*inner],
                }) {
                    ready[index] = true;
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        for (index, c) in correlations.iter().enumerate() {
            if !ready[index] && resolved[index].is_some() {
                errors.push(error(
                    &c.origin,
                    c.line,
                    format!("correlation {:?} refers to a correlation that did not load, or to itself through a cycle", c.title),
                ));
                resolved[index] = None;
            }
        }

        // Renumber the kept correlations.
        let mut new_index = vec![None; correlations.len()];
        let mut kept = Vec::new();
        let mut kept_targets = Vec::new();
        for (index, (c, targets)) in correlations.into_iter().zip(resolved).enumerate() {
            if let Some(targets) = targets {
                new_index[index] = Some(kept.len());
                kept.push(c);
                kept_targets.push(targets);
            }
        }

        let mut graph = Graph {
            rule_feeds: vec![Vec::new(); rules.len()],
            correlation_feeds: vec![Vec::new(); kept.len()],
            rule_emits: vec![true; rules.len()],
            correlation_emits: vec![true; kept.len()],
            slots: Vec::with_capacity(kept.len()),
        };
        for (index, (c, targets)) in kept.iter().zip(&kept_targets).enumerate() {
            let mut slots = Vec::with_capacity(targets.len());
            for (slot, (target, reference)) in targets.iter().zip(&c.rules).enumerate() {
                let feed = Feed {
                    correlation: index,
                    slot,
                };
                // An alias may name the referenced rule by its id or name, whichever the
                // correlation's `rules` used.
                let (id, name) = match *target {
                    Target::Rule(rule) => {
                        graph.rule_feeds[rule].push(feed);
                        if !c.generate {
                            graph.rule_emits[rule] = false;
                        }
                        (rules[rule].id.as_str(), rules[rule].name.as_deref())
                    }
                    Target::Correlation(inner) => {
                        // `ready` guarantees the inner one was kept.
                        let inner = new_index[inner].unwrap_or(index);
                        graph.correlation_feeds[inner].push(feed);
                        if !c.generate {
                            graph.correlation_emits[inner] = false;
                        }
                        (kept[inner].id.as_str(), kept[inner].name.as_deref())
                    }
                };
                let mut known = vec![reference.as_str(), id];
                known.extend(name);
                let lookup = |field: &str| {
                    let name = c.alias_for(field, &known).to_owned();
                    Lookup {
                        path: FieldPath::new(&name),
                        name,
                    }
                };
                slots.push(SlotSpec {
                    group: c.group_by.iter().map(|field| lookup(field)).collect(),
                    values: c.fields.iter().map(|field| lookup(field)).collect(),
                });
            }
            for (alias, mapping) in &c.aliases {
                for (reference, _) in mapping {
                    let known = targets.iter().zip(&c.rules).any(|(target, written)| {
                        written == reference
                            || match *target {
                                Target::Rule(rule) => {
                                    rules[rule].id == *reference
                                        || rules[rule].name.as_deref() == Some(reference)
                                }
                                Target::Correlation(inner) => new_index[inner]
                                    .and_then(|inner| kept.get(inner))
                                    .is_some_and(|inner| {
                                        inner.id == *reference
                                            || inner.name.as_deref() == Some(reference)
                                    }),
                            }
                    });
                    if !known {
                        warnings.push(error(
                            &c.origin,
                            c.line,
                            format!("alias {alias:?} of correlation {:?} maps {reference:?}, which is not among its rules", c.title),
                        ));
                    }
                }
                if !c.group_by.contains(alias) && !c.fields.contains(alias) {
                    warnings.push(error(
                        &c.origin,
                        c.line,
                        format!("alias {alias:?} of correlation {:?} is not used in its group-by or condition field", c.title),
                    ));
                }
            }
            slots.shrink_to_fit();
            graph.slots.push(slots);
        }

        errors.sort_by(|a, b| (&a.origin, a.line).cmp(&(&b.origin, b.line)));
        BuiltRules {
            engine: Engine::with_correlations(rules, kept, graph),
            errors,
            warnings,
        }
    }
}
