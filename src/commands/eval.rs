//! `twotower eval`: metrics of a saved model on a split.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use twotower_data::SplitSpec;
use twotower_model::MetricsTable;

use super::DataSplitArgs;

#[derive(Args)]
pub struct EvalArgs {
    /// Model folder written by `twotower train --out`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[command(flatten)]
    data: DataSplitArgs,
    /// Rank through the model folder's approximate index: ranks are read from the
    /// retrieved ids (a test item not retrieved in the top 100 is a miss), as TFRS does
    /// with ScaNN.
    #[arg(long)]
    approximate: bool,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let spec = args.data.spec()?;
    if matches!(
        spec,
        SplitSpec::ColdItems { .. } | SplitSpec::ColdUsers { .. }
    ) {
        bail!(
            "--split {}: the cold-start protocols (their held-out items or users, given \
             histories and baselines) are reported by `twotower train` on that split; `eval` \
             does not compute them yet",
            args.data.split
        );
    }
    let saved = super::load_model(&args.model)?;
    let ml = args.data.open()?;
    let ann = if args.approximate {
        Some(saved.require_index(&args.model)?)
    } else {
        None
    };
    let (metrics, popularity) = saved.evaluate(&ml, &spec, ann.as_ref())?;
    let table = MetricsTable {
        model: &metrics,
        popularity: &popularity,
    };
    if args.json {
        super::print_json(&table)?;
    } else {
        print!("{table}");
        super::warn_ties(&table);
    }
    Ok(())
}
