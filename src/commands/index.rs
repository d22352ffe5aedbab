//! `twotower index`: build, query and benchmark exact and approximate maximum-inner-product
//! indexes over `.npy` vectors or a model's candidate tower, and write the synthetic
//! benchmark set.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use twotower_index::synth::SynthOptions;
use twotower_index::{bench, build, npy};
use twotower_index::{BuildOptions, Index, KmeansInit, SearchOverrides, SearchParams, Setting};
use twotower_model::feature_answer::AnyModel;
use twotower_model::IndexedModel;

#[derive(Args)]
pub struct IndexArgs {
    #[command(subcommand)]
    command: IndexCommand,
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Build an index over vectors from a .npy file, or over a model's movies.
    Build(BuildArgs),
    /// Top-k ids for every query of a .npy file, written as an int32 .npy.
    Search(SearchArgs),
    /// Recall@k against ground truth, single-thread and batch queries per second, build
    /// time, index bytes and peak memory.
    Bench(BenchArgs),
    /// Write a synthetic benchmark set (items, queries, tuning queries, exact top-100).
    Synth(SynthArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// Every query against every vector.
    Exact,
    /// Partitions + 4-bit anisotropic product quantization + exact re-ranking.
    Ann,
}

#[derive(Args)]
struct BuildArgs {
    /// Vectors to index: float32 .npy of shape (n, dim); row i gets id i.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    vectors: Option<PathBuf>,
    /// Output folder (replaced atomically if it exists).
    #[arg(long, value_name = "DIR", required_unless_present = "model")]
    out: Option<PathBuf>,
    /// Index a saved model's candidate vectors instead: an approximate index is written to
    /// MODEL/index, used by `recommend --approximate`, `eval --approximate` and `serve`.
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// Exact or approximate.
    #[arg(long, value_enum, default_value = "ann")]
    kind: Kind,
    /// Tune for this recall@10 on held-out queries: the fastest setting that reaches it.
    #[arg(long, default_value_t = 0.95, value_name = "R")]
    target_recall: f64,
    /// Queries to tune on (float32 .npy). Default: the model's users with --model, else
    /// 1,000 rows sampled from the vectors.
    #[arg(long, value_name = "FILE")]
    tune_queries: Option<PathBuf>,
    /// Skip tuning and store these leaves to search (with --reorder).
    #[arg(long, requires = "reorder")]
    leaves_to_search: Option<usize>,
    /// Skip tuning and store this re-rank size (with --leaves-to-search).
    #[arg(long, requires = "leaves_to_search")]
    reorder: Option<usize>,
    /// Partitions (default about 2·√n).
    #[arg(long)]
    leaves: Option<usize>,
    /// Product-quantization subspaces, even (default dim / 2: 4 bits per 2 dimensions).
    #[arg(long)]
    subspaces: Option<usize>,
    /// ScaNN's anisotropic threshold T (0: plain product quantization).
    #[arg(long, default_value_t = 0.2)]
    anisotropic: f32,
    /// How the partition k-means starts: `random` (balanced leaves; best up to recall
    /// ≈ 0.95) or `plusplus` (k-means++: outliers get leaves of their own; best at 0.99).
    #[arg(long, default_value = "random")]
    kmeans_init: KmeansInit,
    /// Seed of sampling and k-means.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct SearchArgs {
    /// Index folder from `index build`.
    #[arg(long, value_name = "DIR")]
    index: PathBuf,
    /// Queries: float32 .npy of shape (n, dim).
    #[arg(long, value_name = "FILE")]
    queries: PathBuf,
    /// Results per query (at most the index's size: a larger k is cut to it).
    #[arg(short = 'k', long, default_value_t = 10)]
    k: usize,
    /// Output: int32 .npy of shape (n, k), best first (-1 where fewer than k exist).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write the scores, float32 .npy of shape (n, k).
    #[arg(long, value_name = "FILE")]
    scores: Option<PathBuf>,
    #[command(flatten)]
    params: ParamArgs,
}

/// Overrides of an approximate index's stored search settings.
#[derive(Args)]
struct ParamArgs {
    /// Leaves to visit (approximate indexes; default: the stored setting).
    #[arg(long)]
    leaves_to_search: Option<usize>,
    /// Candidates re-ranked exactly (approximate indexes; default: the stored setting).
    #[arg(long)]
    reorder: Option<usize>,
}

#[derive(Args)]
struct BenchArgs {
    /// Index folder from `index build`.
    #[arg(long, value_name = "DIR")]
    index: PathBuf,
    /// Queries: float32 .npy of shape (n, dim).
    #[arg(long, value_name = "FILE")]
    queries: PathBuf,
    /// True ids: int32 (or int64) .npy of shape (n, ≥k), each row best first.
    #[arg(long, value_name = "FILE")]
    truth: PathBuf,
    /// The k of recall@k.
    #[arg(short = 'k', long, default_value_t = 10)]
    k: usize,
    /// Queries timed one at a time on one thread (default: all).
    #[arg(long, value_name = "N")]
    single_queries: Option<usize>,
    /// Times each measurement is repeated (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    params: ParamArgs,
    /// Sweep instead: time every pair of these leaves-to-search values and --sweep-reorder
    /// values one query at a time, and report the fastest setting at recall 0.90, 0.95
    /// and 0.99 (approximate indexes).
    #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
    sweep_leaves: Vec<usize>,
    /// Re-rank sizes of the sweep.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N,N,…",
        default_value = "40,80,160,320,640"
    )]
    sweep_reorder: Vec<usize>,
}

#[derive(Args)]
struct SynthArgs {
    /// Items (rows of items.npy).
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    /// Test queries (rows of queries.npy and gt.npy).
    #[arg(long, default_value_t = 10_000)]
    queries: usize,
    /// Extra queries from the same mixture for tuning (tune_queries.npy).
    #[arg(long, default_value_t = 1_000)]
    tune_queries: usize,
    /// Dimension.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 1_000)]
    clusters: usize,
    /// Exact neighbours per query in gt.npy.
    #[arg(long, default_value_t = 100)]
    truth_k: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: IndexArgs) -> Result<()> {
    match args.command {
        IndexCommand::Build(a) => build(a),
        IndexCommand::Search(a) => search(a),
        IndexCommand::Bench(a) => bench(a),
        IndexCommand::Synth(a) => synth(a),
    }
}

impl ParamArgs {
    fn overrides(&self) -> SearchOverrides {
        SearchOverrides {
            leaves_to_search: self.leaves_to_search,
            reorder: self.reorder,
        }
    }
}

impl BuildArgs {
    fn options(&self) -> BuildOptions {
        BuildOptions {
            leaves: self.leaves,
            subspaces: self.subspaces,
            anisotropic_threshold: self.anisotropic,
            kmeans_init: self.kmeans_init,
            seed: self.seed,
            ..BuildOptions::default()
        }
    }

    /// The search setting: as given, or tuned (on --tune-queries when given).
    fn setting(&self, dim: usize) -> Result<Setting> {
        Ok(match (self.leaves_to_search, self.reorder) {
            (Some(l), Some(r)) => Setting::Fixed(SearchParams {
                leaves_to_search: l,
                reorder: r,
            }),
            _ => Setting::Tuned {
                target_recall: self.target_recall,
                queries: match &self.tune_queries {
                    Some(p) => Some(npy::read_queries(p, dim)?.data),
                    None => None,
                },
            },
        })
    }
}

fn build(a: BuildArgs) -> Result<()> {
    let start = Instant::now();
    let mut progress =
        |stage: &str| eprintln!("  {stage} ({:.1} s)", start.elapsed().as_secs_f64());
    let built = if let Some(dir) = &a.model {
        if a.kind == Kind::Exact {
            bail!("--model builds an approximate index (models search exactly without one)");
        }
        match super::load_model(dir)? {
            AnyModel::Ids(saved) => {
                let setting = a.setting(saved.model.dim())?;
                saved.build_index(dir, a.options(), setting, &mut progress)?
            }
            AnyModel::Features(saved) => {
                let setting = a.setting(saved.model.candidate.tower.output_width())?;
                saved.build_index(dir, a.options(), setting, &mut progress)?
            }
        }
    } else {
        let v = npy::read_vectors(a.vectors.as_ref().context("--vectors is required")?)?;
        let kind = match a.kind {
            Kind::Exact => build::Kind::Exact,
            Kind::Ann => build::Kind::Approximate(a.options(), a.setting(v.cols)?),
        };
        let out = a.out.as_ref().context("--out is required")?;
        build::build_folder(v.data, v.cols, out, kind, &mut progress)?
    };
    print!("{built}");
    Ok(())
}

fn search(a: SearchArgs) -> Result<()> {
    if a.k == 0 {
        bail!("-k must be at least 1");
    }
    let index = Index::load_with(&a.index, a.params.overrides())?;
    // More than the index holds cannot be found: the output is as wide as the index.
    let k = a.k.min(index.len());
    let q = npy::read_queries(&a.queries, index.dim())?;
    let (ids, scores) = index.search_table(&q.data, k)?;
    npy::write_i32(&a.out, &ids, q.rows, k)?;
    if let Some(p) = &a.scores {
        npy::write_f32(p, &scores, q.rows, k)?;
    }
    eprintln!("{} queries → {}", q.rows, a.out.display());
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    if a.k == 0 || a.repeats == 0 {
        bail!("-k and --repeats must be at least 1");
    }
    let w = bench::Workload::open(&a.index, a.params.overrides(), &a.queries, &a.truth, a.k)?;
    if a.sweep_leaves.is_empty() {
        let r = w.measure(a.repeats, a.single_queries)?;
        if a.json {
            super::print_json(&r)?;
        } else {
            print!("{r}");
        }
        return Ok(());
    }
    let Index::Approximate(ann) = &w.index else {
        bail!("--sweep-leaves applies to approximate indexes only");
    };
    let grid = bench::Grid {
        leaves_to_search: &a.sweep_leaves,
        reorder: &a.sweep_reorder,
    };
    let (queries, truth) = w.first(a.single_queries.unwrap_or(usize::MAX));
    let json = a.json;
    let points = bench::sweep(ann, queries, truth, a.k, grid, a.repeats, &mut |p| {
        if !json {
            println!("{}", serde_json::json!(p));
        }
    });
    let best = bench::best_per_level(&points);
    if a.json {
        super::print_json(&serde_json::json!({ "grid": points, "best": best }))?;
    } else {
        for b in &best {
            println!("{}", serde_json::json!(b));
        }
    }
    Ok(())
}

fn synth(a: SynthArgs) -> Result<()> {
    let start = Instant::now();
    let opts = SynthOptions {
        items: a.items,
        queries: a.queries + a.tune_queries,
        dim: a.dim,
        clusters: a.clusters,
        seed: a.seed,
    };
    let set =
        twotower_index::synth::write_set(&a.out, &opts, a.queries, a.truth_k, &mut |stage| {
            eprintln!("{stage} ({:.1} s)", start.elapsed().as_secs_f64())
        })?;
    println!("wrote {set} in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
