//! `possync-server`: migrate the database, serve `/sync/push`, manage device tokens, review sales
//! that need attention, prune the audit trail.
//!
//! Every option can come from the command line, an environment variable or the config file
//! (`--config` / `POSSYNC_CONFIG`, see [`possync_server::config`]), in that order of precedence, else
//! its default.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use possync_core::protocol::Limits;
use possync_server::attention;
use possync_server::auth::{generate_token, token_sha256};
use possync_server::config::{redact_database_url, FileConfig};
use possync_server::http::{self, HttpConfig};
use possync_server::push::PushLimits;
use possync_server::retention::{self, RetentionPolicy, RetentionThread};
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::sqlite::{SqliteOptions, SqliteStore};
use possync_server::store::{Device, Store};

/// possync reference server: idempotent, transactional POST /sync/push on PostgreSQL (or an embedded
/// SQLite file with --sqlite).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log level of the JSON-lines logs on stderr.
    #[arg(long, env = "POSSYNC_LOG", default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations (safe to run from several instances at once).
    Migrate(DbArgs),
    /// Serve /sync/push, /healthz, /readyz and /metrics until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Manage device tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Review sales that need a person: CONFLICT and INVALID attempts from the audit trail.
    #[command(subcommand)]
    Attention(AttentionCommand),
    /// Maintain the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Compare a till's outbox file with the server: missing, mismatched and extra sales. Exits 1 when
    /// a sale the till marked sent is missing on the server or stored with another payload.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// The till's outbox file (copy it off the device; it is opened for reading and queries only).
        #[arg(long)]
        outbox: PathBuf,
        /// The till's store, to list the device's sales that the outbox lacks (with --device).
        #[arg(long, requires = "device")]
        store: Option<String>,
        /// The till's device id (with --store).
        #[arg(long, requires = "store")]
        device: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct DbArgs {
    /// PostgreSQL URL, e.g. postgres://possync@127.0.0.1:5432/possync (or `database_url` in the
    /// config file).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Embedded SQLite database file instead of PostgreSQL, for a one-till shop or the demo (or
    /// `sqlite` in the config file); `migrate` creates it.
    #[arg(long, env = "POSSYNC_SQLITE", conflicts_with = "database_url")]
    sqlite: Option<PathBuf>,
    /// TOML config file; its keys are the long option names with underscores.
    #[arg(long, env = "POSSYNC_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on.
    #[arg(long, env = "POSSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// HTTP worker threads (requests answered at once).
    #[arg(long, env = "POSSYNC_WORKERS", default_value_t = 8)]
    workers: usize,
    /// Database connections in the pool.
    #[arg(long, env = "POSSYNC_POOL_SIZE", default_value_t = 16)]
    pool_size: u32,
    /// How long a request waits for a database connection before a 503, in ms.
    #[arg(long, env = "POSSYNC_POOL_TIMEOUT_MS", default_value_t = 2_000)]
    pool_timeout_ms: u64,
    /// lock_timeout of each sale's transaction, in ms.
    #[arg(long, env = "POSSYNC_LOCK_TIMEOUT_MS", default_value_t = 2_000)]
    lock_timeout_ms: u64,
    /// statement_timeout of each sale's transaction, in ms.
    #[arg(long, env = "POSSYNC_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    statement_timeout_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "POSSYNC_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Most sales per request.
    #[arg(long, env = "POSSYNC_MAX_TRANSACTIONS", default_value_t = 500)]
    max_transactions: usize,
    /// Most items per sale.
    #[arg(long, env = "POSSYNC_MAX_ITEMS", default_value_t = 500)]
    max_items: usize,
    /// Retry-After seconds sent with 503 answers.
    #[arg(long, env = "POSSYNC_RETRY_AFTER_SECS", default_value_t = 2)]
    retry_after_secs: u32,
    /// Seconds an accepted device token is trusted without a database lookup; a revoked token is
    /// refused within this time. 0: look it up on every request.
    #[arg(long, env = "POSSYNC_TOKEN_CACHE_SECS", default_value_t = 5)]
    token_cache_secs: u64,
    /// Delete audit rows older than this many days, at start and then hourly (default: keep all).
    #[arg(long, env = "POSSYNC_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    audit_retention_days: Option<u32>,
    /// Print the effective settings (password hidden) as TOML and exit without starting.
    #[arg(long)]
    print_config: bool,
}

#[derive(Subcommand)]
enum AttentionCommand {
    /// List CONFLICT and INVALID attempts of a store, oldest first, with both hashes.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Store to review.
        #[arg(long)]
        store: String,
        /// Only attempts since: a number of days (7 or 7d) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
    /// Show every audit row of one sale, and the stored sale's hash if one is stored.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// Store the sale belongs to.
        #[arg(long)]
        store: String,
        /// The sale's client_tx_id.
        #[arg(long)]
        client_tx_id: String,
    },
    /// Write CONFLICT and INVALID attempts of a store as CSV with a header row.
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// Store to export.
        #[arg(long)]
        store: String,
        /// Only attempts since: a number of days (7 or 7d) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Delete audit rows older than N days (sales, items and payments are never touched).
    Prune {
        #[command(flatten)]
        db: DbArgs,
        /// Keep this many days of audit rows.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        older_than_days: u32,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a device of a store; the token is printed once and never stored.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Store the device belongs to.
        #[arg(long)]
        store: String,
        /// Device (till) id; the till sends it as device_id.
        #[arg(long)]
        device: String,
        /// Free text, e.g. "front till".
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke every live token of a device.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// Store the device belongs to.
        #[arg(long)]
        store: String,
        /// Device id.
        #[arg(long)]
        device: String,
    },
    /// List tokens (hash prefixes, never the tokens).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Only this store.
        #[arg(long)]
        store: Option<String>,
    },
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let file = match config_path(&cli.command).map(FileConfig::load).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(e) => {
            eprintln!("possync-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_level = match (from_user(&matches, "log_level"), &file.log_level) {
        (false, Some(level)) => level.clone(),
        _ => cli.log_level.clone(),
    };
    possync_server::logging::init(&log_level);
    let serve_matches = matches.subcommand_matches("serve");
    match run(cli.command, file, serve_matches, &log_level) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("possync-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn config_path(command: &Command) -> Option<&Path> {
    let db = match command {
        Command::Migrate(db) => db,
        Command::Serve(args) => &args.db,
        Command::Token(TokenCommand::Create { db, .. })
        | Command::Token(TokenCommand::Revoke { db, .. })
        | Command::Token(TokenCommand::List { db, .. })
        | Command::Attention(AttentionCommand::List { db, .. })
        | Command::Attention(AttentionCommand::Show { db, .. })
        | Command::Attention(AttentionCommand::Export { db, .. })
        | Command::Audit(AuditCommand::Prune { db, .. })
        | Command::Verify { db, .. } => db,
    };
    db.config.as_deref()
}

/// Whether an option was given on the command line or in its environment variable (which both
/// win over the config file), as opposed to left at its default.
fn from_user(matches: &ArgMatches, id: &str) -> bool {
    matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
}

/// Which database a command works on.
#[derive(Debug, Clone)]
enum Backend {
    /// PostgreSQL at this URL.
    Postgres(String),
    /// The embedded SQLite store in this file.
    Sqlite(PathBuf),
}

/// The database: `--database-url` / `DATABASE_URL` or `--sqlite` / `POSSYNC_SQLITE` (clap refuses
/// both), else `database_url` or `sqlite` of the config file (not both).
fn backend(db: &DbArgs, file: &FileConfig) -> Result<Backend, String> {
    if let Some(path) = &db.sqlite {
        return Ok(Backend::Sqlite(path.clone()));
    }
    if let Some(url) = &db.database_url {
        return Ok(Backend::Postgres(url.clone()));
    }
    match (&file.database_url, &file.sqlite) {
        (Some(_), Some(_)) => Err("the config file sets both database_url and sqlite: keep one".into()),
        (Some(url), None) => Ok(Backend::Postgres(url.clone())),
        (None, Some(path)) => Ok(Backend::Sqlite(path.clone())),
        (None, None) => Err("no database: pass --database-url (or set DATABASE_URL) for PostgreSQL, or \
                             --sqlite FILE for the embedded store, or put database_url or sqlite in the \
                             config file"
            .into()),
    }
}

/// A store opened on either database.
enum Opened {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Opened {
    fn store(self) -> Arc<dyn Store> {
        match self {
            Opened::Postgres(s) => Arc::new(s),
            Opened::Sqlite(s) => Arc::new(s),
        }
    }

    fn migrate(&self) -> Result<Vec<String>, String> {
        match self {
            Opened::Postgres(s) => s.migrate(),
            Opened::Sqlite(s) => s.migrate(),
        }
        .map_err(|e| e.to_string())
    }
}

/// Opens the database; `create` lets a SQLite file be created (only `migrate` does).
fn open_store(backend: &Backend, opts: &PgOptions, create: bool) -> Result<Opened, String> {
    match backend {
        Backend::Postgres(url) => {
            let config: postgres::Config =
                url.parse().map_err(|e| format!("invalid --database-url / DATABASE_URL: {e}"))?;
            PgStore::connect(config, opts)
                .map(Opened::Postgres)
                .map_err(|e| format!("cannot connect to the database: {e}"))
        }
        Backend::Sqlite(path) => {
            if !create && !path.exists() {
                return Err(format!(
                    "SQLite file {} does not exist: create it with `possync-server migrate --sqlite {}`",
                    path.display(),
                    path.display()
                ));
            }
            let sqlite = SqliteOptions {
                pool_size: opts.pool_size,
                pool_timeout: opts.pool_timeout,
                busy_timeout: Duration::from_millis(opts.lock_timeout_ms),
            };
            SqliteStore::open(path, create, &sqlite).map(Opened::Sqlite).map_err(|e| e.to_string())
        }
    }
}

/// A one-connection store whose schema is checked to be this binary's, for admin commands.
fn open_ready_store(db: &DbArgs, file: &FileConfig) -> Result<Arc<dyn Store>, String> {
    let opts = PgOptions { pool_size: 1, ..PgOptions::default() };
    let store = open_store(&backend(db, file)?, &opts, false)?.store();
    store.check_ready().map_err(|e| e.to_string())?;
    Ok(store)
}

fn run(
    command: Command,
    file: FileConfig,
    serve_matches: Option<&ArgMatches>,
    log_level: &str,
) -> Result<(), String> {
    match command {
        Command::Migrate(db) => {
            let backend = backend(&db, &file)?;
            let store = open_store(&backend, &PgOptions { pool_size: 1, ..PgOptions::default() }, true)?;
            let applied = store.migrate()?;
            if applied.is_empty() {
                println!("schema is up to date");
            }
            for name in applied {
                println!("applied {name}");
            }
            Ok(())
        }
        Command::Serve(args) => {
            let matches = serve_matches.ok_or("internal error: no matches for serve")?;
            serve(merge_serve(args, file, matches)?, log_level)
        }
        Command::Token(cmd) => token(cmd, &file),
        Command::Attention(cmd) => attention_cmd(cmd, &file),
        Command::Verify { db, outbox, store, device, json } => {
            let server = open_ready_store(&db, &file)?;
            let outbox = possync_core::outbox::Outbox::open_read_only(&outbox)
                .map_err(|e| format!("cannot open the outbox: {e}"))?;
            let device = store.zip(device).map(|(store_id, device_id)| Device { store_id, device_id });
            let report = possync_server::verify::verify(&*server, &outbox, device.as_ref())
                .map_err(|e| e.to_string())?;
            print_verify(&report, json);
            if report.is_clean() {
                Ok(())
            } else {
                Err(format!(
                    "{} sale(s) missing on the server, {} stored with another payload",
                    report.missing.len(),
                    report.mismatched.len()
                ))
            }
        }
        Command::Audit(AuditCommand::Prune { db, older_than_days }) => {
            let store = open_ready_store(&db, &file)?;
            let deleted = retention::prune_once(&*store, older_than_days).map_err(|e| e.to_string())?;
            println!("pruned {deleted} audit row(s) older than {older_than_days} day(s)");
            Ok(())
        }
    }
}

/// [`ServeArgs`] with every option left at its default taken from the config file instead.
struct Settings {
    args: ServeArgs,
    backend: Backend,
}

fn merge_serve(mut args: ServeArgs, mut file: FileConfig, matches: &ArgMatches) -> Result<Settings, String> {
    macro_rules! from_file {
        ($($key:ident),*) => {$(
            if !from_user(matches, stringify!($key)) {
                if let Some(value) = file.$key.take() {
                    args.$key = value;
                }
            }
        )*};
    }
    from_file!(
        listen,
        workers,
        pool_size,
        pool_timeout_ms,
        lock_timeout_ms,
        statement_timeout_ms,
        max_body_bytes,
        max_transactions,
        max_items,
        retry_after_secs,
        token_cache_secs
    );
    if !from_user(matches, "audit_retention_days") && file.audit_retention_days.is_some() {
        args.audit_retention_days = file.audit_retention_days;
    }
    if args.audit_retention_days == Some(0) {
        return Err("audit_retention_days must be at least 1 (leave it out to keep every audit row)".into());
    }
    let backend = backend(&args.db, &file)?;
    Ok(Settings { args, backend })
}

fn print_config(settings: &Settings, log_level: &str) -> Result<(), String> {
    let a = &settings.args;
    let (database_url, sqlite) = match &settings.backend {
        Backend::Postgres(url) => (Some(redact_database_url(url)), None),
        Backend::Sqlite(path) => (None, Some(path.clone())),
    };
    let effective = FileConfig {
        database_url,
        sqlite,
        log_level: Some(log_level.to_owned()),
        listen: Some(a.listen),
        workers: Some(a.workers),
        pool_size: Some(a.pool_size),
        pool_timeout_ms: Some(a.pool_timeout_ms),
        lock_timeout_ms: Some(a.lock_timeout_ms),
        statement_timeout_ms: Some(a.statement_timeout_ms),
        max_body_bytes: Some(a.max_body_bytes),
        max_transactions: Some(a.max_transactions),
        max_items: Some(a.max_items),
        retry_after_secs: Some(a.retry_after_secs),
        token_cache_secs: Some(a.token_cache_secs),
        audit_retention_days: a.audit_retention_days,
    };
    let text = toml::to_string(&effective).map_err(|e| format!("cannot print the settings: {e}"))?;
    print!("{text}");
    Ok(())
}

fn serve(settings: Settings, log_level: &str) -> Result<(), String> {
    if settings.args.print_config {
        return print_config(&settings, log_level);
    }
    let args = settings.args;
    let opts = PgOptions {
        pool_size: args.pool_size,
        pool_timeout: Duration::from_millis(args.pool_timeout_ms),
        lock_timeout_ms: args.lock_timeout_ms,
        statement_timeout_ms: args.statement_timeout_ms,
        ..PgOptions::default()
    };
    let store = open_store(&settings.backend, &opts, false)?.store();
    store.check_ready().map_err(|e| e.to_string())?;
    let config = HttpConfig {
        listen: args.listen,
        workers: args.workers,
        max_body_bytes: args.max_body_bytes,
        push_limits: PushLimits {
            max_transactions: args.max_transactions,
            sale: Limits { max_items_per_sale: args.max_items, ..Limits::default() },
        },
        retry_after_secs: args.retry_after_secs,
        token_cache_ttl: Duration::from_secs(args.token_cache_secs),
    };
    let retention = args
        .audit_retention_days
        .map(|days| RetentionThread::start(store.clone(), RetentionPolicy::hourly(days)))
        .transpose()
        .map_err(|e| format!("cannot start the audit retention thread: {e}"))?;
    let server = http::start(store, config).map_err(|e| e.to_string())?;
    let handle = server.shutdown_handle();
    ctrlc::set_handler(move || {
        log::info!("shutdown requested; finishing requests in hand");
        handle.shutdown();
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    server.join();
    if let Some(retention) = retention {
        retention.stop();
    }
    Ok(())
}

fn attention_cmd(cmd: AttentionCommand, file: &FileConfig) -> Result<(), String> {
    let since = |text: Option<String>| {
        text.map(|t| attention::parse_since(&t, SystemTime::now())).transpose().map_err(|e| e.to_string())
    };
    let stdout = std::io::stdout();
    match cmd {
        AttentionCommand::List { db, store, since: s } => {
            let since = since(s)?;
            let st = open_ready_store(&db, file)?;
            attention::list(&*st, &store, since, &mut stdout.lock()).map_err(|e| e.to_string())?;
        }
        AttentionCommand::Show { db, store, client_tx_id } => {
            let st = open_ready_store(&db, file)?;
            attention::show(&*st, &store, &client_tx_id, &mut stdout.lock()).map_err(|e| e.to_string())?;
        }
        AttentionCommand::Export { db, store, since: s, output } => {
            let since = since(s)?;
            let st = open_ready_store(&db, file)?;
            match output {
                Some(path) => {
                    let mut f = std::fs::File::create(&path)
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                    let n = attention::export_csv(&*st, &store, since, &mut f).map_err(|e| e.to_string())?;
                    f.sync_all().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    eprintln!("wrote {n} row(s) to {}", path.display());
                }
                None => {
                    let mut out = stdout.lock();
                    attention::export_csv(&*st, &store, since, &mut out).map_err(|e| e.to_string())?;
                    out.flush().map_err(|e| e.to_string())?;
                }
            }
        }
    }
    Ok(())
}

fn token(cmd: TokenCommand, file: &FileConfig) -> Result<(), String> {
    match cmd {
        TokenCommand::Create { db, store, device, label } => {
            let s = open_ready_store(&db, file)?;
            let token = generate_token();
            let dev = Device { store_id: store, device_id: device };
            s.create_token(&dev, &token_sha256(&token), label.as_deref()).map_err(|e| e.to_string())?;
            eprintln!(
                "token for store {} device {} (shown once, store it on the till):",
                dev.store_id, dev.device_id
            );
            println!("{token}");
            Ok(())
        }
        TokenCommand::Revoke { db, store, device } => {
            let s = open_ready_store(&db, file)?;
            let n = s
                .revoke_tokens(&Device { store_id: store.clone(), device_id: device.clone() })
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("no live token for store {store} device {device}"));
            }
            println!("revoked {n} token(s) of store {store} device {device}");
            Ok(())
        }
        TokenCommand::List { db, store } => {
            let s = open_ready_store(&db, file)?;
            let tokens = s.list_tokens(store.as_deref()).map_err(|e| e.to_string())?;
            println!(
                "{:<14} {:<16} {:<16} {:<21} {:<21} label",
                "sha256", "store", "device", "created", "revoked"
            );
            for t in tokens {
                println!(
                    "{:<14} {:<16} {:<16} {:<21} {:<21} {}",
                    t.token_sha256_prefix,
                    t.store_id,
                    t.device_id,
                    t.created_at,
                    t.revoked_at.as_deref().unwrap_or("-"),
                    t.label.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
    }
}

fn print_verify(report: &possync_server::verify::VerifyReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
        return;
    }
    println!("checked {} sale(s) of the outbox", report.checked);
    println!("  sent and on the server:            {}", report.sent_ok);
    println!(
        "  unsent, already on the server:     {} (the next drain gets DUPLICATE)",
        report.unsent_on_server.len()
    );
    println!(
        "  unsent, not on the server:         {} (the next drain sends them)",
        report.unsent_not_on_server
    );
    println!("  conflicts / invalid on the till:   {} / {}", report.conflicts, report.invalid);
    println!("  MISSING on the server:             {}", report.missing.len());
    println!("  MISMATCHED (other payload stored): {}", report.mismatched.len());
    if !report.extra.is_empty() {
        println!(
            "  on the server, not in the outbox:  {} (pruned after retention, or another outbox)",
            report.extra.len()
        );
    }
    for id in &report.missing {
        println!("missing {id}");
    }
    for m in &report.mismatched {
        println!("mismatched {} outbox {} server {}", m.client_tx_id, m.outbox_sha256, m.server_sha256);
    }
}
