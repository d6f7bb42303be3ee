//! Value modifiers: the `|name` suffixes of a detection key, such as `CommandLine|contains|all`.

use crate::pattern::Anchor;

/// The modifiers of one detection key, as far as this engine supports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Modifiers {
    /// Set by `contains`, `startswith` or `endswith`; `None` when none is given.
    pub anchor: Option<Anchor>,
    /// `all`: every value of the list must match, instead of any.
    pub all: bool,
}

/// Modifiers of the Sigma specification that this engine does not implement yet. A rule using
/// one is refused rather than evaluated with the modifier ignored, which would silently change
/// what it detects.
const UNSUPPORTED: &[&str] = &[
    "base64",
    "base64offset",
    "cased",
    "cidr",
    "day",
    "exists",
    "expand",
    "fieldref",
    "gt",
    "gte",
    "hour",
    "i",
    "ignorecase",
    "lt",
    "lte",
    "m",
    "minute",
    "month",
    "multiline",
    "neq",
    "re",
    "s",
    "dotall",
    "utf16",
    "utf16be",
    "utf16le",
    "week",
    "wide",
    "windash",
    "year",
];

/// Splits a detection key into its field name and modifiers. The field name is empty for
/// keyword searches written as `'|all'`.
pub(crate) fn parse_key(key: &str) -> Result<(&str, Modifiers), String> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mut modifiers = Modifiers::default();
    for name in parts {
        let anchor = match name {
            "contains" => Anchor::Anywhere,
            "startswith" => Anchor::Start,
            "endswith" => Anchor::End,
            "all" if modifiers.all => return Err("modifier `all` is given twice".into()),
            "all" => {
                modifiers.all = true;
                continue;
            }
            "" => return Err(format!("empty modifier in `{key}`")),
            name if UNSUPPORTED.contains(&name) => {
                return Err(format!("modifier `{name}` is not supported yet"))
            }
            name => return Err(format!("unknown modifier `{name}`")),
        };
        if let Some(previous) = modifiers.anchor {
            return Err(format!(
                "modifier `{name}` conflicts with `{}`",
                anchor_name(previous)
            ));
        }
        modifiers.anchor = Some(anchor);
    }
    Ok((field, modifiers))
}

fn anchor_name(anchor: Anchor) -> &'static str {
    match anchor {
        Anchor::Whole => "",
        Anchor::Start => "startswith",
        Anchor::End => "endswith",
        Anchor::Anywhere => "contains",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_field_and_modifiers() {
        assert_eq!(parse_key("Image").unwrap(), ("Image", Modifiers::default()));
        assert_eq!(
            parse_key("CommandLine|contains|all").unwrap(),
            (
                "CommandLine",
                Modifiers {
                    anchor: Some(Anchor::Anywhere),
                    all: true
                }
            )
        );
        let (field, modifiers) = parse_key("|all").unwrap();
        assert_eq!(field, "");
        assert!(modifiers.all && modifiers.anchor.is_none());
        assert_eq!(
            parse_key("a|all|endswith").unwrap().1.anchor,
            Some(Anchor::End)
        );
    }

    #[test]
    fn refuses_unknown_unsupported_and_conflicting() {
        assert_eq!(
            parse_key("a|bogus").unwrap_err(),
            "unknown modifier `bogus`"
        );
        assert_eq!(
            parse_key("a|re").unwrap_err(),
            "modifier `re` is not supported yet"
        );
        assert!(parse_key("a|contains|endswith")
            .unwrap_err()
            .contains("conflicts"));
        assert!(parse_key("a|all|all").is_err());
        assert!(parse_key("a||contains").is_err());
        // Modifier names are case-sensitive, as in pySigma.
        assert!(parse_key("a|Contains").is_err());
    }
}
