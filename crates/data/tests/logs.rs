//! Generic interaction logs (`--interactions`): CSV and TSV with and without headers,
//! column names and positions, catalogues, malformed rows, and a Parquet round trip.

use std::path::PathBuf;

use twotower_data::log::{read_log, LogColumns};
use twotower_data::{parquet_log, Dataset, Format, Interaction, SplitSpec};

/// A file with `content` under a fresh temporary folder.
fn file(name: &str, content: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tt-logs-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn cols(user: &str, item: &str, time: Option<&str>) -> LogColumns {
    LogColumns {
        user: Some(user.into()),
        item: Some(item.into()),
        time: time.map(Into::into),
        title: None,
        items_id: None,
    }
}

fn triples(rows: &[Interaction]) -> Vec<(u32, u32, i64)> {
    rows.iter().map(|r| (r.user, r.item, r.timestamp)).collect()
}

const CSV_LOG: &str = "\
session,visitor,article,ts,extra
a,7,100,1000,x
b,7,101,1005,y
c,8,100,1001,z
d,9,102,999.75,w
";

#[test]
fn csv_with_named_columns_and_fractional_times() {
    let p = file("clicks.csv", CSV_LOG);
    let log = read_log(&p, None, &cols("visitor", "article", Some("ts"))).unwrap();
    assert!(log.has_time);
    assert_eq!(
        triples(&log.interactions),
        vec![
            (7, 100, 1000),
            (7, 101, 1005),
            (8, 100, 1001),
            (9, 102, 999)
        ]
    );
    assert!(log.interactions.iter().all(|r| r.rating == 1.0));
    // Without a catalogue, one item per id seen, titled by it.
    let titles: Vec<&str> = log.items.iter().map(|m| m.title.as_str()).collect();
    assert_eq!(titles, vec!["item 100", "item 101", "item 102"]);
}

#[test]
fn common_column_names_are_found_without_flags() {
    let p = file(
        "log.csv",
        "user_id,movieId,rating,timestamp\n1,10,4,50\n2,11,3,40\n",
    );
    let log = read_log(&p, None, &LogColumns::default()).unwrap();
    assert!(log.has_time);
    assert_eq!(triples(&log.interactions), vec![(1, 10, 50), (2, 11, 40)]);
}

#[test]
fn tsv_without_header_uses_positions() {
    // u.data layout: user, item, rating, time; no header, so columns are positions.
    let p = file("u.tsv", "1\t10\t5\t300\n2\t10\t3\t200\n2\t12\t4\t100\n");
    let log = read_log(&p, None, &cols("0", "1", Some("3"))).unwrap();
    assert_eq!(
        triples(&log.interactions),
        vec![(1, 10, 300), (2, 10, 200), (2, 12, 100)]
    );
    // Defaults without a header: user 0, item 1, no time.
    let log = read_log(&p, None, &LogColumns::default()).unwrap();
    assert!(!log.has_time);
    assert_eq!(log.interactions[2].item, 12);
    // A name cannot be looked up without a header.
    let err = read_log(&p, None, &cols("user", "1", None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no header row"), "{err}");
}

#[test]
fn the_delimiter_is_sniffed_for_other_extensions() {
    let p = file("log.txt", "user;item\n3;30\n4;40\n");
    let log = read_log(&p, None, &LogColumns::default()).unwrap();
    assert_eq!(triples(&log.interactions), vec![(3, 30, 0), (4, 40, 0)]);
}

#[test]
fn catalogue_titles_quotes_and_unknown_items() {
    let items = file(
        "items.csv",
        "article,name,genres\n100,\"Hello, World\",News|Tech\n101,Café Ünïcode,\n102,Plain,Sport\n",
    );
    let p = file("clicks.csv", CSV_LOG);
    let c = LogColumns {
        title: Some("name".into()),
        ..cols("visitor", "article", Some("ts"))
    };
    let log = read_log(&p, Some(&items), &c).unwrap();
    assert_eq!(log.items[0].title, "Hello, World");
    assert_eq!(log.items[0].genres, vec!["News", "Tech"]);
    assert_eq!(log.items[1].title, "Café Ünïcode");
    // An item the catalogue lacks is an error naming the log's line.
    let short = file("items.csv", "article,name\n100,A\n101,B\n");
    let err = read_log(&p, Some(&short), &c).unwrap_err().to_string();
    assert!(err.contains("clicks.csv:5:"), "{err}");
    assert!(err.contains("item id 102 is not in the catalogue"), "{err}");
    // A catalogue listing an id twice is refused.
    let twice = file("items.csv", "article,name\n100,A\n100,B\n101,C\n102,D\n");
    let err = read_log(&p, Some(&twice), &c).unwrap_err().to_string();
    assert!(
        err.contains("items.csv:3: item id 100 is listed twice"),
        "{err}"
    );
}

#[test]
fn malformed_rows_are_named() {
    let c = cols("user", "item", Some("time"));
    let cases = [
        (
            "user,item,time\n1,2,3\nx,2,3\n",
            "log.csv:3:",
            "user id \"x\"",
        ),
        (
            "user,item,time\n1,2,3\n1,-2,3\n",
            "log.csv:3:",
            "item id \"-2\"",
        ),
        (
            "user,item,time\n1,2,3\n1,2,noon\n",
            "log.csv:3:",
            "not a Unix timestamp",
        ),
        (
            "user,item,time\n1,2,3\n1,2\n",
            "log.csv:3:",
            "expected 3 fields",
        ),
        (
            "user,item,time\n1,2,3\n4294967296,2,3\n",
            "log.csv:3:",
            "below 2^32",
        ),
    ];
    for (content, at, what) in cases {
        let p = file("log.csv", content);
        let err = read_log(&p, None, &c).unwrap_err().to_string();
        assert!(err.contains(at) && err.contains(what), "{content:?}: {err}");
    }
    let p = file("log.csv", "user,item,time\n");
    let err = read_log(&p, None, &c).unwrap_err().to_string();
    assert!(err.contains("holds no records"), "{err}");
    let p = file("log.csv", "who,what\n1,2\n");
    let err = read_log(&p, None, &LogColumns::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no user column found in the header (who, what)"),
        "{err}"
    );
    let err = read_log(&p, None, &cols("who", "nope", None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--item-col \"nope\": no such column"), "{err}");
}

#[test]
fn logs_split_by_time_and_need_a_time_column_for_it() {
    let p = file("clicks.csv", CSV_LOG);
    let ml = Dataset::from_log(&p, None, &cols("visitor", "article", Some("ts"))).unwrap();
    assert_eq!(ml.format, Format::Log { has_time: true });
    let (train, test) = ml.split(&SplitSpec::LastPerUser { n: 1 }).unwrap();
    // Visitor 7's last is article 101 (t = 1005); visitors with one interaction keep it
    // for training.
    assert_eq!(triples(&test), vec![(7, 101, 1005)]);
    assert_eq!(train.len(), 3);
    let (train, test) = ml.split(&SplitSpec::TimeBefore { cut: 1001 }).unwrap();
    assert_eq!(triples(&train), vec![(7, 100, 1000), (9, 102, 999)]);
    assert_eq!(triples(&test), vec![(7, 101, 1005), (8, 100, 1001)]);
    // "ts" is found by name when --time-col is not given; a log without one has no time.
    let auto = Dataset::from_log(&p, None, &cols("visitor", "article", None)).unwrap();
    assert_eq!(auto.format, Format::Log { has_time: true });
    let p = file("clicks.csv", "visitor,article\n7,100\n7,101\n");
    let untimed = Dataset::from_log(&p, None, &LogColumns::default()).unwrap();
    let err = untimed
        .split(&SplitSpec::LastPerUser { n: 1 })
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs a time column"), "{err}");
}

#[test]
fn parquet_round_trip_equals_the_csv_read() {
    let csv = file(
        "log.csv",
        "user_id,item_id,timestamp\n1,10,5\n2,11,6\n1,12,7\n4000000000,13,-8\n",
    );
    let from_csv = read_log(&csv, None, &LogColumns::default()).unwrap();
    let pq = csv.with_extension("parquet");
    parquet_log::write(&pq, &from_csv.interactions).unwrap();
    let from_parquet = read_log(&pq, None, &LogColumns::default()).unwrap();
    assert!(from_parquet.has_time);
    assert_eq!(from_parquet.interactions, from_csv.interactions);
    assert_eq!(from_parquet.items, from_csv.items);
    // Named columns work the same way; a missing one is named.
    let named = read_log(&pq, None, &cols("user_id", "item_id", Some("timestamp"))).unwrap();
    assert_eq!(named.interactions, from_csv.interactions);
    let err = read_log(&pq, None, &cols("user_id", "sku", None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--item-col \"sku\""), "{err}");
    // A file that is not Parquet says so.
    let fake = file("x.parquet", "user,item\n1,2\n");
    let err = read_log(&fake, None, &LogColumns::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a readable Parquet file"), "{err}");
}

#[test]
fn parquet_ids_out_of_range_name_the_row() {
    let rows: Vec<Interaction> = (0..5)
        .map(|i| Interaction {
            user: i,
            item: 1,
            rating: 1.0,
            timestamp: 0,
        })
        .collect();
    let p = file("a.csv", "").with_extension("parquet");
    parquet_log::write(&p, &rows).unwrap();
    // Reading "timestamp" (0) as the user column is fine; reading it as item is too. A
    // negative id is not: write one through the CSV path's i64 time column.
    let neg: Vec<Interaction> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| Interaction {
            timestamp: if i == 3 { -1 } else { 0 },
            ..*r
        })
        .collect();
    parquet_log::write(&p, &neg).unwrap();
    let err = read_log(&p, None, &cols("user_id", "timestamp", None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 4:"), "{err}");
    assert!(err.contains("id -1 is not a non-negative integer"), "{err}");
}

/// Last.fm's layout (HetRec 2011): `userID artistID weight` and a catalogue whose id column
/// is plain `id`, read without naming any column.
#[test]
fn a_lastfm_shaped_log_reads_by_common_names() {
    let log = file(
        "user_artists.dat",
        "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n3\t51\t10\n",
    );
    let items = file(
        "artists.dat",
        "id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://a\thttp://b\n52\tMorcheeba\thttp://c\thttp://d\n",
    );
    let got = read_log(&log, Some(&items), &LogColumns::default()).unwrap();
    assert!(!got.has_time);
    assert_eq!(
        triples(&got.interactions),
        vec![(2, 51, 0), (2, 52, 0), (3, 51, 0)]
    );
    let titles: Vec<(u32, &str)> = got.items.iter().map(|m| (m.id, m.title.as_str())).collect();
    assert_eq!(titles, vec![(51, "Duran Duran"), (52, "Morcheeba")]);
    // Naming the log's item column names the catalogue's too, unless its own is named.
    let named = cols("userID", "artistID", None);
    let err = read_log(&log, Some(&items), &named)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("artists.dat:1:") && err.contains("artistID"),
        "{err}"
    );
    assert!(err.contains("--items-id-col"), "{err}");
    let own = LogColumns {
        items_id: Some("id".into()),
        ..named
    };
    let got = read_log(&log, Some(&items), &own).unwrap();
    assert_eq!(got.items.len(), 2);
    assert_eq!(triples(&got.interactions)[0], (2, 51, 0));
    let wrong = LogColumns {
        items_id: Some("nope".into()),
        ..own
    };
    let err = read_log(&log, Some(&items), &wrong)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--items-id-col"), "{err}");
}

/// Feature tables (`--user-features`, `--item-features`): an id column by common name or
/// flag, the other columns kept as text; a repeated id, a missing header or a Parquet file
/// is refused with the file and line.
#[test]
fn feature_tables_read_by_id_and_refuse_mistakes() {
    use twotower_data::feature_table::{FeatureTable, Side};
    let p = file("items.csv", "brand,item_id,price\nacme,7,1.5\n,8,\n");
    let t = FeatureTable::read(&p, Side::Item, None).unwrap();
    assert_eq!(t.columns, vec!["brand", "price"]);
    assert_eq!(t.rows[&7], (2, vec!["acme".to_string(), "1.5".to_string()]));
    assert_eq!(t.rows[&8].1, vec![String::new(), String::new()]);
    assert_eq!(t.column("price"), Some(1));
    let p = file("users.tsv", "who\tcountry\n1\tfr\n2\tde\n1\tit\n");
    let e = FeatureTable::read(&p, Side::User, Some("who"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("users.tsv:4") && e.contains("also on line 2"),
        "{e}"
    );
    let e = FeatureTable::read(&p, Side::User, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no id column") && e.contains("--user-col"),
        "{e}"
    );
    let p = file("plain.csv", "1,2\n3,4\n");
    let e = FeatureTable::read(&p, Side::Item, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("plain.csv:1") && e.contains("header"), "{e}");
    let p = file("bad.csv", "item_id,brand\nx7,acme\n");
    let e = FeatureTable::read(&p, Side::Item, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.csv:2") && e.contains("x7"), "{e}");
    let p = file("items.parquet", "PAR1");
    let e = FeatureTable::read(&p, Side::Item, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("items.parquet") && e.contains("Parquet"), "{e}");
}

/// A Parquet feature table: typed columns read as their text (a list as `a|b`, a null as
/// empty), records numbered by row; a repeated id names both rows, an unreadable column
/// type its name.
#[test]
fn parquet_feature_tables_read_typed_columns() {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
    use std::sync::Arc;
    use twotower_data::feature_table::{FeatureTable, Numbering, Side};
    let write = |name: &str, columns: Vec<(&str, ArrayRef)>| {
        let p = file(name, "");
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let f = std::fs::File::create(&p).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        p
    };
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.append_value([Some("rock"), Some("indie")]);
    tags.append_null();
    let p = write(
        "artists.parquet",
        vec![
            ("id", Arc::new(Int32Array::from(vec![7, 9])) as ArrayRef),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("Blur"), None])),
            ),
            ("tags", Arc::new(tags.finish())),
            ("year", Arc::new(Float64Array::from(vec![1988.5, 2001.0]))),
        ],
    );
    let t = FeatureTable::read(&p, Side::Item, None).unwrap();
    assert_eq!(t.numbering, Numbering::Rows);
    assert_eq!(t.columns, vec!["name", "tags", "year"]);
    let text = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(t.rows[&7], (1, text(&["Blur", "rock|indie", "1988.5"])));
    assert_eq!(t.rows[&9], (2, text(&["", "", "2001.0"])));
    assert!(t.at(2).ends_with("artists.parquet: row 2"), "{}", t.at(2));
    let p = write(
        "twice.parquet",
        vec![(
            "item_id",
            Arc::new(Int32Array::from(vec![3, 4, 3])) as ArrayRef,
        )],
    );
    let e = FeatureTable::read(&p, Side::Item, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("twice.parquet: row 3") && e.contains("also on row 1"),
        "{e}"
    );
    let p = write(
        "odd.parquet",
        vec![
            ("item_id", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            (
                "blob",
                Arc::new(arrow_array::BinaryArray::from(vec![&b"x"[..]])) as ArrayRef,
            ),
        ],
    );
    let e = FeatureTable::read(&p, Side::Item, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("odd.parquet") && e.contains("\"blob\""), "{e}");
}

/// A file with CRLF line ends names the same line in its errors as with LF ones.
#[test]
fn crlf_files_name_the_right_line() {
    for (name, text) in [
        ("lf.csv", "user_id,item_id\n1,2\n1,x\n"),
        ("crlf.csv", "user_id,item_id\r\n1,2\r\n1,x\r\n"),
    ] {
        let p = file(name, text);
        let e = read_log(&p, None, &LogColumns::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{name}:3:")), "{e}");
    }
}
