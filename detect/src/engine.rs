//! The engine: loaded rules, routed by logsource and evaluated against events.

use std::collections::HashMap;

use serde_json::{Map, Value};
use vigil_event::{Event, LogSource};

use crate::correlation::state::Graph;
use crate::correlation::CorrelationRule;
use crate::rule::{Rule, RuleLogSource};

/// A set of compiled rules, ready to evaluate events.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    rules: Vec<Rule>,
    /// Rules grouped by their (lowercased) logsource, so an event's logsource is compared once
    /// per distinct logsource rather than once per rule; a corpus has far fewer logsources than
    /// rules.
    routes: Vec<Route>,
    /// Correlation rules and how matches flow into them; empty for [`Engine::new`]. Built by
    /// [`crate::RuleSetBuilder`].
    correlations: Vec<CorrelationRule>,
    graph: Graph,
}

#[derive(Debug, Clone)]
struct Route {
    logsource: RuleLogSource,
    /// Indices into `rules`, ascending.
    rules: Vec<usize>,
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut routes: Vec<Route> = Vec::new();
        let mut route_of: HashMap<RuleLogSource, usize> = HashMap::new();
        let lower = |element: &Option<String>| element.as_deref().map(str::to_lowercase);
        for (index, rule) in rules.iter().enumerate() {
            let key = RuleLogSource {
                product: lower(&rule.logsource.product),
                service: lower(&rule.logsource.service),
                category: lower(&rule.logsource.category),
            };
            let route = *route_of.entry(key.clone()).or_insert_with(|| {
                routes.push(Route {
                    logsource: key,
                    rules: Vec::new(),
                });
                routes.len() - 1
            });
            routes[route].rules.push(index);
        }
        Engine {
            rules,
            routes,
            correlations: Vec::new(),
            graph: Graph::default(),
        }
    }

    pub(crate) fn with_correlations(
        rules: Vec<Rule>,
        correlations: Vec<CorrelationRule>,
        graph: Graph,
    ) -> Self {
        Engine {
            correlations,
            graph,
            ..Engine::new(rules)
        }
    }

    /// The correlation rules, in the order the builder loaded them.
    pub fn correlations(&self) -> &[CorrelationRule] {
        &self.correlations
    }

    /// Whether matches of the rule at `index` are reported on their own: not when a
    /// correlation refers to it without `generate: true` (as pySigma decides it).
    pub fn rule_generates(&self, index: usize) -> bool {
        self.graph.rule_emits.get(index).copied().unwrap_or(true)
    }

    /// Whether matches of the correlation at `index` are reported on their own: not when an
    /// outer correlation refers to it without `generate: true`.
    pub fn correlation_generates(&self, index: usize) -> bool {
        self.graph
            .correlation_emits
            .get(index)
            .copied()
            .unwrap_or(true)
    }

    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The rules, in the order given to [`Engine::new`].
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rules whose logsource fits `logsource` and whose detection matches `doc`, in the order
    /// of [`Engine::rules`].
    ///
    /// This is stateless: it ignores correlations and `generate`. Use [`crate::Detector`] to
    /// raise alerts when the rules may hold correlations.
    pub fn evaluate(&self, logsource: &LogSource, doc: &Map<String, Value>) -> Vec<&Rule> {
        self.matching(logsource, doc)
            .into_iter()
            .map(|index| &self.rules[index])
            .collect()
    }

    /// The indices of the rules [`Engine::evaluate`] returns, ascending.
    pub fn matching(&self, logsource: &LogSource, doc: &Map<String, Value>) -> Vec<usize> {
        let mut hits: Vec<usize> = self
            .routes
            .iter()
            .filter(|route| route.logsource.applies_to(logsource))
            .flat_map(|route| route.rules.iter().copied())
            .filter(|&index| self.rules[index].matches(doc))
            .collect();
        hits.sort_unstable();
        hits
    }

    /// [`Engine::evaluate`] for an event, with its own logsource and document.
    pub fn evaluate_event(&self, event: &Event) -> Result<Vec<&Rule>, serde_json::Error> {
        Ok(self.evaluate(&event.logsource, &event.document()?))
    }
}
