//! AWS CloudWatch Logs: recognising what each log group holds, and the push path (Firehose
//! HTTP endpoint deliveries of subscription data).

pub mod firehose;
mod recognise;

pub use recognise::{LogGroupOverride, LogGroupRecogniser};
