//! The TLS listener: `serve` with a certificate made here, driven by a rustls client that
//! trusts it, over real sockets.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::sync::watch;
use vigil_pipeline::config::Config;
use vigil_pipeline::run::{RunOptions, Startup};
use vigil_pipeline::server::{serve, ServerConfig};
use vigil_pipeline::tls::{Tls, TlsConfig, TlsError};

/// A self-signed certificate for `localhost`, and its key, as PEM.
struct Certificate {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn certificate() -> Certificate {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Certificate {
        der: made.cert.der().clone(),
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
    }
}

/// `[tls]` naming `cert.pem` and `key.pem` in `dir`, holding `certificate`.
fn files(dir: &Path, certificate: &Certificate) -> TlsConfig {
    let config = TlsConfig {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&config.cert, &certificate.cert_pem).unwrap();
    std::fs::write(&config.key, &certificate.key_pem).unwrap();
    config
}

/// `serve` on a port of its own, in a runtime of its own, until dropped.
struct Server {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start(tls: Arc<Tls>, config: ServerConfig) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
        let (stop, shutdown) = watch::channel(false);
        runtime.spawn(async move { serve(listener, app, &config, Some(tls), shutdown).await });
        Server {
            address,
            stop,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// What a TLS client trusting `trusted` sees of one `GET /healthz`: the reply, the
/// certificate the server presented and the protocol agreed by ALPN.
struct Exchange {
    reply: String,
    presented: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
}

fn get_healthz(address: SocketAddr, trusted: &[&Certificate]) -> std::io::Result<Exchange> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in trusted {
        roots.add(certificate.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(address)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")?;
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => {}
        // A peer that closes without close_notify; what arrived is still the reply.
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => {}
        Err(error) => return Err(error),
    }
    let presented = stream
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate")
        .clone()
        .into_owned();
    Ok(Exchange {
        reply: String::from_utf8_lossy(&reply).into_owned(),
        presented,
        alpn: stream.conn.alpn_protocol().map(<[u8]>::to_vec),
    })
}

/// Reads from `socket` until it closes (or 10 s pass), returning what arrived and when the
/// close came, if it did.
fn read_until_closed(mut socket: TcpStream) -> (Vec<u8>, Option<Instant>) {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match socket.read(&mut buffer) {
            Ok(0) => return (received, Some(Instant::now())),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                return (received, Some(Instant::now()))
            }
            Err(_) => return (received, None),
        }
    }
}

#[test]
fn https_answers_with_the_configured_certificate_and_http_1_1() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate();
    let tls = Tls::load(files(dir.path(), &cert)).unwrap();
    let server = Server::start(tls, ServerConfig::default());

    let exchange = get_healthz(server.address, &[&cert]).unwrap();
    assert!(
        exchange.reply.starts_with("HTTP/1.1 200"),
        "{}",
        exchange.reply
    );
    assert!(
        exchange.reply.ends_with("\r\n\r\nok\n"),
        "{}",
        exchange.reply
    );
    assert_eq!(exchange.presented, cert.der);
    assert_eq!(exchange.alpn.as_deref(), Some(&b"http/1.1"[..]));

    // A client that trusts another certificate refuses this one.
    let stranger = certificate();
    let error = get_healthz(server.address, &[&stranger])
        .err()
        .expect("a client trusting another certificate connected");
    assert_eq!(error.kind(), ErrorKind::InvalidData, "{error}");
}

#[test]
fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::load(files(dir.path(), &certificate())).unwrap();
    let server = Server::start(tls, ServerConfig::default());

    let mut socket = TcpStream::connect(server.address).unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let (received, closed) = read_until_closed(socket);
    assert!(closed.is_some(), "the connection stayed open");
    assert!(
        !String::from_utf8_lossy(&received).contains("HTTP/1.1"),
        "{}",
        String::from_utf8_lossy(&received)
    );
}

#[test]
fn a_reload_serves_the_new_certificate_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (certificate(), certificate());
    let config = files(dir.path(), &old);
    let tls = Tls::load(config.clone()).unwrap();
    let server = Server::start(tls.clone(), ServerConfig::default());
    let trusted = [&old, &new];
    assert_eq!(
        get_healthz(server.address, &trusted).unwrap().presented,
        old.der
    );

    files(dir.path(), &new);
    // Until the reload, the files' change is not seen.
    assert_eq!(
        get_healthz(server.address, &trusted).unwrap().presented,
        old.der
    );
    tls.reload().unwrap();
    let exchange = get_healthz(server.address, &trusted).unwrap();
    assert!(
        exchange.reply.starts_with("HTTP/1.1 200"),
        "{}",
        exchange.reply
    );
    assert_eq!(exchange.presented, new.der);
}

#[test]
fn a_reload_from_bad_files_keeps_the_certificate_being_served() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate();
    let config = files(dir.path(), &cert);
    let tls = Tls::load(config.clone()).unwrap();
    let server = Server::start(tls.clone(), ServerConfig::default());

    // A key that does not belong to the certificate, then no key, then no certificate file.
    std::fs::write(&config.key, certificate().key_pem).unwrap();
    assert!(matches!(tls.reload(), Err(TlsError::Unusable { .. })));
    std::fs::write(&config.key, "not a key\n").unwrap();
    assert!(matches!(tls.reload(), Err(TlsError::NoKey(_))));
    std::fs::remove_file(&config.cert).unwrap();
    assert!(matches!(tls.reload(), Err(TlsError::Read { .. })));

    let exchange = get_healthz(server.address, &[&cert]).unwrap();
    assert!(
        exchange.reply.starts_with("HTTP/1.1 200"),
        "{}",
        exchange.reply
    );
    assert_eq!(exchange.presented, cert.der);
}

#[test]
fn start_up_names_the_file_that_cannot_be_served() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate();
    let config = files(dir.path(), &cert);
    assert!(config.validate().is_ok());
    let message = |config: &TlsConfig| config.validate().unwrap_err().to_string();
    let named = |message: String, path: &PathBuf| {
        assert!(message.contains(&path.display().to_string()), "{message}");
        message
    };

    let missing = TlsConfig {
        cert: dir.path().join("missing.pem"),
        ..config.clone()
    };
    let error = named(message(&missing), &missing.cert);
    assert!(error.starts_with("cannot read tls.cert"), "{error}");

    // A certificate file that holds only a key, and a key file that holds only a certificate.
    let swapped = TlsConfig {
        cert: config.key.clone(),
        key: config.cert.clone(),
    };
    let error = named(message(&swapped), &swapped.cert);
    assert!(error.contains("holds no certificate"), "{error}");
    let no_key = TlsConfig {
        key: config.cert.clone(),
        ..config.clone()
    };
    let error = named(message(&no_key), &no_key.key);
    assert!(error.contains("holds no private key"), "{error}");

    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n@@@\n").unwrap();
    let broken = TlsConfig {
        cert: broken,
        ..config.clone()
    };
    let error = named(message(&broken), &broken.cert);
    assert!(error.contains("not a valid PEM file"), "{error}");
}

#[test]
fn start_up_stops_on_a_tls_file_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsConfig {
        cert: dir.path().join("missing-cert.pem"),
        key: dir.path().join("missing-key.pem"),
    };
    let config = Config {
        data_dir: dir.path().join("data"),
        tls: Some(tls),
        ..Config::default()
    };
    assert!(config.serves_tls());
    assert!(!Config::default().serves_tls());
    let options = RunOptions {
        config,
        extra_rules: Vec::new(),
        demo: false,
        allow_no_rules: true,
    };
    let error = match Startup::new(options) {
        Ok(_) => panic!("started with a missing certificate"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("missing-cert.pem"), "{error}");
    assert!(
        !dir.path().join("data").exists(),
        "start-up wrote before checking"
    );
}

#[test]
fn a_stalled_handshake_is_closed_at_the_head_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::load(files(dir.path(), &certificate())).unwrap();
    let config = ServerConfig {
        header_read_timeout_ms: 300,
        ..ServerConfig::default()
    };
    let server = Server::start(tls, config);

    let opened = Instant::now();
    let socket = TcpStream::connect(server.address).unwrap();
    let (received, closed) = read_until_closed(socket);
    let closed = closed
        .expect("the stalled connection stayed open")
        .duration_since(opened);
    assert!(received.is_empty());
    assert!(
        closed >= Duration::from_millis(250) && closed < Duration::from_secs(5),
        "closed after {closed:?}"
    );
}

#[test]
fn a_stalled_handshake_makes_room_at_the_connection_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate();
    let tls = Tls::load(files(dir.path(), &cert)).unwrap();
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let server = Server::start(tls, config);

    let stalled = TcpStream::connect(server.address).unwrap();
    // Let the server take the stalled connection before the next one arrives.
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let exchange = get_healthz(server.address, &[&cert]).unwrap();
    assert!(
        exchange.reply.starts_with("HTTP/1.1 200"),
        "{}",
        exchange.reply
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let (_, closed) = read_until_closed(stalled);
    assert!(closed.is_some(), "the stalled connection stayed open");
}
