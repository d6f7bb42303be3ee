//! A small YAML document tree that remembers the line of every node.
//!
//! `yaml-rust2`'s own `Yaml` tree drops positions, and a rule that fails to load must say where.
//! So the tree is built here from the parser's marked events. The tree only holds what Sigma
//! rules use: mappings with scalar keys, sequences and scalars. Anchors and aliases are refused
//! rather than expanded, because expanding them lets a small file grow into a huge tree
//! ("billion laughs") and no Sigma rule needs them.

use std::collections::HashSet;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// How deeply lists and mappings may nest. Sigma rules and pipelines need fewer than ten
/// levels. The limit is checked as the parser's events arrive, before a tree exists, because
/// everything that later walks, clones or drops a tree recurses once per level: a rule of 300k
/// nested `- ` would overflow the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Mappings with up to this many keys find a repeated key by scanning them: a rule's mappings
/// hold a few, and a set of their names (an allocation, a copy and a hash of each) costs more
/// than the scan. Larger ones, which only a hostile file holds, keep a set.
const SCANNED_KEYS: usize = 16;

/// A YAML node and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    /// Numbers keep their text as written, so `0x17` or `010` can also be compared as strings.
    Int(i64, String),
    Float(f64, String),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key: always a scalar, kept as the text it was written with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub line: usize,
}

/// One YAML document of a stream.
#[derive(Debug)]
pub(crate) struct Document {
    /// The line of the document's first node.
    pub line: usize,
    pub root: Node,
}

/// Why a document could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub line: usize,
    pub message: String,
}

impl Node {
    /// The text of a scalar as a string (numbers and booleans as written); `None` otherwise.
    pub fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) | Value::Int(_, s) | Value::Float(_, s) => Some(s),
            Value::Bool(true) => Some("true"),
            Value::Bool(false) => Some("false"),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// A short name of the node's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(..) | Value::Float(..) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Reads every document of a YAML stream.
///
/// A syntax error stops the YAML parser for the rest of its input, which would hide every later
/// document of a multi-document rule file. So the stream is first cut at its `---` lines, which
/// YAML forbids inside any content, and each piece is parsed on its own: an error costs only the
/// document it is in. Empty documents (such as after a trailing `---`) are left out.
pub(crate) fn load_documents(text: &str) -> Vec<Result<Document, YamlError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (first_line, piece) in split_documents(text) {
        load_piece(piece, first_line, &mut out);
    }
    out
}

/// Refuses a stream whose lists and mappings nest deeper than [`MAX_DEPTH`], scanning the
/// parser's events without building anything: for YAML that another loader reads afterwards.
/// Syntax errors are left for that loader to report.
pub(crate) fn check_depth(text: &str) -> Result<(), YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::SequenceStart(..) | Event::MappingStart(..), mark)) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep(mark.line().max(1)));
                }
            }
            Ok((Event::SequenceEnd | Event::MappingEnd, _)) => depth = depth.saturating_sub(1),
            Ok((Event::StreamEnd, _)) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

fn too_deep(line: usize) -> YamlError {
    YamlError {
        line,
        message: format!(
            "lists and mappings nest deeper than {MAX_DEPTH} levels; rules need far fewer"
        ),
    }
}

/// Cuts a stream before each document-start line (`---` alone or followed by a space), keeping
/// directives (`%YAML`, `%TAG`) with the document they precede. Returns each piece with the
/// number of lines before it.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    let mut piece_start = 0; // byte offset
    let mut piece_line = 0;
    // Where a run of directive lines began, as (byte offset, line index).
    let mut directives: Option<(usize, usize)> = None;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let is_start = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        if is_start {
            let (cut, cut_line) = directives.unwrap_or((offset, index));
            if cut > piece_start {
                pieces.push((piece_line, &text[piece_start..cut]));
            }
            piece_start = cut;
            piece_line = cut_line;
        }
        if line.starts_with('%') {
            directives.get_or_insert((offset, index));
        } else {
            directives = None;
        }
        offset += line.len();
    }
    if piece_start < text.len() || pieces.is_empty() {
        pieces.push((piece_line, &text[piece_start..]));
    }
    pieces
}

fn load_piece(piece: &str, lines_before: usize, out: &mut Vec<Result<Document, YamlError>>) {
    let mut parser = Parser::new_from_str(piece);
    let mut builder = Builder::new(lines_before);
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(err) => {
                // Errors found at the end of input are marked on the line after the last one.
                let last_line = piece.trim_end_matches(['\n', '\r']).lines().count().max(1);
                out.push(Err(YamlError {
                    line: lines_before + err.marker().line().clamp(1, last_line),
                    message: format!("invalid YAML: {}", err.info()),
                }));
                return;
            }
        };
        match builder.event(event, mark) {
            Step::Continue => {}
            Step::Document(Some(doc)) => out.push(Ok(doc)),
            Step::Document(None) => {}
            Step::Failed(err) => {
                out.push(Err(err));
                return;
            }
            Step::End => return,
        }
    }
}

enum Step {
    Continue,
    /// A document ended; `None` when it was empty.
    Document(Option<Document>),
    Failed(YamlError),
    End,
}

enum Frame {
    Seq {
        line: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        entries: Vec<(Key, Node)>,
        /// The keys so far, once there are more than [`SCANNED_KEYS`]; fewer are scanned.
        seen: Option<HashSet<String>>,
        key: Option<Key>,
    },
}

/// Turns parser events into a [`Node`] tree.
struct Builder {
    lines_before: usize,
    stack: Vec<Frame>,
    root: Option<Node>,
}

impl Builder {
    fn new(lines_before: usize) -> Self {
        Builder {
            lines_before,
            stack: Vec::new(),
            root: None,
        }
    }

    fn line(&self, mark: Marker) -> usize {
        self.lines_before + mark.line().max(1)
    }

    fn event(&mut self, event: Event, mark: Marker) -> Step {
        let line = self.line(mark);
        let result = match event {
            Event::StreamEnd => return Step::End,
            Event::DocumentEnd => {
                self.stack.clear();
                return Step::Document(self.root.take().and_then(|root| {
                    (root.value != Value::Null).then_some(Document {
                        line: root.line,
                        root,
                    })
                }));
            }
            Event::Nothing | Event::StreamStart | Event::DocumentStart => Ok(()),
            Event::Alias(_) => Err(YamlError {
                line,
                message: "YAML aliases are not supported in rules".into(),
            }),
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 {
                    self.anchor_error(line)
                } else if let Some(Frame::Map {
                    key: key @ None, ..
                }) = self.stack.last_mut()
                {
                    *key = Some(Key { name: text, line });
                    Ok(())
                } else {
                    self.insert(Node {
                        line,
                        value: scalar(text, style, tag.as_ref()),
                    })
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) if anchor != 0 => {
                self.anchor_error(line)
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.expects_key() => {
                Err(YamlError {
                    line,
                    message: "mapping keys must be plain values, not lists or mappings".into(),
                })
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                Err(too_deep(line))
            }
            Event::SequenceStart(..) => {
                self.stack.push(Frame::Seq {
                    line,
                    items: Vec::new(),
                });
                Ok(())
            }
            Event::MappingStart(..) => {
                self.stack.push(Frame::Map {
                    line,
                    entries: Vec::new(),
                    seen: None,
                    key: None,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { line, items }) => self.insert(Node {
                    line,
                    value: Value::Seq(items),
                }),
                Some(Frame::Map { line, entries, .. }) => self.insert(Node {
                    // The parser marks a block mapping after its first key; the key's line is
                    // the one a reader expects.
                    line: entries.first().map_or(line, |(key, _)| key.line),
                    value: Value::Map(entries),
                }),
                None => Ok(()),
            },
        };
        match result {
            Ok(()) => Step::Continue,
            Err(err) => Step::Failed(err),
        }
    }

    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn anchor_error(&self, line: usize) -> Result<(), YamlError> {
        Err(YamlError {
            line,
            message: "YAML anchors are not supported in rules".into(),
        })
    }

    fn insert(&mut self, node: Node) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries, seen, key, ..
            }) => {
                // `expects_key` routed every key elsewhere, so a value always has its key here.
                let Some(key) = key.take() else {
                    return Ok(());
                };
                // Later duplicates silently win in most YAML loaders; in a rule that would
                // quietly drop half a selection, so it is an error.
                let duplicate = match seen {
                    Some(seen) => !seen.insert(key.name.clone()),
                    None if entries.len() < SCANNED_KEYS => {
                        entries.iter().any(|(known, _)| known.name == key.name)
                    }
                    None => {
                        let known = entries.iter().map(|(known, _)| known.name.clone());
                        !seen.insert(known.collect()).insert(key.name.clone())
                    }
                };
                if duplicate {
                    return Err(YamlError {
                        line: key.line,
                        message: format!("duplicate key `{}`", key.name),
                    });
                }
                entries.push((key, node));
                Ok(())
            }
        }
    }
}

/// Resolves a scalar the way YAML 1.2's core schema does: quoted scalars are strings, plain ones
/// may be null, booleans or numbers.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    let explicit_string =
        tag.is_some_and(|tag| tag.handle == "tag:yaml.org,2002:" && tag.suffix == "str");
    if style != TScalarStyle::Plain || explicit_string {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(int) = parse_int(&text) {
        return Value::Int(int, text);
    }
    if looks_like_float(&text) {
        if let Ok(float) = text.parse::<f64>() {
            return Value::Float(float, text);
        }
    }
    Value::String(text)
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = digits.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = digits.strip_prefix("0o") {
        (8, octal)
    } else {
        (10, digits)
    };
    // `from_str_radix` would accept a second sign.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Rust's float parser also takes `inf`, `NaN` and `infinity`; YAML spells those `.inf` and
/// `.nan`, and a rule value like `Infinity` must stay a string.
fn looks_like_float(text: &str) -> bool {
    let body = text.trim_start_matches(['-', '+']);
    body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && body.chars().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let mut docs = load_documents(text);
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0).unwrap().root
    }

    fn entries(node: &Node) -> &[(Key, Node)] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn nodes_carry_their_lines() {
        let root = one("# comment\ntitle: x\ndetection:\n  sel:\n    - a\n    - b\n");
        let e = entries(&root);
        assert_eq!(root.line, 2);
        assert_eq!((e[0].0.name.as_str(), e[0].0.line), ("title", 2));
        assert_eq!(e[1].1.line, 4, "a block mapping starts at its first key");
        let sel = &entries(&e[1].1)[0].1;
        let Value::Seq(items) = &sel.value else {
            panic!("{sel:?}")
        };
        assert_eq!(items[1].line, 6);
    }

    #[test]
    fn scalars_resolve_like_yaml_1_2() {
        let root = one("a: 200\nb: '200'\nc: 0x17\nd: 1.5\ne: ~\nf: True\ng: Infinity\nh: 010\n");
        let values: Vec<&Value> = entries(&root).iter().map(|(_, v)| &v.value).collect();
        assert_eq!(values[0], &Value::Int(200, "200".into()));
        assert_eq!(values[1], &Value::String("200".into()));
        assert_eq!(values[2], &Value::Int(23, "0x17".into()));
        assert_eq!(values[3], &Value::Float(1.5, "1.5".into()));
        assert_eq!(values[4], &Value::Null);
        assert_eq!(values[5], &Value::Bool(true));
        assert_eq!(values[6], &Value::String("Infinity".into()));
        assert_eq!(values[7], &Value::Int(10, "010".into()));
    }

    #[test]
    fn an_error_costs_only_its_document() {
        let docs = load_documents("a: 1\n---\nb: [1, 2\n---\nc: 3\n---\n");
        assert_eq!(docs.len(), 3);
        assert!(docs[0].is_ok());
        let err = docs[1].as_ref().unwrap_err();
        assert!(
            (3..=4).contains(&err.line),
            "error line {} should point at the broken document",
            err.line
        );
        assert_eq!(docs[2].as_ref().unwrap().line, 5);
    }

    #[test]
    fn directives_stay_with_their_document() {
        let docs = load_documents("a: 1\n%YAML 1.2\n---\nb: 2\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].as_ref().unwrap().line, 4);
    }

    #[test]
    fn refuses_duplicates_aliases_and_complex_keys() {
        let dup = &load_documents("a: 1\nb: 2\na: 3\n")[0];
        assert_eq!(dup.as_ref().unwrap_err().line, 3);
        assert!(load_documents("a: &x 1\nb: *x\n")[0].is_err());
        assert!(load_documents("? [a]\n: 1\n")[0].is_err());
    }

    /// A repeated key is refused however many keys come before it, whether the mapping is
    /// still scanned or already keeps a set of its keys, and whichever earlier key it repeats;
    /// distinct keys never are.
    #[test]
    fn repeats_are_found_in_mappings_of_any_size() {
        for keys in 1..SCANNED_KEYS * 3 {
            let text: String = (0..keys).map(|k| format!("k{k}: {k}\n")).collect();
            let map = load_documents(&text).remove(0).unwrap();
            assert_eq!(entries(&map.root).len(), keys);
            for repeated in [0, keys / 2, keys - 1] {
                let text = format!("{text}k{repeated}: again\n");
                let error = load_documents(&text).remove(0).unwrap_err();
                assert_eq!(error.line, keys + 1, "{keys} keys, k{repeated} again");
                assert_eq!(error.message, format!("duplicate key `k{repeated}`"));
            }
        }
    }

    #[test]
    fn survives_hostile_input() {
        for text in [
            "[".repeat(100_000),
            "{a: ".repeat(10_000),
            "- ".repeat(10_000),
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            "\u{feff}a: 1".into(),
            "\t\0\u{1}:".into(),
            "---\n---\n...\n".into(),
            "a: \"unterminated".into(),
        ] {
            let _ = load_documents(&text);
        }
        assert!(load_documents("").is_empty());
    }

    #[test]
    fn nesting_is_limited_before_a_tree_is_built() {
        // At the limit: fine.
        let text = format!("a:\n  {}x\n", "- ".repeat(MAX_DEPTH - 1));
        assert!(load_documents(&text)[0].is_ok(), "{text}");
        // One deeper, and 300k deeper (which overflowed the stack when the tree was dropped):
        // refused with the line where the limit was crossed.
        for depth in [MAX_DEPTH, 300_000] {
            let text = format!(
                "title: deep\ndetection:\n  sel:\n    - {}x\n",
                "- ".repeat(depth)
            );
            let docs = load_documents(&text);
            let err = docs[0].as_ref().unwrap_err();
            assert_eq!(err.line, 4, "{err:?}");
            assert!(err.message.contains("nest deeper than 64"), "{err:?}");
        }
        let flow = format!("a: {}1{}\n", "[".repeat(300_000), "]".repeat(300_000));
        let err = load_documents(&flow).remove(0).unwrap_err();
        assert_eq!(err.line, 1);
        // The scan for other loaders agrees, on every document of a stream.
        let block = format!("a:\n  b:\n    - {}x\n", "- ".repeat(300_000));
        assert_eq!(
            check_depth(&block),
            Err(load_documents(&block).remove(0).unwrap_err())
        );
        let deep_second = format!("a: 1\n---\nb:\n  {}x\n", "- ".repeat(MAX_DEPTH));
        assert_eq!(check_depth(&deep_second).unwrap_err().line, 4);
        assert_eq!(
            check_depth(&format!("a:\n  {}x\n", "- ".repeat(MAX_DEPTH - 1))),
            Ok(())
        );
    }
}
