//! The bodies webhooks receive.
//!
//! An alert's group-by values come from events, so an attacker chooses them. In Slack's
//! markup `<...>` makes a link or a mention (`<!channel>`), so those values are escaped before
//! they go into the text.

use serde_json::{json, Value};
use vigil_event::Alert;

/// Vigil's own message: the whole alert, and a link to it.
pub fn json_message(alert: &Alert, url: Option<&str>) -> Value {
    json!({
        "type": "vigil.alert",
        "alert": alert,
        "url": url,
    })
}

/// A Slack incoming-webhook message: one line saying what fired, then the details.
pub fn slack_message(alert: &Alert, url: Option<&str>) -> Value {
    let title = escape(&alert.rule_title);
    let headline = match url {
        // The URL is ours (the configured base and a hex id), so it needs no escaping beyond
        // what `escape` does to the title inside the link.
        Some(url) => format!("<{url}|{title}>"),
        None => title,
    };
    let mut text = format!(
        "*[{}]* {headline}\nsource: {} ({}) · events: {} · last event: {}",
        alert.level.as_str().to_uppercase(),
        escape(&alert.source.name),
        escape(&alert.source.kind),
        alert.event_ids.len(),
        alert.time.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    if !alert.group.is_empty() {
        let group: Vec<String> = alert
            .group
            .iter()
            .map(|(field, value)| format!("{}=`{}`", escape(field), escape_code(value)))
            .collect();
        text.push_str(&format!("\ngroup: {}", group.join(", ")));
    }
    if !alert.tags.is_empty() {
        text.push_str(&format!("\ntags: {}", escape(&alert.tags.join(", "))));
    }
    json!({ "text": text })
}

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
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use vigil_event::{Level, LogSource, Source};

    use super::*;

    fn alert(group: BTreeMap<String, String>) -> Alert {
        let time = chrono::Utc
            .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
            .unwrap();
        Alert {
            id: Alert::derive_id("rule-1", &[]),
            rule_id: "rule-1".into(),
            rule_title: "Trail <stopped> & more".into(),
            level: Level::High,
            tags: vec!["attack.t1562".into()],
            event_ids: vec![],
            time,
            detected: time,
            source: Source {
                kind: "cloudtrail".into(),
                name: "trail-eu".into(),
            },
            logsource: LogSource::default(),
            group,
            matched: Vec::new(),
        }
    }

    #[test]
    fn slack_text_escapes_what_attackers_control() {
        let group = BTreeMap::from([(
            "user".to_owned(),
            "<!channel> `x`\n*[CRITICAL]* fake".to_owned(),
        )]);
        let message = slack_message(&alert(group), Some("https://vigil.example.com/alerts/ab"));
        let text = message["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                "*[HIGH]* <https://vigil.example.com/alerts/ab|Trail &lt;stopped&gt; &amp; more>"
            ),
            "{text}"
        );
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(
            text.contains("user=`&lt;!channel&gt; 'x' *[CRITICAL]* fake`"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "{text}");
    }

    #[test]
    fn json_carries_the_alert_and_its_link() {
        let alert = alert(BTreeMap::new());
        let message = json_message(&alert, None);
        assert_eq!(message["type"], "vigil.alert");
        assert_eq!(message["alert"]["id"], alert.id.to_string());
        assert_eq!(message["alert"]["level"], "high");
        assert!(message["url"].is_null());
    }
}
