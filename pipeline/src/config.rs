//! Vigil's configuration: defaults, then `vigil.toml`, then `VIGIL_*` variables, then flags.
//!
//! [`Config`] only composes the sections each component owns, and [`Config::validate`] asks
//! each to check itself, so every mistake is reported before anything is opened or bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use vigil_ingest::cloudwatch::firehose::{FirehoseConfig, FirehoseConfigError};
use vigil_ingest::{IngestConfig, IngestConfigError, SourcesConfig, SourcesConfigError};

/// Read from the working directory when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "vigil.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// Where the bus, the indices and the API token live.
    pub data_dir: PathBuf,
    /// Directories of Sigma rules, searched recursively for `.yml` and `.yaml` files. When
    /// neither these nor `--rules` name any, Vigil's own rules, built into the binary.
    pub rules: Vec<PathBuf>,
    /// Field-mapping pipelines (files, or directories of them) the rules load with, so rules
    /// written for other field names (W3C webserver fields, say) match Vigil's events. When
    /// none are named, Vigil's own `pipelines/`, built into the binary.
    #[serde(default = "default_pipelines")]
    pub pipelines: Vec<PathBuf>,
    /// Fixes the API token instead of generating one; `VIGIL_API_TOKEN` is the usual way.
    pub api_token: Option<String>,
    /// Limits every source reads within, and the presets of push sources.
    pub ingest: IngestConfig,
    /// How the store commits, partitions and keeps events.
    pub index: vigil_store::Config,
    /// The Firehose endpoint for CloudWatch subscriptions; off unless a key is set.
    #[serde(default)]
    pub firehose: Option<FirehoseConfig>,
    /// Files to follow and CloudWatch log groups to poll.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// Which stages this process runs; all of them unless Vigil is spread over processes.
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// What joins the stages: the embedded on-disk log, or Kafka.
    #[serde(default)]
    pub bus: BusConfig,
    /// Where alerts are sent as they are raised.
    #[serde(default)]
    pub notify: vigil_notify::NotifyConfig,
    /// Playbooks: automated, approved or dry-run responses to alerts (see respond/).
    #[serde(default)]
    pub respond: vigil_respond::RespondConfig,
    /// How late events may arrive for the live correlation windows, and how many groups each
    /// correlation keeps.
    #[serde(default)]
    pub detect: crate::stages::DetectConfig,
    /// Deadlines and the connection cap of the HTTP listener.
    #[serde(default)]
    pub server: crate::server::ServerConfig,
    /// Sessions, sign-in throttling and the trusted single sign-on proxy.
    #[serde(default)]
    pub auth: vigil_access::AccessConfig,
    /// Serve HTTPS with this certificate and key; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
}

/// A stage, or a set of stages, one process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every stage below.
    All,
    /// Push endpoints, file tailers and CloudWatch polling, onto the events topic.
    Ingest,
    /// Rules and correlations over the events topic, onto the alerts topic.
    Detect,
    /// Events, alerts and quarantined records into the local store.
    Index,
    /// The pages and the search and alert API over the local store.
    Ui,
    /// Alerts to the configured webhooks.
    Notify,
}

impl Role {
    /// Every role, in the order `--help` lists them.
    pub const ALL: [Role; 6] = [
        Role::All,
        Role::Ingest,
        Role::Detect,
        Role::Index,
        Role::Ui,
        Role::Notify,
    ];

    /// The name `--role` and `roles = [...]` take.
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingest => "ingest",
            Role::Detect => "detect",
            Role::Index => "index",
            Role::Ui => "ui",
            Role::Notify => "notify",
        }
    }

    /// What the role runs, for the command line's help.
    pub fn description(self) -> &'static str {
        match self {
            Role::All => "Every stage below",
            Role::Ingest => {
                "Push endpoints, file tailers and CloudWatch polling, onto the events topic"
            }
            Role::Detect => "Rules and correlations over the events topic, onto the alerts topic",
            Role::Index => "Events, alerts and quarantined records into the local store",
            Role::Ui => "The pages and the search and alert API over the local store",
            Role::Notify => "Alerts to the configured webhooks",
        }
    }

    /// The role named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }
}

fn default_roles() -> Vec<Role> {
    vec![Role::All]
}

/// The `[bus]` section: each part's settings belong to the bus crate that reads them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub backend: vigil_bus::Backend,
    pub topics: vigil_bus::Topics,
    pub kafka: vigil_bus_kafka::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("vigil-data"),
            // None configured: the rules built into the binary (see `src/rules.rs`).
            rules: Vec::new(),
            pipelines: default_pipelines(),
            api_token: None,
            ingest: IngestConfig::default(),
            index: vigil_store::Config::default(),
            firehose: None,
            sources: SourcesConfig::default(),
            roles: default_roles(),
            bus: BusConfig::default(),
            notify: Default::default(),
            respond: Default::default(),
            detect: Default::default(),
            server: Default::default(),
            auth: Default::default(),
            tls: None,
        }
    }
}

/// None configured: the pipelines built into the binary (see `src/rules.rs`).
fn default_pipelines() -> Vec<PathBuf> {
    Vec::new()
}

/// Settings given on the command line; they win over every other source.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
}

impl Config {
    /// Loads the configuration. A missing default `vigil.toml` is fine; a missing file named
    /// with `--config` is an error.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        figment
            .merge(
                Env::prefixed("VIGIL_")
                    .filter(|key| is_config_key(key.as_str()))
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// Checks every section, each by its own rules, so that no mistake is found only after
    /// the listener is bound or a stage has started.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_api_token(self.api_token.as_deref())?;
        self.server.validate()?;
        self.auth.validate()?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        self.detect.validate()?;
        self.index.validate()?;
        self.ingest.validate()?;
        if let Some(firehose) = &self.firehose {
            firehose.validate()?;
        }
        self.sources.validate()?;
        if self.bus.backend == vigil_bus::Backend::Kafka {
            self.bus.kafka.validate()?;
        }
        vigil_notify::check(&self.notify)?;
        Ok(())
    }

    /// Whether the listener serves HTTPS: cookies can then be `Secure`.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Checks a configured API token: long enough to resist guessing.
pub fn validate_api_token(configured: Option<&str>) -> Result<(), ConfigError> {
    match configured {
        Some(token) if token.trim().len() < 16 => Err(ConfigError::Setting(
            "the configured API token must be at least 16 characters".into(),
        )),
        _ => Ok(()),
    }
}

/// Whether a `VIGIL_*` variable (prefix removed) names a setting. Others, such as `VIGIL_LOG` or
/// `VIGIL_SIGMA_CORPUS`, belong to other readers and must not fail the configuration.
fn is_config_key(key: &str) -> bool {
    const TOP_LEVEL: &[&str] = &[
        "listen",
        "data_dir",
        "rules",
        "pipelines",
        "api_token",
        "ingest",
        "index",
        "firehose",
        "sources",
        "roles",
        "bus",
        "detect",
        "server",
        "auth",
        "tls",
    ];
    let top = key.split("__").next().unwrap_or_default();
    TOP_LEVEL
        .iter()
        .any(|known| known.eq_ignore_ascii_case(top))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    /// A setting that parsed but is out of range or refers to nothing; the message names it.
    #[error("{0}")]
    Setting(String),
    #[error(transparent)]
    Ingest(#[from] IngestConfigError),
    #[error(transparent)]
    Index(#[from] vigil_store::ConfigError),
    #[error(transparent)]
    Firehose(#[from] FirehoseConfigError),
    #[error(transparent)]
    Sources(#[from] SourcesConfigError),
    #[error(transparent)]
    Kafka(#[from] vigil_bus_kafka::ConfigError),
    #[error(transparent)]
    Notify(#[from] vigil_notify::NotifyError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl From<String> for ConfigError {
    fn from(message: String) -> Self {
        ConfigError::Setting(message)
    }
}

#[cfg(test)]
// figment's test jail returns its own large error type; the size does not matter in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[index]\ncommit_events = 5\n",
            )?;
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.listen.port(), 9000);
            assert_eq!(config.index.commit_events, 5);
            assert_eq!(config.index.commit_interval_ms, 250);

            jail.set_env("VIGIL_DATA_DIR", "/from/env");
            jail.set_env("VIGIL_LOG", "debug");
            jail.set_env("VIGIL_SIGMA_CORPUS", "/elsewhere");
            jail.set_env("VIGIL_INDEX__COMMIT_EVENTS", "7");
            jail.set_env("VIGIL_FIREHOSE__ACCESS_KEY", "from-the-environment");
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.data_dir, PathBuf::from("/from/env"));
            assert_eq!(config.index.commit_events, 7);
            let firehose = config
                .firehose
                .expect("VIGIL_FIREHOSE__ACCESS_KEY configures it");
            assert_eq!(firehose.access_key, "from-the-environment");

            let flags = Overrides {
                data_dir: Some("/from/flag".into()),
                ..Overrides::default()
            };
            let config = Config::load(None, &flags).unwrap();
            assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
            assert_eq!(config.listen.port(), 9000);
            Ok(())
        });
    }

    #[test]
    fn cloudwatch_sources() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                r#"
[[sources.cloudwatch]]
log_groups = ["/aws/eks/prod/cluster"]
log_group_prefixes = ["/app/"]
endpoint_url = "http://127.0.0.1:5000"
lag_ms = 500
overrides = { "/app/flask" = "flask-app" }
"#,
            )?;
            let config = Config::load(None, &Overrides::default()).unwrap();
            let source = &config.sources.cloudwatch[0];
            assert_eq!(source.name, "cloudwatch");
            assert_eq!(source.log_group_prefixes, ["/app/"]);
            assert_eq!(source.lag_ms, 500);
            assert_eq!(source.overlap_ms, 60_000);
            assert_eq!(source.region, None);
            assert_eq!(source.overrides["/app/flask"], "flask-app");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vigil.toml", "lisen = \"127.0.0.1:9000\"\n")?;
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("lisen"), "{err}");
            let err =
                Config::load(Some(Path::new("nope.toml")), &Overrides::default()).unwrap_err();
            assert!(matches!(err, ConfigError::MissingFile(_)));
            Ok(())
        });
    }

    #[test]
    fn kafka_msk_iam_auth() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                "[bus.kafka]\nbrokers = \"b-1.msk:9098\"\nauth = \"msk-iam\"\nregion = \"eu-west-1\"\n",
            )?;
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(
                (config.bus.kafka.auth, config.bus.kafka.region.as_deref()),
                (vigil_bus_kafka::Auth::MskIam, Some("eu-west-1"))
            );

            jail.create_file("vigil.toml", "[bus.kafka]\nauth = \"msk-iam\"\n")?;
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(
                (config.bus.kafka.auth, config.bus.kafka.region.as_deref()),
                (vigil_bus_kafka::Auth::MskIam, None)
            );

            jail.create_file("vigil.toml", "")?;
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.bus.kafka.auth, vigil_bus_kafka::Auth::Properties);

            jail.create_file("vigil.toml", "[bus.kafka]\nauth = \"iam\"\n")?;
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("msk-iam"), "{err}");
            Ok(())
        });
    }
    #[test]
    fn auth_settings_come_from_the_file_and_the_environment_and_are_checked() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                "[auth.proxy]\ntrusted = [\"10.0.4.17/32\"]\n[auth.proxy.roles]\nsoc = \"analyst\"\n",
            )?;
            jail.set_env("VIGIL_AUTH__THROTTLE__LOCKOUT_SECONDS", "5");
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.auth.throttle.lockout_seconds, 5);
            let proxy = config.auth.proxy.as_ref().expect("[auth.proxy] is read");
            assert!(proxy.trusts("10.0.4.17".parse().unwrap()));
            assert_eq!(proxy.role_for("soc"), Some(vigil_access::Role::Analyst));
            config.validate().unwrap();

            jail.set_env("VIGIL_AUTH__SESSION_IDLE_SECONDS", "0");
            let config = Config::load(None, &Overrides::default()).unwrap();
            let err = config.validate().unwrap_err();
            assert!(
                err.to_string().contains("auth.session_idle_seconds"),
                "{err}"
            );
            Ok(())
        });
    }
}
