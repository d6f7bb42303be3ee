//! The engine: loaded rules, routed by logsource and evaluated against events.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use vigil_event::{Document, Event, LogSource, Object};

use crate::correlation::state::Graph;
use crate::correlation::CorrelationRule;
use crate::meta::logsource_within;
use crate::prefilter::{Found, KeyIndex, Prefilter};
use crate::rule::Rule;

/// What [`Engine::matching_record`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordMatches<'r> {
    /// The indices of the matching rules, ascending.
    pub hits: Vec<usize>,
    /// The record's document, when it was parsed: not when its text ruled out every rule.
    pub document: Option<Document<'r>>,
    /// How many rules were evaluated in full: the candidates the prefilter left.
    pub evaluated: usize,
}

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
    plans: Plans,
}

/// What evaluating events of one logsource takes, worked out once: the rules that apply and
/// how the ones that may match an event are found.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Indices into `rules`, ascending.
    rules: Vec<usize>,
    candidates: Candidates,
}

/// How a plan finds the rules that may match an event.
#[derive(Debug)]
enum Candidates {
    /// By the literals of the event's text, found by one automaton: an event none of whose
    /// rules can match is never parsed.
    Text(Prefilter),
    /// By the values of a few fields, looked up in tables: for plans whose rules nearly all
    /// name exact values, where a parse and a few lookups cost less than a pass over every byte.
    Keys(KeyIndex),
}

/// A plan looks rules up by key when at most this many of its rules have literals but no key:
/// those are evaluated on every event, which costs about what the text's automaton would.
const MAX_TEXT_ONLY: usize = 8;

/// Plans by event logsource, made on first sight. A stream has a handful of logsources; past
/// `MAX_PLANS` (events with ever-new logsources) plans are made per event and not kept, so
/// memory stays bounded.
#[derive(Debug, Default)]
struct Plans(RwLock<Vec<(LogSource, Arc<Plan>)>>);

const MAX_PLANS: usize = 64;

/// A [`crate::Detector`]'s own plans, by event logsource: read without the engine's lock and
/// reference counts, which took about 3% of `vigil detect`'s user time over Kubernetes audit
/// events. Bounded as the engine's are: past `MAX_PLANS` logsources, a new one takes the last
/// one's place.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnPlans(Vec<(LogSource, Arc<Plan>)>);

impl OwnPlans {
    /// The plan for events of `logsource`, from `engine` on first sight. The engine must be
    /// the same (or a clone) for every call: a plan holds indices into its rules.
    pub(crate) fn get(&mut self, engine: &Engine, logsource: &LogSource) -> &Plan {
        if let Some(at) = self.0.iter().position(|(known, _)| known == logsource) {
            return &self.0[at].1;
        }
        if self.0.len() == MAX_PLANS {
            self.0.pop();
        }
        self.0.push((logsource.clone(), engine.plan(logsource)));
        &self.0.last().expect("a plan was just pushed").1
    }
}

impl Clone for Plans {
    /// Plans depend only on the rules, so a clone may start without them.
    fn clone(&self) -> Self {
        Plans::default()
    }
}

#[derive(Debug, Clone)]
struct Route {
    logsource: LogSource,
    /// Indices into `rules`, ascending.
    rules: Vec<usize>,
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut routes: Vec<Route> = Vec::new();
        let mut route_of: HashMap<LogSource, usize> = HashMap::new();
        let lower = |element: &Option<String>| element.as_deref().map(str::to_lowercase);
        for (index, rule) in rules.iter().enumerate() {
            let key = LogSource {
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
            plans: Plans::default(),
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

    /// Whether anything the engine does reads an event's time: only correlations do, to
    /// window and expire what they count. Without them, a caller may leave times unread.
    pub fn reads_event_times(&self) -> bool {
        !self.correlations.is_empty()
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
    pub fn evaluate<'d>(&self, logsource: &LogSource, doc: impl Into<Object<'d>>) -> Vec<&Rule> {
        self.matching(logsource, doc)
            .into_iter()
            .map(|index| &self.rules[index])
            .collect()
    }

    /// The indices of the rules [`Engine::evaluate`] returns, ascending.
    pub fn matching<'d>(&self, logsource: &LogSource, doc: impl Into<Object<'d>>) -> Vec<usize> {
        self.matching_planned(&self.plan(logsource), doc.into())
    }

    /// [`Engine::matching`] by a plan already looked up (see [`OwnPlans`]).
    pub(crate) fn matching_planned(&self, plan: &Plan, doc: Object<'_>) -> Vec<usize> {
        self.matching_candidates(plan, None, doc).0
    }

    /// The rules of `plan` that may match `doc` and do, ascending, and how many were evaluated.
    /// For a text prefilter, the candidates are those whose need `found` meets, the literals of
    /// the record's text where it was scanned, else of the document.
    fn matching_candidates(
        &self,
        plan: &Plan,
        found: Option<&Found>,
        doc: Object<'_>,
    ) -> (Vec<usize>, usize) {
        let mut hits = Vec::new();
        let mut evaluated = 0;
        let evaluate = |position: usize| {
            evaluated += 1;
            let index = plan.rules[position];
            if self.rules[index].matches(doc) {
                hits.push(index);
            }
        };
        match (&plan.candidates, found) {
            (Candidates::Text(prefilter), Some(found)) => prefilter.each_candidate(found, evaluate),
            (Candidates::Text(prefilter), None) => {
                prefilter.each_candidate(&prefilter.scan_document(doc), evaluate)
            }
            (Candidates::Keys(keys), _) => keys.each_candidate(doc, evaluate),
        }
        (hits, evaluated)
    }

    /// [`Engine::matching`] for a JSON record (an object) given as its text. Where the plan
    /// finds candidates by literal, the prefilter runs over the text first, and `document` (the
    /// record parsed, as [`Event::document`] gives it) is called only when some rule may match:
    /// an event that matches no rule then costs a scan of its bytes and no parse. Where it
    /// finds them by key, the record is parsed and its keys looked up.
    ///
    /// The matches are those [`Engine::matching`] finds in the document; the scan finds at least
    /// the literals the document scan does, and when it cannot say (see the prefilter's
    /// `record` module) the document is scanned instead.
    pub fn matching_record<'r, E>(
        &self,
        logsource: &LogSource,
        record: &str,
        document: impl FnOnce() -> Result<Document<'r>, E>,
    ) -> Result<RecordMatches<'r>, E> {
        self.matching_record_planned(&self.plan(logsource), record, document)
    }

    /// [`Engine::matching_record`] by a plan already looked up: a [`crate::Detector`] keeps
    /// its own, and so spares each event the shared table's lock and reference counts.
    pub(crate) fn matching_record_planned<'r, E>(
        &self,
        plan: &Plan,
        record: &str,
        document: impl FnOnce() -> Result<Document<'r>, E>,
    ) -> Result<RecordMatches<'r>, E> {
        let found = match &plan.candidates {
            Candidates::Text(prefilter) => {
                let found = prefilter.scan_record(record).ok();
                if found
                    .as_ref()
                    .is_some_and(|found| !prefilter.any_candidate(found))
                {
                    return Ok(RecordMatches {
                        hits: Vec::new(),
                        document: None,
                        evaluated: 0,
                    });
                }
                found
            }
            Candidates::Keys(_) => None,
        };
        let document = document()?;
        let (hits, evaluated) = self.matching_candidates(plan, found.as_ref(), document.root());
        Ok(RecordMatches {
            hits,
            document: Some(document),
            evaluated,
        })
    }

    pub(crate) fn plan(&self, logsource: &LogSource) -> Arc<Plan> {
        // A poisoned lock only means a panic elsewhere while it was held; the plans in it are
        // whole (each is inserted complete).
        let cached = |plans: &[(LogSource, Arc<Plan>)]| {
            plans
                .iter()
                .find(|(known, _)| known == logsource)
                .map(|(_, plan)| Arc::clone(plan))
        };
        let read = self.plans.0.read().unwrap_or_else(|e| e.into_inner());
        if let Some(plan) = cached(&read) {
            return plan;
        }
        drop(read);
        let mut rules: Vec<usize> = self
            .routes
            .iter()
            .filter(|route| logsource_within(&route.logsource, logsource))
            .flat_map(|route| route.rules.iter().copied())
            .collect();
        rules.sort_unstable();
        let plan = Arc::new(Plan {
            candidates: self.candidates(&rules),
            rules,
        });
        let mut write = self.plans.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(plan) = cached(&write) {
            return plan;
        }
        if write.len() < MAX_PLANS {
            write.push((logsource.clone(), Arc::clone(&plan)));
        }
        plan
    }

    /// How a plan of these rules finds candidates: by key when that leaves few rules with
    /// literals to evaluate on every event and no key brings in most of the rest, else by the
    /// literals of the text.
    fn candidates(&self, rules: &[usize]) -> Candidates {
        let keys: Vec<_> = rules
            .iter()
            .map(|&index| self.rules[index].key_need())
            .collect();
        let needs: Vec<_> = rules
            .iter()
            .map(|&index| self.rules[index].need())
            .collect();
        let text_only = needs
            .iter()
            .zip(&keys)
            .filter(|(need, key)| need.is_some() && key.is_none())
            .count();
        let keyed = keys.iter().filter(|key| key.is_some()).count();
        if keyed > 0 && text_only <= MAX_TEXT_ONLY {
            let index = KeyIndex::new(&keys);
            // A key every rule shares (what a pipeline's `require` gives them all) would make
            // each event of the source parse and evaluate them all.
            if index.widest() * 2 <= keyed.max(2) {
                return Candidates::Keys(index);
            }
        }
        Candidates::Text(Prefilter::new(&needs))
    }

    /// [`Engine::evaluate`] for an event, with its own logsource and document.
    pub fn evaluate_event(&self, event: &Event) -> Result<Vec<&Rule>, serde_json::Error> {
        Ok(self.evaluate(&event.logsource, &event.document_view()?))
    }
}
