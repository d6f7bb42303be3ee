//! Password hashing with argon2id, and generated passwords.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{AccessError, Secret};

/// The shortest password a user may set.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest: argon2 takes any length, but hashing megabytes on every sign-in attempt
/// would hand attackers a cheap way to burn CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Characters of generated passwords: letters and digits without the ones people misread
/// (`0`/`O`, `1`/`l`/`I`), so a password read off a terminal can be typed back.
const GENERATED_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const GENERATED_CHARS: usize = 24;

/// The salt's length in bytes: 16, as the PHC guidelines and argon2's own docs recommend.
const SALT_BYTES: usize = 16;

/// argon2id with the argon2 crate's defaults (19 MiB, two passes, one lane), which are
/// OWASP's recommended minimum: about 20-40 ms a hash on a server core. Verification reads
/// the parameters from the stored PHC string, so raising these later only affects new hashes.
fn hasher() -> Result<Argon2<'static>, AccessError> {
    let params = Params::new(
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST,
        None,
    )
    .map_err(|e| AccessError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A PHC string (`$argon2id$v=19$...`) for `password`, with a fresh salt.
pub fn hash(password: &str) -> Result<String, AccessError> {
    let mut salt_bytes = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt_bytes).map_err(|e| AccessError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AccessError::Hash(e.to_string()))?;
    let hashed = hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AccessError::Hash(e.to_string()))?;
    Ok(hashed.to_string())
}

/// Whether `password` matches the PHC string `hash`. A malformed hash is an error.
pub fn verify(password: &str, hash: &str) -> Result<bool, AccessError> {
    let parsed = PasswordHash::new(hash)
        .map_err(|e| AccessError::Corrupt(format!("a password hash does not parse: {e}")))?;
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return Err(AccessError::Corrupt(format!(
            "a password hash uses {}, not argon2id",
            parsed.algorithm
        )));
    }
    #[cfg(test)]
    tests::VERIFICATIONS.with(|count| count.set(count.get() + 1));
    // Argon2's verifier takes the parameters from the PHC string, not from `hasher()`.
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(AccessError::Hash(e.to_string())),
    }
}

/// A random password for a new user, printed once: 24 characters from an unambiguous alphabet.
pub fn generate() -> Result<Secret, AccessError> {
    // Rejection sampling keeps every character equally likely: bytes at or above the largest
    // multiple of the alphabet's length would otherwise favour its first characters.
    let alphabet_len = GENERATED_ALPHABET.len();
    let unbiased_below = 256 - 256 % alphabet_len;
    let mut password = String::with_capacity(GENERATED_CHARS);
    let mut pool = [0u8; 64];
    while password.len() < GENERATED_CHARS {
        getrandom::fill(&mut pool).map_err(|e| AccessError::Random(e.to_string()))?;
        for byte in pool {
            if password.len() == GENERATED_CHARS {
                break;
            }
            if usize::from(byte) < unbiased_below {
                password.push(char::from(
                    GENERATED_ALPHABET[usize::from(byte) % alphabet_len],
                ));
            }
        }
    }
    Ok(Secret::new(password))
}

/// Checks a password someone chose, saying what is wrong.
pub fn check_strength(password: &str) -> Result<(), AccessError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccessError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccessError::Invalid(format!(
            "a password may be at most {MAX_PASSWORD_BYTES} bytes long"
        )));
    }
    let mut chars = password.chars();
    if let Some(first) = chars.next() {
        if chars.all(|c| c == first) {
            return Err(AccessError::Invalid(
                "a password of one character repeated is too easy to guess".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Argon2 verifications run on this thread: lets tests see that work was done
        /// without timing it (each test runs on a thread of its own).
        pub(crate) static VERIFICATIONS: Cell<usize> = const { Cell::new(0) };
    }

    /// How many argon2 verifications `f` ran.
    pub(crate) fn verifications_in<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = VERIFICATIONS.with(Cell::get);
        let out = f();
        (out, VERIFICATIONS.with(Cell::get) - before)
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let first = hash("correct horse battery").unwrap();
        let second = hash("correct horse battery").unwrap();
        assert!(
            first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{first}"
        );
        assert_ne!(first, second, "each hash has its own salt");
        assert!(verify("correct horse battery", &first).unwrap());
        assert!(verify("correct horse battery", &second).unwrap());
        assert!(!verify("correct horse batterx", &first).unwrap());
        assert!(!verify("", &first).unwrap());
    }

    #[test]
    fn malformed_or_foreign_hashes_are_errors() {
        assert!(matches!(
            verify("x", "not a hash"),
            Err(AccessError::Corrupt(_))
        ));
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$6o1w0b1sPa+5hHjcEYOdhw";
        assert!(matches!(verify("x", argon2i), Err(AccessError::Corrupt(_))));
    }

    #[test]
    fn generated_passwords_are_long_unambiguous_and_differ() {
        let first = generate().unwrap();
        let second = generate().unwrap();
        assert_eq!(first.expose().len(), GENERATED_CHARS);
        assert_ne!(first, second);
        for c in first.expose().bytes().chain(second.expose().bytes()) {
            assert!(GENERATED_ALPHABET.contains(&c), "{}", char::from(c));
            assert!(!b"0O1lI".contains(&c));
        }
        assert!(check_strength(first.expose()).is_ok());
    }

    #[test]
    fn generated_characters_cover_the_alphabet() {
        // 50 passwords are 1200 draws over 56 characters: each is missed with odds of
        // about e^-21, so a gap means a biased or truncated alphabet, not bad luck.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.extend(generate().unwrap().expose().bytes());
        }
        assert_eq!(seen.len(), GENERATED_ALPHABET.len());
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        let short = check_strength("elevenchars").unwrap_err().to_string();
        assert!(short.contains("at least 12"), "{short}");
        assert!(check_strength("twelve chars").is_ok());
        // Twelve characters, more than twelve bytes: characters are what count.
        assert!(check_strength("ééééééééééé").is_err());
        assert!(check_strength("éééééééééééa").is_ok());
        let repeated = check_strength("aaaaaaaaaaaaaaaa").unwrap_err().to_string();
        assert!(repeated.contains("repeated"), "{repeated}");
        let long = "ab".repeat(MAX_PASSWORD_BYTES / 2 + 1);
        assert!(check_strength(&long)
            .unwrap_err()
            .to_string()
            .contains("at most"));
        assert!(check_strength(&"ab".repeat(MAX_PASSWORD_BYTES / 2)).is_ok());
    }
}
