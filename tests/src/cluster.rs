//! A throwaway PostgreSQL cluster for one test: `initdb` in a temporary directory, its own free
//! loopback port, started with `pg_ctl`, so that a test may crash it (SIGKILL of the postmaster and
//! every process it forked) and start it again (crash recovery) without touching anyone else's
//! database. Dropping the [`Cluster`] stops it (`pg_ctl stop -m immediate`, SIGKILL as a last resort)
//! and removes its directory, also when the test panicked.
//!
//! The binaries are found in `POSSYNC_PG_BIN`, else `/usr/lib/postgresql/15/bin`, else on `PATH`.
//! `initdb` refuses to run as root: when the test runs as root, the cluster belongs to the `postgres`
//! OS user (`runuser -u postgres --`), and its directory is handed to that user. A developer running
//! the tests as themselves owns the cluster directly.
//!
//! Nothing here skips: when the cluster cannot be created or started, [`Cluster::start`] panics with
//! the command, its output and a hint.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A running throwaway cluster (trust authentication, user `postgres`, `127.0.0.1:port`).
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    /// `Some("postgres")` when the tests run as root.
    run_as: Option<String>,
    /// The cluster's TCP port on 127.0.0.1.
    pub port: u16,
}

/// PostgreSQL's binaries: `POSSYNC_PG_BIN`, else Debian's `/usr/lib/postgresql/15/bin`, else bare
/// names found on `PATH` (an empty path).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("POSSYNC_PG_BIN") {
        return PathBuf::from(dir);
    }
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if debian.join("initdb").exists() {
        return debian;
    }
    PathBuf::new() // bare names: found on PATH
}

/// Whether this process runs as root (then the clusters belong to the `postgres` OS user).
pub(crate) fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `id -u USER` or `id -g USER` as a number; panics with a hint when the user does not exist.
pub(crate) fn id_of(user: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("id {flag} {user}: not a number: {e}")),
        other => panic!(
            "the tests run as root, and initdb refuses root: a `{user}` OS user is needed to own the \
             throwaway cluster (`id {flag} {user}` gave {other:?}); install PostgreSQL's server package \
             or run the tests as an ordinary user"
        ),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port for the cluster");
    l.local_addr().expect("local addr").port()
}

impl Cluster {
    /// Creates and starts a cluster on a free loopback port.
    ///
    /// # Panics
    /// When `initdb` or `pg_ctl start` fails, with their output: a test that needs its own cluster
    /// must fail loudly, never pass without it.
    pub fn start() -> Cluster {
        let dir = tempfile::Builder::new().prefix("possync-pg-").tempdir().expect("temp dir for the cluster");
        let run_as = running_as_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let (uid, gid) = (id_of(user, "-u"), id_of(user, "-g"));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", dir.path().display()));
        }
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        let cluster = Cluster { dir: Some(dir), data, log, bin: bin_dir(), run_as, port: free_port() };
        let data = cluster.data.to_string_lossy().into_owned();
        cluster.run_checked(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
        );
        // TCP only: a Unix socket's lock file would, like postmaster.pid, name the crashed postmaster.
        let conf = format!(
            "\n# possync throwaway cluster\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\nmax_connections = 200\nlogging_collector = off\n",
            cluster.port
        );
        let conf_path = cluster.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", conf_path.display()));
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap_or_else(|e| panic!("write {}: {e}", conf_path.display()));
        cluster.start_again();
        cluster
    }

    fn dir_path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or_else(|| Path::new("/nonexistent"))
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        // The test's own working directory may be closed to the cluster's user.
        cmd.current_dir(self.dir_path());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> std::io::Result<Output> {
        self.command(program).args(args).output()
    }

    fn run_checked(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        match out {
            Ok(o) if o.status.success() => {}
            other => panic!(
                "throwaway PostgreSQL cluster: `{program} {}` failed{}: {}\nserver log: {}\n\
                 (binaries from POSSYNC_PG_BIN, /usr/lib/postgresql/15/bin or PATH)",
                args.join(" "),
                self.run_as.as_deref().map(|u| format!(" (as OS user {u})")).unwrap_or_default(),
                describe(&other),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            ),
        }
    }

    /// Starts the (stopped or crashed) cluster and waits until it accepts connections; after a crash
    /// this is PostgreSQL's crash recovery.
    ///
    /// # Panics
    /// When `pg_ctl start` fails or the cluster does not accept connections within 60 s.
    pub fn start_again(&self) {
        let data = self.data.to_string_lossy().into_owned();
        let log = self.log.to_string_lossy().into_owned();
        self.run_checked("pg_ctl", &["start", "-w", "-t", "60", "-D", &data, "-l", &log]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.admin_config().connect(postgres::NoTls).is_err() {
            assert!(
                Instant::now() < deadline,
                "throwaway cluster on port {} does not accept connections",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A connection config for the `postgres` database.
    pub fn admin_config(&self) -> postgres::Config {
        let mut c = postgres::Config::new();
        c.host("127.0.0.1").port(self.port).user("postgres").dbname("postgres");
        c.connect_timeout(Duration::from_secs(5));
        c
    }

    /// The postmaster's pid, from `postmaster.pid` (`None` when it is not running or unreadable).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Crashes the cluster as a power cut of its processes would: the postmaster is frozen
    /// (SIGSTOP, so it forks nothing more), then it and every process it forked are killed with
    /// SIGKILL. Returns how many processes were killed.
    ///
    /// # Panics
    /// When the cluster is not running or the signals cannot be sent.
    pub fn crash(&self) -> usize {
        let pid = self.postmaster_pid().expect("crash: the throwaway cluster is not running");
        signal("STOP", pid);
        let children = children_of(pid);
        for child in &children {
            signal("KILL", *child);
        }
        signal("KILL", pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::iter::once(pid).chain(children.iter().copied()).any(alive) {
            assert!(Instant::now() < deadline, "crash: processes of the cluster survive SIGKILL");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The dead postmaster may linger as a zombie until init reaps it, and a new postmaster takes
        // a lock file naming a pid it may not signal (another user's zombie) for a running one. Every
        // process of the cluster is dead, so the lock file is stale: remove it, as an operator would
        // after a crash. Crash recovery is decided by pg_control, not by this file.
        let lock = self.data.join("postmaster.pid");
        if let Err(e) = std::fs::remove_file(&lock) {
            assert!(e.kind() == std::io::ErrorKind::NotFound, "remove {}: {e}", lock.display());
        }
        1 + children.len()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let stopped = self
            .run("pg_ctl", &["stop", "-m", "immediate", "-w", "-D", &data])
            .is_ok_and(|o| o.status.success());
        if !stopped {
            if let Some(pid) = self.postmaster_pid() {
                let children = children_of(pid);
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                for c in children {
                    let _ = Command::new("kill").args(["-KILL", &c.to_string()]).status();
                }
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

fn signal(name: &str, pid: u32) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()) || !alive(pid), "kill -{name} {pid} failed");
}

/// A command's exit status and output, or why it could not run, for a panic message.
pub(crate) fn describe(out: &std::io::Result<Output>) -> String {
    match out {
        Ok(o) => format!(
            "{}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => e.to_string(),
    }
}

/// A process exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false)
        }
        Err(_) => false,
    }
}

/// Pids whose parent is `parent`, from `/proc/*/stat`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                // Fields after the command name (which may hold spaces): state, ppid, ...
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}
