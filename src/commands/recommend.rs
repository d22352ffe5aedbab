//! `twotower recommend`: top-k movies for a user from a saved model.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
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
    #[arg(long, required_unless_present = "history", conflicts_with = "history")]
    user: Option<String>,
    /// Instead of --user: a new user described by the movies they watched, oldest first
    /// (comma-separated ids, e.g. 50,172,181); a feature model whose query tower reads a
    /// history answers them without retraining. Ids not in the catalogue are skipped.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    history: Vec<String>,
    /// With --history: the new user's features as the query tower reads them, e.g.
    /// `age=25,occupation=writer` (a multi-valued one `a|b`). An unknown feature or value
    /// is an error naming it.
    #[arg(
        long,
        value_name = "NAME=VALUE,...",
        requires = "history",
        conflicts_with = "user"
    )]
    features: Option<String>,
    /// How many movies.
    #[arg(short = 'k', long, default_value_t = 10)]
    k: usize,
    /// Leave out the movies the user rated in training (or listed in --history).
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
    let who = args.user.clone().unwrap_or_else(|| "visitor".into());
    let mut known_history = 0;
    let (catalogue, recs) = match super::load_model(&args.model)? {
        AnyModel::Ids(_) if args.user.is_none() => {
            bail!(
                "--history describes a new user to a feature model whose query tower reads a \
                 history (train one with --towers); this is an id model: use --user"
            )
        }
        AnyModel::Ids(saved) => {
            let index = if args.approximate {
                Index::Approximate(saved.require_index(&args.model)?)
            } else {
                saved.model.exact_index()
            };
            let recs = saved
                .model
                .recommend(&index, &who, args.k, args.exclude_seen);
            (saved.model.catalogue, recs)
        }
        AnyModel::Features(saved) => {
            let index = if args.approximate {
                Index::Approximate(saved.require_index(&args.model)?)
            } else {
                Index::Exact(saved.model.exact_index()?)
            };
            let m = &saved.model;
            let recs = match &args.user {
                Some(user) => m
                    .recommend_batch(&index, &[feature_user(user)?], args.k, args.exclude_seen)?
                    .pop()
                    .context("no answer for the user")?,
                None => {
                    let features = parse_features(&args.features)?;
                    let answer = m.recommend_history(
                        &index,
                        &args.history,
                        &features,
                        args.k,
                        args.exclude_seen,
                    )?;
                    for id in &answer.skipped {
                        eprintln!(
                            "warning: --history: no movie with id {}; skipped",
                            twotower_data::shown(id)
                        );
                    }
                    if answer.popularity {
                        eprintln!(
                            "warning: --history: none of its ids is in the model's training catalogue; \
                             answering with the most popular movies"
                        );
                    }
                    known_history = answer.used;
                    answer.recommendations
                }
            };
            (saved.model.catalogue, recs)
        }
    };
    if args.json {
        return super::print_json(&catalogue.user_items(&who, &recs));
    }
    if args.user.is_none() {
        println!(
            "Top {} for a new user who watched {known_history} movies:",
            args.k
        );
    } else {
        if !recs.known_user {
            println!(
                "User {} is not known to the model: answered from what its towers give an unknown user.",
                twotower_data::shown(&who)
            );
        }
        println!("Top {} for user {}:", args.k, twotower_data::shown(&who));
    }
    print!("{}", catalogue.ranked(&recs.items));
    Ok(())
}

/// `--features name=value,…` as pairs; a pair without `=` is an error naming it.
fn parse_features(text: &Option<String>) -> Result<Vec<(String, String)>> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => bail!(
                "--features: {} is not name=value (e.g. age=25,occupation=writer)",
                twotower_data::shown(pair)
            ),
        })
        .collect()
}
