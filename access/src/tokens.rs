//! API tokens: named, scoped, stored as a hash, optionally expiring, revoked at once.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{AccessDb, AccessError, Scopes, Secret};

/// A token as listed; never carries the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub name: String,
    #[serde(serialize_with = "crate::tokens::scopes_text")]
    pub scopes: Scopes,
    pub created: DateTime<Utc>,
    pub created_by: String,
    pub expires: Option<DateTime<Utc>>,
    pub revoked: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
}

pub(crate) fn scopes_text<S: serde::Serializer>(scopes: &Scopes, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(scopes)
}

/// A token just created: its secret, shown once, and what is kept of it.
#[derive(Debug)]
pub struct NewToken {
    pub secret: Secret,
    pub info: TokenInfo,
}

impl AccessDb {
    /// Creates a token. Names follow the rules for user names; a revoked token's name may
    /// not be reused, so the audit log names one token by one name.
    pub fn create_token(
        &self,
        name: &str,
        scopes: &Scopes,
        expires: Option<DateTime<Utc>>,
        created_by: &str,
    ) -> Result<NewToken, AccessError> {
        let _ = (name, scopes, expires, created_by);
        todo!("H1")
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, AccessError> {
        todo!("H1")
    }

    /// Revokes the token; requests with it are refused from now on.
    pub fn revoke_token(&self, name: &str) -> Result<(), AccessError> {
        let _ = name;
        todo!("H1")
    }

    /// The live (neither revoked nor expired at `now`) token with this secret, if any.
    /// Records when it was last used, at most once a minute per token.
    pub fn token_by_secret(&self, secret: &str, now: DateTime<Utc>) -> Result<Option<TokenInfo>, AccessError> {
        let _ = (secret, now);
        todo!("H1")
    }
}
