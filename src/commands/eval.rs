//! `twotower eval`: metrics of a saved model on a split.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use twotower_model::SplitEval;

use super::DataSplitArgs;
use crate::report;

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
    let saved = super::load_model(&args.model)?;
    let ml = args.data.open()?;
    let (train, test) = ml.split(&spec)?;
    let ids: Vec<String> = ml.movies.iter().map(|m| m.id.to_string()).collect();
    if saved.model.catalogue.ids != ids {
        bail!(
            "the model's catalogue ({} movies) is not the catalogue of {} ({} movies)",
            saved.model.catalogue.len(),
            ml.dir.display(),
            ids.len()
        );
    }
    let split = SplitEval::new(&ml, &train, &test)?;
    let metrics = if args.approximate {
        let Some(ann) = saved.load_index(&args.model)? else {
            bail!(
                "{} has no approximate index: build one with `twotower index build --model {}`",
                args.model.display(),
                args.model.display()
            );
        };
        split.model_approximate(&saved.model, &ann)
    } else {
        split.model(&saved.model)
    };
    let popularity = split.popularity();
    if args.json {
        let mut v = serde_json::to_value(&metrics)?;
        v["popularity"] = serde_json::to_value(&popularity)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        report::print_metrics(&metrics, &popularity);
    }
    Ok(())
}
