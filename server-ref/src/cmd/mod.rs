//! The commands of the `possync-server` binary, one module each, and what they share: the command
//! line, the config file and the choice of database.

pub mod admin;
pub mod attention;
pub mod audit;
pub mod db;
pub mod gaps;
pub mod serve;
pub mod token;
pub mod verify;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand};
use possync_server::config::FileConfig;
use possync_server::settings::ServeSettings;

/// possync reference server: idempotent, transactional POST /sync/push on PostgreSQL (or an embedded
/// SQLite file with --sqlite).
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log level of the JSON-lines logs on stderr.
    #[arg(long, env = "POSSYNC_LOG", default_value = "info", global = true)]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Apply pending database migrations (safe to run from several instances at once).
    Migrate(DbArgs),
    /// Serve /sync/push, /healthz, /readyz and /metrics until SIGTERM or SIGINT.
    Serve(Box<ServeSettings>),
    /// Manage device tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Review sales that need a person: CONFLICT and INVALID attempts from the audit trail.
    #[command(subcommand)]
    Attention(attention::AttentionCommand),
    /// Maintain the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Manage the console's admins (the console is off until one exists).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// List sales that tills recorded and the server never received (from outbox sequence numbers);
    /// exits 1 when some are missing.
    Gaps(gaps::GapsArgs),
    /// Compare a till's outbox file with the server: missing, mismatched and extra sales. Exits 1 when
    /// a sale the till marked sent is missing on the server, or when the server stores another payload
    /// under an id of the outbox (sent or still unsent) that the till does not hold as a conflict.
    Verify(verify::VerifyArgs),
}

/// The database options every command takes.
#[derive(Args, Clone)]
pub struct DbArgs {
    /// PostgreSQL URL, e.g. postgres://possync@127.0.0.1:5432/possync (or `database_url` in the
    /// config file).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Embedded SQLite database file instead of PostgreSQL, for a one-till shop or the demo (or
    /// `sqlite` in the config file); `migrate` creates it.
    #[arg(long, env = "POSSYNC_SQLITE", conflicts_with = "database_url")]
    pub sqlite: Option<PathBuf>,
    /// TOML config file; its keys are the long option names with underscores.
    #[arg(long, env = "POSSYNC_CONFIG")]
    pub config: Option<PathBuf>,
}

/// What a command runs with: the config file (empty without one) and where it is.
pub struct CommandContext {
    /// The config file's keys.
    pub file: FileConfig,
    /// Where the file is, for error messages.
    pub file_path: PathBuf,
}

/// Parses the config file named by the command (if any), starts the logs and runs the command.
///
/// # Errors
/// Whatever the command fails with; the binary prints it and exits 1.
pub fn run(cli: Cli, matches: &ArgMatches) -> Result<()> {
    let path = match &cli.command {
        Command::Serve(s) => s.config.clone(),
        Command::Migrate(db) => db.config.clone(),
        Command::Token(c) => c.db().config.clone(),
        Command::Attention(c) => c.db().config.clone(),
        Command::Audit(c) => c.db().config.clone(),
        Command::Verify(v) => v.db.config.clone(),
        Command::Admin(c) => c.db().config.clone(),
        Command::Gaps(g) => g.db.config.clone(),
    };
    let file = match &path {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let log_level = match (from_user(matches, "log_level"), file.get("log_level").and_then(|v| v.as_str())) {
        (false, Some(level)) => level.to_owned(),
        _ => cli.log_level.clone(),
    };
    possync_server::logging::init(&log_level);
    let ctx = CommandContext { file, file_path: path.unwrap_or_default() };
    match cli.command {
        Command::Migrate(db) => db::migrate(&db, &ctx),
        Command::Serve(settings) => {
            let serve_matches = matches.subcommand_matches("serve").context("no matches for serve")?;
            serve::serve(*settings, serve_matches, &ctx, &log_level)
        }
        Command::Token(cmd) => token::run(cmd, &ctx),
        Command::Attention(cmd) => attention::run(cmd, &ctx),
        Command::Audit(cmd) => audit::run(cmd, &ctx),
        Command::Verify(args) => verify::run(args, &ctx),
        Command::Admin(cmd) => admin::run(cmd, &ctx),
        Command::Gaps(args) => gaps::run(args, &ctx),
    }
}

/// Whether an option was given on the command line or in its environment variable (which both win
/// over the config file), as opposed to left at its default.
pub fn from_user(matches: &ArgMatches, id: &str) -> bool {
    matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
}
