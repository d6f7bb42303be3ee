//! AWS CloudWatch Logs: recognising what each log group holds, the push path (Firehose HTTP
//! endpoint deliveries of subscription data) and the pull path (polling `FilterLogEvents`).

pub mod firehose;
pub mod pull;
mod recognise;

pub use pull::{CloudWatchConfig, CloudWatchError, CloudWatchSource};
pub use recognise::{LogGroupOverride, LogGroupRecogniser};
