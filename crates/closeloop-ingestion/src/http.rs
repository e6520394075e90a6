//! HTTP `POST /v1/feedback` and `POST /v1/feedback:batch`, and the vendor
//! webhooks `POST /v1/webhooks/delighted` and `POST /v1/webhooks/formbricks`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use std::sync::Arc;
use std::time::SystemTime;

use closeloop_eventstore::Carried;

use crate::intake::{Accepted, BATCH_MAX, Intake, SubmitError};
use crate::webhooks::{
    Delivery, MappingProblem, Webhooks, from_delighted, from_formbricks, verify_delighted,
    verify_standard,
};

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 256 * 1024;
/// Largest accepted batch body.
pub const BATCH_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Problem documents are the runtime's (one form for every role).
pub use closeloop_runtime::{PROBLEM_BASE, problem};

pub fn router(intake: Intake, webhooks: Option<Arc<Webhooks>>) -> Router {
    let single = Router::new()
        .route("/v1/feedback", post(submit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let batch = Router::new()
        .route("/v1/feedback:batch", post(submit_batch))
        .layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT));
    let hooks = Router::new()
        .route("/v1/webhooks/delighted", post(delighted))
        .route("/v1/webhooks/formbricks", post(formbricks))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(HookState {
            intake: intake.clone(),
            hooks: webhooks.unwrap_or_default(),
        });
    single.merge(batch).with_state(intake).merge(hooks)
}

#[derive(Clone)]
struct HookState {
    intake: Intake,
    hooks: Arc<Webhooks>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn not_configured(vendor: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "webhook-not-configured",
        "Webhook not configured",
        format!("the webhooks file (--webhooks) has no {vendor} section"),
        None,
    )
}

fn bad_signature(why: String) -> Response {
    problem(
        StatusCode::UNAUTHORIZED,
        "bad-signature",
        "Webhook signature rejected",
        format!("{why}; nothing was stored"),
        None,
    )
}

/// Answers a mapped delivery: submits it, or says why it was not taken.
async fn deliver(
    intake: &Intake,
    headers: &HeaderMap,
    mapped: Result<Delivery, Vec<MappingProblem>>,
) -> Response {
    match mapped {
        Ok(Delivery::Feedback(doc)) => submitted(intake.submit(&doc, &carried(headers)).await),
        Ok(Delivery::Ignored(reason)) => (
            StatusCode::OK,
            axum::Json(json!({"status": "ignored", "reason": reason})),
        )
            .into_response(),
        Err(problems) => {
            let n = problems.len();
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unmappable-webhook",
                "Webhook cannot be mapped to feedback",
                format!(
                    "{n} problem{} mapping the delivery with the webhooks file; see errors",
                    if n == 1 { "" } else { "s" }
                ),
                Some((
                    "errors",
                    problems
                        .iter()
                        .map(|p| json!({"pointer": p.pointer, "detail": p.detail}))
                        .collect(),
                )),
            )
        }
    }
}

/// `POST /v1/webhooks/delighted`: `survey_response.created` and
/// `survey_response.updated` (both map to one feedback per response id, so
/// the later comment is an update); other events are answered 200 `ignored`.
async fn delighted(
    State(s): State<HookState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some((cfg, key)) = &s.hooks.delighted else {
        return not_configured("delighted");
    };
    if let Err(r) = json_content_type(&headers) {
        return *r;
    }
    let raw = match raw_body(body, BODY_LIMIT) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(why) = verify_delighted(key, header(&headers, "x-delighted-webhook-signature"), &raw)
    {
        return bad_signature(why);
    }
    let doc = match parse_json(&raw) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    deliver(&s.intake, &headers, from_delighted(cfg, &doc)).await
}

/// `POST /v1/webhooks/formbricks` (Standard Webhooks signature).
async fn formbricks(
    State(s): State<HookState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some((cfg, key)) = &s.hooks.formbricks else {
        return not_configured("formbricks");
    };
    if let Err(r) = json_content_type(&headers) {
        return *r;
    }
    let raw = match raw_body(body, BODY_LIMIT) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(why) = verify_standard(
        key,
        header(&headers, "webhook-id"),
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
        &raw,
        SystemTime::now(),
    ) {
        return bad_signature(why);
    }
    let doc = match parse_json(&raw) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    deliver(&s.intake, &headers, from_formbricks(cfg, &doc)).await
}

/// Reads a JSON body, or the problem document to answer instead.
fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Value, Box<Response>> {
    json_content_type(headers)?;
    parse_json(&raw_body(body, limit)?)
}

/// `415` unless the request says its body is JSON (`application/json` or
/// any `application/*+json`, parameters such as `charset` allowed).
fn json_content_type(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = header(headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let media = given
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        return Ok(());
    }
    Err(Box::new(problem(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        if given.is_empty() {
            "the request has no Content-Type; send the JSON body with Content-Type: application/json".into()
        } else {
            format!(
                "Content-Type is {given:?}; send the JSON body with Content-Type: application/json"
            )
        },
        None,
    )))
}

fn parse_json(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            format!("the body is not JSON: {e}"),
            None,
        ))
    })
}

/// The body's bytes, or the problem document (413, 400) to answer instead.
fn raw_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, Box<Response>> {
    match body {
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Box::new(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body limit is {limit} bytes"),
            None,
        ))),
        Err(e) => Err(Box::new(problem(
            e.status(),
            "bad-body",
            "Unreadable request body",
            e.body_text(),
            None,
        ))),
    }
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
    let doc = match json_body(&headers, body, BODY_LIMIT) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    submitted(intake.submit(&doc, &carried(&headers)).await)
}

/// The answer to one submission.
fn submitted(result: Result<Accepted, SubmitError>) -> Response {
    match result {
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
    let doc = match json_body(&headers, body, BATCH_BODY_LIMIT) {
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
    let body: Value = results
        .iter()
        .enumerate()
        .map(|(i, r)| item(i, r))
        .collect();
    let n = results.len();
    if unavailable {
        let failed = results
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Err(SubmitError::Unavailable(_) | SubmitError::NoPrograms)
                )
            })
            .count();
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Feedback not accepted",
            format!(
                "{failed} of {n} documents could not be stored; see results. \
                 Retrying the whole batch is safe: stored items come back as duplicates"
            ),
            Some(("results", body)),
        )
    } else if stored == 0 {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-feedback",
            "Invalid feedback",
            format!("none of the {n} documents is valid; see results"),
            Some(("results", body)),
        )
    } else {
        let status = if stored == n {
            StatusCode::ACCEPTED
        } else {
            StatusCode::MULTI_STATUS
        };
        (status, axum::Json(json!({ "results": body }))).into_response()
    }
}
