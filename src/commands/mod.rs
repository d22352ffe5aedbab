//! One module per subcommand, plus the argument groups they share.

pub mod bench;
pub mod data;
pub mod embed;
pub mod eval;
pub mod index;
pub mod recommend;
pub mod serve;
pub mod similar;
pub mod train;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use twotower_data::log::LogColumns;
use twotower_data::{resolve_data_dir, DataDirSource, Dataset, SplitParams, SplitSpec};

/// Where the data is and how to split it.
#[derive(Args, Debug, Clone)]
pub struct DataSplitArgs {
    /// Dataset: movielens-100k, movielens-1m, movielens-latest-small, movielens-20m,
    /// movielens-25m, movielens-32m, or movielens-csv (--data-dir itself holds ratings.csv
    /// and movies.csv, e.g. from `data synth`). MovieLens datasets missing from --data-dir
    /// and the cache are downloaded and verified on first use.
    #[arg(long, default_value = "movielens-100k")]
    pub dataset: String,
    /// Folder holding the unpacked dataset folder (e.g. `ml-100k/`), or that folder itself.
    /// Default: the TWOTOWER_DATA_DIR environment variable, else the download cache.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Split: an official fold of MovieLens 100K (u1..u5, ua, ub), `random`, `last` (each
    /// user's last --n interactions by time), `time` (before --before), `cold-items` (every
    /// interaction of a seeded --cold-fraction of the items is test; training never sees
    /// them) or `cold-users` (likewise for users, each given their first --history
    /// interactions).
    #[arg(long, default_value = "u1")]
    pub split: String,
    /// With `--split last`: test interactions per user.
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    /// With `--split time`: the Unix timestamp where test begins.
    #[arg(long, value_name = "TIMESTAMP")]
    pub before: Option<i64>,
    /// With `--split random`: the fraction of ratings held out for testing.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// With `--split random`, `cold-items` or `cold-users`: the shuffle seed.
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// With `--split cold-items` or `cold-users`: the fraction of the items or users held
    /// out.
    #[arg(long, default_value_t = 0.2)]
    pub cold_fraction: f64,
    /// With `--split cold-users`: each held-out user's first interactions by time given as
    /// their history (the rest are their test interactions).
    #[arg(long, default_value_t = 5)]
    pub history: usize,
    /// An interaction log instead of a MovieLens folder: CSV, TSV or Parquet (by extension),
    /// one row per interaction with integer user and item ids (every row a positive). With
    /// --train/--test, the log gives the users and the catalogue and those files the split.
    #[arg(long, value_name = "FILE")]
    pub interactions: Option<PathBuf>,
    /// With --interactions: the item catalogue (CSV/TSV with a header: id, title, and
    /// optionally `genres`). Without it, items are titled by their ids.
    #[arg(long, value_name = "FILE", requires = "interactions")]
    pub items: Option<PathBuf>,
    /// With --interactions: the user id column (a header name, or a 0-based position for
    /// files without a header). Default: user_id, userId, user, uid, … else column 0.
    #[arg(long, value_name = "COLUMN", requires = "interactions")]
    pub user_col: Option<String>,
    /// With --interactions: the item id column (also the id column of --items unless
    /// --items-id-col names it). Default: item_id, itemId, movieId, item, … else column 1.
    #[arg(long, value_name = "COLUMN", requires = "interactions")]
    pub item_col: Option<String>,
    /// With --interactions: the Unix-time column (needed by --split last/time). Default:
    /// timestamp, time or ts when the header has one.
    #[arg(long, value_name = "COLUMN", requires = "interactions")]
    pub time_col: Option<String>,
    /// With --items: its id column, when it differs from the log's (Last.fm: `--item-col
    /// artistID --items-id-col id`). Default: --item-col's name, else item_id, movieId, …
    /// or id.
    #[arg(long, value_name = "COLUMN", requires = "items")]
    pub items_id_col: Option<String>,
    /// With --items: the title column. Default: title, name or label.
    #[arg(long, value_name = "COLUMN", requires = "items")]
    pub title_col: Option<String>,
    /// Training file in u.data format (user, item, rating, timestamp, tab-separated; with
    /// --test; overrides --split). Its items must be in the catalogue (u.item, or --items).
    #[arg(long, value_name = "FILE", requires = "test")]
    pub train: Option<PathBuf>,
    /// Test file in u.data format (with --train).
    #[arg(long, value_name = "FILE", requires = "train")]
    pub test: Option<PathBuf>,
}

impl DataSplitArgs {
    /// The split these arguments describe.
    pub fn spec(&self) -> Result<SplitSpec> {
        if let (Some(train), Some(test)) = (&self.train, &self.test) {
            return Ok(SplitSpec::Files {
                train: train.clone(),
                test: test.clone(),
            });
        }
        let params = SplitParams {
            test_fraction: self.test_fraction,
            seed: self.split_seed,
            n: self.n,
            before: self.before,
            cold_fraction: self.cold_fraction,
            history: self.history,
        };
        SplitSpec::named(&self.split, params).with_context(|| format!("--split {}", self.split))
    }

    /// Loads the dataset from the resolved folder (downloading into the cache if needed).
    pub fn open(&self) -> Result<Dataset> {
        if let Some(log) = &self.interactions {
            let columns = LogColumns {
                user: self.user_col.clone(),
                item: self.item_col.clone(),
                time: self.time_col.clone(),
                title: self.title_col.clone(),
                items_id: self.items_id_col.clone(),
            };
            return Dataset::from_log(log, self.items.as_deref(), &columns)
                .with_context(|| format!("reading the interaction log {}", log.display()));
        }
        let (dir, source) = resolve_data_dir(
            self.data_dir.as_deref(),
            &self.dataset,
            &mut crate::progress::download(),
        )?;
        if source == DataDirSource::Downloaded {
            eprintln!("downloaded MovieLens 100K into {}", dir.display());
        }
        Dataset::open(&dir)
            .with_context(|| format!("reading {} from {}", self.dataset, dir.display()))
    }
}

/// Loads a model folder of either format, printing what was wrong but did not stop the
/// load.
pub fn load_model(dir: &std::path::Path) -> Result<twotower_model::feature_answer::AnyModel> {
    let saved = twotower_model::feature_answer::AnyModel::load(dir)
        .with_context(|| format!("loading model {}", dir.display()))?;
    for w in saved.warnings() {
        eprintln!("warning: {w}");
    }
    Ok(saved)
}

/// Refuses `-k 0` (the number of movies to show).
pub fn check_k(k: usize) -> Result<()> {
    if k == 0 {
        bail!("-k must be at least 1 (the number of movies to show)");
    }
    Ok(())
}

/// Says on stderr where ties changed top-K accuracy (the table shows both counts).
pub fn warn_ties(table: &twotower_model::MetricsTable) {
    for w in table.tie_warnings() {
        eprintln!("warning: {w}");
    }
}

/// Prints `v` as pretty JSON with sorted keys (as every `--json` output is).
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::to_value(v)?)?
    );
    Ok(())
}
