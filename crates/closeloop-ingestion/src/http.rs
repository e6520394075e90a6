//! HTTP `POST /v1/feedback` and `POST /v1/feedback:batch`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use closeloop_eventstore::Carried;

use crate::intake::{Accepted, BATCH_MAX, Intake, SubmitError};

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 256 * 1024;
/// Largest accepted batch body.
pub const BATCH_BODY_LIMIT: usize = 8 * 1024 * 1024;

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
    let single = Router::new()
        .route("/v1/feedback", post(submit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let batch = Router::new()
        .route("/v1/feedback:batch", post(submit_batch))
        .layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT));
    single.merge(batch).with_state(intake)
}

/// Reads a JSON body, or the problem document to answer instead.
fn json_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Value, Box<Response>> {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Box::new(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the body limit is {limit} bytes"),
                None,
            )));
        }
        Err(e) => {
            return Err(Box::new(problem(
                e.status(),
                "bad-body",
                "Unreadable request body",
                e.body_text(),
                None,
            )));
        }
    };
    serde_json::from_slice(&body).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            format!("the body is not JSON: {e}"),
            None,
        ))
    })
}

fn carried(headers: &HeaderMap) -> Carried {
    Carried::from_lookup(|k| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })
}

fn problems_json(problems: &[crate::canonical::Problem]) -> Value {
    problems
        .iter()
        .map(|p| json!({"pointer": p.pointer, "detail": p.detail}))
        .collect()
}

async fn submit(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let doc = match json_body(body, BODY_LIMIT) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match intake.submit(&doc, &carried(&headers)).await {
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
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-feedback",
                "Invalid feedback",
                format!(
                    "{n} problem{} with the feedback; see errors",
                    if n == 1 { "" } else { "s" }
                ),
                Some(("errors", problems_json(&problems))),
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

fn item(index: usize, r: &Result<Accepted, SubmitError>) -> Value {
    match r {
        Ok(a) => json!({
            "index": index,
            "feedback_id": a.feedback_id.to_string(),
            "status": a.outcome.as_str(),
            "sequence": a.sequence,
        }),
        Err(SubmitError::Invalid(problems)) => json!({
            "index": index,
            "status": "invalid",
            "errors": problems_json(problems),
        }),
        Err(e) => json!({"index": index, "status": "unavailable", "error": e.to_string()}),
    }
}

/// `POST /v1/feedback:batch`: a JSON array (or `{"feedback": [...]}`) of up to
/// 500 documents. Each is validated and stored on its own; the answer lists
/// every item's result in order: `202` all stored, `207` some rejected,
/// `422` none valid, `503` some could not be stored (retrying the whole batch
/// is safe: stored items come back as duplicates).
async fn submit_batch(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let doc = match json_body(body, BATCH_BODY_LIMIT) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let items = match doc {
        Value::Array(a) => a,
        Value::Object(mut o) if o.get("feedback").is_some_and(Value::is_array) => {
            match o.remove("feedback") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            }
        }
        _ => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-batch",
                "Invalid batch",
                "a batch is a JSON array of feedback documents (or {\"feedback\": [...]})".into(),
                None,
            );
        }
    };
    if items.is_empty() || items.len() > BATCH_MAX {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-batch",
            "Invalid batch",
            format!(
                "a batch holds 1 to {BATCH_MAX} documents; this one has {}",
                items.len()
            ),
            None,
        );
    }
    let results = intake.submit_batch(items, carried(&headers)).await;
    let stored = results.iter().filter(|r| r.is_ok()).count();
    let unavailable = results.iter().any(|r| {
        matches!(
            r,
            Err(SubmitError::Unavailable(_) | SubmitError::NoPrograms)
        )
    });
    let status = if unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else if stored == results.len() {
        StatusCode::ACCEPTED
    } else if stored == 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::MULTI_STATUS
    };
    let body: Vec<Value> = results
        .iter()
        .enumerate()
        .map(|(i, r)| item(i, r))
        .collect();
    (status, axum::Json(json!({ "results": body }))).into_response()
}
