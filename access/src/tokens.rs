//! API tokens: named, scoped, stored as a hash, optionally expiring, revoked at once.
//!
//! A token reads `vgl_` and 64 hex digits (32 random bytes). The prefix lets secret scanners
//! (GitHub's, gitleaks, trufflehog) recognise a Vigil token pasted into a repository or a
//! log, and lets Vigil tell its tokens from other bearer values without a lookup.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::db::{is_unique_violation, parse_optional_time, parse_time, stored_now, time_text};
use crate::users::check_name;
use crate::{AccessDb, AccessError, Scopes, Secret};

/// What every token starts with; see the module's documentation.
pub const TOKEN_PREFIX: &str = "vgl_";

/// Random bytes in a token, after the prefix.
const TOKEN_SECRET_BYTES: usize = 32;

/// A token used more recently than this is not marked used again, so a busy log shipper
/// does not write to the database on every request.
const LAST_USED_GRANULARITY: chrono::Duration = chrono::Duration::minutes(1);

/// The longest `created_by` kept: an actor name, normally short.
const MAX_CREATED_BY_CHARS: usize = 256;

const TOKEN_COLUMNS: &str = "name, scopes, created, created_by, expires, revoked, last_used";

type TokenRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    TokenRow::try_from(row)
}

fn token_from_row(
    (name, scopes, created, created_by, expires, revoked, last_used): TokenRow,
) -> Result<TokenInfo, AccessError> {
    const WHERE: &str = "the tokens table";
    let scopes = scopes
        .parse::<Scopes>()
        .map_err(|e| AccessError::Corrupt(format!("token {name:?}: {e}")))?;
    Ok(TokenInfo {
        scopes,
        created: parse_time(WHERE, &created)?,
        created_by,
        expires: parse_optional_time(WHERE, expires)?,
        revoked: parse_optional_time(WHERE, revoked)?,
        last_used: parse_optional_time(WHERE, last_used)?,
        name,
    })
}

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
        check_name("token", name)?;
        if scopes.is_empty() {
            return Err(AccessError::Invalid(
                "a token needs at least one scope: ingest, ingest:SOURCE, read, triage or admin"
                    .into(),
            ));
        }
        let created = stored_now();
        if let Some(expires) = expires {
            if expires <= created {
                return Err(AccessError::Invalid(
                    "a token's expiry must be in the future".into(),
                ));
            }
        }
        let random = Secret::random(TOKEN_SECRET_BYTES)?;
        let secret = Secret::new(format!("{TOKEN_PREFIX}{}", random.expose()));
        let info = TokenInfo {
            name: name.to_owned(),
            scopes: scopes.clone(),
            created,
            created_by: created_by.chars().take(MAX_CREATED_BY_CHARS).collect(),
            // As stored, so that the value returned equals the value listed later.
            expires: expires.map(|t| {
                use chrono::SubsecRound;
                t.trunc_subsecs(6)
            }),
            revoked: None,
            last_used: None,
        };
        self.lock()
            .execute(
                "INSERT INTO tokens (name, digest, scopes, created, created_by, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    info.name,
                    secret.digest(),
                    info.scopes.to_string(),
                    time_text(info.created),
                    info.created_by,
                    info.expires.map(time_text)
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    AccessError::Exists {
                        kind: "token",
                        name: name.to_owned(),
                    }
                } else {
                    self.err()(e)
                }
            })?;
        Ok(NewToken { secret, info })
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, AccessError> {
        let conn = self.lock();
        let mut query = conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created, name"
            ))
            .map_err(self.err())?;
        let rows = query.query_map([], token_row).map_err(self.err())?;
        let mut tokens = Vec::new();
        for row in rows {
            tokens.push(token_from_row(row.map_err(self.err())?)?);
        }
        Ok(tokens)
    }

    /// Revokes the token; requests with it are refused from now on.
    pub fn revoke_token(&self, name: &str) -> Result<(), AccessError> {
        let changed = self
            .lock()
            .execute(
                "UPDATE tokens SET revoked = ?2 WHERE name = ?1 AND revoked IS NULL",
                params![name, time_text(stored_now())],
            )
            .map_err(self.err())?;
        if changed == 0 {
            // Unknown, or revoked already: either way there is no live token of that name.
            return Err(AccessError::NotFound {
                kind: "live token",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// The live (neither revoked nor expired at `now`) token with this secret, if any.
    /// Records when it was last used, at most once a minute per token.
    pub fn token_by_secret(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenInfo>, AccessError> {
        // Anything not shaped like a token is no token: no hashing or lookup for junk.
        let Some(random) = secret.strip_prefix(TOKEN_PREFIX) else {
            return Ok(None);
        };
        if random.len() != TOKEN_SECRET_BYTES * 2 {
            return Ok(None);
        }
        let digest = crate::secret::digest(secret);
        let conn = self.lock();
        let row = conn
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE digest = ?1"),
                params![digest],
                token_row,
            )
            .optional()
            .map_err(self.err())?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut token = token_from_row(row)?;
        if token.revoked.is_some() || token.expires.is_some_and(|expires| expires <= now) {
            return Ok(None);
        }
        let stale = token
            .last_used
            .is_none_or(|last| now - last >= LAST_USED_GRANULARITY);
        if stale {
            conn.execute(
                "UPDATE tokens SET last_used = ?2 WHERE digest = ?1",
                params![digest, time_text(now)],
            )
            .map_err(self.err())?;
            token.last_used = Some(now);
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::temp_db;
    use crate::Permission;

    fn scopes(text: &str) -> Scopes {
        text.parse().unwrap()
    }

    #[test]
    fn a_token_is_prefixed_random_and_stored_only_as_a_digest() {
        let (_dir, db) = temp_db();
        let shipper = db
            .create_token("shipper", &scopes("ingest:cloudtrail"), None, "admin")
            .unwrap();
        let other = db
            .create_token("other", &scopes("read"), None, "admin")
            .unwrap();
        let text = shipper.secret.expose();
        assert!(text.starts_with("vgl_"), "{text}");
        assert_eq!(text.len(), 4 + 64);
        assert_ne!(shipper.secret, other.secret);
        let stored: String = db
            .lock()
            .query_row(
                "SELECT digest FROM tokens WHERE name = 'shipper'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, shipper.secret.digest());
        assert!(!stored.contains(&text[4..]));
        let now = Utc::now();
        let found = db.token_by_secret(text, now).unwrap().unwrap();
        assert_eq!(found.name, "shipper");
        assert!(found.scopes.may_ingest("cloudtrail"));
        assert!(!found.scopes.grants(Permission::Read));
        assert_eq!(found.created_by, "admin");
        assert_eq!(
            db.token_by_secret(&stored, now).unwrap(),
            None,
            "the digest is no key"
        );
        assert_eq!(db.token_by_secret("vgl_short", now).unwrap(), None);
        let wrong = format!("vgl_{}", "0".repeat(64));
        assert_eq!(db.token_by_secret(&wrong, now).unwrap(), None);
    }

    #[test]
    fn tokens_are_listed_and_names_are_unique_even_after_revocation() {
        let (_dir, db) = temp_db();
        let created = db
            .create_token("ci", &scopes("ingest:a,ingest:b,read"), None, "alice")
            .unwrap();
        db.create_token("ops", &scopes("admin"), None, "alice")
            .unwrap();
        let listed = db.tokens().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0], created.info);
        assert_eq!(listed[0].scopes.to_string(), "ingest:a,ingest:b,read");
        db.revoke_token("ci").unwrap();
        assert!(matches!(
            db.create_token("ci", &scopes("read"), None, "alice"),
            Err(AccessError::Exists { .. })
        ));
        assert!(matches!(
            db.create_token("CI", &scopes("read"), None, "alice"),
            Err(AccessError::Exists { .. })
        ));
        assert!(matches!(
            db.create_token("no spaces", &scopes("read"), None, "alice"),
            Err(AccessError::Invalid(_))
        ));
        assert!(matches!(
            db.create_token("empty", &Scopes::default(), None, "alice"),
            Err(AccessError::Invalid(_))
        ));
        assert!(db.tokens().unwrap()[0].revoked.is_some());
    }

    #[test]
    fn revoked_tokens_are_refused_at_once_and_revoke_twice_is_not_found() {
        let (_dir, db) = temp_db();
        let token = db
            .create_token("ci", &scopes("read"), None, "alice")
            .unwrap();
        let now = Utc::now();
        assert!(db
            .token_by_secret(token.secret.expose(), now)
            .unwrap()
            .is_some());
        db.revoke_token("ci").unwrap();
        assert_eq!(
            db.token_by_secret(token.secret.expose(), now).unwrap(),
            None
        );
        assert!(matches!(
            db.revoke_token("ci"),
            Err(AccessError::NotFound { .. })
        ));
        assert!(matches!(
            db.revoke_token("nope"),
            Err(AccessError::NotFound { .. })
        ));
    }

    #[test]
    fn tokens_expire() {
        let (_dir, db) = temp_db();
        let now = Utc::now();
        let expires = now + chrono::Duration::hours(1);
        let token = db
            .create_token("temp", &scopes("read"), Some(expires), "alice")
            .unwrap();
        let secret = token.secret.expose();
        assert!(db
            .token_by_secret(secret, expires - chrono::Duration::seconds(1))
            .unwrap()
            .is_some());
        assert_eq!(
            db.token_by_secret(secret, token.info.expires.unwrap())
                .unwrap(),
            None
        );
        assert!(matches!(
            db.create_token(
                "past",
                &scopes("read"),
                Some(now - chrono::Duration::seconds(1)),
                "alice"
            ),
            Err(AccessError::Invalid(_))
        ));
    }

    #[test]
    fn last_used_is_written_at_most_once_a_minute() {
        let (_dir, db) = temp_db();
        let token = db
            .create_token("ci", &scopes("read"), None, "alice")
            .unwrap();
        let secret = token.secret.expose();
        let t0 = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        assert_eq!(
            db.token_by_secret(secret, t0).unwrap().unwrap().last_used,
            Some(t0)
        );
        let soon = t0 + chrono::Duration::seconds(30);
        db.token_by_secret(secret, soon).unwrap();
        assert_eq!(db.tokens().unwrap()[0].last_used, Some(t0));
        let later = t0 + chrono::Duration::seconds(61);
        db.token_by_secret(secret, later).unwrap();
        assert_eq!(db.tokens().unwrap()[0].last_used, Some(later));
    }

    #[test]
    fn a_row_whose_scopes_do_not_parse_is_corrupt() {
        let (_dir, db) = temp_db();
        let token = db
            .create_token("ci", &scopes("read"), None, "alice")
            .unwrap();
        db.lock()
            .execute("UPDATE tokens SET scopes = 'root'", [])
            .unwrap();
        assert!(matches!(db.tokens(), Err(AccessError::Corrupt(_))));
        assert!(matches!(
            db.token_by_secret(token.secret.expose(), Utc::now()),
            Err(AccessError::Corrupt(_))
        ));
    }

    #[test]
    fn token_info_serializes_scopes_as_text_and_never_the_secret() {
        let (_dir, db) = temp_db();
        let token = db
            .create_token("ci", &scopes("ingest:cloudtrail"), None, "alice")
            .unwrap();
        let json = serde_json::to_value(&token.info).unwrap();
        assert_eq!(json["scopes"], "ingest:cloudtrail");
        assert!(!json.to_string().contains(&token.secret.expose()[4..]));
    }
}
