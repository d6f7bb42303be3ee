//! What the pages know about the loaded rules: each rule's own words (title, description,
//! false positives, references, tags) by rule id, so an alert's page can say what its rule
//! looks for and why it may be wrong, and the rules pages can list them with their files'
//! text, their state and what failed to load. The ui crate does not depend on the detection
//! engine; whoever loads the rules fills this in.

use std::collections::BTreeMap;

use vigil_event::{Level, LogSource};

/// One loaded rule, as its file states it. Every text here comes from a rule file, which can
/// come from anywhere: the pages show it as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleInfo {
    pub title: String,
    pub description: Option<String>,
    pub falsepositives: Vec<String>,
    pub references: Vec<String>,
    pub tags: Vec<String>,
    pub level: Option<Level>,
    pub logsource: LogSource,
    /// The file (or built-in path) the rule was loaded from, and the line its document starts on.
    pub file: String,
    pub line: usize,
    /// The Sigma `status` (stable, test, experimental...), when the rule gives one.
    pub status: Option<String>,
    /// Whether detection reports this rule's matches; disabled at runtime otherwise.
    pub enabled: bool,
    /// A correlation rule rather than a detection rule.
    pub correlation: bool,
    /// The whole text of the file the rule came from (every document in it).
    pub yaml: String,
}

/// A rule file, or a document in one, that did not load, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleFailure {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// The loaded rules by id, or the knowledge that this process did not load any.
#[derive(Debug, Clone, Default)]
pub struct RuleCatalog {
    rules: BTreeMap<String, RuleInfo>,
    /// False when the process does not run detection, so it has no rules to describe: the
    /// pages then say that, rather than that the rule is unknown.
    loaded: bool,
    failures: Vec<RuleFailure>,
    /// Counts up with every rule set swapped in; 0 for one that never changes.
    generation: u64,
}

impl RuleCatalog {
    /// A catalogue of the rules a process loaded (possibly none).
    pub fn loaded(rules: impl IntoIterator<Item = (String, RuleInfo)>) -> Self {
        RuleCatalog {
            rules: rules.into_iter().collect(),
            loaded: true,
            failures: Vec::new(),
            generation: 0,
        }
    }

    /// The same catalogue, with what failed to load and its generation.
    pub fn with_failures(mut self, failures: Vec<RuleFailure>, generation: u64) -> Self {
        self.failures = failures;
        self.generation = generation;
        self
    }

    /// Every rule and correlation, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &RuleInfo)> {
        self.rules.iter()
    }

    /// The rule files and documents that did not load.
    pub fn failures(&self) -> &[RuleFailure] {
        &self.failures
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many rules are disabled.
    pub fn disabled(&self) -> usize {
        self.rules.values().filter(|rule| !rule.enabled).count()
    }

    /// The catalogue of a process that loaded no rules because it does not detect.
    pub fn not_loaded() -> Self {
        RuleCatalog::default()
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn get(&self, rule_id: &str) -> Option<&RuleInfo> {
        self.rules.get(rule_id)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Where an ATT&CK tag points: `attack.t1110` to technique T1110 and `attack.t1110.001` to
/// its sub-technique; `None` for tactics (`attack.credential-access`), groups, software and
/// anything else, which have no technique page.
pub fn attack_technique_url(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("attack.")?;
    let rest = rest.strip_prefix('t').or_else(|| rest.strip_prefix('T'))?;
    let (technique, sub) = match rest.split_once('.') {
        Some((technique, sub)) => (technique, Some(sub)),
        None => (rest, None),
    };
    let digits =
        |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(technique, 4) {
        return None;
    }
    match sub {
        None => Some(format!("https://attack.mitre.org/techniques/T{technique}/")),
        Some(sub) if digits(sub, 3) => Some(format!(
            "https://attack.mitre.org/techniques/T{technique}/{sub}/"
        )),
        Some(_) => None,
    }
}

/// Whether a reference may be a link: only an absolute http(s) URL, so that a rule file's
/// `javascript:` or `data:` reference stays text.
pub fn is_web_url(reference: &str) -> bool {
    let lower = reference.trim_start().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && reference == reference.trim()
        && !reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technique_tags_point_at_their_pages_and_others_at_none() {
        assert_eq!(
            attack_technique_url("attack.t1110").as_deref(),
            Some("https://attack.mitre.org/techniques/T1110/")
        );
        assert_eq!(
            attack_technique_url("attack.t1110.001").as_deref(),
            Some("https://attack.mitre.org/techniques/T1110/001/")
        );
        for other in [
            "attack.credential-access",
            "attack.t11",
            "attack.t1110.1",
            "attack.t1110/../x",
            "attack.g0016",
            "cve.2021-44228",
        ] {
            assert_eq!(attack_technique_url(other), None, "{other}");
        }
    }

    #[test]
    fn only_http_urls_are_web_urls() {
        assert!(is_web_url("https://example.com/a"));
        assert!(is_web_url("HTTP://example.com"));
        for other in [
            "javascript:alert(1)",
            " https://example.com",
            "https://exa mple.com",
            "//evil.example",
            "see the wiki",
        ] {
            assert!(!is_web_url(other), "{other}");
        }
    }
}
