//! Saved searches: a person's named searches (the query, the time range as typed, and the
//! chosen columns), each private to its owner. They are shared by URL: the search page's
//! URL carries the same parameters, so a link to it is the share, and nobody ever reads
//! another person's list.
//!
//! The owner is the name the audit log records for a person (their user name, or the name
//! a single sign-on proxy gives), compared without case as user names are. A proxy's users
//! have no row in `users`, so the owner is not a foreign key.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::db::{parse_time, stored_now, time_text};
use crate::{AccessDb, AccessError};

/// The most searches one person keeps.
pub const MAX_SAVED_SEARCHES: usize = 200;
/// The longest name, in characters.
pub const MAX_SEARCH_NAME_CHARS: usize = 100;
/// The longest query kept, in bytes: the store's own limit on a query's length.
pub const MAX_SAVED_QUERY_BYTES: usize = 16 * 1024;
/// The longest `from`, `to` or column list kept, in bytes.
pub const MAX_SAVED_PARAM_BYTES: usize = 2048;

/// What a saved search holds: the search page's parameters, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SearchParams {
    pub q: String,
    pub from: String,
    pub to: String,
    /// The extra columns, comma-separated as the page's `columns` parameter.
    pub columns: String,
}

/// A saved search as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedSearch {
    pub id: i64,
    pub owner: String,
    pub name: String,
    pub params: SearchParams,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// Checks a saved search's name: 1 to [`MAX_SEARCH_NAME_CHARS`] characters after trimming,
/// none of them a control character (a name is shown on pages and in the audit log).
/// Returns the trimmed name.
pub fn check_search_name(name: &str) -> Result<&str, AccessError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_SEARCH_NAME_CHARS {
        return Err(AccessError::Invalid(format!(
            "a saved search's name needs 1 to {MAX_SEARCH_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AccessError::Invalid(
            "a saved search's name may not hold control characters".into(),
        ));
    }
    Ok(name)
}

fn check_params(params: &SearchParams) -> Result<(), AccessError> {
    if params.q.len() > MAX_SAVED_QUERY_BYTES {
        return Err(AccessError::Invalid(format!(
            "the query is {} bytes long; a saved search keeps at most {MAX_SAVED_QUERY_BYTES}",
            params.q.len()
        )));
    }
    for (what, text) in [
        ("from", &params.from),
        ("to", &params.to),
        ("columns", &params.columns),
    ] {
        if text.len() > MAX_SAVED_PARAM_BYTES {
            return Err(AccessError::Invalid(format!(
                "`{what}` is {} bytes long; a saved search keeps at most {MAX_SAVED_PARAM_BYTES}",
                text.len()
            )));
        }
    }
    Ok(())
}

const COLUMNS: &str = "id, owner, name, q, time_from, time_to, columns, created, updated";

type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Row::try_from(row)
}

fn from_row(
    (id, owner, name, q, from, to, columns, created, updated): Row,
) -> Result<SavedSearch, AccessError> {
    Ok(SavedSearch {
        id,
        owner,
        name,
        params: SearchParams {
            q,
            from,
            to,
            columns,
        },
        created: parse_time("the saved_searches table", &created)?,
        updated: parse_time("the saved_searches table", &updated)?,
    })
}

impl AccessDb {
    /// Saves `params` under `name` for `owner`. A search of the same name (without case) is
    /// replaced, keeping its id and creation time; a new one is refused once the owner has
    /// [`MAX_SAVED_SEARCHES`].
    pub fn save_search(
        &self,
        owner: &str,
        name: &str,
        params: &SearchParams,
    ) -> Result<SavedSearch, AccessError> {
        let name = check_search_name(name)?;
        check_params(params)?;
        if owner.is_empty() {
            return Err(AccessError::Invalid("a saved search needs an owner".into()));
        }
        let now = time_text(stored_now());
        let mut conn = self.lock();
        let tx = self.write_transaction(&mut conn)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM saved_searches WHERE owner = ?1 AND name = ?2",
                params![owner, name],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.err())?;
        let id = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE saved_searches SET name = ?2, q = ?3, time_from = ?4, time_to = ?5,
                     columns = ?6, updated = ?7 WHERE id = ?1",
                    params![
                        id,
                        name,
                        params.q,
                        params.from,
                        params.to,
                        params.columns,
                        now
                    ],
                )
                .map_err(self.err())?;
                id
            }
            None => {
                let held: i64 = tx
                    .query_row(
                        "SELECT count(*) FROM saved_searches WHERE owner = ?1",
                        params![owner],
                        |row| row.get(0),
                    )
                    .map_err(self.err())?;
                if held >= MAX_SAVED_SEARCHES as i64 {
                    return Err(AccessError::Invalid(format!(
                        "you have {held} saved searches, the most one person keeps; delete one first"
                    )));
                }
                tx.execute(
                    "INSERT INTO saved_searches (owner, name, q, time_from, time_to, columns, created, updated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                    params![owner, name, params.q, params.from, params.to, params.columns, now],
                )
                .map_err(self.err())?;
                tx.last_insert_rowid()
            }
        };
        let saved = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM saved_searches WHERE id = ?1"),
                params![id],
                read_row,
            )
            .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        from_row(saved)
    }

    /// `owner`'s saved searches, by name.
    pub fn saved_searches(&self, owner: &str) -> Result<Vec<SavedSearch>, AccessError> {
        let conn = self.lock();
        let mut query = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM saved_searches WHERE owner = ?1 ORDER BY name, id"
            ))
            .map_err(self.err())?;
        let rows = query
            .query_map(params![owner], read_row)
            .map_err(self.err())?;
        let mut searches = Vec::new();
        for row in rows {
            searches.push(from_row(row.map_err(self.err())?)?);
        }
        Ok(searches)
    }

    /// Deletes `owner`'s saved search `id`, giving what was deleted. Another owner's search
    /// is as absent as one that does not exist: `None` either way.
    pub fn delete_saved_search(
        &self,
        owner: &str,
        id: i64,
    ) -> Result<Option<SavedSearch>, AccessError> {
        let mut conn = self.lock();
        let tx = self.write_transaction(&mut conn)?;
        let found = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM saved_searches WHERE id = ?1 AND owner = ?2"),
                params![id, owner],
                read_row,
            )
            .optional()
            .map_err(self.err())?;
        if found.is_some() {
            tx.execute(
                "DELETE FROM saved_searches WHERE id = ?1 AND owner = ?2",
                params![id, owner],
            )
            .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        found.map(from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::temp_db;

    fn params(q: &str) -> SearchParams {
        SearchParams {
            q: q.into(),
            from: "now-24h".into(),
            to: String::new(),
            columns: "eventName,awsRegion".into(),
        }
    }

    #[test]
    fn each_owner_sees_and_deletes_only_their_own() {
        let (_dir, db) = temp_db();
        let alice = db
            .save_search("alice", "stopped trails", &params("eventName:StopLogging"))
            .unwrap();
        let bob = db
            .save_search("bob", "stopped trails", &params("bob's own"))
            .unwrap();
        assert_eq!(alice.params, params("eventName:StopLogging"));
        assert_eq!(db.saved_searches("alice").unwrap(), vec![alice.clone()]);
        // Owners compare without case, as user names do.
        assert_eq!(db.saved_searches("ALICE").unwrap(), vec![alice.clone()]);
        assert_eq!(db.saved_searches("bob").unwrap(), vec![bob.clone()]);
        assert!(db.saved_searches("carol").unwrap().is_empty());

        assert_eq!(db.delete_saved_search("bob", alice.id).unwrap(), None);
        assert_eq!(db.saved_searches("alice").unwrap(), vec![alice.clone()]);
        assert_eq!(
            db.delete_saved_search("alice", alice.id).unwrap(),
            Some(alice.clone())
        );
        assert!(db.saved_searches("alice").unwrap().is_empty());
        assert_eq!(db.delete_saved_search("alice", alice.id).unwrap(), None);
        assert_eq!(db.saved_searches("bob").unwrap(), vec![bob]);
    }

    #[test]
    fn saving_a_name_again_replaces_it_and_the_cap_counts_only_new_names() {
        let (_dir, db) = temp_db();
        let first = db.save_search("alice", "Mine", &params("a")).unwrap();
        let again = db.save_search("alice", " mine ", &params("b")).unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(again.created, first.created);
        assert_eq!(again.name, "mine");
        assert_eq!(again.params.q, "b");
        assert_eq!(db.saved_searches("alice").unwrap().len(), 1);

        for n in 1..MAX_SAVED_SEARCHES {
            db.save_search("alice", &format!("search {n}"), &params("x"))
                .unwrap();
        }
        let refused = db
            .save_search("alice", "one too many", &params("x"))
            .unwrap_err();
        assert!(matches!(refused, AccessError::Invalid(_)), "{refused}");
        assert!(
            refused.to_string().contains("delete one first"),
            "{refused}"
        );
        // Replacing one still works at the cap, and others are not held to alice's.
        db.save_search("alice", "search 1", &params("y")).unwrap();
        db.save_search("bob", "one too many", &params("x")).unwrap();
        assert_eq!(
            db.saved_searches("alice").unwrap().len(),
            MAX_SAVED_SEARCHES
        );
    }

    #[test]
    fn names_and_parameters_are_bounded() {
        let (_dir, db) = temp_db();
        let long = "n".repeat(MAX_SEARCH_NAME_CHARS + 1);
        for bad in ["", "   ", "two\nlines", "bell\u{7}", long.as_str()] {
            let refused = db.save_search("alice", bad, &params("x")).unwrap_err();
            assert!(matches!(refused, AccessError::Invalid(_)), "{bad:?}");
        }
        let exact = "é".repeat(MAX_SEARCH_NAME_CHARS);
        db.save_search("alice", &exact, &params("x")).unwrap();
        let huge = SearchParams {
            q: "q".repeat(MAX_SAVED_QUERY_BYTES + 1),
            ..params("")
        };
        assert!(db.save_search("alice", "huge", &huge).is_err());
        let wide = SearchParams {
            columns: "c".repeat(MAX_SAVED_PARAM_BYTES + 1),
            ..params("x")
        };
        assert!(db.save_search("alice", "wide", &wide).is_err());
        assert!(db.save_search("", "nobody's", &params("x")).is_err());
        assert_eq!(db.saved_searches("alice").unwrap().len(), 1);
    }
}
