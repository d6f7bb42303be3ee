//! `vigil rules backtest RULE --from --to`: runs a rule over the stored events of a running
//! Vigil, through its API (`POST /api/v1/rules/backtest`, then `GET` the job until it is
//! done), with progress on stderr and the results as a table or JSON on stdout.
//!
//! RULE is a rule file's path (sent as its text, so a rule can be tried before it is loaded)
//! or, when no such file exists, a loaded rule's id. What the server sends back is
//! attacker-written (event values, rule titles): the table prints it without control
//! characters, so no value can move the cursor or recolour the terminal.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

/// The largest rule file sent, as the server takes.
const MAX_RULE_BYTES: u64 = 256 * 1024;

/// How often the job is asked for its progress.
const POLL_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// A rule file (YAML) to run, or the id of a rule the server has loaded.
    pub rule: String,
    /// Events at or after this time: RFC 3339, a date, or `now-7d`.
    #[arg(long, default_value = "now-24h")]
    pub from: String,
    /// Events before this time.
    #[arg(long, default_value = "now")]
    pub to: String,
    /// The running Vigil.
    #[arg(long, alias = "url", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An API token allowed to backtest (`triage` or `admin` scope).
    #[arg(long, env = "VIGIL_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the job's JSON (as `GET /api/v1/rules/backtest/{job}` gives it) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Give up waiting after this many seconds (the job keeps running on the server).
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
}

pub fn run(args: BacktestArgs) -> Result<ExitCode> {
    let Some(token) = args.token.as_deref() else {
        bail!("give an API token with --token or VIGIL_API_TOKEN");
    };
    let mut body = json!({ "from": args.from, "to": args.to });
    let path = Path::new(&args.rule);
    if path.is_file() {
        let size = path.metadata()?.len();
        if size > MAX_RULE_BYTES {
            bail!("{}: over {MAX_RULE_BYTES} bytes", path.display());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        body["yaml"] = Value::String(text);
    } else {
        body["rule"] = Value::String(args.rule.clone());
    }
    let base = args.server.trim_end_matches('/');
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let start_url = format!("{base}/api/v1/rules/backtest");
    let (status, started) = call(client.post(&start_url).bearer_auth(token).json(&body))
        .with_context(|| format!("cannot reach {start_url}"))?;
    if !status.is_success() {
        let mut message = format!(
            "{start_url} answered {status}: {}",
            clean(started["error"].as_str().unwrap_or("no message"))
        );
        for problem in started["problems"].as_array().into_iter().flatten() {
            let line = problem["line"].as_u64().unwrap_or(0);
            let reason = clean(problem["reason"].as_str().unwrap_or(""));
            message.push_str(&format!("\n  {}:{line}: {reason}", args.rule));
        }
        bail!(message);
    }
    let Some(job) = started["job"].as_str() else {
        bail!("{start_url} gave no job id");
    };
    let job_url = format!("{base}/api/v1/rules/backtest/{job}");
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut said = None;
    let view = loop {
        let (status, view) = call(client.get(&job_url).bearer_auth(token))
            .with_context(|| format!("cannot reach {job_url}"))?;
        if !status.is_success() {
            bail!("{job_url} answered {status}");
        }
        if view["state"] != "running" {
            break view;
        }
        let progress = (
            view["events_scanned"].as_u64(),
            view["estimated_total"].as_u64(),
        );
        if said != Some(progress) {
            eprintln!(
                "backtest {job}: {} of about {} events read",
                progress.0.unwrap_or(0),
                progress.1.unwrap_or(0)
            );
            said = Some(progress);
        }
        if Instant::now() > deadline {
            bail!("gave up waiting; the job goes on at {job_url}");
        }
        std::thread::sleep(POLL_EVERY);
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        write_report(&mut out, &view)?;
    }
    if view["state"] == "done" {
        eprintln!("backtest {job}: done");
        Ok(ExitCode::SUCCESS)
    } else {
        let error = &view["error"];
        eprintln!(
            "backtest {job} failed: {}",
            clean(error["kind"].as_str().unwrap_or("unknown"))
        );
        for problem in error["problems"].as_array().into_iter().flatten() {
            eprintln!(
                "  {}:{}: {}",
                args.rule,
                problem["line"].as_u64().unwrap_or(0),
                clean(problem["reason"].as_str().unwrap_or(""))
            );
        }
        Ok(ExitCode::FAILURE)
    }
}

fn call(request: reqwest::blocking::RequestBuilder) -> Result<(reqwest::StatusCode, Value)> {
    let response = request.send()?;
    let status = response.status();
    let body = response.json::<Value>().unwrap_or(Value::Null);
    Ok((status, body))
}

/// Server text for a terminal: control characters (escape sequences, newlines) become spaces.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("?")
}

fn write_report(out: &mut impl Write, view: &Value) -> Result<()> {
    let report = &view["report"];
    let rules: Vec<String> = view["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(clean)
        .collect();
    writeln!(out, "rules run: {}", rules.join(", "))?;
    let limit_note = if report["scan_truncated"] == true {
        " (stopped at the limit; narrow the range)"
    } else {
        ""
    };
    writeln!(
        out,
        "events read: {} of {}{limit_note}",
        report["events_scanned"], view["estimated_total"]
    )?;
    writeln!(out, "events matched: {}", report["matched_events"])?;
    writeln!(
        out,
        "alerts it would have raised: {}",
        report["alerts_total"]
    )?;
    writeln!(out, "took: {} ms", report["elapsed_ms"])?;
    let alerts = report["alerts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !alerts.is_empty() {
        writeln!(out, "\nALERTS")?;
        for alert in alerts {
            let group: Vec<String> = alert["group"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{}={}", clean(k), clean(v.as_str().unwrap_or(""))))
                .collect();
            writeln!(
                out,
                "{}  {:<8}  {}  {}  events: {}",
                text(alert, "time"),
                text(alert, "level"),
                clean(text(alert, "rule_id")),
                group.join(" "),
                alert["event_ids"].as_array().map_or(0, Vec::len)
            )?;
        }
        if report["alerts_truncated"] == true {
            writeln!(out, "-- only the first {} shown", alerts.len())?;
        }
    }
    let matches = report["matches"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !matches.is_empty() {
        writeln!(out, "\nMATCHED EVENTS")?;
        for matched in matches {
            let fields: Vec<String> = matched["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|pair| {
                    format!(
                        "{}={}",
                        clean(pair[0].as_str().unwrap_or("")),
                        clean(pair[1].as_str().unwrap_or(""))
                    )
                })
                .collect();
            writeln!(
                out,
                "{}  {:<16}  {}  {}",
                text(matched, "time"),
                clean(text(matched, "source_kind")),
                text(matched, "id"),
                fields.join("  ")
            )?;
        }
        if report["matches_truncated"] == true {
            writeln!(out, "-- only the first {} shown", matches.len())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        assert_eq!(clean("a\x1b[31mred\nb\r"), "a [31mred b ");
        let view = json!({
            "rules": ["r\x1b]0;title\x07"],
            "estimated_total": 2,
            "report": {
                "events_scanned": 2, "matched_events": 1, "alerts_total": 0, "elapsed_ms": 3,
                "matches": [{"time": "t", "source_kind": "k", "id": "i",
                             "fields": [["event", "x\x1b[2J"]]}],
            }
        });
        let mut out = Vec::new();
        write_report(&mut out, &view).unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert!(!printed.contains('\x1b'), "{printed:?}");
        assert!(printed.contains("event=x [2J"), "{printed}");
        assert!(printed.contains("events read: 2 of 2"), "{printed}");
    }
}
