//! The query text the search page writes into its links: a record path and a value as one
//! filter clause of the query language (store/QUERY.md), whatever they hold, and the clause
//! added to the query there is; and the percent-encoding that carries it in a URL.

use serde_json::Value;

/// Percent-encodes everything but the unreserved characters, for a query parameter.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `text` as one phrase term of the query language: quoted, with the two characters a
/// phrase gives meaning to (`"` and `\`) escaped, so that whatever it holds (spaces,
/// colons, parentheses, `OR`) stays one term.
pub(crate) fn quote_term(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A record path as a field name of the query language: every character that could end the
/// name or mean something (`:`, spaces, parentheses, a leading `-`, wildcards) escaped.
pub(crate) fn quote_field(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c.is_alphanumeric() || c == '_' || c == '.') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The clause `path:value` (or `-path:value`), a value as its own term: numbers and
/// booleans bare, as the store matches them, anything else as a quoted phrase.
pub(crate) fn filter_clause(path: &str, value: &Value, exclude: bool) -> String {
    let value = match value {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => quote_term(s),
        other => quote_term(&other.to_string()),
    };
    format!(
        "{}{}:{value}",
        if exclude { "-" } else { "" },
        quote_field(path)
    )
}

/// `query` narrowed by `clause`. A query with an `OR` outside parentheses is grouped first,
/// since the added clause would otherwise bind to its last alternative only; others are not,
/// so that adding filter after filter does not nest ever deeper.
pub(crate) fn add_clause(query: &str, clause: &str) -> String {
    let query = query.trim();
    if query.is_empty() || query == "*" {
        clause.to_owned()
    } else if has_top_level_or(query) {
        format!("({query}) {clause}")
    } else {
        format!("{query} {clause}")
    }
}

/// Whether `query` has an `OR` operator outside parentheses, phrases and regexes. Unsure
/// cases (unbalanced text) count as having one: grouping is then merely redundant.
fn has_top_level_or(query: &str) -> bool {
    let mut depth = 0i32;
    let mut delimiter: Option<char> = None;
    let mut word = String::new();
    let mut chars = query.chars().peekable();
    let mut found = false;
    while let Some(c) = chars.next() {
        if let Some(d) = delimiter {
            match c {
                '\\' => {
                    chars.next();
                }
                c if c == d => delimiter = None,
                _ => {}
            }
            continue;
        }
        let ends_word = c.is_whitespace() || matches!(c, '(' | ')' | '"');
        if ends_word {
            found |= depth == 0 && word == "OR";
            word.clear();
        }
        match c {
            '\\' => {
                word.push(c);
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            '"' => delimiter = Some('"'),
            '/' if word.is_empty() || word.ends_with(':') => delimiter = Some('/'),
            c if !c.is_whitespace() => word.push(c),
            _ => {}
        }
    }
    found |= depth == 0 && word == "OR";
    found || depth != 0 || delimiter.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_terms_keep_their_text_and_stay_one_term() {
        for (text, quoted) in [
            ("plain", r#""plain""#),
            ("two words", r#""two words""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            (r"C:\temp\", r#""C:\\temp\\""#),
            ("a:b:c", r#""a:b:c""#),
            ("(x) OR y AND NOT z", r#""(x) OR y AND NOT z""#),
            (r#"\" OR *"#, r#""\\\" OR *""#),
        ] {
            assert_eq!(quote_term(text), quoted, "{text}");
            // The store reads it back as exactly one clause with the text unchanged: a
            // quoted term followed by a second clause parses, so it did not swallow or leak.
            let query = format!("f:{quoted} other");
            vigil_store::check_query(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
        }
        // Unescaped, a quote would end the phrase early and leave `OR` to the parser.
        assert!(vigil_store::check_query(r#"f:"" OR (""#).is_err());
        assert!(vigil_store::check_query(&format!("f:{}", quote_term(r#"" OR ("#))).is_ok());
    }

    #[test]
    fn field_names_are_escaped_and_clauses_narrow_grouped_queries() {
        assert_eq!(quote_field("userIdentity.arn"), "userIdentity.arn");
        assert_eq!(quote_field("-a b:c"), r"\-a\ b\:c");
        vigil_store::check_query(&filter_clause("-a b:(c)", &Value::from("x"), true)).unwrap();
        assert_eq!(
            filter_clause("sc-status", &Value::from(500), false),
            r"sc\-status:500"
        );
        assert_eq!(add_clause("", "x:1"), "x:1");
        assert_eq!(add_clause("a OR b", "x:1"), "(a OR b) x:1");
        assert_eq!(add_clause("(a OR b) c", "x:1"), "(a OR b) c x:1");
        assert_eq!(add_clause(r#"m:"a OR b""#, "x:1"), r#"m:"a OR b" x:1"#);
        assert_eq!(add_clause("v:/a OR b/", "x:1"), "v:/a OR b/ x:1");
        assert_eq!(add_clause("a:OR", "x:1"), "a:OR x:1");
        assert_eq!(add_clause("(a OR b) OR c", "x:1"), "((a OR b) OR c) x:1");
        assert_eq!(add_clause("(a", "x:1"), "((a) x:1");
        assert_eq!(add_clause(r#"m:"unclosed"#, "x:1"), r#"(m:"unclosed) x:1"#);
        assert_eq!(add_clause("a", "x:1"), "a x:1");
    }
}
