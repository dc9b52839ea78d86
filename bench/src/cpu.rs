//! CPU time by party, from `/proc`: how much of the machine PostgreSQL, the server process and this
//! process (the tills, the load generator, and pgbench once it has exited, as a waited-for child)
//! used over a stretch of a run. On a 2-core machine where the tills, the server and the database
//! share the cores, this says where a gap to pgbench's rate goes.

use std::path::Path;

/// Clock ticks per second of `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`; 100 on Linux).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The fields of `/proc/<pid>/stat` after the command name: (command, utime, stime, cutime, cstime)
/// in ticks.
fn stat_of(path: &Path) -> Option<(String, u64, u64, u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let command = text[open + 1..close].to_owned();
    // After ") ": state is field 3; utime is field 14, stime 15, cutime 16, cstime 17.
    let rest: Vec<&str> = text[close + 2..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some((command, field(14)?, field(15)?, field(16)?, field(17)?))
}

/// CPU seconds used so far by every `postgres` process: the live ones' own time, plus the time of
/// the exited ones that their parent (the postmaster) has collected.
fn postgres_seconds() -> f64 {
    let mut ticks = 0u64;
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Some((command, utime, stime, cutime, cstime)) = stat_of(&entry.path().join("stat")) else {
            continue;
        };
        // Debian names the postmaster "postgres" and its children "postgres" too (the title is
        // in cmdline); the children's collected time is in the postmaster's cutime.
        if command == "postgres" {
            ticks += utime + stime + cutime + cstime;
        }
    }
    ticks as f64 / ticks_per_second()
}

/// CPU seconds of process `pid` (its own, not its children's).
fn process_seconds(pid: u32) -> f64 {
    stat_of(Path::new(&format!("/proc/{pid}/stat")))
        .map_or(0.0, |(_, utime, stime, _, _)| (utime + stime) as f64 / ticks_per_second())
}

/// CPU seconds of this process and its exited, waited-for children (pgbench, a finished till).
fn own_seconds() -> f64 {
    stat_of(Path::new("/proc/self/stat")).map_or(0.0, |(_, utime, stime, cutime, cstime)| {
        (utime + stime + cutime + cstime) as f64 / ticks_per_second()
    })
}

/// A reading of every party's CPU seconds so far.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    postgres: f64,
    server: f64,
    own: f64,
}

/// CPU seconds each party used between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CpuUse {
    /// Every PostgreSQL process.
    pub postgres: f64,
    /// The server process (0 when none was named).
    pub server: f64,
    /// This process and its exited children: the tills or the load generator, pgbench.
    pub own: f64,
}

impl CpuSample {
    /// Reads the counters now; `server` is the server process's pid, when one runs.
    pub fn take(server: Option<u32>) -> CpuSample {
        CpuSample {
            postgres: postgres_seconds(),
            server: server.map_or(0.0, process_seconds),
            own: own_seconds(),
        }
    }

    /// What each party used from `self` to `later` (the server's pid the same in both).
    pub fn until(&self, later: &CpuSample) -> CpuUse {
        CpuUse {
            postgres: (later.postgres - self.postgres).max(0.0),
            server: (later.server - self.server).max(0.0),
            own: (later.own - self.own).max(0.0),
        }
    }
}

impl CpuUse {
    /// All parties together.
    pub fn total(&self) -> f64 {
        self.postgres + self.server + self.own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work() {
        // Work until the counters move (ticks are 10 ms); on a busy machine that takes longer, so the
        // wall-clock cap is generous and only stops a counter that never moves.
        let pid = Some(std::process::id());
        let before = CpuSample::take(pid);
        let started = std::time::Instant::now();
        let mut x = 0u64;
        let mut used = CpuUse::default();
        while used.own < 0.05 && started.elapsed() < std::time::Duration::from_secs(60) {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            used = before.until(&CpuSample::take(pid));
        }
        assert!(used.own >= 0.05 && used.server >= 0.05, "{used:?}");
    }
}
