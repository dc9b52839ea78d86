//! A fault-injecting HTTP proxy for loopback tests.
//!
//! It reads each HTTP/1.1 request of a till (headers and `Content-Length` body), decides what to do
//! with it, and forwards it to the upstream server over a fresh connection. Decisions come from a fixed
//! [`Mode`] or, in [`Mode::Chaos`], from a seeded RNG, so a failing run replays from its seed:
//!
//! | [`Action`] | the server | the till |
//! |---|---|---|
//! | `Pass` | settles the request | gets the answer |
//! | `Delay` | settles it, a little later | gets the answer late |
//! | `DropBeforeForward` | never sees it | connection closed |
//! | `CutAfterForward` | settles it (commits) | connection closed, no answer |
//! | `Unavailable` | never sees it | 503 with `Retry-After: 1` |
//! | `Stall` | never sees it | no answer until its timeout |
//!
//! Threads end with their connections; dropping the proxy stops accepting.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Forward and answer.
    Pass,
    /// Wait this long, then forward and answer.
    Delay(Duration),
    /// Close the till's connection without forwarding.
    DropBeforeForward,
    /// Forward (the server commits), then close the till's connection without the answer.
    CutAfterForward,
    /// Answer 503 with `Retry-After: 1` without forwarding.
    Unavailable,
    /// Hold the request without forwarding for this long (past the till's timeout), then close.
    Stall(Duration),
}

impl Action {
    /// A short name for statistics.
    pub fn name(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Delay(_) => "delay",
            Action::DropBeforeForward => "drop_before_forward",
            Action::CutAfterForward => "cut_after_forward",
            Action::Unavailable => "unavailable_503",
            Action::Stall(_) => "stall",
        }
    }
}

/// How the proxy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Forward the request, hold the answer this long (the server commits, the till times out).
    HoldResponse(Duration),
    /// Close new connections at once.
    Refuse,
    /// Pick an action per request from the seeded RNG: `fault_percent` of requests get a fault
    /// (spread evenly over the five faults), the rest pass; `stall` is the stall length.
    Chaos {
        /// Share of requests that get a fault, in percent.
        fault_percent: u32,
        /// How long a stalled request is held.
        stall: Duration,
    },
    /// A lossy link: `fail_percent` of requests fail, spread evenly over the four faults that fail a
    /// request (drop, cut after forward, 503, stall for `stall`); no delays. The rest pass.
    Lossy {
        /// Share of requests that fail, in percent.
        fail_percent: u32,
        /// How long a stalled request is held.
        stall: Duration,
    },
    /// Hold every request without forwarding it for this long, then close (the server never sees it).
    StallAll(Duration),
}

struct Shared {
    mode: Mutex<Mode>,
    rng: Mutex<StdRng>,
    stats: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    upstream: Mutex<SocketAddr>,
    /// Requests between their arrival and their answer (or end) now, and the most ever.
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
}

/// A running proxy on a free loopback port.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` in [`Mode::Pass`], with its RNG seeded by `seed`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        Self::start_seeded(upstream, 0)
    }

    /// Starts a proxy whose chaos decisions come from `seed`.
    pub fn start_seeded(upstream: SocketAddr, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            stats: Mutex::new(Default::default()),
            upstream: Mutex::new(upstream),
            in_flight: Default::default(),
            max_in_flight: Default::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        let accept = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    if *sh.mode.lock() == Mode::Refuse {
                        drop(client);
                        continue;
                    }
                    let sh = sh.clone();
                    let _ = std::thread::Builder::new()
                        .name("fault-proxy-conn".into())
                        .spawn(move || serve(client, &sh));
                }
            })
            .expect("spawn proxy");
        FaultProxy { addr, shared, stop, accept: Some(accept) }
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the mode for what follows.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock() = mode;
    }

    /// Points the proxy at another upstream (e.g. a restarted server on a new port).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock() = upstream;
    }

    /// The most requests that were in the proxy at once (from arrival to answer), over all clients.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// How many requests got each action so far.
    pub fn stats(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.shared.stats.lock().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn decide(shared: &Shared) -> (Action, Option<Duration>) {
    match *shared.mode.lock() {
        Mode::Pass | Mode::Refuse => (Action::Pass, None),
        Mode::HoldResponse(d) => (Action::Pass, Some(d)),
        Mode::Chaos { fault_percent, stall } => {
            let mut rng = shared.rng.lock();
            if rng.random_range(0..100) >= fault_percent {
                return (Action::Pass, None);
            }
            let action = match rng.random_range(0..5) {
                0 => Action::Delay(Duration::from_millis(rng.random_range(10..300))),
                1 => Action::DropBeforeForward,
                2 => Action::CutAfterForward,
                3 => Action::Unavailable,
                _ => Action::Stall(stall),
            };
            (action, None)
        }
        Mode::Lossy { fail_percent, stall } => {
            let mut rng = shared.rng.lock();
            if rng.random_range(0..100) >= fail_percent {
                return (Action::Pass, None);
            }
            let action = match rng.random_range(0..4) {
                0 => Action::DropBeforeForward,
                1 => Action::CutAfterForward,
                2 => Action::Unavailable,
                _ => Action::Stall(stall),
            };
            (action, None)
        }
        Mode::StallAll(d) => (Action::Stall(d), None),
    }
}

/// Serves one till connection, request by request.
fn serve(client: TcpStream, shared: &Shared) {
    let Ok(read_half) = client.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut client = client;
    while let Some(request) = read_message(&mut reader) {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let answered = answer(&mut client, &request, shared);
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !answered {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Answers one request as the mode decides; `false` when the connection is to be closed.
fn answer(client: &mut TcpStream, request: &[u8], shared: &Shared) -> bool {
    let (action, hold) = decide(shared);
    *shared.stats.lock().entry(action.name()).or_default() += 1;
    match action {
        Action::DropBeforeForward => return false,
        Action::Unavailable => {
            let body = br#"{"code":"overloaded","message":"fault proxy: try again later"}"#;
            let head = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if client.write_all(head.as_bytes()).and_then(|_| client.write_all(body)).is_err() {
                return false;
            }
        }
        Action::Stall(d) => {
            std::thread::sleep(d);
            return false;
        }
        Action::Pass | Action::Delay(_) | Action::CutAfterForward => {
            if let Action::Delay(d) = action {
                std::thread::sleep(d);
            }
            let upstream = *shared.upstream.lock();
            let Some(response) = forward(upstream, request) else { return false };
            if action == Action::CutAfterForward {
                return false;
            }
            if let Some(d) = hold {
                std::thread::sleep(d);
            }
            if client.write_all(&response).is_err() {
                return false;
            }
        }
    }
    true
}

/// Sends one request upstream on a fresh connection and reads the whole answer.
fn forward(upstream: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)).ok()?;
    server.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    server.write_all(request).ok()?;
    read_message(&mut BufReader::new(server))
}

/// One HTTP/1.1 message (request or response): head up to the blank line, then `Content-Length` bytes.
fn read_message(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
        if let Some(v) = text.strip_prefix("content-length:") {
            content_length = v.trim().parse().ok()?;
        }
        message.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let start = message.len();
    message.resize(start + content_length, 0);
    reader.read_exact(&mut message[start..]).ok()?;
    Some(message)
}
