//! The rules disabled at runtime, kept in the data directory (`rules-disabled.json`) so a
//! restart does not turn them back on. The file is replaced whole, written beside it, synced
//! and renamed over it, so a crash leaves the old list or the new one, never half of one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "rules-disabled.json";

/// Who disabled a rule, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    /// By rule id.
    disabled: BTreeMap<String, Disabled>,
}

const VERSION: u32 = 1;

/// Why the list could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DisabledError {
    #[error("{}: cannot read the disabled rules: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a list of disabled rules ({message}); fix or remove it", path.display())]
    Malformed { path: PathBuf, message: String },
    #[error("{}: cannot write the disabled rules: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The disabled rules by id, and the file they are kept in.
#[derive(Debug, Clone)]
pub struct DisabledRules {
    path: PathBuf,
    rules: BTreeMap<String, Disabled>,
}

impl DisabledRules {
    /// Reads the list kept in `data_dir`; none when the file does not exist yet. Writes
    /// nothing, so start-up can read it before it opens the data directory.
    pub fn read_in(data_dir: &Path) -> Result<DisabledRules, DisabledError> {
        let path = data_dir.join(FILE_NAME);
        let rules = match fs::read(&path) {
            Ok(bytes) => {
                let on_disk: OnDisk =
                    serde_json::from_slice(&bytes).map_err(|e| DisabledError::Malformed {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                if on_disk.version != VERSION {
                    return Err(DisabledError::Malformed {
                        path,
                        message: format!("unknown version {}", on_disk.version),
                    });
                }
                on_disk.disabled
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(DisabledError::Read { path, source }),
        };
        Ok(DisabledRules { path, rules })
    }

    pub fn ids(&self) -> std::collections::BTreeSet<String> {
        self.rules.keys().cloned().collect()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.rules.contains_key(id)
    }

    /// This list with `id` disabled (by `actor`) or enabled; unchanged on disk until saved.
    pub fn with(&self, id: &str, enabled: bool, actor: &str) -> DisabledRules {
        let mut next = self.clone();
        if enabled {
            next.rules.remove(id);
        } else {
            next.rules.entry(id.to_owned()).or_insert(Disabled {
                by: actor.to_owned(),
                at: Utc::now(),
            });
        }
        next
    }

    /// Replaces the file with this list, durably.
    pub fn save(&self) -> Result<(), DisabledError> {
        let error = |source| DisabledError::Write {
            path: self.path.clone(),
            source,
        };
        let on_disk = OnDisk {
            version: VERSION,
            disabled: self.rules.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&on_disk).expect("the list serialises");
        let temporary = self.path.with_extension("json.tmp");
        {
            let mut file = File::create(&temporary).map_err(error)?;
            file.write_all(&bytes).map_err(error)?;
            file.sync_all().map_err(error)?;
        }
        fs::rename(&temporary, &self.path).map_err(error)?;
        // The rename itself is durable once the directory is synced.
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(error)?;
        }
        Ok(())
    }
}
