//! The first start: a data directory with no user at all gets an `admin` user with a
//! generated password, which start-up prints once. Only its argon2id hash is stored, so a
//! lost password is reset with `vigil users passwd admin`, not read back.

use vigil_access::{password, AccessDb, AccessError, AuditRecord, Outcome, Role, Secret};

/// The first user's name.
pub const FIRST_ADMIN: &str = "admin";

/// The actor the audit log names for what Vigil does on its own.
const VIGIL_ACTOR: &str = "vigil";

/// Creates the first admin when there are no users, returning its password to print once;
/// `None` on every later start (and when another process added a user meanwhile).
pub fn ensure_first_admin(db: &AccessDb) -> Result<Option<Secret>, AccessError> {
    if db.user_count()? > 0 {
        return Ok(None);
    }
    let password = password::generate()?;
    match db.add_user(FIRST_ADMIN, Role::Admin, &password) {
        Ok(_) => {}
        // `vigil users add admin` ran between the count and now: theirs stands.
        Err(AccessError::Exists { .. }) => return Ok(None),
        Err(error) => return Err(error),
    }
    let record = AuditRecord {
        actor: VIGIL_ACTOR.to_owned(),
        action: "user.add".to_owned(),
        outcome: Outcome::Success,
        target: Some(FIRST_ADMIN.to_owned()),
        client_address: None,
        reason: None,
        detail: serde_json::json!({ "role": Role::Admin, "first_start": true }),
    };
    // The user exists now; failing start-up here would lose the only copy of its password.
    if let Err(error) = db.audit(record) {
        tracing::error!(%error, "the first admin user was created but could not be audited");
    }
    Ok(Some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_makes_an_admin_once_and_audits_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = AccessDb::open_in(dir.path()).unwrap();
        let password = ensure_first_admin(&db).unwrap().expect("a first admin");
        let admin = db
            .verify_password(FIRST_ADMIN, password.expose())
            .unwrap()
            .expect("the printed password signs in");
        assert_eq!(admin.role, Role::Admin);
        assert!(ensure_first_admin(&db).unwrap().is_none());
        assert_eq!(db.user_count().unwrap(), 1);
        let entries = db.audit_after(0, 10).unwrap();
        assert_eq!(entries.len(), 1);
        let record = &entries[0].record;
        assert_eq!(
            (
                record.actor.as_str(),
                record.action.as_str(),
                record.outcome
            ),
            ("vigil", "user.add", Outcome::Success)
        );
        assert_eq!(record.target.as_deref(), Some(FIRST_ADMIN));
    }

    #[test]
    fn an_existing_user_means_no_first_admin() {
        let dir = tempfile::tempdir().unwrap();
        let db = AccessDb::open_in(dir.path()).unwrap();
        db.add_user("alice", Role::Viewer, &Secret::new("alice's long secret"))
            .unwrap();
        assert!(ensure_first_admin(&db).unwrap().is_none());
        assert!(db.user(FIRST_ADMIN).unwrap().is_none());
    }
}
