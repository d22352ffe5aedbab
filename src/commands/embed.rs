//! `twotower embed`: new items (which training never saw) added to a copy of a feature
//! model, their vectors from their features.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use twotower_data::log::{read_items, LogColumns};
use twotower_model::feature_answer::AnyModel;
use twotower_model::feature_folder::{FeatureCard, SavedFeatureModel};
use twotower_model::SavedModel;

#[derive(Args)]
pub struct EmbedArgs {
    /// Feature model folder (format 2) written by `twotower train --out`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The new items: a CSV/TSV table with a header (id, title, and optionally `genres`,
    /// `|`-separated), as `--items` of a log.
    #[arg(long, value_name = "FILE")]
    items: PathBuf,
    /// The id column of --items (default: item_id, movieId, id, …); also spelled
    /// --items-id-col, as for `train`.
    #[arg(long, value_name = "COLUMN", alias = "items-id-col")]
    item_col: Option<String>,
    /// The title column of --items (default: title, name or label).
    #[arg(long, value_name = "COLUMN")]
    title_col: Option<String>,
    /// Folder for the model with the new items (written atomically; not --model itself).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EmbedArgs) -> Result<()> {
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize())
    {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(&args.out, &args.model) {
        bail!("--out must be a new folder, not --model itself (the model stays as it is)");
    }
    SavedModel::check_destination(&args.out)?;
    let columns = LogColumns {
        item: args.item_col.clone(),
        title: args.title_col.clone(),
        ..LogColumns::default()
    };
    let new = read_items(&args.items, &columns)
        .with_context(|| format!("reading the new items {}", args.items.display()))?;
    let saved = match super::load_model(&args.model)? {
        AnyModel::Features(saved) => saved,
        AnyModel::Ids(_) => bail!(
            "{} is an id model: it has a row per item it was trained on and nothing to place \
             a new item by; train feature towers (--towers) whose candidate tower reads the \
             items' features",
            args.model.display()
        ),
    };
    let added = new.len();
    let model = saved
        .model
        .with_new_items(new)
        .with_context(|| format!("adding the items of {}", args.items.display()))?;
    let mut card =
        FeatureCard::describe(&model, saved.card.dataset.clone(), saved.card.train_seconds);
    card.metrics = saved.card.metrics.clone();
    let rows = model.catalogue.len();
    SavedFeatureModel {
        model,
        card,
        history: saved.history,
        warnings: Vec::new(),
    }
    .save(&args.out)?;
    if args.json {
        return super::print_json(&serde_json::json!({
            "added": added,
            "catalogue_rows": rows,
            "model_dir": args.out.display().to_string(),
        }));
    }
    println!(
        "{added} new items embedded from their features; the model with {rows} items is saved \
         to {} (an approximate index, if any, is not copied: `twotower index build --model` it)",
        args.out.display()
    );
    Ok(())
}
