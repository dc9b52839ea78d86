//! The settings of `possync-server serve`: one struct is the command line (clap, with its environment
//! variables and defaults), the config file's schema (serde, unknown keys refused) and the
//! `--print-config` output. [`crate::config::layer`] merges them: command line, then environment,
//! then file, then default.
//!
//! The options' defaults are the library's own ([`HttpConfig::default`], [`PgOptions::default`], the
//! defaults of a server started in-process), so they are written once. The binary's other commands
//! declare the database options (`--database-url`, `--sqlite`, `--config`) again in their `DbArgs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use possync_core::protocol::Limits;
use serde::{Deserialize, Serialize};

use crate::blocking::default_workers;
use crate::http::{FrontLimits, HttpConfig};
use crate::push::PushLimits;
use crate::store::postgres::PgOptions;

/// Every option of `serve`. Field names are the long options with underscores, which are also the
/// config file's keys.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// PostgreSQL URL, e.g. postgres://possync@127.0.0.1:5432/possync (or `database_url` in the
    /// config file).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Embedded SQLite database file instead of PostgreSQL, for a one-till shop or the demo (or
    /// `sqlite` in the config file); `migrate` creates it.
    #[arg(long, env = "POSSYNC_SQLITE", conflicts_with = "database_url")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<PathBuf>,
    /// TOML config file; its keys are the long option names with underscores.
    #[arg(long, env = "POSSYNC_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Log level of the JSON-lines logs on stderr (the global --log-level; `log_level` in the file).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "POSSYNC_LISTEN", default_value_t = http().listen)]
    pub listen: SocketAddr,
    /// A second address serving only /healthz, /readyz and /metrics, on a thread of its own, so that
    /// monitoring is answered while the main port is busy with pushes. None by default.
    #[arg(long, env = "POSSYNC_MONITOR_LISTEN")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_listen: Option<SocketAddr>,
    /// Threads doing database work (token lookups, sale transactions), each with at most one
    /// connection of the pool. 0: four per CPU core of this machine, 4 to 16 (more transactions at
    /// once than the cores can run only queue inside PostgreSQL; see docs/deploy.md).
    #[arg(long, env = "POSSYNC_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Threads of the async runtime that read requests and write answers.
    #[arg(long, env = "POSSYNC_ASYNC_THREADS", default_value_t = http().async_threads)]
    pub async_threads: usize,
    /// Database connections in the pool.
    #[arg(long, env = "POSSYNC_POOL_SIZE", default_value_t = db().pool_size)]
    pub pool_size: u32,
    /// How long a request waits for a database connection before a 503, in ms.
    #[arg(long, env = "POSSYNC_POOL_TIMEOUT_MS", default_value_t = ms(db().pool_timeout))]
    pub pool_timeout_ms: u64,
    /// lock_timeout of each sale's transaction, in ms.
    #[arg(long, env = "POSSYNC_LOCK_TIMEOUT_MS", default_value_t = db().lock_timeout_ms)]
    pub lock_timeout_ms: u64,
    /// statement_timeout of each sale's transaction, in ms.
    #[arg(long, env = "POSSYNC_STATEMENT_TIMEOUT_MS", default_value_t = db().statement_timeout_ms)]
    pub statement_timeout_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "POSSYNC_MAX_BODY_BYTES", default_value_t = http().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers), in bytes; at least 8192.
    #[arg(long, env = "POSSYNC_MAX_HEADER_BYTES",
        default_value_t = u32::try_from(front().max_header_bytes).unwrap_or(u32::MAX),
        value_parser = clap::value_parser!(u32).range(8192..))]
    pub max_header_bytes: u32,
    /// Time for a client to send a request's head, in ms.
    #[arg(long, env = "POSSYNC_HEADER_READ_TIMEOUT_MS", default_value_t = ms(front().header_read_timeout))]
    pub header_read_timeout_ms: u64,
    /// Time for a client to send a request's whole body, in ms (then 408).
    #[arg(long, env = "POSSYNC_BODY_READ_TIMEOUT_MS", default_value_t = ms(front().body_read_timeout))]
    pub body_read_timeout_ms: u64,
    /// Close a connection on which no byte arrives for this long, in ms (keep-alive idle timeout).
    #[arg(long, env = "POSSYNC_IDLE_TIMEOUT_MS", default_value_t = ms(front().idle_timeout))]
    pub idle_timeout_ms: u64,
    /// Close a connection whose client does not take its answer for this long, in ms.
    #[arg(long, env = "POSSYNC_WRITE_TIMEOUT_MS", default_value_t = ms(front().write_timeout))]
    pub write_timeout_ms: u64,
    /// Open connections at most (lowered to fit the file-descriptor limit); past it the
    /// longest-idle connection is closed.
    #[arg(long, env = "POSSYNC_MAX_CONNECTIONS", default_value_t = front().max_connections)]
    pub max_connections: usize,
    /// Push requests in hand at once (from the end of the body to the answer); past it 503 +
    /// Retry-After at once. 0: twice --workers.
    #[arg(long, env = "POSSYNC_MAX_INFLIGHT_PUSHES", default_value_t = front().max_inflight_pushes)]
    pub max_inflight_pushes: usize,
    /// Bytes of push bodies being read at once, across all connections; a body that does not fit is
    /// answered 503 + Retry-After at once. 0: 16 x --max-body-bytes; never less than --max-body-bytes.
    #[arg(long, env = "POSSYNC_MAX_BODY_BYTES_READING", default_value_t = front().max_body_bytes_reading)]
    pub max_body_bytes_reading: usize,
    /// Time a push request may take, in ms; sales not settled by then answer RETRY. Keep it below
    /// the tills' request timeout (30 s by default).
    #[arg(long, env = "POSSYNC_REQUEST_DEADLINE_MS", default_value_t = ms(front().request_deadline))]
    pub request_deadline_ms: u64,
    /// Sales being settled at once across all pushes; a push that does not fit waits in line for
    /// room (--sales-wait-ms), then is answered 503 + Retry-After. 0: 25 per --workers.
    #[arg(long, env = "POSSYNC_MAX_INFLIGHT_SALES", default_value_t = front().max_inflight_sales)]
    pub max_inflight_sales: usize,
    /// How long a push whose sales do not fit waits in line for room, first come first served,
    /// holding its push slot, before it is answered 503 + Retry-After, in ms. 0: shed at once.
    #[arg(long, env = "POSSYNC_SALES_WAIT_MS", default_value_t = ms(front().sales_wait))]
    pub sales_wait_ms: u64,
    /// Sales of one push settled at once, each in its own transaction (at most this many database
    /// connections for one request; fewer when many pushes share the workers). 1: one after another.
    #[arg(long, env = "POSSYNC_SALE_LANES", default_value_t = front().sale_lanes)]
    pub sale_lanes: usize,
    /// Most sales per request.
    #[arg(long, env = "POSSYNC_MAX_TRANSACTIONS", default_value_t = http().push_limits.max_transactions)]
    pub max_transactions: usize,
    /// Most items per sale.
    #[arg(long, env = "POSSYNC_MAX_ITEMS", default_value_t = http().push_limits.sale.max_items_per_sale)]
    pub max_items: usize,
    /// Retry-After seconds sent with 503 answers other than a shed push's (which is told a second
    /// reserved for it, at the rate the server admits pushes).
    #[arg(long, env = "POSSYNC_RETRY_AFTER_SECS", default_value_t = http().retry_after_secs)]
    pub retry_after_secs: u32,
    /// Seconds an accepted device token is trusted without a database lookup; a revocation reaches
    /// every instance within a second regardless. 0: look it up on every request.
    #[arg(long, env = "POSSYNC_TOKEN_CACHE_SECS", default_value_t = http().token_cache_ttl.as_secs())]
    pub token_cache_secs: u64,
    /// Delete audit rows older than this many days, at start and then hourly (default: keep all).
    #[arg(long, env = "POSSYNC_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_retention_days: Option<u32>,
    /// Console: flag a till whose oldest unsent sale, or whose silence, is older than this many
    /// seconds.
    #[arg(long, env = "POSSYNC_CONSOLE_ALERT_AFTER_SECS", default_value_t = default_console_alert_after_secs())]
    #[serde(default = "default_console_alert_after_secs")]
    pub console_alert_after_secs: u64,
    /// Console: hours a login lasts.
    #[arg(long, env = "POSSYNC_CONSOLE_SESSION_HOURS", default_value_t = default_console_session_hours())]
    #[serde(default = "default_console_session_hours")]
    pub console_session_hours: u64,
    /// Console: send cookies without `Secure`, for a server reached over plain HTTP (loopback, tests).
    /// Behind the TLS proxy of docs/deploy.md leave it off.
    #[arg(long, env = "POSSYNC_CONSOLE_INSECURE_COOKIE")]
    #[serde(default)]
    pub console_insecure_cookie: bool,
    /// Print the effective settings (password hidden) as TOML and exit without starting.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
}

/// Database threads for a `--workers` value: itself, or [`default_workers`] when it is 0.
pub fn workers_for(configured: usize) -> usize {
    match configured {
        0 => default_workers(),
        n => n,
    }
}

impl ServeSettings {
    /// Database threads: `--workers`, or [`default_workers`] when it is 0.
    pub fn workers(&self) -> usize {
        workers_for(self.workers)
    }

    /// The HTTP front's configuration.
    pub fn http_config(&self) -> HttpConfig {
        let ms = Duration::from_millis;
        HttpConfig {
            listen: self.listen,
            monitor_listen: self.monitor_listen,
            workers: self.workers(),
            async_threads: self.async_threads,
            max_body_bytes: self.max_body_bytes,
            push_limits: PushLimits {
                max_transactions: self.max_transactions,
                sale: Limits { max_items_per_sale: self.max_items, ..Limits::default() },
            },
            retry_after_secs: self.retry_after_secs,
            token_cache_ttl: Duration::from_secs(self.token_cache_secs),
            limits: FrontLimits {
                header_read_timeout: ms(self.header_read_timeout_ms),
                body_read_timeout: ms(self.body_read_timeout_ms),
                max_header_bytes: self.max_header_bytes as usize,
                idle_timeout: ms(self.idle_timeout_ms),
                write_timeout: ms(self.write_timeout_ms),
                max_connections: self.max_connections,
                max_inflight_pushes: self.max_inflight_pushes,
                max_body_bytes_reading: self.max_body_bytes_reading,
                one_push_per_device: true,
                request_deadline: ms(self.request_deadline_ms),
                sale_lanes: self.sale_lanes,
                max_inflight_sales: self.max_inflight_sales,
                sales_wait: ms(self.sales_wait_ms),
            },
            console: crate::console::ConsoleConfig {
                alert_after: Duration::from_secs(self.console_alert_after_secs),
                session_ttl: Duration::from_secs(self.console_session_hours.saturating_mul(3600)),
                secure_cookie: !self.console_insecure_cookie,
            },
            ..HttpConfig::default()
        }
    }

    /// The database's options (pool size and timeout, lock and statement timeouts): PostgreSQL's,
    /// from which the SQLite store takes its pool and its busy timeout too.
    pub fn db_options(&self) -> PgOptions {
        PgOptions {
            pool_size: self.pool_size,
            pool_timeout: Duration::from_millis(self.pool_timeout_ms),
            lock_timeout_ms: self.lock_timeout_ms,
            statement_timeout_ms: self.statement_timeout_ms,
            ..PgOptions::default()
        }
    }

    /// Refuses combinations that cannot work.
    ///
    /// # Errors
    /// A message naming the settings at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.audit_retention_days == Some(0) {
            return Err(
                "audit_retention_days must be at least 1 (leave it out to keep every audit row)".into()
            );
        }
        if self.max_header_bytes < 8192 {
            return Err("max_header_bytes must be at least 8192".into());
        }
        if self.idle_timeout_ms <= self.request_deadline_ms {
            return Err(format!(
                "idle_timeout_ms ({}) must be longer than request_deadline_ms ({}): a connection \
                 waiting for its answer must not be closed as idle",
                self.idle_timeout_ms, self.request_deadline_ms
            ));
        }
        if self.console_alert_after_secs == 0 || self.console_session_hours == 0 {
            return Err("console_alert_after_secs and console_session_hours must be at least 1".into());
        }
        if self.async_threads == 0 || self.pool_size == 0 || self.sale_lanes == 0 {
            return Err("async_threads, pool_size and sale_lanes must be at least 1".into());
        }
        Ok(())
    }
}

impl ServeSettings {
    /// Combinations that work, but worse than they could: each a sentence naming the settings and
    /// the fix (`serve` logs them as warnings at start).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let workers = self.workers();
        if (self.pool_size as usize) < workers {
            warnings.push(format!(
                "pool_size ({}) is below the {workers} database worker threads (workers): threads wait \
                 for a connection and pushes are answered 503 after pool_timeout_ms; raise pool_size to \
                 at least {workers} or lower workers (docs/deploy.md, reference)",
                self.pool_size
            ));
        }
        warnings
    }
}

// The defaults of the options above are the library's own: [`HttpConfig::default`] and
// [`PgOptions::default`], written once.

fn http() -> HttpConfig {
    HttpConfig::default()
}

fn front() -> FrontLimits {
    FrontLimits::default()
}

fn db() -> PgOptions {
    PgOptions::default()
}

/// `d` in whole milliseconds, as the `*_ms` options take it.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn default_console_alert_after_secs() -> u64 {
    http().console.alert_after.as_secs()
}

fn default_console_session_hours() -> u64 {
    http().console.session_ttl.as_secs() / 3600
}
