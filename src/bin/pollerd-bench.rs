//! `pollerd-bench`: drives the real `pollerd` binary against the built-in ConnectWise simulator
//! and a fast loopback receiver, and prints one table plus one JSON line per scenario.
//!
//! Build both binaries first (`cargo build --release --bins`): the daemon run is the `pollerd`
//! next to this executable. See BENCHMARKS.md for the scenarios, targets and results.

#[path = "pollerd-bench/delivery.rs"]
mod delivery;
#[path = "pollerd-bench/footprint.rs"]
mod footprint;
#[path = "pollerd-bench/harness.rs"]
mod harness;
#[path = "pollerd-bench/ingest.rs"]
mod ingest;
#[path = "pollerd-bench/instances.rs"]
mod instances;
#[path = "pollerd-bench/plot.rs"]
mod plot;
#[path = "pollerd-bench/postgres.rs"]
mod postgres;
#[path = "pollerd-bench/receiver.rs"]
mod receiver;
#[path = "pollerd-bench/reconcile.rs"]
mod reconcile;
#[path = "pollerd-bench/reload.rs"]
mod reload;
#[path = "pollerd-bench/report.rs"]
mod report;
#[path = "pollerd-bench/steady.rs"]
mod steady;
#[path = "pollerd-bench/store.rs"]
mod store;
#[path = "pollerd-bench/takeover.rs"]
mod takeover;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use report::Metric;

#[derive(Parser)]
#[command(
    name = "pollerd-bench",
    about = "Benchmarks of the real pollerd daemon against the built-in simulator and a loopback receiver"
)]
struct Args {
    /// Scenarios to run, in this order.
    #[arg(value_enum, default_value = "all")]
    scenarios: Vec<ScenarioArg>,
    /// `tiny` takes seconds (CI); `full` is the documented benchmark (minutes, release build).
    #[arg(long, value_enum, default_value_t = ScaleArg::Full)]
    scale: ScaleArg,
    /// Runs of every scenario (for `plot`: of every sweep point); the table shows their median
    /// and min–max.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// The pollerd binary to drive (default: `pollerd` next to this executable).
    #[arg(long)]
    pollerd: Option<PathBuf>,
    /// A PostgreSQL server (`postgres://user@host:port/db`, a throwaway one): `ingest` and
    /// `delivery` then run the daemon with `[store] engine = "postgres"`, each run in a fresh
    /// database created there (`bench_<pid>_<n>`, left in place); `takeover` needs it.
    #[arg(long)]
    store_url: Option<String>,
    /// `steady` runs only its shapes with this many instances (e.g. 1000), to compare two builds
    /// without the 10,000-instance window each time.
    #[arg(long)]
    steady_instances: Option<usize>,
    /// `steady`: poll every this many seconds instead of each shape's own interval (e.g. 30, the
    /// plot sweep's), to tell the interval's share of the memory from the instances'.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    steady_interval: Option<u64>,
    /// `steady`: watch this many seconds instead of each shape's own window.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    steady_window: Option<u64>,
    /// `plot`: the folder the SVG charts and their CSV numbers are written to.
    #[arg(long, default_value = "docs/plots")]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScenarioArg {
    All,
    Ingest,
    Delivery,
    /// Delivery with one queue: to the fastest receiver, and to one answering after 2 ms.
    DeliveryVariants,
    Footprint,
    Reload,
    Store,
    Reconcile,
    Steady,
    /// Not part of `all`: needs `--store-url`.
    Takeover,
    /// Not part of `all`: sweeps instances, delivery queues and page sizes and writes SVG charts
    /// (with their numbers as CSV) to `--out`.
    Plot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScaleArg {
    Tiny,
    Full,
}

/// How big each scenario is.
pub struct Scale {
    pub name: &'static str,
    pub ingest_records: usize,
    pub ingest_instances: usize,
    pub ingest_page_size: u32,
    pub delivery_notifications: usize,
    /// Notifications of each `delivery-variants` run (one queue: far slower than 64).
    pub delivery_variant_notifications: usize,
    /// Resource queues holding them; equal to `max_in_flight` so delivery can use all of it.
    pub delivery_queues: usize,
    pub max_in_flight: usize,
    pub footprint_instances: [usize; 2],
    pub idle: Duration,
    pub reload_edits: usize,
    pub store_events: usize,
    pub store_instances: usize,
    /// Contacts a reconcile lists, and how many of them are deleted before the measured one.
    pub reconcile_records: usize,
    pub reconcile_deleted: usize,
    /// Steady-state polling: instances × 3 resources, interval, window.
    pub steady: &'static [steady::SteadyShape],
    /// What `plot` sweeps.
    pub plot: plot::Sweep,
}

const FULL: Scale = Scale {
    name: "full",
    ingest_records: 200_000,
    ingest_instances: 20,
    ingest_page_size: 1000,
    delivery_notifications: 100_000,
    delivery_variant_notifications: 10_000,
    delivery_queues: 64,
    max_in_flight: 64,
    footprint_instances: [1, 1000],
    idle: Duration::from_secs(60),
    reload_edits: 50,
    store_events: 1_000_000,
    store_instances: 20,
    reconcile_records: 100_000,
    reconcile_deleted: 100,
    steady: &[
        // Issue 17: ≥ 3,000 idle polls of 1,000 × 3 resources on a 10 s interval.
        steady::SteadyShape {
            instances: 1000,
            interval: Duration::from_secs(10),
            window: Duration::from_secs(60),
            targets: (Some(150.0), None),
        },
        // Ten thousand instances at Cloud Elements' 1-minute interval, over 5 minutes.
        steady::SteadyShape {
            instances: 10_000,
            interval: Duration::from_secs(60),
            window: Duration::from_secs(300),
            targets: (None, Some(15.0)),
        },
    ],
    plot: plot::Sweep {
        instances: &[1, 10, 100, 1000, 10_000],
        interval: Duration::from_secs(30),
        window: Duration::from_secs(30),
        queues: &[1, 2, 4, 8, 16, 32, 64],
        delivery_notifications: 20_000,
        pages: &[100, 250, 500, 1000],
        ingest_records: 50_000,
        ingest_instances: 10,
    },
};

const TINY: Scale = Scale {
    name: "tiny",
    ingest_records: 2_000,
    ingest_instances: 4,
    ingest_page_size: 100,
    delivery_notifications: 400,
    delivery_variant_notifications: 50,
    delivery_queues: 8,
    max_in_flight: 8,
    footprint_instances: [1, 20],
    idle: Duration::from_secs(2),
    reload_edits: 5,
    store_events: 2_000,
    store_instances: 4,
    reconcile_records: 2_000,
    reconcile_deleted: 10,
    steady: &[steady::SteadyShape {
        instances: 20,
        interval: Duration::from_secs(1),
        window: Duration::from_secs(4),
        targets: (None, None),
    }],
    plot: plot::Sweep {
        instances: &[1, 2],
        interval: Duration::from_secs(1),
        window: Duration::from_secs(2),
        queues: &[1, 2],
        delivery_notifications: 40,
        pages: &[100, 200],
        ingest_records: 400,
        ingest_instances: 2,
    },
};

/// What every scenario gets.
pub struct Bench {
    pub pollerd: PathBuf,
    pub scale: &'static Scale,
    /// `--store-url`: the daemon stores in PostgreSQL instead of sled.
    pub postgres: Option<postgres::PgServer>,
    /// `--steady-instances`: the steady shapes to run, by instance count (all when `None`).
    pub steady_instances: Option<usize>,
    /// `--steady-interval` and `--steady-window`: overrides of the steady shapes' own.
    pub steady_interval: Option<Duration>,
    pub steady_window: Option<Duration>,
}

/// The exit status when a scenario asked for was skipped: not a pass (automake's SKIP).
const EXIT_SKIPPED: u8 = 77;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pollerd-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(Outcome::AllRan) => ExitCode::SUCCESS,
        Ok(Outcome::Skipped) => ExitCode::from(EXIT_SKIPPED),
        Err(e) => {
            eprintln!("pollerd-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether every scenario asked for ran.
enum Outcome {
    AllRan,
    Skipped,
}

async fn run(args: Args) -> anyhow::Result<Outcome> {
    let scale = match args.scale {
        ScaleArg::Tiny => &TINY,
        ScaleArg::Full => &FULL,
    };
    if scale.name == "full" && cfg!(debug_assertions) {
        bail!(
            "--scale full needs a release build (debug builds are several times slower): \
             cargo build --release --bins && target/release/pollerd-bench"
        );
    }
    let pollerd = match args.pollerd {
        Some(p) => p,
        None => std::env::current_exe()
            .context("finding this executable")?
            .with_file_name("pollerd"),
    };
    if !pollerd.is_file() {
        bail!(
            "{} not found: build both binaries with `cargo build --release --bins`, or pass --pollerd PATH",
            pollerd.display()
        );
    }
    let postgres = args
        .store_url
        .as_deref()
        .map(postgres::PgServer::new)
        .transpose()?;
    let bench = Bench {
        pollerd,
        scale,
        postgres,
        steady_instances: args.steady_instances,
        steady_interval: args.steady_interval.map(Duration::from_secs),
        steady_window: args.steady_window.map(Duration::from_secs),
    };
    if args.scenarios.contains(&ScenarioArg::Plot) {
        if args.scenarios.len() > 1 {
            bail!("`plot` runs on its own: pass it without other scenarios");
        }
        plot::run(&bench, &args.out, args.runs).await?;
        return Ok(Outcome::AllRan);
    }
    let (selected, skipped) = runnable(&bench, selection(&args.scenarios));
    let mut results: Vec<(ScenarioArg, Vec<Vec<Metric>>)> =
        selected.iter().map(|s| (*s, Vec::new())).collect();
    for run in 1..=args.runs {
        for (scenario, runs) in &mut results {
            let name = scenario_name(*scenario);
            eprintln!("[run {run}/{}] {name} ({})…", args.runs, scale.name);
            let started = std::time::Instant::now();
            let metrics = run_scenario(&bench, *scenario)
                .await
                .with_context(|| format!("scenario {name}, run {run}"))?;
            for m in &metrics {
                eprintln!("    {:<36} {} {}", m.name, report::number(m.value), m.unit);
            }
            eprintln!("    ({:.1} s)", started.elapsed().as_secs_f64());
            runs.push(metrics);
        }
    }
    let summaries: Vec<(String, Vec<report::Summary>)> = results
        .iter()
        .map(|(s, runs)| (scenario_name(*s).to_string(), report::summarise(runs)))
        .collect();
    println!("{}", report::table(&summaries, args.runs as usize));
    let commit = git_commit();
    let engine = postgres::engine_name(bench.postgres.as_ref());
    for (scenario, s) in &summaries {
        println!(
            "{}",
            report::json_line(scenario, scale.name, engine, &commit, s)
        );
    }
    for (scenario, reason) in &skipped {
        println!("SKIP {}: {reason}", scenario_name(*scenario));
    }
    Ok(if skipped.is_empty() {
        Outcome::AllRan
    } else {
        Outcome::Skipped
    })
}

/// The scenarios that can run here, and the others with the reason.
fn runnable(
    bench: &Bench,
    selected: Vec<ScenarioArg>,
) -> (Vec<ScenarioArg>, Vec<(ScenarioArg, &'static str)>) {
    let (run, skip): (Vec<_>, Vec<_>) = selected
        .into_iter()
        .partition(|s| *s != ScenarioArg::Takeover || bench.postgres.is_some());
    let skipped = skip
        .into_iter()
        .map(|s| {
            (
                s,
                "needs a PostgreSQL server: pass --store-url postgres://…",
            )
        })
        .collect();
    (run, skipped)
}

fn selection(asked: &[ScenarioArg]) -> Vec<ScenarioArg> {
    let all = [
        ScenarioArg::Ingest,
        ScenarioArg::Delivery,
        ScenarioArg::DeliveryVariants,
        ScenarioArg::Footprint,
        ScenarioArg::Reload,
        ScenarioArg::Store,
        ScenarioArg::Reconcile,
        ScenarioArg::Steady,
    ];
    let mut out = Vec::new();
    for s in asked {
        let expanded: &[ScenarioArg] = if *s == ScenarioArg::All {
            &all
        } else {
            std::slice::from_ref(s)
        };
        for e in expanded {
            if !out.contains(e) {
                out.push(*e);
            }
        }
    }
    out
}

fn scenario_name(s: ScenarioArg) -> &'static str {
    match s {
        ScenarioArg::All => "all",
        ScenarioArg::Ingest => "ingest",
        ScenarioArg::Delivery => "delivery",
        ScenarioArg::DeliveryVariants => "delivery-variants",
        ScenarioArg::Footprint => "footprint",
        ScenarioArg::Reload => "reload",
        ScenarioArg::Store => "store",
        ScenarioArg::Reconcile => "reconcile",
        ScenarioArg::Steady => "steady",
        ScenarioArg::Takeover => "takeover",
        ScenarioArg::Plot => "plot",
    }
}

async fn run_scenario(bench: &Bench, s: ScenarioArg) -> anyhow::Result<Vec<Metric>> {
    match s {
        ScenarioArg::Ingest => ingest::run(bench).await,
        ScenarioArg::Delivery => delivery::run(bench).await,
        ScenarioArg::DeliveryVariants => delivery::run_variants(bench).await,
        ScenarioArg::Footprint => footprint::run(bench).await,
        ScenarioArg::Reload => reload::run(bench).await,
        ScenarioArg::Store => store::run(bench).await,
        ScenarioArg::Reconcile => reconcile::run(bench).await,
        ScenarioArg::Steady => steady::run(bench).await,
        ScenarioArg::Takeover => takeover::run(bench).await,
        ScenarioArg::All => unreachable!("expanded by selection()"),
        ScenarioArg::Plot => unreachable!("run on its own, before the scenarios"),
    }
}

/// The commit measured, so JSON lines from different commits can be compared.
fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = run(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}
