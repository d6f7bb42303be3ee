//! `vigil healthcheck`: asks a running Vigil's `/healthz` whether it is up, for container
//! runtimes whose image has no shell or curl (the distroless image in deploy/docker/).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The health endpoint to ask.
    #[arg(
        long,
        env = "VIGIL_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:8080/healthz"
    )]
    pub url: String,
    /// Give up after this many milliseconds (connecting and reading together).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// Exits 0 when `url` answers 200 within the timeout, and 1 otherwise, saying why on stderr.
pub fn run(args: HealthcheckArgs) -> ExitCode {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let answer = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .and_then(|client| client.get(&args.url).send());
    match answer {
        Ok(response) if response.status() == reqwest::StatusCode::OK => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("unhealthy: {} answered {}", args.url, response.status());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("unhealthy: cannot reach {}: {error}", args.url);
            ExitCode::FAILURE
        }
    }
}
