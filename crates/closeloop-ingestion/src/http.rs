//! HTTP `POST /v1/feedback`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::intake::{Intake, SubmitError};

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 256 * 1024;

/// An RFC 9457 problem document.
fn problem(
    status: StatusCode,
    kind: &str,
    title: &str,
    detail: String,
    extra: Option<(&str, Value)>,
) -> Response {
    let mut body = json!({
        "type": format!("https://closeloop.dev/problems/{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some((k, v)) = extra {
        body[k] = v;
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

pub fn router(intake: Intake) -> Router {
    Router::new()
        .route("/v1/feedback", post(submit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(intake)
}

async fn submit(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the body limit is {BODY_LIMIT} bytes"),
                None,
            );
        }
        Err(e) => {
            return problem(
                e.status(),
                "bad-body",
                "Unreadable request body",
                e.body_text(),
                None,
            );
        }
    };
    let doc: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                format!("the body is not JSON: {e}"),
                None,
            );
        }
    };
    let meta = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match intake.submit(&doc, meta).await {
        Ok(a) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "feedback_id": a.feedback_id.to_string(),
                "status": a.outcome.as_str(),
                "sequence": a.sequence,
            })),
        )
            .into_response(),
        Err(SubmitError::Invalid(problems)) => {
            let n = problems.len();
            let errors: Vec<Value> = problems
                .into_iter()
                .map(|p| json!({"pointer": p.pointer, "detail": p.detail}))
                .collect();
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-feedback",
                "Invalid feedback",
                format!(
                    "{n} problem{} with the feedback; see errors",
                    if n == 1 { "" } else { "s" }
                ),
                Some(("errors", Value::Array(errors))),
            )
        }
        Err(e @ (SubmitError::Unavailable(_) | SubmitError::NoPrograms)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Feedback not accepted",
            format!("{e}; nothing was stored, retry later"),
            None,
        ),
    }
}
