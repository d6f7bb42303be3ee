//! Vigil's identity and access: who may use it, and a record of what each one did.
//!
//! - [`policy`]: roles, token scopes, and the grant table between them and permissions;
//! - [`routes`]: the one table of every route and what it needs;
//! - [`AccessDb`]: users (argon2id password hashes), API tokens (stored hashed),
//!   server-side sessions and the append-only audit log, in one SQLite database;
//! - [`throttle`]: sign-in and bearer failures counted per account and per address, with
//!   backoff and a temporary lockout.
//!
//! Nothing here speaks HTTP; the UI crate's middleware asks this crate who a request is and
//! whether the route allows it.

pub mod audit;
pub mod config;
mod db;
mod error;
pub mod password;
pub mod policy;
pub mod routes;
pub mod saved_searches;
mod secret;
mod sessions;
pub mod throttle;
mod tokens;
mod users;

pub use audit::{AuditEntry, AuditFilter, AuditRecord, Outcome};
pub use config::{AccessConfig, ProxyConfig, ThrottleConfig};
pub use db::{AccessDb, ACCESS_DB};
pub use error::AccessError;
pub use policy::{Permission, Principal, Role, Scope, Scopes, Via, GRANTS};
pub use saved_searches::{SavedSearch, SearchParams};
pub use secret::Secret;
pub use sessions::{NewSession, Session, SessionLimits};
pub use tokens::{NewToken, TokenInfo};
pub use users::{check_name, User};
