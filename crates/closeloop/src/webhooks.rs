//! `closeloop webhooks`: outbound webhook endpoints (connected systems that
//! get a signed delivery of every ticket event they ask for).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use closeloop_proto::v1;
use closeloop_proto::v1::notification_service_client::NotificationServiceClient;
use serde_json::json;

use crate::client::{self, CliError};
use crate::output::outln;

#[derive(Args)]
pub struct WebhooksArgs {
    /// gRPC address of a closeloop server running the notification role.
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Output: a table, or JSON for scripts.
    #[arg(short = 'o', long = "output", global = true, default_value = "table", value_parser = ["table", "json"])]
    output: String,
    #[command(subcommand)]
    command: WebhooksCommand,
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Register an endpoint: every ticket event of the given types is
    /// POSTed to URL, signed (Standard Webhooks). Prints the endpoint's id
    /// and its secret (give the secret to the receiver). Exit 3 for a bad
    /// URL, event type or secret.
    Add {
        /// http(s) URL of the receiver.
        url: String,
        /// Comma-separated event types (ticket.opened, ticket.contact_logged,
        /// ticket.note_added, ticket.owner_reassigned, ticket.customer_replied,
        /// ticket.closed, ticket.reopened, ticket.feedback_revised); default all.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// A file holding the secret (whsec_ + base64 of 24-64 bytes);
        /// default: one is generated.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// What the endpoint is, for people reading `list`.
        #[arg(long, default_value = "")]
        description: String,
        /// Request id: retrying with the same one registers the endpoint
        /// once (default: a new one).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// The endpoints: id, status, URL, event types and deliveries
    /// (delivered, pending, gave up).
    List {
        /// Include removed endpoints.
        #[arg(long)]
        all: bool,
    },
    /// Stop delivering to an endpoint, for good. Exit 4 for an unknown id.
    Remove { id: String },
    /// Sign with a new secret from now on, and with the old one too for
    /// --keep-old, so the receiver can switch over. Prints the new secret.
    RotateSecret {
        id: String,
        /// A file holding the new secret; default: one is generated.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// How long the old secret keeps signing too (e.g. 24h, 0s).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        keep_old: std::time::Duration,
    },
    /// Resume deliveries to an endpoint that was disabled (by a 410 Gone
    /// answer, say). Deliveries that gave up meanwhile are listed by
    /// `closeloop notifications failed` and can be redriven.
    Enable { id: String },
    /// Send a signed `webhook.test` delivery now and show the answer.
    /// Exit 0 when the endpoint accepted it (2xx), 1 when not.
    Test { id: String },
}

fn read_secret(path: &Option<PathBuf>) -> Result<String, CliError> {
    match path {
        None => Ok(String::new()),
        Some(p) => std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .map_err(|e| {
                CliError::Usage(format!("cannot read --secret-file {}: {e}", p.display()))
            }),
    }
}

pub async fn run(args: WebhooksArgs) -> ExitCode {
    match run_inner(&args).await {
        Ok(code) => code,
        Err(e) => client::report(&args.server, e),
    }
}

fn webhook_json(w: &v1::Webhook) -> serde_json::Value {
    json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "description": w.description,
        "status": w.status,
        "disabled_reason": w.disabled_reason,
        "previous_secret_until": w.previous_secret_until.as_ref().map(time),
        "delivered": w.delivered,
        "pending": w.pending,
        "gave_up": w.gave_up,
    })
}

fn time(t: &prost_types::Timestamp) -> String {
    humantime::format_rfc3339_seconds(closeloop_proto::convert::from_timestamp(t).to_system_time())
        .to_string()
}

fn events_text(w: &v1::Webhook) -> String {
    if w.events.is_empty() {
        "all".to_string()
    } else {
        w.events.join(",")
    }
}

/// Prints an endpoint a command changed: as JSON, or `webhook endpoint ID
/// <what>`.
fn changed(json_out: bool, r: v1::WebhookResponse, what: &str) {
    let w = r.webhook.unwrap_or_default();
    if json_out {
        crate::output::print_json(&webhook_json(&w));
    } else {
        outln!("webhook endpoint {} {what}", w.id);
    }
}

async fn run_inner(args: &WebhooksArgs) -> Result<ExitCode, CliError> {
    let json_out = args.output == "json";
    // A secret file is read before the server is asked: an unreadable file
    // is the error to report (exit 3), whether or not a server answers.
    let secret = match &args.command {
        WebhooksCommand::Add { secret_file, .. }
        | WebhooksCommand::RotateSecret { secret_file, .. } => read_secret(secret_file)?,
        _ => String::new(),
    };
    let mut c = NotificationServiceClient::new(client::channel(&args.server).await?);
    match &args.command {
        WebhooksCommand::Add {
            url,
            events,
            secret_file: _,
            description,
            request_id,
        } => {
            let r = c
                .add_webhook(v1::AddWebhookRequest {
                    url: url.clone(),
                    events: events.iter().map(|e| e.trim().to_string()).collect(),
                    description: description.clone(),
                    secret,
                    request_id: request_id
                        .clone()
                        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                })
                .await?
                .into_inner();
            let w = r.webhook.unwrap_or_default();
            if json_out {
                let mut v = webhook_json(&w);
                v["secret"] = json!(r.secret);
                crate::output::print_json(&v);
            } else {
                outln!("webhook endpoint {} registered", w.id);
                outln!("  url:    {}", w.url);
                outln!("  events: {}", events_text(&w));
                outln!("  secret: {}", r.secret);
                outln!("give the secret to the receiver: it verifies webhook-signature with it");
            }
        }
        WebhooksCommand::List { all } => {
            let r = c
                .list_webhooks(v1::ListWebhooksRequest { all: *all })
                .await?
                .into_inner();
            if json_out {
                crate::output::print_json(&json!({
                    "webhooks": r.webhooks.iter().map(webhook_json).collect::<Vec<_>>()
                }));
            } else if r.webhooks.is_empty() {
                outln!("no webhook endpoint (add one with `closeloop webhooks add URL`)");
            } else {
                let head = [
                    "ID",
                    "STATUS",
                    "DELIVERED",
                    "PENDING",
                    "GAVE_UP",
                    "URL",
                    "EVENTS",
                ]
                .map(String::from);
                let lines: Vec<Vec<String>> = r
                    .webhooks
                    .iter()
                    .map(|w| {
                        vec![
                            w.id.clone(),
                            w.status.clone(),
                            w.delivered.to_string(),
                            w.pending.to_string(),
                            w.gave_up.to_string(),
                            w.url.clone(),
                            if w.disabled_reason.is_empty() {
                                events_text(w)
                            } else {
                                format!("{}  ({})", events_text(w), w.disabled_reason)
                            },
                        ]
                    })
                    .collect();
                crate::output::table(&head, &lines, |i| (2..=4).contains(&i));
            }
        }
        WebhooksCommand::Remove { id } => {
            let r = c
                .remove_webhook(v1::WebhookRequest { id: id.clone() })
                .await?
                .into_inner();
            changed(json_out, r, "removed");
        }
        WebhooksCommand::RotateSecret {
            id,
            secret_file: _,
            keep_old,
        } => {
            let r = c
                .rotate_webhook_secret(v1::RotateWebhookSecretRequest {
                    id: id.clone(),
                    secret,
                    keep_previous_secs: Some(keep_old.as_secs()),
                })
                .await?
                .into_inner();
            let w = r.webhook.unwrap_or_default();
            if json_out {
                let mut v = webhook_json(&w);
                v["secret"] = json!(r.secret);
                crate::output::print_json(&v);
            } else {
                outln!("webhook endpoint {}: new secret {}", w.id, r.secret);
                match &w.previous_secret_until {
                    Some(t) if keep_old.as_secs() > 0 => outln!(
                        "deliveries carry a signature by the old secret too until {}",
                        time(t)
                    ),
                    _ => outln!("the old secret signs nothing from now on"),
                }
            }
        }
        WebhooksCommand::Enable { id } => {
            let r = c
                .enable_webhook(v1::WebhookRequest { id: id.clone() })
                .await?
                .into_inner();
            changed(json_out, r, "enabled: deliveries resume");
        }
        WebhooksCommand::Test { id } => {
            let r = c
                .test_webhook(v1::WebhookRequest { id: id.clone() })
                .await?
                .into_inner();
            if json_out {
                crate::output::print_json(&json!({
                    "delivered": r.delivered,
                    "status_code": r.status_code,
                    "error": r.error,
                    "webhook_id": r.webhook_id,
                    "elapsed_ms": r.elapsed_ms,
                }));
            } else if r.delivered {
                outln!(
                    "delivered: HTTP {} in {} ms (webhook-id {})",
                    r.status_code,
                    r.elapsed_ms,
                    r.webhook_id
                );
            } else {
                outln!("not delivered: {} ({} ms)", r.error, r.elapsed_ms);
            }
            if !r.delivered {
                return Ok(ExitCode::from(client::exit::FAILURE));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
