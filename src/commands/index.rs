//! `twotower index`: build, query and benchmark exact and approximate maximum-inner-product
//! indexes over `.npy` vectors or a model's candidate tower, and write the synthetic
//! benchmark set.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use twotower_index::bench;
use twotower_index::npy::{self, Array2};
use twotower_index::synth::SynthOptions;
use twotower_index::{
    AnnIndex, BruteForceIndex, BuildOptions, Index, KmeansInit, SearchParams, Setting,
};
use twotower_model::checkpoint::INDEX_DIR;

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
    #[arg(long, value_enum, default_value = "random")]
    kmeans_init: InitArg,
    /// Seed of sampling and k-means.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum InitArg {
    Random,
    Plusplus,
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

fn read_vectors(path: &Path) -> Result<Array2<f32>> {
    let a = npy::read_f32(path)?;
    if a.rows == 0 || a.cols == 0 {
        bail!(
            "{}: shape ({}, {}) holds no vectors",
            path.display(),
            a.rows,
            a.cols
        );
    }
    Ok(a)
}

fn read_queries(path: &Path, dim: usize) -> Result<Array2<f32>> {
    let q = npy::read_f32(path)?;
    check_dim(path, &q, dim)?;
    Ok(q)
}

fn check_dim(path: &Path, q: &Array2<f32>, dim: usize) -> Result<()> {
    if q.cols != dim {
        bail!(
            "{}: queries have dimension {}, the index has {dim}",
            path.display(),
            q.cols
        );
    }
    Ok(())
}

fn build(a: BuildArgs) -> Result<()> {
    let start = Instant::now();
    let (vectors, dim, out, default_queries) = if let Some(model_dir) = &a.model {
        if a.kind == Kind::Exact {
            bail!("--model builds an approximate index (models search exactly without one)");
        }
        let saved = super::load_model(model_dir)?;
        let m = &saved.model;
        (
            m.candidate_index().vectors().to_vec(),
            m.dim(),
            model_dir.join(INDEX_DIR),
            // Tune on the model's own queries: a sample of its users.
            Some(m.sample_queries(1000, a.seed)),
        )
    } else {
        let path = a.vectors.as_ref().expect("clap requires --vectors");
        let v = read_vectors(path)?;
        let out = a.out.clone().expect("clap requires --out");
        (v.data, v.cols, out, None)
    };
    // Refuse a bad --out before the work, not after it.
    twotower_folder::check_replaceable(&out, &twotower_index::store::FOLDER)?;
    let n = vectors.len() / dim;
    eprintln!("indexing {n} vectors of dimension {dim}");
    if a.kind == Kind::Exact {
        BruteForceIndex::new(vectors, dim)?.save(&out)?;
        println!("exact index of {n} vectors written to {}", out.display());
        return Ok(());
    }
    let opts = BuildOptions {
        leaves: a.leaves,
        subspaces: a.subspaces,
        anisotropic_threshold: a.anisotropic,
        kmeans_init: match a.kmeans_init {
            InitArg::Random => KmeansInit::Random,
            InitArg::Plusplus => KmeansInit::PlusPlus,
        },
        seed: a.seed,
        ..BuildOptions::default()
    };
    let setting = match (a.leaves_to_search, a.reorder) {
        (Some(l), Some(r)) => Setting::Fixed(SearchParams {
            leaves_to_search: l,
            reorder: r,
        }),
        _ => Setting::Tuned {
            target_recall: a.target_recall,
            queries: match &a.tune_queries {
                Some(p) => Some(read_queries(p, dim)?.data),
                None => default_queries,
            },
        },
    };
    let (index, tuned) = AnnIndex::build_tuned(vectors, dim, &opts, setting, &mut |stage| {
        eprintln!("  {stage} ({:.1} s)", start.elapsed().as_secs_f64())
    })?;
    index.save(&out)?;
    let p = index.params();
    println!(
        "approximate index written to {}: {n} vectors, {} leaves, {} subspaces, {:.1} MB \
         (+{:.1} MB of vectors for re-ranking), built in {:.1} s",
        out.display(),
        index.leaves(),
        index.subspaces(),
        index.index_bytes() as f64 / 1e6,
        index.vector_bytes() as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    match tuned {
        Some(t) if t.reached => println!(
            "search setting: {} leaves to search, re-rank {} (recall@10 {:.4} on {} tuning \
             queries, {:.1} µs per query)",
            p.leaves_to_search, p.reorder, t.chosen.recall, t.queries, t.chosen.micros_per_query
        ),
        Some(t) => println!(
            "warning: no setting reached recall@10 {}; storing the most accurate one tried \
             ({} leaves, re-rank {}: recall@10 {:.4})",
            a.target_recall, p.leaves_to_search, p.reorder, t.chosen.recall
        ),
        None => println!(
            "search setting: {} leaves to search, re-rank {} (as given)",
            p.leaves_to_search, p.reorder
        ),
    }
    Ok(())
}

/// The index at `dir` with search overrides applied.
fn open_index(dir: &Path, p: &ParamArgs) -> Result<Index> {
    let mut index = Index::load(dir).with_context(|| format!("loading index {}", dir.display()))?;
    if let Index::Approximate(a) = &mut index {
        let stored = a.params();
        a.set_params(SearchParams {
            leaves_to_search: p.leaves_to_search.unwrap_or(stored.leaves_to_search),
            reorder: p.reorder.unwrap_or(stored.reorder),
        });
    } else if p.leaves_to_search.is_some() || p.reorder.is_some() {
        bail!("--leaves-to-search and --reorder apply to approximate indexes only");
    }
    Ok(index)
}

fn search(a: SearchArgs) -> Result<()> {
    if a.k == 0 {
        bail!("-k must be at least 1");
    }
    let index = open_index(&a.index, &a.params)?;
    // More than the index holds cannot be found: the output is as wide as the index.
    let a = SearchArgs {
        k: a.k.min(index.len()),
        ..a
    };
    let q = read_queries(&a.queries, index.dim())?;
    let results = index.search_batch(&q.data, a.k)?;
    let mut ids = vec![-1i32; q.rows * a.k];
    let mut scores = vec![f32::NEG_INFINITY; q.rows * a.k];
    for (r, found) in results.iter().enumerate() {
        for (j, n) in found.iter().enumerate() {
            ids[r * a.k + j] = n.id as i32;
            scores[r * a.k + j] = n.score;
        }
    }
    npy::write_i32(&a.out, &ids, q.rows, a.k)?;
    if let Some(p) = &a.scores {
        npy::write_f32(p, &scores, q.rows, a.k)?;
    }
    eprintln!("{} queries → {}", q.rows, a.out.display());
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    if a.k == 0 || a.repeats == 0 {
        bail!("-k and --repeats must be at least 1");
    }
    // Inputs first, so that nothing runs between loading the index and its first query.
    let q = npy::read_f32(&a.queries)?;
    let gt = npy::read_ids(&a.truth)?;
    let load_start = Instant::now();
    let index = open_index(&a.index, &a.params)?;
    let load_seconds = load_start.elapsed().as_secs_f64();
    check_dim(&a.queries, &q, index.dim())?;
    if q.rows == 0 {
        bail!("{}: holds no queries", a.queries.display());
    }
    let truth = bench::truth_rows(&gt.data, gt.rows, gt.cols, q.rows, a.k, index.len())
        .with_context(|| format!("{}", a.truth.display()))?;
    let single_n = a.single_queries.unwrap_or(q.rows).clamp(1, q.rows);
    if !a.sweep_leaves.is_empty() {
        let Index::Approximate(ann) = &index else {
            bail!("--sweep-leaves applies to approximate indexes only");
        };
        let grid = bench::Grid {
            leaves_to_search: &a.sweep_leaves,
            reorder: &a.sweep_reorder,
        };
        let d = ann.dim();
        let json = a.json;
        let points = bench::sweep(
            ann,
            &q.data[..single_n * d],
            &truth[..single_n],
            a.k,
            grid,
            a.repeats,
            &mut |p| {
                if !json {
                    println!("{}", serde_json::json!(p));
                }
            },
        );
        let best = bench::best_per_level(&points);
        if a.json {
            let v = serde_json::json!({ "grid": points, "best": best });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for b in &best {
                println!("{}", serde_json::json!(b));
            }
        }
        return Ok(());
    }
    let r = bench::measure(&index, &q.data, &truth, a.k, a.repeats, single_n)?;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["index"] = serde_json::json!(a.index);
        v["load_seconds"] = load_seconds.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let d = r.dim;
    println!(
        "index            {} ({}, {} × {d})",
        a.index.display(),
        r.kind,
        r.vectors
    );
    if let Some(p) = r.search {
        println!(
            "setting          {} leaves to search, re-rank {}",
            p.leaves_to_search, p.reorder
        );
    }
    println!(
        "recall@{:<2}        {:.4} over {} queries",
        a.k, r.recall, r.queries
    );
    println!(
        "single thread    {:.0} queries/s (one at a time, {} queries, median of {})",
        r.single_thread_qps, r.single_thread_queries, a.repeats
    );
    println!(
        "batch            {:.0} queries/s ({} threads)",
        r.batch_qps, r.batch_threads
    );
    println!(
        "first query      {:.0} µs after a {load_seconds:.2} s load with {} page faults (the same query after 100 others: {:.0} µs; median of those: {:.0} µs)",
        r.first_query_us, r.first_query_page_faults, r.first_query_again_us, r.median_next_99_us
    );
    if let Some(b) = r.build_seconds {
        println!("build            {b:.1} s");
    }
    println!(
        "index bytes      {:.1} MB (+{:.1} MB of vectors kept for re-ranking)",
        r.index_bytes as f64 / 1e6,
        r.vector_bytes as f64 / 1e6
    );
    println!("peak memory      {:.0} MiB", r.peak_rss_mib);
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
    twotower_index::synth::write_set(&a.out, &opts, a.queries, a.truth_k, &mut |stage| {
        eprintln!("{stage} ({:.1} s)", start.elapsed().as_secs_f64())
    })?;
    println!(
        "wrote {} (items.npy {} × {}, queries.npy {}, tune_queries.npy {}, gt.npy top-{}) in {:.1} s",
        a.out.display(),
        a.items,
        a.dim,
        a.queries,
        a.tune_queries,
        a.truth_k.min(a.items),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
