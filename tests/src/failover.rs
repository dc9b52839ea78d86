//! A throwaway pg_auto_failover formation for one test: a monitor, a primary and a standby, each a
//! PostgreSQL 15 cluster on its own free loopback port, each run by its own `pg_autoctl run` (Debian's
//! `postgresql-15-auto-failover`), so that a test may kill the primary as a machine loss would and
//! watch the monitor promote the standby, with synchronous or asynchronous replication. Dropping the
//! [`Formation`] stops everything (`pg_autoctl stop --immediate`, SIGKILL as a last resort, then every
//! process still working in its directory) and removes its directory, also when the test panicked.
//!
//! # Contract
//!
//! - [`ensure_installed`] installs `pg_autoctl` with apt-get when it is missing
//!   (`scripts/lib/pg-auto-failover.sh`, the same step scripts can call), and panics when it cannot.
//! - [`Formation::start`] returns only once the monitor reports `node1` as `primary` and `node2` as
//!   `secondary`, the primary's `synchronous_standby_names` is what was asked for (`ANY 1 (...)` for
//!   `sync = true`, empty for `sync = false`), and the database [`DB`] (UTF8) accepts connections.
//!   Every node listens on 127.0.0.1 only, with `trust` authentication, no TLS, user `postgres`; the
//!   Unix sockets, `pg_autoctl`'s configuration, state and pid files all live in the formation's
//!   temporary directory. It takes 7 to 12 s here (2 cores, two formations starting side by side).
//! - [`Formation::url`] is the multi-host URL a client (and `possync-server --database-url`) uses:
//!   libpq and the `postgres` crate try both nodes and keep the one that accepts writes.
//! - [`Formation::kill_primary`] is a machine loss: the primary's `pg_autoctl` keeper, its postmaster
//!   and every process they forked are frozen (SIGSTOP, so nothing restarts or forks) and then killed
//!   with SIGKILL. The monitor stops hearing from the node and its health checks fail; the monitor is
//!   tuned (see Tuning) so that the standby is promoted and accepts writes 6 to 7 s after the kill
//!   ([`Formation::wait_promoted`] measures it).
//! - [`Formation::freeze_standby_replication`] makes the standby fall behind: it waits until the
//!   standby has received and replayed everything the primary had written, then freezes (SIGSTOP) the
//!   primary's WAL sender that streams to the standby. In asynchronous mode commits on the primary still
//!   return at once; they never reach the standby, and after [`Formation::kill_primary`] and the
//!   promotion they are gone: acknowledged writes lost at failover. In synchronous mode commits wait
//!   for the standby, so they hang while the stream is frozen.
//!
//! # Killing the postmaster alone is not a machine loss
//!
//! With the keeper alive, a SIGKILL of the primary's postmaster and its children is a local crash:
//! the keeper reports "Postgres not running" (the monitor counts such a node unhealthy at once,
//! whatever its timeouts) and restarts Postgres. In the run measured here the monitor still failed
//! over (the report came before the restart) and the old primary came back as a secondary after
//! `pg_rewind`, which throws away what it had not replicated; whether a failover happens at all is a
//! race between the keeper's restart and its report. So [`Formation::kill_primary`] kills the keeper
//! too: nothing of the node is left to restart, report or rejoin, as after a machine loss.
//!
//! # Why the WAL sender is frozen, not the standby's WAL receiver
//!
//! Freezing the standby's WAL *receiver* (SIGSTOP of its `walreceiver` process) does not reliably
//! lose anything. The primary's WAL sender keeps sending into the TCP connection and the kernel
//! queues those bytes in the receiver's socket buffer, where they outlive the primary. Measured:
//! - left frozen, the promotion never completes: the monitor assigns `stop_replication`, the keeper
//!   asks Postgres to promote, and the startup process stops the WAL receiver and waits for it to exit,
//!   which a stopped process never does (still `prepare_promotion` 25 s after the kill);
//! - thawed right after the primary's kill, before the promotion starts, it reads the queued WAL from
//!   its socket before it sees the connection close: the "frozen" commits are on the promoted standby
//!   (10 of 10);
//! - thawed once the promotion has asked it to stop, its pending SIGTERM wins and it exits without
//!   reading the socket: the commits are lost and the promotion completes within a second. That works
//!   but hangs on timing.
//!
//! Freezing the primary's WAL *sender* keeps the WAL on the primary: nothing is sent, nothing is
//! queued, and the SIGKILL of the primary destroys it; the promotion runs as without a freeze. The
//! monitor does not refuse the lagging standby: it compares the LSNs the keepers last reported and
//! promotes a standby within `pgautofailover.promote_wal_log_threshold` (16 MB) of the primary, so a
//! few frozen commits do not block it. The frozen sender keeps the standby's replication slot busy,
//! so the standby cannot open a second stream around it (pg_autoctl gives each standby a slot). Keep
//! a freeze shorter than the standby's `wal_receiver_timeout` (60 s): past it the standby's receiver
//! gives up and retries, which was not measured.
//!
//! # Tuning
//!
//! The monitor checks each node every second (`health_check_period` 1 s, `health_check_timeout`
//! 1 s, one retry after 0.5 s), considers a node unhealthy after 3 s without a report from its keeper
//! (`node_considered_unhealthy_timeout`), and gives a failed primary 3 s to drain
//! (`primary_demote_timeout`, default 30 s) before the promoted standby takes writes; each keeper
//! demotes its own primary after 2 s alone (`timeout.network_partition_timeout`, below the monitor's
//! 3 s). Every cluster gets small memory settings (pg_autoctl sizes `shared_buffers` to a quarter of
//! the machine's RAM) and `dynamic_shared_memory_type = mmap`, so that a killed node leaves no POSIX
//! shared memory behind; its small System V segment is removed right after the kill.
//!
//! # Users and binaries
//!
//! `initdb` refuses root: when the test runs as root, everything runs as the `postgres` OS user
//! (`runuser -u postgres --`) and the directory is handed to that user, as for
//! [`crate::cluster::Cluster`]. `pg_ctl` comes from `POSSYNC_PG_BIN`, else `/usr/lib/postgresql/15/bin`,
//! else `PATH`. Commands run with a clean environment (`PATH`, `LANG=C.UTF-8` and the formation's
//! own `XDG_*`, `PGHOST` and `PG_REGRESS_SOCK_DIR`), so a `PGPORT` or `PGDATABASE` of the caller's
//! never leaks into the formation.
//!
//! Nothing here skips: when pg_autoctl cannot be installed or the formation does not come up, the
//! harness panics with the command, its output, the monitor's view and the tail of each node's log.

use crate::cluster::{alive, bin_dir, children_of, describe, free_port, id_of, running_as_root};
use parking_lot::Mutex;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The database the formation serves to tests, created on the primary by `pg_autoctl create postgres
/// --dbname` (UTF8).
pub const DB: &str = "shop";

/// The Debian package that provides `pg_autoctl` and the monitor's extension for PostgreSQL 15.
pub const PACKAGE: &str = "postgresql-15-auto-failover";

const HOST: &str = "127.0.0.1";

/// Appended to every cluster's `postgresql.conf` (after pg_autoctl's own include, so it wins).
const CLUSTER_CONF: &str = "\n# possync failover formation (tests/src/failover.rs)\n\
    shared_buffers = '32MB'\nwork_mem = '4MB'\nmaintenance_work_mem = '64MB'\n\
    effective_cache_size = '256MB'\nmax_connections = 200\ndynamic_shared_memory_type = mmap\n";

/// Appended to the monitor's `postgresql.conf`: failover within seconds instead of about a minute.
const MONITOR_CONF: &str = "pgautofailover.health_check_period = 1000\n\
    pgautofailover.health_check_timeout = 1000\npgautofailover.health_check_max_retries = 1\n\
    pgautofailover.health_check_retry_delay = 500\n\
    pgautofailover.node_considered_unhealthy_timeout = 3000\n\
    pgautofailover.startup_grace_period = 1000\npgautofailover.primary_demote_timeout = 3000\n";

/// Marks the block above, so that a standby's `postgresql.conf` (copied from the primary by
/// `pg_basebackup`) does not get it twice.
const CONF_MARKER: &str = "# possync failover formation";

/// How long each step of [`Formation::start`] may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// States in which the monitor lets a node take writes as the group's primary.
const PRIMARY_STATES: [&str; 5] = ["single", "wait_primary", "primary", "join_primary", "apply_settings"];

/// The path of `pg_autoctl`, installing `postgresql-15-auto-failover` with apt-get when it is neither
/// in `/usr/lib/postgresql/15/bin` nor on `PATH`.
///
/// The install is `scripts/lib/pg-auto-failover.sh` (`ensure_pg_auto_failover`): `apt-get install -y`,
/// with an `apt-get update` first only when the package is unknown. Done once per process; concurrent
/// callers wait for it.
///
/// # Panics
/// When pg_autoctl is missing and cannot be installed (no apt-get, not root and no sudo, no package
/// source), with the script's output.
pub fn ensure_installed() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            if let Some(found) = find_pg_autoctl() {
                return found;
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/pg-auto-failover.sh");
            eprintln!(
                "failover formation: pg_autoctl is missing; installing {PACKAGE} ({})",
                script.display()
            );
            let out = Command::new("bash").arg(&script).arg("possync-tests").stdin(Stdio::null()).output();
            match out {
                Ok(o) if o.status.success() => {
                    let path = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
                    assert!(
                        path.is_file(),
                        "{} printed {path:?}, which is not a file\n{}",
                        script.display(),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    path
                }
                other => panic!(
                    "failover formation: pg_autoctl is missing and `bash {} possync-tests` could not install \
                     {PACKAGE}: {}\nhint: run `apt-get install -y {PACKAGE}` as root (after `apt-get \
                     update`), or put pg_autoctl on PATH",
                    script.display(),
                    describe(&other)
                ),
            }
        })
        .clone()
}

fn find_pg_autoctl() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin/pg_autoctl");
    if debian.is_file() {
        return Some(debian);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("pg_autoctl")).find(|p| p.is_file())
}

/// One node of the formation as the monitor reports it (`pgautofailover.current_state()`, what
/// `pg_autoctl show state` prints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// The node's name: `node1` (the first primary) or `node2` (the first standby).
    pub name: String,
    /// The node's PostgreSQL port on 127.0.0.1.
    pub port: u16,
    /// The state the node's keeper last reported (`primary`, `secondary`, `wait_primary`, ...).
    pub reported: String,
    /// The state the monitor assigned to the node.
    pub assigned: String,
    /// The monitor's health check: 1 good, 0 bad, -1 unknown.
    pub health: i32,
    /// The WAL position the node's keeper last reported.
    pub lsn: String,
}

/// One `pg_autoctl run` service of the formation.
struct Service {
    name: &'static str,
    pgdata: PathBuf,
    port: u16,
    log: PathBuf,
    /// The `pg_autoctl run` process (`runuser` in front of it when the test runs as root); `None`
    /// once it has been killed or stopped.
    child: Mutex<Option<Child>>,
}

/// What [`Formation::kill_primary`] did, for [`Formation::wait_promoted`].
#[derive(Clone, Copy)]
struct Kill {
    at: Instant,
    killed_port: u16,
    successor_port: u16,
}

/// A running pg_auto_failover formation: a monitor, a primary and a standby on 127.0.0.1. See the
/// [module documentation](self) for its contract.
pub struct Formation {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    /// `Some("postgres")` when the tests run as root.
    run_as: Option<String>,
    autoctl: PathBuf,
    pg_ctl: Option<PathBuf>,
    sync: bool,
    monitor: Option<Service>,
    nodes: Vec<Service>,
    kill: Mutex<Option<Kill>>,
    /// The frozen WAL sender's pid.
    frozen: Mutex<Option<u32>>,
}

impl Formation {
    /// Creates and starts a formation in a temporary directory: the monitor, then `node1` (which
    /// becomes the primary and creates [`DB`]), then `node2` (a standby cloned from it), each run by a
    /// `pg_autoctl run` child process, and waits until the monitor reports `primary` and `secondary`.
    ///
    /// `sync = true` keeps pg_auto_failover's default: the standby takes part in the replication
    /// quorum, so the primary's `synchronous_standby_names` is `ANY 1 (pgautofailover_standby_2)` and
    /// every commit waits until the standby has flushed it. `sync = false` creates the standby with
    /// `--replication-quorum false`: `synchronous_standby_names` is empty and commits return without
    /// waiting for the standby. Both are checked on the primary before this returns.
    ///
    /// # Panics
    /// When pg_autoctl is missing and cannot be installed, when a `pg_autoctl create` fails, or when
    /// the formation does not reach `primary`/`secondary` within 60 s; with the command's output, the
    /// monitor's view and the tail of every log.
    pub fn start(sync: bool) -> Formation {
        let autoctl = ensure_installed();
        let dir =
            tempfile::Builder::new().prefix("possync-paf-").tempdir().expect("temp dir for the formation");
        let root = dir.path().to_path_buf();
        let run_as = running_as_root().then(|| "postgres".to_owned());
        let pg_bin = bin_dir();
        let pg_ctl = (!pg_bin.as_os_str().is_empty()).then(|| pg_bin.join("pg_ctl"));
        let mut f = Formation {
            dir: Some(dir),
            root,
            run_as,
            autoctl,
            pg_ctl,
            sync,
            monitor: None,
            nodes: Vec::new(),
            kill: Mutex::new(None),
            frozen: Mutex::new(None),
        };
        // From here on a panic drops `f`, which stops whatever was started.
        std::fs::create_dir(f.root.join("sock")).expect("create the formation's socket directory");
        if let Some(user) = &f.run_as {
            let (uid, gid) = (id_of(user, "-u"), id_of(user, "-g"));
            for path in [f.root.clone(), f.root.join("sock")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", path.display()));
            }
        }

        // The monitor.
        let monitor = f.service("monitor", free_port());
        let mut args = f.create_args("monitor", &monitor);
        args.extend(["--auth", "trust", "--no-ssl", "--ssl-mode", "disable"].map(String::from));
        f.run_checked(&args);
        // `create monitor` has no --listen: the monitor listens on '*' unless told otherwise.
        f.run_checked(&config_set(&monitor, "postgresql.listen_addresses", HOST));
        append_conf(&monitor.pgdata, &format!("{CLUSTER_CONF}{MONITOR_CONF}"));
        f.spawn(&monitor);
        f.monitor = Some(monitor);
        f.wait_for("the monitor to accept connections", STEP_TIMEOUT, |f| f.states().is_ok());

        // node1, the first primary.
        let node1 = f.service("node1", free_port());
        f.run_checked(&f.create_node_args(&node1, true));
        f.run_checked(&config_set(&node1, "timeout.network_partition_timeout", "2"));
        append_conf(&node1.pgdata, CLUSTER_CONF);
        f.spawn(&node1);
        f.nodes.push(node1);
        f.wait_for("node1 to be the single node", STEP_TIMEOUT, |f| {
            f.states().is_ok_and(|s| s.iter().any(|n| n.name == "node1" && n.reported == "single"))
        });

        // node2, the standby: pg_basebackup of node1 (with its postgresql.conf) during create.
        let node2 = f.service("node2", free_port());
        f.run_checked(&f.create_node_args(&node2, sync));
        f.run_checked(&config_set(&node2, "timeout.network_partition_timeout", "2"));
        append_conf(&node2.pgdata, CLUSTER_CONF);
        f.spawn(&node2);
        f.nodes.push(node2);
        f.wait_for("node1 primary and node2 secondary", STEP_TIMEOUT, |f| {
            f.states().is_ok_and(|s| {
                let is = |name: &str, state: &str| {
                    s.iter().any(|n| n.name == name && n.reported == state && n.assigned == state)
                };
                is("node1", "primary") && is("node2", "secondary")
            })
        });

        // Replication mode, as the primary sees it.
        let primary = f.nodes[0].port;
        f.wait_for("the primary's synchronous_standby_names", STEP_TIMEOUT, |f| {
            f.query_one(primary, "SHOW synchronous_standby_names").is_ok_and(|names| {
                if sync {
                    names.starts_with("ANY 1 (")
                } else {
                    names.is_empty()
                }
            })
        });
        let encoding = f
            .query_one(primary, "SHOW server_encoding")
            .unwrap_or_else(|e| f.fail(&format!("query the primary's encoding: {e}")));
        assert_eq!(encoding, "UTF8", "the formation's database {DB} must be UTF8");
        f
    }

    /// Whether the formation was started with synchronous replication.
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// The multi-host URL of [`DB`], `node1`'s port first:
    /// `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2/shop?target_session_attrs=read-write`.
    /// A client tries the nodes in order and keeps the first that accepts writes: the primary,
    /// whichever node that is now. The `postgres` crate parses this form, so it can be given to
    /// `possync-server --database-url` as is.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("{HOST}:{}", n.port)).collect();
        format!("postgres://postgres@{}/{DB}?target_session_attrs=read-write", hosts.join(","))
    }

    /// `postgres://postgres@127.0.0.1:<port>/shop`: one node, whatever its role.
    pub fn node_url(&self, port: u16) -> String {
        format!("postgres://postgres@{HOST}:{port}/{DB}")
    }

    /// The ports of the data nodes, `node1` first.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The monitor's view of the data nodes, `node1` first.
    ///
    /// # Panics
    /// When the monitor cannot be queried.
    pub fn state(&self) -> Vec<NodeState> {
        self.states().unwrap_or_else(|e| self.fail(&format!("query the monitor: {e}")))
    }

    /// The port of the node the monitor currently has as the primary (reported and assigned one of
    /// `single`, `wait_primary`, `primary`, `join_primary`, `apply_settings`).
    ///
    /// # Panics
    /// When no node or more than one is the primary (e.g. in the middle of a failover), with the
    /// monitor's view.
    pub fn primary_port(&self) -> u16 {
        let is_primary = |n: &NodeState| {
            PRIMARY_STATES.contains(&n.reported.as_str()) && PRIMARY_STATES.contains(&n.assigned.as_str())
        };
        self.only_one("primary", is_primary)
    }

    /// The port of the node the monitor currently has as the standby (reported and assigned
    /// `secondary`).
    ///
    /// # Panics
    /// When no node or more than one is a secondary (after a failover there is none until the old
    /// primary comes back), with the monitor's view.
    pub fn standby_port(&self) -> u16 {
        self.only_one("secondary", |n| n.reported == "secondary" && n.assigned == "secondary")
    }

    /// Kills the current primary as a machine loss would: its `pg_autoctl run` service (keeper and
    /// Postgres supervisor), its postmaster and every process they forked are frozen with SIGSTOP
    /// from the top down (nothing restarts or forks), then killed with SIGKILL. The standby's keeper
    /// and the monitor are left alone. Returns the killed node's port; [`Formation::wait_promoted`]
    /// then waits for the standby to take over.
    ///
    /// # Panics
    /// When there is no primary and standby to fail over between, or a process survives SIGKILL.
    pub fn kill_primary(&self) -> u16 {
        let primary = self.primary_port();
        let standby = self.standby_port();
        let node = self.node(primary);
        let shm = sysv_segment(&node.pgdata);
        let mut child =
            node.child.lock().take().unwrap_or_else(|| self.fail("kill_primary: node is not running"));
        let survivors = kill_tree(child.id());
        assert!(
            survivors.is_empty(),
            "kill_primary: processes {survivors:?} of node {} survive SIGKILL",
            node.name
        );
        let _ = child.wait(); // reap runuser / pg_autoctl: SIGKILLed, its status says nothing more
                              // A frozen WAL sender was the primary's and died with it: nothing left to thaw.
        self.frozen.lock().take();
        *self.kill.lock() = Some(Kill { at: Instant::now(), killed_port: primary, successor_port: standby });
        // The dead postmaster's System V segment (its header; the rest was anonymous or in PGDATA).
        if let Some(shmid) = shm {
            let _ = Command::new("ipcrm").args(["-m", &shmid.to_string()]).output();
        }
        primary
    }

    /// Waits until the standby of the last [`Formation::kill_primary`] is the primary: the monitor
    /// reports it in `wait_primary` or `primary`, and a connection through [`Formation::url`] lands on
    /// it with `transaction_read_only = off`. Returns the time since the kill.
    ///
    /// # Panics
    /// When [`Formation::kill_primary`] was not called, or the promotion does not happen within
    /// `timeout`, with the monitor's view and the logs.
    pub fn wait_promoted(&self, timeout: Duration) -> Duration {
        let kill = (*self.kill.lock()).unwrap_or_else(|| self.fail("wait_promoted before kill_primary"));
        let what = format!(
            "node on port {} to be promoted after the kill of the primary on port {}",
            kill.successor_port, kill.killed_port
        );
        let deadline = kill.at + timeout;
        self.wait_for(&what, deadline.saturating_duration_since(Instant::now()), |f| {
            let promoted = f.states().is_ok_and(|s| {
                s.iter().any(|n| {
                    n.port == kill.successor_port
                        && ["wait_primary", "primary"].contains(&n.reported.as_str())
                        && n.reported == n.assigned
                })
            });
            promoted && f.writable_through_url() == Some(kill.successor_port)
        });
        kill.at.elapsed()
    }

    /// Makes the standby fall behind the primary: waits (up to 10 s) until the standby has received
    /// and replayed all the WAL the primary has written so far, then freezes (SIGSTOP) the primary's
    /// WAL sender that streams to it. Everything committed before the call is on the standby; nothing
    /// committed after it reaches the standby until [`Formation::thaw_standby_replication`]. In
    /// asynchronous mode commits still return at once; in synchronous mode they wait for the thaw.
    /// See the module documentation for why the sender, not the standby's WAL receiver, is frozen.
    ///
    /// # Panics
    /// When the replication is already frozen, the standby does not catch up, or the primary has no
    /// WAL sender for it.
    pub fn freeze_standby_replication(&self) {
        let mut frozen = self.frozen.lock();
        assert!(frozen.is_none(), "freeze_standby_replication: the standby's replication is already frozen");
        let (primary, standby) = (self.primary_port(), self.standby_port());
        let target = self
            .query_one(primary, "SELECT pg_current_wal_lsn()::text")
            .unwrap_or_else(|e| self.fail(&format!("read the primary's WAL position: {e}")));
        let caught_up = format!("SELECT (pg_last_wal_replay_lsn() >= '{target}'::pg_lsn)::text");
        self.wait_for(
            &format!("the standby on port {standby} to replay the primary's WAL up to {target}"),
            Duration::from_secs(10),
            |f| f.query_one(standby, &caught_up).is_ok_and(|t| t == "true"),
        );
        let pids = self
            .query_all(primary, "SELECT pid::text FROM pg_stat_replication")
            .unwrap_or_else(|e| self.fail(&format!("read pg_stat_replication on the primary: {e}")));
        let [pid] = pids.as_slice() else {
            self.fail(&format!("the primary on port {primary} has WAL senders {pids:?}, not exactly one"))
        };
        let pid: u32 = pid.parse().unwrap_or_else(|e| panic!("WAL sender pid {pid:?}: {e}"));
        assert!(stop_and_wait(pid), "freeze_standby_replication: WAL sender {pid} does not stop on SIGSTOP");
        *frozen = Some(pid);
    }

    /// Thaws (SIGCONT) the WAL sender frozen by [`Formation::freeze_standby_replication`]: the standby
    /// catches up. Nothing to do when the replication is not frozen or the primary has been killed
    /// since (its WAL, and the sender, are gone).
    pub fn thaw_standby_replication(&self) {
        if let Some(pid) = self.frozen.lock().take() {
            if alive(pid) {
                signal_all("CONT", &[pid]);
            }
        }
    }

    fn service(&self, name: &'static str, port: u16) -> Service {
        Service {
            name,
            pgdata: self.root.join(name),
            port,
            log: self.root.join(format!("{name}.log")),
            child: Mutex::new(None),
        }
    }

    fn monitor_url(&self) -> String {
        let port = self.monitor.as_ref().map_or(0, |m| m.port);
        format!("postgres://autoctl_node@{HOST}:{port}/pg_auto_failover?sslmode=disable")
    }

    /// `create monitor|postgres` arguments common to every node.
    fn create_args(&self, what: &str, s: &Service) -> Vec<String> {
        let mut args: Vec<String> = vec!["create".into(), what.into()];
        if let Some(pg_ctl) = &self.pg_ctl {
            args.extend(["--pgctl".into(), pg_ctl.to_string_lossy().into_owned()]);
        }
        args.extend(
            ["--pgdata", &s.pgdata.to_string_lossy(), "--pgport", &s.port.to_string(), "--hostname", HOST]
                .map(String::from),
        );
        args
    }

    fn create_node_args(&self, s: &Service, replication_quorum: bool) -> Vec<String> {
        let mut args = self.create_args("postgres", s);
        args.extend(
            [
                "--name",
                s.name,
                "--listen",
                HOST,
                "--auth",
                "trust",
                "--no-ssl",
                "--ssl-mode",
                "disable",
                "--monitor",
                &self.monitor_url(),
                "--dbname",
                DB,
                "--replication-quorum",
                if replication_quorum { "true" } else { "false" },
            ]
            .map(String::from),
        );
        args
    }

    /// `pg_autoctl ARGS` as the cluster's user, in a clean environment of the formation's own.
    fn autoctl(&self, args: &[String]) -> Command {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        let sock = self.root.join("sock").to_string_lossy().into_owned();
        let env = [
            ("PATH", path),
            ("LANG", "C.UTF-8".into()),
            ("LC_ALL", "C.UTF-8".into()),
            ("HOME", self.root.to_string_lossy().into_owned()),
            ("XDG_CONFIG_HOME", self.root.join("config").to_string_lossy().into_owned()),
            ("XDG_DATA_HOME", self.root.join("share").to_string_lossy().into_owned()),
            ("XDG_RUNTIME_DIR", self.root.join("run").to_string_lossy().into_owned()),
            // Postgres' Unix sockets in the formation's directory (`postgres -k`), and pg_autoctl's
            // local connections through them.
            ("PG_REGRESS_SOCK_DIR", sock.clone()),
            ("PGHOST", sock),
        ];
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "env", "-i"]);
                c.args(env.iter().map(|(k, v)| format!("{k}={v}")));
                c.arg(&self.autoctl);
                c
            }
            None => {
                let mut c = Command::new(&self.autoctl);
                c.env_clear().envs(env);
                c
            }
        };
        // The test's own working directory may be closed to the cluster's user.
        cmd.args(args).current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    fn run_checked(&self, args: &[String]) {
        let out = self.autoctl(args).output();
        match out {
            Ok(o) if o.status.success() => {}
            other => self.fail(&format!(
                "`pg_autoctl {}` failed{}: {}",
                args.join(" "),
                self.run_as.as_deref().map(|u| format!(" (as OS user {u})")).unwrap_or_default(),
                describe(&other)
            )),
        }
    }

    /// Starts `pg_autoctl run` for a created node, its output in `<name>.log`.
    fn spawn(&self, s: &Service) {
        let log = File::create(&s.log).unwrap_or_else(|e| panic!("create {}: {e}", s.log.display()));
        let err = log.try_clone().unwrap_or_else(|e| panic!("dup {}: {e}", s.log.display()));
        let args = ["run", "--pgdata", &s.pgdata.to_string_lossy()].map(String::from);
        let child = self
            .autoctl(&args)
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| self.fail(&format!("spawn `pg_autoctl run` for {}: {e}", s.name)));
        *s.child.lock() = Some(child);
    }

    fn node(&self, port: u16) -> &Service {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| self.fail(&format!("no node on port {port}")))
    }

    fn states(&self) -> Result<Vec<NodeState>, postgres::Error> {
        let mut config: postgres::Config = self.monitor_url().parse()?;
        config.connect_timeout(Duration::from_secs(2));
        let mut client = config.connect(postgres::NoTls)?;
        let rows = client.query(
            "SELECT nodename, nodeport, current_group_state::text, assigned_group_state::text, health, \
             reported_lsn::text FROM pgautofailover.current_state('default') ORDER BY node_id",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(NodeState {
                    name: r.try_get(0)?,
                    port: u16::try_from(r.try_get::<_, i32>(1)?).unwrap_or(0),
                    reported: r.try_get(2)?,
                    assigned: r.try_get(3)?,
                    health: r.try_get(4)?,
                    lsn: r.try_get(5)?,
                })
            })
            .collect()
    }

    fn only_one(&self, role: &str, is: impl Fn(&NodeState) -> bool) -> u16 {
        let states = self.state();
        let found: Vec<u16> = states.iter().filter(|n| is(n)).map(|n| n.port).collect();
        match found.as_slice() {
            [port] => *port,
            _ => self.fail(&format!("the monitor has {} nodes as {role}, not exactly one", found.len())),
        }
    }

    fn connect(&self, url: &str) -> Result<postgres::Client, postgres::Error> {
        let mut config: postgres::Config = url.parse()?;
        config.connect_timeout(Duration::from_secs(2));
        config.connect(postgres::NoTls)
    }

    /// The first column of every row of `sql` on one node's [`DB`], as text.
    fn query_all(&self, port: u16, sql: &str) -> Result<Vec<String>, postgres::Error> {
        let mut client = self.connect(&self.node_url(port))?;
        client.query(sql, &[])?.iter().map(|r| r.try_get::<_, String>(0)).collect()
    }

    /// The first column of the single row of `sql` on one node's [`DB`]; `SHOW` answers use the
    /// simple query protocol.
    fn query_one(&self, port: u16, sql: &str) -> Result<String, postgres::Error> {
        let mut client = self.connect(&self.node_url(port))?;
        let rows = client.simple_query(sql)?;
        Ok(rows
            .iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or_default().to_owned()),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// The port a connection through [`Formation::url`] lands on, when it is writable.
    fn writable_through_url(&self) -> Option<u16> {
        let mut client = self.connect(&self.url()).ok()?;
        let row = client
            .query_one(
                "SELECT inet_server_port(), current_setting('transaction_read_only'), pg_is_in_recovery()",
                &[],
            )
            .ok()?;
        let (port, read_only, recovery): (i32, String, bool) =
            (row.try_get(0).ok()?, row.try_get(1).ok()?, row.try_get(2).ok()?);
        (read_only == "off" && !recovery).then(|| u16::try_from(port).ok()).flatten()
    }

    /// Polls `ready` every 100 ms; panics with the formation's state when `timeout` passes first.
    fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&Formation) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics with `msg`, the monitor's view and the tail of every log.
    fn fail(&self, msg: &str) -> ! {
        let states = match self.states() {
            Ok(s) => s.iter().map(|n| format!("  {n:?}\n")).collect::<String>(),
            Err(e) => format!("  (monitor not reachable: {e})\n"),
        };
        panic!(
            "pg_auto_failover formation: {msg}\nmonitor's view:\n{states}{}\nhint: pg_autoctl is {} \
             ({PACKAGE}); pg_ctl from POSSYNC_PG_BIN, /usr/lib/postgresql/15/bin or PATH; the logs above \
             are each node's `pg_autoctl run` output",
            self.log_tails(40),
            self.autoctl.display()
        )
    }

    fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for s in self.monitor.iter().chain(&self.nodes) {
            let text = std::fs::read_to_string(&s.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out.push_str(&format!(
                "--- {} (port {}), last {} lines of {}:\n",
                s.name,
                s.port,
                tail.len(),
                s.log.display()
            ));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("pg_auto_failover formation dropped during a panic; its logs:\n{}", self.log_tails(30));
        }
        // A frozen WAL sender would hold up Postgres' immediate shutdown.
        self.thaw_standby_replication();
        let services: Vec<&Service> = self.nodes.iter().chain(self.monitor.iter()).collect();
        let running: Vec<&Service> = services.into_iter().filter(|s| s.child.lock().is_some()).collect();
        for s in &running {
            let args = ["stop", "--immediate", "--pgdata", &s.pgdata.to_string_lossy()].map(String::from);
            let _ = self.autoctl(&args).output();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for s in &running {
            let Some(mut child) = s.child.lock().take() else { continue };
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let survivors = kill_tree(child.id());
                if !survivors.is_empty() {
                    eprintln!(
                        "pg_auto_failover formation: processes {survivors:?} of {} survive SIGKILL",
                        s.name
                    );
                }
            }
            let _ = child.wait();
        }
        // Whatever still works in the directory (a postgres left by a failed create, an orphan).
        let strays = processes_under(&self.root);
        for pid in &strays {
            stop_and_wait(*pid);
        }
        let survivors = kill_and_wait(&strays);
        if !survivors.is_empty() {
            eprintln!("pg_auto_failover formation: processes {survivors:?} survive SIGKILL");
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// `pg_autoctl config set --pgdata PGDATA KEY VALUE`.
fn config_set(s: &Service, key: &str, value: &str) -> Vec<String> {
    ["config", "set", "--pgdata", &s.pgdata.to_string_lossy(), key, value].map(String::from).to_vec()
}

/// Appends `block` to `PGDATA/postgresql.conf` unless the formation's block is there already.
fn append_conf(pgdata: &Path, block: &str) {
    let path = pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if !text.contains(CONF_MARKER) {
        text.push_str(block);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// The System V shared memory id in `PGDATA/postmaster.pid` (line 7: key and id).
fn sysv_segment(pgdata: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    text.lines().nth(6)?.split_whitespace().nth(1)?.parse().ok()
}

/// `kill -NAME PIDS...`; failures for pids that are already gone are expected.
fn signal_all(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// The process's state letter from `/proc/PID/stat` (`None` when it is gone).
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// SIGSTOP, then wait (up to 2 s) until the process is stopped or gone, so that it forks nothing more.
/// Returns whether it did.
fn stop_and_wait(pid: u32) -> bool {
    signal_all("STOP", &[pid]);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match state_of(pid) {
            None | Some('T' | 't' | 'Z' | 'X') => return true,
            Some(_) if Instant::now() >= deadline => return false,
            Some(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Freezes `root` and all its descendants from the top down (a stopped parent forks no new child),
/// then kills them all with SIGKILL and waits (up to 10 s) until they are dead. Returns the pids of
/// those still alive after that (none, normally).
fn kill_tree(root: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        if all.contains(&pid) || !alive(pid) {
            continue;
        }
        stop_and_wait(pid);
        all.push(pid);
        todo.extend(children_of(pid));
    }
    kill_and_wait(&all)
}

/// SIGKILL, then wait (up to 10 s) until they are dead; returns the survivors.
fn kill_and_wait(pids: &[u32]) -> Vec<u32> {
    signal_all("KILL", pids);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    pids.iter().copied().filter(|p| alive(*p)).collect()
}

/// Live processes whose working directory is `dir` or below (Postgres works in its PGDATA,
/// pg_autoctl in the formation's directory).
fn processes_under(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && alive(*pid))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir)))
        .collect()
}
