//! The reliability audit's reproductions, end to end through the binary: the `--out` rule
//! for every command that writes a folder, what a killed run leaves behind, divergence,
//! and bad flags and files. Every case must end in a clear error (exit code 1, `error:`
//! naming the problem) or a correct answer: never a panic, never a lost file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{scratch, tiny_ids, tiny_log, twotower};

fn run(args: &[String]) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    twotower(&refs)
}

/// Expects a clean failure (exit code 1, no panic) whose stderr holds every needle.
fn clean_failure(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "expected exit code 1: {err}");
    assert!(err.contains("error:") && !err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    err
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A folder holding a user's files: `thesis.txt` and `sub/photo.jpg`.
fn users_folder(at: &Path) {
    std::fs::create_dir_all(at.join("sub")).unwrap();
    std::fs::write(at.join("thesis.txt"), "years of work").unwrap();
    std::fs::write(at.join("sub/photo.jpg"), "p").unwrap();
}

fn users_files_intact(at: &Path) {
    assert_eq!(
        std::fs::read_to_string(at.join("thesis.txt")).unwrap(),
        "years of work"
    );
    assert!(at.join("sub/photo.jpg").is_file());
}

/// Names in `dir` that start with a dot (temporary siblings).
fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// `data synth` of a small log with `users` users into `out`.
fn data_synth(out: &str, users: &str) -> Vec<String> {
    s(&[
        "data",
        "synth",
        "--users",
        users,
        "--items",
        "5",
        "--interactions",
        "50",
        "--out",
        out,
    ])
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn out_never_replaces_a_folder_twotower_did_not_write() {
    let tmp = scratch("rel-out");
    let (log, _) = tiny_log(&tmp);
    let p = |n: &str| tmp.join(n).to_str().unwrap().to_string();
    let mine = tmp.join("mine");
    users_folder(&mine);
    std::fs::write(tmp.join("a-file"), "x").unwrap();

    // Each command that writes a folder, pointed at the user's folder, at a file, and at
    // its own input.
    let synth_vectors = s(&[
        "index",
        "synth",
        "--items",
        "300",
        "--queries",
        "5",
        "--tune-queries",
        "5",
        "--dim",
        "8",
        "--out",
    ]);
    let writers: Vec<Vec<String>> = vec![
        tiny_ids(&log, Path::new("OUT")),
        data_synth("OUT", "5"),
        [synth_vectors.clone(), s(&["OUT"])].concat(),
    ];
    for w in &writers {
        for target in [p("mine"), p("a-file")] {
            let args: Vec<String> = w
                .iter()
                .map(|a| {
                    if a == "OUT" {
                        target.clone()
                    } else {
                        a.clone()
                    }
                })
                .collect();
            clean_failure(&run(&args), &["refusing to replace"]);
        }
        users_files_intact(&mine);
    }
    let err = clean_failure(&run(&tiny_ids(&log, &mine)), &[]);
    assert!(err.contains("thesis.txt") && err.contains("sub/"), "{err}");

    // index build: into the user's folder, and into the folder of its own input.
    ok(&run(&[synth_vectors, s(&[&p("vec")])].concat()));
    let items = format!("{}/items.npy", p("vec"));
    for out in [p("mine"), p("vec")] {
        clean_failure(
            &twotower(&["index", "build", "--vectors", &items, "--out", &out]),
            &["refusing to replace"],
        );
    }
    assert!(tmp.join("vec/items.npy").is_file() && tmp.join("vec/gt.npy").is_file());
    // A model's index/ that is not an index folder is refused too.
    ok(&run(&tiny_ids(&log, &tmp.join("model"))));
    users_folder(&tmp.join("model/index"));
    clean_failure(
        &twotower(&["index", "build", "--model", &p("model")]),
        &["refusing to replace", "thesis.txt"],
    );
    users_files_intact(&tmp.join("model/index"));
    // And a model folder holding a stray file is no longer only a model folder.
    std::fs::remove_dir_all(tmp.join("model/index")).unwrap();
    std::fs::write(tmp.join("model/notes.txt"), "mine").unwrap();
    clean_failure(&run(&tiny_ids(&log, &tmp.join("model"))), &["notes.txt"]);
    std::fs::remove_file(tmp.join("model/notes.txt")).unwrap();

    // Their own folders are replaced, whole, with nothing left beside them.
    ok(&run(&tiny_ids(&log, &tmp.join("model"))));
    ok(&twotower(&["index", "build", "--model", &p("model")]));
    ok(&run(&tiny_ids(&log, &tmp.join("model"))));
    for users in ["5", "6"] {
        ok(&twotower(&[
            "index",
            "build",
            "--vectors",
            &items,
            "--out",
            &p("idx"),
        ]));
        ok(&run(&data_synth(&p("syn"), users)));
    }
    assert!(hidden(&tmp).is_empty(), "{:?}", hidden(&tmp));
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// A scratch folder with the tiny log and a model trained on it: `(folder, log, model)`.
fn trained(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let tmp = scratch(name);
    let (log, _) = tiny_log(&tmp);
    let model = tmp.join("m");
    ok(&run(&tiny_ids(&log, &model)));
    (tmp, log, model)
}

#[test]
fn a_killed_run_leaves_the_old_model_and_its_leftovers_are_cleaned() {
    let (tmp, log, model) = trained("rel-kill");
    let before = ok(&twotower(&[
        "recommend",
        "--model",
        model.to_str().unwrap(),
        "--user",
        "3",
    ]));
    // A process killed while writing leaves a half-written sibling; its id is dead.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let dead = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let half = tmp.join(format!(".m.tmp-{dead}-0"));
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join(".twotower-partial"), "").unwrap();
    std::fs::write(half.join("weights.safetensors"), "half").unwrap();
    // The old model is untouched and answers as before.
    let again = ok(&twotower(&[
        "recommend",
        "--model",
        model.to_str().unwrap(),
        "--user",
        "3",
    ]));
    assert_eq!(before, again);
    // The next write cleans the leftover up.
    ok(&run(&tiny_ids(&log, &model)));
    assert!(!half.exists());
    assert!(hidden(&tmp).is_empty(), "{:?}", hidden(&tmp));
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn divergence_is_an_error_and_the_old_model_stays() {
    let (tmp, log, model) = trained("rel-diverge");
    let before = std::fs::read(model.join("weights.safetensors")).unwrap();
    let mut args = tiny_ids(&log, &model);
    args.extend(s(&["--lr", "1e30"]));
    clean_failure(
        &run(&args),
        &["diverged", "epoch 1", "smaller learning rate"],
    );
    assert_eq!(
        std::fs::read(model.join("weights.safetensors")).unwrap(),
        before
    );
    ok(&twotower(&[
        "recommend",
        "--model",
        model.to_str().unwrap(),
        "--user",
        "3",
    ]));
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn bad_flags_are_clear_errors() {
    let (tmp, log, model) = trained("rel-flags");
    let m = model.to_str().unwrap();
    clean_failure(
        &twotower(&["recommend", "--model", m, "--user", "3", "-k", "0"]),
        &["-k must be at least 1"],
    );
    clean_failure(
        &twotower(&["similar", "--model", m, "--item", "1", "-k", "0"]),
        &["-k must be at least 1"],
    );
    let mut args = tiny_ids(&log, &tmp.join("x"));
    args.extend(s(&["--eval-sample", "0"]));
    clean_failure(&run(&args), &["--eval-sample must be at least 1"]);
    let mut args = tiny_ids(&log, &tmp.join("x"));
    args.extend(s(&["--lr", "-1"]));
    clean_failure(&run(&args), &["learning rate must be a positive"]);
    let mut args = tiny_ids(&log, &tmp.join("x"));
    args.extend(s(&["--validation", "1.5"]));
    clean_failure(&run(&args), &["--validation must be a fraction"]);
    // Control bytes from a flag are escaped, never sent raw to the terminal.
    let out = twotower(&["recommend", "--model", m, "--user", "\u{1b}[2J"]);
    let text = ok(&out);
    assert!(
        !text.contains('\u{1b}') && text.contains("\\u{1b}[2J"),
        "{text}"
    );
    // A huge k is cut to the catalogue.
    let text = ok(&twotower(&[
        "recommend",
        "--model",
        m,
        "--user",
        "3",
        "-k",
        "100000000",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 30);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn bad_data_files_are_named_with_their_line() {
    let tmp = scratch("rel-files");
    let (log, items) = tiny_log(&tmp);
    let train = |log: &Path, items: Option<&Path>| {
        let mut a = tiny_ids(log, &tmp.join("never"));
        if let Some(i) = items {
            a.extend(s(&["--items", i.to_str().unwrap()]));
        }
        run(&a)
    };
    #[cfg(unix)]
    clean_failure(
        &train(Path::new("/dev/zero"), None),
        &["/dev/zero", "not a regular file"],
    );
    // A tab inside a title: named with file and line before any training.
    let text = std::fs::read_to_string(&items)
        .unwrap()
        .replace("Item 5,", "Item\t5,");
    let bad = tmp.join("tab.csv");
    std::fs::write(&bad, text).unwrap();
    let err = clean_failure(
        &train(&log, Some(&bad)),
        &["tab.csv:7", "tab or line break"],
    );
    assert!(!err.contains("epoch"), "{err}");
    // A repeated id names both lines.
    let dup = tmp.join("dup.csv");
    std::fs::write(&dup, "item_id,title\n1,A\n2,B\n1,C\n").unwrap();
    clean_failure(
        &train(&log, Some(&dup)),
        &["dup.csv:4", "listed twice (first on line 2)"],
    );
    // A byte-order mark is read past: the same model as without it.
    let with_bom = tmp.join("bom.csv");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(std::fs::read(&log).unwrap());
    std::fs::write(&with_bom, bytes).unwrap();
    let json = |log: &Path| {
        let mut a = tiny_ids(log, &tmp.join("b"));
        a.pop();
        a.pop();
        a.push("--json".into());
        let v: serde_json::Value = serde_json::from_str(&ok(&run(&a))).unwrap();
        (
            v["factorized_top_k"].clone(),
            v["dataset"]["fingerprint"].clone(),
        )
    };
    assert_eq!(json(&with_bom), json(&log));
    assert!(!tmp.join("never").exists());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn bad_vector_files_and_index_flags_are_clear_errors() {
    use twotower_index::npy;
    let tmp = scratch("rel-npy");
    let p = |n: &str| tmp.join(n).to_str().unwrap().to_string();
    let one_col: Vec<f32> = (0..50).map(|i| i as f32).collect();
    npy::write_f32(&tmp.join("one.npy"), &one_col, 50, 1).unwrap();
    clean_failure(
        &twotower(&[
            "index",
            "build",
            "--vectors",
            &p("one.npy"),
            "--out",
            &p("i1"),
        ]),
        &["dimension 2 or more"],
    );
    let v: Vec<f32> = (0..400 * 8)
        .map(|i| ((i * 37) % 101) as f32 / 101.0)
        .collect();
    npy::write_f32(&tmp.join("v.npy"), &v, 400, 8).unwrap();
    clean_failure(
        &twotower(&[
            "index",
            "build",
            "--vectors",
            &p("v.npy"),
            "--out",
            &p("i2"),
            "--subspaces",
            "0",
        ]),
        &["0 subspaces"],
    );
    let mut huge = v.clone();
    huge[9] = 3e38;
    npy::write_f32(&tmp.join("huge.npy"), &huge, 400, 8).unwrap();
    clean_failure(
        &twotower(&[
            "index",
            "build",
            "--vectors",
            &p("huge.npy"),
            "--out",
            &p("i3"),
        ]),
        &["row 1", "too large"],
    );
    ok(&twotower(&[
        "index",
        "build",
        "--vectors",
        &p("v.npy"),
        "--out",
        &p("idx"),
    ]));
    // Empty queries and truth.
    npy::write_f32(&tmp.join("q0.npy"), &[], 0, 8).unwrap();
    npy::write_i32(&tmp.join("t0.npy"), &[], 0, 10).unwrap();
    clean_failure(
        &twotower(&[
            "index",
            "bench",
            "--index",
            &p("idx"),
            "--queries",
            &p("q0.npy"),
            "--truth",
            &p("t0.npy"),
        ]),
        &["holds no queries"],
    );
    // A k beyond the index: the output is as wide as the index, not a gigabyte.
    npy::write_f32(&tmp.join("q.npy"), &v[..3 * 8], 3, 8).unwrap();
    ok(&twotower(&[
        "index",
        "search",
        "--index",
        &p("idx"),
        "--queries",
        &p("q.npy"),
        "-k",
        "100000000",
        "--out",
        &p("ids.npy"),
    ]));
    let ids = npy::read_ids(&tmp.join("ids.npy")).unwrap();
    assert_eq!((ids.rows, ids.cols), (3, 400));
    // A 60 KB header is not echoed whole.
    let mut bad = b"\x93NUMPY\x01\x00".to_vec();
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
        "7, ".repeat(15_000)
    );
    bad.extend((header.len() as u16).to_le_bytes());
    bad.extend(header.as_bytes());
    std::fs::write(tmp.join("bad.npy"), &bad).unwrap();
    let err = clean_failure(
        &twotower(&[
            "index",
            "build",
            "--vectors",
            &p("bad.npy"),
            "--out",
            &p("i4"),
        ]),
        &["bad.npy"],
    );
    assert!(err.len() < 600, "{} bytes: {err}", err.len());
    std::fs::remove_dir_all(&tmp).unwrap();
}
