//! Vigil's pipeline as a library: the stage loops that consume the bus, process a batch and
//! commit its offsets only once their output is durable; the one HTTP listener; the
//! configuration composed of each component's own section; and the start-up wiring that
//! checks it all before anything starts, then runs the stages a process's roles name. The
//! `vigil` binary is the command line over this crate.

pub mod audit_forward;
pub mod backtest;
pub mod config;
mod demo;
pub mod error;
mod first_admin;
pub mod metric_catalogue;
pub mod rule_runtime;
pub mod rules;
pub mod run;
pub mod server;
pub mod stages;
pub mod tls;
mod token;

pub use error::RunError;
