//! Server-side sessions: a random id in the browser's cookie, its hash here, with idle and
//! absolute expiry and a CSRF token of its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use crate::db::{parse_time, time_text};
use crate::{AccessDb, AccessError, Role, Secret, User};

/// Random bytes in a session id and in a CSRF token.
const SESSION_SECRET_BYTES: usize = 32;

/// A session used more recently than this is not marked used again: most requests then
/// only read the database. Idle expiry is therefore this much coarse at worst.
const LAST_SEEN_GRANULARITY: chrono::Duration = chrono::Duration::seconds(5);

/// Sessions one user may hold at once; signing in beyond it ends their oldest. It bounds
/// the table against a script that signs in over and over.
const MAX_SESSIONS_PER_USER: i64 = 64;

/// The longest any valid configuration lets a session live (see `AccessConfig::validate`):
/// sessions older than these are expired under every setting, so they can be deleted
/// whenever convenient without knowing the configured limits.
const LONGEST_IDLE: chrono::Duration = chrono::Duration::days(30);
const LONGEST_MAX: chrono::Duration = chrono::Duration::days(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle: Duration,
    pub max: Duration,
}

/// A session just started: the cookie's value (shown to the browser only) and its CSRF token.
#[derive(Debug)]
pub struct NewSession {
    pub id: Secret,
    pub csrf: String,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    /// The token every form of this session carries; compare with [`Session::csrf_matches`].
    pub csrf: String,
    pub started: DateTime<Utc>,
}

impl Session {
    /// Compares in constant time.
    pub fn csrf_matches(&self, candidate: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.csrf.as_bytes().ct_eq(candidate.as_bytes()))
    }
}

impl AccessDb {
    /// Starts a session for `user` (who must exist and be enabled). Sign-in always starts a
    /// new one, so an id planted before sign-in is worth nothing after it; `replacing`, the
    /// id the browser sent, if any, is ended in the same transaction.
    pub fn start_session(
        &self,
        user: &str,
        replacing: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<NewSession, AccessError> {
        let id = Secret::random(SESSION_SECRET_BYTES)?;
        let csrf = Secret::random(SESSION_SECRET_BYTES)?.expose().to_owned();
        let mut conn = self.lock();
        let tx = self.write_transaction(&mut conn)?;
        let disabled: Option<(String, bool)> = tx
            .query_row(
                "SELECT name, disabled FROM users WHERE name = ?1",
                params![user],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(self.err())?;
        let name = match disabled {
            None => {
                return Err(AccessError::NotFound {
                    kind: "user",
                    name: user.to_owned(),
                })
            }
            Some((_, true)) => {
                return Err(AccessError::Invalid(format!("user {user:?} is disabled")))
            }
            // The stored spelling, whatever case the caller used.
            Some((name, false)) => name,
        };
        if let Some(old) = replacing {
            tx.execute(
                "DELETE FROM sessions WHERE digest = ?1",
                params![crate::secret::digest(old)],
            )
            .map_err(self.err())?;
        }
        tx.execute(
            "DELETE FROM sessions WHERE user = ?1 AND (last_seen <= ?2 OR started <= ?3)",
            params![
                name,
                time_text(now - LONGEST_IDLE),
                time_text(now - LONGEST_MAX)
            ],
        )
        .map_err(self.err())?;
        tx.execute(
            "INSERT INTO sessions (digest, user, csrf, started, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![id.digest(), name, csrf, time_text(now)],
        )
        .map_err(self.err())?;
        tx.execute(
            "DELETE FROM sessions WHERE user = ?1 AND digest NOT IN (
                 SELECT digest FROM sessions WHERE user = ?1
                 ORDER BY started DESC, rowid DESC LIMIT ?2)",
            params![name, MAX_SESSIONS_PER_USER],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(NewSession { id, csrf })
    }

    /// The live session with this id at `now`, under `limits`, marking it used. An expired
    /// session, or one whose user is disabled, is deleted and `None` returned.
    pub fn session(
        &self,
        id: &str,
        limits: SessionLimits,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, AccessError> {
        let digest = crate::secret::digest(id);
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT u.name, u.role, u.disabled, u.created, s.csrf, s.started, s.last_seen
                 FROM sessions s JOIN users u ON u.name = s.user
                 WHERE s.digest = ?1",
                params![digest],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, bool>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, String>(5)?,
                        row.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(self.err())?;
        let Some((name, role, disabled, created, csrf, started, last_seen)) = row else {
            return Ok(None);
        };
        let started = parse_time("the sessions table", &started)?;
        let last_seen = parse_time("the sessions table", &last_seen)?;
        let idle = chrono::Duration::from_std(limits.idle).unwrap_or(chrono::Duration::MAX);
        let max = chrono::Duration::from_std(limits.max).unwrap_or(chrono::Duration::MAX);
        let idle_over = last_seen
            .checked_add_signed(idle)
            .is_some_and(|end| end <= now);
        let max_over = started
            .checked_add_signed(max)
            .is_some_and(|end| end <= now);
        if disabled || idle_over || max_over {
            conn.execute("DELETE FROM sessions WHERE digest = ?1", params![digest])
                .map_err(self.err())?;
            return Ok(None);
        }
        if now - last_seen >= LAST_SEEN_GRANULARITY {
            conn.execute(
                "UPDATE sessions SET last_seen = ?2 WHERE digest = ?1",
                params![digest, time_text(now)],
            )
            .map_err(self.err())?;
        }
        let role = role
            .parse::<Role>()
            .map_err(|e| AccessError::Corrupt(format!("user {name:?}: {e}")))?;
        Ok(Some(Session {
            user: User {
                name,
                role,
                disabled,
                created: parse_time("the users table", &created)?,
            },
            csrf,
            started,
        }))
    }

    /// Ends the session with this id (sign-out); ending an unknown id is not an error.
    pub fn end_session(&self, id: &str) -> Result<(), AccessError> {
        self.lock()
            .execute(
                "DELETE FROM sessions WHERE digest = ?1",
                params![crate::secret::digest(id)],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Deletes every session expired at `now` under `limits`, returning how many. Expired
    /// sessions are refused and deleted when presented anyway; this only keeps the table
    /// small, for a server to call now and then.
    pub fn end_expired_sessions(
        &self,
        limits: SessionLimits,
        now: DateTime<Utc>,
    ) -> Result<usize, AccessError> {
        let idle = chrono::Duration::from_std(limits.idle).unwrap_or(LONGEST_IDLE);
        let max = chrono::Duration::from_std(limits.max).unwrap_or(LONGEST_MAX);
        let idle_cutoff = now
            .checked_sub_signed(idle)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let max_cutoff = now
            .checked_sub_signed(max)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.lock()
            .execute(
                "DELETE FROM sessions WHERE last_seen <= ?1 OR started <= ?2",
                params![time_text(idle_cutoff), time_text(max_cutoff)],
            )
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::temp_db;

    const LIMITS: SessionLimits = SessionLimits {
        idle: Duration::from_secs(30 * 60),
        max: Duration::from_secs(12 * 60 * 60),
    };

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn minutes(n: i64) -> chrono::Duration {
        chrono::Duration::minutes(n)
    }

    fn with_users() -> (tempfile::TempDir, AccessDb) {
        let (dir, db) = temp_db();
        db.add_user("alice", Role::Analyst, &Secret::new("alice's long secret"))
            .unwrap();
        db.add_user("bob", Role::Viewer, &Secret::new("bob's long secret!"))
            .unwrap();
        (dir, db)
    }

    fn session_count(db: &AccessDb) -> i64 {
        db.lock()
            .query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_session_names_its_user_and_keeps_only_a_digest() {
        let (_dir, db) = with_users();
        let t0 = at("2026-03-01T09:00:00Z");
        let new = db.start_session("alice", None, t0).unwrap();
        assert_eq!(new.id.expose().len(), 64);
        assert_eq!(new.csrf.len(), 64);
        let session = db.session(new.id.expose(), LIMITS, t0).unwrap().unwrap();
        assert_eq!(session.user.name, "alice");
        assert_eq!(session.user.role, Role::Analyst);
        assert_eq!(session.started, t0);
        assert!(session.csrf_matches(&new.csrf));
        assert!(!session.csrf_matches(""));
        let (digest, csrf): (String, String) = db
            .lock()
            .query_row("SELECT digest, csrf FROM sessions", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!(digest, new.id.digest());
        assert_ne!(digest, new.id.expose());
        assert_eq!(csrf, new.csrf);
        assert_eq!(db.session("not a session", LIMITS, t0).unwrap(), None);
        assert_eq!(
            db.session(&digest, LIMITS, t0).unwrap(),
            None,
            "the digest is no key"
        );
    }

    #[test]
    fn each_sign_in_is_a_new_session_with_its_own_csrf_and_ends_the_one_it_replaces() {
        let (_dir, db) = with_users();
        let t0 = at("2026-03-01T09:00:00Z");
        let first = db.start_session("alice", None, t0).unwrap();
        let second = db
            .start_session("alice", Some(first.id.expose()), t0)
            .unwrap();
        assert_ne!(first.id, second.id);
        assert_ne!(first.csrf, second.csrf);
        assert_eq!(db.session(first.id.expose(), LIMITS, t0).unwrap(), None);
        let live = db.session(second.id.expose(), LIMITS, t0).unwrap().unwrap();
        assert!(!live.csrf_matches(&first.csrf));
        // A planted id that was never a session is harmless to replace.
        db.start_session("bob", Some("planted"), t0).unwrap();
        assert!(matches!(
            db.start_session("mallory", None, t0),
            Err(AccessError::NotFound { .. })
        ));
    }

    #[test]
    fn idle_sessions_expire_and_use_keeps_them_alive() {
        let (_dir, db) = with_users();
        let t0 = at("2026-03-01T09:00:00Z");
        let kept = db.start_session("alice", None, t0).unwrap();
        let idle = db.start_session("alice", None, t0).unwrap();
        // Used every 20 minutes, `kept` outlives the 30-minute idle limit.
        for step in 1..=4 {
            let now = t0 + minutes(20 * step);
            assert!(
                db.session(kept.id.expose(), LIMITS, now).unwrap().is_some(),
                "{step}"
            );
        }
        assert_eq!(
            db.session(idle.id.expose(), LIMITS, t0 + minutes(30))
                .unwrap(),
            None
        );
        assert_eq!(session_count(&db), 1, "the expired session is deleted");
        // Just inside the idle limit is still live.
        let fresh = db.start_session("bob", None, t0).unwrap();
        let almost = t0 + minutes(30) - chrono::Duration::seconds(1);
        assert!(db
            .session(fresh.id.expose(), LIMITS, almost)
            .unwrap()
            .is_some());
    }

    #[test]
    fn sessions_end_at_the_absolute_limit_however_busy() {
        let (_dir, db) = with_users();
        let t0 = at("2026-03-01T09:00:00Z");
        let busy = db.start_session("alice", None, t0).unwrap();
        let mut now = t0;
        while now < t0 + minutes(12 * 60 - 10) {
            now += minutes(10);
            assert!(
                db.session(busy.id.expose(), LIMITS, now).unwrap().is_some(),
                "{now}"
            );
        }
        now += minutes(10);
        assert_eq!(db.session(busy.id.expose(), LIMITS, now).unwrap(), None);
    }

    #[test]
    fn sign_out_password_change_and_disable_end_sessions() {
        let (_dir, db) = with_users();
        let t0 = at("2026-03-01T09:00:00Z");
        let signed_out = db.start_session("alice", None, t0).unwrap();
        db.end_session(signed_out.id.expose()).unwrap();
        db.end_session(signed_out.id.expose()).unwrap();
        assert_eq!(
            db.session(signed_out.id.expose(), LIMITS, t0).unwrap(),
            None
        );

        let alice = db.start_session("alice", None, t0).unwrap();
        let bob = db.start_session("bob", None, t0).unwrap();
        db.set_password("alice", &Secret::new("alice's new secret"))
            .unwrap();
        assert_eq!(db.session(alice.id.expose(), LIMITS, t0).unwrap(), None);
        assert!(db.session(bob.id.expose(), LIMITS, t0).unwrap().is_some());

        db.disable_user("bob").unwrap();
        // Deleted at once, not merely refused when next presented.
        assert_eq!(session_count(&db), 0);
        assert_eq!(db.session(bob.id.expose(), LIMITS, t0).unwrap(), None);
        assert!(matches!(
            db.start_session("bob", None, t0),
            Err(AccessError::Invalid(_))
        ));
        assert_eq!(session_count(&db), 0);
    }

    #[test]
    fn a_session_of_a_user_disabled_behind_its_back_is_refused() {
        // As if another process disabled the user without ending the sessions.
        let (_dir, db) = with_users();
        let t0 = at("2026-03-01T09:00:00Z");
        let alice = db.start_session("alice", None, t0).unwrap();
        db.lock()
            .execute("UPDATE users SET disabled = 1 WHERE name = 'alice'", [])
            .unwrap();
        assert_eq!(db.session(alice.id.expose(), LIMITS, t0).unwrap(), None);
        assert_eq!(session_count(&db), 0);
    }

    #[test]
    fn last_seen_is_written_only_when_stale() {
        let (_dir, db) = with_users();
        let t0 = at("2026-03-01T09:00:00Z");
        let new = db.start_session("alice", None, t0).unwrap();
        let last_seen = || -> String {
            db.lock()
                .query_row("SELECT last_seen FROM sessions", [], |row| row.get(0))
                .unwrap()
        };
        db.session(new.id.expose(), LIMITS, t0 + chrono::Duration::seconds(2))
            .unwrap();
        assert_eq!(last_seen(), time_text(t0));
        let later = t0 + chrono::Duration::seconds(6);
        db.session(new.id.expose(), LIMITS, later).unwrap();
        assert_eq!(last_seen(), time_text(later));
    }

    #[test]
    fn old_and_excess_sessions_are_cleared() {
        let (_dir, db) = with_users();
        let t0 = at("2026-03-01T09:00:00Z");
        let ancient = db.start_session("alice", None, t0).unwrap();
        let bobs = db.start_session("bob", None, t0).unwrap();
        let later = t0 + chrono::Duration::days(31);
        db.start_session("alice", None, later).unwrap();
        let (digest_count, ancient_kept): (i64, bool) = {
            let conn = db.lock();
            let count = conn
                .query_row(
                    "SELECT count(*) FROM sessions WHERE user = 'alice'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let kept = conn
                .query_row(
                    "SELECT count(*) FROM sessions WHERE digest = ?1",
                    params![ancient.id.digest()],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
                == 1;
            (count, kept)
        };
        assert_eq!((digest_count, ancient_kept), (1, false));
        assert_eq!(
            session_count(&db),
            2,
            "bob's old session waits for his own sign-in"
        );
        assert_eq!(db.end_expired_sessions(LIMITS, later).unwrap(), 1);
        assert_eq!(db.session(bobs.id.expose(), LIMITS, later).unwrap(), None);

        for _ in 0..MAX_SESSIONS_PER_USER + 5 {
            db.start_session("bob", None, later).unwrap();
        }
        let newest = db.start_session("bob", None, later).unwrap();
        let bob_count: i64 = db
            .lock()
            .query_row(
                "SELECT count(*) FROM sessions WHERE user = 'bob'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(bob_count, MAX_SESSIONS_PER_USER);
        assert!(db
            .session(newest.id.expose(), LIMITS, later)
            .unwrap()
            .is_some());
    }
}
