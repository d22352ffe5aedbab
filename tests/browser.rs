//! The web page in a real browser: Debian's headless Chromium against a server on an
//! ephemeral loopback port. Opens the page for user 42 (the page's `#user=42` address runs
//! the same code as typing 42 and pressing Show), reads the rendered recommendation list,
//! compares it with `GET /v1/recommend`, and saves a screenshot to
//! `target/browser/page.png`; and the new-visitor mode of a feature model (`#visitor=…`
//! picks those movies), compared with `POST /v1/recommend {"history"}`.
//!
//! Needs `chromium` (`apt-get install -y chromium`; `.ci/run` installs it). Without it the
//! test is skipped with a message, except under CI (`CI=true`), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{quick_model, scratch, tiny_feature_model, Server};

fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TWOTOWER_CHROMIUM").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/chromium")),
        Some(PathBuf::from("/usr/bin/chromium-browser")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

fn run_chromium(exe: &Path, profile: &Path, extra: &[&str], url: &str) -> std::process::Output {
    Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// The text after `data-id="` of each `<li class="{class}">` in the rendered list `id`.
fn list_items<'a>(dom: &'a str, id: &str, class: &str) -> Vec<&'a str> {
    let list = dom
        .split(&format!("id=\"{id}\""))
        .nth(1)
        .and_then(|rest| rest.split("</ol>").next())
        .unwrap_or_else(|| panic!("the page has the list {id}"));
    list.split(&format!("<li class=\"{class}\" data-id=\""))
        .skip(1)
        .collect()
}

/// Chromium, or `None` (the test is skipped) outside CI, where it must be installed.
fn browser() -> Option<PathBuf> {
    let exe = chromium();
    if exe.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "chromium is not installed; .ci/run installs it with apt-get install -y chromium"
        );
        eprintln!("SKIPPED: no chromium (apt-get install -y chromium, or set TWOTOWER_CHROMIUM)");
    }
    exe
}

/// `(data-id, title)` of each `<li class="rec">` in the rendered list.
fn rendered_recommendations(dom: &str) -> Vec<(String, String)> {
    list_items(dom, "recs", "rec")
        .into_iter()
        .map(|li| {
            let id = li.split('"').next().unwrap().to_string();
            let title = li
                .split("<span class=\"title\"")
                .nth(1)
                .and_then(|t| t.split('>').nth(1))
                .and_then(|t| t.split("</span").next())
                .unwrap()
                .replace("&amp;", "&")
                .replace("&#39;", "'")
                .replace("&quot;", "\"");
            (id, title)
        })
        .collect()
}

#[test]
fn the_page_shows_the_recommendations_of_the_api() {
    let Some(exe) = browser() else {
        return;
    };
    let tmp = scratch("browser");
    let model = tmp.join("model");
    quick_model(&model);
    let server = Server::start(&model);
    let url = format!("{}/#user=42", server.base);

    let out = run_chromium(&exe, &tmp.join("profile-dom"), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    let shown = rendered_recommendations(&dom);
    assert_eq!(shown.len(), 20, "rendered list: {shown:?}");

    let (code, api) = server.get("/v1/recommend?user=42&k=20&exclude_seen=true");
    assert_eq!(code, 200);
    let expected: Vec<(String, String)> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["title"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(shown, expected);
    assert!(dom.contains("rated movies"), "history status missing");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("page.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &exe,
        &tmp.join("profile-shot"),
        &[
            "--window-size=1280,1400",
            "--hide-scrollbars",
            &format!("--screenshot={}", png.display()),
        ],
        &format!("{}/#user=42&movie=star%20wars", server.base),
    );
    let bytes = std::fs::read(&png).expect("a screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000);
    drop(server);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The data-ids of each `<li class="visitor-rec">` of the new-visitor list.
fn rendered_visitor(dom: &str) -> Vec<String> {
    list_items(dom, "visitor-recs", "visitor-rec")
        .into_iter()
        .map(|li| li.split('"').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_new_visitor_mode_answers_from_the_picked_movies() {
    let Some(exe) = browser() else {
        return;
    };
    let tmp = scratch("browser-visitor");
    let model = tiny_feature_model(&tmp);
    let server = Server::start(&model);
    let url = format!("{}/#visitor=3,10,17", server.base);
    let out = run_chromium(&exe, &tmp.join("profile"), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    let shown = rendered_visitor(&dom);
    let (code, api) = server.post(
        "/v1/recommend",
        r#"{"history": ["3", "10", "17"], "k": 20, "exclude_seen": true}"#,
    );
    assert_eq!(code, 200, "{api}");
    let expected: Vec<String> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(expected.len(), 20);
    assert_eq!(shown, expected);
    assert!(dom.contains("from 3 movies"), "visitor status missing");
    drop(server);
    std::fs::remove_dir_all(&tmp).unwrap();
}
