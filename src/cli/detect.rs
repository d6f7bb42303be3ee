//! `vigil detect`: run rules over a file of events and print what they raise, as NDJSON.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use serde::Serialize;
use vigil_detect::{Detector, Finding, MatchedRef, Rule};
use vigil_event::{LogSource, TapeBuffers};
use vigil_ingest::parse_json_record;

use super::events::{line_id, line_of, LineReader};
use super::{parse_logsource, LoadArgs};
use crate::rules;

/// Longer lines are reported and skipped, as ingest rejects them, rather than held in memory:
/// past this, a line's bytes are dropped as they are read (see [`next_line`]).
const MAX_LINE_BYTES: usize = vigil_ingest::DEFAULT_MAX_LINE_BYTES;

/// The input's and the output's buffers. With `std`'s 8 KiB, a CloudTrail file took a `read`
/// call every six records, and the calls were a tenth of `vigil detect`'s time.
const IO_BUFFER_BYTES: usize = 1 << 20;

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
    let input: Box<dyn Read> = match &args.input {
        Some(path) if path.as_os_str() != "-" => {
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        _ => Box::new(io::stdin().lock()),
    };
    let input = BufReader::with_capacity(IO_BUFFER_BYTES, input);
    let mut out = BufWriter::with_capacity(IO_BUFFER_BYTES, io::stdout().lock());
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
    matched: Vec<MatchedRef<'a>>,
}

/// The start of each rule's output lines, up to its `line` field's value, serialised when the
/// rule first matches: escaping a rule's id and title again for each of its matches was a few
/// percent of a CloudTrail file's time, where most records match some rule.
#[derive(Default)]
struct RuleHeads(Vec<Option<Box<[u8]>>>);

impl RuleHeads {
    /// Writes the line [`Match`] serialises to for `rule`'s match on line `line`.
    fn write_rule_match(
        &mut self,
        rules: &[Rule],
        rule: usize,
        line: usize,
        matched: &[MatchedRef<'_>],
        out: &mut impl Write,
    ) -> io::Result<()> {
        if self.0.len() < rules.len() {
            self.0.resize(rules.len(), None);
        }
        let head = match &mut self.0[rule] {
            Some(head) => head,
            empty => {
                let rule = &rules[rule];
                let mut head = serde_json::to_vec(&RuleHead {
                    rule_id: &rule.id,
                    rule_title: &rule.title,
                    level: rule.level.as_str(),
                })
                .map_err(io::Error::from)?;
                // Open again where the object closed, for the fields that follow.
                head.pop();
                head.extend_from_slice(b",\"line\":");
                empty.insert(head.into_boxed_slice())
            }
        };
        out.write_all(head)?;
        out.write_all(itoa::Buffer::new().format(line).as_bytes())?;
        if !matched.is_empty() {
            out.write_all(b",\"matched\":")?;
            serde_json::to_writer(&mut *out, matched).map_err(io::Error::from)?;
        }
        out.write_all(b"}\n")
    }
}

/// [`Match`]'s first fields, in its order.
#[derive(Serialize)]
struct RuleHead<'a> {
    rule_id: &'a str,
    rule_title: &'a str,
    level: &'static str,
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

/// Where [`next_line`] found a line, without its line feed.
enum NextLine {
    /// The first `len` bytes of the reader's buffer, which holds the whole line: read there,
    /// not copied out.
    Buffered(usize),
    /// In the spill buffer: the line ran past the end of the reader's buffer.
    Spilled,
    /// Longer than [`MAX_LINE_BYTES`]: read to its end and dropped, never held whole.
    TooLong,
}

/// Finds the next line of `input`; `None` at its end. A buffered line is left in the reader
/// for the caller to consume; any other is consumed.
fn next_line(input: &mut impl BufRead, spill: &mut Vec<u8>) -> io::Result<Option<NextLine>> {
    let available = input.fill_buf()?;
    if available.is_empty() {
        return Ok(None);
    }
    if let Some(len) = memchr::memchr(b'\n', available) {
        return Ok(Some(NextLine::Buffered(len)));
    }
    spill.clear();
    let mut too_long = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let end = memchr::memchr(b'\n', available);
        let part = &available[..end.unwrap_or(available.len())];
        // One byte over, for a carriage return the caller takes off.
        too_long |= spill.len() + part.len() > MAX_LINE_BYTES + 1;
        if too_long {
            spill.clear();
        } else {
            spill.extend_from_slice(part);
        }
        let used = end.map_or(part.len(), |end| end + 1);
        input.consume(used);
        if end.is_some() {
            break;
        }
    }
    Ok(Some(if too_long {
        NextLine::TooLong
    } else {
        NextLine::Spilled
    }))
}

fn detect_lines(
    detector: &mut Detector,
    logsource: Option<&LogSource>,
    mut input: BufReader<impl Read>,
    out: &mut impl Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    // Correlation matches name their events by id, and an id here names its line
    // (`line_of`).
    let lines = LineReader::new(logsource);
    let mut spill = Vec::new();
    let mut heads = RuleHeads::default();
    // The last record's tape, whose vectors the next one is parsed into.
    let mut buffers = TapeBuffers::default();
    // Only correlations read events' times. Without one, the time of a record read as the
    // preset source's is left unread (a lookup and an RFC 3339 parse, about 4% of a Kubernetes
    // audit event) and the record is given the time the run started.
    let timed = detector.engine().reads_event_times();
    let started = Utc::now();
    let mut number = 0;
    // What the last line left in the reader's buffer, consumed once it is done with.
    let mut pending = 0;
    loop {
        input.consume(pending);
        pending = 0;
        // What was found so far goes out before the input is waited on: a stream (`tail -f |
        // vigil detect`) sees its matches as its lines come, not a buffer's worth later.
        if input.buffer().is_empty() {
            out.flush()?;
        }
        let Some(next) = next_line(&mut input, &mut spill)? else {
            break;
        };
        number += 1;
        let bad = |reason: String| eprintln!("line {number}: {reason}");
        let mut bytes: &[u8] = match next {
            NextLine::Buffered(len) => {
                pending = len + 1;
                // The same bytes `next_line` found the line in: nothing was consumed since.
                input.fill_buf()?.get(..len).ok_or_else(|| {
                    io::Error::other("the input's buffer changed between two reads")
                })?
            }
            NextLine::Spilled => &spill,
            NextLine::TooLong => {
                bad(format!("longer than {MAX_LINE_BYTES} bytes"));
                summary.bad += 1;
                continue;
            }
        };
        while let [rest @ .., b'\r'] = bytes {
            bytes = rest;
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if bytes.len() > MAX_LINE_BYTES {
            bad(format!("longer than {MAX_LINE_BYTES} bytes"));
            summary.bad += 1;
            continue;
        }
        let line = match vigil_event::text(bytes) {
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
            Some((spec, source)) => match parse_json_record(spec, line, &mut buffers, timed) {
                Ok((document, time)) => {
                    let time = match time {
                        Some(time) => time,
                        None if timed => Utc::now(),
                        None => started,
                    }
                    .timestamp_millis();
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
            let matched = engine.matched_refs(&detection, logsource, doc.root());
            match detection {
                Finding::Rule { rule } => {
                    heads.write_rule_match(engine.rules(), rule, number, &matched, out)?;
                }
                Finding::Correlation(m) => {
                    let rule = &engine.correlations()[m.correlation];
                    let mut lines: Vec<usize> = m.event_ids.iter().filter_map(line_of).collect();
                    lines.sort_unstable();
                    let record = Match {
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
                    };
                    // Straight into the buffered output, not through a string of its own.
                    serde_json::to_writer(&mut *out, &record).map_err(io::Error::from)?;
                    out.write_all(b"\n")?;
                }
            }
            summary.matches += 1;
        }
        doc.recycle(&mut buffers);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use vigil_detect::Engine;

    use super::*;

    /// Every line `next_line` finds in `text`, read through a buffer of `capacity` bytes.
    fn lines_of(text: &[u8], capacity: usize) -> Vec<Option<Vec<u8>>> {
        let mut input = BufReader::with_capacity(capacity, text);
        let (mut spill, mut found) = (Vec::new(), Vec::new());
        while let Some(next) = next_line(&mut input, &mut spill).unwrap() {
            found.push(match next {
                NextLine::Buffered(len) => {
                    let line = input.buffer()[..len].to_vec();
                    input.consume(len + 1);
                    Some(line)
                }
                NextLine::Spilled => Some(spill.clone()),
                NextLine::TooLong => None,
            });
            // A dropped line is never held whole.
            assert!(spill.capacity() <= 2 * MAX_LINE_BYTES + capacity);
            // Each line found moves past at least its line feed.
            assert!(
                found.len() <= text.len() + 1,
                "no progress through the input"
            );
        }
        found
    }

    #[test]
    fn lines_are_found_within_and_across_the_readers_buffer() {
        let text = b"ab\ncdefghijklmnopqrstuvwxyz\n\n\r\nlast";
        let expected: Vec<Option<Vec<u8>>> = ["ab", "cdefghijklmnopqrstuvwxyz", "", "\r", "last"]
            .iter()
            .map(|line| Some(line.as_bytes().to_vec()))
            .collect();
        for capacity in [1, 2, 3, 7, 8, 64] {
            assert_eq!(lines_of(text, capacity), expected, "capacity {capacity}");
        }
    }

    #[test]
    fn a_line_past_the_limit_is_dropped_as_it_is_read_and_the_next_one_kept() {
        let mut text = vec![b'x'; 5 * MAX_LINE_BYTES];
        text.extend_from_slice(b"\nnext\n");
        let mut at_limit = vec![b'y'; MAX_LINE_BYTES];
        at_limit.extend_from_slice(b"\r\n");
        text.extend_from_slice(&at_limit);
        text.extend_from_slice(&vec![b'z'; MAX_LINE_BYTES + 2]);
        text.push(b'\n');
        let found = lines_of(&text, 8 * 1024);
        assert_eq!(found.len(), 4);
        assert_eq!(found[0], None);
        assert_eq!(found[1].as_deref(), Some(&b"next"[..]));
        // The limit is the line's, without its carriage return, which the caller takes off.
        assert_eq!(found[2].as_ref().map(Vec::len), Some(MAX_LINE_BYTES + 1));
        assert_eq!(
            found[3].as_ref().map(Vec::len),
            None,
            "a line one byte past what may be kept"
        );
    }

    /// Output kept in a vector another party can read.
    #[derive(Clone, Default)]
    struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A stream that hands out one line a read, noting how much output had come out by then.
    struct Stream {
        lines: Vec<&'static str>,
        out: Shared,
        seen: Vec<usize>,
    }

    impl Read for Stream {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            self.seen.push(self.out.0.borrow().len());
            if self.lines.is_empty() {
                return Ok(0);
            }
            let line = self.lines.remove(0).as_bytes();
            buffer[..line.len()].copy_from_slice(line);
            Ok(line.len())
        }
    }

    #[test]
    fn matches_are_written_out_before_the_input_is_waited_on() {
        let rule = "title: T\nlogsource: {product: aws}\ndetection:\n  \
                    s: {eventName: ListUsers}\n  condition: s\n";
        let rules = vigil_detect::parse_rules(rule, "t.yml").rules;
        let mut detector = Detector::new(Engine::new(rules));
        let out = Shared::default();
        let mut stream = Stream {
            lines: vec![
                "{\"eventVersion\":\"1.09\",\"eventSource\":\"iam.amazonaws.com\",\"eventName\":\"ListUsers\",\"eventTime\":\"2026-11-28T09:10:24Z\"}\n",
                "{\"eventVersion\":\"1.09\",\"eventSource\":\"iam.amazonaws.com\",\"eventName\":\"Other\",\"eventTime\":\"2026-11-28T09:10:24Z\"}\n",
            ],
            out: out.clone(),
            seen: Vec::new(),
        };
        let mut writer = BufWriter::with_capacity(IO_BUFFER_BYTES, out.clone());
        let input = BufReader::with_capacity(1024, &mut stream);
        let summary = detect_lines(&mut detector, None, input, &mut writer).unwrap();
        assert_eq!((summary.events, summary.matches), (2, 1));
        // Nothing before the first read; the first line's match before the second.
        assert_eq!(stream.seen.len(), 3);
        assert_eq!(stream.seen[0], 0);
        assert!(stream.seen[1] > 0, "{:?}", stream.seen);
    }

    #[test]
    fn a_rule_match_is_written_as_serde_writes_the_match() {
        let rule = "title: \"T \\\"quoted\\\" \\\\ \\x07 \u{e9}t\u{e9} </b>\"\n\
                    id: 0a5177f4-6ca9-44c2-aacf-d3f3d8b6e4d2\nlevel: high\n\
                    logsource: {product: aws}\n\
                    detection:\n  s: {a: 1}\n  condition: s\n";
        let rules = vigil_detect::parse_rules(rule, "t.yml").rules;
        assert!(rules[0].title.contains('\u{7}'), "{}", rules[0].title);
        let fields = vec![
            MatchedRef {
                field: "a\"b".into(),
                value: "\u{1}\u{e9}\n".into(),
                keyword: true,
            },
            MatchedRef {
                field: "c".into(),
                value: "d".into(),
                keyword: false,
            },
        ];
        let mut heads = RuleHeads::default();
        for matched in [Vec::new(), fields.clone(), fields] {
            // The borrowed fields serialise as the owned ones alerts carry.
            let owned: Vec<vigil_event::MatchedField> =
                matched.iter().cloned().map(Into::into).collect();
            assert_eq!(
                serde_json::to_string(&matched).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
            let mut ours = Vec::new();
            heads
                .write_rule_match(&rules, 0, 12_345, &matched, &mut ours)
                .unwrap();
            let mut theirs = serde_json::to_vec(&Match {
                rule_id: &rules[0].id,
                rule_title: &rules[0].title,
                level: rules[0].level.as_str(),
                line: 12_345,
                correlation: None,
                matched,
            })
            .unwrap();
            theirs.push(b'\n');
            assert_eq!(String::from_utf8(ours), String::from_utf8(theirs));
        }
    }

    #[test]
    fn detection_reads_every_line_whatever_the_buffer_and_refuses_long_ones() {
        let record = r#"{"eventVersion":"1.09","eventSource":"iam.amazonaws.com","eventName":"ListUsers","eventTime":"2026-11-28T09:10:24Z"}"#;
        let mut text = String::new();
        for n in 0..40 {
            text.push_str(record);
            text.push_str(if n % 3 == 0 { "\r\n" } else { "\n" });
            if n % 7 == 0 {
                text.push_str("  \n");
            }
        }
        text.push_str(&"z".repeat(MAX_LINE_BYTES + 10));
        text.push('\n');
        text.push_str(record);
        // The record's line numbers, counting blank lines and the long one.
        let mut expected = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.starts_with('{') {
                expected.push(number + 1);
            }
        }
        let rule = "title: T\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  \
                    selection: {eventName: ListUsers}\n  condition: selection\n";
        for capacity in [5, 64, 8 * 1024] {
            let rules = vigil_detect::parse_rules(rule, "t.yml").rules;
            let mut detector = Detector::new(Engine::new(rules));
            // On a thread of its own, so that a reading loop that stops moving fails the test
            // instead of hanging it.
            let (done, result) = std::sync::mpsc::channel();
            let text = text.clone();
            std::thread::spawn(move || {
                let input = BufReader::with_capacity(capacity, text.as_bytes());
                let mut out = Vec::new();
                let summary = detect_lines(&mut detector, None, input, &mut out).unwrap();
                done.send((summary, out)).unwrap();
            });
            let (summary, out) = result
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("detection ends within a minute");
            let counts = (summary.events, summary.bad, summary.matches);
            assert_eq!(counts, (41, 1, 41), "capacity {capacity}");
            let line = |text: &str| {
                let record: serde_json::Value = serde_json::from_str(text).unwrap();
                record["line"].as_u64().unwrap() as usize
            };
            let numbers: Vec<usize> = String::from_utf8(out).unwrap().lines().map(line).collect();
            assert_eq!(numbers, expected, "capacity {capacity}");
        }
    }
}
