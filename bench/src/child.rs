//! The parts of a benchmark that run in their own OS process, so that their memory can be read on its
//! own and their CPU is not shared with the load generator's threads: the server
//! ([`serve_until_stdin_closes`]) and a till draining its outbox ([`drain_all`]).
//!
//! `possync-bench` re-executes itself with a hidden subcommand to start them ([`ServerProcess`],
//! [`run_drain`]); the integration tests pass the path of the built binary instead.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use possync_core::config::{OutboxConfig, SyncConfig};
use possync_core::drain::{DrainHooks, Drainer};
use possync_core::outbox::Outbox;
use possync_core::reason::DrainReason;
use possync_core::transport::HttpTransport;
use possync_server::http::{self, HttpConfig};
use possync_server::store::postgres::{PgOptions, PgStore};
use serde::{Deserialize, Serialize};

/// Peak resident set size (`VmHWM`) of process `pid`, in KiB, from `/proc`.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(&format!("/proc/{pid}/status"), "VmHWM:")
}

/// Current resident set size (`VmRSS`) of process `pid`, in KiB, from `/proc`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

fn proc_status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Child side of [`ServerProcess`]: serves `database_url` on a free loopback port, prints
/// `listening <base url>` on stdout, and shuts down gracefully once stdin is closed.
///
/// # Errors
/// A message when the database cannot be reached or the port cannot be bound.
pub fn serve_until_stdin_closes(
    database_url: &str,
    workers: usize,
    pool: u32,
    port: u16,
    monitor_port: Option<u16>,
) -> Result<(), String> {
    let config: postgres::Config = database_url.parse().map_err(|e| format!("database url: {e}"))?;
    let options = PgOptions { pool_size: pool, ..PgOptions::default() };
    let store = PgStore::connect(config, &options).map_err(|e| format!("connect: {e}"))?;
    let http_config = HttpConfig {
        listen: ([127, 0, 0, 1], port).into(),
        monitor_listen: monitor_port.map(|m| ([127, 0, 0, 1], m).into()),
        workers,
        ..HttpConfig::default()
    };
    let server = http::start(Arc::new(store), http_config).map_err(|e| format!("start: {e}"))?;
    println!("listening http://{}", server.local_addr());
    // Blocks until the parent closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    server.shutdown();
    Ok(())
}

/// A `possync-server` running in a child process.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
}

impl ServerProcess {
    /// Starts `exe child-server` on `database_url` (already migrated) and waits until it listens.
    ///
    /// # Panics
    /// When the child cannot be started or does not report its address: a benchmark cannot go on.
    pub fn start(exe: &Path, database_url: &str, workers: usize, pool: u32) -> ServerProcess {
        Self::start_on(exe, database_url, workers, pool, 0)
    }

    /// [`ServerProcess::start`] on a given loopback port (0: any).
    ///
    /// # Panics
    /// As [`ServerProcess::start`].
    pub fn start_on(exe: &Path, database_url: &str, workers: usize, pool: u32, port: u16) -> ServerProcess {
        Self::start_with_monitor(exe, database_url, workers, pool, port, None)
    }

    /// [`ServerProcess::start_on`] with a monitoring port (`/healthz`, `/readyz`, `/metrics` on a
    /// thread of their own) on `monitor_port` when given.
    ///
    /// # Panics
    /// As [`ServerProcess::start`].
    pub fn start_with_monitor(
        exe: &Path,
        database_url: &str,
        workers: usize,
        pool: u32,
        port: u16,
        monitor_port: Option<u16>,
    ) -> ServerProcess {
        let mut command = Command::new(exe);
        command
            .args(["child-server", "--database-url", database_url])
            .args(["--workers", &workers.to_string(), "--pool", &pool.to_string()])
            .args(["--port", &port.to_string()]);
        if let Some(m) = monitor_port {
            command.args(["--monitor-port", &m.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} child-server: {e}", exe.display()));
        let stdout = child.stdout.take().expect("child stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read child-server address");
        let base = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("child-server did not start: {line:?}"))
            .to_owned();
        let stdin = child.stdin.take();
        ServerProcess { child, stdin, base }
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak RSS of the server process so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.child.id()).unwrap_or(0)
    }

    /// Current RSS of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id()).unwrap_or(0)
    }

    /// Graceful stop: closes stdin, waits for the requests in hand to finish and the process to exit.
    pub fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a till process reports after draining its outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainOutcome {
    /// Sales settled as sent (`OK` + `DUPLICATE`).
    pub settled: u64,
    /// Sales still unsent at the end (0 when the drain completed).
    pub remaining: u64,
    /// Wall time of the drain alone (not the process start or the outbox open), in seconds.
    pub seconds: f64,
    /// Peak RSS of the till process, in KiB (`VmHWM` at the end).
    pub peak_rss_kib: u64,
}

/// Child side of [`run_drain`]: drains the outbox at `outbox` to `server_url` (default sync settings:
/// batch 50, leases, heartbeat thread) until nothing is due or the server cannot be reached.
///
/// # Errors
/// A message for an outbox storage error or an invalid config.
pub fn drain_all(outbox: &Path, server_url: &str, token: &str, device: &str) -> Result<DrainOutcome, String> {
    let outbox = Outbox::open(outbox, OutboxConfig::default()).map_err(|e| e.to_string())?;
    let config = SyncConfig::new(server_url, token, device);
    let transport = HttpTransport::new(&config);
    let drainer = Drainer::new(&outbox, &transport, &config).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let report =
        drainer.drain(DrainReason::Manual.into(), DrainHooks::default()).map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(stop) = &report.stop {
        return Err(format!("drain stopped early: {stop:?} (last error {:?})", report.last_error));
    }
    Ok(DrainOutcome {
        settled: report.settled(),
        remaining: report.remaining_pending,
        seconds,
        peak_rss_kib: peak_rss_kib(std::process::id()).unwrap_or(0),
    })
}

/// Runs `exe child-drain` on `outbox` and returns what it reports.
///
/// # Panics
/// When the till process fails: the benchmark's result would be meaningless.
pub fn run_drain(exe: &Path, outbox: &Path, server_url: &str, token: &str) -> DrainOutcome {
    let out = Command::new(exe)
        .arg("child-drain")
        .arg("--outbox")
        .arg(outbox)
        .args(["--server", server_url, "--token", token, "--device", "bench"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("start {} child-drain: {e}", exe.display()));
    assert!(out.status.success(), "child-drain failed: {}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("child-drain output {:?}: {e}", String::from_utf8_lossy(&out.stdout)))
}

/// The path of the running `possync-bench` binary, to start its children.
///
/// # Panics
/// When the OS cannot tell.
pub fn current_exe() -> PathBuf {
    std::env::current_exe().expect("path of the running benchmark binary")
}
