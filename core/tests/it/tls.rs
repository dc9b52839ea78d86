//! TLS options of the HTTP transport against a real TLS listener started here, with certificates made
//! at test time (rcgen): a custom CA is accepted, an unknown CA is refused with a TLS error (and the
//! engine's status says so), a pin mismatch is refused, and without options the public roots apply
//! unchanged (the test CA is not trusted).

#![cfg(feature = "tls")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{sale, TempOutbox};
use base64::Engine as _;
use possync_core::config::{SyncConfig, TlsOptions};
use possync_core::drain::{DrainHooks, DrainStop, Drainer};
use possync_core::engine::{EngineConfig, SyncEngine};
use possync_core::reason::DrainReason;
use possync_core::status::SyncStatus;
use possync_core::transport::{HttpTransport, TransportError};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PublicKeyData};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// A CA and a server certificate for `127.0.0.1` issued by it.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
    server_spki_sha256: String,
}

fn pki(name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let server_key = KeyPair::generate().expect("server key");
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, "possync test server");
    let cert = params.signed_by(&server_key, &ca).expect("server cert");
    let spki = Sha256::digest(server_key.subject_public_key_info());
    Pki {
        ca_pem: ca.pem(),
        chain: vec![cert.der().clone()],
        key: server_key.serialize_der(),
        server_spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
    }
}

/// A TLS listener answering `OK` to every sale of every push; returns its base URL.
fn tls_server(pki: &Pki) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone()));
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), key)
            .expect("server config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                let _ = answer(rustls::StreamOwned::new(conn, stream));
            });
        }
    });
    format!("https://127.0.0.1:{port}")
}

fn answer(
    mut tls: rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut tls);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(()); // the client refused the certificate and hung up
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let results: Vec<serde_json::Value> = request["transactions"]
        .as_array()
        .map(|txs| {
            txs.iter()
                .map(|t| serde_json::json!({"client_tx_id": t["client_tx_id"], "status": "OK", "server_tx_id": 1}))
                .collect()
        })
        .unwrap_or_default();
    let reply = serde_json::json!({ "results": results }).to_string();
    write!(tls, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len())?;
    tls.flush()
}

fn config(url: &str, tls: TlsOptions) -> SyncConfig {
    let mut c = SyncConfig::new(url, "pst_test", "till-1");
    c.connect_timeout_ms = 2_000;
    c.request_timeout_ms = 5_000;
    c.lease_ms = 15_000;
    c.heartbeat_ms = 2_000;
    c.tls = tls;
    c
}

/// Drains one sale to `url` with `tls`; returns how many were sent and how the run stopped.
fn drain_one(url: &str, tls: TlsOptions) -> (u64, Option<DrainStop>) {
    let t = TempOutbox::new();
    let outbox = t.open();
    outbox.enqueue(&sale(1)).expect("enqueue");
    let config = config(url, tls);
    config.validate().expect("valid config");
    let transport = HttpTransport::new(&config);
    let report = Drainer::new(&outbox, &transport, &config)
        .expect("drainer")
        .drain(DrainReason::Manual.into(), DrainHooks::default())
        .expect("run");
    (report.sent, report.stop)
}

fn assert_tls_failure(stop: Option<DrainStop>, what: &str) -> String {
    match stop {
        Some(DrainStop::TlsFailed { error: TransportError::Tls(message) }) => message,
        other => panic!("{what}: expected a TLS failure, got {other:?}"),
    }
}

#[test]
fn a_custom_ca_is_accepted() {
    let pki = pki("shop");
    let url = tls_server(&pki);
    let tls = TlsOptions { extra_ca_pem: vec![pki.ca_pem.clone()], ..TlsOptions::default() };
    assert_eq!(drain_one(&url, tls), (1, None));
}

#[test]
fn an_unknown_ca_is_refused_with_a_tls_error_and_the_status_says_so() {
    let shop = pki("shop");
    let other = pki("other");
    let url = tls_server(&shop);
    let tls = TlsOptions { extra_ca_pem: vec![other.ca_pem.clone()], ..TlsOptions::default() };
    let (sent, stop) = drain_one(&url, tls.clone());
    assert_eq!(sent, 0);
    let message = assert_tls_failure(stop, "unknown CA");
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    // The engine reports it as a TLS failure, not as the server being offline.
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    outbox.enqueue(&sale(2)).expect("enqueue");
    let sync = config(&url, tls);
    let transport = Arc::new(HttpTransport::new(&sync));
    let engine = SyncEngine::start(outbox.clone(), transport, EngineConfig::new(sync), None).expect("engine");
    let report = engine.sync_now(Duration::from_secs(30)).expect("sync");
    assert!(matches!(report.stop, Some(DrainStop::TlsFailed { .. })), "{report:?}");
    match engine.status().expect("status").status {
        SyncStatus::TlsFailed { last_error } => assert!(last_error.contains("TLS"), "{last_error}"),
        other => panic!("expected TlsFailed, got {other:?}"),
    }
    assert_eq!(outbox.counts().expect("counts").pending, 1, "the sale is kept");
    engine.shutdown();
}

#[test]
fn a_pin_mismatch_is_refused_and_a_matching_pin_is_accepted() {
    let pki = pki("shop");
    let url = tls_server(&pki);
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let pinned_wrong = TlsOptions { extra_ca_pem: vec![pki.ca_pem.clone()], spki_sha256_pins: vec![wrong] };
    let (sent, stop) = drain_one(&url, pinned_wrong);
    assert_eq!(sent, 0);
    let message = assert_tls_failure(stop, "pin mismatch");
    assert!(message.contains("pin"), "{message}");

    let pinned_right = TlsOptions {
        extra_ca_pem: vec![pki.ca_pem.clone()],
        spki_sha256_pins: vec![pki.server_spki_sha256.clone()],
    };
    assert_eq!(drain_one(&url, pinned_right), (1, None));
}

#[test]
fn without_options_the_public_roots_apply_unchanged() {
    // The default agent (ureq's own rustls with the Mozilla roots) does not trust a private CA, and says
    // so as a TLS failure.
    let pki = pki("shop");
    let url = tls_server(&pki);
    let (sent, stop) = drain_one(&url, TlsOptions::default());
    assert_eq!(sent, 0);
    assert_tls_failure(stop, "default roots");
}

#[test]
fn bad_tls_options_are_a_config_error() {
    let bad_pem = TlsOptions { extra_ca_pem: vec!["not a certificate".into()], ..TlsOptions::default() };
    let err = config("https://127.0.0.1:1", bad_pem).validate().expect_err("bad PEM");
    assert!(err.to_string().contains("extra_ca_pem[0]"), "{err}");
    let short_pin = TlsOptions { spki_sha256_pins: vec!["AAAA".into()], ..TlsOptions::default() };
    let err = config("https://127.0.0.1:1", short_pin).validate().expect_err("short pin");
    assert!(err.to_string().contains("spki_sha256_pins[0]"), "{err}");
}
