//! The JSON API and the page route.
//!
//! Every failure is a 4xx/5xx with `{"error": "…"}` naming the bad parameter; nothing a
//! client sends can make a handler panic. Work per request is bounded (ids and names of at
//! most [`MAX_NAME_BYTES`], at most [`MAX_RESULTS`] results, a time limit on the whole
//! request), and scoring runs on the compute pool, never on the async threads.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use twotower_model::towers::Catalogue;

use crate::state::{AppState, ComputeError, Loaded};
use twotower_index::Index;

/// The largest k a request gets; larger values are capped and the answer says so.
pub const MAX_K: usize = 1000;
/// The largest request body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most users one batched request may name.
const MAX_USERS: usize = 1000;
/// Most items a new user's history may list.
const MAX_HISTORY: usize = 1000;
/// The most results (users × k) one request may ask for: 1,000 users × k = 20, or 20
/// users × k = 1,000. Larger requests are answered 400 naming the limit.
pub const MAX_RESULTS: usize = 20_000;
/// The longest user id, item id or title, and title query, a request may send.
pub const MAX_NAME_BYTES: usize = 256;
/// The most titles a search returns.
const MAX_LIMIT: usize = 100;

const PAGE: &str = include_str!("../assets/index.html");

/// An error answer: a status and a message, plus optional extra fields.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    extra: Option<(&'static str, Value)>,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            extra: None,
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            extra: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some((k, v)) = self.extra {
            body[k] = v;
        }
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;
type Params = Query<HashMap<String, String>>;

/// All routes, with metrics and the body limit.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/recommend", get(recommend_get).post(recommend_post))
        .route("/v1/similar", get(similar))
        .route("/v1/items", get(items))
        .route("/v1/users/random", get(random_user))
        .route("/v1/users/{user}/history", get(history))
        .route("/v1/model", get(model_card))
        .fallback(|| async {
            ApiError::not_found("no such route; see GET / for the page and the README for the API")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(reject_large_bodies))
        .layer(axum::middleware::from_fn(time_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// Answers 413 from the declared length alone, before reading a byte of the body (bodies
/// without a length are cut at the same limit while being read).
async fn reject_large_bodies(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "request body of {n} bytes is over the limit of {MAX_BODY_BYTES} bytes"
            ),
            extra: None,
        }
        .into_response(),
        _ => next.run(req).await,
    }
}

/// The longest a request may take, reading its body included; a client that sends its body
/// slower than that gets 408 and the connection is closed.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn time_limit(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let mut r = ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                message: format!(
                    "the request was not read and answered within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
                extra: None,
            }
            .into_response();
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            r
        }
    }
}

fn ready(state: &AppState) -> Result<Arc<Loaded>, ApiError> {
    state.loaded().ok_or(ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the model is still loading".into(),
        extra: None,
    })
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.loaded() {
        Some(_) => Json(json!({ "status": "ready" })).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "loading" })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// `k` from text: absent → `default`; not a positive whole number → 400; above
/// [`MAX_K`] → capped, with a note.
fn parse_k(
    raw: Option<&str>,
    name: &str,
    default: usize,
) -> Result<(usize, Option<String>), ApiError> {
    let Some(raw) = raw else {
        return Ok((default, None));
    };
    let bad = || {
        ApiError::bad(format!(
            "parameter {name} must be a whole number from 1 to {MAX_K}, got {raw:?}"
        ))
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // All digits: too large to parse is simply huge.
    let k = raw.parse::<u64>().unwrap_or(u64::MAX);
    if k == 0 {
        return Err(bad());
    }
    if k > MAX_K as u64 {
        return Ok((
            MAX_K,
            Some(format!("{name} capped at {MAX_K} (asked for {raw})")),
        ));
    }
    Ok((k as usize, None))
}

fn parse_bool(raw: Option<&str>, name: &str) -> Result<bool, ApiError> {
    match raw {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::bad(format!(
            "parameter {name} must be true or false, got {other:?}"
        ))),
    }
}

/// A required id, name or query parameter, refused when longer than [`MAX_NAME_BYTES`].
fn name_param<'a>(
    p: &'a HashMap<String, String>,
    name: &str,
    what: &str,
) -> Result<&'a str, ApiError> {
    let v = p
        .get(name)
        .ok_or_else(|| ApiError::bad(format!("missing parameter {name} ({what})")))?;
    check_name(v, name)?;
    Ok(v)
}

fn check_name(v: &str, name: &str) -> Result<(), ApiError> {
    if v.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad(format!(
            "parameter {name} is {} bytes long, over the limit of {MAX_NAME_BYTES}",
            v.len()
        )));
    }
    Ok(())
}

/// Refuses a request for more than [`MAX_RESULTS`] results before any work is done.
fn check_budget(users: usize, k: usize) -> Result<(), ApiError> {
    if users.saturating_mul(k) > MAX_RESULTS {
        return Err(ApiError::bad(format!(
            "{users} users × k {k} = {} results is over the limit of {MAX_RESULTS} results \
             per request; ask for fewer users or a smaller k",
            users.saturating_mul(k)
        )));
    }
    Ok(())
}

/// Runs `job`, which costs about `flops` operations, through the compute pool.
async fn compute<T: Send + 'static>(
    state: &AppState,
    flops: f64,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    state.compute.run(flops, job).await.map_err(|e| match e {
        ComputeError::Busy => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the server is busy with other requests; try again shortly".into(),
            extra: None,
        },
        ComputeError::Failed => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error while answering; see the server log".into(),
            extra: None,
        },
    })
}

fn item_json(catalogue: &Catalogue, row: usize) -> Value {
    json!(catalogue.view(row, None))
}

/// The index a request asks for: the approximate one when `approximate` is true (an
/// error if the model folder has none), else the exact one.
fn choose_index(loaded: &Loaded, approximate: bool) -> Result<&Index, ApiError> {
    if !approximate {
        return Ok(&loaded.index);
    }
    loaded.approximate.as_ref().ok_or_else(|| {
        ApiError::bad(
            "parameter approximate: this model has no approximate index (build one with \
             `twotower index build --model DIR`); omit it for exact search",
        )
    })
}

async fn recommend_get(State(state): State<Arc<AppState>>, Query(p): Params) -> ApiResult {
    let loaded = ready(&state)?;
    let user = name_param(&p, "user", "a user id")?.to_string();
    let (k, note) = parse_k(p.get("k").map(String::as_str), "k", 10)?;
    let exclude_seen = parse_bool(p.get("exclude_seen").map(String::as_str), "exclude_seen")?;
    let approximate = parse_bool(p.get("approximate").map(String::as_str), "approximate")?;
    choose_index(&loaded, approximate)?;
    let flops = loaded.scan_flops(1);
    let mut body = compute(&state, flops, move || {
        // Checked before the job was queued: the fallback is never taken.
        let index = choose_index(&loaded, approximate).unwrap_or(&loaded.index);
        let users = [user];
        let r = loaded
            .served
            .recommend(index, &users, k, exclude_seen)
            .map_err(|e| ApiError::bad(format!("parameter user: {e}")))?;
        let r = r.first().ok_or_else(|| ApiError::bad("no answer"))?;
        Ok::<_, ApiError>(json!(loaded.catalogue().user_items(&users[0], r)))
    })
    .await??;
    if let Some(n) = note {
        body["note"] = json!(n);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendBody {
    #[serde(default)]
    users: Option<Vec<Value>>,
    /// A new user's items, oldest first (instead of `users`).
    #[serde(default)]
    history: Option<Vec<Value>>,
    /// With `history`: the new user's features, by column.
    #[serde(default)]
    features: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    k: Option<Value>,
    #[serde(default)]
    exclude_seen: bool,
    #[serde(default)]
    approximate: bool,
}

async fn recommend_post(
    State(state): State<Arc<AppState>>,
    body: Result<Json<RecommendBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError {
        status: e.status(),
        message: format!("request body: {}", e.body_text()),
        extra: None,
    })?;
    let loaded = ready(&state)?;
    choose_index(&loaded, body.approximate)?;
    let k_text = match &body.k {
        None => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => Some(other.to_string()),
    };
    let (k, note) = parse_k(k_text.as_deref(), "k", 10)?;
    if body.features.is_some() && body.history.is_none() {
        return Err(ApiError::bad(
            "field features describes a new user, with their history: add `history`",
        ));
    }
    let users = match (&body.users, &body.history) {
        (Some(users), None) => users,
        (None, Some(history)) => {
            let ids = names(history, "history", MAX_HISTORY)?;
            return recommend_history(&state, loaded, ids, k, &body, note)
                .await
                .map(IntoResponse::into_response);
        }
        _ => {
            return Err(ApiError::bad(
                "the body needs one of `users` (known users' ids) or `history` (a new \
                 user's item ids, oldest first)",
            ))
        }
    };
    let users = names(users, "users", MAX_USERS)?;
    check_budget(users.len(), k)?;
    let (approximate, exclude_seen) = (body.approximate, body.exclude_seen);
    let flops = loaded.scan_flops(users.len());
    // A batch's answer is serialised on the compute pool too: up to MAX_RESULTS items of
    // JSON is work the async threads (and `/healthz` behind them) should not wait for.
    let body = compute(&state, flops, move || {
        // Checked before the job was queued: the fallback is never taken.
        let index = choose_index(&loaded, approximate).unwrap_or(&loaded.index);
        let answers = loaded
            .served
            .recommend(index, &users, k, exclude_seen)
            .map_err(|e| ApiError::bad(format!("field users: {e}")))?;
        let catalogue = loaded.catalogue();
        let results: Vec<Value> = users
            .iter()
            .zip(answers)
            .map(|(u, r)| json!(catalogue.user_items(u, &r)))
            .collect();
        let mut out = json!({ "results": results });
        if let Some(n) = note {
            out["note"] = json!(n);
        }
        serde_json::to_vec(&out).map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("internal error while answering: {e}"),
            extra: None,
        })
    })
    .await??;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The strings or numbers of field `field` (1 to `max` of them) as names.
fn names(values: &[Value], field: &str, max: usize) -> Result<Vec<String>, ApiError> {
    if values.is_empty() || values.len() > max {
        return Err(ApiError::bad(format!(
            "field {field} must list 1 to {max} ids, got {}",
            values.len()
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, u)| match u {
            Value::String(s) => check_name(s, &format!("{field}[{i}]")).map(|_| s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(ApiError::bad(format!(
                "field {field}[{i}] must be a string or number"
            ))),
        })
        .collect()
}

/// `POST /v1/recommend` with a `history`: a new user's answer, the history's unknown ids
/// listed, and a note when none was known (the most popular items then).
async fn recommend_history(
    state: &Arc<AppState>,
    loaded: Arc<Loaded>,
    ids: Vec<String>,
    k: usize,
    body: &RecommendBody,
    note: Option<String>,
) -> ApiResult {
    let (approximate, exclude_given) = (body.approximate, body.exclude_seen);
    let mut features = Vec::new();
    for (name, v) in body.features.iter().flatten() {
        check_name(name, "features")?;
        let value = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(ApiError::bad(format!(
                    "field features.{name} must be a string or number"
                )))
            }
        };
        check_name(&value, &format!("features.{name}"))?;
        features.push((name.clone(), value));
    }
    let flops = loaded.scan_flops(1);
    let mut out = compute(state, flops, move || {
        // Checked before the job was queued: the fallback is never taken.
        let index = choose_index(&loaded, approximate).unwrap_or(&loaded.index);
        let answer = loaded
            .recommend_history(index, &ids, &features, k, exclude_given)
            .map_err(|e| ApiError::bad(format!("field history/features: {e}")))?;
        let mut v = json!(loaded
            .catalogue()
            .user_items("visitor", &answer.recommendations));
        v["history"] = json!({ "used": answer.used, "skipped": answer.skipped });
        if answer.popularity {
            v["note"] = json!(
                "none of the history's ids is in the catalogue: the most popular items of \
                 training"
            );
        }
        Ok::<_, ApiError>(v)
    })
    .await??;
    if let Some(n) = note {
        out["note"] = match out["note"].as_str() {
            Some(first) => json!(format!("{first}; {n}")),
            None => json!(n),
        };
    }
    Ok(Json(out))
}

async fn similar(State(state): State<Arc<AppState>>, Query(p): Params) -> ApiResult {
    let loaded = ready(&state)?;
    let item = name_param(&p, "item", "a movie id or exact title")?.to_string();
    let (k, note) = parse_k(p.get("k").map(String::as_str), "k", 10)?;
    // A cosine scan, plus the id and title lookup and at worst the suggestions.
    let flops = loaded.scan_flops(1) + 200.0 * loaded.catalogue().len() as f64;
    let mut out = compute(&state, flops, move || {
        let catalogue = loaded.catalogue();
        let Some(row) = catalogue.find(&item) else {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("no movie with id or title {item:?}"),
                extra: Some(("suggestions", json!(loaded.titles.suggest(&item, 5)))),
            });
        };
        let items = loaded.similar(row, k);
        Ok(json!(catalogue.similar_items(row, &items)))
    })
    .await??;
    if let Some(n) = note {
        out["note"] = json!(n);
    }
    Ok(Json(out))
}

async fn items(State(state): State<Arc<AppState>>, Query(p): Params) -> ApiResult {
    let loaded = ready(&state)?;
    let query = p.get("query").map(|q| q.to_lowercase()).unwrap_or_default();
    check_name(&query, "query")?;
    let (limit, _) = parse_k(p.get("limit").map(String::as_str), "limit", 20)?;
    let limit = limit.min(MAX_LIMIT);
    let echo = query.clone();
    // A substring test against every title.
    let flops = 64.0 * loaded.catalogue().len() as f64;
    let found: Vec<Value> = compute(&state, flops, move || {
        loaded
            .titles
            .search(&query, limit)
            .into_iter()
            .map(|r| item_json(loaded.catalogue(), r))
            .collect()
    })
    .await?;
    Ok(Json(json!({ "query": echo, "items": found })))
}

async fn random_user(State(state): State<Arc<AppState>>) -> ApiResult {
    let loaded = ready(&state)?;
    // Time-seeded pick; quality of randomness is irrelevant here.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    let user = loaded
        .some_user(nanos)
        .ok_or_else(|| ApiError::not_found("the model knows no users"))?;
    Ok(Json(json!({ "user": user })))
}

async fn history(State(state): State<Arc<AppState>>, Path(user): Path<String>) -> ApiResult {
    let loaded = ready(&state)?;
    check_name(&user, "user")?;
    let Some(seen) = loaded.history(&user) else {
        return Err(ApiError::not_found(format!(
            "user {user:?} is not in the model"
        )));
    };
    let items: Vec<Value> = seen
        .into_iter()
        .map(|(r, rating)| {
            let mut v = item_json(loaded.catalogue(), r as usize);
            if let Some(rating) = rating {
                v["rating"] = json!(rating);
            }
            v
        })
        .collect();
    Ok(Json(
        json!({ "user": user, "known_user": true, "items": items }),
    ))
}

async fn model_card(State(state): State<Arc<AppState>>) -> ApiResult {
    let loaded = ready(&state)?;
    let approximate = match &loaded.approximate {
        Some(Index::Approximate(a)) => json!({
            "leaves": a.leaves(),
            "subspaces": a.subspaces(),
            "search": a.params(),
            "index_bytes": a.index_bytes(),
        }),
        _ => Value::Null,
    };
    let (card, history) = loaded.card();
    Ok(Json(json!({
        "card": card,
        "history": history,
        "approximate_index": approximate,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_parsing() {
        assert_eq!(parse_k(None, "k", 10).unwrap(), (10, None));
        assert_eq!(parse_k(Some("7"), "k", 10).unwrap(), (7, None));
        let (k, note) = parse_k(Some("99999999999999999999999"), "k", 10).unwrap();
        assert_eq!(k, MAX_K);
        assert!(note.unwrap().contains("capped"));
        for bad in ["0", "-3", "abc", "", "1.5"] {
            let e = parse_k(Some(bad), "k", 10).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains("parameter k"), "{}", e.message);
        }
    }
}
