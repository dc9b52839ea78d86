//! The results section of `docs/benchmarks.md`: date, machine, commit and the table, written between
//! two marker lines so that the hand-written analysis around it stays.

use std::path::Path;
use std::process::Command;

use crate::{markdown, targets_summary, Row};

/// First line of the generated section.
pub const BEGIN: &str = "<!-- possync-bench: generated results begin -->";
/// Last line of the generated section.
pub const END: &str = "<!-- possync-bench: generated results end -->";

/// Facts of the machine and software a run was measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPU model and number of CPUs available to the process.
    pub cpu: String,
    /// Total memory.
    pub memory: String,
    /// Kernel release.
    pub kernel: String,
    /// SQLite linked into the outbox.
    pub sqlite: String,
    /// PostgreSQL server version, when reachable.
    pub postgres: Option<String>,
}

impl Machine {
    /// Reads the facts from `/proc`, rusqlite and (when `database_url` answers) PostgreSQL.
    pub fn detect(database_url: Option<&str>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".into());
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.into());
        let postgres = database_url.and_then(|url| {
            let config: postgres::Config = url.parse().ok()?;
            let mut c = config.connect(postgres::NoTls).ok()?;
            c.query_one("SHOW server_version", &[]).ok().map(|r| r.get::<_, String>(0))
        });
        Machine {
            cpu: format!("{cpus} × {model}"),
            memory,
            kernel,
            sqlite: rusqlite::version().to_owned(),
            postgres,
        }
    }
}

/// The commit being measured (`git describe`-like: short hash, `-dirty` with uncommitted changes).
pub fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=10", "HEAD"]) {
        Some(hash) => {
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

/// The generated section: heading with date, machine, commit, command, then the table and notes.
pub fn section(
    date: &str,
    machine: &Machine,
    commit: &str,
    command: &str,
    rows: &[Row],
    notes: &[String],
) -> String {
    let notes: String = notes.iter().map(|n| format!("\n{n}\n")).collect();
    format!(
        "{BEGIN}\n## Results of {date}\n\n\
         - Machine: {cpu}, {memory} RAM, {kernel}\n\
         - SQLite {sqlite} (bundled by rusqlite), PostgreSQL {pg}\n\
         - Commit: `{commit}`\n\
         - Command: `{command}`\n\n\
         {table}\n{summary}\n{notes}{END}\n",
        cpu = machine.cpu,
        memory = machine.memory,
        kernel = machine.kernel,
        sqlite = machine.sqlite,
        pg = machine.postgres.as_deref().unwrap_or("not reachable"),
        table = markdown(rows),
        summary = targets_summary(rows),
    )
}

/// Replaces the generated section of the document at `path` with `section` (appends it when the
/// markers are missing).
///
/// # Errors
/// An I/O error reading or writing the file.
pub fn write_section(path: &Path, section: &str) -> std::io::Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let updated = match (doc.find(BEGIN), doc.find(END)) {
        (Some(begin), Some(end)) if end > begin => {
            let after = doc[end + END.len()..].trim_start_matches('\n');
            format!("{}{section}\n{after}", &doc[..begin])
        }
        _ => format!("{}\n\n{section}", doc.trim_end()),
    };
    std::fs::write(path, updated)
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}
