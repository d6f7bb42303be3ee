//! Who may do what: the roles people hold, the scopes tokens carry, and the one grant table
//! that turns either into permissions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a request needs to be allowed to do. Each route in the route table names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Post events to a push source (bound to source names for `ingest:NAME` tokens).
    Ingest,
    /// Search events, read alerts, their events and the quarantine.
    Read,
    /// Change an alert's status, assignee and notes.
    Triage,
    /// Keep and share saved searches.
    SavedSearches,
    /// Run a rule over stored events.
    Backtest,
    /// Enable, disable and reload rules.
    ManageRules,
    /// Add, disable and re-password users.
    ManageUsers,
    /// Create, list and revoke API tokens.
    ManageTokens,
    /// Read the audit log.
    ReadAudit,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::Ingest,
        Permission::Read,
        Permission::Triage,
        Permission::SavedSearches,
        Permission::Backtest,
        Permission::ManageRules,
        Permission::ManageUsers,
        Permission::ManageTokens,
        Permission::ReadAudit,
    ];
}

/// A person's role. Each includes everything the one before it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Viewer,
    Analyst,
    RuleAuthor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Analyst, Role::RuleAuthor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::RuleAuthor => "rule-author",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                format!("unknown role {text:?}; use viewer, analyst, rule-author or admin")
            })
    }
}

/// What an API token may do. Tokens get the narrowest set their holder needs: a log shipper's
/// token carries `ingest` (or `ingest:cloudtrail`) and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Post events; with names, only to those sources.
    Ingest(Option<Vec<String>>),
    /// As a viewer: search, read alerts.
    Read,
    /// As an analyst: read, plus triage, saved searches and backtests.
    Triage,
    /// Everything, including ingest.
    Admin,
}

impl Scope {
    /// Whether this scope grants `permission` (for ingest, to some source).
    fn grants(&self, permission: Permission) -> bool {
        match self {
            Scope::Ingest(_) => permission == Permission::Ingest,
            Scope::Read => GRANTS.allows(Role::Viewer, permission),
            Scope::Triage => GRANTS.allows(Role::Analyst, permission),
            Scope::Admin => true,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Ingest(None) => f.write_str("ingest"),
            Scope::Ingest(Some(sources)) => {
                for (i, source) in sources.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "ingest:{source}")?;
                }
                Ok(())
            }
            Scope::Read => f.write_str("read"),
            Scope::Triage => f.write_str("triage"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

/// A token's scopes, as written on the command line and kept in the database:
/// `ingest:cloudtrail,ingest:waf,read`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn new(scopes: Vec<Scope>) -> Scopes {
        let mut merged = Scopes(Vec::new());
        for scope in scopes {
            merged.push(scope);
        }
        merged
    }

    fn push(&mut self, scope: Scope) {
        // `ingest:a` and `ingest:b` are one scope bound to both; a bare `ingest` wins.
        if let Scope::Ingest(new) = &scope {
            if let Some(Scope::Ingest(existing)) =
                self.0.iter_mut().find(|s| matches!(s, Scope::Ingest(_)))
            {
                match (existing.as_mut(), new) {
                    (Some(names), Some(more)) => {
                        for name in more {
                            if !names.contains(name) {
                                names.push(name.clone());
                            }
                        }
                    }
                    _ => *existing = None,
                }
                return;
            }
        }
        if !self.0.contains(&scope) {
            self.0.push(scope);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any scope grants `permission`.
    pub fn grants(&self, permission: Permission) -> bool {
        self.0.iter().any(|scope| scope.grants(permission))
    }

    /// Whether these scopes may post events to the source named `source`.
    pub fn may_ingest(&self, source: &str) -> bool {
        self.0.iter().any(|scope| match scope {
            Scope::Admin | Scope::Ingest(None) => true,
            Scope::Ingest(Some(names)) => names.iter().any(|name| name == source),
            _ => false,
        })
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

/// The longest source name an `ingest:` scope may bind, as ingest allows.
const MAX_SOURCE_NAME: usize = 512;

impl FromStr for Scopes {
    type Err = String;

    fn from_str(text: &str) -> Result<Scopes, String> {
        let mut scopes = Scopes::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = match part {
                "ingest" => Scope::Ingest(None),
                "read" => Scope::Read,
                "triage" => Scope::Triage,
                "admin" => Scope::Admin,
                other => match other.strip_prefix("ingest:") {
                    Some(source)
                        if !source.is_empty()
                            && source.len() <= MAX_SOURCE_NAME
                            && source
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b)) =>
                    {
                        Scope::Ingest(Some(vec![source.to_owned()]))
                    }
                    _ => {
                        return Err(format!(
                            "unknown scope {other:?}; use ingest, ingest:SOURCE, read, triage \
                             or admin"
                        ))
                    }
                },
            };
            scopes.push(scope);
        }
        if scopes.is_empty() {
            return Err(
                "a token needs at least one scope: ingest, ingest:SOURCE, read, triage or admin"
                    .into(),
            );
        }
        Ok(scopes)
    }
}

/// The grant table: which role may do what. Token scopes borrow from it (`read` is a
/// viewer's rights, `triage` an analyst's), so there is one place to read or change.
pub struct GrantTable(&'static [(Permission, Role)]);

/// Each permission with the least role that holds it; every higher role holds it too.
/// Ingest has no role: people sign in to read and triage, and only tokens post events.
pub const GRANTS: GrantTable = GrantTable(&[
    (Permission::Read, Role::Viewer),
    (Permission::Triage, Role::Analyst),
    (Permission::SavedSearches, Role::Analyst),
    (Permission::Backtest, Role::Analyst),
    (Permission::ManageRules, Role::RuleAuthor),
    (Permission::ManageUsers, Role::Admin),
    (Permission::ManageTokens, Role::Admin),
    (Permission::ReadAudit, Role::Admin),
]);

impl GrantTable {
    pub fn allows(&self, role: Role, permission: Permission) -> bool {
        self.0
            .iter()
            .any(|(granted, least)| *granted == permission && role >= *least)
    }
}

/// How a person's identity reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A session cookie from signing in here.
    Session,
    /// A header set by a trusted single sign-on proxy.
    Proxy,
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User {
        name: String,
        role: Role,
        via: Via,
    },
    Token {
        name: String,
        scopes: Scopes,
    },
    /// `VIGIL_API_TOKEN` or the `api-token` file: an admin token kept so that deployments
    /// from before users and scoped tokens keep running.
    Bootstrap,
}

impl Principal {
    pub fn may(&self, permission: Permission) -> bool {
        match self {
            Principal::User { role, .. } => GRANTS.allows(*role, permission),
            Principal::Token { scopes, .. } => scopes.grants(permission),
            Principal::Bootstrap => true,
        }
    }

    /// Whether this principal may post events to the source named `source`.
    pub fn may_ingest(&self, source: &str) -> bool {
        match self {
            Principal::User { .. } => false,
            Principal::Token { scopes, .. } => scopes.may_ingest(source),
            Principal::Bootstrap => true,
        }
    }

    /// The name history and the audit log record: the user's name, `token:NAME`, or
    /// `bootstrap-token`.
    pub fn actor(&self) -> String {
        match self {
            Principal::User { name, .. } => name.clone(),
            Principal::Token { name, .. } => format!("token:{name}"),
            Principal::Bootstrap => "bootstrap-token".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_holds_what_the_one_below_holds() {
        for permission in Permission::ALL {
            for pair in Role::ALL.windows(2) {
                if GRANTS.allows(pair[0], permission) {
                    assert!(GRANTS.allows(pair[1], permission), "{permission:?}");
                }
            }
        }
        assert!(GRANTS.allows(Role::Viewer, Permission::Read));
        assert!(!GRANTS.allows(Role::Viewer, Permission::Triage));
        assert!(GRANTS.allows(Role::Analyst, Permission::Backtest));
        assert!(!GRANTS.allows(Role::Analyst, Permission::ManageRules));
        assert!(GRANTS.allows(Role::RuleAuthor, Permission::ManageRules));
        assert!(!GRANTS.allows(Role::RuleAuthor, Permission::ManageUsers));
        assert!(GRANTS.allows(Role::Admin, Permission::ReadAudit));
        for role in Role::ALL {
            assert!(!GRANTS.allows(role, Permission::Ingest), "{role}");
        }
    }

    #[test]
    fn scopes_parse_merge_and_print() {
        let scopes: Scopes = "ingest:cloudtrail, read,ingest:waf".parse().unwrap();
        assert_eq!(scopes.to_string(), "ingest:cloudtrail,ingest:waf,read");
        assert!(scopes.may_ingest("waf"));
        assert!(!scopes.may_ingest("flask-app"));
        assert!(scopes.grants(Permission::Read));
        assert!(!scopes.grants(Permission::Triage));
        let any: Scopes = "ingest:waf,ingest".parse().unwrap();
        assert_eq!(any.to_string(), "ingest");
        assert!(any.may_ingest("anything"));
        assert!("".parse::<Scopes>().is_err());
        assert!("write".parse::<Scopes>().is_err());
        assert!("ingest:".parse::<Scopes>().is_err());
        assert!("ingest:a b".parse::<Scopes>().is_err());
    }

    #[test]
    fn an_ingest_token_may_do_nothing_else() {
        let shipper = Principal::Token {
            name: "shipper".into(),
            scopes: "ingest:cloudtrail".parse().unwrap(),
        };
        for permission in Permission::ALL {
            assert_eq!(shipper.may(permission), permission == Permission::Ingest);
        }
        assert!(shipper.may_ingest("cloudtrail"));
        assert!(!shipper.may_ingest("waf"));
        assert_eq!(shipper.actor(), "token:shipper");
    }

    #[test]
    fn people_never_ingest_and_admin_tokens_do() {
        let admin = Principal::User {
            name: "root".into(),
            role: Role::Admin,
            via: Via::Session,
        };
        assert!(!admin.may_ingest("cloudtrail"));
        let token = Principal::Token {
            name: "ops".into(),
            scopes: "admin".parse().unwrap(),
        };
        assert!(token.may_ingest("cloudtrail"));
        assert!(Permission::ALL.iter().all(|p| token.may(*p)));
    }
}
