//! Vigil's configuration: defaults, then `vigil.toml`, then `VIGIL_*` variables, then flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use vigil_ingest::IngestLimits;

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
    pub ingest: IngestConfig,
    pub index: IndexConfig,
    /// The Firehose endpoint for CloudWatch subscriptions; off unless a key is set.
    #[serde(default)]
    pub firehose: Option<FirehoseConfig>,
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
    /// How late events may arrive for the live correlation windows, and how many groups each
    /// correlation keeps.
    #[serde(default)]
    pub detect: crate::stages::DetectConfig,
    /// Deadlines and the connection cap of the HTTP listener.
    #[serde(default)]
    pub server: crate::server::ServerConfig,
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Log files to follow.
    pub files: Vec<FileSourceConfig>,
    /// CloudWatch Logs log groups to poll.
    pub cloudwatch: Vec<CloudWatchSourceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The source name events carry; also names the checkpoint.
    pub name: String,
    /// How to read the lines: a built-in source (`cloudtrail`, `kubernetes-audit`,
    /// `flask-app`, `access-log`, `vpc-flow`, `waf`), or `json` or `text`.
    pub preset: String,
    /// Glob patterns of the files.
    pub paths: Vec<String>,
    #[serde(default)]
    pub start_at: vigil_ingest::tail::StartAt,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

/// None configured: the pipelines built into the binary (see `src/rules.rs`).
fn default_pipelines() -> Vec<PathBuf> {
    Vec::new()
}

fn default_poll_interval_ms() -> u64 {
    250
}

/// Polls CloudWatch Logs with `FilterLogEvents`. Credentials come from the standard AWS chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchSourceConfig {
    /// Names the checkpoint directory; events carry their log group as the source name.
    #[serde(default = "default_cloudwatch_name")]
    pub name: String,
    #[serde(default)]
    pub log_groups: Vec<String>,
    #[serde(default)]
    pub log_group_prefixes: Vec<String>,
    /// Overrides the region of the AWS chain (`AWS_REGION`, the profile, ...).
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default = "cloudwatch_defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "cloudwatch_defaults::lag_ms")]
    pub lag_ms: u64,
    #[serde(default = "cloudwatch_defaults::overlap_ms")]
    pub overlap_ms: u64,
    #[serde(default = "cloudwatch_defaults::start_lookback_ms")]
    pub start_lookback_ms: u64,
    #[serde(default = "cloudwatch_defaults::max_window_ms")]
    pub max_window_ms: u64,
    /// Events per `FilterLogEvents` page, 1 to 10000; the API's default when unset.
    #[serde(default)]
    pub page_size: Option<i32>,
    /// Log group name to preset, for groups recognition would read wrongly.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

fn default_cloudwatch_name() -> String {
    "cloudwatch".into()
}

/// The pull source's own defaults, so the two never drift apart.
mod cloudwatch_defaults {
    use std::path::PathBuf;
    use std::time::Duration;

    use vigil_ingest::cloudwatch::CloudWatchConfig;

    fn ms(pick: impl Fn(&CloudWatchConfig) -> Duration) -> u64 {
        let defaults = CloudWatchConfig::new("", PathBuf::new());
        u64::try_from(pick(&defaults).as_millis()).unwrap_or(u64::MAX)
    }
    pub fn poll_interval_ms() -> u64 {
        ms(|c| c.poll_interval)
    }
    pub fn lag_ms() -> u64 {
        ms(|c| c.lag)
    }
    pub fn overlap_ms() -> u64 {
        ms(|c| c.overlap)
    }
    pub fn start_lookback_ms() -> u64 {
        ms(|c| c.start_lookback)
    }
    pub fn max_window_ms() -> u64 {
        ms(|c| c.max_window)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseConfig {
    /// The access key the Firehose stream sends in `X-Amz-Firehose-Access-Key`.
    pub access_key: String,
    /// Presets for log groups whose records recognition would get wrong, as for
    /// `[[sources.cloudwatch]]`: `{ "/app/flask" = "flask-app" }`.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// The most bytes the gzip'd records of one request may inflate to, all together; a
    /// request past it gets 413 and nothing of it is stored. 1 MiB to 1 GiB.
    #[serde(default = "default_firehose_max_inflated_bytes")]
    pub max_inflated_bytes: usize,
}

fn default_firehose_max_inflated_bytes() -> usize {
    vigil_ingest::cloudwatch::firehose::DEFAULT_MAX_INFLATED_BYTES
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub max_line_bytes: usize,
    pub max_body_bytes: usize,
    /// Push requests handled at once; more wait for a turn, so memory stays bounded.
    pub max_concurrent_requests: usize,
    /// How to read what is pushed to `/api/v1/ingest/{name}` under names other than the
    /// built-in ones: `{ "trail-eu" = "cloudtrail", "billing" = "flask-app" }`. Unnamed
    /// sources are generic JSON.
    pub presets: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// The index commits at least this often while events arrive.
    pub commit_interval_ms: u64,
    /// ...and whenever this many events wait for a commit.
    pub commit_events: usize,
    /// One events index per `hour`, `day` or `week`. Fixed once the index exists.
    pub partition: String,
    /// Events older than this many days are removed, a whole partition at a time.
    pub retention_days: Option<u64>,
    /// Then the oldest partitions are removed until the events fit in this many bytes.
    pub retention_max_bytes: Option<u64>,
    /// How often retention looks for partitions to remove.
    pub retention_interval_ms: u64,
    /// How far past its arrival an event's own time may lie before it is flagged
    /// `time_suspect` and indexed at its arrival instead.
    pub future_skew_secs: u64,
    /// Bytes kept of each quarantined record; its full length and blake3 hash are kept too.
    pub quarantine_max_record_bytes: usize,
    /// Bytes all quarantined records may take; the oldest are evicted past it.
    pub quarantine_max_bytes: u64,
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
            index: IndexConfig::default(),
            firehose: None,
            sources: SourcesConfig::default(),
            roles: default_roles(),
            bus: BusConfig::default(),
            notify: Default::default(),
            detect: Default::default(),
            server: Default::default(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        let limits = IngestLimits::default();
        IngestConfig {
            max_line_bytes: limits.max_line_bytes,
            max_body_bytes: limits.max_body_bytes,
            max_concurrent_requests: 16,
            presets: BTreeMap::new(),
        }
    }
}

impl IngestConfig {
    pub fn limits(&self) -> IngestLimits {
        IngestLimits {
            max_line_bytes: self.max_line_bytes,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            commit_interval_ms: 1000,
            commit_events: 20_000,
            partition: "day".into(),
            retention_days: None,
            retention_max_bytes: None,
            retention_interval_ms: 60_000,
            future_skew_secs: vigil_store::DEFAULT_FUTURE_SKEW_SECONDS as u64,
            quarantine_max_record_bytes: vigil_store::DEFAULT_MAX_RECORD_BYTES,
            quarantine_max_bytes: vigil_store::DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

impl IndexConfig {
    /// The store's options, or a message naming the setting that is wrong.
    pub fn store_options(&self) -> Result<vigil_store::StoreOptions, String> {
        let partition = vigil_store::PartitionScheme::from_name(&self.partition).map_err(|_| {
            format!(
                "index.partition is `{}`; use hour, day or week",
                self.partition
            )
        })?;
        let max_age = self
            .retention_days
            .map(|days| {
                i64::try_from(days)
                    .ok()
                    .and_then(chrono::Duration::try_days)
            })
            .map(|age| age.ok_or("index.retention_days is too large"))
            .transpose()?;
        let future_skew = i64::try_from(self.future_skew_secs)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .ok_or("index.future_skew_secs is too large")?;
        if self.retention_interval_ms == 0 {
            return Err("index.retention_interval_ms must be above 0".into());
        }
        Ok(vigil_store::StoreOptions {
            partition,
            retention: vigil_store::Retention {
                max_age,
                max_bytes: self.retention_max_bytes,
            },
            future_skew,
            retention_interval: std::time::Duration::from_millis(self.retention_interval_ms),
            quarantine: vigil_store::QuarantineLimits {
                max_record_bytes: self.quarantine_max_record_bytes,
                max_total_bytes: self.quarantine_max_bytes,
            },
            ..vigil_store::StoreOptions::default()
        })
    }
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
            assert_eq!(config.index.commit_interval_ms, 1000);

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
}
