//! Test helper: a TLS front for a plain-HTTP server, with certificates made when it starts, for the
//! binding tests of the TLS options (extra CA certificates, SPKI pins).
//!
//! Usage: `possync-test-tls-front DIR UPSTREAM_ADDR`. It makes a CA and a certificate for `127.0.0.1`
//! and `localhost` issued by it, and an unrelated second CA, and writes into `DIR`:
//!
//! | file | content |
//! |---|---|
//! | `ca.pem` | the CA that issued the front's certificate |
//! | `other-ca.pem` | the unrelated CA (it issued nothing the front sends) |
//! | `pin.txt` | base64 SHA-256 of the front certificate's SubjectPublicKeyInfo (the right pin) |
//! | `wrong-pin.txt` | the same for the unrelated CA's key (a well-formed pin that matches nothing) |
//!
//! Then it listens with TLS on `127.0.0.1:0`, prints `https://127.0.0.1:PORT` on one line of stdout,
//! and forwards each connection's plaintext over its own TCP connection to `UPSTREAM_ADDR` (e.g. the
//! `possync-server` the tests started). It exits when its stdin is closed (the test process ended) or
//! it is killed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PublicKeyData};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// Base64 of the SHA-256 of a key's SubjectPublicKeyInfo, as in Android's `<pin digest="SHA-256">`.
fn spki_pin(key: &KeyPair) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(key.subject_public_key_info()))
}

/// A self-signed CA named `name`.
fn ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    CertifiedIssuer::self_signed(params, key).map_err(|e| e.to_string())
}

/// Writes the files into `dir`; returns the front's certificate chain and key.
fn make_pki(dir: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let shop = ca("possync test shop")?;
    let other = ca("possync test other")?;
    let server_key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .map_err(|e| e.to_string())?;
    params.distinguished_name.push(DnType::CommonName, "possync test front");
    let cert = params.signed_by(&server_key, &shop).map_err(|e| e.to_string())?;
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    write("ca.pem", shop.pem())?;
    write("other-ca.pem", other.pem())?;
    write("pin.txt", spki_pin(&server_key))?;
    write("wrong-pin.txt", spki_pin(other.key()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    Ok((vec![cert.der().clone()], key))
}

/// Relays one TLS connection to `upstream` in plaintext, both ways, until either side closes.
fn relay(config: Arc<rustls::ServerConfig>, client: TcpStream, upstream: &str) -> Result<(), String> {
    let conn = rustls::ServerConnection::new(config).map_err(|e| e.to_string())?;
    let conn = Arc::new(Mutex::new(conn));
    let upstream = TcpStream::connect(upstream).map_err(|e| format!("upstream {upstream}: {e}"))?;
    let (mut up_read, mut client_write) =
        (upstream.try_clone().map_err(|e| e.to_string())?, client.try_clone().map_err(|e| e.to_string())?);

    // Upstream to client: encrypt what the server answers.
    let back = {
        let conn = conn.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match up_read.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut c = conn.lock();
                if c.writer().write_all(&buf[..n]).is_err() {
                    break;
                }
                while c.wants_write() {
                    if c.write_tls(&mut client_write).is_err() {
                        return;
                    }
                }
            }
            let mut c = conn.lock();
            c.send_close_notify();
            while c.wants_write() {
                if c.write_tls(&mut client_write).is_err() {
                    break;
                }
            }
            let _ = client_write.shutdown(Shutdown::Write);
        })
    };

    // Client to upstream: the handshake, then decrypt what the till sends.
    let result = (|| -> Result<(), String> {
        let mut client_read = &client;
        let mut upstream_write = &upstream;
        let mut client_write = &client;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(());
            }
            let mut plain = Vec::new();
            {
                let mut c = conn.lock();
                let mut input = &buf[..n];
                while !input.is_empty() {
                    c.read_tls(&mut input).map_err(|e| e.to_string())?;
                    let state = match c.process_new_packets() {
                        Ok(state) => state,
                        Err(e) => {
                            // Send our alert, if any, then give up on this connection (e.g. the till
                            // refused the certificate).
                            while c.wants_write() && c.write_tls(&mut client_write).is_ok() {}
                            return Err(format!("TLS: {e}"));
                        }
                    };
                    let pending = state.plaintext_bytes_to_read();
                    if pending > 0 {
                        let start = plain.len();
                        plain.resize(start + pending, 0);
                        c.reader().read_exact(&mut plain[start..]).map_err(|e| e.to_string())?;
                    }
                    if state.peer_has_closed() {
                        break;
                    }
                }
                while c.wants_write() {
                    c.write_tls(&mut client_write).map_err(|e| e.to_string())?;
                }
            }
            upstream_write.write_all(&plain).map_err(|e| e.to_string())?;
        }
    })();
    let _ = upstream.shutdown(Shutdown::Write);
    if result.is_err() {
        let _ = upstream.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
    }
    let _ = back.join();
    result
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, upstream] = args.as_slice() else {
        eprintln!("usage: possync-test-tls-front DIR UPSTREAM_ADDR");
        return ExitCode::from(2);
    };
    let (chain, key) = match make_pki(Path::new(dir)) {
        Ok(pki) => pki,
        Err(e) => {
            eprintln!("possync-test-tls-front: certificates: {e}");
            return ExitCode::FAILURE;
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = match rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key).map_err(|e| e.to_string()))
    {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("possync-test-tls-front: TLS config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr().map(|a| (l, a))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("possync-test-tls-front: bind: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (listener, addr) = listener;
    println!("https://{addr}");
    if std::io::stdout().flush().is_err() {
        return ExitCode::FAILURE;
    }
    // The test that started us is gone when our stdin closes.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (config, upstream) = (config.clone(), upstream.clone());
        std::thread::spawn(move || {
            if let Err(e) = relay(config, stream, &upstream) {
                eprintln!("possync-test-tls-front: connection: {e}");
            }
        });
    }
    ExitCode::SUCCESS
}
