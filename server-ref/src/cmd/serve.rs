//! `serve`: layer the settings, open the store, run the HTTP front (and the audit retention thread,
//! when asked) until SIGTERM / SIGINT; or print the effective settings (`--print-config`).

use anyhow::{bail, Context, Result};
use clap::ArgMatches;
use possync_server::config::{layer, redact_database_url};
use possync_server::http;
use possync_server::http::StopReason;
use possync_server::retention::{RetentionPolicy, RetentionThread};
use possync_server::settings::ServeSettings;

use super::db::{backend, open_store, Backend};
use super::CommandContext;

/// Runs `serve` (or prints its effective settings with `--print-config`).
///
/// # Errors
/// Bad settings, an unreachable database, a port in use, or a server that stopped serving on its own
/// (the binary then exits 1, so that a supervisor restarts it).
pub fn serve(cli: ServeSettings, matches: &ArgMatches, ctx: &CommandContext, log_level: &str) -> Result<()> {
    let backend = backend(cli.database_url.as_deref(), cli.sqlite.as_ref(), ctx)?;
    let mut settings = layer(&cli, matches, &ctx.file, &ctx.file_path)?;
    settings.print_config = cli.print_config;
    settings.config = cli.config.clone();
    settings.validate().map_err(anyhow::Error::msg)?;
    for warning in settings.warnings() {
        log::warn!("{warning}");
    }
    if settings.print_config {
        return print_config(settings, &backend, log_level);
    }
    let store = open_store(&backend, &settings.db_options(), false)?.store();
    store.check_ready()?;
    let retention = settings
        .audit_retention_days
        .map(|days| RetentionThread::start(store.clone(), RetentionPolicy::hourly(days)))
        .transpose()
        .context("cannot start the audit retention thread")?;
    let server = http::start(store, settings.http_config())?;
    let handle = server.shutdown_handle();
    ctrlc::set_handler(move || {
        log::info!("shutdown requested; finishing requests in hand");
        handle.shutdown();
    })
    .context("cannot install the signal handler")?;
    let reason = server.join();
    if let Some(retention) = retention {
        retention.stop();
    }
    match reason {
        StopReason::Requested => Ok(()),
        StopReason::Failed(why) => bail!("stopped serving: {why}"),
    }
}

/// Prints the effective settings as TOML, the database password hidden.
fn print_config(mut settings: ServeSettings, backend: &Backend, log_level: &str) -> Result<()> {
    settings.log_level = Some(log_level.to_owned());
    match backend {
        Backend::Postgres(url) => {
            settings.database_url = Some(redact_database_url(url));
            settings.sqlite = None;
        }
        Backend::Sqlite(path) => {
            settings.database_url = None;
            settings.sqlite = Some(path.clone());
        }
    }
    print!("{}", toml::to_string(&settings).context("cannot print the settings")?);
    Ok(())
}
