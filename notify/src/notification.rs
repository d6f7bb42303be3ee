//! What the dispatcher hands the outbox and the outbox hands a receiver: one notification
//! about one alert group, under an id that stays the same across retries and restarts.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_event::{Alert, AlertId};

use crate::DeliveryError;

/// What happened to the group this notification is about. PagerDuty maps these onto
/// `trigger`, `acknowledge` and `resolve`; the other receivers say it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// New alerts in the group, or the group's repeat: someone should look.
    Firing,
    /// Every alert of the group has been acknowledged in Vigil.
    Acknowledged,
    /// Every alert of the group has been closed in Vigil.
    Resolved,
}

/// One notification to one receiver about one alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable across retries, restarts and re-emission after a crash: the outbox keeps one
    /// row per id, and receivers get it as their idempotency key.
    pub id: String,
    pub receiver: String,
    /// The group's identity (route and group-by values); PagerDuty's `dedup_key`.
    pub group_key: String,
    /// The group-by fields and the values this group is about.
    pub group: BTreeMap<String, String>,
    pub kind: NotificationKind,
    /// The group's alerts this notification carries, newest first and bounded; the rest are
    /// counted in `total_alerts`.
    pub alerts: Vec<Alert>,
    pub total_alerts: u64,
    /// Alerts new to the group since its last notification.
    pub new_alerts: u64,
    pub created: DateTime<Utc>,
}

/// A future a receiver returns; boxed so that receivers of every kind fit one list.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// A channel that takes notifications: a webhook, Slack, PagerDuty or email.
pub trait Receiver: Send + Sync {
    fn name(&self) -> &str;
    /// Delivers one notification. [`DeliveryError::Transient`] is retried by the outbox;
    /// [`DeliveryError::Rejected`] goes straight to the dead letters.
    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a>;
}

/// Where an alert stands in triage, as the dispatcher needs it to acknowledge and resolve
/// groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Acknowledged,
    Closed,
}

/// What triage says of alerts. The pipeline implements it over the store when the process
/// indexes; without it, groups only fire.
pub trait AlertStates: Send + Sync {
    /// The state of each id it knows; unknown ids are left out.
    fn states(&self, ids: &[AlertId]) -> BTreeMap<AlertId, AlertState>;
}
