//! `possync-bench`: runs the benchmarks, prints the table of ratios and (with `--write`) records it
//! with date, machine and commit in docs/benchmarks.md. `scripts/bench` runs them all.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use possync_bench::{child, lossy, markdown, outbox, peer, report, restore, server, storm, till, Row};
use possync_core::config::Durability;

/// possync benchmarks, reported as ratios against baselines measured in the same run.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Args)]
struct Opts {
    /// Sales per enqueue round (scenario 1).
    #[arg(long, global = true, default_value_t = 500)]
    enqueue_sales: usize,
    /// Enqueue rounds, each the outbox then the baseline (scenario 1): many short rounds keep a
    /// spell of slow fsyncs from landing on one side only.
    #[arg(long, global = true, default_value_t = 12)]
    enqueue_rounds: usize,
    /// Pending sales of the large outbox (scenario 2) and of the till whose memory is read (scenario 6).
    #[arg(long, global = true, default_value_t = 1_000_000)]
    large: usize,
    /// Pending sales of the small outbox (scenarios 2 and 6).
    #[arg(long, global = true, default_value_t = 10_000)]
    small: usize,
    /// Sales claimed and finalized per measurement (scenario 2).
    #[arg(long, global = true, default_value_t = 2_000)]
    claim_sales: usize,
    /// Seconds of each throughput measurement against PostgreSQL (scenarios 3 and 4's baseline).
    #[arg(long, global = true, default_value_t = 10)]
    seconds: u64,
    /// Rounds of the duplicate storm (scenario 5).
    #[arg(long, global = true, default_value_t = 50)]
    storm_rounds: usize,
    /// Tills of the reconnect storm (scenario 8).
    #[arg(long, global = true, default_value_t = 500)]
    storm_tills: usize,
    /// Database threads of the storm's server (scenario 8); 0: the server's default (four per core,
    /// 4 to 16).
    #[arg(long, global = true, default_value_t = 0)]
    storm_workers: usize,
    /// Sales each till of the storm recorded during the outage (scenario 8).
    #[arg(long, global = true, default_value_t = 200)]
    storm_sales: usize,
    /// Upper bound of each storm till's random hold after `Online`, in ms (the engine's default).
    #[arg(long, global = true, default_value_t = 5_000)]
    storm_online_jitter_ms: u64,
    /// Seconds the tills of the lossy-link scenario record (scenario 9).
    #[arg(long, global = true, default_value_t = 300)]
    lossy_seconds: u64,
    /// Seed of the lossy link's fault proxy (scenario 9; default: random, printed).
    #[arg(long, global = true, env = "POSSYNC_SEED")]
    lossy_seed: Option<u64>,
    /// Tills of the restore scenario (scenario 10).
    #[arg(long, global = true, default_value_t = 50)]
    restore_tills: usize,
    /// Acknowledged sales of each till that the restore loses (scenario 10).
    #[arg(long, global = true, default_value_t = 1_000)]
    restore_sales: usize,
    /// Kill-and-restart rounds of the resend measurement (scenario 9).
    #[arg(long, global = true, default_value_t = 5)]
    kill_rounds: usize,
    /// Backlog of the end-to-end drain (scenario 4).
    #[arg(long, global = true, default_value_t = 100_000)]
    backlog: usize,
    /// Jobs of the peer-queue workload (scenario 7).
    #[arg(long, global = true, default_value_t = 20_000)]
    peer_jobs: usize,
    /// The peer-queue binary (`bench/peer-effectum`, built by `scripts/bench`).
    #[arg(long, global = true, env = "POSSYNC_PEER_BIN")]
    peer_bin: Option<PathBuf>,
    /// PostgreSQL for the server scenarios (a database is created and dropped per measurement).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Record the results (date, machine, commit, table) in this Markdown file's generated section.
    #[arg(long, global = true)]
    write: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Scenarios 1-2: enqueue vs raw insert; claim+finalize at a small vs a large backlog.
    Outbox,
    /// Scenarios 3, 5 and the server half of 6: push vs pgbench, duplicate storm, server RSS.
    Server,
    /// Scenario 4: end-to-end drain of one till vs pgbench on one connection.
    Drain,
    /// Scenario 6, till half: peak RSS of a till draining a large vs a small backlog.
    Memory,
    /// Scenario 7: the same queue workload on the outbox and on a peer queue (effectum).
    Peer,
    /// Scenario 8: the reconnect storm (many real tills back online at once with a backlog).
    Storm,
    /// Scenario 9: an unattended till on a lossy link vs a clean one; resend after a SIGKILL.
    Lossy,
    /// Scenario 10: the database restored from a backup; the tills bring the lost sales back.
    Restore,
    /// Every scenario, in the order above.
    All,
    /// (internal) The server in its own process, until stdin closes.
    #[command(hide = true)]
    ChildServer {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        workers: usize,
        #[arg(long)]
        pool: u32,
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// A monitoring port (`/healthz`, `/readyz`, `/metrics` on a thread of their own).
        #[arg(long)]
        monitor_port: Option<u16>,
    },
    /// (internal) A till's sync engine (production defaults) on its outbox, until killed.
    #[command(hide = true)]
    ChildTill(ChildTillArgs),
    /// (internal) A till draining its outbox in its own process; prints the outcome as JSON.
    #[command(hide = true)]
    ChildDrain(ChildTillArgs),
    /// (internal) The storm's prober of `/healthz` and `/metrics`, until stdin closes.
    #[command(hide = true)]
    ChildProbe {
        #[arg(long)]
        base: String,
    },
}

/// A till in a child process: its outbox file, its server, token and device.
#[derive(clap::Args)]
struct ChildTillArgs {
    #[arg(long)]
    outbox: PathBuf,
    #[arg(long)]
    server: String,
    #[arg(long)]
    token: String,
    #[arg(long)]
    device: String,
}

/// Runs the measured scenarios, printing each row as it completes. Returns the rows and notes about
/// scenarios that could not run.
struct Run<'a> {
    opts: &'a Opts,
    exe: PathBuf,
    dir: tempfile::TempDir,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Run<'_> {
    fn push(&mut self, row: Row) {
        eprint!("{}", markdown(std::slice::from_ref(&row)));
        self.rows.push(row);
    }

    fn outbox(&mut self) {
        let o = self.opts;
        for durability in [Durability::Full, Durability::Normal] {
            self.push(outbox::enqueue(self.dir.path(), durability, o.enqueue_sales, o.enqueue_rounds));
        }
        for batch in [1, 50] {
            self.push(outbox::claim_finalize(self.dir.path(), o.small, o.large, o.claim_sales, batch));
        }
    }

    fn server(&mut self) {
        let o = self.opts;
        let mut heaviest = None;
        for batch in [1, 100] {
            for concurrency in [1, 4, 16] {
                let cell = server::push_vs_pgbench(&self.exe, &o.database_url, concurrency, batch, o.seconds);
                self.push(cell.row.clone());
                heaviest = Some(cell);
            }
        }
        for row in server::duplicate_storm(&self.exe, &o.database_url, 16, o.storm_rounds) {
            self.push(row);
        }
        if let Some(cell) = heaviest {
            self.push(till::server_memory(&cell));
        }
    }

    fn drain(&mut self) {
        let o = self.opts;
        self.push(till::drain_vs_pgbench(&self.exe, self.dir.path(), &o.database_url, o.backlog, o.seconds));
    }

    fn storm(&mut self) {
        let o = self.opts;
        let size = storm::StormSize {
            tills: o.storm_tills,
            sales: o.storm_sales,
            window: std::time::Duration::from_secs(1),
            workers: possync_server::settings::workers_for(o.storm_workers),
            online_jitter_ms: o.storm_online_jitter_ms,
        };
        let (report, rows) = storm::storm_rows(&self.exe, &o.database_url, size, o.seconds);
        rows.into_iter().for_each(|r| self.push(r));
        if !report.exactly_once {
            self.notes.push("The storm did NOT end exactly once: see the log above.".into());
        }
        self.notes.push(format!(
            "Storm: first request of each till from {:.2} s (p10) to {:.2} s (p90) after the first Online \
             (each till's hold after its own Online: p50 {:.0} ms, max {:.0} ms, jitter up to {} ms); \
             {} requests failed in transport; {} of {} push requests found their token in the server's cache. \
             Half the sales were decided at {:.1} s, 90 % at {:.1} s, \
             every outbox empty at {:.1} s.",
            report.first_request_spread_s.0,
            report.first_request_spread_s.1,
            report.online_hold.p50_ms,
            report.online_hold.max_ms,
            o.storm_online_jitter_ms,
            report.failed,
            report.token_cache_hits,
            report.admitted.count + report.shed.count + report.failed,
            report.settled_half_s,
            report.settled_90_s,
            report.drain_seconds
        ));
    }

    fn lossy(&mut self) {
        let o = self.opts;
        let seed = o.lossy_seed.unwrap_or_else(rand::random);
        eprintln!("lossy link: seed {seed} (replay with --lossy-seed {seed})");
        let (report, rows) = lossy::lossy_rows(&self.exe, &o.database_url, o.lossy_seconds, seed);
        rows.into_iter().for_each(|r| self.push(r));
        if let Err(e) = &report.exactly_once {
            self.notes.push(format!("The lossy link did NOT end exactly once: {e}"));
        }
        self.notes.push(format!(
            "Lossy link (seed {seed}): the lossy till was answered {:?}; both converged {:.1} s after the window.",
            report.lossy_answers, report.converge_seconds
        ));
        self.push(lossy::resend_after_kill(&self.exe, &o.database_url, o.kill_rounds));
    }

    fn restore(&mut self) {
        let o = self.opts;
        let (report, row) = restore::restore_rows(
            &self.exe,
            self.dir.path(),
            &o.database_url,
            o.restore_tills,
            o.restore_sales,
        );
        self.push(row);
        if !report.exactly_once {
            self.notes.push("The restore scenario did NOT end exactly once: see the log above.".into());
        }
    }

    fn memory(&mut self) {
        let o = self.opts;
        self.push(till::till_memory(&self.exe, self.dir.path(), o.small, o.large));
    }

    fn peer(&mut self) {
        let o = self.opts;
        let Some(bin) = &o.peer_bin else {
            self.notes.push(
                "Scenario 7 (peer queue) not run: no `--peer-bin` given (`scripts/bench` builds \
                 `bench/peer-effectum` and passes it)."
                    .into(),
            );
            return;
        };
        match peer::compare(bin, self.dir.path(), o.peer_jobs) {
            Ok(rows) => rows.into_iter().for_each(|r| self.push(r)),
            Err(e) => self.notes.push(format!("Scenario 7 (peer queue) failed: {e}")),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command: Vec<String> = std::env::args().skip(1).collect();
    match cli.command {
        Cmd::ChildServer { database_url, workers, pool, port, monitor_port } => {
            return match child::serve_until_stdin_closes(&database_url, workers, pool, port, monitor_port) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("child-server: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::ChildTill(ChildTillArgs { outbox, server, token, device }) => {
            if let Err(e) = lossy::till_until_killed(&outbox, &server, &token, &device) {
                eprintln!("child-till: {e}");
            }
            return ExitCode::FAILURE;
        }
        Cmd::ChildProbe { base } => {
            storm::probe_until_stdin_closes(&base);
            return ExitCode::SUCCESS;
        }
        Cmd::ChildDrain(ChildTillArgs { outbox, server, token, device }) => {
            return match child::drain_all(&outbox, &server, &token, &device) {
                Ok(outcome) => {
                    println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("child-drain: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let opts = &cli.opts;
    // What is measured is the code as it is now: read the commit before the run, not after it.
    let commit = report::commit();
    let mut run = Run {
        opts,
        exe: child::current_exe(),
        dir: tempfile::tempdir().expect("temp dir"),
        rows: Vec::new(),
        notes: Vec::new(),
    };
    match cli.command {
        Cmd::Outbox => run.outbox(),
        Cmd::Server => run.server(),
        Cmd::Drain => run.drain(),
        Cmd::Memory => run.memory(),
        Cmd::Peer => run.peer(),
        Cmd::Storm => run.storm(),
        Cmd::Lossy => run.lossy(),
        Cmd::Restore => run.restore(),
        Cmd::All => {
            run.outbox();
            run.server();
            run.drain();
            run.memory();
            run.peer();
            run.storm();
            run.lossy();
            run.restore();
        }
        Cmd::ChildServer { .. } | Cmd::ChildDrain(_) | Cmd::ChildTill(_) | Cmd::ChildProbe { .. } => {
            unreachable!("handled above")
        }
    }
    println!("\n{}\n{}", markdown(&run.rows), possync_bench::targets_summary(&run.rows));
    for note in &run.notes {
        println!("{note}");
    }
    if let Some(path) = &opts.write {
        let machine = report::Machine::detect(Some(&opts.database_url));
        // scripts/bench names itself, so the document shows the command a reader would run.
        let command = std::env::var("POSSYNC_BENCH_COMMAND")
            .unwrap_or_else(|_| format!("possync-bench {}", command.join(" ")));
        let section = report::section(&report::today(), &machine, &commit, &command, &run.rows, &run.notes);
        if let Err(e) = report::write_section(path, &section) {
            eprintln!("possync-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("results written to {}", path.display());
    }
    ExitCode::SUCCESS
}
