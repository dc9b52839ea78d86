//! JSON-lines logs on stderr: one object per record with `level`, `target`, `message`, `timestamp`
//! (Unix ms) and the record's key-values (`correlation_id`, `client_tx_id`, `result`, ...).
//! Tokens and payloads are never logged.

/// Installs the JSON-lines logger at `level` (`error`, `warn`, `info`, `debug`, `trace`).
/// Does nothing when a logger is already installed.
pub fn init(level: &str) {
    let _ = structured_logger::Builder::with_level(level)
        .with_default_writer(structured_logger::json::new_writer(std::io::stderr()))
        .try_init();
}
