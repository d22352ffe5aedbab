//! `twotower`: a fast, native two-tower retrieval recommender.
//!
//! This binary is thin: it parses arguments, shows progress and prints results; every
//! command is a call into the `twotower-data`, `twotower-model` and `twotower-index` crates.

mod commands;
mod progress;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Train, evaluate and query two-tower retrieval models (TensorFlow Recommenders' basic
/// retrieval, natively).
#[derive(Parser)]
#[command(name = "twotower", version, about, long_about = None)]
struct Cli {
    /// Worker threads for training, evaluation and search (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
enum Command {
    /// Download and manage datasets.
    Data(commands::data::DataArgs),
    /// Train a model on a split, evaluate it on the test side and save it.
    Train(commands::train::TrainArgs),
    /// Evaluate a saved model on a split.
    Eval(commands::eval::EvalArgs),
    /// Top-k movies for a user, from a saved model.
    Recommend(commands::recommend::RecommendArgs),
    /// Movies similar to a movie, from the candidate tower of a saved model.
    Similar(commands::similar::SimilarArgs),
    /// Add items training never saw to a copy of a feature model, their vectors from their
    /// features (title, genres, year).
    Embed(commands::embed::EmbedArgs),
    /// Serve a saved model over HTTP: JSON API, metrics and a web page.
    Serve(commands::serve::ServeArgs),
    /// Exact and approximate (ScaNN-style) vector indexes: build, search, bench, synth.
    Index(commands::index::IndexArgs),
    /// Benchmarks: whole commands timed in fresh processes.
    Bench(commands::bench::BenchArgs),
}

/// Lets every command take `-1` or `-0.5` as a value, so that a negative number reaches
/// the command's own check ("--lr must be positive") instead of being taken for a flag.
fn allow_negative_numbers(cmd: clap::Command) -> clap::Command {
    cmd.allow_negative_numbers(true)
        .mut_subcommands(allow_negative_numbers)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TWOTOWER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::from_arg_matches(&allow_negative_numbers(Cli::command()).get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(n) = cli.threads {
        if n == 0 {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::FAILURE;
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            eprintln!("error: --threads {n}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Data(a) => commands::data::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Recommend(a) => commands::recommend::run(a),
        Command::Similar(a) => commands::similar::run(a),
        Command::Embed(a) => commands::embed::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Index(a) => commands::index::run(a),
        Command::Bench(a) => commands::bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
