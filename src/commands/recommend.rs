//! `twotower recommend`: top-k movies for a user from a saved model.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use twotower_index::Index;

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
        Index::Approximate(saved.require_index(&args.model)?)
    } else {
        model.exact_index()
    };
    let recs = model.recommend(&index, &args.user, args.k, args.exclude_seen);
    if args.json {
        return super::print_json(&model.user_items(&args.user, &recs));
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
    print!("{}", model.catalogue.ranked(&recs.items));
    Ok(())
}
