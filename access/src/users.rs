//! Local users: a name, a role, an argon2id password hash, and whether they are disabled.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::db::{is_unique_violation, parse_time, stored_now, time_text};
use crate::password::{self, MAX_PASSWORD_BYTES};
use crate::{AccessDb, AccessError, Role, Secret};

/// A user as listed; never carries the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created: DateTime<Utc>,
}

/// The longest user or token name.
const MAX_NAME_CHARS: usize = 64;

/// Checks a user or token name: 1 to 64 ASCII letters, digits, `.`, `_`, `-` and `@`, so
/// that names print plainly in the audit log, on pages and in a terminal.
pub fn check_name(kind: &str, name: &str) -> Result<(), AccessError> {
    if name.is_empty() || name.len() > MAX_NAME_CHARS {
        return Err(AccessError::Invalid(format!(
            "a {kind} name needs 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
    {
        return Err(AccessError::Invalid(format!(
            "a {kind} name may hold only letters, digits, '.', '_', '-' and '@'"
        )));
    }
    Ok(())
}

/// A hash of a password nobody knows, with the parameters [`password::hash`] uses, checked
/// against when the name is unknown or disabled so that the answer takes as long as for a
/// wrong password. `dummy_hash_matches_the_real_parameters` keeps the two in step.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$VmlnaWwgZHVtbXkgc2FsdA$yJ6i2M0PvSvUJNvOdc2C4Xa3gkqOEqR6vc1SmB3TS0c";

const USER_COLUMNS: &str = "name, role, disabled, created";

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, bool, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn user_from_text(
    (name, role, disabled, created): (String, String, bool, String),
) -> Result<User, AccessError> {
    let role = role
        .parse::<Role>()
        .map_err(|e| AccessError::Corrupt(format!("user {name:?}: {e}")))?;
    let created = parse_time("the users table", &created)?;
    Ok(User {
        name,
        role,
        disabled,
        created,
    })
}

impl AccessDb {
    /// Adds a user. Names are 1 to 64 of letters, digits, `.`, `_`, `-` and `@`.
    pub fn add_user(&self, name: &str, role: Role, password: &Secret) -> Result<User, AccessError> {
        check_name("user", name)?;
        password::check_strength(password.expose())?;
        // Hash before taking the connection: argon2 takes tens of milliseconds.
        let hash = password::hash(password.expose())?;
        let user = User {
            name: name.to_owned(),
            role,
            disabled: false,
            created: stored_now(),
        };
        let conn = self.lock();
        conn.execute(
            "INSERT INTO users (name, role, password_hash, disabled, created) VALUES (?1, ?2, ?3, 0, ?4)",
            params![user.name, role.as_str(), hash, time_text(user.created)],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                AccessError::Exists {
                    kind: "user",
                    name: name.to_owned(),
                }
            } else {
                self.err()(e)
            }
        })?;
        Ok(user)
    }

    pub fn users(&self) -> Result<Vec<User>, AccessError> {
        let conn = self.lock();
        let mut query = conn
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .map_err(self.err())?;
        let rows = query.query_map([], user_from_row).map_err(self.err())?;
        let mut users = Vec::new();
        for row in rows {
            users.push(user_from_text(row.map_err(self.err())?)?);
        }
        Ok(users)
    }

    pub fn user(&self, name: &str) -> Result<Option<User>, AccessError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                params![name],
                user_from_row,
            )
            .optional()
            .map_err(self.err())?;
        row.map(user_from_text).transpose()
    }

    /// How many users exist (enabled or not): zero means a first start.
    pub fn user_count(&self) -> Result<u64, AccessError> {
        let conn = self.lock();
        let count: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
            .map_err(self.err())?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Disables the user and ends every session of theirs, in one transaction.
    pub fn disable_user(&self, name: &str) -> Result<(), AccessError> {
        let mut conn = self.lock();
        let tx = self.write_transaction(&mut conn)?;
        let changed = tx
            .execute(
                "UPDATE users SET disabled = 1 WHERE name = ?1",
                params![name],
            )
            .map_err(self.err())?;
        if changed == 0 {
            return Err(AccessError::NotFound {
                kind: "user",
                name: name.to_owned(),
            });
        }
        // Disabling the last admin would leave no one to add users, tokens or admins again
        // but someone with a shell on the data directory.
        let (was_admin, admins_left): (bool, i64) = tx
            .query_row(
                "SELECT (SELECT role = 'admin' FROM users WHERE name = ?1),
                        (SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0)",
                params![name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(self.err())?;
        if was_admin && admins_left == 0 {
            return Err(AccessError::Invalid(format!(
                "{name:?} is the last enabled admin; add another admin before disabling it"
            )));
        }
        tx.execute("DELETE FROM sessions WHERE user = ?1", params![name])
            .map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    /// Sets a new password and ends every session of theirs, in one transaction.
    pub fn set_password(&self, name: &str, password: &Secret) -> Result<(), AccessError> {
        password::check_strength(password.expose())?;
        let hash = password::hash(password.expose())?;
        let mut conn = self.lock();
        let tx = self.write_transaction(&mut conn)?;
        let changed = tx
            .execute(
                "UPDATE users SET password_hash = ?2 WHERE name = ?1",
                params![name, hash],
            )
            .map_err(self.err())?;
        if changed == 0 {
            return Err(AccessError::NotFound {
                kind: "user",
                name: name.to_owned(),
            });
        }
        tx.execute("DELETE FROM sessions WHERE user = ?1", params![name])
            .map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    /// The enabled user with this name and password, or `None`. Takes as long for an
    /// unknown name as for a wrong password, so timing does not reveal which names exist.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<User>, AccessError> {
        // Refused before any lookup or hashing, whatever the name: no timing to learn here.
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(None);
        }
        let found = {
            let conn = self.lock();
            conn.query_row(
                &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = ?1"),
                params![name],
                |row| Ok((user_from_row(row)?, row.get::<_, String>(4)?)),
            )
            .optional()
            .map_err(self.err())?
        };
        // The connection is released before hashing, so one slow sign-in holds no one up.
        match found {
            Some((columns, hash)) if !columns.2 => {
                if password::verify(password, &hash)? {
                    Ok(Some(user_from_text(columns)?))
                } else {
                    Ok(None)
                }
            }
            _ => {
                // Unknown or disabled: spend the same work on a hash nobody can match.
                let _ = password::verify(password, DUMMY_HASH)?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHash;

    use super::*;
    use crate::db::tests::temp_db;
    use crate::password::tests::verifications_in;

    fn pw(text: &str) -> Secret {
        Secret::new(text)
    }

    #[test]
    fn names_are_checked() {
        for good in [
            "admin",
            "a",
            "alice.smith@example.com",
            "svc_ci-01",
            &"x".repeat(64),
        ] {
            assert!(check_name("user", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "al ice",
            "bob\n",
            "<script>",
            "ünïcode",
            "a/b",
            "a:b",
        ] {
            assert!(
                matches!(check_name("user", bad), Err(AccessError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn users_are_added_listed_and_unique_without_case() {
        let (_dir, db) = temp_db();
        assert_eq!(db.user_count().unwrap(), 0);
        let alice = db
            .add_user("alice", Role::Analyst, &pw("alice's long secret"))
            .unwrap();
        db.add_user("bob", Role::Viewer, &pw("bob's long secret!"))
            .unwrap();
        assert_eq!(db.user_count().unwrap(), 2);
        assert_eq!(db.user("alice").unwrap().as_ref(), Some(&alice));
        assert_eq!(db.user("carol").unwrap(), None);
        let names: Vec<String> = db.users().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert!(matches!(
            db.add_user("Alice", Role::Admin, &pw("another long secret")),
            Err(AccessError::Exists { kind: "user", .. })
        ));
        assert!(matches!(
            db.add_user("bad name", Role::Admin, &pw("another long secret")),
            Err(AccessError::Invalid(_))
        ));
        assert!(matches!(
            db.add_user("carol", Role::Admin, &pw("short")),
            Err(AccessError::Invalid(_))
        ));
        assert_eq!(db.user_count().unwrap(), 2);
    }

    #[test]
    fn the_last_enabled_admin_cannot_be_disabled() {
        let (_dir, db) = temp_db();
        db.add_user("root", Role::Admin, &pw("root's long secret"))
            .unwrap();
        db.add_user("viewer", Role::Viewer, &pw("viewer's long secret"))
            .unwrap();
        assert!(matches!(
            db.disable_user("ROOT"),
            Err(AccessError::Invalid(message)) if message.contains("last enabled admin")
        ));
        assert!(!db.user("root").unwrap().unwrap().disabled);
        // Others may go, and so may an admin while another remains.
        db.disable_user("viewer").unwrap();
        db.add_user("second", Role::Admin, &pw("second's long secret"))
            .unwrap();
        db.disable_user("root").unwrap();
        assert!(db.user("root").unwrap().unwrap().disabled);
        assert!(db.disable_user("second").is_err());
    }

    #[test]
    fn the_stored_password_is_an_argon2id_hash_not_the_password() {
        let (_dir, db) = temp_db();
        db.add_user("alice", Role::Analyst, &pw("alice's long secret"))
            .unwrap();
        let stored: String = db
            .lock()
            .query_row("SELECT password_hash FROM users", [], |row| row.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("alice's long secret"));
    }

    #[test]
    fn passwords_verify_only_for_enabled_users_with_the_right_password() {
        let (_dir, db) = temp_db();
        db.add_user("alice", Role::Analyst, &pw("alice's long secret"))
            .unwrap();
        let signed_in = db
            .verify_password("alice", "alice's long secret")
            .unwrap()
            .unwrap();
        assert_eq!(
            (signed_in.name.as_str(), signed_in.role),
            ("alice", Role::Analyst)
        );
        assert_eq!(
            db.verify_password("alice", "alice's long secreT").unwrap(),
            None
        );
        assert_eq!(
            db.verify_password("mallory", "alice's long secret")
                .unwrap(),
            None
        );
        assert_eq!(
            db.verify_password("alice", &"a".repeat(MAX_PASSWORD_BYTES + 1))
                .unwrap(),
            None
        );
        db.disable_user("alice").unwrap();
        assert!(db.user("alice").unwrap().unwrap().disabled);
        assert_eq!(
            db.verify_password("alice", "alice's long secret").unwrap(),
            None
        );
        assert!(matches!(
            db.disable_user("mallory"),
            Err(AccessError::NotFound { .. })
        ));
    }

    #[test]
    fn a_new_password_replaces_the_old() {
        let (_dir, db) = temp_db();
        db.add_user("alice", Role::Analyst, &pw("alice's long secret"))
            .unwrap();
        db.set_password("alice", &pw("alice's new secret")).unwrap();
        assert_eq!(
            db.verify_password("alice", "alice's long secret").unwrap(),
            None
        );
        assert!(db
            .verify_password("alice", "alice's new secret")
            .unwrap()
            .is_some());
        assert!(matches!(
            db.set_password("alice", &pw("short")),
            Err(AccessError::Invalid(_))
        ));
        assert!(matches!(
            db.set_password("mallory", &pw("mallory's long secret")),
            Err(AccessError::NotFound { .. })
        ));
    }

    #[test]
    fn dummy_hash_matches_the_real_parameters() {
        let real = password::hash("anything at all").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[test]
    fn every_answer_costs_one_argon2_verification() {
        // Counted rather than timed (timing is too noisy for CI): unknown, disabled and
        // known names all do the same hashing work, so timing does not tell them apart.
        let (_dir, db) = temp_db();
        db.add_user("alice", Role::Analyst, &pw("alice's long secret"))
            .unwrap();
        db.add_user("bob", Role::Viewer, &pw("bob's long secret!"))
            .unwrap();
        db.disable_user("bob").unwrap();
        for (name, password) in [
            ("alice", "alice's long secret"),
            ("alice", "a wrong password"),
            ("nobody", "a wrong password"),
            ("bob", "bob's long secret!"),
            ("not a valid name!", "a wrong password"),
        ] {
            let (_, hashed) = verifications_in(|| db.verify_password(name, password).unwrap());
            assert_eq!(hashed, 1, "{name}");
        }
    }
}
