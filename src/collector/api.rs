//! The query API on `--ui`: the contract the UI reads
//! (docs/api/openapi.yaml). Parameters become typed queries here (a bad
//! one is a 400 that names it); the reads run in `spawn_blocking` on a
//! connection of their own (`Store::read`), never holding up the writer.
//!
//! The UI (`ui::router()`) is served beside it at `/ui`.

use super::store::Store;
use super::store::query::{self, Search, StatusFilter, Window};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
/// Log lines `/api/logs` returns without a `trace_id`, at most.
const LOG_LIMIT: usize = 1000;

pub struct Api {
    pub store: Store,
    pub log_link_template: Option<String>,
}

type Params = Query<Vec<(String, String)>>;

/// The API, behind `token` when one is set, and the UI, whose files hold
/// no data and load without it (the page asks for the token).
pub fn router(api: Arc<Api>, token: Option<crate::web::Bearer>) -> Router {
    let routes = Router::new()
        .route("/api/services", get(services))
        .route("/api/traces", get(traces))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/logs", get(logs))
        .route("/api/dependencies", get(dependencies))
        .route("/api/stats", get(stats))
        .route("/api/ui-config", get(ui_config))
        .with_state(api);
    let routes = match token {
        Some(t) => t.guard(routes),
        None => routes,
    };
    routes
        .route("/live", get(|| async { "ok\n" }))
        .merge(crate::ui::router())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint: see docs/api/openapi.yaml") })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// A parameter the API cannot use: a 400 saying which and why.
struct Bad(String);

impl IntoResponse for Bad {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

fn bad(message: impl Into<String>) -> Bad {
    Bad(message.into())
}

/// Runs a read off the runtime's threads; a failing store is a 500.
async fn read<T: Send + 'static>(
    api: &Arc<Api>,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.read(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a query failed");
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("the store failed: {e}")))
        }
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("the query did not finish: {e}"))),
    }
}

fn raw_json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64
}

/// Unix milliseconds or RFC 3339, as Unix nanoseconds.
fn instant(name: &str, value: &str) -> Result<i64, Bad> {
    if let Ok(ms) = value.parse::<i64>() {
        return ms.checked_mul(1_000_000).ok_or_else(|| bad(format!("{name}={value} is out of range")));
    }
    let t = humantime::parse_rfc3339_weak(value)
        .map_err(|_| bad(format!("{name}={value:?}: expected Unix milliseconds or an RFC 3339 time")))?;
    Ok(t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0))
}

fn window(params: &[(String, String)]) -> Result<Window, Bad> {
    let end = param(params, "end").map(|v| instant("end", v)).transpose()?.unwrap_or_else(now_ns);
    let start = match param(params, "start") {
        Some(v) => instant("start", v)?,
        None => end - DEFAULT_WINDOW.as_nanos() as i64,
    };
    if start > end {
        return Err(bad("start is after end"));
    }
    Ok(Window { start, end })
}

fn limit(params: &[(String, String)], default: usize) -> Result<usize, Bad> {
    match param(params, "limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(MAX_LIMIT)),
            _ => Err(bad(format!("limit={v:?}: expected a whole number from 1 to {MAX_LIMIT}"))),
        },
    }
}

/// A trace id as stored: 32 lowercase hex digits.
fn trace_id(value: &str) -> Result<String, Bad> {
    let id = value.to_ascii_lowercase();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("trace_id {value:?}: expected 32 hex digits")));
    }
    Ok(id)
}

fn search(params: &[(String, String)]) -> Result<Search, Bad> {
    let text = |name| param(params, name).filter(|v| !v.is_empty()).map(str::to_string);
    let status = match param(params, "status") {
        None | Some("") => None,
        Some("ok") => Some(StatusFilter::Ok),
        Some("error") => Some(StatusFilter::Error),
        Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => {
            Some(StatusFilter::Http(code.parse().unwrap_or_default()))
        }
        Some(other) => return Err(bad(format!("status={other:?}: expected ok, error or a 3-digit HTTP status"))),
    };
    let min_duration_ns = match param(params, "min_duration") {
        None | Some("") => None,
        Some(v) => Some(
            humantime::parse_duration(v)
                .map_err(|e| bad(format!("min_duration={v:?}: {e} (e.g. 250ms, 1s)")))?
                .as_nanos() as i64,
        ),
    };
    let mut attrs = Vec::new();
    for (_, v) in params.iter().filter(|(k, _)| k == "attr") {
        match v.split_once('=') {
            Some((key, value)) if !key.is_empty() => attrs.push((key.to_string(), value.to_string())),
            _ => return Err(bad(format!("attr={v:?}: expected key=value"))),
        }
    }
    Ok(Search {
        service: text("service"),
        route: text("route"),
        status,
        attrs,
        min_duration_ns,
        window: window(params)?,
        limit: limit(params, DEFAULT_LIMIT)?,
    })
}

async fn services(State(api): State<Arc<Api>>) -> Response {
    match read(&api, query::services).await {
        Ok(list) => {
            let services: Vec<Value> =
                list.into_iter().map(|(name, spans)| json!({"name": name, "spans": spans})).collect();
            axum::Json(json!({ "services": services })).into_response()
        }
        Err(r) => r,
    }
}

async fn traces(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let q = match search(&params) {
        Ok(q) => q,
        Err(b) => return b.into_response(),
    };
    let limit = q.limit;
    match read(&api, move |c| query::search(c, &q)).await {
        Ok(found) => axum::Json(json!({ "traces": found, "limit": limit })).into_response(),
        Err(r) => r,
    }
}

async fn trace(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let id = match trace_id(&id) {
        Ok(id) => id,
        Err(b) => return b.into_response(),
    };
    let key = id.clone();
    let found = read(&api, move |c| Ok((query::trace_spans(c, &key)?, query::trace_logs(c, &key)?))).await;
    match found {
        Ok((Some(spans), logs)) => {
            // The documents are stored as JSON already: joined, not re-parsed.
            raw_json(format!(r#"{{"trace_id":"{id}","spans":[{}],"logs":[{}]}}"#, spans.join(","), logs.join(",")))
        }
        Ok((None, _)) => error(StatusCode::NOT_FOUND, format!("no span of trace {id} is stored")),
        Err(r) => r,
    }
}

async fn logs(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let docs = match param(&params, "trace_id") {
        Some(id) => {
            let id = match trace_id(id) {
                Ok(id) => id,
                Err(b) => return b.into_response(),
            };
            read(&api, move |c| query::trace_logs(c, &id)).await
        }
        None => {
            let (window, limit) = match (window(&params), limit(&params, LOG_LIMIT)) {
                (Ok(w), Ok(l)) => (w, l),
                (Err(b), _) | (_, Err(b)) => return b.into_response(),
            };
            let service = param(&params, "service").map(str::to_string);
            read(&api, move |c| query::window_logs(c, window, service.as_deref(), limit)).await
        }
    };
    match docs {
        Ok(docs) => raw_json(format!(r#"{{"logs":[{}]}}"#, docs.join(","))),
        Err(r) => r,
    }
}

async fn dependencies(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let window = match window(&params) {
        Ok(w) => w,
        Err(b) => return b.into_response(),
    };
    match read(&api, move |c| query::dependencies(c, query::observed(c, window)?)).await {
        Ok(deps) => axum::Json(deps).into_response(),
        Err(r) => r,
    }
}

async fn stats(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let window = match window(&params) {
        Ok(w) => w,
        Err(b) => return b.into_response(),
    };
    let observed = move |c: &rusqlite::Connection| {
        let w = query::observed(c, window)?;
        Ok((w.seconds(), query::stats(c, w)?))
    };
    match read(&api, observed).await {
        Ok((seconds, routes)) => axum::Json(json!({ "window_seconds": seconds, "routes": routes })).into_response(),
        Err(r) => r,
    }
}

async fn ui_config(State(api): State<Arc<Api>>) -> Response {
    axum::Json(json!({
        "log_link_template": api.log_link_template,
        "refresh_seconds": 10,
        "mode": "collector",
    }))
    .into_response()
}
