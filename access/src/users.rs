//! Local users: a name, a role, an argon2id password hash, and whether they are disabled.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{AccessDb, AccessError, Role, Secret};

/// A user as listed; never carries the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created: DateTime<Utc>,
}

impl AccessDb {
    /// Adds a user. Names are 1 to 64 of letters, digits, `.`, `_`, `-` and `@`.
    pub fn add_user(&self, name: &str, role: Role, password: &Secret) -> Result<User, AccessError> {
        let _ = (name, role, password);
        todo!("H1")
    }

    pub fn users(&self) -> Result<Vec<User>, AccessError> {
        todo!("H1")
    }

    pub fn user(&self, name: &str) -> Result<Option<User>, AccessError> {
        let _ = name;
        todo!("H1")
    }

    /// How many users exist (enabled or not): zero means a first start.
    pub fn user_count(&self) -> Result<u64, AccessError> {
        todo!("H1")
    }

    /// Disables the user and ends every session of theirs, in one transaction.
    pub fn disable_user(&self, name: &str) -> Result<(), AccessError> {
        let _ = name;
        todo!("H1")
    }

    /// Sets a new password and ends every session of theirs, in one transaction.
    pub fn set_password(&self, name: &str, password: &Secret) -> Result<(), AccessError> {
        let _ = (name, password);
        todo!("H1")
    }

    /// The enabled user with this name and password, or `None`. Takes as long for an
    /// unknown name as for a wrong password, so timing does not reveal which names exist.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<User>, AccessError> {
        let _ = (name, password);
        todo!("H1")
    }
}
