//! `twotower bench`: time whole commands in fresh processes (wall, CPU, peak memory) and
//! report medians, so speed claims are measured the way the TFRS anchors were.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use twotower_model::bench::{interleaved, TrainBench};

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
}

pub fn run(args: BenchArgs) -> Result<()> {
    let BenchCommand::Train {
        runs,
        json,
        compare_threads,
        train_args,
    } = args.command;
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
