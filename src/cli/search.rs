//! `vigil search`: the query language from the command line, against a data directory or a
//! running server.
//!
//! Against a directory the store is opened read-only: no index writer, so no directory lock,
//! and it can run beside a live `vigil run` (tantivy lets readers in other processes open an
//! index while it is written, and SQLite's WAL lets them read the alert state). Against a
//! server it calls `GET /api/v1/search` with the API token.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args, ValueEnum};
use serde_json::Value;
use vigil_store::{parse_time, SearchRequest, Store, StoreError, StoreOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per event: time, source, id and the start of the record.
    Table,
    /// The API's JSON reply: total, hits, next_cursor.
    Json,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query (see store/QUERY.md); empty means every event.
    #[arg(default_value = "")]
    pub query: String,
    /// Only events at or after this time: RFC 3339, a date, `now` or `now-15m`.
    #[arg(long)]
    pub from: Option<String>,
    /// Only events before this time.
    #[arg(long)]
    pub to: Option<String>,
    /// The most events to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Continue after the page that returned this cursor.
    #[arg(long)]
    pub cursor: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Read the indices in this data directory [default: ./vigil-data].
    #[arg(long, conflicts_with = "server")]
    pub data_dir: Option<PathBuf>,
    /// Ask a running Vigil instead, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: Option<String>,
    /// The API token for --server.
    #[arg(long, env = "VIGIL_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The longest record text a table row shows.
const PREVIEW_CHARS: usize = 120;

pub fn run(args: SearchArgs) -> Result<()> {
    let reply = match &args.server {
        Some(server) => search_server(server, &args)?,
        None => search_dir(&args)?,
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&reply)?)?,
        Format::Table => write_table(&mut out, &reply)?,
    }
    Ok(())
}

fn search_dir(args: &SearchArgs) -> Result<Value> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("vigil-data"));
    let index_dir = data_dir.join("index");
    if !index_dir.join("events").is_dir() {
        bail!(
            "no index in {}; pass --data-dir, or --server to ask a running Vigil",
            data_dir.display()
        );
    }
    let store = Store::open_with(
        &index_dir,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .with_context(|| format!("cannot open the index in {}", index_dir.display()))?;
    let now = Utc::now();
    let time = |name: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| parse_time(t, now))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--{name}: {}", user_message(e)))
    };
    let request = SearchRequest {
        query: args.query.clone(),
        from: time("from", &args.from)?,
        to: time("to", &args.to)?,
        limit: args.limit.max(1),
        cursor: args.cursor.clone(),
        visibility: Default::default(),
    };
    let results = store
        .search(&request)
        .map_err(|e| anyhow::anyhow!(user_message(e)))?;
    // Written out and read back with the record parser: hits hold records as they came, with
    // what serde_json's Value refuses (1e400, "\ud800"), and one such hit must not fail the
    // whole search.
    let text = serde_json::to_string(&results)?;
    Ok(Value::Object(vigil_event::json::parse_object(&text)?))
}

fn user_message(error: StoreError) -> String {
    match error {
        StoreError::Query { message, .. } => message,
        other => other.to_string(),
    }
}

fn search_server(server: &str, args: &SearchArgs) -> Result<Value> {
    let Some(token) = &args.token else {
        bail!("--server needs --token or VIGIL_API_TOKEN");
    };
    let url = format!("{}/api/v1/search", server.trim_end_matches('/'));
    let mut query = vec![
        ("q", args.query.clone()),
        ("limit", args.limit.max(1).to_string()),
    ];
    for (name, value) in [
        ("from", &args.from),
        ("to", &args.to),
        ("cursor", &args.cursor),
    ] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    let response = reqwest::blocking::Client::new()
        .get(&url)
        .bearer_auth(token)
        .query(&query)
        .send()
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    // Read with the record parser, as the hits' records may hold what serde_json refuses.
    let body = response
        .text()
        .ok()
        .and_then(|text| vigil_event::json::parse_object(&text).ok())
        .map(Value::Object)
        .with_context(|| format!("{url} answered {status} with something other than JSON"))?;
    if !status.is_success() {
        let message = body["error"].as_str().unwrap_or("no message");
        bail!("{url} answered {status}: {message}");
    }
    Ok(body)
}

fn write_table(out: &mut impl Write, reply: &Value) -> Result<()> {
    let hits = reply["hits"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for hit in hits {
        let record = match &hit["record"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let preview: String = record
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(PREVIEW_CHARS)
            .collect();
        writeln!(
            out,
            "{}  {:<16}  {}  {}",
            hit["time"].as_str().unwrap_or("?"),
            hit["source"]["kind"].as_str().unwrap_or("?"),
            hit["id"].as_str().map_or("?", |id| &id[..id.len().min(12)]),
            preview
        )?;
    }
    let total = reply["total"].as_u64().unwrap_or(0);
    let bound = if reply["total_is_lower_bound"].as_bool() == Some(true) {
        "at least "
    } else {
        ""
    };
    writeln!(out, "-- {} shown of {bound}{total}", hits.len())?;
    if let Some(cursor) = reply["next_cursor"].as_str() {
        writeln!(out, "-- more with --cursor {cursor}")?;
    }
    Ok(())
}
