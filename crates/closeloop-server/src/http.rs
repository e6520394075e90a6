//! HTTP endpoints: `/healthz` (the process is up) and `/readyz` (NATS and
//! the database answer; Kubernetes sends traffic only then) and `/metrics`
//! (Prometheus text format).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State as Extract;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use closeloop_eventstore::ExecutorMetrics;
use closeloop_eventstore::consumer::ConsumerMetrics;
use closeloop_readmodel::{Db, Pending, Progress};
use closeloop_runtime::MetricsSource;
use closeloop_runtime::problem;
use serde_json::json;

use crate::Roles;

#[derive(Clone)]
pub struct State {
    pub nats: async_nats::Client,
    pub db: Db,
    pub roles: Roles,
    /// Each aggregate executor's counters, by aggregate type.
    pub executors: Vec<(&'static str, Arc<ExecutorMetrics>)>,
    pub projectors: Vec<(&'static str, Progress, Pending)>,
    pub consumers: Vec<(String, Arc<ConsumerMetrics>)>,
    /// What the roles export beyond these.
    pub metrics: Vec<Arc<dyn MetricsSource>>,
    /// gRPC calls and HTTP requests served.
    pub requests: crate::metrics::Requests,
    /// What roles report beside readiness.
    pub notes: Vec<(&'static str, String)>,
}

pub fn router(state: State) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// One span per request, a child of the caller's `traceparent`; counted and
/// timed in `/metrics`.
pub async fn traced(
    Extract(requests): Extract<crate::metrics::Requests>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        path = %req.uri().path(),
        status = tracing::field::Empty
    );
    closeloop_eventstore::trace::follow(
        &span,
        req.headers()
            .get(closeloop_eventstore::headers::TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
    );
    let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.record("status", response.status().as_u16());
    let route = if response.extensions().get::<Unmatched>().is_some() {
        "unmatched"
    } else {
        path.as_str()
    };
    requests.record("http", route, response.status().as_str(), started);
    response
}

/// Gives the whole HTTP API problem documents for unknown paths (404) and
/// methods a path does not take (405), like every other error it answers.
pub fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(|uri: Uri| async move {
            unmatched(problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                format!(
                    "no endpoint at {}; see docs/ingestion.md and docs/operations.md",
                    uri.path()
                ),
                None,
            ))
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            unmatched(problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                format!("{} does not take {method}", uri.path()),
                None,
            ))
        })
}

/// Marks a fallback's answer: it served no route, so `/metrics` counts it
/// as `route="unmatched"` rather than under a path anyone can invent.
#[derive(Clone, Copy)]
struct Unmatched;

fn unmatched(mut r: Response) -> Response {
    r.extensions_mut().insert(Unmatched);
    r
}

async fn readyz(Extract(s): Extract<State>) -> Response {
    let nats_ok = s.nats.connection_state() == async_nats::connection::State::Connected;
    let db = s.db.ping().await;
    let mut failing: Vec<String> = [("NATS", nats_ok), ("the database", db.is_ok())]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(what, _)| what.to_string())
        .collect();
    let mut consumers = serde_json::Map::new();
    for (name, m) in &s.consumers {
        let ok = m.consuming.load(std::sync::atomic::Ordering::Relaxed);
        if !ok {
            failing.push(format!("consumer {name}"));
        }
        consumers.insert(
            name.clone(),
            json!(if ok { "consuming" } else { "not consuming" }),
        );
    }
    let mut body = json!({
        "roles": s.roles.to_string(),
        "nats": if nats_ok { "ok".to_string() } else { format!("{}", s.nats.connection_state()) },
        "database": match &db { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
        "consumers": consumers,
    });
    for (name, detail) in &s.notes {
        body[*name] = json!(detail);
    }
    if failing.is_empty() {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            format!(
                "not ready: {} not answering; see checks",
                failing.join(", ")
            ),
            Some(("checks", body)),
        )
    }
}

async fn metrics(Extract(s): Extract<State>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::encode(&s),
    )
        .into_response()
}
