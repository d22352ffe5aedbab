//! Every reader against damaged input it generates itself: empty, truncated, bit-flipped,
//! wrong-typed, oversized and differently encoded copies of a valid file. Each must give a
//! clear error naming the file, or a correct load (a byte-order mark and Windows line ends
//! are read as the plain file); none may panic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use twotower_data::feature_table::{FeatureTable, Side};
use twotower_data::log::{read_items, read_log, LogColumns};
use twotower_data::movielens_1m::{read_movies_dat, read_ratings_dat, read_users_dat};
use twotower_data::movielens_csv::{read_movies_csv, read_ratings_csv};
use twotower_data::{
    parquet_log, read_interactions, read_movies, read_users, Dataset, Interaction,
};

/// A reader under test: reads the file and renders what it loaded, for comparison.
type Reader = fn(&Path) -> Result<String, String>;

fn shown<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> Result<String, String> {
    r.map(|v| format!("{v:?}")).map_err(|e| e.to_string())
}

fn no_columns() -> LogColumns {
    LogColumns {
        user: None,
        item: None,
        time: None,
        title: None,
        items_id: None,
    }
}

const U_DATA: &str = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n";
const U_ITEM: &str =
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n\
2|GoldenEye (1995)|01-Jan-1995||http://y|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n";
const U_USER: &str = "1|31|F|artist|12345\n2|47|M|doctor|54321\n3|19|M|student|11111\n";
const USERS_DAT: &str = "1::F::1::10::12345\n2::M::56::16::54321\n";
const RATINGS_DAT: &str = "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n";
const MOVIES_DAT: &str =
    "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure\n";
const RATINGS_CSV: &str =
    "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n2,1,5.0,964982224\n";
const MOVIES_CSV: &str = "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n3,\"Grumpier Old Men, The (1995)\",Comedy\n";
const LOG_CSV: &str = "user_id,item_id,timestamp\n7,100,1000\n7,101,1005\n8,100,1001\n";
const LOG_TSV: &str = "user_id\titem_id\ttimestamp\n7\t100\t1000\n7\t101\t1005\n8\t100\t1001\n";
const ITEMS_CSV: &str = "item_id,title,genres\n100,Alpha,Drama\n101,Beta,Comedy|Drama\n";
const FEATURES_CSV: &str = "item_id,brand,price\n100,acme,1.5\n101,,2\n";

fn readers() -> Vec<(&'static str, &'static str, Reader)> {
    vec![
        ("u.data", U_DATA, |p| shown(read_interactions(p))),
        ("u.item", U_ITEM, |p| shown(read_movies(p))),
        ("u.user", U_USER, |p| shown(read_users(p))),
        ("users.dat", USERS_DAT, |p| shown(read_users_dat(p))),
        ("ratings.dat", RATINGS_DAT, |p| shown(read_ratings_dat(p))),
        ("movies.dat", MOVIES_DAT, |p| shown(read_movies_dat(p))),
        ("ratings.csv", RATINGS_CSV, |p| shown(read_ratings_csv(p))),
        ("movies.csv", MOVIES_CSV, |p| shown(read_movies_csv(p))),
        ("log.csv", LOG_CSV, |p| {
            shown(read_log(p, None, &no_columns()).map(|l| (l.interactions, l.items)))
        }),
        ("log.tsv", LOG_TSV, |p| {
            shown(read_log(p, None, &no_columns()).map(|l| (l.interactions, l.items)))
        }),
        ("items.csv", ITEMS_CSV, |p| {
            shown(read_items(p, &no_columns()))
        }),
        ("features.csv", FEATURES_CSV, |p| {
            shown(FeatureTable::read(p, Side::Item, None).map(|t| {
                let mut rows: Vec<_> = t.rows.into_iter().collect();
                rows.sort();
                (t.columns, rows)
            }))
        }),
    ]
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tt-damaged-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Damaged copies of `good`, each with a label.
fn damaged(good: &[u8], seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![("empty".to_string(), Vec::new())];
    for cut in (1..good.len()).step_by(5) {
        out.push((format!("truncated at {cut}"), good[..cut].to_vec()));
    }
    for round in 0..40 {
        let mut b = good.to_vec();
        for _ in 0..rng.gen_range(1..=8) {
            let i = rng.gen_range(0..b.len());
            b[i] ^= 1 << rng.gen_range(0..8);
        }
        out.push((format!("bit flips, round {round}"), b));
    }
    let text = String::from_utf8_lossy(good);
    out.push((
        "digits as letters".into(),
        text.replace(['1', '7'], "x").into_bytes(),
    ));
    out.push((
        "a huge number".into(),
        text.replacen('1', &"9".repeat(60), 1).into_bytes(),
    ));
    out.push((
        "a negative id".into(),
        text.replacen('1', "-1", 1).into_bytes(),
    ));
    let mut huge = good.to_vec();
    huge.extend(std::iter::repeat_n(b'7', 2 << 20));
    out.push(("a 2 MB line".into(), huge));
    let utf16: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    out.push(("UTF-16".into(), utf16));
    out.push((
        "control bytes".into(),
        text.replacen('1', "\u{1b}[2J\u{7}", 1).into_bytes(),
    ));
    // Found by the property test below: a header error echoed the header raw.
    out.push((
        "control bytes in the first line".into(),
        [b"\x07\x1b[2J", good].concat(),
    ));
    out.push((
        "binary junk".into(),
        (0..400).map(|_| rng.gen::<u8>()).collect(),
    ));
    out
}

/// Runs `read` on `bytes` written to `path`: `Ok(rendering)`, or the error, which must
/// name the file; a panic fails the test with the case's label.
fn check(read: Reader, path: &Path, bytes: &[u8], label: &str) -> Result<String, String> {
    std::fs::write(path, bytes).unwrap();
    let got = catch_unwind(AssertUnwindSafe(|| read(path)))
        .unwrap_or_else(|_| panic!("{}: {label}: the reader panicked", path.display()));
    if let Err(e) = &got {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            e.contains(&*name),
            "{label}: error does not name the file: {e}"
        );
        assert!(
            !e.contains('\u{1b}') && !e.contains('\u{7}'),
            "{label}: raw control bytes echoed: {e:?}"
        );
        assert!(e.len() < 2000, "{label}: error of {} bytes", e.len());
    }
    got
}

#[test]
fn every_text_reader_survives_generated_damage() {
    let dir = scratch("text");
    let mut cases = 0;
    for (seed, (name, good, read)) in readers().into_iter().enumerate() {
        let path = dir.join(name);
        let want = check(read, &path, good.as_bytes(), "the valid file")
            .unwrap_or_else(|e| panic!("the valid {name} does not load: {e}"));
        // Read as the plain file: a byte-order mark, and Windows line ends.
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(good.as_bytes());
        assert_eq!(
            check(read, &path, &bom, "BOM"),
            Ok(want.clone()),
            "{name} with a BOM"
        );
        let crlf = good.replace('\n', "\r\n");
        assert_eq!(
            check(read, &path, crlf.as_bytes(), "CRLF"),
            Ok(want.clone()),
            "{name} with CRLF"
        );
        for (label, bytes) in damaged(good.as_bytes(), seed as u64) {
            let _ = check(read, &path, &bytes, &format!("{name}: {label}"));
            cases += 1;
        }
    }
    assert!(cases > 400, "only {cases} cases");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parquet_logs_survive_generated_damage() {
    let dir = scratch("parquet");
    let path = dir.join("log.parquet");
    let rows: Vec<Interaction> = (0..300)
        .map(|i| Interaction {
            user: i % 17,
            item: i % 29,
            rating: 1.0,
            timestamp: i as i64,
        })
        .collect();
    parquet_log::write(&path, &rows).unwrap();
    let good = std::fs::read(&path).unwrap();
    // The same file as a log and as a feature table keyed by its time (every column read
    // as text).
    let log: Reader = |p| shown(read_log(p, None, &no_columns()).map(|l| l.interactions));
    let table: Reader = |p| {
        shown(
            FeatureTable::read(p, Side::User, Some("timestamp")).map(|t| {
                let mut rows: Vec<_> = t.rows.into_iter().collect();
                rows.sort();
                (t.columns, rows)
            }),
        )
    };
    let want = check(log, &path, &good, "the valid file").unwrap();
    assert!(want.contains("timestamp: 299"));
    let want_table = check(table, &path, &good, "the valid file").unwrap();
    assert!(want_table.contains("299, (300"), "{want_table}");
    let mut wrong = 0;
    for (label, bytes) in damaged(&good, 99) {
        // Parquet has no checksum over its pages: a flipped data byte may decode to other
        // values. It must never be a panic, and the shape must stay sound.
        for (read, want) in [(log, &want), (table, &want_table)] {
            if let Ok(got) = check(read, &path, &bytes, &label) {
                wrong += usize::from(&got != want);
            }
        }
    }
    eprintln!("{wrong} damaged Parquet files decoded to other values without an error");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn folders_and_devices_are_refused_by_name() {
    let dir = scratch("special");
    for (_, _, read) in readers() {
        let e = read(&dir).unwrap_err();
        assert!(e.contains("is a folder"), "{e}");
        #[cfg(unix)]
        {
            let e = read(Path::new("/dev/zero")).unwrap_err();
            assert!(
                e.contains("/dev/zero") && e.contains("not a regular file"),
                "{e}"
            );
        }
    }
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(e.contains(&*dir.to_string_lossy()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // 64 cases a run (a fresh draw each time); PROPTEST_CASES=N for a longer search.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
        ))]

        /// Any bytes at all: a load or an error naming the file, never a panic.
        #[test]
        fn any_bytes_give_a_load_or_a_named_error(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let dir = scratch("prop");
            for (name, _, read) in readers() {
                let _ = check(read, &dir.join(name), &bytes, "arbitrary bytes");
            }
        }

        /// Valid u.data rows round-trip whatever their values.
        #[test]
        fn u_data_rows_round_trip(rows in proptest::collection::vec((any::<u32>(), any::<u32>(), 0u8..=5, any::<i32>()), 1..50)) {
            let dir = scratch("prop-rt");
            let text: String = rows.iter().map(|(u, i, r, t)| format!("{u}\t{i}\t{r}\t{t}\n")).collect();
            let path = dir.join("u.data");
            std::fs::write(&path, text).unwrap();
            let got = read_interactions(&path).unwrap();
            prop_assert_eq!(got.len(), rows.len());
            for (g, (u, i, r, t)) in got.iter().zip(&rows) {
                prop_assert_eq!((g.user, g.item, g.rating, g.timestamp), (*u, *i, *r as f32, *t as i64));
            }
        }
    }
}
