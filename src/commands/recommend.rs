//! `twotower recommend`: top-k movies for a user from a saved model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use twotower_index::Index;
use twotower_model::feature_answer::{feature_user, AnyModel};
use twotower_model::IndexedModel;

#[derive(Args)]
pub struct RecommendArgs {
    /// Model folder written by `twotower train --out`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// User id (unknown ids are answered from the out-of-vocabulary vector). Feature models
    /// (format 2) answer with the user's query now: after their last training interaction.
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
    let (catalogue, recs) = match super::load_model(&args.model)? {
        AnyModel::Ids(saved) => {
            let index = if args.approximate {
                Index::Approximate(saved.require_index(&args.model)?)
            } else {
                saved.model.exact_index()
            };
            let recs = saved
                .model
                .recommend(&index, &args.user, args.k, args.exclude_seen);
            (saved.model.catalogue, recs)
        }
        AnyModel::Features(saved) => {
            let index = if args.approximate {
                Index::Approximate(saved.require_index(&args.model)?)
            } else {
                Index::Exact(saved.model.exact_index()?)
            };
            let user = feature_user(&args.user)?;
            let mut recs =
                saved
                    .model
                    .recommend_batch(&index, &[user], args.k, args.exclude_seen)?;
            let recs = recs.pop().context("no answer for the user")?;
            (saved.model.catalogue, recs)
        }
    };
    if args.json {
        return super::print_json(&catalogue.user_items(&args.user, &recs));
    }
    if !recs.known_user {
        println!(
            "User {} is not known to the model: answered from what its towers give an unknown user.",
            twotower_data::shown(&args.user)
        );
    }
    println!(
        "Top {} for user {}:",
        args.k,
        twotower_data::shown(&args.user)
    );
    print!("{}", catalogue.ranked(&recs.items));
    Ok(())
}
