//! `twotower similar`: movies whose candidate vectors are closest to a movie's.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use twotower_model::{Catalogue, SavedModel};

use crate::report;

#[derive(Args)]
pub struct SimilarArgs {
    /// Model folder written by `twotower train --out`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Movie id or exact title, e.g. "Star Wars (1977)" or 50.
    #[arg(long)]
    item: String,
    /// How many movies.
    #[arg(short = 'k', long, default_value_t = 5)]
    k: usize,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Up to five titles closest to `query`: substring matches first, then by edit similarity.
pub fn close_titles(catalogue: &Catalogue, query: &str) -> Vec<String> {
    let q = query.to_lowercase();
    let mut scored: Vec<(f64, &String)> = catalogue
        .titles
        .iter()
        .map(|t| {
            let l = t.to_lowercase();
            let bonus = if l.contains(&q) { 1.0 } else { 0.0 };
            (bonus + strsim::jaro_winkler(&q, &l), t)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<String> = scored.into_iter().map(|(_, t)| t.clone()).collect();
    out.dedup();
    out.truncate(5);
    out
}

pub fn run(args: SimilarArgs) -> Result<()> {
    let saved = SavedModel::load(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let model = &saved.model;
    let Some(row) = model.catalogue.find(&args.item) else {
        let close = close_titles(&model.catalogue, &args.item);
        bail!(
            "no movie with id or title {:?}. Did you mean: {}?",
            args.item,
            close
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let items = model.similar(&model.cosine_index(), row, args.k);
    if args.json {
        let v = serde_json::json!({
            "item": { "id": model.catalogue.ids[row], "title": model.catalogue.titles[row] },
            "items": report::items_json(model, &items),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "Movies similar to {} (cosine of candidate vectors):",
        model.catalogue.titles[row]
    );
    report::print_items(model, &items);
    Ok(())
}
