//! `twotower eval`: metrics of a saved model on a split.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use twotower_model::{evaluate, Popularity, SavedModel};

use super::DataSplitArgs;
use crate::report;

#[derive(Args)]
pub struct EvalArgs {
    /// Model folder written by `twotower train --out`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[command(flatten)]
    data: DataSplitArgs,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let saved = SavedModel::load(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let ml = args.data.open()?;
    let (train, test) = ml.split(&args.data.spec()?)?;
    let test = twotower_model::test_pairs(&ml, &test)?;
    let metrics = twotower_model::evaluate_model(&saved.model, &test);
    let rows = ml.row_of_id();
    let pop = Popularity::new(ml.movies.len(), train.iter().map(|r| rows[&r.item] as u32));
    let mut seen = std::collections::HashMap::<u32, Vec<u32>>::new();
    for r in &train {
        seen.entry(r.user).or_default().push(rows[&r.item] as u32);
    }
    let popularity = evaluate(&pop, ml.movies.len(), &test, &seen);
    if args.json {
        let mut v = serde_json::to_value(&metrics)?;
        v["popularity"] = serde_json::to_value(&popularity)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        report::print_metrics(&metrics, &popularity);
    }
    Ok(())
}
