use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 128-bit identifier, written as 32 lowercase hex digits.
///
/// Ids are derived with BLAKE3 rather than a fast non-cryptographic hash: records are
/// attacker-controlled, and a collision would let one record overwrite another in the index.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; 16]);

impl Id {
    /// Derives an id from a domain (what kind of thing is identified) and its parts.
    ///
    /// Each part is length-prefixed, so `["ab", "c"]` and `["a", "bc"]` give different ids.
    pub fn derive(domain: &str, parts: &[&[u8]]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(domain);
        for part in parts {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        Id(out)
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Id(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every indexed event and every alert writes its id at least once; one `write_str`
        // of a stack buffer beats sixteen formatted writes.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 32];
        for (pair, byte) in text.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        f.write_str(std::str::from_utf8(&text).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an id is 32 hex digits, got {0:?}")]
pub struct IdParseError(String);

impl FromStr for Id {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IdParseError(s.chars().take(40).collect());
        if s.len() != 32 || !s.is_ascii() {
            return Err(err());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Id(out))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = Id::derive("vigil test", &[b"a", b"b"]);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        let by_byte: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(text, by_byte);
        assert_eq!(text.parse::<Id>().unwrap(), id);
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(
            Id::derive("d", &[b"ab", b"c"]),
            Id::derive("d", &[b"a", b"bc"])
        );
        assert_ne!(Id::derive("d1", &[b"x"]), Id::derive("d2", &[b"x"]));
    }

    #[test]
    fn rejects_bad_text() {
        assert!("xyz".parse::<Id>().is_err());
        assert!("zz".repeat(16).parse::<Id>().is_err());
        assert!("é".repeat(16).parse::<Id>().is_err());
    }
}
