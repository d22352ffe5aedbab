//! `twotower train`: train on a split, evaluate both protocols (and popularity), save.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use twotower_data::feature_table::{FeatureTable, Side};
use twotower_model::job::TrainJob;
use twotower_model::spec::TowersSpec;
use twotower_model::{FitEvent, Negatives, OptimizerKind, Overrides, SavedModel, TrainReport};

use super::DataSplitArgs;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataSplitArgs,
    /// Preset: `default` (feature towers by what the data offers: the user's id and their
    /// recent items — the last 5 before each interaction, or 50 others when the log has no
    /// time — against the item's id; tuned for quality), `ids` (id towers only, the faster
    /// model of format 1), `tfrs` (the TFRS basic retrieval tutorial), or `tfrs-context` /
    /// `tfrs-deep` (the context-features and deep-retrieval tutorials, with their feature
    /// towers; use `--split random`).
    #[arg(long, default_value = "default")]
    preset: String,
    /// Folder to save the model in (written atomically).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    json: bool,
    /// Feature towers from a spec file (TOML; see the README): users' features, time and
    /// history; items' title, genres and year. Saved as model folder format 2.
    #[arg(long, value_name = "FILE")]
    towers: Option<PathBuf>,
    /// With --towers: the users' features (CSV/TSV with a header, or Parquet: the user id column and
    /// the columns the spec declares under [user_columns]).
    #[arg(long, value_name = "FILE", requires = "towers")]
    user_features: Option<PathBuf>,
    /// With --towers: the items' features (CSV/TSV with a header, or Parquet: the item id column, or
    /// `id`, and the columns the spec declares under [item_columns]).
    #[arg(long, value_name = "FILE", requires = "towers")]
    item_features: Option<PathBuf>,
    /// With `--preset tfrs-context` or `tfrs-deep`: give the query the interaction's time
    /// (`false`: the tutorials' baseline without it).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    timestamps: bool,
    /// Evaluate on a held-out fraction of the TRAINING data instead of the test side (for
    /// tuning without touching the test set).
    #[arg(long, value_name = "FRACTION")]
    validation: Option<f64>,
    /// Evaluate on a seeded random sample of this many test interactions (faster on large
    /// logs; the output says so).
    #[arg(long, value_name = "N")]
    eval_sample: Option<usize>,
    /// Evaluate after every epoch (recorded in history.json).
    #[arg(long)]
    eval_every_epoch: bool,
    /// Stop after training on this many examples in total (the last epoch is cut short;
    /// stated in the output). For time-to-quality measurements.
    #[arg(long, value_name = "N")]
    max_examples: Option<usize>,
    /// After training, show recommendations for this user id ("" for none).
    #[arg(long, default_value = "42")]
    show_user: String,
    /// How many recommendations to show.
    #[arg(short = 'k', long, default_value_t = 3)]
    k: usize,
    /// Override: training epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override: batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override: embedding dimension.
    #[arg(long)]
    dim: Option<usize>,
    /// Override: learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// Override: the learning rate's decay over training, per batch: `constant`, `linear`
    /// (to 0 at the last step) or `cosine`.
    #[arg(long, value_name = "DECAY")]
    lr_decay: Option<twotower_model::LrDecay>,
    /// Override: optimizer, `adagrad` or `adam`.
    #[arg(long)]
    optimizer: Option<OptimizerKind>,
    /// Override: the regime, as a whole: `full` softmax over the catalogue (no logQ, the
    /// preset's full-softmax settings), `in-batch` negatives (the preset's in-batch regime:
    /// for `default`/`ids`, batch 512, Adam 0.01, 3 epochs and the logQ correction), or
    /// `auto` (full up to 4,096 candidates, else in-batch). Other flags apply after it.
    #[arg(long)]
    negatives: Option<Negatives>,
    /// Override: softmax temperature.
    #[arg(long)]
    temperature: Option<f32>,
    /// Override: L2 penalty on touched embedding rows.
    #[arg(long)]
    l2: Option<f32>,
    /// Mask in-batch duplicates of the positive (TFRS remove_accidental_hits); `--remove-accidental-hits false` turns it off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    remove_accidental_hits: Option<bool>,
    /// Correct in-batch logits by the log of each item's sampling probability (on in the
    /// large-catalogue regime; `--logq false` turns it off).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    logq: Option<bool>,
    /// The logQ correction's weight (1: exact; above 1 leaves more of each item's popularity
    /// in the scores).
    #[arg(long, value_name = "W")]
    logq_weight: Option<f32>,
    /// Warm start: sweeps of alternating least squares over the id tables before the
    /// softmax epochs (implicit feedback, observed pairs weighted by --als-alpha; id towers,
    /// and feature towers whose user and item ids meet in the dot product, the history
    /// starting as item-item similarity; 0 switches a preset's warm start off).
    #[arg(long, value_name = "N")]
    als_iterations: Option<usize>,
    /// Warm start: the ALS L2 penalty per row.
    #[arg(long, value_name = "LAMBDA")]
    als_regularization: Option<f32>,
    /// Warm start: the ALS weight of an observed pair (unobserved pairs weigh 1).
    #[arg(long, value_name = "ALPHA")]
    als_alpha: Option<f32>,
    /// Warm start: frequency-scaled ALS penalty, regularization · (alpha · n + N)^EXP for a
    /// row with n pairs against N rows of the other side (iALS as Rendle et al. 2022 tune
    /// it; 0, the default, is a flat penalty).
    #[arg(long, value_name = "EXP")]
    als_reg_exponent: Option<f32>,
    /// Warm start: popularity-weighted negatives (eALS), the unobserved pairs of an item with
    /// n training pairs weighing (n + 1)^EXP, scaled to a mean of 1 (0, the default: all 1).
    #[arg(long, value_name = "EXP")]
    als_popularity_exponent: Option<f32>,
    /// Warm start: columns of a coarse ALS part fitted beside the fine one (flat penalty 50,
    /// α 20), its scores added with --als-coarse-weight; the fine part keeps its columns
    /// (0 switches the default preset's 16 off).
    #[arg(long, value_name = "N")]
    als_coarse_dim: Option<usize>,
    /// Warm start: how much the coarse part's scores count (default: chosen among 0, 0.25,
    /// 0.5, 0.75 and 1 on one in ten training pairs held out, then refitted on all; the
    /// choice is in `train --json` and model.json).
    #[arg(long, value_name = "W")]
    als_coarse_weight: Option<f32>,
    /// Override: seed for initialisation and shuffling.
    #[arg(long)]
    seed: Option<u64>,
}

impl TrainArgs {
    /// The job these arguments describe (without the feature tables, read later).
    fn job(&self) -> Result<TrainJob> {
        let mut job = TrainJob::new(&self.preset);
        job.overrides = Overrides {
            epochs: self.epochs,
            batch_size: self.batch_size,
            embedding_dim: self.dim,
            optimizer: self.optimizer,
            learning_rate: self.lr,
            lr_decay: self.lr_decay,
            negatives: self.negatives,
            temperature: self.temperature,
            l2: self.l2,
            seed: self.seed,
            remove_accidental_hits: self.remove_accidental_hits,
            logq_correction: self.logq,
            logq_weight: self.logq_weight,
            als_iterations: self.als_iterations,
            als_regularization: self.als_regularization,
            als_alpha: self.als_alpha,
            als_reg_exponent: self.als_reg_exponent,
            als_popularity_exponent: self.als_popularity_exponent,
            als_coarse_dim: self.als_coarse_dim,
            als_coarse_weight: self.als_coarse_weight,
        };
        job.towers = self.towers.as_deref().map(TowersSpec::read).transpose()?;
        job.timestamps = self.timestamps;
        job.validation = self.validation;
        job.eval_sample = self.eval_sample;
        job.max_examples = self.max_examples;
        Ok(job)
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(f) = args.validation {
        if !(f > 0.0 && f < 1.0) {
            bail!("--validation must be a fraction between 0 and 1 (exclusive), got {f}");
        }
    }
    if args.eval_sample == Some(0) {
        bail!("--eval-sample must be at least 1 (it is the number of test interactions evaluated)");
    }
    // Fail on bad hyper-parameters and a refused --out before reading a large log.
    let mut job = args.job()?;
    // The job's own checks, worded with the flags.
    if !args.timestamps && !job.tutorial_features() {
        bail!("--timestamps applies to the tfrs-context and tfrs-deep presets");
    }
    if args.dim.is_some() && job.feature_towers() {
        bail!(
            "--dim sets the size of id towers; feature towers take their sizes from the spec \
             (the default preset's are in towers/; `--preset ids` trains id towers of --dim)"
        );
    }
    job.check()?;
    if let Some(out) = &args.out {
        SavedModel::check_destination(out)?;
    }
    let spec = args.data.spec()?;
    (job.user_features, job.item_features) = feature_tables(&args)?;
    let ml = args.data.open()?;
    let start = Instant::now();
    let show = (!args.show_user.is_empty()).then_some((args.show_user.as_str(), args.k));
    let mut run = job.prepare(ml, &spec)?;
    run.fit(args.eval_every_epoch, &mut progress(run.epochs()))?;
    let mut report = run.report(start.elapsed().as_secs_f64(), show)?;
    if let Some(out) = &args.out {
        run.save(&report, out)?;
        report.model_dir = Some(out.display().to_string());
    }
    print_report(&report, args.json)
}

/// The `--user-features` and `--item-features` tables, read (their id columns by
/// `--user-col` / `--item-col`, else by common names).
fn feature_tables(args: &TrainArgs) -> Result<(Option<FeatureTable>, Option<FeatureTable>)> {
    let read = |path: &Option<PathBuf>, side: Side, col: &Option<String>| {
        path.as_ref()
            .map(|p| {
                FeatureTable::read(p, side, col.as_deref())
                    .with_context(|| format!("reading the feature file {}", p.display()))
            })
            .transpose()
    };
    Ok((
        read(&args.user_features, Side::User, &args.data.user_col)?,
        read(&args.item_features, Side::Item, &args.data.item_col)?,
    ))
}

fn print_report(report: &TrainReport, json: bool) -> Result<()> {
    if json {
        super::print_json(report)?;
    } else {
        print!("{report}");
        super::warn_ties(&report.table());
    }
    Ok(())
}

/// Progress of training on stderr: a bar per epoch, a line when each ends.
fn progress(epochs: usize) -> impl FnMut(FitEvent) {
    let mut pb: Option<indicatif::ProgressBar> = None;
    move |event| match event {
        FitEvent::EpochStart {
            epoch,
            epochs,
            examples,
        } => {
            let bar = crate::progress::bar(examples as u64, "examples");
            bar.set_prefix(format!("epoch {epoch}/{epochs}"));
            pb = Some(bar);
        }
        FitEvent::Batch { progress: p, .. } => {
            if let Some(bar) = &pb {
                bar.set_position(p.examples_done as u64);
                bar.set_message(format!("loss {:.4}", p.mean_loss));
            }
        }
        FitEvent::EpochEnd(stats) => {
            if let Some(bar) = pb.take() {
                bar.finish_and_clear();
            }
            eprintln!("epoch {}/{epochs}: {stats}", stats.epoch);
        }
        FitEvent::WarmStart { iterations } => {
            eprintln!("ALS warm start: {iterations} sweeps over the id tables");
        }
        FitEvent::WarmStartEnd { seconds } => {
            eprintln!("ALS warm start: done in {seconds:.2} s");
        }
    }
}
