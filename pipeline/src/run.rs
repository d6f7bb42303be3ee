//! `vigil run`: the stages this process's roles name (every one by default), joined by the
//! embedded bus or by Kafka.
//!
//! Start-up has two halves. [`Startup::new`] checks every setting and loads the rules; it
//! writes nothing, opens nothing and binds nothing, so every mistake is reported while the
//! data directory is still untouched. [`Startup::run`] then opens the data directory, the
//! bus and the store, starts the stages and the sources, and binds the listener.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use vigil_bus::{Bus, EmbeddedBus, EmbeddedBusOptions, Topics};
use vigil_event::wire::EventOnBus;
use vigil_event::{Alert, Quarantined};
use vigil_ingest::Ingestor;
use vigil_notify::{Dispatcher, Outbox, Receiver};
use vigil_store::Store;
use vigil_ui::{Rules, UiState};

use crate::config::{Config, ConfigError, Role};
use crate::error::RunError;
use crate::rule_runtime::LiveRules;
use crate::rules::RuleSources;
use crate::token::{self, TokenOrigin};
use crate::{demo, server, stages};

pub struct RunOptions {
    pub config: Config,
    /// Rule directories named on the command line, beside those of the config.
    pub extra_rules: Vec<PathBuf>,
    pub demo: bool,
    /// Starts detection even when no rule loaded (`--allow-no-rules`).
    pub allow_no_rules: bool,
}

/// A `vigil run` whose settings are checked and whose rules are loaded, with nothing opened,
/// written or bound yet.
pub struct Startup {
    config: Config,
    demo: bool,
    roles: Roles,
    rules: Option<Arc<LiveRules>>,
    /// The receivers, built and checked, when this process notifies.
    receivers: Option<Vec<Arc<dyn Receiver>>>,
}

impl Startup {
    /// Checks the configuration, the roles and the flags, and loads the rules.
    pub fn new(options: RunOptions) -> Result<Startup, RunError> {
        let RunOptions {
            config,
            extra_rules,
            demo,
            allow_no_rules,
        } = options;
        config.validate()?;
        let roles = Roles::from_config(&config.roles);
        if roles.ui && !roles.index {
            return Err(RunError::Roles("the ui role searches the index this process writes; run it with the index role (--role index,ui)"));
        }
        if demo && !roles.ingest {
            return Err(RunError::Roles(
                "--demo feeds events through ingest; run it with the ingest role",
            ));
        }
        let rules = if roles.detect {
            let sources = RuleSources {
                config_dirs: config.rules.clone(),
                extra_dirs: extra_rules,
                pipelines: config.pipelines.clone(),
                allow_no_rules,
            };
            // Rules disabled at runtime stay disabled: their list is read, not written, here.
            Some(Arc::new(LiveRules::load(sources, &config.data_dir)?))
        } else {
            None
        };
        let receivers = receivers(&config, roles)?;
        Ok(Startup {
            config,
            demo,
            roles,
            rules,
            receivers,
        })
    }

    /// The data directory `run` will use.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Runs until SIGINT or SIGTERM, or until a stage fails.
    pub async fn run(self) -> Result<(), RunError> {
        let Startup {
            config,
            demo,
            roles,
            rules,
            receivers,
        } = self;
        let data_dir = &config.data_dir;
        fs::create_dir_all(data_dir)
            .map_err(RunError::io("cannot create the data directory", data_dir))?;
        let _lock = lock_data_dir(data_dir)?;
        // The bootstrap token is an admin token with no name; a deployment that has moved to
        // users and scoped tokens turns it off (`auth.bootstrap_token = false`).
        let bootstrap = if config.auth.bootstrap_token {
            Some(token::resolve(config.api_token.as_deref(), data_dir)?)
        } else {
            None
        };
        let access = Arc::new(vigil_access::AccessDb::open_in(data_dir)?);
        let first_admin_password = crate::first_admin::ensure_first_admin(&access)?;
        let metrics = crate::metric_catalogue::install().map_err(RunError::Metrics)?;
        if let Some(rules) = &rules {
            rules.record_metrics();
        }

        let topics = config.bus.topics.clone();
        let bus = open_bus(&config, &topics, roles.ingest).await?;
        let store = if roles.index {
            let store_options = config.index.store_options().map_err(ConfigError::from)?;
            Some(Arc::new(Store::open_with(
                &data_dir.join("index"),
                store_options,
            )?))
        } else {
            None
        };
        let ingestor = Arc::new(
            Ingestor::new(
                bus.clone(),
                topics.clone(),
                config.ingest.catalog().map_err(ConfigError::from)?,
                config.ingest.limits(),
            )
            .with_event_format(config.ingest.event_format),
        );

        let (stop, shutdown) = watch::channel(false);
        let mut stages: JoinSet<Result<(), RunError>> = JoinSet::new();
        // An alert's page shows its rule's own words. A process that does not detect has
        // loaded no rules, and the UI says so rather than load them again: rules loaded here
        // could differ from those of the process that raised the alerts (another host, other
        // `--rules`), and words from the wrong rule would mislead more than none.
        let rule_catalog = match &rules {
            Some(rules) => Rules::new(rules.clone()),
            None => Rules::default(),
        };
        // Backtests read the rule files as they stand, every rule that loads, disabled or not.
        let backtests = rules.as_ref().map(|live| {
            let live = live.clone();
            let current: crate::backtest::CurrentRules =
                Arc::new(move || crate::backtest::rules_of(live.sources()));
            Arc::new(vigil_ui::BacktestJobs::new(
                Arc::new(crate::backtest::EngineBacktester::new(current)),
                Default::default(),
            ))
        });
        if let Some(rules) = rules {
            let limits = config.detect.limits().map_err(ConfigError::Setting)?;
            crate::rule_runtime::reload_on_hangup(rules.clone(), shutdown.clone());
            if config.detect.watch_rules {
                crate::rule_runtime::watch_files(
                    rules.clone(),
                    crate::rule_runtime::WATCH_EVERY,
                    shutdown.clone(),
                );
            }
            let detection = stages::run_detection_with(
                bus.clone(),
                topics.clone(),
                rules,
                limits,
                shutdown.clone(),
            );
            stages.spawn(async move { Ok(detection.await?) });
        }
        if let Some(store) = &store {
            let indexing = Indexing {
                bus: &bus,
                store,
                config: &config.index,
                events_indexed: Arc::default(),
                shutdown: &shutdown,
            };
            indexing.spawn::<EventOnBus<'static>>(&mut stages, &topics.events);
            indexing.spawn::<Quarantined>(&mut stages, &topics.quarantine);
            indexing.spawn::<Alert>(&mut stages, &topics.alerts);
            let retention = stages::run_retention(store.clone(), shutdown.clone());
            stages.spawn(async move {
                retention.await;
                Ok(())
            });
        }
        let outbox = match receivers {
            Some(receivers) => Some(spawn_notification(
                &mut stages,
                &config,
                &bus,
                store.as_ref(),
                receivers,
                &shutdown,
            )?),
            None => None,
        };
        let responder = stages::start_respond(
            &mut stages,
            &config,
            &bus,
            store.as_ref(),
            &access,
            &shutdown,
        )?;

        let sources = if roles.ingest {
            &config.sources
        } else {
            &Default::default()
        };
        for source in &sources.files {
            let tailer = source.build(data_dir, ingestor.clone())?;
            let (handle, shutdown) = (tokio::runtime::Handle::current(), shutdown.clone());
            stages.spawn(async move {
                tokio::task::spawn_blocking(move || tailer.run_blocking(handle, shutdown))
                    .await??;
                Ok(())
            });
        }
        for source in &sources.cloudwatch {
            let pull = source.build(data_dir, ingestor.clone())?;
            let shutdown = shutdown.clone();
            stages.spawn(async move {
                pull.run(shutdown).await?;
                Ok(())
            });
        }
        {
            // The audit log into the pipeline, as source `vigil-audit`, so rules watch Vigil.
            // Every process forwards its own: each role has a bus to publish to, and a UI
            // process is where most entries are written.
            let forwarder =
                crate::audit_forward::run(access.clone(), ingestor.clone(), shutdown.clone());
            stages.spawn(async move {
                forwarder.await;
                Ok(())
            });
        }

        // Read again (start-up checked them): the files may have changed since.
        let tls = match &config.tls {
            Some(tls) => Some(crate::tls::Tls::load(tls.clone()).map_err(ConfigError::from)?),
            None => None,
        };
        let tls_on = tls.is_some();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| RunError::Listen {
                address: config.listen,
                source,
            })?;
        let address = listener.local_addr().map_err(RunError::Serve)?;
        let scheme = if tls_on { "https" } else { "http" };
        println!("Vigil is listening on {scheme}://{address}");
        match &bootstrap {
            Some((token, TokenOrigin::Generated(path))) => println!(
                "API token (shown once; kept in {}): {}",
                path.display(),
                token.expose()
            ),
            Some((_, TokenOrigin::Stored(path))) => println!("API token: in {}", path.display()),
            Some((_, TokenOrigin::Configured)) => println!("API token: as configured"),
            None => println!("API token: off (auth.bootstrap_token = false)"),
        }
        if let Some(password) = &first_admin_password {
            println!(
                "Admin user: {}, password (shown once, stored only as a hash): {}",
                crate::first_admin::FIRST_ADMIN,
                password.expose()
            );
        }

        if demo {
            let ingestor = ingestor.clone();
            tokio::spawn(async move {
                if let Err(error) = demo::feed(&ingestor).await {
                    tracing::error!(%error, "feeding the demo events failed");
                }
            });
        }

        let ingest_routes = if roles.ingest {
            let firehose = match &config.firehose {
                Some(firehose) => Some(
                    firehose
                        .build(ingestor.clone())
                        .map_err(ConfigError::from)?,
                ),
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
        let gate = Arc::new(vigil_ui::Gate::new(
            access,
            bootstrap.map(|(token, _)| token),
            config.auth.clone(),
            tls_on,
        ));
        let ui = match (&store, roles.ui) {
            (Some(store), true) => Some(UiState {
                store: store.clone(),
                gate: gate.clone(),
                rules: rule_catalog,
                backtests,
                notifications: outbox.clone(),
                // The dispatcher reads the silences in the same notify.sqlite.
                silences: match &outbox {
                    Some(_) => Some(Arc::new(
                        vigil_notify::silences::Silences::open(&vigil_notify::db::path_in(
                            &config.data_dir,
                        ))
                        .map_err(|e| RunError::Dispatch(e.into()))?,
                    )),
                    None => None,
                },
                playbook_runs: responder.map(|responder| {
                    Arc::new(stages::ResponderRuns { responder }) as Arc<dyn vigil_ui::PlaybookRuns>
                }),
            }),
            _ => None,
        };
        let app = server::router(gate, ingest_routes, ui, metrics);
        let server_config = config.server.clone();
        let server_stop = shutdown.clone();
        if let Some(tls) = &tls {
            tls.reload_on_hangup(shutdown.clone());
        }
        let server = tokio::spawn(async move {
            server::serve(listener, app, &server_config, tls, server_stop).await
        });

        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutting down"),
            Some(result) = stages.join_next() => {
                // A stage only returns early on a fatal error; stop the rest cleanly.
                let _ = stop.send(true);
                result??;
                return Err(RunError::StageStopped);
            }
        }
        let _ = stop.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(result) = stages.join_next().await {
                if let Err(error) = result.map_err(RunError::from).and_then(|r| r) {
                    tracing::error!(%error, "a stage failed while stopping");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("stages did not stop within 30 s; uncommitted work will be replayed");
        }
        server.await?.map_err(RunError::Serve)?;
        Ok(())
    }
}

/// What the indexers of one process share: one store, and the events indexer's progress that
/// the alerts indexer waits on.
struct Indexing<'a> {
    bus: &'a Arc<dyn Bus>,
    store: &'a Arc<Store>,
    config: &'a vigil_store::Config,
    events_indexed: Arc<stages::EventsIndexed>,
    shutdown: &'a watch::Receiver<bool>,
}

impl Indexing<'_> {
    /// Starts indexing `topic`'s documents of kind `T`, in `stages`.
    fn spawn<T: stages::IndexTarget>(
        &self,
        stages: &mut JoinSet<Result<(), RunError>>,
        topic: &str,
    ) {
        let indexer = stages::run_indexer::<T>(
            self.bus.clone(),
            topic.to_owned(),
            self.store.clone(),
            self.config.clone(),
            self.events_indexed.clone(),
            self.shutdown.clone(),
        );
        stages.spawn(async move { Ok(indexer.await?) });
    }
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

/// The receivers when this process notifies. With none configured, `all` skips the stage,
/// but asking for the `notify` role alone is a mistake worth stopping for.
fn receivers(config: &Config, roles: Roles) -> Result<Option<Vec<Arc<dyn Receiver>>>, RunError> {
    if !roles.notify {
        return Ok(None);
    }
    config
        .notify
        .outbox
        .check()
        .map_err(|reason| RunError::Config(ConfigError::Setting(reason)))?;
    let receivers = vigil_notify::receivers::build(&config.notify)?;
    if receivers.is_empty() {
        if config.roles.contains(&Role::Notify) {
            return Err(RunError::Roles(
                "the notify role has nothing to do: configure [[notify.receivers]] or [[notify.webhooks]]",
            ));
        }
        return Ok(None);
    }
    let names: Vec<&str> = receivers.iter().map(|r| r.name()).collect();
    tracing::info!(receivers = ?names, "notifying");
    Ok(Some(receivers))
}

/// Starts notification: the alerts' consumer into the dispatcher, the dispatch timer into
/// the outbox, and one delivery task per receiver. Gives the outbox, for the UI's dead
/// letters.
fn spawn_notification(
    stages: &mut JoinSet<Result<(), RunError>>,
    config: &Config,
    bus: &Arc<dyn Bus>,
    store: Option<&Arc<Store>>,
    receivers: Vec<Arc<dyn Receiver>>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Arc<Outbox>, RunError> {
    let notify = &config.notify;
    let db = vigil_notify::db::path_in(&config.data_dir);
    // [notify.route] with a continuing child route per old [[notify.webhooks]] entry.
    let route = vigil_notify::receivers::route_tree(notify);
    let dispatcher = Arc::new(Dispatcher::open(&db, &route, &notify.inhibit)?);
    let outbox = Arc::new(Outbox::open(&db, notify.outbox.clone())?);
    for (receiver, pending) in outbox.pending_by_receiver()? {
        if !receivers.iter().any(|r| r.name() == receiver) {
            tracing::warn!(%receiver, pending, "notifications wait in the outbox for a receiver that is no longer configured; configure it again to deliver them");
        }
    }
    // Triage's word on alerts (acknowledged, closed) comes from the store this process
    // indexes into; without it, groups only fire.
    let states: Arc<dyn vigil_notify::AlertStates> = match store {
        Some(store) => Arc::new(stages::StoreAlertStates(store.clone())),
        None => Arc::new(stages::NoAlertStates),
    };
    let consumer = stages::run_notifier(
        bus.clone(),
        config.bus.topics.alerts.clone(),
        dispatcher.clone(),
        shutdown.clone(),
    );
    stages.spawn(async move { Ok(consumer.await?) });
    let dispatch = stages::run_dispatch(dispatcher, outbox.clone(), states, shutdown.clone());
    stages.spawn(async move {
        dispatch.await;
        Ok(())
    });
    for receiver in receivers {
        let delivery = stages::run_delivery(outbox.clone(), receiver, shutdown.clone());
        stages.spawn(async move {
            delivery.await;
            Ok(())
        });
    }
    Ok(outbox)
}

/// Opens the configured bus. Kafka is checked now, so an unreachable cluster or a missing
/// topic stops start-up with one message instead of a silent retry loop. A process that
/// `ingests` watches how far the stages reading its events lag, and holds new events back
/// while one lags too far.
async fn open_bus(
    config: &Config,
    topics: &Topics,
    ingests: bool,
) -> Result<Arc<dyn Bus>, RunError> {
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
            let lag_watched_groups = if ingests {
                // A group that never committed (a role this deployment does not run) is left
                // out by the guard, so listing both is safe.
                vec![
                    stages::DETECT_GROUP.to_owned(),
                    <EventOnBus<'static> as stages::IndexTarget>::GROUP.to_owned(),
                ]
            } else {
                Vec::new()
            };
            let brokers = kafka.brokers.clone();
            let bus =
                vigil_bus_kafka::KafkaBus::connect_watching_lag(kafka, topics, &lag_watched_groups)
                    .await
                    .map_err(RunError::Kafka)?;
            tracing::info!(%brokers, "connected to Kafka");
            Arc::new(bus)
        }
    })
}

/// One process per data directory: two would interleave writes to the same bus log.
fn lock_data_dir(data_dir: &Path) -> Result<File, RunError> {
    let path = data_dir.join("lock");
    let file = File::create(&path).map_err(RunError::io("cannot create", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RunError::DataDirInUse(data_dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(RunError::io("cannot lock", &path)(e)),
    }
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

    /// The error and its sources, as the binary prints them.
    fn error_chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
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
                Err(error) => error_chain(&error),
            };
            assert!(
                error.contains("bus.kafka.region") && error.contains("AWS_REGION"),
                "{error}"
            );
            Ok(())
        });
    }
}
