//! Turning a detection key's modifier chain and its values into matchers, once, at load.
//!
//! Modifiers apply in the order the key gives them, as in pySigma: `|wide|base64offset|contains`
//! encodes the value as UTF-16, then base64 at three offsets, then wraps each variant in
//! wildcards; `|contains|base64` is refused, since wildcards cannot be encoded.

use ipnet::IpNet;
use regex::RegexBuilder;

use crate::error::Problem;
use crate::matcher::{Matcher, RegexSearch, RuleNumber};
use crate::modifier::{Modifier, ReFlag};
use crate::path::FieldPath;
use crate::pattern::{sigma_tokens, Anchor, Pattern, Token};
use crate::regex_need;
use crate::yaml::{Node, Value};
use crate::LoadOptions;

mod string_variants;

use string_variants::strings;

/// One detection key, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub test: Test,
    /// `all`: every value must match, not just one.
    pub all: bool,
    /// `neq`: the item holds when its values do not match.
    pub negate: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    /// Values compared with the field's values, or with every string of the event for a
    /// keyword search.
    Values(Vec<Matcher>),
    /// `exists`: whether the field is present.
    Exists(bool),
}

/// The size limit of one compiled regular expression (the regex crate's default, said out loud):
/// it keeps a hostile rule from taking unbounded memory, and still admits SigmaHQ's largest,
/// `(.){200,}`, which needs a few MiB with Unicode `.`.
const REGEX_SIZE_LIMIT: usize = 10 << 20;

/// Compiles one key: `field` is `None` for keyword searches. `key_line` is where errors about
/// the modifiers go; errors about a value go to that value's line.
pub(crate) fn compile(
    field: Option<&str>,
    modifiers: &[Modifier],
    values: &[&Node],
    key_line: usize,
    options: &LoadOptions,
) -> Result<Compiled, Problem> {
    let all = modifiers.contains(&Modifier::All);
    let negate = modifiers.contains(&Modifier::Neq);
    let chain: Vec<Modifier> = modifiers
        .iter()
        .copied()
        .filter(|m| !matches!(m, Modifier::All | Modifier::Neq))
        .collect();
    let at_key = |message: String| Problem::new(key_line, message);
    let kind = classify(&chain).map_err(at_key)?;
    if field.is_none() && kind.needs_field() {
        return Err(at_key(format!(
            "modifier `{}` needs a field; a keyword search has none",
            kind.name()
        )));
    }
    let test = match kind {
        Kind::Exists => match values {
            [node] => match node.value {
                Value::Bool(want) => Test::Exists(want),
                _ => {
                    return Err(Problem::new(
                        node.line,
                        format!("`exists` takes `true` or `false`, not {}", node.kind()),
                    ))
                }
            },
            _ => return Err(at_key("`exists` takes a single `true` or `false`".into())),
        },
        kind => Test::Values(
            values
                .iter()
                .map(|node| compile_value(&kind, field.is_none(), node, options))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Compiled { test, all, negate })
}

/// What a chain of modifiers (without `all` and `neq`) makes of its values.
#[derive(Debug, Clone)]
enum Kind {
    /// No value modifier: typed values as written.
    Plain,
    /// String transformations, in order.
    Strings(Vec<Modifier>),
    Regex {
        flags: Vec<ReFlag>,
        anchor: Anchor,
    },
    FieldRef(Anchor),
    /// A modifier that takes the value alone: `cidr`, a comparison or a time part.
    Single(Modifier),
    Exists,
}

impl Kind {
    fn needs_field(&self) -> bool {
        matches!(self, Kind::FieldRef(_) | Kind::Single(_) | Kind::Exists)
    }

    fn name(&self) -> &'static str {
        match self {
            Kind::FieldRef(_) => "fieldref",
            Kind::Single(modifier) => modifier.name(),
            Kind::Exists => "exists",
            Kind::Plain | Kind::Strings(_) => "",
            Kind::Regex { .. } => "re",
        }
    }
}

fn classify(chain: &[Modifier]) -> Result<Kind, String> {
    let Some(&first) = chain.first() else {
        return Ok(Kind::Plain);
    };
    let rest = &chain[1..];
    let one_anchor = |rest: &[Modifier], after: Modifier| -> Result<Anchor, String> {
        let mut anchor = None;
        for &m in rest {
            match m {
                Modifier::Anchor(a) if anchor.is_none() => anchor = Some(a),
                Modifier::Anchor(_) => return Err(conflict(m, chain)),
                Modifier::ReFlag(_) if after == Modifier::Re => {}
                _ => {
                    return Err(format!(
                        "modifier `{}` cannot follow `{}`",
                        m.name(),
                        after.name()
                    ))
                }
            }
        }
        Ok(anchor.unwrap_or(Anchor::Whole))
    };
    for &m in chain {
        let alone = matches!(
            m,
            Modifier::Exists | Modifier::Cidr | Modifier::Compare(_) | Modifier::Time(_)
        );
        if alone && chain.len() > 1 {
            let other = chain.iter().find(|&&o| o != m).map_or("", |o| o.name());
            return Err(format!(
                "modifier `{}` cannot be combined with `{other}`",
                m.name()
            ));
        }
        if matches!(m, Modifier::Re | Modifier::FieldRef) && m != first {
            return Err(format!(
                "modifier `{}` must come first (after `all` or `neq` only)",
                m.name()
            ));
        }
        if let Modifier::ReFlag(_) = m {
            if first != Modifier::Re {
                return Err(format!("modifier `{}` only applies after `re`", m.name()));
            }
        }
    }
    Ok(match first {
        Modifier::Exists => Kind::Exists,
        Modifier::Cidr | Modifier::Compare(_) | Modifier::Time(_) => Kind::Single(first),
        Modifier::Re => {
            let anchor = one_anchor(rest, first)?;
            let flags = rest
                .iter()
                .filter_map(|m| match m {
                    Modifier::ReFlag(flag) => Some(*flag),
                    _ => None,
                })
                .collect();
            Kind::Regex { flags, anchor }
        }
        Modifier::FieldRef => Kind::FieldRef(one_anchor(rest, first)?),
        _ => {
            let mut anchor: Option<Modifier> = None;
            for &m in chain {
                if let Modifier::Anchor(_) = m {
                    if anchor.is_some() {
                        return Err(conflict(m, chain));
                    }
                    anchor = Some(m);
                }
            }
            Kind::Strings(chain.to_vec())
        }
    })
}

fn conflict(m: Modifier, chain: &[Modifier]) -> String {
    let previous = chain
        .iter()
        .find(|o| matches!(o, Modifier::Anchor(_)))
        .map_or("", |o| o.name());
    format!("modifier `{}` conflicts with `{previous}`", m.name())
}

fn compile_value(
    kind: &Kind,
    keyword: bool,
    node: &Node,
    options: &LoadOptions,
) -> Result<Matcher, Problem> {
    let err = |message: String| Problem::new(node.line, message);
    if let Value::Seq(_) | Value::Map(_) = node.value {
        return Err(err(format!(
            "a field value must be a plain value, not {}",
            node.kind()
        )));
    }
    match kind {
        Kind::Plain if !keyword => Ok(match &node.value {
            Value::String(s) => Matcher::String(Pattern::sigma(s, Anchor::Whole)),
            Value::Int(i, text) => Matcher::Number {
                value: RuleNumber::Int(*i),
                text: Pattern::literal(text),
            },
            Value::Float(f, text) => Matcher::Number {
                value: RuleNumber::Float(*f),
                text: Pattern::literal(text),
            },
            Value::Bool(b) => Matcher::Bool(*b),
            _ => Matcher::Null,
        }),
        // Keywords look for their value inside each string of the event unless an anchor
        // modifier says where.
        Kind::Plain => strings(&[], true, text(node, "a keyword")?, options).map_err(err),
        Kind::Strings(chain) => {
            strings(chain, keyword, text(node, "a string modifier")?, options).map_err(err)
        }
        Kind::Regex { flags, anchor } => {
            let source = text(node, "`re`")?;
            let source = match anchor {
                Anchor::Whole | Anchor::Anywhere => source.to_owned(),
                Anchor::Start => format!(r"\A(?:{source})"),
                Anchor::End => format!(r"(?:{source})\z"),
            };
            let flags = regex_need::Flags {
                case_insensitive: flags.contains(&ReFlag::IgnoreCase),
                multi_line: flags.contains(&ReFlag::MultiLine),
                dot_matches_new_line: flags.contains(&ReFlag::DotAll),
            };
            RegexBuilder::new(&source)
                .case_insensitive(flags.case_insensitive)
                .multi_line(flags.multi_line)
                .dot_matches_new_line(flags.dot_matches_new_line)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(|regex| {
                    let need = regex_need::regex_need(&source, flags);
                    Matcher::Regex(RegexSearch::new(regex, need))
                })
                .map_err(|e| err(format!("invalid regular expression: {}", one_line(&e))))
        }
        Kind::FieldRef(anchor) => {
            let name = text(node, "`fieldref`")?;
            let tokens = sigma_tokens(name);
            let plain: Option<String> = tokens
                .iter()
                .map(|t| match t {
                    Token::Char(c) => Some(*c),
                    Token::Any | Token::One => None,
                })
                .collect();
            match plain {
                Some(name) if !name.is_empty() => Ok(Matcher::FieldRef {
                    path: FieldPath::new(&name),
                    anchor: *anchor,
                }),
                Some(_) => Err(err("a field reference cannot be empty".into())),
                None => Err(err("a field reference cannot hold wildcards".into())),
            }
        }
        Kind::Single(Modifier::Cidr) => {
            let text = text(node, "`cidr`")?;
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    err(format!(
                        "`cidr` needs a network such as 10.0.0.0/8, not {text:?}"
                    ))
                })?;
            Ok(Matcher::Cidr(net.trunc()))
        }
        Kind::Single(Modifier::Compare(op)) => {
            let value = match node.value {
                Value::Int(i, _) => RuleNumber::Int(i),
                Value::Float(f, _) => RuleNumber::Float(f),
                _ => {
                    return Err(err(format!(
                        "`{}` needs a number, not {}",
                        Modifier::Compare(*op).name(),
                        node.kind()
                    )))
                }
            };
            Ok(Matcher::Compare { op: *op, value })
        }
        Kind::Single(Modifier::Time(part)) => {
            let name = Modifier::Time(*part).name();
            let Value::Int(value, _) = node.value else {
                return Err(err(format!(
                    "`{name}` needs a whole number, not {}",
                    node.kind()
                )));
            };
            let (low, high) = part.range();
            if !(low..=high).contains(&value) {
                return Err(err(format!(
                    "`{name}` is between {low} and {high}, not {value}"
                )));
            }
            Ok(Matcher::Time { part: *part, value })
        }
        Kind::Single(_) | Kind::Exists => Err(err("unexpected modifier".into())),
    }
}

fn one_line(error: &regex::Error) -> String {
    error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of a scalar value; numbers and booleans as written.
fn text<'a>(node: &'a Node, what: &str) -> Result<&'a str, Problem> {
    node.scalar_text()
        .ok_or_else(|| Problem::new(node.line, format!("{what} cannot take {}", node.kind())))
}
