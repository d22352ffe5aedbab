//! End-to-end tests of `twotower index`: the synthetic set, building both kinds, search
//! to .npy, the benchmark's recall, clear errors on malformed files, and an approximate
//! index inside a model folder (recommend, eval and serve through it).

mod common;

use std::path::Path;

use common::{fails_with, ok_json, quick_model, run_ok, scratch, Server};
use twotower_index::npy;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `index bench --json` of index `index` on the set in `dir`, with `extra` arguments.
fn bench(dir: &Path, index: &Path, extra: &[&str]) -> serde_json::Value {
    let (q, t) = (dir.join("queries.npy"), dir.join("gt.npy"));
    let mut args = vec!["index", "bench", "--index", s(index), "--queries", s(&q)];
    args.extend_from_slice(&["--truth", s(&t), "--repeats", "1", "--json"]);
    args.extend_from_slice(extra);
    ok_json(&args)
}

/// A small synthetic set: 6,000 × 16, 200 test and 200 tuning queries, top-20 truth.
fn small_set(dir: &Path) {
    run_ok(&[
        "index",
        "synth",
        "--items",
        "6000",
        "--queries",
        "200",
        "--tune-queries",
        "200",
        "--dim",
        "16",
        "--clusters",
        "60",
        "--truth-k",
        "20",
        "--seed",
        "3",
        "--out",
        s(dir),
    ]);
}

#[test]
fn build_search_and_bench_on_npy_files() {
    let dir = scratch("index-cli");
    small_set(&dir);
    let items = npy::read_f32(&dir.join("items.npy")).unwrap();
    assert_eq!((items.rows, items.cols), (6000, 16));
    let gt = npy::read_ids(&dir.join("gt.npy")).unwrap();
    assert_eq!((gt.rows, gt.cols), (200, 20));

    // Exact: recall 1 and the same ids as the ground truth.
    let exact = dir.join("exact");
    run_ok(&[
        "index",
        "build",
        "--kind",
        "exact",
        "--vectors",
        s(&dir.join("items.npy")),
        "--out",
        s(&exact),
    ]);
    let b = bench(&dir, &exact, &[]);
    assert_eq!(b["recall"], 1.0);
    assert_eq!(b["kind"], "exact");

    // Approximate, tuned on the tuning queries: held-out recall near the target.
    let ann = dir.join("ann");
    run_ok(&[
        "index",
        "build",
        "--vectors",
        s(&dir.join("items.npy")),
        "--tune-queries",
        s(&dir.join("tune_queries.npy")),
        "--target-recall",
        "0.95",
        "--out",
        s(&ann),
    ]);
    let b = bench(&dir, &ann, &[]);
    let recall = b["recall"].as_f64().unwrap();
    assert!(recall >= 0.9, "held-out recall@10 {recall}");
    assert!(b["index_bytes"].as_u64().unwrap() * 4 <= 6000 * 16 * 4);
    assert!(b["single_thread_qps"].as_f64().unwrap() > 0.0);

    // Search writes (n, k) int32 ids whose recall matches the bench.
    let ids_path = dir.join("ids.npy");
    run_ok(&[
        "index",
        "search",
        "--index",
        s(&ann),
        "--queries",
        s(&dir.join("queries.npy")),
        "-k",
        "10",
        "--out",
        s(&ids_path),
    ]);
    let ids = npy::read_ids(&ids_path).unwrap();
    assert_eq!((ids.rows, ids.cols), (200, 10));
    let hits: usize = (0..200)
        .map(|r| {
            ids.row(r)
                .iter()
                .filter(|x| gt.row(r)[..10].contains(x))
                .count()
        })
        .sum();
    assert!((hits as f64 / 2000.0 - recall).abs() < 1e-9);
    // Every leaf searched with a large re-rank: exact.
    let all = bench(
        &dir,
        &ann,
        &["--leaves-to-search", "100000", "--reorder", "6000"],
    );
    assert_eq!(all["recall"], 1.0);
}

#[test]
fn malformed_inputs_and_damaged_indexes_are_clear_errors() {
    let dir = scratch("index-bad");
    small_set(&dir);
    let items = dir.join("items.npy");
    let out_dir = dir.join("out");
    let build = |vectors: &Path, needles: &[&str]| {
        fails_with(
            &[
                "index",
                "build",
                "--vectors",
                s(vectors),
                "--out",
                s(&out_dir),
            ],
            needles,
        )
    };
    // Ids given where vectors are expected: the dtype is named.
    build(&dir.join("gt.npy"), &["gt.npy", "dtype \"<i4\""]);
    // A truncated vector file.
    let bytes = std::fs::read(&items).unwrap();
    let cut = dir.join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    build(&cut, &["cut.npy", "truncated"]);
    // Not .npy at all.
    let junk = dir.join("junk.npy");
    std::fs::write(&junk, "id,x\n1,2\n").unwrap();
    build(&junk, &["junk.npy", "not a .npy file"]);
    assert!(!out_dir.exists(), "nothing written on error");

    let ann = dir.join("ann");
    let fixed = ["--leaves-to-search", "5", "--reorder", "50"];
    let mut args = vec!["index", "build", "--vectors", s(&items), "--out", s(&ann)];
    args.extend_from_slice(&fixed);
    run_ok(&args);
    let o = dir.join("o.npy");
    let search = |index: &Path, queries: &Path, needles: &[&str]| {
        let args = [
            "index",
            "search",
            "--index",
            s(index),
            "--queries",
            s(queries),
        ];
        fails_with(&[&args[..], &["--out", s(&o)]].concat(), needles)
    };
    // Queries of another dimension.
    let q8 = dir.join("q8.npy");
    npy::write_f32(&q8, &[0.5; 16], 2, 8).unwrap();
    search(&ann, &q8, &["q8.npy", "dimension 8", "16"]);
    // Truth of the wrong type.
    let queries = dir.join("queries.npy");
    let (i, q) = (s(&ann), s(&queries));
    let t = dir.join("tune_queries.npy");
    let args = [
        "index",
        "bench",
        "--index",
        i,
        "--queries",
        q,
        "--truth",
        s(&t),
    ];
    fails_with(&args, &["tune_queries.npy", "dtype"]);
    // A damaged index file.
    let ids = ann.join("ids.u32");
    let mut b = std::fs::read(&ids).unwrap();
    b[40] ^= 1;
    std::fs::write(&ids, &b).unwrap();
    search(&ann, &queries, &["ids.u32", "checksum"]);
    // No index at all.
    search(&dir.join("none"), &queries, &["index.json"]);
}

#[test]
fn an_approximate_index_in_a_model_folder() {
    let dir = scratch("index-model");
    let model = dir.join("model");
    quick_model(&model);
    fails_with(
        &[
            "recommend",
            "--model",
            s(&model),
            "--user",
            "42",
            "--approximate",
        ],
        &["no approximate index", "index build --model"],
    );
    run_ok(&[
        "index",
        "build",
        "--model",
        s(&model),
        "--target-recall",
        "0.95",
    ]);
    assert!(model.join("index/index.json").is_file());

    let recommend = [
        "recommend",
        "--model",
        s(&model),
        "--user",
        "42",
        "-k",
        "10",
        "--json",
    ];
    let exact = ok_json(&recommend);
    let approx = ok_json(&[&recommend[..], &["--approximate"]].concat());
    let (e, a) = (common::item_ids(&exact), common::item_ids(&approx));
    assert_eq!(a.len(), 10);
    let common = a.iter().filter(|x| e.contains(x)).count();
    assert!(common >= 7, "approximate {a:?} vs exact {e:?}");

    let data = common::data_dir();
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", s(&model), "--split", "u1", "--data-dir"];
        args.push(data.to_str().unwrap());
        args.push("--json");
        args.extend_from_slice(extra);
        ok_json(&args)
    };
    let (me, ma) = (eval(&[]), eval(&["--approximate"]));
    let t = |v: &serde_json::Value, k: &str| v["factorized_top_k"][k].as_f64().unwrap();
    assert!((t(&me, "100") - t(&ma, "100")).abs() < 0.02, "{me} vs {ma}");
    assert!(t(&ma, "100") > 0.1);

    // The server answers approximate=true from the folder's index.
    let server = Server::start(&model);
    let (code, body) = server.get("/v1/recommend?user=42&k=10&approximate=true");
    assert_eq!(code, 200, "{body}");
    let served: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].to_string())
        .collect();
    assert_eq!(served, a);
}
