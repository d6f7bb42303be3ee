//! Value modifiers: the `|name` suffixes of a detection key, such as `CommandLine|contains|all`.
//!
//! This module only reads the names; which chains make sense, and what they do to the values,
//! is decided where a key is compiled into matchers.

use crate::pattern::Anchor;

/// One modifier of the Sigma 2.1 appendix, in the order the key gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Modifier {
    Anchor(Anchor),
    All,
    Exists,
    Cased,
    Neq,
    Windash,
    Re,
    ReFlag(ReFlag),
    Base64,
    Base64Offset,
    Utf16(Utf16),
    Compare(Compare),
    Time(TimePart),
    Cidr,
    Expand,
    FieldRef,
}

/// The sub-modifiers of `re`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReFlag {
    IgnoreCase,
    MultiLine,
    DotAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Utf16 {
    /// `utf16le` and its alias `wide`.
    Le,
    Be,
    /// `utf16`: little-endian after a byte order mark, as pySigma writes it.
    LeWithBom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compare {
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimePart {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Modifier {
    fn from_name(name: &str) -> Option<Modifier> {
        Some(match name {
            "contains" => Modifier::Anchor(Anchor::Anywhere),
            "startswith" => Modifier::Anchor(Anchor::Start),
            "endswith" => Modifier::Anchor(Anchor::End),
            "all" => Modifier::All,
            "exists" => Modifier::Exists,
            "cased" => Modifier::Cased,
            "neq" => Modifier::Neq,
            "windash" => Modifier::Windash,
            "re" => Modifier::Re,
            // pySigma also accepts the long names of the regular expression flags.
            "i" | "ignorecase" => Modifier::ReFlag(ReFlag::IgnoreCase),
            "m" | "multiline" => Modifier::ReFlag(ReFlag::MultiLine),
            "s" | "dotall" => Modifier::ReFlag(ReFlag::DotAll),
            "base64" => Modifier::Base64,
            "base64offset" => Modifier::Base64Offset,
            "utf16le" | "wide" => Modifier::Utf16(Utf16::Le),
            "utf16be" => Modifier::Utf16(Utf16::Be),
            "utf16" => Modifier::Utf16(Utf16::LeWithBom),
            "lt" => Modifier::Compare(Compare::Lt),
            "lte" => Modifier::Compare(Compare::Lte),
            "gt" => Modifier::Compare(Compare::Gt),
            "gte" => Modifier::Compare(Compare::Gte),
            "minute" => Modifier::Time(TimePart::Minute),
            "hour" => Modifier::Time(TimePart::Hour),
            "day" => Modifier::Time(TimePart::Day),
            "week" => Modifier::Time(TimePart::Week),
            "month" => Modifier::Time(TimePart::Month),
            "year" => Modifier::Time(TimePart::Year),
            "cidr" => Modifier::Cidr,
            "expand" => Modifier::Expand,
            "fieldref" => Modifier::FieldRef,
            _ => return None,
        })
    }

    /// The name as written in rules, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Modifier::Anchor(Anchor::Anywhere | Anchor::Whole) => "contains",
            Modifier::Anchor(Anchor::Start) => "startswith",
            Modifier::Anchor(Anchor::End) => "endswith",
            Modifier::All => "all",
            Modifier::Exists => "exists",
            Modifier::Cased => "cased",
            Modifier::Neq => "neq",
            Modifier::Windash => "windash",
            Modifier::Re => "re",
            Modifier::ReFlag(ReFlag::IgnoreCase) => "i",
            Modifier::ReFlag(ReFlag::MultiLine) => "m",
            Modifier::ReFlag(ReFlag::DotAll) => "s",
            Modifier::Base64 => "base64",
            Modifier::Base64Offset => "base64offset",
            Modifier::Utf16(Utf16::Le) => "utf16le",
            Modifier::Utf16(Utf16::Be) => "utf16be",
            Modifier::Utf16(Utf16::LeWithBom) => "utf16",
            Modifier::Compare(Compare::Lt) => "lt",
            Modifier::Compare(Compare::Lte) => "lte",
            Modifier::Compare(Compare::Gt) => "gt",
            Modifier::Compare(Compare::Gte) => "gte",
            Modifier::Time(TimePart::Minute) => "minute",
            Modifier::Time(TimePart::Hour) => "hour",
            Modifier::Time(TimePart::Day) => "day",
            Modifier::Time(TimePart::Week) => "week",
            Modifier::Time(TimePart::Month) => "month",
            Modifier::Time(TimePart::Year) => "year",
            Modifier::Cidr => "cidr",
            Modifier::Expand => "expand",
            Modifier::FieldRef => "fieldref",
        }
    }
}

/// Splits a detection key into its field name and modifiers, in the order given. The field name
/// is empty for keyword searches written as `'|all'`.
pub(crate) fn parse_key(key: &str) -> Result<(&str, Vec<Modifier>), String> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mut modifiers = Vec::new();
    for name in parts {
        if name.is_empty() {
            return Err(format!("empty modifier in `{key}`"));
        }
        // Names are case-sensitive, as in pySigma.
        let Some(modifier) = Modifier::from_name(name) else {
            return Err(format!("unknown modifier `{name}`"));
        };
        if modifiers.contains(&modifier) {
            return Err(format!("modifier `{name}` is given twice"));
        }
        modifiers.push(modifier);
    }
    Ok((field, modifiers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_field_and_modifiers_in_order() {
        assert_eq!(parse_key("Image").unwrap(), ("Image", vec![]));
        assert_eq!(
            parse_key("CommandLine|contains|all").unwrap(),
            (
                "CommandLine",
                vec![Modifier::Anchor(Anchor::Anywhere), Modifier::All]
            )
        );
        assert_eq!(parse_key("|all").unwrap(), ("", vec![Modifier::All]));
        assert_eq!(
            parse_key("a|wide|base64offset|contains").unwrap().1,
            [
                Modifier::Utf16(Utf16::Le),
                Modifier::Base64Offset,
                Modifier::Anchor(Anchor::Anywhere)
            ]
        );
        assert_eq!(
            parse_key("a|re|ignorecase").unwrap().1,
            [Modifier::Re, Modifier::ReFlag(ReFlag::IgnoreCase)]
        );
    }

    #[test]
    fn every_name_reads_back() {
        for name in [
            "contains",
            "startswith",
            "endswith",
            "all",
            "exists",
            "cased",
            "neq",
            "windash",
            "re",
            "i",
            "m",
            "s",
            "base64",
            "base64offset",
            "utf16le",
            "utf16be",
            "utf16",
            "lt",
            "lte",
            "gt",
            "gte",
            "minute",
            "hour",
            "day",
            "week",
            "month",
            "year",
            "cidr",
            "expand",
            "fieldref",
        ] {
            assert_eq!(Modifier::from_name(name).unwrap().name(), name);
        }
    }

    #[test]
    fn refuses_unknown_repeated_and_empty() {
        assert_eq!(
            parse_key("a|bogus").unwrap_err(),
            "unknown modifier `bogus`"
        );
        assert!(parse_key("a|all|all").is_err());
        assert!(parse_key("a|wide|utf16le").is_err());
        assert!(parse_key("a||contains").is_err());
        assert!(parse_key("a|Contains").is_err());
    }
}
