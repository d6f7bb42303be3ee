//! Server-side sessions: a random id in the browser's cookie, its hash here, with idle and
//! absolute expiry and a CSRF token of its own.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{AccessDb, AccessError, Secret, User};

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
    pub fn start_session(&self, user: &str, replacing: Option<&str>, now: DateTime<Utc>) -> Result<NewSession, AccessError> {
        let _ = (user, replacing, now);
        todo!("H1")
    }

    /// The live session with this id at `now`, under `limits`, marking it used. An expired
    /// session, or one whose user is disabled, is deleted and `None` returned.
    pub fn session(&self, id: &str, limits: SessionLimits, now: DateTime<Utc>) -> Result<Option<Session>, AccessError> {
        let _ = (id, limits, now);
        todo!("H1")
    }

    /// Ends the session with this id (sign-out); ending an unknown id is not an error.
    pub fn end_session(&self, id: &str) -> Result<(), AccessError> {
        let _ = id;
        todo!("H1")
    }
}
