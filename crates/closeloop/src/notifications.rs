//! `closeloop notifications`: what the notification role sent and could not
//! send, redriving what gave up, and checking templates before a start.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use closeloop_proto::v1;
use closeloop_proto::v1::notification_service_client::NotificationServiceClient;

use crate::client::{self, CliError, exit};
use crate::output::outln;

#[derive(Args)]
pub struct NotificationsArgs {
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
    command: NotificationsCommand,
}

#[derive(Subcommand)]
enum NotificationsCommand {
    /// Notifications that gave up (after their last retry, or refused by
    /// the receiver), newest first: id, ticket, kind, channel, recipient,
    /// attempts and the reason.
    Failed {
        /// Only this ticket's.
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Send a notification that gave up again, after fixing the cause: a
    /// new round of attempts on the retry schedule. Exit 5 unless it gave
    /// up, 4 for an unknown id.
    Redrive {
        /// The notification's id, as `failed` lists it.
        id: String,
    },
    /// Compile the notification templates (the shipped ones, overridden by
    /// DIR's) and render each for every notification kind, as the role does
    /// at start: exit 0 when all render, 3 with the first error (its file,
    /// line and kind).
    CheckTemplates {
        /// The template directory `serve --templates` would use.
        #[arg(long, env = "CLOSELOOP_TEMPLATES")]
        templates: Option<PathBuf>,
    },
}

pub async fn run(args: NotificationsArgs) -> ExitCode {
    match &args.command {
        NotificationsCommand::Failed { ticket, limit } => {
            match failed(&args, ticket.as_deref(), *limit).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => client::report(&args.server, e),
            }
        }
        NotificationsCommand::Redrive { id } => match redrive(&args, id).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => client::report(&args.server, e),
        },
        NotificationsCommand::CheckTemplates { templates } => check_templates(templates.clone()),
    }
}

async fn failed(
    args: &NotificationsArgs,
    ticket: Option<&str>,
    limit: u32,
) -> Result<(), CliError> {
    let mut c = NotificationServiceClient::new(client::channel(&args.server).await?);
    let r = c
        .list_notifications(v1::ListNotificationsRequest {
            status: "gave_up".into(),
            ticket_id: ticket.unwrap_or_default().into(),
            limit,
        })
        .await?
        .into_inner();
    if args.output == "json" {
        let mut v = serde_json::json!({});
        v["notifications"] = crate::output::notifications_json(&r.notifications);
        crate::output::print_json(&v);
        return Ok(());
    }
    if r.notifications.is_empty() {
        outln!("no notification gave up");
        return Ok(());
    }
    let head = [
        "ID",
        "TICKET",
        "KIND",
        "CHAN",
        "RECIPIENT",
        "ATTEMPTS",
        "REASON",
    ]
    .map(String::from);
    let lines: Vec<Vec<String>> = r
        .notifications
        .iter()
        .map(|n| {
            vec![
                n.id.clone(),
                n.ticket_id.clone(),
                n.kind.clone(),
                n.channel.clone(),
                n.recipient.clone(),
                n.attempts.to_string(),
                n.last_error.clone(),
            ]
        })
        .collect();
    crate::output::table(&head, &lines, |i| i == 5);
    Ok(())
}

async fn redrive(args: &NotificationsArgs, id: &str) -> Result<(), CliError> {
    let mut c = NotificationServiceClient::new(client::channel(&args.server).await?);
    let r = c
        .redrive_notification(v1::RedriveNotificationRequest {
            notification_id: id.to_string(),
        })
        .await?
        .into_inner();
    if args.output == "json" {
        crate::output::print_json(&serde_json::json!({"id": id, "sequence": r.sequence}));
    } else {
        outln!(
            "notification {id} redriven (event {}): it is sent again shortly",
            r.sequence
        );
    }
    Ok(())
}

fn check_templates(templates: Option<PathBuf>) -> ExitCode {
    match closeloop_notification::templates::Templates::load(templates.as_deref()) {
        Ok(_) => {
            outln!(
                "templates ok: {} for {} notification kinds, and {} ({})",
                closeloop_notification::templates::PARTS.join(", "),
                closeloop_notification::templates::KINDS.len(),
                closeloop_notification::templates::DIGEST_PARTS.join(", "),
                match &templates {
                    Some(d) => format!("{} over the shipped ones", d.display()),
                    None => "the shipped ones".to_string(),
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit::INVALID)
        }
    }
}
