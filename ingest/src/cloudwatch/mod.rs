//! AWS CloudWatch Logs: recognising what each log group holds, the push path (Firehose HTTP
//! endpoint deliveries of subscription data) and the pull path (polling `FilterLogEvents`).

mod api;
mod checkpoints;
mod config;
pub mod firehose;
pub mod pull;
mod recognise;
mod window;

pub use config::{CloudWatchConfig, CloudWatchError};
pub use pull::CloudWatchSource;
pub use recognise::{log_group_overrides, LogGroupOverride, LogGroupRecogniser, UnknownPreset};
