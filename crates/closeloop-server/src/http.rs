//! HTTP endpoints: `/healthz` (the process is up) and `/readyz` (NATS and
//! the database answer; Kubernetes sends traffic only then).

use axum::Json;
use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use closeloop_readmodel::Db;
use serde_json::json;

use crate::Roles;

#[derive(Clone)]
pub struct State {
    pub nats: async_nats::Client,
    pub db: Db,
    pub roles: Roles,
}

pub fn router(state: State) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
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
        let problem = json!({
            "type": "about:blank",
            "title": "not ready",
            "status": 503,
            "detail": body,
        });
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/problem+json")],
            problem.to_string(),
        )
            .into_response()
    }
}
