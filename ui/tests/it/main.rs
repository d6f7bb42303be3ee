//! The web UI's integration tests, in one test binary: the JSON API and the HTML pages,
//! each against a real store in a temporary directory.

mod alert_page;
mod alerts_api;
mod alerts_page;
mod attack_page;
mod backtest_page;
mod gate;
mod health_page;
mod notifications_page;
mod pages;
mod playbook_runs;
mod rules_page;
mod saved_and_live;
mod search_page;
mod sign_in_and_audit;
mod silences;
