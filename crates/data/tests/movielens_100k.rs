//! Reading the real MovieLens 100K files (from `TWOTOWER_DATA_DIR`, default
//! `../shared/data` beside the repository): counts, latin-1 titles, folds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use twotower_data::{Dataset, SplitSpec, FOLDS};

fn ml100k() -> PathBuf {
    let dir = std::env::var_os("TWOTOWER_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let dir = dir.join("ml-100k");
    assert!(
        dir.join("u.data").is_file(),
        "no MovieLens 100K in {}",
        dir.display()
    );
    dir
}

#[test]
fn catalogue_and_ratings() {
    let ml = Dataset::open(ml100k()).unwrap();
    assert_eq!(ml.ratings.len(), 100_000);
    assert_eq!(ml.movies.len(), 1682);
    let titles: HashSet<&str> = ml.movies.iter().map(|m| m.title.as_str()).collect();
    assert_eq!(titles.len(), 1664);
    let m543 = ml.movies.iter().find(|m| m.id == 543).unwrap();
    assert_eq!(m543.title, "Misérables, Les (1995)");
    let star_wars = ml.movies.iter().find(|m| m.id == 50).unwrap();
    assert_eq!(star_wars.title, "Star Wars (1977)");
    assert_eq!(
        star_wars.genres,
        vec!["Action", "Adventure", "Romance", "Sci-Fi", "War"]
    );
    let users: HashSet<u32> = ml.ratings.iter().map(|r| r.user).collect();
    assert_eq!(users.len(), 943);
    // u.user: every rating's user, with age, gender, occupation and zip.
    assert_eq!(ml.users.len(), 943);
    assert!(ml.users.iter().all(|u| users.contains(&u.id)));
    let u1 = ml.users.iter().find(|u| u.id == 1).unwrap();
    assert_eq!((u1.age, u1.gender.as_str()), (24, "M"));
    assert_eq!(
        (u1.occupation.as_str(), u1.zip.as_str()),
        ("technician", "85711")
    );
}

#[test]
fn official_folds_partition_the_ratings() {
    let ml = Dataset::open(ml100k()).unwrap();
    for fold in FOLDS {
        let (train, test) = ml.split(&SplitSpec::Fold(fold.into())).unwrap();
        assert_eq!(train.len() + test.len(), 100_000, "{fold}");
        let a: HashSet<(u32, u32)> = train.iter().map(|r| (r.user, r.item)).collect();
        assert!(
            test.iter().all(|r| !a.contains(&(r.user, r.item))),
            "{fold}"
        );
    }
    let (_, test) = ml.split(&SplitSpec::Fold("ua".into())).unwrap();
    assert_eq!(test.len(), 9430);
}
