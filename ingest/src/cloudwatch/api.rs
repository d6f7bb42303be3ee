//! Calling the CloudWatch Logs API: the client, and retrying what is transient.

use std::future::Future;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tokio::sync::watch;
use vigil_retry::{sleep_or_stop, Backoff, BackoffPolicy};

use super::CloudWatchConfig;
use crate::IngestError;

/// Why one log group could not be read this time; the next poll tries again.
#[derive(Debug, thiserror::Error)]
pub(super) enum PollError {
    #[error("shutting down")]
    Stopped,
    #[error("{0}")]
    Api(String),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// Our own attempts per call, each after the SDK's own retries gave up.
const MAX_ATTEMPTS: u32 = 6;
const BACKOFF: BackoffPolicy =
    BackoffPolicy::new(Duration::from_millis(250), Duration::from_secs(30));

/// A client for the region and endpoint of `config`, with the SDK's standard retries.
pub(super) async fn client(config: &CloudWatchConfig) -> aws_sdk_cloudwatchlogs::Client {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3));
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &config.endpoint_url {
        loader = loader.endpoint_url(endpoint.clone());
    }
    aws_sdk_cloudwatchlogs::Client::new(&loader.load().await)
}

/// Calls the API, retrying transient errors with backoff and jitter.
pub(super) async fn with_backoff<T, E, F, Fut>(
    what: &str,
    shutdown: &mut watch::Receiver<bool>,
    mut call: F,
) -> Result<T, PollError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut backoff = Backoff::new(BACKOFF);
    loop {
        if *shutdown.borrow() {
            return Err(PollError::Stopped);
        }
        let error = match call().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let delay = backoff.next_delay();
        let attempt = backoff.failures();
        if !is_transient(&error) || attempt >= MAX_ATTEMPTS {
            return Err(PollError::Api(DisplayErrorContext(&error).to_string()));
        }
        tracing::info!(%what, attempt, ?delay, error = %DisplayErrorContext(&error), "CloudWatch call failed; backing off");
        metrics::counter!("vigil_cloudwatch_retries_total", "source" => crate::source_label(what))
            .increment(1);
        if !sleep_or_stop(delay, shutdown).await {
            return Err(PollError::Stopped);
        }
    }
}

fn is_transient<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(context) => {
            matches!(
                context.err().code(),
                Some(
                    "ThrottlingException"
                        | "ServiceUnavailableException"
                        | "LimitExceededException"
                        | "RequestLimitExceeded"
                        | "TooManyRequestsException"
                )
            ) || context.raw().status().is_server_error()
                || context.raw().status().as_u16() == 429
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn service_error(
        code: &str,
        status: u16,
    ) -> SdkError<aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsError> {
        use aws_sdk_cloudwatchlogs::error::ErrorMetadata;
        use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsError;
        let raw = aws_sdk_cloudwatchlogs::config::http::HttpResponse::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        let error = FilterLogEventsError::generic(ErrorMetadata::builder().code(code).build());
        SdkError::service_error(error, raw)
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        assert!(is_transient(&service_error("ThrottlingException", 400)));
        assert!(is_transient(&service_error(
            "ServiceUnavailableException",
            503
        )));
        assert!(is_transient(&service_error("InternalFailure", 500)));
        assert!(!is_transient(&service_error(
            "ResourceNotFoundException",
            400
        )));
        assert!(!is_transient(&service_error("AccessDeniedException", 400)));
    }

    #[tokio::test]
    async fn throttled_calls_are_retried_and_others_are_not() {
        let (_stop, mut shutdown) = watch::channel(false);
        let mut calls = 0;
        let result = with_backoff("g", &mut shutdown, || {
            calls += 1;
            let outcome = if calls < 3 {
                Err(service_error("ThrottlingException", 400))
            } else {
                Ok(calls)
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result.unwrap(), 3);

        let mut calls = 0;
        let result: Result<(), _> = with_backoff("g", &mut shutdown, || {
            calls += 1;
            async { Err(service_error("ResourceNotFoundException", 400)) }
        })
        .await;
        assert!(matches!(result, Err(PollError::Api(_))));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn shutdown_interrupts_a_backoff() {
        let (stop, mut shutdown) = watch::channel(false);
        let started = Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stop.send(true);
            stop
        });
        let result: Result<(), _> = with_backoff("g", &mut shutdown, || async {
            Err(service_error("ThrottlingException", 400))
        })
        .await;
        assert!(matches!(result, Err(PollError::Stopped)));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(stopper.await);
    }
}
