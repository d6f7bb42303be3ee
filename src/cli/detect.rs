//! `vigil detect`: run rules over a file of events and print what they raise, as NDJSON.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use serde::Serialize;
use vigil_detect::{Detector, Finding};
use vigil_event::{LogSource, MatchedField};
use vigil_ingest::parse_json_record;

use super::events::{line_id, line_of, LineReader};
use super::{parse_logsource, LoadArgs};
use crate::rules;

/// Longer lines are reported and skipped, as ingest rejects them, rather than held in memory.
const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// A rule directory or file; repeat for more. They load as one set, so correlations and
    /// filters may refer to rules in other directories.
    #[arg(long = "rules", value_name = "DIR", required = true)]
    pub rules: Vec<PathBuf>,
    /// The logsource of every event, such as `product=aws,service=cloudtrail`. Without it each
    /// line's source is recognised from its shape: a CloudTrail record, a Kubernetes audit
    /// event, a Flask app log record, an access log line, or other JSON (which has no
    /// logsource). With it, a JSON line is read as a record of the source Vigil has a preset
    /// for under exactly that logsource (its time fields), without looking at its shape.
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_logsource)]
    pub logsource: Option<LogSource>,
    #[command(flatten)]
    pub load: LoadArgs,
    /// NDJSON events or access log lines, one per line; `-` or nothing reads stdin.
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,
}

pub fn run(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let loaded = rules::load_dirs(&args.rules, &args.load.options()?)
        .context("cannot read the rule directories")?;
    // As `vigil run` does, detect with what loaded, but say loudly what did not.
    for error in &loaded.built.errors {
        eprintln!("rule not loaded: {error}");
    }
    let mut detector = Detector::new(loaded.built.engine);
    let input: Box<dyn BufRead> = match &args.input {
        Some(path) if path.as_os_str() != "-" => Box::new(BufReader::new(
            File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        _ => Box::new(io::stdin().lock()),
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let summary = match detect_lines(&mut detector, args.logsource.as_ref(), input, &mut out) {
        Ok(summary) => summary,
        // Whoever reads our output (`| head`) has seen enough.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e.into()),
    };
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    eprintln!(
        "{} events, {} bad lines, {} matches",
        summary.events, summary.bad, summary.matches
    );
    Ok(ExitCode::SUCCESS)
}

/// One output line; fields in the order the issue documents them, correlation fields after.
#[derive(Serialize)]
struct Match<'a> {
    rule_id: &'a str,
    rule_title: &'a str,
    level: &'static str,
    /// The 1-based input line that raised it.
    line: usize,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    correlation: Option<CorrelationFields>,
    /// The fields and values of this line that made the rule (or the correlation's rules)
    /// match, as alerts carry them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    matched: Vec<MatchedField>,
}

#[derive(Serialize)]
struct CorrelationFields {
    correlation: bool,
    #[serde(rename = "type")]
    kind: &'static str,
    group: Group,
    aggregate: f64,
    /// The lines of the contributing events, oldest first.
    lines: Vec<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    lines_truncated: bool,
}

/// The group key as a JSON object in `group-by` order (a JSON map would sort it).
struct Group(Vec<(String, String)>);

impl Serialize for Group {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Debug, Default)]
struct Summary {
    events: usize,
    bad: usize,
    matches: usize,
}

fn detect_lines(
    detector: &mut Detector,
    logsource: Option<&LogSource>,
    mut input: impl BufRead,
    out: &mut impl Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    // Correlation matches name their events by id, and an id here names its line
    // (`line_of`).
    let lines = LineReader::new(logsource);
    let mut buffer = Vec::new();
    let mut number = 0;
    loop {
        buffer.clear();
        if input.read_until(b'\n', &mut buffer)? == 0 {
            break;
        }
        number += 1;
        while buffer.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buffer.pop();
        }
        if buffer.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |reason: String| eprintln!("line {number}: {reason}");
        if buffer.len() > MAX_LINE_BYTES {
            bad(format!("longer than {MAX_LINE_BYTES} bytes"));
            summary.bad += 1;
            continue;
        }
        let line = match std::str::from_utf8(&buffer) {
            Ok(line) => line,
            Err(e) => {
                bad(format!("invalid UTF-8 at byte {}", e.valid_up_to()));
                summary.bad += 1;
                continue;
            }
        };
        // Each kind of source is its own stream, with its own watermark, so a file of
        // CloudTrail records followed by older Flask logs still correlates the latter.
        // A record of a named JSON source is parsed once, for its check and its rules; any
        // other JSON record only when some rule may match it (`Engine::matching_record`).
        let id = line_id(number);
        let event;
        let (evaluated, logsource) = match lines.preset_json(line) {
            // A record of the named source: checked as ingest checks it, by the same parse
            // that detection reads, with no event built around it (nothing here needs its wire
            // form).
            Some((spec, source)) => match parse_json_record(spec, line) {
                Ok((document, time)) => {
                    let time = time.unwrap_or_else(Utc::now).timestamp_millis();
                    let parse = || Ok::<_, serde_json::Error>(document);
                    let evaluated = detector.evaluate_record(
                        &source.kind,
                        time,
                        Some(id),
                        &spec.logsource,
                        line,
                        parse,
                    );
                    (evaluated, &spec.logsource)
                }
                Err(reason) => {
                    bad(reason);
                    summary.bad += 1;
                    continue;
                }
            },
            None => {
                event = match lines.event(line, number, Utc::now()) {
                    Ok(event) => event,
                    Err(reason) => {
                        bad(reason);
                        summary.bad += 1;
                        continue;
                    }
                };
                let time = event.time.timestamp_millis();
                let evaluated = detector.evaluate_event(&event.source.kind, time, &event);
                (evaluated, &event.logsource)
            }
        };
        let (detections, doc) = match evaluated {
            Ok((evaluation, doc)) => (evaluation.detections, doc.unwrap_or_default()),
            Err(e) => {
                // Not reached for a line the reader accepted: the parser is the one ingest
                // applies. Said, not skipped silently, should it ever be.
                bad(format!("not a JSON object: {e}"));
                summary.bad += 1;
                continue;
            }
        };
        summary.events += 1;
        for detection in detections {
            let engine = detector.engine();
            let matched = engine.matched_fields(&detection, logsource, &doc);
            let record = match detection {
                Finding::Rule { rule } => {
                    let rule = &engine.rules()[rule];
                    Match {
                        rule_id: &rule.id,
                        rule_title: &rule.title,
                        level: rule.level.as_str(),
                        line: number,
                        correlation: None,
                        matched,
                    }
                }
                Finding::Correlation(m) => {
                    let rule = &engine.correlations()[m.correlation];
                    let mut lines: Vec<usize> = m.event_ids.iter().filter_map(line_of).collect();
                    lines.sort_unstable();
                    Match {
                        rule_id: &rule.id,
                        rule_title: &rule.title,
                        level: rule.level.as_str(),
                        line: number,
                        correlation: Some(CorrelationFields {
                            correlation: true,
                            kind: rule.kind.as_str(),
                            group: Group(m.group),
                            aggregate: m.aggregate,
                            lines,
                            lines_truncated: m.event_ids_truncated,
                        }),
                        matched,
                    }
                }
            };
            let text = serde_json::to_string(&record).map_err(io::Error::other)?;
            writeln!(out, "{text}")?;
            summary.matches += 1;
        }
    }
    Ok(summary)
}
