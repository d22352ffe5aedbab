//! `twotower similar`: movies whose candidate vectors are closest to a movie's.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

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

pub fn run(args: SimilarArgs) -> Result<()> {
    super::check_k(args.k)?;
    let saved = super::load_model(&args.model)?;
    let catalogue = saved.catalogue();
    let Some(row) = catalogue.find(&args.item) else {
        let close = twotower_model::TitleIndex::new(&catalogue.titles).suggest(&args.item, 5);
        bail!(
            "no movie with id or title {}. Did you mean: {}?",
            twotower_data::shown(&args.item),
            close
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let items = saved.similar(&[row], args.k)?.pop().unwrap_or_default();
    if args.json {
        return super::print_json(&catalogue.similar_items(row, &items));
    }
    println!(
        "Movies similar to {} (cosine of candidate vectors):",
        catalogue.titles[row]
    );
    print!("{}", catalogue.ranked(&items));
    Ok(())
}
