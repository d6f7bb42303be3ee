//! The API token: configured, or generated on first start and kept in the data directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vigil_ui::ApiToken;

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

pub fn resolve(configured: Option<&str>, data_dir: &Path) -> Result<(ApiToken, TokenOrigin)> {
    if let Some(token) = configured {
        let token = token.trim();
        if token.len() < 16 {
            bail!("the configured API token must be at least 16 characters");
        }
        return Ok((ApiToken::new(token), TokenOrigin::Configured));
    }
    let path = data_dir.join(TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(stored) => {
            let mode = fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the API token file is readable by others; tightening it to 0600");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            }
            let stored = stored.trim();
            if stored.is_empty() {
                bail!(
                    "{} is empty; delete it to generate a new token",
                    path.display()
                );
            }
            Ok((ApiToken::new(stored), TokenOrigin::Stored(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = ApiToken::generate().context("cannot generate an API token")?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            writeln!(file, "{}", token.expose())?;
            file.sync_all()?;
            Ok((token, TokenOrigin::Generated(path)))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
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
