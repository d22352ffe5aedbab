//! `twotower data`: dataset downloads.

use anyhow::Result;
use clap::{Args, Subcommand};
use twotower_data::download::fetch;
use twotower_data::fetch::{cache_dir, Remote};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download a dataset into the cache and verify its checksums.
    Fetch {
        /// Dataset name: movielens-100k, movielens-1m, movielens-latest-small,
        /// movielens-20m, movielens-25m or movielens-32m.
        name: String,
    },
    /// Write a synthetic interaction log (power-law popularity, latent topics) in the
    /// MovieLens CSV layout; read it with `--dataset movielens-csv --data-dir OUT`.
    Synth {
        /// Number of users.
        #[arg(long)]
        users: u32,
        /// Number of items.
        #[arg(long)]
        items: u32,
        /// Number of interactions (rows of ratings.csv).
        #[arg(long)]
        interactions: u64,
        /// Seed: the same seed writes the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Latent topics.
        #[arg(long, default_value_t = 64)]
        topics: u32,
        /// Probability that an interaction follows the user's taste.
        #[arg(long, default_value_t = 0.7)]
        affinity: f64,
        /// Output folder (replaced atomically).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Synth {
            users,
            items,
            interactions,
            seed,
            topics,
            affinity,
            out,
        } => {
            let cfg = twotower_data::synth::SynthConfig {
                topics,
                affinity,
                ..twotower_data::synth::SynthConfig::new(users, items, interactions, seed)
            };
            let start = std::time::Instant::now();
            twotower_data::synth::write_synth(&cfg, &out)?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "wrote {interactions} interactions ({users} users, {items} items) to {} in {secs:.2} s ({:.1} M rows/s)",
                out.display(),
                interactions as f64 / secs / 1e6
            );
            Ok(())
        }
        DataCommand::Fetch { name } => {
            let remote = Remote::named(&name)?;
            let cache = cache_dir()?;
            let dir = fetch(
                remote,
                &remote.url(),
                &cache,
                &mut crate::progress::download(),
            )?;
            println!("{name} verified and installed in {}", dir.display());
            Ok(())
        }
    }
}
