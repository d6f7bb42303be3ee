//! The routing tree of `[notify.route]`: which receivers an alert goes to, how its
//! notifications are grouped and how often they repeat. Modelled on Alertmanager's.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_event::{Alert, Level};

/// One route of `[notify.route]`, as written. Unset settings are inherited from the parent;
/// the root's unset settings take the defaults (30 s, 5 min, 4 h).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Names the route in metrics and logs; its position in the tree (`root.1.0`) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Alert field → pattern; every one must match. The root matches every alert.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matchers: BTreeMap<String, MatchValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// After this route matched, also try its next siblings.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

/// A matcher's pattern: one value, or a list of which any may match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MatchValue {
    One(String),
    Any(Vec<String>),
}

impl RouteConfig {
    /// The child route a legacy `[[notify.webhooks]]` entry stands for: its level, rules and
    /// tags as matchers, its one receiver, one notification per alert at once and no repeat
    /// (what the webhooks did before routes), and `continue`, so that every webhook that
    /// wants an alert gets it.
    pub fn legacy_webhook(
        receiver: &str,
        min_level: Level,
        rules: &[String],
        tags: &[String],
    ) -> RouteConfig {
        let mut matchers = BTreeMap::new();
        matchers.insert(
            "level".to_owned(),
            MatchValue::One(format!(">={min_level}")),
        );
        // `=` makes each value literal: a rule id or tag is never read as a pattern.
        let literal =
            |values: &[String]| MatchValue::Any(values.iter().map(|v| format!("={v}")).collect());
        if !rules.is_empty() {
            matchers.insert("rule_id".to_owned(), literal(rules));
        }
        if !tags.is_empty() {
            matchers.insert("tag".to_owned(), literal(tags));
        }
        RouteConfig {
            name: Some(format!("webhook:{receiver}")),
            matchers,
            receivers: Some(vec![receiver.to_owned()]),
            group_by: Some(vec!["id".to_owned()]),
            group_wait: Some("0s".to_owned()),
            group_interval: Some("0s".to_owned()),
            repeat_interval: Some("never".to_owned()),
            continue_matching: true,
            routes: Vec::new(),
        }
    }
}

/// A routing tree, matcher or duration Vigil cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct RouteError {
    /// Where: `notify.route.routes[1]`, `notify.inhibit[0]`, `silence`.
    pub at: String,
    pub reason: String,
}

const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// One route, its settings resolved (inherited or defaulted).
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique in the tree; part of every group key of the route.
    pub name: String,
    matchers: Matchers,
    pub receivers: Vec<String>,
    pub group_by: Vec<AlertField>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    /// `None`: a group is never repeated (`repeat_interval = "never"`).
    pub repeat_interval: Option<Duration>,
    continue_matching: bool,
    routes: Vec<Route>,
}

/// The compiled `[notify.route]`.
#[derive(Debug, Clone)]
pub struct RouteTree {
    root: Route,
}

impl RouteTree {
    pub fn new(config: &RouteConfig) -> Result<RouteTree, RouteError> {
        let defaults = Inherited {
            receivers: Vec::new(),
            group_by: Vec::new(),
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: Some(DEFAULT_REPEAT_INTERVAL),
        };
        let mut names = BTreeSet::new();
        let root = compile(config, &defaults, "notify.route", "root", &mut names)?;
        Ok(RouteTree { root })
    }

    /// Every receiver the tree names, for the configuration to check against the receivers
    /// it defines.
    pub fn receiver_names(&self) -> BTreeSet<String> {
        fn walk(route: &Route, names: &mut BTreeSet<String>) {
            names.extend(route.receivers.iter().cloned());
            for child in &route.routes {
                walk(child, names);
            }
        }
        let mut names = BTreeSet::new();
        walk(&self.root, &mut names);
        names
    }

    /// The routes `alert` goes to: at each level the first matching child, and its
    /// following matching siblings while the matched ones say `continue`; a route none of
    /// whose children match takes the alert itself. The root matches every alert.
    pub fn routes_for(&self, alert: &Alert) -> Vec<&Route> {
        let mut found = Vec::new();
        descend(&self.root, alert, &mut found);
        found
    }

    /// The route of this name, if the tree still has it.
    pub fn route(&self, name: &str) -> Option<&Route> {
        fn find<'r>(route: &'r Route, name: &str) -> Option<&'r Route> {
            if route.name == name {
                return Some(route);
            }
            route.routes.iter().find_map(|child| find(child, name))
        }
        find(&self.root, name)
    }
}

fn descend<'r>(route: &'r Route, alert: &Alert, found: &mut Vec<&'r Route>) {
    let before = found.len();
    for child in &route.routes {
        if child.matchers.matches(alert) {
            descend(child, alert, found);
            if !child.continue_matching {
                break;
            }
        }
    }
    if found.len() == before {
        found.push(route);
    }
}

struct Inherited {
    receivers: Vec<String>,
    group_by: Vec<AlertField>,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Option<Duration>,
}

fn compile(
    config: &RouteConfig,
    parent: &Inherited,
    at: &str,
    default_name: &str,
    names: &mut BTreeSet<String>,
) -> Result<Route, RouteError> {
    let err = |reason: String| RouteError {
        at: at.to_owned(),
        reason,
    };
    let name = config
        .name
        .clone()
        .unwrap_or_else(|| default_name.to_owned());
    if name.is_empty() || name.len() > 128 {
        return Err(err("a route's name must be 1 to 128 characters".into()));
    }
    if !names.insert(name.clone()) {
        return Err(err(format!("two routes are named {name:?}")));
    }
    let matchers =
        Matchers::parse(&config.matchers).map_err(|reason| err(format!("match: {reason}")))?;
    let receivers = match &config.receivers {
        Some(receivers) => {
            let mut seen = BTreeSet::new();
            for receiver in receivers {
                if receiver.is_empty() || !seen.insert(receiver) {
                    return Err(err(format!(
                        "receivers: {receiver:?} is empty or named twice"
                    )));
                }
            }
            receivers.clone()
        }
        None => parent.receivers.clone(),
    };
    let group_by = match &config.group_by {
        Some(fields) => fields
            .iter()
            .map(|field| AlertField::for_grouping(field))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| err(format!("group_by: {reason}")))?,
        None => parent.group_by.clone(),
    };
    let duration = |value: &Option<String>, what: &str, inherited: Duration| match value {
        Some(text) => parse_duration(text).map_err(|reason| err(format!("{what}: {reason}"))),
        None => Ok(inherited),
    };
    let group_wait = duration(&config.group_wait, "group_wait", parent.group_wait)?;
    let group_interval = duration(
        &config.group_interval,
        "group_interval",
        parent.group_interval,
    )?;
    let repeat_interval = match &config.repeat_interval {
        Some(text) if text.trim().eq_ignore_ascii_case("never") => None,
        Some(text) => {
            let every =
                parse_duration(text).map_err(|reason| err(format!("repeat_interval: {reason}")))?;
            if every.is_zero() {
                return Err(err(
                    "repeat_interval: 0 would page without pause; say \"never\" for no repeats"
                        .into(),
                ));
            }
            Some(every)
        }
        None => parent.repeat_interval,
    };
    if at == "notify.route" && config.continue_matching {
        return Err(err(
            "the root route cannot continue: it has no siblings".into()
        ));
    }
    let inherited = Inherited {
        receivers: receivers.clone(),
        group_by: group_by.clone(),
        group_wait,
        group_interval,
        repeat_interval,
    };
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, child) in config.routes.iter().enumerate() {
        routes.push(compile(
            child,
            &inherited,
            &format!("{at}.routes[{i}]"),
            &format!("{name}.{i}"),
            names,
        )?);
    }
    Ok(Route {
        name,
        matchers,
        receivers,
        group_by,
        group_wait,
        group_interval,
        repeat_interval,
        continue_matching: config.continue_matching,
        routes,
    })
}

/// `30s`, `5m`, `4h`, `1h30m`, `500ms`, `1d`, `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration such as 30s, 5m, 4h or 1h30m");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() || text.len() > 32 {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .filter(|ms| *ms <= 366 * 86_400_000)
            .ok_or_else(|| format!("{text:?} is longer than a year"))?;
    }
    Ok(Duration::from_millis(total))
}

/// A field of an alert that matchers, `group_by` and inhibition's `equal` name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertField {
    /// The alert's id: one group per alert.
    Id,
    Level,
    RuleId,
    /// Any of the alert's tags (matchers only).
    Tag,
    /// The source's name.
    Source,
    SourceKind,
    Product,
    Service,
    Category,
    /// One of a correlation's group-by values: `group.user`.
    Group(String),
    /// All of a correlation's group-by values together (inhibition's `equal`).
    GroupKey,
}

const FIELDS: &str =
    "level, rule_id, tag, source, source_kind, logsource.product, logsource.service, \
                      logsource.category, group.<name>";

impl AlertField {
    pub fn parse(name: &str) -> Result<AlertField, String> {
        Ok(match name {
            "id" => AlertField::Id,
            "level" => AlertField::Level,
            "rule_id" | "rule" => AlertField::RuleId,
            "tag" | "tags" => AlertField::Tag,
            "source" => AlertField::Source,
            "source_kind" => AlertField::SourceKind,
            "logsource.product" | "product" => AlertField::Product,
            "logsource.service" | "service" => AlertField::Service,
            "logsource.category" | "category" => AlertField::Category,
            "group_key" => AlertField::GroupKey,
            other => match other.strip_prefix("group.") {
                Some(key) if !key.is_empty() && key.len() <= 128 => {
                    AlertField::Group(key.to_owned())
                }
                _ => {
                    return Err(format!(
                        "unknown alert field {name:?}; expected one of {FIELDS}"
                    ))
                }
            },
        })
    }

    /// A field a group or an `equal` can be keyed on: one value per alert.
    pub fn for_grouping(name: &str) -> Result<AlertField, String> {
        match AlertField::parse(name)? {
            AlertField::Tag => Err("an alert has several tags: group by another field".into()),
            field => Ok(field),
        }
    }

    pub fn name(&self) -> String {
        match self {
            AlertField::Id => "id".into(),
            AlertField::Level => "level".into(),
            AlertField::RuleId => "rule_id".into(),
            AlertField::Tag => "tag".into(),
            AlertField::Source => "source".into(),
            AlertField::SourceKind => "source_kind".into(),
            AlertField::Product => "logsource.product".into(),
            AlertField::Service => "logsource.service".into(),
            AlertField::Category => "logsource.category".into(),
            AlertField::Group(key) => format!("group.{key}"),
            AlertField::GroupKey => "group_key".into(),
        }
    }

    /// The field's values in `alert`: none when it is unset, several for tags.
    pub fn values<'a>(&self, alert: &'a Alert) -> Vec<Cow<'a, str>> {
        let one = |value: Option<&'a String>| {
            value
                .map(|v| Cow::Borrowed(v.as_str()))
                .into_iter()
                .collect()
        };
        match self {
            AlertField::Id => vec![Cow::Owned(alert.id.to_string())],
            AlertField::Level => vec![Cow::Borrowed(alert.level.as_str())],
            AlertField::RuleId => vec![Cow::Borrowed(alert.rule_id.as_str())],
            AlertField::Tag => alert
                .tags
                .iter()
                .map(|t| Cow::Borrowed(t.as_str()))
                .collect(),
            AlertField::Source => vec![Cow::Borrowed(alert.source.name.as_str())],
            AlertField::SourceKind => vec![Cow::Borrowed(alert.source.kind.as_str())],
            AlertField::Product => one(alert.logsource.product.as_ref()),
            AlertField::Service => one(alert.logsource.service.as_ref()),
            AlertField::Category => one(alert.logsource.category.as_ref()),
            AlertField::Group(key) => one(alert.group.get(key)),
            AlertField::GroupKey => vec![Cow::Owned(
                alert
                    .group
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            )],
        }
    }

    /// The one value a group is keyed on; empty when unset.
    pub fn value(&self, alert: &Alert) -> String {
        self.values(alert)
            .into_iter()
            .next()
            .map(Cow::into_owned)
            .unwrap_or_default()
    }
}

/// A set of matchers, all of which must match: a route's `match`, a silence, an inhibition
/// rule's `source` or `target`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matchers(Vec<Matcher>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Matcher {
    field: AlertField,
    /// Any of them.
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Level(Ordering, bool, Level),
    /// Case-insensitive, with `*` for any text; `negate` inverts the whole match.
    Text {
        glob: String,
        negate: bool,
        literal: bool,
    },
}

impl Matchers {
    pub fn parse(config: &BTreeMap<String, MatchValue>) -> Result<Matchers, String> {
        let mut matchers = Vec::with_capacity(config.len());
        for (name, value) in config {
            let field = AlertField::parse(name)?;
            if field == AlertField::GroupKey {
                return Err("group_key can only be compared (inhibition's equal)".into());
            }
            let texts: Vec<&String> = match value {
                MatchValue::One(text) => vec![text],
                MatchValue::Any(texts) => texts.iter().collect(),
            };
            if texts.is_empty() || texts.len() > 256 {
                return Err(format!("{name}: give 1 to 256 values"));
            }
            let patterns = texts
                .into_iter()
                .map(|text| {
                    Pattern::parse(&field, text).map_err(|reason| format!("{name}: {reason}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            matchers.push(Matcher { field, patterns });
        }
        Ok(Matchers(matchers))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, alert: &Alert) -> bool {
        self.0.iter().all(|matcher| {
            let values = matcher.field.values(alert);
            matcher
                .patterns
                .iter()
                .any(|pattern| pattern.matches(&values))
        })
    }
}

impl Pattern {
    fn parse(field: &AlertField, text: &str) -> Result<Pattern, String> {
        if text.is_empty() || text.len() > 512 {
            return Err("a pattern must be 1 to 512 characters".into());
        }
        if *field == AlertField::Level {
            let (ordering, or_equal, level) = if let Some(l) = text.strip_prefix(">=") {
                (Ordering::Greater, true, l)
            } else if let Some(l) = text.strip_prefix("<=") {
                (Ordering::Less, true, l)
            } else if let Some(l) = text.strip_prefix('>') {
                (Ordering::Greater, false, l)
            } else if let Some(l) = text.strip_prefix('<') {
                (Ordering::Less, false, l)
            } else {
                (
                    Ordering::Equal,
                    true,
                    text.strip_prefix('=').unwrap_or(text),
                )
            };
            let level: Level = level.trim().parse()?;
            return Ok(Pattern::Level(ordering, or_equal, level));
        }
        let (negate, rest) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (literal, glob) = match rest.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        Ok(Pattern::Text {
            glob: glob.to_ascii_lowercase(),
            negate,
            literal,
        })
    }

    fn matches(&self, values: &[Cow<'_, str>]) -> bool {
        match self {
            Pattern::Level(ordering, or_equal, wanted) => values.iter().any(|value| {
                let Ok(level) = value.parse::<Level>() else {
                    return false;
                };
                let cmp = level.cmp(wanted);
                cmp == *ordering || (*or_equal && cmp == Ordering::Equal)
            }),
            Pattern::Text {
                glob,
                negate,
                literal,
            } => {
                let found = values.iter().any(|value| {
                    let value = value.to_ascii_lowercase();
                    if *literal {
                        value == *glob
                    } else {
                        glob_matches(glob, &value)
                    }
                });
                found != *negate
            }
        }
    }
}

/// Whether `text` matches `glob`, where `*` stands for any run of characters.
fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        let now = chrono::Utc::now();
        Alert {
            id: Alert::derive_id("aws_root_login", &[]),
            rule_id: "aws_root_login".into(),
            rule_title: "Root login".into(),
            level: Level::High,
            tags: vec!["attack.t1078".into(), "cloud".into()],
            event_ids: vec![],
            time: now,
            detected: now,
            source: vigil_event::Source {
                kind: "cloudtrail".into(),
                name: "org-trail".into(),
            },
            logsource: vigil_event::LogSource::new(Some("aws"), None, None),
            group: BTreeMap::from([("user".to_owned(), "Alice".to_owned())]),
            matched: Vec::new(),
            event_position: None,
        }
    }

    fn matches(field: &str, pattern: &str) -> bool {
        let config = BTreeMap::from([(field.to_owned(), MatchValue::One(pattern.to_owned()))]);
        Matchers::parse(&config).unwrap().matches(&alert())
    }

    #[test]
    fn matchers_compare_levels_and_match_text_with_globs_negation_and_literals() {
        let cases = [
            ("level", ">=high", true),
            ("level", ">high", false),
            ("level", "<=high", true),
            ("level", "<critical", true),
            ("level", "high", true),
            ("level", "=medium", false),
            ("rule_id", "aws_*", true),
            ("rule_id", "*root*", true),
            ("rule_id", "*_login", true),
            ("rule_id", "*root", false),
            ("rule_id", "aws*login*", true),
            ("rule_id", "aws", false),
            ("rule_id", "AWS_ROOT_LOGIN", true),
            ("rule_id", "!aws_*", false),
            ("rule_id", "=aws_*", false),
            ("tag", "attack.*", true),
            ("tag", "=cloud", true),
            ("tag", "!cloud", false),
            ("source", "org-trail", true),
            ("source_kind", "cloudtrail", true),
            ("logsource.product", "aws", true),
            // Unset: no value matches, so only a negation does.
            ("logsource.service", "*", false),
            ("logsource.service", "!*", true),
            ("group.user", "alice", true),
            ("group.host", "*", false),
        ];
        for (field, pattern, expected) in cases {
            assert_eq!(matches(field, pattern), expected, "{field} {pattern}");
        }
        let any = BTreeMap::from([(
            "rule_id".to_owned(),
            MatchValue::Any(vec!["other".into(), "aws_root_login".into()]),
        )]);
        assert!(Matchers::parse(&any).unwrap().matches(&alert()));
    }

    #[test]
    fn durations_read_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "5", "h", "5x", "-5s", "1.5h", "999999999999s", "400d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
