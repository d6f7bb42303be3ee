//! Password hashing with argon2id, and generated passwords.

use crate::{AccessError, Secret};

/// The shortest password a user may set.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest: argon2 takes any length, but hashing megabytes on every sign-in attempt
/// would hand attackers a cheap way to burn CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A PHC string (`$argon2id$v=19$...`) for `password`, with a fresh salt.
pub fn hash(password: &str) -> Result<String, AccessError> {
    let _ = password;
    todo!("H1")
}

/// Whether `password` matches the PHC string `hash`. A malformed hash is an error.
pub fn verify(password: &str, hash: &str) -> Result<bool, AccessError> {
    let _ = (password, hash);
    todo!("H1")
}

/// A random password for a new user, printed once: 24 characters from an unambiguous alphabet.
pub fn generate() -> Result<Secret, AccessError> {
    todo!("H1")
}

/// Checks a password someone chose, saying what is wrong.
pub fn check_strength(password: &str) -> Result<(), AccessError> {
    let _ = password;
    todo!("H1")
}
