//! The one table of every route Vigil serves, pages and API alike, with what each needs.
//!
//! The HTTP layer looks every request up here by its method and matched route, after
//! routing and before any handler, and refuses what the caller's [`Principal`] may not do.
//! A route missing from the table is refused to everyone, so forgetting an entry fails
//! closed; the role-matrix test also reads the routes out of the sources and fails on any
//! that is not here.
//!
//! [`Principal`]: crate::Principal

use crate::policy::Permission;

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the sign-in page, the stylesheet, health, metrics and the API description.
    Public,
    /// Authenticated by its own handler with a key of its own: Firehose's access key, which
    /// AWS sends in a header of its own and which no user or token carries.
    OwnKey,
    /// Any signed-in person or valid token.
    SignedIn,
    /// This permission. For [`Permission::Ingest`], the route's `{source}` must also be one
    /// the token may post to.
    Permission(Permission),
}

/// Who calls a route, which decides how a refusal looks: the API answers 401 with JSON to a
/// caller without credentials, a page sends the browser to the sign-in page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Api,
    Page,
}

/// One route: its method, its path as the router writes it, and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub surface: Surface,
    pub need: Need,
}

const fn api(method: &'static str, path: &'static str, need: Need) -> Route {
    Route {
        method,
        path,
        surface: Surface::Api,
        need,
    }
}

const fn page(method: &'static str, path: &'static str, need: Need) -> Route {
    Route {
        method,
        path,
        surface: Surface::Page,
        need,
    }
}

use Need::{OwnKey, Public, SignedIn};
use Permission::*;

const fn may(permission: Permission) -> Need {
    Need::Permission(permission)
}

/// Every route, grouped by what it serves.
pub const ROUTES: &[Route] = &[
    // Senders.
    api("POST", "/api/v1/ingest/{source}", may(Ingest)),
    api(
        "POST",
        "/api/v1/webhooks/kubernetes-audit/{source}",
        may(Ingest),
    ),
    api("POST", "/ingest/firehose", OwnKey),
    // Search and alerts.
    api("GET", "/api/v1/search", may(Read)),
    api("GET", "/api/v1/search/histogram", may(Read)),
    api("GET", "/api/v1/search/facets", may(Read)),
    api("GET", "/api/v1/alerts", may(Read)),
    api("GET", "/api/v1/alerts/{id}", may(Read)),
    api("PATCH", "/api/v1/alerts/{id}", may(Triage)),
    api("GET", "/api/v1/alerts/{id}/events", may(Read)),
    // Playbook runs: read with the alert; approved and undone by those who triage.
    api("GET", "/api/v1/alerts/{id}/playbook-runs", may(Read)),
    api("POST", "/api/v1/playbook-runs/{id}/approve", may(Triage)),
    api("POST", "/api/v1/playbook-runs/{id}/undo", may(Triage)),
    api("GET", "/api/v1/quarantine", may(Read)),
    // Rules.
    api("GET", "/api/v1/rules", may(Read)),
    api("POST", "/api/v1/rules/reload", may(ManageRules)),
    api("POST", "/api/v1/rules/{id}/enable", may(ManageRules)),
    api("POST", "/api/v1/rules/{id}/disable", may(ManageRules)),
    // Backtests: a rule run over stored events; a job is read only by who started it (or an
    // admin), which the handler checks.
    api("POST", "/api/v1/rules/backtest", may(Backtest)),
    api("GET", "/api/v1/rules/backtest/{job}", may(Backtest)),
    // Identity.
    api("GET", "/api/v1/whoami", SignedIn),
    api("GET", "/api/v1/users", may(ManageUsers)),
    api("POST", "/api/v1/users", may(ManageUsers)),
    api("POST", "/api/v1/users/{name}/disable", may(ManageUsers)),
    api("POST", "/api/v1/users/{name}/password", may(ManageUsers)),
    api("GET", "/api/v1/tokens", may(ManageTokens)),
    api("POST", "/api/v1/tokens", may(ManageTokens)),
    api("DELETE", "/api/v1/tokens/{name}", may(ManageTokens)),
    api("GET", "/api/v1/audit", may(ReadAudit)),
    // Notifications: the outbox read by anyone who reads alerts; a dead letter re-sent by
    // those who triage.
    api("GET", "/api/v1/notifications", may(Read)),
    api("POST", "/api/v1/notifications/{id}/resend", may(Triage)),
    // Silences: read by anyone who reads alerts; made and ended by those who triage.
    api("GET", "/api/v1/silences", may(Read)),
    api("POST", "/api/v1/silences", may(Triage)),
    api("POST", "/api/v1/silences/{id}/expire", may(Triage)),
    // The API's description (ui/openapi.yaml): public like /healthz, since it says what the
    // source code says, and tools read it before they hold a token.
    api("GET", "/api/v1/openapi.json", Public),
    // Pages.
    page("GET", "/", may(Read)),
    page("GET", "/alerts/{id}", may(Read)),
    page("POST", "/alerts/{id}", may(Triage)),
    page(
        "POST",
        "/alerts/{id}/playbook-runs/{run}/approve",
        may(Triage),
    ),
    page("POST", "/alerts/{id}/playbook-runs/{run}/undo", may(Triage)),
    page("POST", "/alerts/bulk", may(Triage)),
    page("GET", "/search", may(Read)),
    page("GET", "/search/export", may(Read)),
    page("GET", "/search/tail", may(Read)),
    page("GET", "/search/live", may(Read)),
    page("GET", "/searches", may(SavedSearches)),
    page("POST", "/searches", may(SavedSearches)),
    page("POST", "/searches/{id}/delete", may(SavedSearches)),
    page("GET", "/audit", may(ReadAudit)),
    page("GET", "/notifications", may(Read)),
    page("POST", "/notifications/{id}/resend", may(Triage)),
    page("GET", "/silences", may(Read)),
    page("POST", "/silences", may(Triage)),
    page("POST", "/silences/{id}/expire", may(Triage)),
    page("GET", "/health", may(Read)),
    page("GET", "/rules", may(Read)),
    page("GET", "/rules/{id}", may(Read)),
    page("POST", "/rules/reload", may(ManageRules)),
    page("POST", "/rules/{id}/state", may(ManageRules)),
    page("GET", "/rules/backtest", may(Backtest)),
    page("POST", "/rules/backtest", may(Backtest)),
    page("GET", "/rules/backtest/{job}", may(Backtest)),
    page("GET", "/rules/attack", may(Read)),
    page("GET", "/login", Public),
    page("POST", "/login", Public),
    page("POST", "/logout", SignedIn),
    page("GET", "/static/vigil.css", Public),
    page("GET", "/static/tail.js", Public),
    page("GET", "/static/keys.js", Public),
    // Operations: probes and Prometheus scrape without credentials, as they expect. Metrics
    // carry counts and source names, never event text; keep the port off the internet.
    page("GET", "/healthz", Public),
    page("GET", "/metrics", Public),
];

/// The entry for `method` on the route the router matched, `path`. `HEAD` is looked up as
/// `GET`, which is how the router serves it.
pub fn lookup(method: &str, path: &str) -> Option<&'static Route> {
    let method = if method == "HEAD" { "GET" } else { method };
    ROUTES
        .iter()
        .find(|route| route.method == method && route.path == path)
}

/// Whether the table knows `path` under any method: a request with another method is then
/// the router's to answer (405), not a route missing from the table.
pub fn knows_path(path: &str) -> bool {
    ROUTES.iter().any(|route| route.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_appears_once() {
        for (i, route) in ROUTES.iter().enumerate() {
            assert!(
                ROUTES[i + 1..]
                    .iter()
                    .all(|other| (other.method, other.path) != (route.method, route.path)),
                "{} {} is listed twice",
                route.method,
                route.path
            );
        }
    }

    #[test]
    fn head_is_looked_up_as_get() {
        assert_eq!(
            lookup("HEAD", "/api/v1/search").map(|r| r.need),
            Some(Need::Permission(Permission::Read))
        );
        assert!(lookup("DELETE", "/api/v1/search").is_none());
        assert!(knows_path("/api/v1/search"));
        assert!(!knows_path("/api/v1/nothing"));
    }
}
