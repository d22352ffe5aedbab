//! The HTTP service against a real server on an ephemeral loopback port: every route, every
//! bad-request case, graceful shutdown.

mod common;

use common::{quick_model, scratch, Server};
use serde_json::Value;

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_error(code: u16, body: &Value, want_code: u16, needle: &str) {
    assert_eq!(code, want_code, "{body}");
    let msg = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {body}"));
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

#[test]
fn every_route_and_every_bad_request() {
    let tmp = scratch("serve");
    let model = tmp.join("model");
    quick_model(&model);
    let s = Server::start(&model);

    let (code, body) = s.get("/healthz");
    assert_eq!((code, body["status"].as_str()), (200, Some("ready")));

    // Recommendations, and the same through the batched POST.
    let (code, r42) = s.get("/v1/recommend?user=42&k=10");
    assert_eq!(code, 200);
    assert_eq!(r42["user"], "42");
    assert_eq!(r42["known_user"], true);
    assert_eq!(r42["items"].as_array().unwrap().len(), 10);
    let first = &r42["items"][0];
    for field in ["id", "title", "genres", "year", "score"] {
        assert!(!first[field].is_null(), "{field} missing in {first}");
    }
    let (code, batch) = s.post(
        "/v1/recommend",
        r#"{"users": ["42", 7, "nobody"], "k": 10}"#,
    );
    assert_eq!(code, 200);
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(ids(&results[0]["items"]), ids(&r42["items"]));
    assert_eq!(results[1]["user"], "7");
    assert_eq!(results[2]["known_user"], false);

    // Excluding seen items removes the user's history.
    let (code, hist) = s.get("/v1/users/42/history");
    assert_eq!(code, 200);
    let seen = ids(&hist["items"]);
    assert!(seen.len() > 20);
    assert!(hist["items"][0]["rating"].as_f64().unwrap() >= 1.0);
    let (_, fresh) = s.get("/v1/recommend?user=42&k=100&exclude_seen=true");
    assert!(ids(&fresh["items"]).iter().all(|i| !seen.contains(i)));

    // Unknown users: the OOV vector, flagged.
    let (code, unk) = s.get("/v1/recommend?user=no-such-user&k=5");
    assert_eq!((code, unk["known_user"].as_bool()), (200, Some(false)));
    assert_eq!(unk["items"].as_array().unwrap().len(), 5);

    // Similar movies by id and by exact title; the movie itself is not among them.
    let (code, sim) = s.get("/v1/similar?item=50&k=5");
    assert_eq!(code, 200);
    assert_eq!(sim["item"]["title"], "Star Wars (1977)");
    assert!(!ids(&sim["items"]).contains(&"50".to_string()));
    let (_, by_title) = s.get("/v1/similar?item=Star%20Wars%20(1977)&k=5");
    assert_eq!(by_title["items"], sim["items"]);

    // Title search.
    let (code, found) = s.get("/v1/items?query=STAR%20wars&limit=20");
    assert_eq!(code, 200);
    let titles: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert!(titles.contains(&"Star Wars (1977)"), "{titles:?}");
    assert!(titles
        .iter()
        .all(|t| t.to_lowercase().contains("star wars")));
    let (_, few) = s.get("/v1/items?query=the&limit=3");
    assert_eq!(few["items"].as_array().unwrap().len(), 3);

    // Model card.
    let (code, card) = s.get("/v1/model");
    assert_eq!(code, 200);
    assert_eq!(card["card"]["config"]["preset"], "tfrs");
    assert!(card["card"]["metrics"]["model"]["factorized_top_k"]["100"].is_number());
    assert_eq!(card["history"].as_array().unwrap().len(), 1);

    // The page.
    let (code, html) = s.get_text("/");
    assert_eq!(code, 200);
    assert!(html.contains("id=\"recs\"") && html.contains("/v1/recommend"));

    // Bad requests: each names its parameter.
    let (c, b) = s.get("/v1/recommend?k=5");
    assert_error(c, &b, 400, "missing parameter user");
    let (c, b) = s.get("/v1/recommend?user=42&k=abc");
    assert_error(c, &b, 400, "parameter k");
    let (c, b) = s.get("/v1/recommend?user=42&k=0");
    assert_error(c, &b, 400, "parameter k");
    let (c, b) = s.get("/v1/recommend?user=42&k=-4");
    assert_error(c, &b, 400, "parameter k");
    let (c, b) = s.get("/v1/recommend?user=42&exclude_seen=maybe");
    assert_error(c, &b, 400, "parameter exclude_seen");
    let (c, b) = s.get("/v1/recommend?user=42&approximate=true");
    assert_error(c, &b, 400, "parameter approximate");
    let (c, huge) = s.get("/v1/recommend?user=42&k=100000000000000000000000");
    assert_eq!(c, 200);
    assert!(huge["note"].as_str().unwrap().contains("capped"), "{huge}");
    assert_eq!(huge["items"].as_array().unwrap().len(), 1000);
    let (c, b) = s.get("/v1/similar?k=3");
    assert_error(c, &b, 400, "missing parameter item");
    let (c, b) = s.get("/v1/similar?item=star%20wars");
    assert_error(c, &b, 404, "no movie");
    assert!(
        b["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "Star Wars (1977)"),
        "{b}"
    );
    let (c, b) = s.get("/v1/items?query=a&limit=x");
    assert_error(c, &b, 400, "parameter limit");
    let (c, b) = s.get("/v1/users/nobody/history");
    assert_error(c, &b, 404, "nobody");
    let (c, b) = s.post("/v1/recommend", r#"{"users": ["42"],"#);
    assert_error(c, &b, 400, "request body");
    let (c, b) = s.post("/v1/recommend", r#"{"users": []}"#);
    assert_error(c, &b, 400, "field users");
    let (c, b) = s.post("/v1/recommend", r#"{"users": [["x"]]}"#);
    assert_error(c, &b, 400, "users[0]");
    let (c, b) = s.post("/v1/recommend", r#"{"users": ["42"], "k": "ten"}"#);
    assert_error(c, &b, 400, "parameter k");
    let (c, b) = s.post("/v1/recommend", r#"{"users": ["42"], "kk": 3}"#);
    assert_error(c, &b, 422, "kk");
    let (c, b) = s.post("/v1/recommend", r#"{"history": [50, 181]}"#);
    assert_error(c, &b, 400, "id model");
    let (c, b) = s.post("/v1/recommend", r#"{"k": 3}"#);
    assert_error(c, &b, 400, "`history`");
    let (c, b) = s.post_declaring("/v1/recommend", 100_000);
    assert_error(c, &b, 413, "over the limit");
    let (c, b) = s.get("/v1/nothing-here");
    assert_error(c, &b, 404, "no such route");

    // Metrics saw the traffic, by route and status.
    let (code, text) = s.get_text("/metrics");
    assert_eq!(code, 200);
    assert!(text.contains(r#"twotower_http_requests_total{route="/v1/recommend",status="200"}"#));
    assert!(text.contains(r#"twotower_http_requests_total{route="/v1/recommend",status="400"}"#));
    assert!(text.contains("twotower_http_request_duration_seconds_bucket"));

    // SIGTERM: a clean exit.
    let (status, stderr) = s.stop();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("shut down cleanly"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_missing_model_stops_the_server_with_a_clear_error() {
    let tmp = scratch("serve-missing");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_twotower"))
        .args([
            "serve",
            "--model",
            tmp.join("none").to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a model folder"), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// A feature model (format 2: user id and history, item id and genres) served: answers
/// as `recommend` would, with its history excluded on request; ids that are not integers,
/// and the approximate index it does not have, are 400s naming the parameter.
#[test]
fn a_feature_model_is_served() {
    let tmp = scratch("serve-features");
    let model = common::tiny_feature_model(&tmp);
    let cli = common::ok_json(&[
        "recommend",
        "--model",
        model.to_str().unwrap(),
        "--user",
        "3",
        "-k",
        "5",
        "--exclude-seen",
        "--json",
    ]);
    let s = Server::start(&model);
    let (code, r) = s.get("/v1/recommend?user=3&k=5&exclude_seen=true");
    assert_eq!(code, 200, "{r}");
    assert_eq!(ids(&r["items"]), ids(&cli["items"]));
    let (code, hist) = s.get("/v1/users/3/history");
    assert_eq!(code, 200, "{hist}");
    let seen = ids(&hist["items"]);
    assert!(!seen.is_empty());
    assert!(ids(&r["items"]).iter().all(|i| !seen.contains(i)));
    let (code, batch) = s.post(
        "/v1/recommend",
        r#"{"users": [3, "4"], "k": 5, "exclude_seen": true}"#,
    );
    assert_eq!(code, 200, "{batch}");
    assert_eq!(ids(&batch["results"][0]["items"]), ids(&r["items"]));
    let (code, sim) = s.get("/v1/similar?item=7&k=3");
    assert_eq!(code, 200, "{sim}");
    assert_eq!(sim["items"].as_array().unwrap().len(), 3);
    assert!(!ids(&sim["items"]).contains(&"7".to_string()));
    let (code, u) = s.get("/v1/users/random");
    assert_eq!(code, 200);
    let (code, _) = s.get(&format!(
        "/v1/users/{}/history",
        u["user"].as_str().unwrap()
    ));
    assert_eq!(code, 200);
    let (code, card) = s.get("/v1/model");
    assert_eq!(code, 200);
    assert_eq!(card["card"]["format_version"], 2);
    assert!(card["card"]["towers"].as_str().unwrap().contains("history"));
    // A new user by their history: the same answer as `recommend --history`; unknown ids
    // listed and skipped; none known, the most popular items, said so.
    let visitor = common::ok_json(&[
        "recommend",
        "--model",
        model.to_str().unwrap(),
        "--history",
        "3,10,17",
        "-k",
        "5",
        "--json",
    ]);
    let (code, v) = s.post(
        "/v1/recommend",
        r#"{"history": [3, "10", 999, 17], "k": 5}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(ids(&v["items"]), ids(&visitor["items"]));
    assert_eq!(v["known_user"], false);
    assert_eq!(v["history"]["used"], 3);
    assert_eq!(v["history"]["skipped"], serde_json::json!(["999"]));
    let (code, v) = s.post("/v1/recommend", r#"{"history": [999], "k": 3}"#);
    assert_eq!(code, 200, "{v}");
    assert!(v["note"].as_str().unwrap().contains("most popular"), "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
    let (code, body) = s.post(
        "/v1/recommend",
        r#"{"history": [3], "features": {"shoe": 9}}"#,
    );
    assert_error(code, &body, 400, "shoe");
    let (code, body) = s.post("/v1/recommend", r#"{"users": [3], "features": {"age": 9}}"#);
    assert_error(code, &body, 400, "add `history`");
    for bad in [
        r#"{"history": []}"#,
        r#"{"users": [3], "history": [3]}"#,
        r#"{"history": [[3]]}"#,
    ] {
        let (code, body) = s.post("/v1/recommend", bad);
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let (code, body) = s.get("/v1/recommend?user=x3");
    assert_error(code, &body, 400, "not an integer id");
    let (code, body) = s.get("/v1/recommend?user=3&approximate=true");
    assert_error(code, &body, 400, "approximate");
    let (status, _) = s.stop();
    assert!(status.success());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_visitor_feature_far_outside_training_is_a_400() {
    let tmp = scratch("serve-age");
    let model = common::tiny_age_model(&tmp);
    let s = Server::start(&model);
    let (code, body) = s.post(
        "/v1/recommend",
        r#"{"history": [1, 2], "features": {"age": 3e38}}"#,
    );
    assert_error(code, &body, 400, "outside");
    let (code, v) = s.post(
        "/v1/recommend",
        r#"{"history": [1, 2], "features": {"age": 40}, "k": 3}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["score"].as_f64().unwrap().abs() < 1e6));
    let (status, _) = s.stop();
    assert!(status.success());
    std::fs::remove_dir_all(&tmp).unwrap();
}
