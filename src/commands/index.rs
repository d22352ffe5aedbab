//! `twotower index`: build, query and benchmark exact and approximate maximum-inner-product
//! indexes over `.npy` vectors or a model's candidate tower, and write the synthetic
//! benchmark set.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use rand::seq::index::sample;
use rand::SeedableRng;
use serde_json::json;
use twotower_index::npy::{self, Array2};
use twotower_index::synth::{generate, SynthOptions};
use twotower_index::{
    AnnIndex, BruteForceIndex, BuildOptions, Index, KmeansInit, Neighbor, SearchParams,
};
use twotower_model::checkpoint::INDEX_DIR;
use twotower_model::SavedModel;

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

/// Exact top-`k` ids of each query (the vectors are moved into the exact index, not copied).
fn exact_truth(vectors: Vec<f32>, dim: usize, queries: &[f32], k: usize) -> Result<Vec<Vec<u32>>> {
    let exact = BruteForceIndex::new(vectors, dim)?;
    Ok(exact
        .search_batch(queries, k)?
        .iter()
        .map(|r| r.iter().map(|n| n.id).collect())
        .collect())
}

fn build(a: BuildArgs) -> Result<()> {
    let start = Instant::now();
    let (vectors, dim, out, default_queries) = if let Some(model_dir) = &a.model {
        if a.kind == Kind::Exact {
            bail!("--model builds an approximate index (models search exactly without one)");
        }
        let saved = SavedModel::load(model_dir)
            .with_context(|| format!("loading model {}", model_dir.display()))?;
        let m = &saved.model;
        let index = m.candidate_index();
        // Tune on the model's own queries: a sample of its users.
        let tokens = m.query.vocab.tokens();
        let users = &tokens[1.min(tokens.len())..]; // not the out-of-vocabulary token
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
        let pick: Vec<String> = sample(&mut rng, users.len(), users.len().min(1000))
            .iter()
            .map(|i| users[i].clone())
            .collect();
        let queries = m.query_vectors(&pick);
        (
            index.vectors().to_vec(),
            m.dim(),
            model_dir.join(INDEX_DIR),
            Some(queries),
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
    if !(0.0..=1.0).contains(&a.target_recall) {
        bail!("--target-recall must be between 0 and 1");
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
    let mut index = AnnIndex::build(&vectors, dim, &opts, &mut |stage| {
        eprintln!("  {stage} ({:.1} s)", start.elapsed().as_secs_f64())
    })?;
    let tuned = match (a.leaves_to_search, a.reorder) {
        (Some(l), Some(r)) => {
            index.set_params(SearchParams {
                leaves_to_search: l,
                reorder: r,
            });
            None
        }
        _ => {
            let queries = match (&a.tune_queries, default_queries) {
                (Some(p), _) => read_queries(p, dim)?.data,
                (None, Some(q)) => q,
                (None, None) => {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed ^ 1);
                    sample(&mut rng, n, n.min(1000))
                        .iter()
                        .flat_map(|i| vectors[i * dim..(i + 1) * dim].iter().copied())
                        .collect()
                }
            };
            eprintln!(
                "  tuning for recall@10 ≥ {} on {} queries ({:.1} s)",
                a.target_recall,
                queries.len() / dim,
                start.elapsed().as_secs_f64()
            );
            let truth = exact_truth(vectors, dim, &queries, 10)?;
            Some(index.tune(&queries, &truth, 10, a.target_recall))
        }
    };
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// This process's resource usage (zero where the platform has no `getrusage`).
#[cfg(unix)]
fn self_usage() -> (i64, f64) {
    // SAFETY: rusage is plain data; getrusage fills it for this process.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    // Linux reports ru_maxrss in KiB.
    (u.ru_minflt, u.ru_maxrss as f64 / 1024.0)
}

#[cfg(not(unix))]
fn self_usage() -> (i64, f64) {
    (0, 0.0)
}

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    self_usage().0
}

fn peak_rss_mib() -> f64 {
    self_usage().1
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
    if gt.rows != q.rows || gt.cols < a.k {
        bail!(
            "{}: shape ({}, {}), expected ({}, ≥{}) for these queries",
            a.truth.display(),
            gt.rows,
            gt.cols,
            q.rows,
            a.k
        );
    }
    if let Some(bad) = gt
        .data
        .iter()
        .position(|&x| x < 0 || x as usize >= index.len())
    {
        bail!(
            "{}: row {} holds id {}, outside 0..{}",
            a.truth.display(),
            bad / gt.cols,
            gt.data[bad],
            index.len()
        );
    }
    let truth: Vec<Vec<u32>> = (0..q.rows)
        .map(|r| gt.row(r)[..a.k].iter().map(|&x| x as u32).collect())
        .collect();
    let d = index.dim();
    if !a.sweep_leaves.is_empty() {
        let Index::Approximate(ann) = &index else {
            bail!("--sweep-leaves applies to approximate indexes only");
        };
        let single_n = a.single_queries.unwrap_or(q.rows).clamp(1, q.rows);
        return sweep(ann, &q.data[..single_n * d], &truth[..single_n], &a);
    }

    // The first query after load against the median of the next 99, each timed alone
    // (a lazily loaded index would show a spike on the first, and page faults).
    let mut first_faults = 0;
    let faults_before = minor_faults();
    let mut lat = Vec::new();
    for (i, row) in q.data.chunks_exact(d).take(100).enumerate() {
        if i == 1 {
            first_faults = minor_faults() - faults_before;
        }
        let t = Instant::now();
        std::hint::black_box(index.search(row, a.k));
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let first_query_us = lat[0];
    let next_queries_us = if lat.len() > 1 {
        median(lat[1..].to_vec())
    } else {
        lat[0]
    };
    let t = Instant::now();
    std::hint::black_box(index.search(q.row(0), a.k));
    let first_again_us = t.elapsed().as_secs_f64() * 1e6;

    let single_n = a.single_queries.unwrap_or(q.rows).clamp(1, q.rows);
    let mut single = Vec::new();
    let mut found: Vec<Vec<Neighbor>> = Vec::new();
    for _ in 0..a.repeats {
        let t = Instant::now();
        found = q.data[..single_n * d]
            .chunks_exact(d)
            .map(|row| index.search(row, a.k))
            .collect();
        single.push(single_n as f64 / t.elapsed().as_secs_f64());
    }
    let single_qps = median(single);
    let mut batch = Vec::new();
    let mut batch_found = Vec::new();
    for _ in 0..a.repeats {
        let t = Instant::now();
        batch_found = index.search_batch(&q.data, a.k)?;
        batch.push(q.rows as f64 / t.elapsed().as_secs_f64());
    }
    let batch_qps = median(batch);
    let recall = twotower_index::recall_at(&batch_found, &truth, a.k);
    let single_recall = twotower_index::recall_at(&found, &truth[..single_n], a.k);
    let threads = rayon::current_num_threads();
    let (kind, build_seconds, params, vector_bytes) = match &index {
        Index::Exact(_) => ("exact", None, None, 0),
        Index::Approximate(x) => (
            "ann",
            Some(x.build_seconds()),
            Some(x.params()),
            x.vector_bytes(),
        ),
    };
    let v = json!({
        "index": a.index,
        "kind": kind,
        "vectors": index.len(),
        "dim": d,
        "queries": q.rows,
        "k": a.k,
        "recall": recall,
        "single_thread_qps": single_qps,
        "single_thread_queries": single_n,
        "single_thread_recall": single_recall,
        "batch_qps": batch_qps,
        "batch_threads": threads,
        "first_query_us": first_query_us,
        "median_next_99_us": next_queries_us,
        "first_query_again_us": first_again_us,
        "first_query_page_faults": first_faults,
        "load_seconds": load_seconds,
        "build_seconds": build_seconds,
        "search": params,
        "index_bytes": index.index_bytes(),
        "vector_bytes": vector_bytes,
        "peak_rss_mib": peak_rss_mib(),
        "repeats": a.repeats,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "index            {} ({kind}, {} × {d})",
        a.index.display(),
        index.len()
    );
    if let Some(p) = params {
        println!(
            "setting          {} leaves to search, re-rank {}",
            p.leaves_to_search, p.reorder
        );
    }
    println!(
        "recall@{:<2}        {recall:.4} over {} queries",
        a.k, q.rows
    );
    println!(
        "single thread    {single_qps:.0} queries/s (one at a time, {single_n} queries, median of {})",
        a.repeats
    );
    println!("batch            {batch_qps:.0} queries/s ({threads} threads)");
    println!(
        "first query      {first_query_us:.0} µs after a {load_seconds:.2} s load with {first_faults} page faults (the same query after 100 others: {first_again_us:.0} µs; median of those: {next_queries_us:.0} µs)"
    );
    if let Some(b) = build_seconds {
        println!("build            {b:.1} s");
    }
    println!(
        "index bytes      {:.1} MB (+{:.1} MB of vectors kept for re-ranking)",
        index.index_bytes() as f64 / 1e6,
        vector_bytes as f64 / 1e6
    );
    println!("peak memory      {:.0} MiB", peak_rss_mib());
    Ok(())
}

/// Single-thread queries per second and recall of every setting of the sweep grid, then
/// the fastest setting at each recall level.
fn sweep(ann: &AnnIndex, queries: &[f32], truth: &[Vec<u32>], a: &BenchArgs) -> Result<()> {
    let d = ann.dim();
    let nq = queries.len() / d;
    let mut rows = Vec::new();
    for &leaves in &a.sweep_leaves {
        for &reorder in &a.sweep_reorder {
            let p = SearchParams {
                leaves_to_search: leaves.clamp(1, ann.leaves()),
                reorder,
            };
            let mut qps = Vec::new();
            let mut found = Vec::new();
            for _ in 0..a.repeats {
                let t = Instant::now();
                found = queries
                    .chunks_exact(d)
                    .map(|row| ann.search_with(row, a.k, &[], p))
                    .collect();
                qps.push(nq as f64 / t.elapsed().as_secs_f64());
            }
            let recall = twotower_index::recall_at(&found, truth, a.k);
            let row = json!({
                "leaves_to_search": p.leaves_to_search,
                "reorder": reorder,
                "recall": recall,
                "single_thread_qps": median(qps),
            });
            if !a.json {
                println!("{row}");
            }
            rows.push(row);
        }
    }
    let best: Vec<serde_json::Value> = [0.90, 0.95, 0.99]
        .iter()
        .map(|&level| {
            let pick = rows
                .iter()
                .filter(|r| r["recall"].as_f64().unwrap_or(0.0) >= level)
                .max_by(|x, y| {
                    let q = |v: &serde_json::Value| v["single_thread_qps"].as_f64().unwrap_or(0.0);
                    q(x).total_cmp(&q(y))
                });
            json!({ "recall_at_least": level, "best": pick })
        })
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "grid": rows, "best": best }))?
        );
    } else {
        for b in &best {
            println!("{b}");
        }
    }
    Ok(())
}

fn synth(a: SynthArgs) -> Result<()> {
    if a.items == 0 || a.dim == 0 || a.queries == 0 {
        bail!("--items, --queries and --dim must be at least 1");
    }
    twotower_folder::check_replaceable(&a.out, &twotower_index::synth::FOLDER)?;
    let start = Instant::now();
    let set = generate(&SynthOptions {
        items: a.items,
        queries: a.queries + a.tune_queries,
        dim: a.dim,
        clusters: a.clusters,
        seed: a.seed,
    });
    let d = a.dim;
    let k = a.truth_k.min(a.items);
    twotower_folder::replace(
        &a.out,
        &twotower_index::synth::FOLDER,
        |tmp| -> Result<()> {
            let (test, tune) = set.queries.split_at(a.queries * d);
            npy::write_f32(&tmp.join("items.npy"), &set.items, a.items, d)?;
            npy::write_f32(&tmp.join("queries.npy"), test, a.queries, d)?;
            npy::write_f32(&tmp.join("tune_queries.npy"), tune, a.tune_queries, d)?;
            eprintln!(
                "generated in {:.1} s; computing the exact top-{} of {} queries",
                start.elapsed().as_secs_f64(),
                a.truth_k,
                a.queries
            );
            let truth = exact_truth(set.items, d, test, k)?;
            let flat: Vec<i32> = truth.iter().flatten().map(|&x| x as i32).collect();
            npy::write_i32(&tmp.join("gt.npy"), &flat, a.queries, k)?;
            let manifest = serde_json::json!({
                "format": twotower_index::synth::FOLDER.format,
                "items": a.items, "queries": a.queries, "tune_queries": a.tune_queries,
                "dim": d, "clusters": a.clusters, "seed": a.seed, "truth_k": k,
            });
            let path = tmp.join(twotower_index::synth::FOLDER.manifest);
            std::fs::write(&path, manifest.to_string())
                .with_context(|| format!("writing {}", path.display()))
        },
        anyhow::Error::from,
    )?;
    println!(
        "wrote {} (items.npy {} × {d}, queries.npy {}, tune_queries.npy {}, gt.npy top-{k}) in {:.1} s",
        a.out.display(),
        a.items,
        a.queries,
        a.tune_queries,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
