//! Model folders (and the approximate index inside them) against damage generated here:
//! every file deleted, emptied, truncated, bit-flipped, padded or swapped for another.
//! A load must fail with an error naming the damaged file, or give exactly the saved
//! model; `history.json` alone may be lost with a warning. No case may panic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use twotower_data::Vocabulary;
use twotower_index::{AnnIndex, BuildOptions};
use twotower_model::{
    Catalogue, DatasetInfo, IndexedModel, ModelCard, SavedModel, TrainConfig, TwoTowerModel,
};

fn saved() -> SavedModel {
    let mut cfg = TrainConfig::preset("default").unwrap();
    cfg.embedding_dim = 8;
    let n = 300;
    let catalogue = Catalogue {
        ids: (1..=n).map(|i| i.to_string()).collect(),
        titles: (1..=n).map(|i| format!("Movie {i} (1990)")).collect(),
        genres: (0..n).map(|i| vec![format!("G{}", i % 3)]).collect(),
        release_dates: vec![String::new(); n],
    };
    let users = Vocabulary::from_tokens((1..=40).map(|u| u.to_string()));
    let model = TwoTowerModel::new(cfg, users, catalogue).unwrap();
    let card = ModelCard::describe(&model, DatasetInfo::default(), 0.5);
    SavedModel {
        model,
        card,
        history: vec![],
        warnings: vec![],
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tt-dmodel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Every file below `dir`, as paths relative to it.
fn files(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join(prefix)).unwrap() {
        let e = e.unwrap();
        let rel = format!("{prefix}{}", e.file_name().to_string_lossy());
        if e.file_type().unwrap().is_dir() {
            out.extend(files(dir, &format!("{rel}/")));
        } else {
            out.push(rel);
        }
    }
    out.sort();
    out
}

/// Damaged versions of `good`, labelled; `None` deletes the file.
fn damage(good: &[u8], other: &[u8], rng: &mut ChaCha8Rng) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = vec![
        ("deleted".to_string(), None),
        ("emptied".into(), Some(Vec::new())),
        ("padded".into(), Some([good, b"junk"].concat())),
        ("swapped for another file".into(), Some(other.to_vec())),
    ];
    let mut cuts = vec![1, good.len() / 2, good.len().saturating_sub(1)];
    cuts.retain(|&c| c > 0 && c < good.len());
    cuts.dedup();
    for cut in cuts {
        out.push((format!("truncated at {cut}"), Some(good[..cut].to_vec())));
    }
    for round in 0..6 {
        let mut b = good.to_vec();
        if !b.is_empty() {
            let i = rng.gen_range(0..b.len());
            b[i] ^= 1 << rng.gen_range(0..8);
        }
        out.push((format!("bit flip {round}"), Some(b)));
    }
    out
}

#[test]
fn every_damaged_file_is_named_or_the_model_loads_unchanged() {
    let s = saved();
    let dir = scratch("model");
    s.save(&dir).unwrap();
    let vectors = s.model.candidate_index().vectors().to_vec();
    let opts = BuildOptions {
        leaves: Some(8),
        ..BuildOptions::default()
    };
    AnnIndex::build(&vectors, 8, &opts, &mut |_| {})
        .unwrap()
        .save(&dir.join("index"))
        .unwrap();
    let reference = SavedModel::load(&dir).unwrap();
    assert!(reference.load_index(&dir).unwrap().is_some());
    let all = files(&dir, "");
    assert!(all.len() >= 14, "{all:?}");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut cases = 0;
    for (n, name) in all.iter().enumerate() {
        let path = dir.join(name);
        let good = std::fs::read(&path).unwrap();
        let other = std::fs::read(dir.join(&all[(n + 1) % all.len()])).unwrap();
        for (label, bytes) in damage(&good, &other, &mut rng) {
            match &bytes {
                Some(b) => std::fs::write(&path, b).unwrap(),
                None => std::fs::remove_file(&path).unwrap(),
            }
            let what = format!("{name} {label}");
            let loaded = catch_unwind(AssertUnwindSafe(|| {
                SavedModel::load(&dir).map(|m| {
                    let index = m.load_index(&dir).map(|i| i.is_some());
                    (m, index)
                })
            }))
            .unwrap_or_else(|_| panic!("{what}: loading panicked"));
            // The file's own name, or the index folder's for its arrays.
            let named = |e: &str| {
                let leaf = Path::new(name)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                e.contains(&leaf) || (name.starts_with("index/") && e.contains("index"))
            };
            match loaded {
                Err(e) => assert!(named(&e.to_string()), "{what}: {e}"),
                Ok((m, index)) => {
                    // Loaded: it must be the saved model exactly.
                    let r = &reference.model;
                    let same = m.model.query.embedding() == r.query.embedding()
                        && m.model.candidate.embedding() == r.candidate.embedding()
                        && m.model.catalogue == r.catalogue
                        && m.model.seen == r.seen;
                    assert!(
                        same,
                        "{what}: loaded without an error, but not the saved model"
                    );
                    if name == "history.json" && bytes.as_deref() != Some(&good[..]) {
                        assert!(!m.warnings.is_empty(), "{what}: no warning");
                    }
                    if let Err(e) = index {
                        assert!(named(&e.to_string()), "{what}: {e}");
                    }
                }
            }
            std::fs::write(&path, &good).unwrap();
            cases += 1;
        }
    }
    assert!(cases > 150, "only {cases} cases");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_index_of_other_vectors_is_refused() {
    let s = saved();
    let dir = scratch("foreign");
    s.save(&dir).unwrap();
    // Same shape, other vectors: another model's index.
    let other: Vec<f32> = s
        .model
        .candidate_index()
        .vectors()
        .iter()
        .map(|x| x + 0.25)
        .collect();
    AnnIndex::build(&other, 8, &BuildOptions::default(), &mut |_| {})
        .unwrap()
        .save(&dir.join("index"))
        .unwrap();
    let e = SavedModel::load(&dir)
        .unwrap()
        .load_index(&dir)
        .unwrap_err()
        .to_string();
    assert!(e.contains("other vectors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
