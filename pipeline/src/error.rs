//! Why `vigil run` could not start, or stopped.

use std::path::{Path, PathBuf};

use vigil_bus::BusError;
use vigil_ingest::cloudwatch::CloudWatchError;
use vigil_ingest::tail::TailError;
use vigil_ingest::IngestError;
use vigil_notify::NotifyError;
use vigil_store::StoreError;

use crate::config::ConfigError;
use crate::rules::RulesError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting is wrong or the settings disagree, found before anything was opened, bound
    /// or started. The message names the setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The roles and flags given together make no sense.
    #[error("{0}")]
    Roles(&'static str),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// notify.sqlite: the dispatcher's groups and silences.
    #[error(transparent)]
    Dispatch(#[from] vigil_notify::DispatchError),
    /// notify.sqlite: the outbox.
    #[error(transparent)]
    Outbox(#[from] vigil_notify::OutboxError),
    /// Playbooks that do not load, or respond.sqlite.
    #[error(transparent)]
    Respond(#[from] vigil_respond::RespondError),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another Vigil process is using {}; stop it or choose another --data-dir",
        .0.display()
    )]
    DataDirInUse(PathBuf),
    #[error("{} is empty; delete it to generate a new token", .0.display())]
    EmptyToken(PathBuf),
    #[error("cannot generate an API token")]
    GenerateToken(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot install the metrics recorder")]
    Metrics(#[source] metrics_exporter_prometheus::BuildError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot start the Kafka bus")]
    Kafka(#[source] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The access database (users, tokens, sessions, the audit log) could not be opened.
    #[error(transparent)]
    Access(#[from] vigil_access::AccessError),
    #[error(transparent)]
    Tail(#[from] TailError),
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("cannot listen on {address}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(std::io::Error),
    #[error("a pipeline stage stopped unexpectedly")]
    StageStopped,
    #[error(transparent)]
    StagePanicked(#[from] tokio::task::JoinError),
}

impl RunError {
    /// An I/O failure on `path`, described by `what` ("cannot create", ...).
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
        let path = path.to_owned();
        move |source| RunError::Io { what, path, source }
    }
}
