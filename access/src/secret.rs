//! Random secrets (session ids, API tokens, generated passwords) and how they are kept.

use std::fmt;

/// A secret shown to its holder once: a token, a session id, a generated password. Its
/// `Debug` hides it, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// `bytes` random bytes from the operating system, hex encoded.
    pub fn random(bytes: usize) -> Result<Secret, crate::AccessError> {
        let mut raw = vec![0u8; bytes];
        getrandom::fill(&mut raw).map_err(|e| crate::AccessError::Random(e.to_string()))?;
        Ok(Secret(raw.iter().map(|b| format!("{b:02x}")).collect()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database keeps of a high-entropy secret: its BLAKE3 hash, hex encoded. A
    /// fast hash suffices because the secret is 32 random bytes, not a password.
    pub fn digest(&self) -> String {
        digest(&self.0)
    }
}

/// The stored form of a high-entropy secret.
pub fn digest(secret: &str) -> String {
    blake3::derive_key("vigil access secret v1", secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_hidden_from_debug_and_kept_as_a_keyed_digest() {
        let first = Secret::random(32).unwrap();
        let second = Secret::random(32).unwrap();
        assert_ne!(first, second);
        assert_eq!(first.expose().len(), 64);
        assert!(first.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(format!("{first:?}"), "Secret(..)");
        assert_eq!(first.digest(), digest(first.expose()));
        assert_eq!(first.digest().len(), 64);
        assert_ne!(first.digest(), second.digest());
        // Not a bare hash: a digest from elsewhere does not match ours.
        assert_ne!(
            first.digest(),
            blake3::hash(first.expose().as_bytes()).to_hex().as_str()
        );
    }
}
