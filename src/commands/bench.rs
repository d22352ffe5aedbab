//! `twotower bench`: time whole commands in fresh processes (wall, CPU, peak memory) and
//! report medians, so speed claims are measured the way the TFRS anchors were.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use twotower_model::bench::{interleaved, TrainBench};
use twotower_model::quality_bench::{alternate, QualityBench};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Run `twotower train ARGS…` several times, each in its own process, and report medians
    /// of wall seconds, CPU seconds (user+sys), peak resident memory, seconds per epoch and
    /// training examples per second.
    ///
    /// Example (the TFRS tutorial on u1: 3 epochs plus evaluation of 20,000 interactions):
    ///   twotower bench train --runs 5 -- --preset tfrs --split u1 --data-dir ../shared/data
    Train {
        /// Number of runs.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Alternate the runs between these worker-thread counts (e.g. `1,2`) and report
        /// each count's medians and its examples/s over the first count's, as medians and
        /// run by run (run i against run i). Interleaving gives every count the same share
        /// of a shared host's slow and fast spells.
        #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
        compare_threads: Vec<usize>,
        /// Arguments passed to `twotower train`.
        #[arg(last = true, required = true)]
        train_args: Vec<String>,
    },
    /// Time to quality: run `twotower train ARGS…` in fresh processes, alternating run by run
    /// with another command (`--against`, e.g. implicit's ALS from
    /// `bench/als_reference.py`), and report each side's medians of wall time, CPU time,
    /// peak memory and the Protocol 1 top-10/top-100 it reached, twotower's work (training
    /// examples, GFLOP of the loss's products), and the wall-time ratio, as a median and
    /// run by run.
    ///
    /// Example (ALS's reference run on u1 beside the default preset):
    ///   twotower bench quality --runs 5 --against "python bench/als_reference.py" -- --split u1
    Quality {
        /// Runs of each command.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// A shell command run alternately with twotower; the last line it prints must be a
        /// JSON object with `factorized_top_k` (as `bench/als_reference.py` prints).
        #[arg(long, value_name = "COMMAND")]
        against: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Arguments passed to `twotower train`.
        #[arg(last = true, required = true)]
        train_args: Vec<String>,
    },
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Train {
            runs,
            json,
            compare_threads,
            train_args,
        } => train(runs, json, compare_threads, train_args),
        BenchCommand::Quality {
            runs,
            against,
            json,
            train_args,
        } => quality(runs, against, json, train_args),
    }
}

fn quality(
    runs: usize,
    against: Option<String>,
    json: bool,
    train_args: Vec<String>,
) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let exe = std::env::current_exe().context("locating the twotower binary")?;
    let threads = rayon::current_num_threads();
    let (ours, theirs) = alternate(
        &exe,
        &train_args,
        against.as_deref(),
        runs,
        threads,
        &mut |i, who, r| {
            eprintln!("run {}/{runs}, {who}: {r}", i + 1);
        },
    )?;
    let report = QualityBench::new(&train_args, against.as_deref(), &ours, &theirs);
    if json {
        super::print_json(&report)?;
    } else {
        print!("{report}");
    }
    Ok(())
}

fn train(
    runs: usize,
    json: bool,
    compare_threads: Vec<usize>,
    train_args: Vec<String>,
) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if compare_threads.contains(&0) {
        bail!("--compare-threads: every thread count must be at least 1");
    }
    // Without --compare-threads the children get this process's worker count
    // (`twotower --threads N bench …`).
    let counts = if compare_threads.is_empty() {
        vec![rayon::current_num_threads()]
    } else {
        compare_threads
    };
    let exe = std::env::current_exe().context("locating the twotower binary")?;
    let summaries = interleaved(&exe, &train_args, runs, &counts, &mut |i, threads, u| {
        let s = if threads == 1 { "" } else { "s" };
        eprintln!("run {}/{runs}, {threads} thread{s}: {u}", i + 1);
    })?;
    let report = TrainBench {
        summaries: &summaries,
        runs,
        train_args: &train_args,
    };
    if json {
        super::print_json(&report.json())?;
    } else {
        print!("{report}");
    }
    Ok(())
}
