//! Vigil end to end: each module runs the real `vigil` binary (and, where it needs them, a
//! Kafka broker, moto, an SMTP server or Chromium, which the modules start themselves).
//!
//! One test binary for the whole crate, so the workspace links one executable here instead
//! of one per file.

mod browser;
mod common;

mod access_matrix;
mod access_tokens;
mod adversarial;
mod audit_events;
mod backup;
mod cli;
mod cli_access;
mod cloudwatch;
mod demo_rules;
mod deploy_chart;
mod deploy_monitoring;
mod kafka;
mod kubernetes;
mod live_tail;
mod notify;
mod notify_groups;
mod notify_outbox;
mod pipeline;
mod playbooks;
mod rules_backtest;
mod rules_reload;
mod search_cli;
mod sessions;
mod ui_browser;
mod ui_console;
mod ui_xss;
