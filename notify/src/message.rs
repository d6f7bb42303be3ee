//! Escaping for Slack's markup, which the Slack receiver's blocks and text use.
//!
//! Alert titles and group-by values come from rule files and events, so an attacker chooses
//! them. In Slack's markup `<...>` makes a link or a mention (`<!channel>`), so they are
//! escaped before they go into a message.

/// Slack's three control characters, as its formatting guide asks.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Escaped for inside backticks: a backtick would end the code span early, and newlines
/// would let a value fake further lines of the message.
pub(crate) fn escape_code(text: &str) -> String {
    escape(text)
        .chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_links_and_fake_lines_stay_text() {
        assert_eq!(
            escape("<!channel> & <x|y>"),
            "&lt;!channel&gt; &amp; &lt;x|y&gt;"
        );
        assert_eq!(
            escape_code("<!here> `x`\n*[CRITICAL]* fake"),
            "&lt;!here&gt; 'x' *[CRITICAL]* fake"
        );
    }
}
