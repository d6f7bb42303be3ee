//! Playbook files: which alerts a playbook answers, in which mode, with which actions.
//!
//! A playbook is one YAML file in a configured directory:
//!
//! ```yaml
//! id: contain-attacker-key
//! title: Deactivate an access key minted for another user
//! rules: [6968dbfa-1c4d-425b-b5cc-a1bae6645e4e]   # and/or
//! tags: [attack.persistence]
//! mode: approval            # automatic | approval | dry-run
//! actions:
//!   - action: aws.iam.deactivate_access_key
//!     key: created          # the key the event's call created (default), or `caller`
//! ```
//!
//! Files are read strictly: an unknown key, a missing one or a wrong type is an error naming
//! the file and line, and start-up stops on it, because a playbook that silently did less than
//! it says is worse than none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigil_event::Alert;

/// How a playbook's actions are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Planned and executed at once.
    Automatic,
    /// Planned; executed once an analyst approves it on the alert's page or through the API.
    Approval,
    /// Planned and recorded; nothing is changed.
    DryRun,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Automatic => "automatic",
            Mode::Approval => "approval",
            Mode::DryRun => "dry-run",
        }
    }
}

/// One action of a playbook as written: its name and its own parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ActionSpec {
    pub action: String,
    /// The action's parameters; each action checks its own and refuses unknown ones.
    #[serde(flatten)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// A playbook as loaded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub id: String,
    pub title: String,
    /// Rule ids whose alerts this playbook answers.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Alert tags this playbook answers (any one of them).
    #[serde(default)]
    pub tags: Vec<String>,
    pub mode: Mode,
    pub actions: Vec<ActionSpec>,
    /// The file it was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// Why a playbook could not be loaded; always names the file, and the line when known.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("cannot read playbooks in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

/// Longest id accepted: it is part of run ids, URLs and audit records.
const MAX_ID_BYTES: usize = 64;

impl Playbook {
    /// Whether `alert` is one this playbook answers: its rule is listed, or one of its tags.
    pub fn matches(&self, alert: &Alert) -> bool {
        self.rules.contains(&alert.rule_id) || self.tags.iter().any(|tag| alert.tags.contains(tag))
    }

    /// Reads one playbook from `text`, naming `file` in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Playbook, PlaybookError> {
        let invalid = |message: String| PlaybookError::Invalid {
            file: file.to_owned(),
            message,
        };
        let mut playbook: Playbook =
            vigil_detect::from_yaml_str(text).map_err(|e| invalid(e.to_string()))?;
        playbook.file = file.to_owned();
        if playbook.id.is_empty()
            || playbook.id.len() > MAX_ID_BYTES
            || !playbook
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(invalid(format!(
                "id {:?}: use 1 to {MAX_ID_BYTES} letters, digits, '-', '_' or '.'",
                playbook.id
            )));
        }
        if playbook.rules.is_empty() && playbook.tags.is_empty() {
            return Err(invalid(
                "bind the playbook to alerts: give `rules` (rule ids), `tags`, or both".into(),
            ));
        }
        if playbook.actions.is_empty() {
            return Err(invalid(
                "`actions` is empty: name at least one action".into(),
            ));
        }
        Ok(playbook)
    }
}

/// Reads every `*.yml` / `*.yaml` file of `dirs` (a file may also be named directly), in
/// name order. Two playbooks with one id are refused: runs are keyed by it.
pub fn load_dirs(dirs: &[PathBuf]) -> Result<Vec<Playbook>, PlaybookError> {
    let mut files = Vec::new();
    for dir in dirs {
        if dir.is_file() {
            files.push(dir.clone());
            continue;
        }
        let entries = std::fs::read_dir(dir).map_err(|source| PlaybookError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.is_file()
                    && matches!(
                        path.extension().and_then(|e| e.to_str()),
                        Some("yml" | "yaml")
                    )
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    let mut playbooks: Vec<Playbook> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| PlaybookError::Io {
            path: file.clone(),
            source,
        })?;
        let playbook = Playbook::parse(&text, &file)?;
        if let Some(other) = playbooks.iter().find(|p| p.id == playbook.id) {
            return Err(PlaybookError::Invalid {
                file,
                message: format!(
                    "id {:?} is already used by {}",
                    playbook.id,
                    other.file.display()
                ),
            });
        }
        playbooks.push(playbook);
    }
    Ok(playbooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Playbook, PlaybookError> {
        Playbook::parse(text, Path::new("playbooks/x.yml"))
    }

    #[test]
    fn a_playbook_reads_with_its_actions_and_mode() {
        let playbook = parse(
            "id: p1\ntitle: T\nrules: [r1]\nmode: dry-run\nactions:\n  - action: aws.iam.deactivate_access_key\n    key: caller\n",
        )
        .unwrap();
        assert_eq!(playbook.mode, Mode::DryRun);
        assert_eq!(playbook.actions[0].action, "aws.iam.deactivate_access_key");
        assert_eq!(playbook.actions[0].params["key"], "caller");
    }

    #[test]
    fn unknown_keys_and_bad_modes_are_refused_with_file_and_line() {
        let error = parse("id: p1\ntitle: T\nrules: [r1]\nmode: automatic\nactoins: []\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("playbooks/x.yml"), "{error}");
        assert!(error.contains("line 5"), "{error}");
        assert!(error.contains("actoins"), "{error}");
        let error = parse("id: p1\ntitle: T\nrules: [r1]\nmode: sometimes\nactions: []\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 4"), "{error}");
        let error = parse("id: p1\ntitle: T\nmode: automatic\nactions: [{action: webhook}]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("rules"), "{error}");
        let error = parse(
            "id: 'a/b'\ntitle: T\ntags: [x]\nmode: automatic\nactions: [{action: webhook}]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("id"), "{error}");
    }

    #[test]
    fn the_shipped_playbooks_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks");
        let playbooks = load_dirs(&[dir]).unwrap();
        assert!(playbooks.len() >= 2, "{playbooks:?}");
        for playbook in &playbooks {
            crate::actions::build_all(playbook, &crate::RespondConfig::default()).unwrap();
        }
    }
}
