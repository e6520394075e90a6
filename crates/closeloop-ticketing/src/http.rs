//! Ticket commands over HTTP, for connectors that write back from systems
//! that speak JSON: `POST /v1/tickets/{id}:contact`, `:note`, `:reply`,
//! `:reassign`, `:close`, `:reopen`. Each takes the fields of its gRPC
//! request as a JSON object (`request_id` required) and is the same command:
//! the gRPC service validates and runs it, and its answer is mapped to HTTP
//! (problem+json errors with the same field details and reasons).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use closeloop_domain::FieldViolation;
use closeloop_proto::v1;
use closeloop_proto::v1::ticket_service_server::TicketService;
use closeloop_runtime::problem;
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use crate::grpc::TicketGrpc;

/// Largest accepted body.
const BODY_LIMIT: usize = 64 * 1024;

pub fn router(grpc: TicketGrpc) -> Router {
    Router::new()
        .route("/v1/tickets/{command}", post(command))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(grpc)
}

fn text(body: &Value, field: &str) -> String {
    body.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Fields that must be strings when present (numbers or objects in them
/// are refused, not silently emptied).
fn wrong_types(body: &Value, fields: &[&str]) -> Vec<Value> {
    fields
        .iter()
        .filter(|f| {
            body.get(**f)
                .is_some_and(|v| !v.is_string() && !v.is_null())
        })
        .map(|f| json!({"field": f, "detail": "must be a string"}))
        .collect()
}

/// The channel a word names (any case); `None` for any other word, and
/// [`v1::ContactChannel::Unspecified`] for none at all (the service then
/// says it is required).
fn channel(word: &str) -> Option<i32> {
    match word.trim().to_ascii_lowercase().as_str() {
        "phone" => Some(v1::ContactChannel::Phone as i32),
        "email" => Some(v1::ContactChannel::Email as i32),
        "meeting" => Some(v1::ContactChannel::Meeting as i32),
        "other" => Some(v1::ContactChannel::Other as i32),
        "" => Some(v1::ContactChannel::Unspecified as i32),
        _ => None,
    }
}

/// The channel words this API takes, for its problem details (the
/// service's own details name the proto's enum values instead).
const CHANNEL_WORDS: &str = "phone, email, meeting or other";

async fn command(
    State(grpc): State<TicketGrpc>,
    Path(command): Path<String>,
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
                "Bad request body",
                format!("the body could not be read: {e}"),
                None,
            );
        }
    };
    let Some((id, verb)) = command.split_once(':') else {
        return unknown(&command);
    };
    const VERBS: [&str; 6] = ["contact", "note", "reply", "reassign", "close", "reopen"];
    if !VERBS.contains(&verb) {
        return unknown(&command);
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            let t = t.split(';').next().unwrap_or_default().trim();
            t == "application/json" || t.ends_with("+json")
        });
    if !json_type {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the command as Content-Type: application/json".into(),
            None,
        );
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                "the body must be a JSON object with the command's fields".into(),
                None,
            );
        }
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
    let strings: &[&str] = &[
        "request_id",
        "actor",
        "channel",
        "summary",
        "text",
        "owner_email",
        "reason",
        "root_cause_category",
        "root_cause",
        "actions_taken",
    ];
    let bad = wrong_types(&body, strings);
    if !bad.is_empty() {
        return invalid(
            "invalid command: some fields have the wrong type".into(),
            bad,
        );
    }
    let (request_id, ticket_id, actor) = (
        text(&body, "request_id"),
        id.to_string(),
        text(&body, "actor"),
    );
    let word = text(&body, "channel");
    // The channel's problem detail in this API's words (contacts only).
    let own_words = match (verb, channel(&word)) {
        ("contact", Some(_)) => vec![("channel", format!("is required: {CHANNEL_WORDS}"))],
        ("contact", None) => vec![(
            "channel",
            format!("{word:?} is not a channel: use {CHANNEL_WORDS}"),
        )],
        _ => Vec::new(),
    };
    let answer = match verb {
        "contact" => {
            grpc.log_contact(tonic::Request::new(v1::LogContactRequest {
                request_id,
                ticket_id,
                // An unknown word goes as no channel: the service then
                // names every bad field, the channel's detail rewritten below.
                channel: channel(&word).unwrap_or(v1::ContactChannel::Unspecified as i32),
                summary: text(&body, "summary"),
                actor,
            }))
            .await
        }
        "note" => {
            grpc.add_note(tonic::Request::new(v1::AddNoteRequest {
                request_id,
                ticket_id,
                text: text(&body, "text"),
                actor,
            }))
            .await
        }
        "reply" => {
            grpc.record_customer_reply(tonic::Request::new(v1::RecordCustomerReplyRequest {
                request_id,
                ticket_id,
                text: text(&body, "text"),
                actor,
            }))
            .await
        }
        "reassign" => {
            grpc.reassign_ticket(tonic::Request::new(v1::ReassignTicketRequest {
                request_id,
                ticket_id,
                new_owner_email: text(&body, "owner_email"),
                reason: text(&body, "reason"),
                actor,
            }))
            .await
        }
        "close" => {
            let opportunity = match body.get("opportunity") {
                None | Some(Value::Null) => None,
                Some(o) => {
                    let kind = o.get("kind").and_then(Value::as_str);
                    let amount = o.get("amount");
                    match (kind, amount) {
                        (Some(k), None | Some(Value::Null)) => Some(v1::Opportunity {
                            kind: k.to_string(),
                            amount: None,
                        }),
                        (Some(k), Some(a)) if a.is_number() => Some(v1::Opportunity {
                            kind: k.to_string(),
                            amount: a.as_f64(),
                        }),
                        _ => {
                            return invalid(
                                "invalid command: opportunity must be {\"kind\": \"...\", \"amount\": number (optional)}".into(),
                                vec![json!({"field": "opportunity", "detail": "must be an object with a string kind and an optional numeric amount"})],
                            );
                        }
                    }
                }
            };
            grpc.close_ticket(tonic::Request::new(v1::CloseTicketRequest {
                request_id,
                ticket_id,
                root_cause_category: text(&body, "root_cause_category"),
                root_cause: text(&body, "root_cause"),
                actions_taken: text(&body, "actions_taken"),
                opportunity,
                actor,
            }))
            .await
        }
        _ => {
            grpc.reopen_ticket(tonic::Request::new(v1::ReopenTicketRequest {
                request_id,
                ticket_id,
                reason: text(&body, "reason"),
                actor,
            }))
            .await
        }
    };
    match answer {
        Ok(r) => {
            let r = r.into_inner();
            let t = r.ticket.unwrap_or_default();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                json!({
                    "ticket_id": t.id,
                    "status": closeloop_proto::convert::status_word(t.status),
                    "owner_email": t.owner_email,
                    "sequence": r.sequence,
                    "replayed": r.replayed,
                })
                .to_string(),
            )
                .into_response()
        }
        Err(s) => status_problem(&s, &own_words),
    }
}

fn unknown(command: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!(
            "no command {command:?}: use /v1/tickets/{{id}}:contact, :note, :reply, :reassign, :close or :reopen"
        ),
        None,
    )
}

fn invalid(detail: String, errors: Vec<Value>) -> Response {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-command",
        "Invalid command",
        detail,
        Some(("errors", Value::Array(errors))),
    )
}

/// The gRPC answer as a problem document, with the same details, except
/// that a bad field named in `own_words` is described as given there (the
/// HTTP form of a field the service knows in its gRPC form).
fn status_problem(s: &tonic::Status, own_words: &[(&str, String)]) -> Response {
    let violations: Vec<FieldViolation> = s
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| {
                    let detail = own_words
                        .iter()
                        .find(|(f, _)| *f == v.field)
                        .map_or_else(|| v.description.clone(), |(_, d)| d.clone());
                    FieldViolation::new(v.field.clone(), detail)
                })
                .collect()
        })
        .unwrap_or_default();
    let rewritten = violations
        .iter()
        .any(|v| own_words.iter().any(|(o, _)| *o == v.field));
    let fields: Vec<Value> = violations
        .iter()
        .map(|v| json!({"field": v.field, "detail": v.description}))
        .collect();
    let reason = s.get_details_error_info().map(|i| i.reason);
    match s.code() {
        // The service's message lists its details; when one was rewritten,
        // so is the message, in the service's form.
        Code::InvalidArgument if rewritten => invalid(
            closeloop_proto::status::invalid_message(&violations),
            fields,
        ),
        Code::InvalidArgument => invalid(s.message().to_string(), fields),
        Code::NotFound => problem(
            StatusCode::NOT_FOUND,
            "ticket-not-found",
            "Not found",
            s.message().to_string(),
            (!fields.is_empty()).then_some(("errors", Value::Array(fields))),
        ),
        Code::FailedPrecondition | Code::AlreadyExists => problem(
            StatusCode::CONFLICT,
            "command-refused",
            "Command refused",
            s.message().to_string(),
            reason.map(|r| ("reason", Value::String(r))),
        ),
        _ => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Unavailable",
            format!("{}; retry with the same request_id", s.message()),
            None,
        ),
    }
}
