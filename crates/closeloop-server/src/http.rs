//! HTTP endpoints: `/healthz` (the process is up) and `/readyz` (NATS and
//! the database answer; Kubernetes sends traffic only then) and `/metrics`
//! (Prometheus text format).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::State as Extract;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use closeloop_eventstore::ExecutorMetrics;
use closeloop_eventstore::consumer::ConsumerMetrics;
use closeloop_ingestion::http::problem;
use closeloop_readmodel::{Db, Pending, Progress};
use closeloop_runtime::MetricsSource;
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
}

pub fn router(state: State) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// One span per request, a child of the caller's `traceparent`.
pub async fn traced(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
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
    response
}

/// Gives the whole HTTP API problem documents for unknown paths (404) and
/// methods a path does not take (405), like every other error it answers.
pub fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(|uri: Uri| async move {
            problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                format!(
                    "no endpoint at {}; see docs/ingestion.md and docs/operations.md",
                    uri.path()
                ),
                None,
            )
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                format!("{} does not take {method}", uri.path()),
                None,
            )
        })
}

async fn readyz(Extract(s): Extract<State>) -> Response {
    let nats_ok = s.nats.connection_state() == async_nats::connection::State::Connected;
    let db = s.db.ping().await;
    let body = json!({
        "roles": s.roles.to_string(),
        "nats": if nats_ok { "ok".to_string() } else { format!("{}", s.nats.connection_state()) },
        "database": match &db { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
    });
    if nats_ok && db.is_ok() {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let failing: Vec<&str> = [("NATS", nats_ok), ("the database", db.is_ok())]
            .into_iter()
            .filter_map(|(what, ok)| (!ok).then_some(what))
            .collect();
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            format!(
                "not ready: {} not answering; see checks",
                failing.join(" and ")
            ),
            Some(("checks", body)),
        )
    }
}

async fn metrics(Extract(s): Extract<State>) -> Response {
    let mut out = String::new();
    for (aggregate, m) in &s.executors {
        let _ = write!(
            out,
            "# HELP closeloop_{aggregate}_commands_total Commands on {aggregate} aggregates by outcome.\n\
             # TYPE closeloop_{aggregate}_commands_total counter\n"
        );
        for (outcome, c) in [
            ("written", &m.written),
            ("replayed", &m.replayed),
            ("aborted", &m.aborted),
        ] {
            let _ = writeln!(
                out,
                "closeloop_{aggregate}_commands_total{{outcome=\"{outcome}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = write!(
            out,
            "# HELP closeloop_{aggregate}_command_conflicts_total Appends on {aggregate} aggregates that lost an optimistic-concurrency race and were retried.\n\
             # TYPE closeloop_{aggregate}_command_conflicts_total counter\n\
             closeloop_{aggregate}_command_conflicts_total {}\n",
            m.conflicts.load(Ordering::Relaxed)
        );
    }
    if !s.projectors.is_empty() {
        out.push_str(
            "# HELP closeloop_projector_sequence Last event-stream sequence each projector committed.\n\
             # TYPE closeloop_projector_sequence gauge\n",
        );
        for (name, p, _) in &s.projectors {
            let _ = writeln!(
                out,
                "closeloop_projector_sequence{{projector=\"{name}\"}} {}",
                *p.borrow()
            );
        }
        out.push_str(
            "# HELP closeloop_projector_pending Events of each projector's filter not applied yet (its lag).\n\
             # TYPE closeloop_projector_pending gauge\n",
        );
        for (name, _, pending) in &s.projectors {
            let _ = writeln!(
                out,
                "closeloop_projector_pending{{projector=\"{name}\"}} {}",
                pending.load(Ordering::Relaxed)
            );
        }
    }
    if !s.consumers.is_empty() {
        out.push_str(
            "# HELP closeloop_consumer_messages_total Messages each durable consumer handled, by verdict.\n\
             # TYPE closeloop_consumer_messages_total counter\n",
        );
        for (name, m) in &s.consumers {
            for (verdict, c) in [
                ("done", &m.done),
                ("dead_letter", &m.dead_lettered),
                ("retry", &m.retried),
            ] {
                let _ = writeln!(
                    out,
                    "closeloop_consumer_messages_total{{consumer=\"{name}\",verdict=\"{verdict}\"}} {}",
                    c.load(Ordering::Relaxed)
                );
            }
        }
        for (metric, help, pick) in [
            (
                "closeloop_consumer_position",
                "Stream sequence of the last message each durable consumer received.",
                (|m: &ConsumerMetrics| m.position.load(Ordering::Relaxed))
                    as fn(&ConsumerMetrics) -> u64,
            ),
            (
                "closeloop_consumer_pending",
                "Messages each durable consumer has not received yet (its lag).",
                |m: &ConsumerMetrics| m.pending.load(Ordering::Relaxed),
            ),
        ] {
            let _ = write!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge\n");
            for (name, m) in &s.consumers {
                let _ = writeln!(out, "{metric}{{consumer=\"{name}\"}} {}", pick(m));
            }
        }
    }
    for m in &s.metrics {
        m.write(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
