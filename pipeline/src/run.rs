//! `vigil run`: the stages this process's roles name (every one by default), joined by the
//! embedded bus or by Kafka.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::task::JoinSet;
use vigil_bus::{Bus, EmbeddedBus, EmbeddedBusOptions, Topics};
use vigil_detect::Engine;
use vigil_event::{Alert, Event, Level, Quarantined};
use vigil_ingest::cloudwatch::firehose::FirehoseState;
use vigil_ingest::cloudwatch::{
    CloudWatchConfig, CloudWatchSource, LogGroupOverride, LogGroupRecogniser,
};
use vigil_ingest::tail::{FileTailer, TailConfig};
use vigil_ingest::{Ingestor, SourceCatalog};
use vigil_notify::Notifier;
use vigil_store::Store;
use vigil_ui::UiState;

use crate::config::{CloudWatchSourceConfig, Config, FileSourceConfig, Role};
use crate::token::{self, TokenOrigin};
use crate::{demo, rules, server, stages};

pub struct RunOptions {
    pub config: Config,
    /// Rule directories named on the command line, beside those of the config.
    pub extra_rules: Vec<PathBuf>,
    pub demo: bool,
    /// Starts detection even when no rule loaded (`--allow-no-rules`).
    pub allow_no_rules: bool,
}

pub async fn run(options: RunOptions) -> Result<()> {
    let RunOptions {
        config,
        extra_rules,
        demo,
        allow_no_rules,
    } = options;
    let data_dir = &config.data_dir;
    fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;
    let (token, token_origin) = token::resolve(config.api_token.as_deref(), data_dir)?;
    let metrics = install_metrics()?;

    let roles = Roles::from_config(&config.roles);
    if roles.ui && !roles.index {
        bail!("the ui role searches the index this process writes; run it with the index role (--role index,ui)");
    }
    if demo && !roles.ingest {
        bail!("--demo feeds events through ingest; run it with the ingest role");
    }
    let engine = if roles.detect {
        Some(load_engine(
            &config.rules,
            &extra_rules,
            &config.pipelines,
            allow_no_rules,
        )?)
    } else {
        None
    };
    let notifier = notifier(&config, roles)?;
    let topics = config.bus.topics.clone();
    let bus = open_bus(&config, &topics, roles.ingest).await?;
    let store = if roles.index {
        let store_options = config
            .index
            .store_options()
            .map_err(|message| anyhow::anyhow!(message))?;
        Some(Arc::new(Store::open_with(
            &data_dir.join("index"),
            store_options,
        )?))
    } else {
        None
    };
    let ingestor = Arc::new(Ingestor::new(
        bus.clone(),
        topics.clone(),
        push_source_catalog(&config.ingest.presets)?,
        config.ingest.limits(),
    ));

    let (stop, shutdown) = watch::channel(false);
    let mut stages = JoinSet::new();
    if let Some(engine) = engine {
        stages.spawn(stages::run_detection(
            bus.clone(),
            topics.clone(),
            engine,
            config
                .detect
                .limits()
                .map_err(|message| anyhow::anyhow!(message))?,
            shutdown.clone(),
        ));
    }
    if let Some(store) = &store {
        stages.spawn(stages::run_indexer::<Event>(
            bus.clone(),
            topics.events.clone(),
            store.clone(),
            config.index.clone(),
            shutdown.clone(),
        ));
        stages.spawn(stages::run_indexer::<Quarantined>(
            bus.clone(),
            topics.quarantine.clone(),
            store.clone(),
            config.index.clone(),
            shutdown.clone(),
        ));
        stages.spawn(stages::run_indexer::<Alert>(
            bus.clone(),
            topics.alerts.clone(),
            store.clone(),
            config.index.clone(),
            shutdown.clone(),
        ));
        stages.spawn(stages::run_retention(store.clone(), shutdown.clone()));
    }
    if let Some(notifier) = notifier {
        stages.spawn(stages::run_notifier(
            bus.clone(),
            topics.alerts.clone(),
            notifier,
            shutdown.clone(),
        ));
    }

    let sources = if roles.ingest {
        &config.sources
    } else {
        &Default::default()
    };
    for source in &sources.files {
        let tailer = file_tailer(source, data_dir, ingestor.clone())?;
        let (handle, shutdown) = (tokio::runtime::Handle::current(), shutdown.clone());
        stages.spawn(async move {
            tokio::task::spawn_blocking(move || tailer.run_blocking(handle, shutdown)).await??;
            Ok(())
        });
    }

    let mut cloudwatch_names = std::collections::HashSet::new();
    for source in &sources.cloudwatch {
        if !cloudwatch_names.insert(source.name.as_str()) {
            bail!(
                "two CloudWatch sources are named {:?}; give each its own name",
                source.name
            );
        }
        let pull = cloudwatch_source(source, data_dir, ingestor.clone())?;
        let shutdown = shutdown.clone();
        stages.spawn(async move {
            pull.run(shutdown).await?;
            Ok(())
        });
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    println!("Vigil is listening on http://{address}");
    match &token_origin {
        TokenOrigin::Generated(path) => println!(
            "API token (shown once; kept in {}): {}",
            path.display(),
            token.expose()
        ),
        TokenOrigin::Stored(path) => println!("API token: in {}", path.display()),
        TokenOrigin::Configured => println!("API token: as configured"),
    }

    if demo {
        let ingestor = ingestor.clone();
        tokio::spawn(async move {
            if let Err(error) = demo::feed(&ingestor).await {
                tracing::error!(%error, "feeding the demo events failed");
            }
        });
    }

    if let Some(firehose) = &config.firehose {
        if firehose.access_key.trim().len() < 16 {
            bail!("firehose.access_key must be at least 16 characters");
        }
        const MIB: usize = 1024 * 1024;
        if !(MIB..=1024 * MIB).contains(&firehose.max_inflated_bytes) {
            bail!(
                "firehose.max_inflated_bytes is {}; use {MIB} (1 MiB) to {} (1 GiB)",
                firehose.max_inflated_bytes,
                1024 * MIB
            );
        }
    }
    let ingest_routes = if roles.ingest {
        let firehose = match &config.firehose {
            Some(firehose) => Some(FirehoseState {
                ingestor: ingestor.clone(),
                access_key: firehose.access_key.as_str().into(),
                max_inflated_bytes: firehose.max_inflated_bytes,
                recogniser: Arc::new(LogGroupRecogniser::new(
                    log_group_overrides(&firehose.overrides).context("firehose")?,
                )),
            }),
            None => None,
        };
        Some(server::IngestRoutes {
            ingestor,
            firehose,
            max_concurrent_requests: config.ingest.max_concurrent_requests,
        })
    } else {
        None
    };
    let ui = match (&store, roles.ui) {
        (Some(store), true) => Some(UiState {
            store: store.clone(),
            token: token.clone(),
        }),
        _ => None,
    };
    let app = server::router(token, ingest_routes, ui, metrics);
    let server_config = config.server.clone();
    let server_stop = shutdown.clone();
    let server =
        tokio::spawn(
            async move { server::serve(listener, app, &server_config, server_stop).await },
        );

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        Some(result) = stages.join_next() => {
            // A stage only returns early on a fatal error; stop the rest cleanly.
            let _ = stop.send(true);
            result??;
            bail!("a pipeline stage stopped unexpectedly");
        }
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(result) = stages.join_next().await {
            if let Err(error) = result.map_err(anyhow::Error::from).and_then(|r| r) {
                tracing::error!(%error, "a stage failed while stopping");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("stages did not stop within 30 s; uncommitted work will be replayed");
    }
    server.await??;
    Ok(())
}

/// The stages one process runs.
#[derive(Debug, Clone, Copy, Default)]
struct Roles {
    ingest: bool,
    detect: bool,
    index: bool,
    ui: bool,
    notify: bool,
}

impl Roles {
    fn from_config(roles: &[Role]) -> Self {
        let mut selected = Roles::default();
        for role in roles {
            match role {
                Role::All => {
                    selected = Roles {
                        ingest: true,
                        detect: true,
                        index: true,
                        ui: true,
                        notify: true,
                    }
                }
                Role::Ingest => selected.ingest = true,
                Role::Detect => selected.detect = true,
                Role::Index => selected.index = true,
                Role::Ui => selected.ui = true,
                Role::Notify => selected.notify = true,
            }
        }
        selected
    }
}

/// The notifier when this process notifies. With no webhook configured, `all` skips the
/// stage, but asking for the `notify` role alone is a mistake worth stopping for.
fn notifier(config: &Config, roles: Roles) -> Result<Option<Arc<Notifier>>> {
    if !roles.notify {
        return Ok(None);
    }
    let notifier = Notifier::new(&config.notify)?;
    if notifier.is_empty() {
        if config.roles.contains(&Role::Notify) {
            bail!("the notify role has nothing to do: configure [[notify.webhooks]]");
        }
        return Ok(None);
    }
    let names: Vec<&str> = notifier.webhooks().iter().map(|w| w.name()).collect();
    tracing::info!(webhooks = ?names, "notifying");
    Ok(Some(Arc::new(notifier)))
}

/// Opens the configured bus. Kafka is checked now, so an unreachable cluster or a missing
/// topic stops start-up with one message instead of a silent retry loop. A process that
/// `ingests` watches how far the stages reading its events lag, and holds new events back
/// while one lags too far.
async fn open_bus(config: &Config, topics: &Topics, ingests: bool) -> Result<Arc<dyn Bus>> {
    Ok(match config.bus.backend {
        vigil_bus::Backend::Embedded => Arc::new(EmbeddedBus::open(
            config.data_dir.join("bus"),
            EmbeddedBusOptions {
                // A quarantined record carries its raw bytes in base64, and may be a whole body.
                max_message_bytes: 2 * config.ingest.max_body_bytes + 64 * 1024,
                ..EmbeddedBusOptions::default()
            },
        )?),
        vigil_bus::Backend::Kafka => {
            let kafka = config.bus.kafka.clone();
            kafka.validate()?;
            let lag_watched_groups = if ingests {
                // A group that never committed (a role this deployment does not run) is left
                // out by the guard, so listing both is safe.
                vec![
                    stages::DETECT_GROUP.to_owned(),
                    <Event as stages::IndexTarget>::GROUP.to_owned(),
                ]
            } else {
                Vec::new()
            };
            let brokers = kafka.brokers.clone();
            let bus =
                vigil_bus_kafka::KafkaBus::connect_watching_lag(kafka, topics, &lag_watched_groups)
                    .await
                    .context("cannot start the Kafka bus")?;
            tracing::info!(%brokers, "connected to Kafka");
            Arc::new(bus)
        }
    })
}

fn file_tailer(
    source: &FileSourceConfig,
    data_dir: &Path,
    ingestor: Arc<Ingestor>,
) -> Result<FileTailer> {
    let spec = SourceCatalog::builtin()
        .preset(&source.preset)
        .with_context(|| {
            format!(
                "file source {:?}: unknown preset {:?}",
                source.name, source.preset
            )
        })?;
    if !valid_checkpoint_name(&source.name) {
        bail!(
            "file source name {:?}: use letters, digits, '.', '_' and '-'",
            source.name
        );
    }
    let config = TailConfig {
        name: source.name.clone(),
        spec,
        paths: source.paths.clone(),
        start_at: source.start_at,
        poll_interval: Duration::from_millis(source.poll_interval_ms.max(10)),
        checkpoint_path: data_dir
            .join("checkpoints")
            .join(format!("file-{}.json", source.name)),
        read_chunk_bytes: 4 * 1024 * 1024,
    };
    Ok(FileTailer::new(config, ingestor)?)
}

fn cloudwatch_source(
    source: &CloudWatchSourceConfig,
    data_dir: &Path,
    ingestor: Arc<Ingestor>,
) -> Result<CloudWatchSource> {
    if !valid_checkpoint_name(&source.name) {
        bail!(
            "CloudWatch source name {:?}: use letters, digits, '.', '_' and '-'",
            source.name
        );
    }
    let overrides = log_group_overrides(&source.overrides)
        .with_context(|| format!("CloudWatch source {:?}", source.name))?;
    let mut config = CloudWatchConfig::new(
        source.name.clone(),
        data_dir
            .join("checkpoints")
            .join(format!("cloudwatch-{}", source.name)),
    );
    config.log_groups = source.log_groups.clone();
    config.log_group_prefixes = source.log_group_prefixes.clone();
    config.region = source.region.clone();
    config.endpoint_url = source.endpoint_url.clone();
    config.poll_interval = Duration::from_millis(source.poll_interval_ms.max(10));
    config.lag = Duration::from_millis(source.lag_ms);
    config.overlap = Duration::from_millis(source.overlap_ms);
    config.start_lookback = Duration::from_millis(source.start_lookback_ms);
    config.max_window = Duration::from_millis(source.max_window_ms);
    config.page_size = source.page_size;
    config.overrides = overrides;
    Ok(CloudWatchSource::new(config, ingestor)?)
}

/// The built-in sources plus the push source names configured with a preset.
fn push_source_catalog(presets: &BTreeMap<String, String>) -> Result<SourceCatalog> {
    let mut catalog = SourceCatalog::builtin();
    for (name, preset) in presets {
        let spec = catalog
            .preset(preset)
            .with_context(|| format!("unknown preset {preset:?} for push source {name:?}"))?;
        catalog.insert(name.clone(), spec);
    }
    Ok(catalog)
}

/// Resolves `log group = preset` settings into the specs that override recognition.
fn log_group_overrides(settings: &BTreeMap<String, String>) -> Result<Vec<LogGroupOverride>> {
    let catalog = SourceCatalog::builtin();
    settings
        .iter()
        .map(|(log_group, preset)| {
            let spec = catalog.preset(preset).with_context(|| {
                format!("unknown preset {preset:?} for log group {log_group:?}")
            })?;
            Ok(LogGroupOverride {
                log_group: log_group.clone(),
                spec,
            })
        })
        .collect()
}

fn valid_checkpoint_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One process per data directory: two would interleave writes to the same bus log.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<File> {
    let path = data_dir.join("lock");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another Vigil process is using {}; stop it or choose another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

fn load_engine(
    config_dirs: &[PathBuf],
    extra_dirs: &[PathBuf],
    pipeline_paths: &[PathBuf],
    allow_no_rules: bool,
) -> Result<Engine> {
    // With no rule path configured, Vigil's own rules and pipelines, built into the binary.
    let builtin_rules = config_dirs.is_empty() && extra_dirs.is_empty();
    let builtin_pipelines = pipeline_paths.is_empty();
    let mut dirs = Vec::new();
    for dir in config_dirs {
        if dir.is_dir() {
            dirs.push(dir.clone());
        } else {
            tracing::warn!(dir = %dir.display(), "rule directory not found; skipping it");
        }
    }
    for dir in extra_dirs {
        if !dir.is_dir() {
            bail!("rule directory {} not found", dir.display());
        }
        dirs.push(dir.clone());
    }
    // The default pipelines directory may be absent (a binary run outside the repository).
    let pipeline_paths: Vec<PathBuf> = pipeline_paths
        .iter()
        .filter(|path| {
            let present = path.exists();
            if !present {
                tracing::warn!(path = %path.display(), "pipeline path not found; skipping it");
            }
            present
        })
        .cloned()
        .collect();
    let options = vigil_detect::LoadOptions {
        pipelines: if builtin_pipelines {
            rules::builtin_pipelines()?
        } else {
            rules::load_pipelines(&pipeline_paths)?
        },
        ..vigil_detect::LoadOptions::default()
    };
    let loaded = if builtin_rules {
        rules::load_builtin(&options)
    } else {
        rules::load_dirs(&dirs, &options).context("cannot read the rule directories")?
    };
    let built = loaded.built;
    for error in &built.errors {
        tracing::warn!("rule not loaded: {error}");
    }
    for warning in &built.warnings {
        tracing::warn!("rule warning: {warning}");
    }
    tracing::info!(
        rules = built.engine.rules().len(),
        correlations = built.engine.correlations().len(),
        failed = built.errors.len(),
        files = loaded.files,
        "loaded detection rules"
    );
    metrics::gauge!("vigil_rules_loaded").set(built.engine.rules().len() as f64);
    metrics::gauge!("vigil_correlations_loaded").set(built.engine.correlations().len() as f64);
    metrics::gauge!("vigil_rules_failed").set(built.errors.len() as f64);
    rules::require_rules(&built, allow_no_rules)?;
    Ok(built.engine)
}

fn install_metrics() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    metrics::describe_counter!(
        "vigil_events_in_total",
        "Events accepted onto the bus, per source"
    );
    metrics::describe_counter!(
        "vigil_ingest_bytes_total",
        "Bytes delivered to ingest, per source"
    );
    metrics::describe_counter!(
        "vigil_quarantined_total",
        "Records quarantined instead of becoming events, per source"
    );
    metrics::describe_counter!(
        "vigil_quarantine_evicted_total",
        "Quarantined records evicted, oldest first, to keep the quarantine within its limits"
    );
    metrics::describe_gauge!(
        "vigil_quarantine_bytes",
        "What the kept quarantined records take, as counted against index.quarantine_max_bytes"
    );
    metrics::describe_counter!(
        "vigil_http_connections_evicted_total",
        "Connections without authenticated work closed to make room at server.max_connections"
    );
    metrics::describe_counter!(
        "vigil_source_errors_total",
        "Failed reads or deliveries of a pulled source, per source"
    );
    metrics::describe_gauge!(
        "vigil_source_checkpoint_lag_seconds",
        "How far behind now a CloudWatch log group's checkpoint is, per log group"
    );
    metrics::describe_counter!(
        "vigil_cloudwatch_retries_total",
        "CloudWatch calls retried after throttling or a transient error"
    );
    metrics::describe_counter!(
        "vigil_events_detected_total",
        "Events evaluated by detection"
    );
    metrics::describe_counter!("vigil_alerts_raised_total", "Alerts raised, per level");
    metrics::describe_counter!("vigil_events_indexed_total", "Events written to the index");
    metrics::describe_counter!("vigil_alerts_indexed_total", "Alerts written to the index");
    metrics::describe_gauge!(
        "vigil_bus_lag",
        "Messages on a topic that a consumer group has not committed"
    );
    // Present from the start, so dashboards and alerts on them see zeros, not gaps.
    metrics::counter!("vigil_events_detected_total").absolute(0);
    for level in Level::ALL {
        metrics::counter!("vigil_alerts_raised_total", "level" => level.as_str()).absolute(0);
    }
    Ok(handle)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_sources_read_with_their_configured_preset() {
        let presets = BTreeMap::from([("trail-eu".to_owned(), "cloudtrail".to_owned())]);
        let catalog = push_source_catalog(&presets).unwrap();
        let configured = catalog.resolve("trail-eu");
        assert_eq!(
            configured.logsource,
            catalog.resolve("cloudtrail").logsource
        );
        assert_ne!(configured.logsource, catalog.resolve("unnamed").logsource);
    }

    #[test]
    fn an_unknown_push_preset_is_named_in_the_error() {
        let presets = BTreeMap::from([("billing".to_owned(), "cloudtrial".to_owned())]);
        let error = push_source_catalog(&presets).unwrap_err().to_string();
        assert!(
            error.contains("cloudtrial") && error.contains("billing"),
            "{error}"
        );
    }

    /// With no region configured and none in the AWS environment, start-up stops with one
    /// error that says what to set, before any broker is tried.
    #[test]
    // figment's test jail returns its own large error type; the size does not matter in tests.
    #[allow(clippy::result_large_err)]
    fn msk_iam_without_a_region_stops_start_up_clearly() {
        if ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .any(|name| std::env::var_os(name).is_some())
        {
            eprintln!("skipped: this environment names an AWS region");
            return;
        }
        figment::Jail::expect_with(|jail| {
            // No profile files and no instance metadata: nothing may name a region, and no
            // request may leave this machine.
            jail.set_env("AWS_CONFIG_FILE", "no-such-aws-config");
            jail.set_env("AWS_SHARED_CREDENTIALS_FILE", "no-such-aws-credentials");
            jail.set_env("AWS_EC2_METADATA_DISABLED", "true");
            jail.create_file(
                "vigil.toml",
                "[bus]\nbackend = \"kafka\"\n[bus.kafka]\nbrokers = \"127.0.0.1:9\"\nauth = \"msk-iam\"\n",
            )?;
            let config = Config::load(None, &crate::config::Overrides::default()).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let error = match runtime.block_on(open_bus(&config, &Topics::default(), true)) {
                Ok(_) => panic!("started without a region"),
                Err(error) => format!("{error:#}"),
            };
            assert!(
                error.contains("bus.kafka.region") && error.contains("AWS_REGION"),
                "{error}"
            );
            Ok(())
        });
    }
}
