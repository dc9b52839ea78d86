//! `possync-bench`: runs the benchmarks, prints the table and (with `--write`) records it in
//! docs/benchmarks.md.

use clap::{Parser, ValueEnum};
use possync_bench::{markdown, outbox, Row};
use possync_core::config::Durability;

/// possync benchmarks, reported as ratios against baselines measured in the same run.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Which scenarios to run.
    #[arg(value_enum, default_value = "outbox")]
    scenario: Scenario,
    /// Sales per enqueue round.
    #[arg(long, default_value_t = 2_000)]
    enqueue_sales: usize,
    /// Pending sales of the large outbox.
    #[arg(long, default_value_t = 1_000_000)]
    large: usize,
    /// Pending sales of the small outbox.
    #[arg(long, default_value_t = 10_000)]
    small: usize,
    /// Sales claimed and finalized per measurement.
    #[arg(long, default_value_t = 2_000)]
    claim_sales: usize,
    /// Seconds of each server throughput measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// PostgreSQL for the server scenarios (a database is created and dropped per measurement).
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    /// Outbox: enqueue vs raw insert; claim+finalize at small vs large backlog.
    Outbox,
    /// Server: push throughput vs pgbench (batch 1 and 100, concurrency 1/4/16); duplicate storm.
    Server,
}

fn main() {
    let cli = Cli::parse();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows: Vec<Row> = Vec::new();
    match cli.scenario {
        Scenario::Outbox => {
            for durability in [Durability::Full, Durability::Normal] {
                rows.push(outbox::enqueue(dir.path(), durability, cli.enqueue_sales, 3));
                eprintln!("{}", markdown(&rows[rows.len() - 1..]));
            }
            for batch in [1, 50] {
                rows.push(outbox::claim_finalize(dir.path(), cli.small, cli.large, cli.claim_sales, batch));
                eprintln!("{}", markdown(&rows[rows.len() - 1..]));
            }
        }
        Scenario::Server => {
            for batch in [1, 100] {
                for concurrency in [1, 4, 16] {
                    rows.push(possync_bench::server::push_vs_pgbench(
                        &cli.database_url,
                        concurrency,
                        batch,
                        cli.seconds,
                    ));
                    eprintln!("{}", markdown(&rows[rows.len() - 1..]));
                }
            }
            let (p50, p99) = possync_bench::server::duplicate_storm(&cli.database_url, 16, 50);
            println!("duplicate storm, 16 pushers x 50 rounds: exactly one OK per round; p50 {p50:.1} ms, p99 {p99:.1} ms\n");
        }
    }
    println!("{}", markdown(&rows));
}
