//! The optional TLS listener: `[tls]` in `vigil.toml` names a PEM certificate chain and its
//! private key. Both are read at start-up, where any mistake stops Vigil with a message
//! naming the file, and again on SIGHUP, so a renewed certificate is served without a
//! restart: new connections get it, those already open keep the one they shook hands with.
//! A reload that fails keeps the certificate being served.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// `[tls]` in `vigil.toml`: serve HTTPS with this certificate and key instead of HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file: the server's certificate, then any intermediate certificates.
    pub cert: PathBuf,
    /// A PEM file: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the certificate or key cannot be served; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {setting} {}", path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{setting} {} is not a valid PEM file", path.display())]
    Pem {
        setting: &'static str,
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("tls.cert {} holds no certificate (a PEM `BEGIN CERTIFICATE` block)", .0.display())]
    NoCertificate(PathBuf),
    #[error("tls.key {} holds no private key (a PEM `BEGIN PRIVATE KEY` block)", .0.display())]
    NoKey(PathBuf),
    #[error(
        "the certificate in {} and the key in {} cannot serve TLS (does the key belong to the certificate?)",
        cert.display(),
        key.display()
    )]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

impl TlsConfig {
    /// Reads both files and checks that they make a working server configuration.
    pub fn validate(&self) -> Result<(), TlsError> {
        self.server_config().map(drop)
    }

    /// A rustls server configuration from the files as they are now, offering HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let cert_pem = read("tls.cert", &self.cert)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                setting: "tls.cert",
                path: self.cert.clone(),
                source,
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(self.cert.clone()));
        }
        let key_pem = read("tls.key", &self.key)?;
        let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
            Ok(key) => key,
            Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey(self.key.clone())),
            Err(source) => {
                return Err(TlsError::Pem {
                    setting: "tls.key",
                    path: self.key.clone(),
                    source,
                })
            }
        };
        let unusable = |source| TlsError::Unusable {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        };
        // The provider is named rather than taken from the process default: with more than
        // one built in (the AWS SDK brings its own), rustls would refuse to pick.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(unusable)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(unusable)?;
        // The listener speaks HTTP/1.1 only; saying so lets clients skip guessing.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting,
        path: path.to_owned(),
        source,
    })
}

/// The certificate being served, swapped by [`Tls::reload`].
pub struct Tls {
    config: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the certificate and key named by `config`.
    pub fn load(config: TlsConfig) -> Result<Arc<Tls>, TlsError> {
        let current = RwLock::new(config.server_config()?);
        Ok(Arc::new(Tls { config, current }))
    }

    /// What the next handshake uses.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tokio_rustls::TlsAcceptor::from(current.clone())
    }

    /// Reads the files again and serves what they hold to new connections. When they cannot
    /// be served, the certificate served so far stays, and the error is logged and returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        match self.config.server_config() {
            Ok(fresh) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
                metrics::counter!("vigil_tls_reloads_total").increment(1);
                tracing::info!(cert = %self.config.cert.display(), "reloaded the TLS certificate");
                Ok(())
            }
            Err(error) => {
                metrics::counter!("vigil_tls_reload_failures_total").increment(1);
                tracing::error!(
                    error = %error_chain(&error),
                    "cannot reload the TLS certificate; still serving the previous one"
                );
                Err(error)
            }
        }
    }

    /// Reloads on every SIGHUP until `shutdown` turns true. Other parts of Vigil may listen
    /// for SIGHUP too: each listener gets every signal.
    pub fn reload_on_hangup(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hangups = match signal(SignalKind::hangup()) {
                Ok(hangups) => hangups,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGHUP; the TLS certificate will not be reloaded");
                    return;
                }
            };
            let tls = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        received = hangups.recv() => match received {
                            Some(()) => { let _ = tls.reload(); }
                            None => break,
                        },
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                }
            });
        }
        #[cfg(not(unix))]
        let _ = &mut shutdown;
    }
}

/// The error and its causes on one line: rustls and I/O say what is wrong in the source.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
