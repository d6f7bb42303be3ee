//! The ATT&CK coverage view, `/rules/attack`: the enterprise tactics in kill-chain order as
//! columns, and under each the techniques the loaded rules are tagged with, each with how
//! many rules cover it and how often they fired in the last week. A technique sits under every
//! tactic its rules are tagged with; a rule with technique tags but no tactic tag puts its
//! techniques in a column of their own.
//!
//! Tags come from rule files, which can come from anywhere: only well-formed technique tags
//! become links (to MITRE's page, and to the rules list searched for the tag), and everything
//! shown stays text.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{Duration, Utc};
use maud::{html, Markup};
use vigil_store::RuleHits;

use crate::auth::Caller;
use crate::frame::{count, layout};
use crate::rule_catalog::{attack_technique_url, RuleCatalog};
use crate::search_terms::encode;
use crate::{call_store, UiState};
use vigil_access::Permission;

/// The enterprise tactics in kill-chain order, by the names their Sigma tags use.
pub(crate) const TACTICS: [(&str, &str); 14] = [
    ("reconnaissance", "Reconnaissance"),
    ("resource-development", "Resource Development"),
    ("initial-access", "Initial Access"),
    ("execution", "Execution"),
    ("persistence", "Persistence"),
    ("privilege-escalation", "Privilege Escalation"),
    ("defense-evasion", "Defense Evasion"),
    ("credential-access", "Credential Access"),
    ("discovery", "Discovery"),
    ("lateral-movement", "Lateral Movement"),
    ("collection", "Collection"),
    ("command-and-control", "Command and Control"),
    ("exfiltration", "Exfiltration"),
    ("impact", "Impact"),
];

/// The column of techniques whose rules name no tactic.
const UNTAGGED: usize = TACTICS.len();

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/rules/attack", get(attack_page))
}

/// The tactic a tag names, as its index in [`TACTICS`]: `attack.credential-access`, or the
/// older `attack.credential_access`.
fn tactic_of(tag: &str) -> Option<usize> {
    let name = tag.to_ascii_lowercase();
    let name = name.strip_prefix("attack.")?.replace('_', "-");
    TACTICS.iter().position(|(tactic, _)| *tactic == name)
}

/// The technique a tag names, lowercased (`attack.t1110.001`), if it is well formed.
fn technique_of(tag: &str) -> Option<String> {
    attack_technique_url(tag).map(|_| tag.to_ascii_lowercase())
}

/// One technique under one tactic: the rules tagged with both.
#[derive(Debug, Default, PartialEq)]
struct Cell {
    rules: BTreeSet<String>,
    hits_7d: u64,
}

/// Per column (tactic, then the untagged one), the techniques by tag.
type Coverage = Vec<BTreeMap<String, Cell>>;

fn coverage(catalog: &RuleCatalog, hits: &BTreeMap<String, RuleHits>) -> Coverage {
    let mut columns: Coverage = (0..=UNTAGGED).map(|_| BTreeMap::new()).collect();
    for (id, rule) in catalog.iter() {
        let techniques: BTreeSet<String> =
            rule.tags.iter().filter_map(|t| technique_of(t)).collect();
        if techniques.is_empty() {
            continue;
        }
        let mut tactics: BTreeSet<usize> = rule.tags.iter().filter_map(|t| tactic_of(t)).collect();
        if tactics.is_empty() {
            tactics.insert(UNTAGGED);
        }
        let fired = hits.get(id).map_or(0, |h| h.last_7d);
        for tactic in tactics {
            for technique in &techniques {
                let cell = columns[tactic].entry(technique.clone()).or_default();
                if cell.rules.insert(id.clone()) {
                    cell.hits_7d += fired;
                }
            }
        }
    }
    columns
}

async fn attack_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let catalog = state.rules.catalog();
    let store = state.store.clone();
    let visibility = caller.visibility();
    let now = Utc::now();
    let hits = call_store(move || {
        store.rule_hits(
            now - Duration::hours(24),
            now - Duration::days(7),
            &visibility,
        )
    })
    .await;
    let (hits, hits_missing) = match hits {
        Ok(hits) => (hits, false),
        Err(_) => (BTreeMap::new(), true),
    };
    let body = html! {
        h1 { "ATT&CK coverage" }
        @if !catalog.is_loaded() {
            p { "This process does not run detection, so it has no rules to map." }
        } @else {
            (intro(&catalog, caller.principal.may(Permission::Backtest)))
            @if hits_missing { p.error { "Hit counts could not be read; they show as 0." } }
            (matrix(&coverage(&catalog, &hits)))
        }
    };
    (
        StatusCode::OK,
        layout("ATT&CK coverage", Some(&caller), body),
    )
        .into_response()
}

fn intro(catalog: &RuleCatalog, may_backtest: bool) -> Markup {
    let tagged = catalog
        .iter()
        .filter(|(_, rule)| rule.tags.iter().any(|t| technique_of(t).is_some()))
        .count();
    html! {
        p {
            (tagged) " of " (catalog.len()) " loaded rules name an ATT&CK technique. Each cell \
             gives the technique, the rules tagged with it and that tactic, and their alerts \
             in the last 7 days. "
            a href="/rules" { "All rules" }
            @if may_backtest { " · " a href="/rules/backtest" { "Backtest a rule" } }
        }
    }
}

fn matrix(columns: &Coverage) -> Markup {
    // Tactics always show, so gaps in coverage are visible; the untagged column only when used.
    let shown: Vec<usize> = (0..UNTAGGED)
        .chain((!columns[UNTAGGED].is_empty()).then_some(UNTAGGED))
        .collect();
    let depth = shown.iter().map(|&c| columns[c].len()).max().unwrap_or(0);
    let cells: Vec<Vec<(&String, &Cell)>> =
        shown.iter().map(|&c| columns[c].iter().collect()).collect();
    html! {
        div.table-scroll {
            table.attack {
                caption { "Techniques by tactic, in kill-chain order" }
                thead { tr {
                    @for &column in &shown {
                        th scope="col" {
                            @if column == UNTAGGED { "No tactic tag" } @else { (TACTICS[column].1) }
                            br; span.muted { (count(columns[column].len(), "technique")) }
                        }
                    }
                } }
                tbody {
                    @for row in 0..depth {
                        tr { @for column in &cells {
                            td { @if let Some((technique, cell)) = column.get(row) { (cell_markup(technique, cell)) } }
                        } }
                    }
                    @if depth == 0 {
                        tr { td colspan=(shown.len()) { "No loaded rule names an ATT&CK technique." } }
                    }
                }
            }
        }
    }
}

fn cell_markup(technique: &str, cell: &Cell) -> Markup {
    let label = technique
        .strip_prefix("attack.")
        .unwrap_or(technique)
        .to_ascii_uppercase();
    let rules = cell.rules.len();
    html! {
        @if let Some(url) = attack_technique_url(technique) {
            a href=(url) rel="noreferrer" { (label) }
        } @else { (label) }
        br;
        // The rules list filters by text in titles, ids and tags; it has no exact tag filter.
        a href={ "/rules?q=" (encode(technique)) } {
            (count(rules, "rule"))
        }
        ", " (count(cell.hits_7d as usize, "hit")) " (7 d)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuleInfo;

    fn rule(tags: &[&str]) -> RuleInfo {
        RuleInfo {
            title: "t".into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ..RuleInfo::default()
        }
    }

    #[test]
    fn techniques_sit_under_each_tactic_of_their_rules() {
        let catalog = RuleCatalog::loaded([
            (
                "a".to_owned(),
                rule(&[
                    "attack.credential-access",
                    "attack.t1110",
                    "attack.T1110.001",
                ]),
            ),
            (
                "b".to_owned(),
                rule(&[
                    "attack.credential_access",
                    "attack.initial-access",
                    "attack.t1110",
                ]),
            ),
            ("c".to_owned(), rule(&["attack.t1078", "cve.2021-1"])),
            ("d".to_owned(), rule(&["attack.impact"])),
            (
                "e".to_owned(),
                rule(&["attack.t1110/../x", "attack.execution"]),
            ),
        ]);
        let hits = BTreeMap::from([
            (
                "a".to_owned(),
                RuleHits {
                    last_7d: 3,
                    ..RuleHits::default()
                },
            ),
            (
                "b".to_owned(),
                RuleHits {
                    last_7d: 4,
                    ..RuleHits::default()
                },
            ),
        ]);
        let columns = coverage(&catalog, &hits);
        let credential = &columns[tactic_of("attack.credential-access").unwrap()];
        assert_eq!(
            credential["attack.t1110"].rules,
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(credential["attack.t1110"].hits_7d, 7);
        assert_eq!(credential["attack.t1110.001"].hits_7d, 3);
        let initial = &columns[tactic_of("attack.initial-access").unwrap()];
        assert_eq!(initial.keys().collect::<Vec<_>>(), ["attack.t1110"]);
        assert_eq!(initial["attack.t1110"].hits_7d, 4);
        assert_eq!(
            columns[UNTAGGED].keys().collect::<Vec<_>>(),
            ["attack.t1078"]
        );
        // A tactic without techniques, and a malformed technique, add nothing.
        assert!(columns[tactic_of("attack.impact").unwrap()].is_empty());
        assert!(columns[tactic_of("attack.execution").unwrap()].is_empty());
    }
}
