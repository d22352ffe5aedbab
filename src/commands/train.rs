//! `twotower train`: train on a split, evaluate both protocols (and popularity), save.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use twotower_model::{
    Experiment, FitEvent, ModelCard, Negatives, OptimizerKind, Overrides, SavedModel, TrainConfig,
};

use super::DataSplitArgs;
use crate::report;

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    Adagrad,
    Adam,
}

#[derive(Clone, Copy, ValueEnum)]
enum NegativesArg {
    InBatch,
    Full,
    /// Full up to 4,096 candidates, else in-batch with the logQ correction.
    Auto,
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataSplitArgs,
    /// Hyper-parameter preset: `default` (tuned for quality) or `tfrs` (the TFRS tutorial).
    #[arg(long, default_value = "default")]
    preset: String,
    /// Folder to save the model in (written atomically).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    json: bool,
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
    /// Override: optimizer.
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerArg>,
    /// Override: negatives (in-batch softmax or full softmax over the catalogue).
    #[arg(long, value_enum)]
    negatives: Option<NegativesArg>,
    /// Override: softmax temperature.
    #[arg(long)]
    temperature: Option<f32>,
    /// Override: L2 penalty on touched embedding rows.
    #[arg(long)]
    l2: Option<f32>,
    /// Mask in-batch duplicates of the positive (TFRS remove_accidental_hits).
    #[arg(long)]
    remove_accidental_hits: bool,
    /// Correct in-batch logits by log sampling probability.
    #[arg(long)]
    logq: bool,
    /// Override: seed for initialisation and shuffling.
    #[arg(long)]
    seed: Option<u64>,
}

impl TrainArgs {
    /// The preset for a catalogue of `candidates` rows, with the overrides applied.
    fn config(&self, candidates: usize) -> Result<TrainConfig> {
        let overrides = Overrides {
            epochs: self.epochs,
            batch_size: self.batch_size,
            embedding_dim: self.dim,
            optimizer: self.optimizer.map(|o| match o {
                OptimizerArg::Adagrad => OptimizerKind::Adagrad,
                OptimizerArg::Adam => OptimizerKind::Adam,
            }),
            learning_rate: self.lr,
            negatives: self.negatives.map(|n| match n {
                NegativesArg::InBatch => Negatives::InBatch,
                NegativesArg::Full => Negatives::Full,
                NegativesArg::Auto => Negatives::Auto,
            }),
            temperature: self.temperature,
            l2: self.l2,
            seed: self.seed,
            remove_accidental_hits: self.remove_accidental_hits,
            logq_correction: self.logq,
        };
        Ok(TrainConfig::preset_for(&self.preset, candidates)?.with_overrides(&overrides)?)
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    // Fail on bad hyper-parameters and a refused --out before reading a large log.
    args.config(usize::MAX)?;
    if let Some(out) = &args.out {
        SavedModel::check_destination(out)?;
    }
    if let Some(f) = args.validation {
        if !(f > 0.0 && f < 1.0) {
            bail!("--validation must be a fraction between 0 and 1 (exclusive), got {f}");
        }
    }
    if args.eval_sample == Some(0) {
        bail!("--eval-sample must be at least 1 (it is the number of test interactions evaluated)");
    }
    let spec = args.data.spec()?;
    let ml = args.data.open()?;
    let config = args.config(ml.movies.len())?;
    let start = Instant::now();
    let mut exp = Experiment::prepare(ml, &spec, args.validation, config)?;
    let all_test = exp.split.test.len();
    if let Some(n) = args.eval_sample {
        exp.split.sample(n, exp.model.config.seed);
    }
    let sampled = (exp.split.test.len() < all_test).then_some(exp.split.test.len());
    let epochs = exp.model.config.epochs;
    exp.trainer.set_example_budget(args.max_examples);
    let mut pb = None;
    exp.fit(args.eval_every_epoch, &mut |event| match event {
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
            eprintln!(
                "epoch {}/{epochs}: loss {:.1} (mean {:.4}), {:.0} examples/s, {:.2} s",
                stats.epoch, stats.loss, stats.mean_loss, stats.examples_per_second, stats.seconds
            );
        }
    })?;
    let train_seconds = start.elapsed().as_secs_f64();
    let eval_start = Instant::now();
    let metrics = exp.evaluate();
    let eval_seconds = eval_start.elapsed().as_secs_f64();
    let popularity = exp.evaluate_popularity();
    let mut card = ModelCard::describe(&exp.model, exp.dataset.clone(), train_seconds);
    card.metrics = serde_json::json!({ "model": metrics, "popularity": popularity });
    let index = exp.model.exact_index();
    let shown = (!args.show_user.is_empty())
        .then(|| exp.model.recommend(&index, &args.show_user, args.k, false));
    if let Some(out) = &args.out {
        SavedModel {
            model: exp.model.clone(),
            card,
            history: exp.history.clone(),
            warnings: Vec::new(),
        }
        .save(out)?;
    }
    if args.json {
        let mut v = serde_json::to_value(&metrics)?;
        v["train_seconds"] = train_seconds.into();
        v["eval_seconds"] = eval_seconds.into();
        v["popularity"] = serde_json::to_value(&popularity)?;
        v["preset"] = exp.model.config.preset.clone().into();
        v["config"] = serde_json::to_value(&exp.model.config)?;
        v["dataset"] = serde_json::to_value(&exp.dataset)?;
        v["history"] = serde_json::to_value(&exp.history)?;
        if let (Some(r), true) = (&shown, !args.show_user.is_empty()) {
            v["recommendations"] = serde_json::json!({
                "user": args.show_user,
                "known_user": r.known_user,
                "items": report::items_json(&exp.model, &r.items),
            });
        }
        if let Some(out) = &args.out {
            v["model_dir"] = out.display().to_string().into();
        }
        if let Some(n) = args.max_examples {
            v["max_examples"] = n.into();
        }
        if let Some(n) = sampled {
            v["eval_sample"] = serde_json::json!({ "evaluated": n, "of": all_test });
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "Trained preset {:?} on {} ({} examples, {} epochs) in {:.2} s; evaluated in {:.3} s",
        exp.model.config.preset,
        exp.dataset.split,
        exp.dataset.train_interactions,
        epochs,
        train_seconds,
        eval_seconds
    );
    if let Some(n) = args.max_examples {
        println!("Training stopped after at most {n} examples (--max-examples).");
    }
    if let Some(n) = sampled {
        println!("Evaluated on a random sample of {n} of the {all_test} test interactions (--eval-sample).");
    }
    report::print_metrics(&metrics, &popularity);
    if let Some(r) = shown {
        println!(
            "Top {} for user {}{}:",
            args.k,
            args.show_user,
            if r.known_user {
                ""
            } else {
                " (unknown user: out-of-vocabulary vector)"
            }
        );
        report::print_items(&exp.model, &r.items);
    }
    if let Some(out) = &args.out {
        println!("Model saved to {}", out.display());
    }
    Ok(())
}
