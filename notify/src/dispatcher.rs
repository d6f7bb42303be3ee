//! Alerts in, notifications out: the routing tree, silences and inhibition decide where an
//! alert goes, and its group decides when it is told. Everything is in notify.sqlite, so a
//! restart keeps the groups and re-emits the same notification ids.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior};
use vigil_event::{Alert, AlertId};

use crate::db::DbError;
use crate::grouping::{self, Judge};
use crate::routing::{Matchers, RouteConfig, RouteError, RouteTree};
use crate::silences::{self, InhibitConfig, InhibitRule};
use crate::{AlertState, AlertStates, Notification};

/// Why the dispatcher could not start or do its work.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("notify database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Config(#[from] RouteError),
    #[error(transparent)]
    Silences(#[from] silences::SilenceError),
}

/// What became of one accepted alert, for the stage's metrics
/// (`vigil_notifications_grouped_total`, `_silenced_total`, `_inhibited_total`, by route).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The routes whose group took the alert.
    pub grouped: Vec<String>,
    /// The routes a silence kept it from.
    pub silenced: Vec<String>,
    /// The routes an inhibition rule kept it from.
    pub inhibited: Vec<String>,
    /// The routes it matched that name no receiver (such as the root of a configuration
    /// with only legacy webhooks, for an alert none of them wants).
    pub unrouted: Vec<String>,
}

/// Routes, groups, silences and inhibits alerts; durable in notify.sqlite. One connection,
/// behind a mutex: accept and due are short transactions.
pub struct Dispatcher {
    conn: Mutex<Connection>,
    routes: RouteTree,
    inhibit: Vec<InhibitRule>,
    /// When `due` last asked triage about every told group (ms), so that it asks every
    /// [`STATE_SWEEP_MS`], not on every tick.
    last_sweep_ms: Mutex<i64>,
}

/// How often acknowledgements and closures are looked for in groups with nothing due.
const STATE_SWEEP_MS: i64 = 5_000;

impl Dispatcher {
    /// Opens (creating) the groups and silences in the database at `path`, with the routing
    /// tree and inhibition rules of the configuration.
    pub fn open(
        path: &Path,
        route: &RouteConfig,
        inhibit: &[InhibitConfig],
    ) -> Result<Dispatcher, DispatchError> {
        let routes = RouteTree::new(route)?;
        let inhibit = InhibitRule::compile(inhibit)?;
        let conn = crate::db::open(path)?;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {} {} COMMIT;",
            grouping::SCHEMA,
            silences::SCHEMA
        ))?;
        Ok(Dispatcher {
            conn: Mutex::new(conn),
            routes,
            inhibit,
            last_sweep_ms: Mutex::new(i64::MIN),
        })
    }

    /// The checked routing tree (its receiver names, its routes' settings).
    pub fn routes(&self) -> &RouteTree {
        &self.routes
    }

    /// Takes one alert into its groups. Durable when it returns: the caller may then commit
    /// the alert's offset. Taking the same alert twice changes nothing.
    pub fn accept(&self, alert: &Alert, now: DateTime<Utc>) -> Result<Accepted, DispatchError> {
        let mut accepted = Accepted::default();
        let routes = self.routes.routes_for(alert);
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let silenced = silences::active(&tx, now)?
            .iter()
            .any(|matchers| matchers.matches(alert));
        let inhibited = !silenced && self.inhibited(&tx, alert)?;
        for route in routes {
            let name = route.name.clone();
            if route.receivers.is_empty() {
                accepted.unrouted.push(name);
            } else if silenced {
                accepted.silenced.push(name);
            } else if inhibited {
                accepted.inhibited.push(name);
            } else {
                grouping::add(&tx, route, alert, now)?;
                accepted.grouped.push(name);
            }
        }
        tx.commit()?;
        Ok(accepted)
    }

    /// Whether a live group holds an alert that inhibits this one.
    fn inhibited(&self, conn: &Connection, alert: &Alert) -> rusqlite::Result<bool> {
        let rules: Vec<&InhibitRule> = self.inhibit.iter().filter(|r| r.targets(alert)).collect();
        if rules.is_empty() {
            return Ok(false);
        }
        let live = grouping::live_alerts(conn)?;
        Ok(rules
            .iter()
            .any(|rule| live.iter().any(|source| rule.inhibits(source, alert))))
    }

    /// The notifications due at `now`. The same ids come back until [`Dispatcher::emitted`]
    /// is called with them, also after a restart.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        states: &dyn AlertStates,
    ) -> Result<Vec<Notification>, DispatchError> {
        let mut conn = self.lock();
        let sweep = {
            let mut last = self
                .last_sweep_ms
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now_ms = now.timestamp_millis();
            let sweep = now_ms.saturating_sub(*last) >= STATE_SWEEP_MS || now_ms < *last;
            if sweep {
                *last = now_ms;
            }
            sweep
        };
        // Nothing else changes the groups meanwhile: accept() waits for this connection.
        let questions = grouping::triage_questions(&conn, now, sweep)?;
        let known = if questions.is_empty() {
            BTreeMap::new()
        } else {
            states.states(&questions)
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let judge = DueJudge {
            known,
            silences: silences::active(&tx, now)?,
            sweep,
        };
        let due = grouping::due_groups(&tx, now, &judge)?;
        tx.commit()?;
        Ok(due)
    }

    /// Records that these notifications are durably in the outbox: their groups move on.
    /// Unknown or already recorded ids are ignored.
    pub fn emitted(&self, ids: &[String]) -> Result<(), DispatchError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        grouping::confirm(&tx, ids)?;
        tx.commit()?;
        Ok(())
    }

    /// The groups that are not over, by route, for `/health`-like summaries and tests.
    pub fn live_groups(&self) -> Result<BTreeMap<String, u64>, DispatchError> {
        let conn = self.lock();
        let mut statement = conn
            .prepare("SELECT route, COUNT(*) FROM groups WHERE state != 'ended' GROUP BY route")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (route, count) = row?;
            out.insert(route, u64::try_from(count).unwrap_or(0));
        }
        Ok(out)
    }

    /// Every receiver name the routing tree uses.
    pub fn receiver_names(&self) -> BTreeSet<String> {
        self.routes.receiver_names()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct DueJudge {
    /// Triage's answer for the ids `triage_questions` named.
    known: BTreeMap<AlertId, AlertState>,
    silences: Vec<Matchers>,
    sweep: bool,
}

impl Judge for DueJudge {
    fn states(&self, ids: &[AlertId]) -> BTreeMap<AlertId, AlertState> {
        ids.iter()
            .filter_map(|id| self.known.get(id).map(|state| (*id, *state)))
            .collect()
    }

    fn silenced(&self, alert: &Alert) -> bool {
        self.silences.iter().any(|m| m.matches(alert))
    }

    fn sweep_states(&self) -> bool {
        self.sweep
    }
}

#[cfg(test)]
#[path = "dispatcher_tests.rs"]
mod tests;
