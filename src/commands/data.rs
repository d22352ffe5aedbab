//! `twotower data`: dataset downloads.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use twotower_data::fetch::{cache_dir, fetch_movielens_100k, ML_100K_URL, URL_ENV};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download a dataset into the cache and verify its checksums.
    Fetch {
        /// Dataset name: movielens-100k.
        name: String,
    },
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Fetch { name } => {
            if name != "movielens-100k" {
                bail!("unknown dataset {name:?}; known: movielens-100k");
            }
            let cache = cache_dir()?;
            let url = std::env::var(URL_ENV).unwrap_or_else(|_| ML_100K_URL.to_string());
            let dir = fetch_movielens_100k(&url, &cache, &mut crate::progress::download())?;
            println!("MovieLens 100K verified and installed in {}", dir.display());
            Ok(())
        }
    }
}
