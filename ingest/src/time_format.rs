//! Time formats read into chrono's items once, for the records whose times are not RFC 3339.

use std::sync::OnceLock;

use chrono::format::{self, Item, Parsed, StrftimeItems};

/// A strftime format whose items are read on first use and kept: chrono's `parse_from_str`
/// reads its format again on every call, which was about a tenth of an access log line's cost
/// in `vigil detect` and up to three reads a Flask app record.
pub(crate) struct TimeFormat {
    format: &'static str,
    items: OnceLock<Vec<Item<'static>>>,
}

impl TimeFormat {
    pub const fn new(format: &'static str) -> Self {
        TimeFormat {
            format,
            items: OnceLock::new(),
        }
    }

    /// The strftime format.
    #[cfg(test)]
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// What `text` says under the format, as chrono's `parse_from_str` reads it before it
    /// builds a time; `None` where the text does not fit the format.
    pub fn parse(&self, text: &str) -> Option<Parsed> {
        let items = self.items.get_or_init(|| {
            StrftimeItems::new(self.format)
                .parse()
                .expect("the time formats are valid strftime")
        });
        let mut parsed = Parsed::new();
        format::parse(&mut parsed, text, items.iter()).ok()?;
        Some(parsed)
    }
}
