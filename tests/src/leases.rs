//! Reads the leases of an outbox file from outside the till that owns it (read-only, no migration,
//! no locks held), e.g. right after the till was killed and before it is started again.

use std::path::Path;

/// The in-flight rows of an outbox that carry a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leased {
    /// In-flight rows with a lease token.
    pub rows: u64,
    /// The earliest lease expiry among them, in Unix ms (`None` without rows).
    pub earliest_expiry_ms: Option<i64>,
}

/// Counts the leased in-flight rows of the outbox file at `path`, opening it read-only.
///
/// # Errors
/// The SQLite error when the file cannot be opened or read.
pub fn leased_rows(path: &Path) -> rusqlite::Result<Leased> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.query_row(
        "SELECT count(*), min(lease_expires_at_ms) FROM outbox \
         WHERE state = 'in_flight' AND lease_token IS NOT NULL",
        [],
        |r| Ok(Leased { rows: r.get::<_, i64>(0)?.max(0) as u64, earliest_expiry_ms: r.get(1)? }),
    )
}

/// Sends signal `name` (`STOP`, `CONT`, `KILL`) to `pid` with `kill(1)`.
///
/// # Panics
/// When `kill` fails.
pub fn signal(name: &str, pid: u32) {
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name} {pid}");
}

/// Kills the till process `till` with SIGKILL at a moment its outbox file at `path` holds at least
/// `min_rows` leased rows: polls the file until it does, freezes the till (SIGSTOP), reads the file
/// again, and kills only if the leases are still there (else lets the till go on and tries again).
/// Returns the leases the file holds after the kill, read before anyone restarts the till.
///
/// # Panics
/// When the file cannot be read, or the till holds no such leases within two minutes.
pub fn kill_while_leased(till: &mut std::process::Child, path: &Path, min_rows: u64) -> Leased {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "the till process never held {min_rows} lease(s)");
        if leased_rows(path).expect("read the till's outbox").rows < min_rows {
            std::thread::sleep(std::time::Duration::from_millis(2));
            continue;
        }
        signal("STOP", till.id());
        if leased_rows(path).expect("read the till's outbox").rows < min_rows {
            signal("CONT", till.id());
            continue;
        }
        let _ = till.kill();
        let _ = till.wait();
        let after = leased_rows(path).expect("read the killed till's outbox");
        assert!(after.rows >= min_rows, "the killed till held {after:?}, expected {min_rows} lease(s)");
        return after;
    }
}
