//! The API token: configured, or generated on first start and kept in the data directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use vigil_ui::ApiToken;

use crate::config::validate_api_token;
use crate::error::RunError;

pub const TOKEN_FILE: &str = "api-token";

/// Where this run's token came from, which decides what start-up prints.
pub enum TokenOrigin {
    /// From `VIGIL_API_TOKEN` or the config file.
    Configured,
    /// Made just now and written to this file; printed once.
    Generated(PathBuf),
    /// Read from the file an earlier run wrote.
    Stored(PathBuf),
}

pub fn resolve(
    configured: Option<&str>,
    data_dir: &Path,
) -> Result<(ApiToken, TokenOrigin), RunError> {
    if let Some(token) = configured {
        validate_api_token(Some(token))?;
        return Ok((ApiToken::new(token.trim()), TokenOrigin::Configured));
    }
    let path = data_dir.join(TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(stored) => {
            let mode = fs::metadata(&path)
                .map_err(RunError::io("cannot read", &path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the API token file is readable by others; tightening it to 0600");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .map_err(RunError::io("cannot make private", &path))?;
            }
            let stored = stored.trim();
            if stored.is_empty() {
                return Err(RunError::EmptyToken(path));
            }
            Ok((ApiToken::new(stored), TokenOrigin::Stored(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = ApiToken::generate().map_err(|e| RunError::GenerateToken(Box::new(e)))?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(RunError::io("cannot create", &path))?;
            writeln!(file, "{}", token.expose())
                .and_then(|()| file.sync_all())
                .map_err(RunError::io("cannot write", &path))?;
            Ok((token, TokenOrigin::Generated(path)))
        }
        Err(e) => Err(RunError::io("cannot read", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (first, origin) = resolve(None, dir.path()).unwrap();
        assert!(matches!(origin, TokenOrigin::Generated(_)));
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, origin) = resolve(None, dir.path()).unwrap();
        assert!(matches!(origin, TokenOrigin::Stored(_)));
        assert_eq!(first.expose(), second.expose());
    }

    #[test]
    fn configured_token_wins_and_must_be_long() {
        let dir = tempfile::tempdir().unwrap();
        let (token, _) = resolve(Some("0123456789abcdef"), dir.path()).unwrap();
        assert_eq!(token.expose(), "0123456789abcdef");
        assert!(!dir.path().join(TOKEN_FILE).exists());
        assert!(resolve(Some("short"), dir.path()).is_err());
    }
}
