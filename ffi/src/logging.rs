//! The log sink: forwards the `log` crate's records (level, target, message and key-values) to the
//! app's logger.
//!
//! The `log` crate has one logger per process, so this module installs one forwarding logger, once,
//! and [`install_log_sink`] swaps the sink it forwards to. The sink is called **on the thread that
//! logs**: the engine's `possync-drain` and `possync-status` threads and any app thread calling the
//! engine. It must be quick, must not block, and must not call back into `PossyncEngine`. An exception
//! thrown by the sink is swallowed; a log made while the sink runs on the same thread is dropped (no
//! recursion).

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use log::kv::{Key, VisitSource};
use parking_lot::RwLock;

use crate::error::LogSinkError;

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is off but handled.
    Warn,
    /// Normal events (one per drain run, each send attempt).
    Info,
    /// Details for debugging.
    Debug,
    /// Everything.
    Trace,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// Where it comes from, e.g. `possync::send` for a send attempt.
    pub target: String,
    /// The message.
    pub message: String,
    /// The structured fields as text, e.g. `correlation_id`, `client_tx_id`, `attempt`,
    /// `lease_token`, `drain_reason`, `latency_ms`, `result`, `code` on `possync::send`.
    pub fields: HashMap<String, String>,
}

/// Receives log records; implemented by the app (Logcat, `os_log`, Python `logging`, ...). Called on
/// the thread that logs, often an engine thread: be quick and do not call back into the engine.
#[uniffi::export(with_foreign)]
pub trait LogSink: Send + Sync {
    /// Handles one record.
    fn log(&self, record: LogRecord);
}

/// Installs `sink` as the receiver of every record at `max_level` or more severe, replacing the sink
/// installed before. Call it once at app start, before opening the engine, to see its first run.
///
/// # Errors
/// [`LogSinkError::OtherLoggerInstalled`] when a logger other than possync's is installed already.
#[uniffi::export]
pub fn install_log_sink(sink: Arc<dyn LogSink>, max_level: LogLevel) -> Result<(), LogSinkError> {
    *LOGGER.sink.write() = Some(sink);
    match log::set_logger(&LOGGER) {
        Ok(()) => {}
        Err(_) if LOGGER.installed() => {}
        Err(e) => {
            *LOGGER.sink.write() = None;
            return Err(LogSinkError::OtherLoggerInstalled {
                reason: format!("{e}: the process already has another logger; possync logs go there"),
            });
        }
    }
    log::set_max_level(level_filter(max_level));
    Ok(())
}

/// Removes the sink; records are dropped until a sink is installed again.
#[uniffi::export]
pub fn remove_log_sink() {
    *LOGGER.sink.write() = None;
    log::set_max_level(log::LevelFilter::Off);
}

struct ForwardingLogger {
    sink: RwLock<Option<Arc<dyn LogSink>>>,
}

static LOGGER: ForwardingLogger = ForwardingLogger { sink: parking_lot::const_rwlock(None) };

thread_local! {
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

impl ForwardingLogger {
    /// Whether the process's logger is this one.
    fn installed(&'static self) -> bool {
        std::ptr::addr_eq(log::logger() as *const dyn log::Log, self as *const ForwardingLogger)
    }
}

impl log::Log for ForwardingLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level() && self.sink.read().is_some()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) || IN_SINK.with(Cell::get) {
            return;
        }
        // Never hold the lock across the foreign call.
        let Some(sink) = self.sink.read().clone() else { return };
        let mut fields = Fields(HashMap::new());
        // A failing visitor only loses fields; the record still goes out.
        let _ = record.key_values().visit(&mut fields);
        let entry = LogRecord {
            level: level_of(record.level()),
            target: record.target().to_owned(),
            message: record.args().to_string(),
            fields: fields.0,
        };
        IN_SINK.with(|f| f.set(true));
        let _ = catch_unwind(AssertUnwindSafe(|| sink.log(entry)));
        IN_SINK.with(|f| f.set(false));
    }

    fn flush(&self) {}
}

struct Fields(HashMap<String, String>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.insert(key.to_string(), value.to_string());
        Ok(())
    }
}

fn level_of(level: log::Level) -> LogLevel {
    match level {
        log::Level::Error => LogLevel::Error,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Info => LogLevel::Info,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Trace => LogLevel::Trace,
    }
}

fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}
