//! The alert page's "Notifications" section: each notification that carried the alert, to
//! which receiver, of which kind, where it stands, after how many attempts and with what
//! last error. Dead letters link to `/notifications`, where they can be re-sent.

use std::sync::Arc;

use maud::{html, Markup};
use vigil_notify::{Delivery, DeliveryState, NotificationKind, Outbox};

/// What the section shows: `None` when this process delivers no notifications.
pub(crate) type Deliveries = Option<Result<Vec<Delivery>, ()>>;

/// The deliveries of `alert_id`, read off the async workers.
pub(crate) async fn load(outbox: Option<&Arc<Outbox>>, alert_id: &str) -> Deliveries {
    let outbox = outbox?.clone();
    let alert_id = alert_id.to_owned();
    let read = tokio::task::spawn_blocking(move || outbox.deliveries_for_alert(&alert_id)).await;
    Some(match read {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(error)) => {
            tracing::error!(%error, "reading an alert's deliveries failed");
            Err(())
        }
        Err(error) => {
            tracing::error!(%error, "reading an alert's deliveries stopped");
            Err(())
        }
    })
}

pub(crate) fn section(deliveries: &Deliveries) -> Markup {
    let Some(deliveries) = deliveries else {
        return html! {};
    };
    html! {
        section.deliveries {
            h2 { "Notifications" }
            @match deliveries {
                Err(()) => div.error { "Reading the notifications failed; the server log has the details." },
                Ok(rows) if rows.is_empty() => p.muted { "No notification has carried this alert (yet)." },
                Ok(rows) => table.notifications {
                    thead { tr {
                        th { "Receiver" } th { "Kind" } th { "State" } th { "Attempts" } th { "Last error" }
                    } }
                    tbody {
                        @for row in rows {
                            tr {
                                td { (row.receiver) }
                                td { (kind(row.kind)) }
                                td {
                                    span class={ "delivery delivery-" (row.state.as_str()) } { (row.state.as_str()) }
                                    @match row.state {
                                        DeliveryState::Sent => @if let Some(at) = row.sent_at { " " span.muted { (at.format("%Y-%m-%d %H:%M:%S")) } },
                                        DeliveryState::Pending => { " " span.muted { "next try " (row.next_attempt_at.format("%H:%M:%S")) } },
                                        DeliveryState::Dead => { " " a href="/notifications?state=dead" { "re-send…" } },
                                    }
                                }
                                td { (row.attempts) }
                                td.error-text { @if let Some(error) = &row.last_error { (error) } }
                            }
                        }
                    }
                },
            }
        }
    }
}

fn kind(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Firing => "firing",
        NotificationKind::Acknowledged => "acknowledged",
        NotificationKind::Resolved => "resolved",
    }
}
