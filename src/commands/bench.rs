//! `twotower bench`: time whole commands in fresh processes (wall, CPU, peak memory) and
//! report medians, so speed claims are measured the way the TFRS anchors were.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use twotower_model::bench::{interleaved, min_max, pair_ratios, Summary, TFRS_CPU, TFRS_WALL};

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

/// Prints a summary as a few lines.
fn print(s: &Summary, train_args: &[String], runs: usize) {
    let Summary {
        threads,
        ref eps_runs,
        wall,
        cpu,
        rss,
        epoch,
        eps,
        gflops,
        share,
    } = *s;
    println!(
        "twotower train {} ({runs} runs, {threads} worker thread{}, medians)",
        train_args.join(" "),
        if threads == 1 { "" } else { "s" }
    );
    println!("  wall {wall:.3} s, CPU (user+sys) {cpu:.3} s, peak memory {rss:.1} MiB");
    let (lo, hi) = min_max(eps_runs);
    println!("  training: {epoch:.3} s per epoch, {eps:.0} examples/s (runs {lo:.0}–{hi:.0})");
    println!(
        "  matrix products of the loss: {gflops:.1} GFLOP/s, {:.0}% of the epoch",
        share * 100.0
    );
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
        eprintln!(
            "run {}/{runs}, {threads} thread{}: wall {:.3} s, cpu {:.3} s, peak {:.1} MiB, \
                 {:.3} s/epoch, {:.0} examples/s",
            i + 1,
            if threads == 1 { "" } else { "s" },
            u.wall,
            u.cpu,
            u.max_rss_mib,
            u.epoch_seconds,
            u.examples_per_second
        );
    })?;
    if counts.len() > 1 {
        let base = &summaries[0];
        if json {
            let by: Vec<serde_json::Value> = summaries
                .iter()
                .map(|s| {
                    let mut v = s.json();
                    v["examples_per_second_over_first"] = (s.eps / base.eps).into();
                    v["pair_ratios"] = pair_ratios(s, base).into();
                    v
                })
                .collect();
            let v = serde_json::json!({
                "runs": runs,
                "train_args": train_args,
                "by_threads": by,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for s in &summaries {
                print(s, &train_args, runs);
            }
            for s in &summaries[1..] {
                println!(
                    "scaling: {:.3}x the examples/s with {} threads as with {} (medians of \
                     {runs} interleaved runs each)",
                    s.eps / base.eps,
                    s.threads,
                    base.threads
                );
                let pairs: Vec<String> = pair_ratios(s, base)
                    .iter()
                    .map(|r| format!("{r:.3}"))
                    .collect();
                println!("  run by run: {}", pairs.join(", "));
            }
        }
        return Ok(());
    }
    let s = &summaries[0];
    if json {
        let mut v = s.json();
        v["runs"] = runs.into();
        v["train_args"] = serde_json::json!(train_args);
        v["tfrs_tutorial_cpu_seconds"] = TFRS_CPU.into();
        v["tfrs_tutorial_wall_seconds"] = TFRS_WALL.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print(s, &train_args, runs);
        let tfrs_tutorial = train_args
            .windows(2)
            .any(|w| w[0] == "--preset" && w[1] == "tfrs")
            && !train_args.iter().any(|a| a.starts_with("--dataset"));
        if !tfrs_tutorial {
            return Ok(());
        }
        println!(
            "  for reference, the TFRS tutorial on u1 (fit with metrics + evaluate, ANCHORS.md): \
             {TFRS_CPU:.1} CPU-s, {TFRS_WALL:.1} s wall, ~1,750 MiB; ratio {:.0}x CPU, {:.0}x wall",
            TFRS_CPU / s.cpu,
            TFRS_WALL / s.wall
        );
    }
    Ok(())
}
