//! The receivers against real servers on loopback, started by each test: HTTP receivers
//! (axum) for the webhook, Slack and PagerDuty, and Python's aiosmtpd for email.

mod common;
mod email;
mod guard;
mod pagerduty;
mod webhook;
