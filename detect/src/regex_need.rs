//! The literal text every match of a regular expression contains, for the prefilter.
//!
//! A `re` value used to give its rule no need at all, so a single rule with a regular
//! expression made every event of its logsource go through full evaluation. Most regular
//! expressions in rules hold a plain run somewhere on every path (`.+:assumed-role/aws:.+`
//! holds `:assumed-role/aws:`), and a value the expression matches contains that run.
//!
//! The expression is parsed with the flags it is compiled with. Under case folding,
//! `regex-syntax` turns letters into classes, so only runs that must appear exactly as written
//! are literals here, and the prefilter's case-insensitive scan finds them. Only ASCII runs
//! are kept: the record scan gives up on non-ASCII text anyway, and it keeps the reasoning
//! about case to ASCII.

use regex_syntax::hir::{Hir, HirKind};
use regex_syntax::ParserBuilder;

use crate::prefilter::{self, Need};

/// How the expression is compiled (`re`'s `i`, `m` and `s` sub-modifiers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flags {
    pub case_insensitive: bool,
    pub multi_line: bool,
    pub dot_matches_new_line: bool,
}

/// The need of `source`: literals one of which every match contains; `None` when nothing can
/// be said (or the expression does not parse, which compiling it reports).
pub(crate) fn regex_need(source: &str, flags: Flags) -> Option<Need> {
    let hir = ParserBuilder::new()
        .case_insensitive(flags.case_insensitive)
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_matches_new_line)
        .build()
        .parse(source)
        .ok()?;
    need(&hir)
}

fn need(hir: &Hir) -> Option<Need> {
    match hir.kind() {
        HirKind::Literal(_) => ascii_literal(hir).and_then(|text| Need::literal(text.to_owned())),
        HirKind::Capture(capture) => need(&capture.sub),
        HirKind::Repetition(repetition) if repetition.min >= 1 => need(&repetition.sub),
        HirKind::Concat(parts) => {
            // Adjacent literals make one longer run, which narrows more than either part.
            let mut needs = Vec::new();
            let mut run = String::new();
            for part in parts {
                match ascii_literal(part) {
                    Some(text) => run.push_str(text),
                    None => {
                        needs.push(Need::literal(std::mem::take(&mut run)));
                        needs.push(need(part));
                    }
                }
            }
            needs.push(Need::literal(run));
            prefilter::all(needs)
        }
        HirKind::Alternation(alternatives) => prefilter::any(alternatives.iter().map(need)),
        // Classes, assertions, the empty expression and optional repetitions hold no text that
        // every match has.
        _ => None,
    }
}

fn ascii_literal(hir: &Hir) -> Option<&str> {
    match hir.kind() {
        HirKind::Literal(literal) => std::str::from_utf8(&literal.0)
            .ok()
            .filter(|text| text.is_ascii()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Flags = Flags {
        case_insensitive: false,
        multi_line: false,
        dot_matches_new_line: false,
    };

    fn literals(source: &str, flags: Flags) -> Option<Vec<String>> {
        regex_need(source, flags).map(|need| need.0)
    }

    #[test]
    fn every_path_through_the_expression_holds_a_literal() {
        let one = |s: &str| Some(vec![s.to_owned()]);
        assert_eq!(
            literals(".+:assumed-role/aws:.+", PLAIN),
            one(":assumed-role/aws:")
        );
        assert_eq!(
            literals(r"^(?:foo|bar)\d+", PLAIN),
            Some(vec!["bar".into(), "foo".into()])
        );
        // Of two parts that must both appear, the one that narrows more.
        assert_eq!(literals(r"^(?:foo|bar)\d+bazz$", PLAIN), one("bazz"));
        assert_eq!(literals(r"(abc)+x", PLAIN), one("abc"));
        assert_eq!(
            literals(r"powershell(\.exe)?\s+-enc", PLAIN),
            one("powershell")
        );
        // Too short, optional, or a class: nothing every match holds.
        for source in [
            r"ab.+",
            r"(?:abcdef)?x",
            r"[a-z]+",
            r"abc|de",
            r"\w{3,}",
            "é+",
        ] {
            assert_eq!(literals(source, PLAIN), None, "{source}");
        }
    }

    #[test]
    fn case_folded_letters_are_no_literal() {
        let folded = Flags {
            case_insensitive: true,
            ..PLAIN
        };
        assert_eq!(literals("mimikatz", folded), None);
        assert_eq!(literals("(?i)mimikatz", PLAIN), None);
        // Digits and punctuation fold to themselves.
        assert_eq!(literals("x:/1234/", folded), Some(vec![":/1234/".into()]));
    }
}
