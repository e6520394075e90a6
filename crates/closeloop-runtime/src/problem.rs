//! HTTP errors as RFC 9457 problem documents (`application/problem+json`),
//! the one form every role's HTTP routes answer errors in.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Every problem `type` is this plus a kind, e.g. `.../problems/not-found`;
/// each is listed in docs/ingestion.md.
pub const PROBLEM_BASE: &str = "https://closeloop.dev/problems/";

/// An RFC 9457 problem document: `type` is [`PROBLEM_BASE`] + `kind`,
/// `detail` a sentence; structure goes in the `extra` extension member.
pub fn problem(
    status: StatusCode,
    kind: &str,
    title: &str,
    detail: String,
    extra: Option<(&str, Value)>,
) -> Response {
    let mut body = json!({
        "type": format!("{PROBLEM_BASE}{kind}"),
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
