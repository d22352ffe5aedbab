//! `twotower recommend`: top-k movies for a user from a saved model.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use twotower_index::Index;

use crate::report;

#[derive(Args)]
pub struct RecommendArgs {
    /// Model folder written by `twotower train --out`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// User id (unknown ids are answered from the out-of-vocabulary vector).
    #[arg(long)]
    user: String,
    /// How many movies.
    #[arg(short = 'k', long, default_value_t = 10)]
    k: usize,
    /// Leave out the movies the user rated in training.
    #[arg(long)]
    exclude_seen: bool,
    /// Search the model folder's approximate index (`twotower index build --model`).
    #[arg(long)]
    approximate: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: RecommendArgs) -> Result<()> {
    super::check_k(args.k)?;
    let saved = super::load_model(&args.model)?;
    let model = &saved.model;
    let index = if args.approximate {
        match saved.load_index(&args.model)? {
            Some(ann) => Index::Approximate(ann),
            None => bail!(
                "{} has no approximate index: build one with `twotower index build --model {}`",
                args.model.display(),
                args.model.display()
            ),
        }
    } else {
        model.exact_index()
    };
    let recs = model.recommend(&index, &args.user, args.k, args.exclude_seen);
    if args.json {
        let v = serde_json::json!({
            "user": args.user,
            "known_user": recs.known_user,
            "items": report::items_json(model, &recs.items),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if !recs.known_user {
        println!(
            "User {} is not in the model's vocabulary: answered from the out-of-vocabulary vector.",
            twotower_data::shown(&args.user)
        );
    }
    println!(
        "Top {} for user {}:",
        args.k,
        twotower_data::shown(&args.user)
    );
    report::print_items(model, &recs.items);
    Ok(())
}
