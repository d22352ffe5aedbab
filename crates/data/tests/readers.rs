//! The MovieLens 1M and CSV-family readers on small fixture files written for these tests
//! (hand-made titles in the real formats, not MovieLens data), and their errors.

use std::path::{Path, PathBuf};

use twotower_data::{Dataset, Format, SplitSpec};

/// The fixture folder `name` under its real file names (`X.fixture` → `X.dat` for the 1M
/// layout, `X.csv` for the CSV layout), in a temporary folder.
fn fixture(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let ext = if name == "ml-1m" { "dat" } else { "csv" };
    // One folder per call: tests run in parallel and must not rewrite each other's files.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tt-fixture-{name}-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        let stem = p.file_stem().unwrap().to_str().unwrap();
        std::fs::copy(&p, dir.join(format!("{stem}.{ext}"))).unwrap();
    }
    dir
}

/// A copy of a fixture folder with one file replaced, for malformed-input cases.
fn with_file(base: &str, file: &str, content: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tt-readers-{base}-{file}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(base)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.join(file), content).unwrap();
    dir
}

fn open_err(dir: &Path) -> String {
    Dataset::open(dir).unwrap_err().to_string()
}

#[test]
fn movielens_1m_reads_latin1_and_genres() {
    let ml = Dataset::open(fixture("ml-1m")).unwrap();
    assert_eq!(ml.format, Format::Ml1m);
    assert_eq!(ml.name(), "movielens-1m");
    assert_eq!(ml.movies.len(), 10);
    assert_eq!(ml.ratings.len(), 30);
    let m7 = ml.movies.iter().find(|m| m.id == 7).unwrap();
    assert_eq!(m7.title, "Misérables, Les (1995)");
    assert_eq!(m7.genres, vec!["Drama", "Musical"]);
    assert_eq!(
        ml.movies[0].genres,
        vec!["Animation", "Children's", "Comedy"]
    );
    // users.dat: `UserID::Gender::Age::Occupation::Zip-code`.
    assert_eq!(ml.users.len(), 6);
    let u3 = ml.users.iter().find(|u| u.id == 3).unwrap();
    assert_eq!((u3.age, u3.gender.as_str()), (35, "F"));
    assert_eq!((u3.occupation.as_str(), u3.zip.as_str()), ("3", "10111"));
}

#[test]
fn csv_family_reads_quoted_titles_and_unicode() {
    let ml = Dataset::open(fixture("ml-latest-small")).unwrap();
    assert_eq!(ml.format, Format::Csv);
    assert_eq!(ml.movies.len(), 8);
    assert_eq!(ml.ratings.len(), 20);
    let title = |id: u32| ml.movies.iter().find(|m| m.id == id).unwrap().title.clone();
    assert_eq!(title(1), "American President, The (1995)");
    assert_eq!(
        title(3),
        "Good, the Bad and the Ugly, The (Buono, il brutto, il cattivo, Il) (1966)"
    );
    assert_eq!(title(4), "千と千尋の神隠し (2001)");
    assert_eq!(title(5), "Lost \"Quotes\" Film, A (2010)");
    assert!(ml
        .movies
        .iter()
        .find(|m| m.id == 5)
        .unwrap()
        .genres
        .is_empty());
    assert!(ml.ratings.iter().any(|r| r.rating == 0.5));
}

#[test]
fn splits_on_other_formats() {
    let ml = Dataset::open(fixture("ml-latest-small")).unwrap();
    let (train, test) = ml.split(&SplitSpec::LastPerUser { n: 1 }).unwrap();
    assert_eq!(test.len(), 5);
    assert_eq!(train.len(), 15);
    for t in &test {
        let later = train
            .iter()
            .filter(|r| r.user == t.user && r.timestamp > t.timestamp)
            .count();
        assert_eq!(later, 0, "test interaction is the user's latest");
    }
    let e = ml
        .split(&SplitSpec::Fold("u1".into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("only in MovieLens 100K"), "{e}");
}

#[test]
fn user_files_are_optional_and_checked() {
    // The CSV family has no user file: no users, no error.
    assert!(Dataset::open(fixture("ml-latest-small"))
        .unwrap()
        .users
        .is_empty());
    let dir = with_file(
        "ml-1m",
        "users.dat",
        b"1::F::18::1::10037\n1::M::25::2::10074\n",
    );
    let e = open_err(&dir);
    assert!(
        e.contains("users.dat:2") && e.contains("user id 1 appears twice"),
        "{e}"
    );
    let dir = with_file("ml-1m", "users.dat", b"1::F::old::1::10037\n");
    let e = open_err(&dir);
    assert!(e.contains("users.dat:1") && e.contains("age"), "{e}");
}

#[test]
fn malformed_rows_name_file_and_line() {
    let d = with_file("ml-1m", "ratings.dat", b"1::1::5::978300760\n1::2::5\n");
    let e = open_err(&d);
    assert!(e.contains("ratings.dat:2") && e.contains("found 3"), "{e}");

    let d = with_file(
        "ml-1m",
        "movies.dat",
        b"1::Toy Town (1995)::Comedy\nx::Bad (1995)::Drama\n",
    );
    let e = open_err(&d);
    assert!(e.contains("movies.dat:2") && e.contains("\"x\""), "{e}");

    let d = with_file(
        "ml-latest-small",
        "ratings.csv",
        b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,4.0\n",
    );
    let e = open_err(&d);
    assert!(e.contains("ratings.csv:3") && e.contains("found 3"), "{e}");

    let d = with_file(
        "ml-latest-small",
        "ratings.csv",
        b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,two,4.0,964982704\n",
    );
    let e = open_err(&d);
    assert!(e.contains("ratings.csv:3") && e.contains("\"two\""), "{e}");

    let d = with_file("ml-latest-small", "ratings.csv", b"user,item\n1,1\n");
    let e = open_err(&d);
    assert!(e.contains("ratings.csv:1") && e.contains("header"), "{e}");

    let d = with_file(
        "ml-latest-small",
        "ratings.csv",
        b"userId,movieId,rating,timestamp\n",
    );
    let e = open_err(&d);
    assert!(e.contains("no records"), "{e}");

    let d = with_file(
        "ml-latest-small",
        "ratings.csv",
        b"userId,movieId,rating,timestamp\n1,99,4.0,964982703\n",
    );
    let e = open_err(&d);
    assert!(e.contains("ratings.csv:1") && e.contains("99"), "{e}");
}
