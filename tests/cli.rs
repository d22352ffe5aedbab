//! End-to-end tests of the `twotower` binary on the real MovieLens 100K folds.
//!
//! They read `TWOTOWER_DATA_DIR` (default: `../shared/data` beside the repository).

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    data_dir, fails_with, item_ids, ok_json, run_ok, scratch, tiny_log, tiny_train, twotower,
};
use serde_json::Value;

fn top(v: &Value, k: &str) -> f64 {
    v["factorized_top_k"][k].as_f64().unwrap()
}

/// One epoch on u1 into model folder `out`, with `extra` flags.
fn train_u1_once(data: &str, out: &str, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--split",
        "u1",
        "--epochs",
        "1",
        "--data-dir",
        data,
        "--out",
        out,
        "--show-user",
        "",
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
}

/// A fresh scratch folder `name` holding the tower spec `towers.toml` of `text`.
fn spec_in(name: &str, text: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let tmp = scratch(name);
    let spec = tmp.join("towers.toml");
    std::fs::write(&spec, text).unwrap();
    (tmp, spec)
}

/// User `user`'s movies in `u1.base` as (time, movie id), by time (ties by id).
fn u1_base_of(data: &str, user: &str) -> Vec<(i64, u32)> {
    let base = std::fs::read_to_string(Path::new(data).join("ml-100k/u1.base")).unwrap();
    let mut seen: Vec<(i64, u32)> = base
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f[0] == user)
        .map(|f| (f[3].parse().unwrap(), f[1].parse().unwrap()))
        .collect();
    seen.sort_unstable();
    seen
}

/// `recommend --json` of `user`'s top `k` from `model`, with `extra` flags.
fn recommend_json(model: &str, user: &str, k: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "recommend",
        "--model",
        model,
        "--user",
        user,
        "-k",
        k,
        "--json",
    ];
    args.extend_from_slice(extra);
    ok_json(&args)
}

/// `recommend` of user 42's top 3 from the saved `model`: the training run `r` showed the
/// same 3 (returned).
fn same_top3(model: &str, r: &Value) -> Value {
    let rec = recommend_json(model, "42", "3", &[]);
    assert_eq!(rec["known_user"], true);
    assert_eq!(rec["items"], r["recommendations"]["items"]);
    assert_eq!(rec["items"].as_array().unwrap().len(), 3);
    rec
}

/// `eval` of the saved `model` on u1 gives the training run `r`'s figures under `keys`.
fn eval_matches(model: &str, data: &str, r: &Value, keys: &[&str]) {
    let e = ok_json(&[
        "eval",
        "--model",
        model,
        "--split",
        "u1",
        "--data-dir",
        data,
        "--json",
    ]);
    for key in keys {
        assert_eq!(e[key], r[key], "{key}");
    }
}

#[test]
fn tfrs_preset_on_u1_trains_saves_reloads_and_answers() {
    let data = data_dir();
    let data = data.to_str().unwrap();
    let tmp = scratch("tfrs");
    let model = tmp.join("model");
    let model = model.to_str().unwrap();
    let r = ok_json(&[
        "train",
        "--preset",
        "tfrs",
        "--split",
        "u1",
        "--data-dir",
        data,
        "--out",
        model,
        "--json",
    ]);
    // Parity band of ANCHORS.md around TFRS on u1 (top-10 0.0210, top-100 0.2258).
    assert!((top(&r, "10") - 0.0210).abs() <= 0.005, "{r}");
    assert!((top(&r, "100") - 0.2258).abs() <= 0.02, "{r}");
    // Popularity on u1 is deterministic: the anchors' figures.
    assert!((top(&r["popularity"], "10") - 0.0449).abs() < 5e-5, "{r}");
    assert!((top(&r["popularity"], "100") - 0.2968).abs() < 5e-5, "{r}");
    assert_eq!(r["test_interactions"], 20000);
    assert_eq!(r["dataset"]["train_interactions"], 80000);
    assert_eq!(r["history"].as_array().unwrap().len(), 3);
    for key in ["recall", "ndcg", "train_seconds"] {
        assert!(!r[key].is_null(), "{key} missing");
    }

    // Reloading gives identical metrics.
    eval_matches(
        model,
        data,
        &r,
        &["factorized_top_k", "recall", "popularity"],
    );

    // Recommendations: sorted, titles, and the same as the training run's.
    let rec = same_top3(model, &r);
    let items = rec["items"].as_array().unwrap();
    let scores: Vec<f64> = items.iter().map(|i| i["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // Excluding seen items drops every movie user 42 rated in u1.base.
    let seen: Vec<String> = u1_base_of(data, "42")
        .iter()
        .map(|(_, m)| m.to_string())
        .collect();
    assert!(seen.len() > 20);
    let rec = recommend_json(model, "42", "50", &["--exclude-seen"]);
    let ids: Vec<String> = rec["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 50);
    assert!(ids.iter().all(|i| !seen.contains(i)));

    // Unknown users are answered from the OOV vector, and say so.
    let rec = ok_json(&[
        "recommend",
        "--model",
        model,
        "--user",
        "no-such-user",
        "--json",
    ]);
    assert_eq!(rec["known_user"], false);
    assert_eq!(rec["items"].as_array().unwrap().len(), 10);

    // Similar movies by title and by id, never the movie itself.
    let sim = ok_json(&[
        "similar",
        "--model",
        model,
        "--item",
        "Star Wars (1977)",
        "--json",
    ]);
    assert_eq!(sim["item"]["id"], "50");
    let sims = sim["items"].as_array().unwrap();
    assert_eq!(sims.len(), 5);
    assert!(sims.iter().all(|i| i["id"] != "50"));
    let by_id = ok_json(&["similar", "--model", model, "--item", "50", "--json"]);
    assert_eq!(by_id["items"], sim["items"]);
    fails_with(
        &["similar", "--model", model, "--item", "star wars"],
        &["no movie", "Star Wars (1977)"],
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn default_preset_beats_popularity_after_a_few_epochs() {
    let data = data_dir();
    let r = ok_json(&[
        "train",
        "--split",
        "u2",
        "--epochs",
        "5",
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    for k in ["10", "50", "100"] {
        assert!(top(&r, k) > top(&r["popularity"], k), "top-{k}: {r}");
    }
    let against = &r["factorized_top_k_ties_against"];
    assert!((top(&r, "100") - against["100"].as_f64().unwrap()).abs() < 1e-3);
}

/// Feature towers from a spec: users' features and history, items' genres and title; the
/// model beats popularity after a few epochs, is saved as format 2, evaluates from its
/// folder to the same figures and recommends. A spec with a mistake names its line.
#[test]
fn feature_towers_train_evaluate_and_save() {
    let data = data_dir();
    let data = data.to_str().unwrap();
    let (tmp, spec) = spec_in(
        "towers",
        "[query]\nlayers = [32]\nfeatures = [\n  { kind = \"id\", column = \"user_id\", dim = 32 },\n  \
         { kind = \"categorical\", column = \"occupation\", dim = 4 },\n  \
         { kind = \"history\", last = 20, dim = 16 },\n]\n[candidate]\nlayers = [32]\n\
         features = [\n  { kind = \"id\", column = \"item_id\", dim = 32 },\n  \
         { kind = \"multi\", column = \"genres\", dim = 8 },\n  \
         { kind = \"text\", column = \"title\", dim = 8 },\n]\n",
    );
    let model = tmp.join("model");
    let (spec, model) = (spec.to_str().unwrap(), model.to_str().unwrap());
    let r = ok_json(&[
        "train",
        "--towers",
        spec,
        "--split",
        "u1",
        "--epochs",
        "3",
        "--eval-every-epoch",
        "--data-dir",
        data,
        "--out",
        model,
        "--json",
    ]);
    for k in ["10", "50", "100"] {
        assert!(top(&r, k) > top(&r["popularity"], k), "top-{k}: {r}");
    }
    assert_eq!(r["history"].as_array().unwrap().len(), 3);
    // Each epoch was evaluated; the last is the final model.
    assert_eq!(
        r["history"][2]["metrics"]["factorized_top_k"],
        r["factorized_top_k"]
    );
    assert!(r["history"][0]["metrics"]["recall"]["20"].is_number());
    let card: Value =
        serde_json::from_slice(&std::fs::read(tmp.join("model/model.json")).unwrap()).unwrap();
    assert_eq!(card["format_version"], 2);
    assert!(card["towers"].as_str().unwrap().contains("history"));
    // The saved model evaluates to the training run's figures, and answers.
    eval_matches(model, data, &r, &["factorized_top_k", "recall", "ndcg"]);
    let recs = recommend_json(model, "1", "7", &["--exclude-seen"]);
    assert_eq!(recs["known_user"], true);
    assert_eq!(recs["items"].as_array().unwrap().len(), 7);
    // Training showed user 42's top 3 now, as `recommend` gives them.
    same_top3(model, &r);
    let similar = ok_json(&["similar", "--model", model, "--item", "50", "--json"]);
    assert_eq!(similar["item"]["title"], "Star Wars (1977)");
    assert_eq!(similar["items"].as_array().unwrap().len(), 5);
    fails_with(
        &["recommend", "--model", model, "--user", "x1"],
        &["not an integer id"],
    );
    // No approximate index until one is built; then recommend searches it.
    fails_with(
        &[
            "recommend",
            "--model",
            model,
            "--user",
            "1",
            "--approximate",
        ],
        &["no approximate index", "index build --model"],
    );
    run_ok(&["index", "build", "--model", model]);
    let approx = recommend_json(model, "1", "7", &["--exclude-seen", "--approximate"]);
    let (exact_ids, approx_ids) = (item_ids(&recs), item_ids(&approx));
    let common = approx_ids.iter().filter(|i| exact_ids.contains(i)).count();
    assert!(common >= 5, "{approx_ids:?} against {exact_ids:?}");
    // Evaluation through the index: no better than exact, better than popularity; an index
    // that searches every leaf and re-ranks every movie returns the exact top lists, so the
    // same figures.
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            model,
            "--split",
            "u1",
            "--data-dir",
            data,
        ];
        args.push("--json");
        args.extend_from_slice(extra);
        ok_json(&args)
    };
    let exact = eval(&[]);
    let metric = |v: &Value, key: &str, k: &str| v[key][k].as_f64().unwrap();
    let approx = eval(&["--approximate"]);
    for (key, k) in [
        ("factorized_top_k", "100"),
        ("recall", "20"),
        ("ndcg", "10"),
    ] {
        let (e, a) = (metric(&exact, key, k), metric(&approx, key, k));
        let p = metric(&exact["popularity"], key, k);
        assert!(
            a <= e + 0.005 && a > p,
            "{key}@{k}: {a} through the index, {e} exact, {p} popularity"
        );
    }
    let all = [
        "--leaves",
        "8",
        "--leaves-to-search",
        "8",
        "--reorder",
        "1682",
    ];
    run_ok(&[&["index", "build", "--model", model][..], &all].concat());
    let through_all = eval(&["--approximate"]);
    for (key, k) in [
        ("factorized_top_k", "10"),
        ("factorized_top_k", "100"),
        ("recall", "20"),
        ("ndcg", "10"),
    ] {
        let (e, a) = (metric(&exact, key, k), metric(&through_all, key, k));
        assert!(
            (a - e).abs() < 1e-3,
            "{key}@{k}: {a} through a full search, {e} exact"
        );
    }
    let bad = tmp.join("bad.toml");
    std::fs::write(&bad, "[query]\nfeatures = [\n  { kind = \"id\", column = \"user\", dim = 8 },\n]\n[candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 8 }]\n").unwrap();
    fails_with(
        &[
            "train",
            "--towers",
            bad.to_str().unwrap(),
            "--data-dir",
            data,
        ],
        &["bad.toml:3", "no column \"user\""],
    );
    // A budget of examples and a sample of the test side, as for id towers.
    let r = ok_json(&[
        "train",
        "--towers",
        spec,
        "--eval-sample",
        "500",
        "--max-examples",
        "3000",
        "--data-dir",
        data,
        "--show-user",
        "",
        "--json",
    ]);
    assert_eq!(r["test_interactions"], 500);
    assert_eq!(r["eval_sample"]["of"], 20000);
    assert_eq!(r["max_examples"], 3000);
    assert_eq!(r["history"].as_array().unwrap().len(), 1);
}

/// A new user described by the movies they watched (`recommend --history`): with a tower
/// that reads only the history, a training user's own movies in time order give the same
/// list as `--user`; unknown ids are skipped with a warning; an id model refuses.
#[test]
fn a_new_user_is_answered_from_their_history() {
    let data = data_dir();
    let data = data.to_str().unwrap();
    let (tmp, spec) = spec_in(
        "visitor",
        "[query]\nfeatures = [{ kind = \"history\", last = 5, dim = 16 }]\n\
         [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 16 }]\n",
    );
    let model = tmp.join("m");
    let model = model.to_str().unwrap();
    train_u1_once(data, model, &["--towers", spec.to_str().unwrap()]);
    // User 42's u1.base movies by time (ties by id, as the model orders them).
    let history: Vec<String> = u1_base_of(data, "42")
        .iter()
        .map(|(_, m)| m.to_string())
        .collect();
    let history = history.join(",");
    let by_user = recommend_json(model, "42", "10", &["--exclude-seen"]);
    let mut args = vec!["recommend", "--model", model, "--history", &history];
    args.extend(["-k", "10", "--exclude-seen", "--json"]);
    let by_history = ok_json(&args);
    assert_eq!(by_history["items"], by_user["items"]);
    assert_eq!(by_history["known_user"], false);
    let out = run_ok(&["recommend", "--model", model, "--history", "50,99999,181"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("99999") && err.contains("skipped"), "{err}");
    // This tower reads no user feature, so a described one is an error naming it.
    let with_features = |f: &str| {
        fails_with(
            &[
                "recommend",
                "--model",
                model,
                "--history",
                "50",
                "--features",
                f,
            ],
            &[if f.contains('=') {
                "feature \"age\": the query tower reads no such user feature"
            } else {
                "--features: \"age\" is not name=value"
            }],
        )
    };
    with_features("age=25");
    with_features("age");
    // No known id: the most popular movies of training (u1.base: 50, 181, 258), said so.
    let out = run_ok(&[
        "recommend",
        "--model",
        model,
        "--history",
        "99999",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("none of its ids") && err.contains("most popular"),
        "{err}"
    );
    let popular: Value = serde_json::from_slice(&out.stdout).unwrap();
    let first: Vec<&str> = (0..3)
        .map(|i| popular["items"][i]["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["50", "181", "258"]);
    let ids = tmp.join("ids");
    train_u1_once(data, ids.to_str().unwrap(), &["--preset", "ids"]);
    fails_with(
        &[
            "recommend",
            "--model",
            ids.to_str().unwrap(),
            "--history",
            "50",
        ],
        &["id model"],
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn random_split_and_explicit_files() {
    let data = data_dir();
    let data = data.to_str().unwrap();
    let r = ok_json(&[
        "train",
        "--preset",
        "tfrs",
        "--epochs",
        "1",
        "--split",
        "random",
        "--test-fraction",
        "0.2",
        "--split-seed",
        "42",
        "--data-dir",
        data,
        "--json",
    ]);
    assert_eq!(r["dataset"]["train_interactions"], 80000);
    assert_eq!(r["test_interactions"], 20000);
    let ml = Path::new(data).join("ml-100k");
    let r = ok_json(&[
        "train",
        "--preset",
        "tfrs",
        "--epochs",
        "1",
        "--data-dir",
        data,
        "--json",
        "--train",
        ml.join("ua.base").to_str().unwrap(),
        "--test",
        ml.join("ua.test").to_str().unwrap(),
    ]);
    assert_eq!(r["test_interactions"], 9430);
    let r = ok_json(&[
        "--threads",
        "1",
        "train",
        "--preset",
        "tfrs",
        "--epochs",
        "1",
        "--data-dir",
        data,
        "--eval-sample",
        "5000",
        "--json",
    ]);
    assert_eq!(r["test_interactions"], 5000);
    assert_eq!(r["eval_sample"]["of"], 20000);
    fails_with(
        &["--threads", "0", "train", "--data-dir", data],
        &["--threads"],
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let data = data_dir();
    let data = data.to_str().unwrap();
    let tmp = scratch("bad");
    let bad = tmp.join("bad.data");
    std::fs::write(&bad, "1\t1\t5\t874965758\n1\t2\t3\t876893171\n1\t3\n").unwrap();
    let bad = bad.to_str().unwrap();
    fails_with(
        &["train", "--data-dir", data, "--train", bad, "--test", bad],
        &["bad.data:3", "expected 4 tab-separated fields"],
    );
    let unknown = tmp.join("unknown.data");
    std::fs::write(&unknown, "1\t99999\t5\t874965758\n").unwrap();
    fails_with(
        &[
            "train",
            "--data-dir",
            data,
            "--train",
            unknown.to_str().unwrap(),
            "--test",
            bad,
        ],
        &["unknown.data:1", "99999", "not in the catalogue"],
    );
    fails_with(
        &["train", "--data-dir", tmp.to_str().unwrap()],
        &["--data-dir", "ml-100k"],
    );
    fails_with(
        &["train", "--data-dir", data, "--split", "u9"],
        &["--split", "u1"],
    );
    fails_with(
        &["train", "--data-dir", data, "--preset", "fast"],
        &["unknown preset"],
    );
    fails_with(
        &["train", "--data-dir", data, "--lr=-1"],
        &["learning rate"],
    );
    fails_with(
        &["recommend", "--model", tmp.to_str().unwrap(), "--user", "1"],
        &["not a model folder"],
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn without_data_or_network_the_main_job_says_how_to_use_a_local_copy() {
    let tmp = scratch("offline");
    let out = Command::new(env!("CARGO_BIN_EXE_twotower"))
        .args(["train", "--preset", "tfrs"])
        .env_remove("TWOTOWER_DATA_DIR")
        .env("XDG_CACHE_HOME", &tmp)
        .env("HOME", &tmp)
        // Nothing listens on port 9 of loopback: the same failure as no network, at once.
        .env("TWOTOWER_ML100K_URL", "http://127.0.0.1:9/ml-100k.zip")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data-dir") && err.contains("TWOTOWER_DATA_DIR"),
        "{err}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn other_movielens_layouts_and_temporal_splits() {
    // The data crate's fixtures, under their real file names (see its fixtures/README.md).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/data/tests/fixtures");
    let tmp = scratch("fixtures");
    for (folder, ext) in [("ml-1m", "dat"), ("ml-latest-small", "csv")] {
        std::fs::create_dir_all(tmp.join(folder)).unwrap();
        for stem in ["ratings", "movies"] {
            let from = src.join(folder).join(format!("{stem}.fixture"));
            std::fs::copy(from, tmp.join(folder).join(format!("{stem}.{ext}"))).unwrap();
        }
    }
    let fixtures = tmp.to_str().unwrap();
    let r = ok_json(&[
        "train",
        "--dataset",
        "movielens-latest-small",
        "--data-dir",
        fixtures,
        "--split",
        "last",
        "--n",
        "1",
        "--preset",
        "tfrs",
        "--batch-size",
        "8",
        "--json",
    ]);
    assert_eq!(r["test_interactions"], 5);
    assert_eq!(r["dataset"]["train_interactions"], 15);
    let r = ok_json(&[
        "train",
        "--dataset",
        "movielens-1m",
        "--data-dir",
        fixtures,
        "--split",
        "time",
        "--before",
        "978303000",
        "--json",
    ]);
    let total = r["test_interactions"].as_u64().unwrap()
        + r["dataset"]["train_interactions"].as_u64().unwrap();
    assert_eq!(total, 30);
    fails_with(
        &[
            "train",
            "--dataset",
            "movielens-1m",
            "--data-dir",
            fixtures,
            "--split",
            "time",
        ],
        &["--before"],
    );
    fails_with(
        &[
            "train",
            "--dataset",
            "movielens-1m",
            "--data-dir",
            fixtures,
            "--split",
            "u1",
        ],
        &["only in MovieLens 100K"],
    );
}

#[test]
fn a_model_beats_popularity_on_a_synthetic_log() {
    let tmp = scratch("synth");
    let out = tmp.join("log");
    let out = out.to_str().unwrap();
    let made = twotower(&[
        "data",
        "synth",
        "--users",
        "1000",
        "--items",
        "500",
        "--interactions",
        "60000",
        "--seed",
        "3",
        "--out",
        out,
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let r = ok_json(&[
        "train",
        "--dataset",
        "movielens-csv",
        "--data-dir",
        out,
        "--split",
        "last",
        "--n",
        "5",
        "--epochs",
        "3",
        "--json",
    ]);
    for k in ["10", "100"] {
        assert!(top(&r, k) > top(&r["popularity"], k) + 0.02, "top-{k}: {r}");
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_log_takes_its_split_from_files() {
    // --interactions gives the users and the catalogue, --train/--test the split (as
    // bench/als_reference.py --split-out writes it, so both score the same rows).
    let tmp = scratch("log-files");
    let mut log = String::from("user,item\n");
    let (mut train, mut test) = (String::new(), String::new());
    for u in 1..=30u32 {
        for k in 0..6u32 {
            let item = 1 + (u * 7 + k * 3) % 40;
            log.push_str(&format!("{u},{item}\n"));
            let side = if k == 5 { &mut test } else { &mut train };
            side.push_str(&format!("{u}\t{item}\t1\t0\n"));
        }
    }
    let items: String = std::iter::once("id,title\n".to_string())
        .chain((1..=40).map(|i| format!("{i},item {i}\n")))
        .collect();
    for (name, text) in [
        ("log.csv", &log),
        ("items.csv", &items),
        ("train.tsv", &train),
        ("test.tsv", &test),
        ("bad.tsv", &"1\t2\t1\t0\n1\t99\t1\t0\n".to_string()),
    ] {
        std::fs::write(tmp.join(name), text).unwrap();
    }
    let path = |n: &str| tmp.join(n).to_str().unwrap().to_string();
    let (log, items, train, test, bad) = (
        path("log.csv"),
        path("items.csv"),
        path("train.tsv"),
        path("test.tsv"),
        path("bad.tsv"),
    );
    let args = |test: &str| {
        [
            "train",
            "--preset",
            "ids",
            "--epochs",
            "1",
            "--interactions",
            &log,
            "--items",
            &items,
            "--train",
            &train,
            "--test",
            test,
            "--show-user",
            "",
            "--json",
        ]
        .map(String::from)
    };
    let good = args(&test);
    let v = ok_json(&good.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(v["dataset"]["test_interactions"].as_u64(), Some(30), "{v}");
    assert_eq!(
        v["dataset"]["train_interactions"].as_u64(),
        Some(150),
        "{v}"
    );
    let wrong = args(&bad);
    fails_with(
        &wrong.iter().map(String::as_str).collect::<Vec<_>>(),
        &["bad.tsv:2:", "item id 99 is not in the catalogue"],
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn bench_train_reports_throughput_time_and_memory() {
    let data = data_dir();
    let mut args = vec!["bench", "train", "--runs", "1", "--json", "--"];
    args.extend_from_slice(&common::QUICK_TFRS);
    args.extend_from_slice(&["--data-dir", data.to_str().unwrap()]);
    let v = ok_json(&args);
    for field in [
        "median_examples_per_second",
        "median_epoch_seconds",
        "median_peak_rss_mib",
        "median_wall_seconds",
        "median_product_gflops_per_second",
        "median_product_share_of_epoch",
    ] {
        let x = v[field].as_f64().unwrap_or(0.0);
        assert!(x > 0.0, "{field} = {x} in {v}");
    }
    // One epoch of u1.base's 80,000 examples cannot take longer than the whole run.
    assert!(
        v["median_epoch_seconds"].as_f64().unwrap() <= v["median_wall_seconds"].as_f64().unwrap()
    );
}

#[test]
fn bench_train_compares_thread_counts_in_interleaved_runs() {
    // One run per count: the medians and ratios themselves are checked on units in
    // `twotower_model::bench`; this checks that the command wires them up.
    let data = data_dir();
    let mut args = vec![
        "bench",
        "train",
        "--runs",
        "1",
        "--compare-threads",
        "1,2",
        "--json",
        "--",
    ];
    args.extend_from_slice(&common::QUICK_TFRS);
    args.extend_from_slice(&["--data-dir", data.to_str().unwrap()]);
    let v = ok_json(&args);
    let by = v["by_threads"].as_array().expect("by_threads");
    assert_eq!(by.len(), 2, "{v}");
    for (k, threads) in [(0, 1), (1, 2)] {
        assert_eq!(by[k]["threads"], threads, "{v}");
        assert!(
            by[k]["median_examples_per_second"].as_f64().unwrap() > 0.0,
            "{v}"
        );
        assert_eq!(
            by[k]["examples_per_second_runs"].as_array().unwrap().len(),
            1
        );
        assert_eq!(by[k]["pair_ratios"].as_array().unwrap().len(), 1);
    }
    assert_eq!(by[0]["examples_per_second_over_first"], 1.0);
    common::fails_with(
        &[
            "bench",
            "train",
            "--compare-threads",
            "1,0",
            "--",
            "--preset",
            "tfrs",
        ],
        &["--compare-threads", "at least 1"],
    );
}

#[test]
fn fit_evaluates_each_epoch_stops_at_the_budget_and_carves_validation() {
    let tmp = scratch("fit");
    let (log, _) = common::tiny_log(&tmp);
    let run = |extra: &[&str]| {
        let mut args = common::tiny_train(&log, &tmp.join("m"));
        // Only the report: drop `--out DIR`; id towers.
        args.truncate(args.len() - 2);
        args.extend(["--preset", "ids"].map(String::from));
        args.push("--json".into());
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok_json(&refs)
    };
    let r = run(&["--eval-every-epoch"]);
    let history = r["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert!(history
        .iter()
        .all(|h| h["metrics"]["factorized_top_k"]["10"].is_number()));
    // 320 interactions, 80% train: a budget of 200 examples ends training in epoch 1.
    let r = run(&["--max-examples", "200"]);
    assert_eq!(r["history"].as_array().unwrap().len(), 1);
    assert!(r["history"][0].get("metrics").is_none());
    let r = run(&["--validation", "0.25"]);
    let split = r["dataset"]["split"].as_str().unwrap();
    assert!(
        split.ends_with("training side, validation fraction 0.25"),
        "{split}"
    );
    assert_eq!(r["test_interactions"], 64);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// A generic log with `--user-features` and `--item-features`: the spec declares the
/// files' columns with their kinds, the model trains, and the folder keeps the columns.
/// A log without time takes only a history of the user's other items. Mistakes name the
/// spec's line or the file's.
#[test]
fn generic_logs_take_feature_files_declared_in_the_spec() {
    let tmp = scratch("feature-files");
    let (log, _) = tiny_log(&tmp);
    let items = tmp.join("item_features.csv");
    let mut text = String::from("item_id,shelf,price\n");
    for i in 0..30 {
        text.push_str(&format!("{i},S{},{}.25\n", i % 4, i));
    }
    std::fs::write(&items, text).unwrap();
    let users = tmp.join("user_features.tsv");
    let mut text = String::from("user_id\tregion\n");
    for u in 0..40 {
        text.push_str(&format!("{u}\tR{}\n", u % 3));
    }
    std::fs::write(&users, text).unwrap();
    let spec = tmp.join("towers.toml");
    std::fs::write(
        &spec,
        "[user_columns]\nregion = \"categorical\"\n[item_columns]\nshelf = \"categorical\"\n\
         price = \"number\"\n[query]\nfeatures = [\n  { kind = \"id\", column = \"user_id\", dim = 8 },\n  \
         { kind = \"categorical\", column = \"region\", dim = 4 },\n  \
         { kind = \"history\", from = \"others\", dim = 4 },\n]\n[candidate]\nfeatures = [\n  \
         { kind = \"id\", column = \"item_id\", dim = 8 },\n  \
         { kind = \"categorical\", column = \"shelf\", dim = 4 },\n  \
         { kind = \"numeric\", column = \"price\", buckets = 4, dim = 3 },\n]\n",
    )
    .unwrap();
    let model = tmp.join("m");
    let mut args = tiny_train(&log, &model);
    let extra = [
        "--towers",
        spec.to_str().unwrap(),
        "--user-features",
        users.to_str().unwrap(),
        "--item-features",
        items.to_str().unwrap(),
        "--json",
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = ok_json(&refs);
    assert!(top(&r, "100") > 0.0, "{r}");
    let saved = std::fs::read_to_string(model.join("item_features.tsv")).unwrap();
    // Columns in name order.
    assert!(
        saved.starts_with("id\tprice\tshelf\n0\t0.25\tS0\n"),
        "{saved}"
    );
    assert!(model.join("user_features.tsv").exists());
    // A declared column the file lacks: the spec's line. A bad number: the file's line.
    let bad_spec = tmp.join("bad.toml");
    std::fs::write(
        &bad_spec,
        std::fs::read_to_string(&spec)
            .unwrap()
            .replace("price = \"number\"", "cost = \"number\"")
            .replace("column = \"price\"", "column = \"cost\""),
    )
    .unwrap();
    let mut bad = refs.clone();
    let at = bad.iter().position(|a| *a == "--towers").unwrap() + 1;
    bad[at] = bad_spec.to_str().unwrap();
    fails_with(&bad, &["bad.toml:3", "\"cost\"", "item_features.csv"]);
    std::fs::write(&items, "item_id,shelf,price\n0,S0,cheap\n").unwrap();
    fails_with(&refs, &["item_features.csv:2", "cheap"]);
    // Without time, only the history of the other items; the past one is refused.
    let past = tmp.join("past.toml");
    std::fs::write(
        &past,
        "[query]\nfeatures = [{ kind = \"history\", dim = 8 }]\n\
         [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 8 }]\n",
    )
    .unwrap();
    let untimed = tmp.join("untimed.csv");
    let text = std::fs::read_to_string(&log).unwrap();
    let text: String = text
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    std::fs::write(&untimed, text).unwrap();
    let mut args = tiny_train(&untimed, &tmp.join("m2"));
    args.extend(["--towers".to_string(), past.to_str().unwrap().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    fails_with(&refs, &["past.toml:2", "from = \"others\""]);
    // The default preset's towers follow the data: a past history when the log has times,
    // the other items when it has none; `--dim` is for id towers.
    for (log, m, from) in [(&log, "d1", "past"), (&untimed, "d2", "others")] {
        let args = tiny_train(log, &tmp.join(m));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok(&refs);
        let card: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tmp.join(m).join("model.json")).unwrap())
                .unwrap();
        assert_eq!(card["format_version"], 2);
        let towers = card["towers"].as_str().unwrap();
        let want = std::fs::read_to_string(format!(
            "towers/{}-history.toml",
            if from == "past" {
                "movielens"
            } else {
                "lastfm"
            }
        ))
        .unwrap();
        assert_eq!(towers, want);
        let mut with_dim = refs.clone();
        with_dim.extend(["--dim", "16"]);
        fails_with(&with_dim, &["--dim", "--preset ids"]);
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// `train --split SPLIT --json` on MovieLens 100K with `extra` arguments, nobody's list shown.
fn train_split_json(data: &str, split: &str, extra: &[&str]) -> Value {
    let mut args = vec!["train", "--split", split, "--data-dir", data];
    args.extend(["--show-user", "", "--json"]);
    args.extend_from_slice(extra);
    ok_json(&args)
}

/// `--split cold-items`: a fifth of the items held out entirely; the cold-item metrics
/// come with their baselines. Ids alone know nothing of a cold item; genres and a history
/// place it.
#[test]
fn cold_items_are_ranked_by_what_is_known_of_them() {
    let data = data_dir();
    let data = data.to_str().unwrap();
    let (_tmp, spec) = spec_in(
        "cold",
        "[query]\nfeatures = [{ kind = \"history\", last = 10, dim = 16 }]\n\
         [candidate]\nfeatures = [{ kind = \"multi\", column = \"genres\", dim = 16 }]\n",
    );
    let run = |extra: &[&str]| train_split_json(data, "cold-items", extra);
    let ids = run(&["--preset", "ids", "--epochs", "1"]);
    let cold = &ids["cold_items"];
    // 20% of the 1,682 rated movies.
    assert_eq!(cold["candidates"], 336);
    assert_eq!(cold["popularity"]["auc"], 0.5);
    let auc = |v: &Value| v["auc"].as_f64().unwrap();
    assert!((auc(&cold["model"]) - 0.5).abs() < 0.1, "{cold}");
    assert_eq!(ids["auc"], cold["model"]["auc"]);
    let genre_match = auc(&cold["genre_match"]);
    assert!(genre_match > 0.6, "{cold}");
    let content = run(&["--towers", spec.to_str().unwrap(), "--epochs", "2"]);
    assert!(auc(&content) > 0.6, "{}", content["cold_items"]);
    assert!(auc(&content) > auc(&cold["model"]) + 0.1);
    // Training never saw a cold item, so the popularity baseline ranks none of them.
    assert_eq!(content["popularity"]["factorized_top_k"]["100"], 0.0);
    fails_with(
        &[
            "train",
            "--split",
            "cold-items",
            "--cold-fraction",
            "1.5",
            "--data-dir",
            data,
        ],
        &["--cold-fraction"],
    );
}

/// `--split cold-users`: a fifth of the users held out, each given their first 5
/// interactions; the item-kNN baseline is scored from those, and a history tower reads
/// them (ids alone know nothing of these users).
#[test]
fn cold_users_are_answered_from_their_first_interactions() {
    let data = data_dir();
    let data = data.to_str().unwrap();
    let (_tmp, spec) = spec_in(
        "cold-users",
        "[query]\nfeatures = [{ kind = \"history\", last = 5, dim = 16 }]\n\
         [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 16 }]\n",
    );
    let run = |extra: &[&str]| train_split_json(data, "cold-users", extra);
    let ids = run(&["--preset", "ids", "--epochs", "1"]);
    // 20% of the 943 users; their first 5 interactions are not test ones.
    assert_eq!(ids["test_users"], 189);
    let recall = |v: &Value| v["recall"]["20"].as_f64().unwrap();
    let knn = &ids["item_knn"];
    assert!(recall(knn) > recall(&ids["popularity"]), "{knn}");
    let history = run(&["--towers", spec.to_str().unwrap(), "--epochs", "2"]);
    assert_eq!(history["item_knn"], ids["item_knn"]);
    assert!(
        recall(&history) > 2.0 * recall(&ids),
        "{} vs {}",
        recall(&history),
        recall(&ids)
    );
    // Trained on what a new user gives (their first movies), not on the movies before
    // each example, the history tower ranks a new user's later movies above popularity.
    let (_tmp2, first) = spec_in(
        "cold-users-first",
        "[query]\nfeatures = [{ kind = \"history\", from = \"first\", last = 5, within = 10, \
         dim = 16 }]\n[candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 16 }]\n",
    );
    let first = run(&["--towers", first.to_str().unwrap(), "--epochs", "2"]);
    let top100 = |v: &Value| v["factorized_top_k"]["100"].as_f64().unwrap();
    assert!(
        top100(&first) > top100(&history) + 0.03 && top100(&first) > top100(&ids["popularity"]),
        "first {} past {} popularity {}",
        top100(&first),
        top100(&history),
        top100(&ids["popularity"])
    );
    fails_with(
        &[
            "eval",
            "--model",
            "m",
            "--split",
            "cold-users",
            "--data-dir",
            data,
        ],
        &["--split cold-users", "twotower train"],
    );
    let given = run(&["--preset", "ids", "--epochs", "1", "--history", "10"]);
    assert_eq!(
        given["test_interactions"].as_u64().unwrap() + 5 * 189,
        ids["test_interactions"].as_u64().unwrap()
    );
}

/// `embed`: items training never saw, added to a copy of a feature model from their
/// features; the items it had keep their vectors, and the new ones can be recommended,
/// compared and named in a new user's history.
#[test]
fn new_items_are_embedded_from_their_features() {
    let tmp = scratch("embed");
    let (m, m2) = (common::tiny_feature_model(&tmp), tmp.join("m2"));
    let new = tmp.join("new.csv");
    std::fs::write(
        &new,
        "item_id,title,genres\n100,New One,G1\n101,New Two,G2|G3\n",
    )
    .unwrap();
    let (m, m2, new) = (
        m.to_str().unwrap(),
        m2.to_str().unwrap(),
        new.to_str().unwrap(),
    );
    let r = ok_json(&["embed", "--model", m, "--items", new, "--out", m2, "--json"]);
    assert_eq!(
        (r["added"].as_u64(), r["catalogue_rows"].as_u64()),
        (Some(2), Some(32))
    );
    let all = |model: &str| {
        let v = ok_json(&[
            "recommend",
            "--model",
            model,
            "--user",
            "3",
            "-k",
            "40",
            "--json",
        ]);
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().unwrap().to_string(),
                    i["score"].as_f64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let (before, after) = (all(m), all(m2));
    assert_eq!((before.len(), after.len()), (30, 32));
    for (id, score) in &before {
        let again = after.iter().find(|(i, _)| i == id).map(|(_, s)| *s);
        assert_eq!(again, Some(*score), "item {id}");
    }
    assert!(after.iter().any(|(i, _)| i == "100") && after.iter().any(|(i, _)| i == "101"));
    let sim = ok_json(&[
        "similar", "--model", m2, "--item", "100", "-k", "3", "--json",
    ]);
    assert_eq!(sim["items"].as_array().unwrap().len(), 3);
    let visitor = ok_json(&["recommend", "--model", m2, "--history", "100,3", "--json"]);
    assert_eq!(visitor["items"].as_array().unwrap().len(), 10);
    // Mistakes: an id the model has, the model itself as --out, an id model.
    let dup = tmp.join("dup.csv");
    std::fs::write(&dup, "item_id,title\n3,Again\n").unwrap();
    let m3 = tmp.join("m3");
    let (dup, m3) = (dup.to_str().unwrap(), m3.to_str().unwrap());
    fails_with(
        &["embed", "--model", m, "--items", dup, "--out", m3],
        &["item id 3 is already"],
    );
    fails_with(
        &["embed", "--model", m, "--items", new, "--out", m],
        &["not --model itself"],
    );
    std::fs::create_dir_all(tmp.join("ids")).unwrap();
    let ids = common::tiny_model(&tmp.join("ids"));
    fails_with(
        &[
            "embed",
            "--model",
            ids.to_str().unwrap(),
            "--items",
            new,
            "--out",
            m3,
        ],
        &["id model"],
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn an_explicit_regime_works_on_a_large_catalogue() {
    // Over 4,096 items the presets train in-batch with logQ; `--negatives full` is a full
    // softmax without it, and `--logq false` keeps in-batch without it.
    let tmp = scratch("regime");
    let out = tmp.join("log");
    let out = out.to_str().unwrap();
    run_ok(&[
        "data",
        "synth",
        "--users",
        "300",
        "--items",
        "5000",
        "--interactions",
        "6000",
        "--seed",
        "5",
        "--out",
        out,
    ]);
    // `train` on the log with `extra` flags.
    let on_log = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--dataset",
            "movielens-csv",
            "--data-dir",
            out,
            "--split",
            "random",
            "--show-user",
            "",
            "--json",
        ];
        args.extend_from_slice(extra);
        ok_json(&args)
    };
    let train = |extra: &[&str]| on_log(&[&["--preset", "ids", "--epochs", "1"], extra].concat());
    let regime = |v: &Value| {
        let c = &v["config"];
        (
            c["negatives"].as_str().unwrap_or("").to_string(),
            c["logq_correction"].as_bool(),
            c["batch_size"].as_u64(),
        )
    };
    let auto = train(&[]);
    assert_eq!(
        regime(&auto),
        ("in-batch".into(), Some(true), Some(512)),
        "{auto}"
    );
    let full = train(&["--negatives", "full"]);
    assert_eq!(
        regime(&full),
        ("full".into(), Some(false), Some(1024)),
        "{full}"
    );
    assert!(top(&full, "100") > 0.0, "{full}");
    let plain = train(&["--logq", "false"]);
    assert_eq!(
        regime(&plain),
        ("in-batch".into(), Some(false), Some(512)),
        "{plain}"
    );
    // Asking for logQ with a full softmax is a contradiction, named as such.
    fails_with(
        &[
            "train",
            "--preset",
            "ids",
            "--dataset",
            "movielens-csv",
            "--data-dir",
            out,
            "--negatives",
            "full",
            "--logq",
        ],
        &["in-batch negatives only"],
    );
    // The default preset answers a large catalogue with id towers that ALS fits (no
    // softmax epochs), well above popularity; choosing a regime by hand keeps its softmax.
    let als = on_log(&[]);
    let c = &als["config"];
    assert_eq!(c["warm_start"]["iterations"].as_u64(), Some(15), "{als}");
    // 64 fine columns beside 16 coarse ones, whose weight was chosen on held-out pairs and
    // is recorded.
    assert_eq!(
        (c["epochs"].as_u64(), c["embedding_dim"].as_u64()),
        (Some(0), Some(80))
    );
    let weight = c["warm_start"]["coarse"]["weight"].as_f64();
    assert!(
        weight.is_some_and(|w| [0.0, 0.25, 0.5, 0.75, 1.0].contains(&w)),
        "{c}"
    );
    let fine_only = on_log(&["--als-coarse-dim", "0"]);
    assert_eq!(fine_only["config"]["embedding_dim"].as_u64(), Some(64));
    assert!(fine_only["config"]["warm_start"].get("coarse").is_none());
    let pop = als["popularity"]["factorized_top_k"]["100"]
        .as_f64()
        .unwrap();
    assert!(
        top(&als, "100") > pop + 0.05,
        "ALS {} against popularity {pop}",
        top(&als, "100")
    );
    // Chosen by hand, a regime keeps its softmax epochs over the default feature towers,
    // which start from their own ALS warm start.
    let softmax = on_log(&["--negatives", "in-batch", "--epochs", "1"]);
    let c = &softmax["config"];
    assert_eq!(
        (c["epochs"].as_u64(), c["warm_start"]["iterations"].as_u64()),
        (Some(1), Some(8)),
        "{softmax}"
    );
    assert!(softmax["warm_start_gflop"].as_f64().unwrap() > 0.0);
    // A spec with a text feature facing the history still warm-starts its ids; towers with
    // dense layers cannot (their ids do not meet in the dot product), and say so.
    let text = on_log(&[
        "--towers",
        concat!(env!("CARGO_MANIFEST_DIR"), "/towers/lastfm-text.toml"),
        "--als-iterations",
        "3",
        "--epochs",
        "1",
    ]);
    assert_eq!(text["config"]["warm_start"]["iterations"].as_u64(), Some(3));
    let deep = tmp.join("deep.toml");
    std::fs::write(
        &deep,
        "[query]\nlayers = [8]\nfeatures = [{ kind = \"id\", column = \"user_id\", dim = 8 }]\n\
         [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 8 }]\n",
    )
    .unwrap();
    fails_with(
        &[
            "train",
            "--dataset",
            "movielens-csv",
            "--data-dir",
            out,
            "--split",
            "random",
            "--towers",
            deep.to_str().unwrap(),
            "--als-iterations",
            "3",
        ],
        &["ALS warm start", "dense layers"],
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn bench_quality_alternates_with_another_command() {
    let data = data_dir();
    let against = r#"echo '{"factorized_top_k": {"10": 0.05, "100": 0.25}}'"#;
    let mut args = vec![
        "bench",
        "quality",
        "--runs",
        "2",
        "--against",
        against,
        "--json",
        "--",
    ];
    args.extend_from_slice(&common::QUICK_TFRS);
    args.extend_from_slice(&["--data-dir", data.to_str().unwrap()]);
    let v = ok_json(&args);
    assert_eq!(v["runs"], 2, "{v}");
    assert!(v["twotower"]["top100"].as_f64().unwrap() > 0.05, "{v}");
    assert!(v["twotower"]["examples"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["other"]["top100"], 0.25, "{v}");
    assert_eq!(
        v["wall_ratio_runs"].as_array().map(Vec::len),
        Some(2),
        "{v}"
    );
    // A command that prints no metrics is an error naming it.
    let mut args = vec!["bench", "quality", "--runs", "1", "--against", "true", "--"];
    args.extend_from_slice(&common::QUICK_TFRS);
    args.extend_from_slice(&["--data-dir", data.to_str().unwrap()]);
    fails_with(&args, &["`true`", "JSON"]);
}

#[test]
fn embed_needs_a_candidate_tower_that_reads_more_than_the_id() {
    let tmp = scratch("embed-ids-only");
    let items = tiny_log(&tmp).1;
    let m = common::train_tiny_towers(
        &tmp,
        "[query]\nfeatures = [\n  { kind = \"id\", column = \"user_id\", dim = 8 },\n  \
         { kind = \"history\", last = 5, dim = 8 },\n]\n[candidate]\nfeatures = [\n  \
         { kind = \"id\", column = \"item_id\", dim = 16 },\n]\n",
        &["--items", items.to_str().unwrap()],
    );
    let new = tmp.join("new.csv");
    std::fs::write(&new, "item_id,title\n100,New One\n101,New Two\n").unwrap();
    let out = tmp.join("m2");
    fails_with(
        &[
            "embed",
            "--model",
            m.to_str().unwrap(),
            "--items",
            new.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &["reads only the item id", "same vector"],
    );
    assert!(!out.exists());
    // `--items-id-col`, which errors suggest, is a spelling `embed` takes.
    let help = twotower(&[
        "embed",
        "--model",
        "x",
        "--items",
        "y",
        "--out",
        "z",
        "--items-id-col",
        "id",
    ]);
    assert!(!String::from_utf8_lossy(&help.stderr).contains("unexpected argument"));
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_visitor_of_only_new_items_is_answered_by_popularity() {
    let tmp = scratch("embed-new-visitor");
    let (m, m2) = (common::tiny_feature_model(&tmp), tmp.join("m2"));
    let new = tmp.join("new.csv");
    std::fs::write(&new, "item_id,title,genres\n100,New One,G1\n").unwrap();
    let (m, m2, new) = (
        m.to_str().unwrap(),
        m2.to_str().unwrap(),
        new.to_str().unwrap(),
    );
    run_ok(&["embed", "--model", m, "--items", new, "--out", m2]);
    let out = twotower(&["recommend", "--model", m2, "--history", "100", "--json"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("most popular"));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let scores: Vec<f64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["score"].as_f64().unwrap())
        .collect();
    // Training counts (each tiny item has several), best first: not scores of 0.
    assert!(scores.iter().all(|&s| s >= 1.0), "not counts: {scores:?}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // A trained item beside the new one: the model answers.
    let out = twotower(&["recommend", "--model", m2, "--history", "100,3", "--json"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("most popular"));
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn visitor_features_must_be_meaningful_and_go_with_a_history() {
    let tmp = scratch("visitor-features");
    let m = common::tiny_age_model(&tmp);
    let m = m.to_str().unwrap();
    fails_with(
        &[
            "recommend",
            "--model",
            m,
            "--history",
            "1,2",
            "--features",
            "age=3e38",
        ],
        &["age", "3e38", "outside"],
    );
    ok_json(&[
        "recommend",
        "--model",
        m,
        "--history",
        "1,2",
        "--features",
        "age=40",
        "--json",
    ]);
    fails_with(
        &[
            "recommend",
            "--model",
            m,
            "--user",
            "3",
            "--features",
            "age=40",
        ],
        &["--features", "--user"],
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn tower_specs_that_ask_for_too_much_are_clear_errors() {
    let tmp = scratch("spec-sizes");
    let (log, _) = tiny_log(&tmp);
    let spec = tmp.join("towers.toml");
    let cases: [(&str, &[&str]); 6] = [
        (
            "{ kind = \"id\", column = \"user_id\", dim = 1000000000 }",
            &["dim", "limit"],
        ),
        (
            "{ kind = \"categorical\", column = \"user_id\", dim = 8, hash_bins = 1099511627776 }",
            &["hash_bins", "limit"],
        ),
        (
            "{ kind = \"timestamp\", buckets = 1000000000000, dim = 8 }",
            &["buckets", "limit"],
        ),
        (
            "{ kind = \"id\", column = \"user_id\", dim = 9223372036854775807 }",
            &["dim", "limit"],
        ),
        (
            "{ kind = \"history\", last = 100000000, dim = 8 }",
            &["last", "limit"],
        ),
        (
            "{ kind = \"id\", column = \"user_id\", dim = 8 }]\nlayers = [100000000",
            &["layer"],
        ),
    ];
    for (feature, needles) in cases {
        std::fs::write(
            &spec,
            format!(
                "[query]\nfeatures = [\n  {feature}]\n[candidate]\nfeatures = [\n  \
                 {{ kind = \"id\", column = \"item_id\", dim = 8 }},\n]\n"
            ),
        )
        .unwrap();
        let m = tmp.join("m");
        let mut args = tiny_train(&log, &m);
        args.extend(["--towers", spec.to_str().unwrap()].map(String::from));
        let out = twotower(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(1), "{feature}");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{feature}: {err}");
        }
        assert!(err.contains("towers.toml:"), "{feature}: no line: {err}");
    }
    // Not UTF-8: the error names the line.
    std::fs::write(&spec, b"[query]\nfeatures = []\n# caf\xe9\n").unwrap();
    let m = tmp.join("m");
    let mut args = tiny_train(&log, &m);
    args.extend(["--towers", spec.to_str().unwrap()].map(String::from));
    fails_with(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &["towers.toml:3", "UTF-8"],
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_killed_index_build_does_not_block_the_next_train() {
    let tmp = scratch("killed-index-build");
    let (log, _) = tiny_log(&tmp);
    let m = tmp.join("m");
    let args = tiny_train(&log, &m);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&args);
    // What `index build --model m` leaves when killed: its half-written sibling of m/index.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let half = m.join(format!(".index.tmp-{dead}-0"));
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join(".twotower-partial"), "").unwrap();
    std::fs::write(half.join("codes.u8"), "half").unwrap();
    run_ok(&args);
    assert!(!half.exists());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn feature_file_columns_named_like_movielens_fields_train_save_and_load() {
    let tmp = scratch("feature-files-ml-names");
    let users = tmp.join("user_features.csv");
    let mut text = String::from("user_id,age,zip,occupation\n");
    for u in 0..40 {
        text.push_str(&format!("{u},{},Z{},O{}\n", 20 + u % 7, u % 3, u % 5));
    }
    std::fs::write(&users, text).unwrap();
    let items = tmp.join("item_features.csv");
    let mut text = String::from("item_id,genres,year\n");
    for i in 0..30 {
        text.push_str(&format!("{i},G{}|H{},{}\n", i % 4, i % 2, 1990 + i));
    }
    std::fs::write(&items, text).unwrap();
    let m = common::train_tiny_towers(
        &tmp,
        "[user_columns]\nage = \"number\"\nzip = \"categorical\"\noccupation = \"categorical\"\n\
         [item_columns]\ngenres = \"multi\"\nyear = \"number\"\n[query]\nfeatures = [\n  \
         { kind = \"id\", column = \"user_id\", dim = 8 },\n  \
         { kind = \"numeric\", column = \"age\", buckets = 3, dim = 2 },\n  \
         { kind = \"categorical\", column = \"zip\", dim = 4 },\n  \
         { kind = \"categorical\", column = \"occupation\", dim = 4 },\n]\n\
         [candidate]\nfeatures = [\n  { kind = \"id\", column = \"item_id\", dim = 11 },\n  \
         { kind = \"multi\", column = \"genres\", dim = 4 },\n  \
         { kind = \"numeric\", column = \"year\", buckets = 3, dim = 3 },\n]\n",
        &[
            "--user-features",
            users.to_str().unwrap(),
            "--item-features",
            items.to_str().unwrap(),
        ],
    );
    // The saved folder loads back, and the files' values were read (not a constant).
    let saved = std::fs::read_to_string(m.join("user_features.tsv")).unwrap();
    assert!(saved.contains("Z1") && saved.contains("O4"), "{saved}");
    ok_json(&[
        "recommend",
        "--model",
        m.to_str().unwrap(),
        "--user",
        "3",
        "--json",
    ]);
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("model.json")).unwrap()).unwrap();
    let zip_tokens = card["inputs"]["query"][2]["tokens"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        zip_tokens, 3,
        "zip read as a constant: {}",
        card["inputs"]["query"][2]
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
