//! `closeloop tickets ...`: the ticket client.

use crate::output::outln;
use std::process::ExitCode;

use crate::client::{self, CliError};
use crate::output;
use clap::{Args, Subcommand, ValueEnum};
use closeloop_proto::v1;
use closeloop_proto::v1::ticket_service_client::TicketServiceClient;

#[derive(Args)]
pub struct TicketsArgs {
    /// gRPC address of a closeloop server running the ticketing role.
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Output: readable tables, JSON for scripts, or just the ticket id(s).
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value = "table"
    )]
    output: Output,
    /// Idempotency key of a command (default: a new random one). Reuse it to retry safely.
    #[arg(long, global = true)]
    request_id: Option<String>,
    /// Who is acting (an e-mail), recorded on the event.
    #[arg(long, global = true, env = "CLOSELOOP_ACTOR")]
    actor: Option<String>,
    #[command(subcommand)]
    command: TicketCommand,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Id,
}

#[derive(Subcommand)]
enum TicketCommand {
    /// Open a ticket by hand (e.g. after a phone call).
    Open {
        #[arg(long)]
        account: String,
        #[arg(long)]
        owner_email: String,
        #[arg(long)]
        program: Option<String>,
        #[arg(long)]
        title: Option<String>,
    },
    /// Log a contact with the customer.
    Contact {
        id: String,
        /// phone, email, meeting or other.
        #[arg(long)]
        channel: String,
        #[arg(long)]
        summary: String,
    },
    /// Add a note.
    Note {
        id: String,
        #[arg(long)]
        text: String,
    },
    /// Hand the ticket to another owner.
    Reassign {
        id: String,
        #[arg(long)]
        owner_email: String,
        #[arg(long)]
        reason: String,
    },
    /// Record the customer's reply.
    Reply {
        id: String,
        #[arg(long)]
        text: String,
    },
    /// Close with the required documentation.
    Close {
        id: String,
        /// product, implementation, support, pricing, relationship, communication, partner or other.
        #[arg(long)]
        root_cause_category: String,
        #[arg(long)]
        root_cause: String,
        /// The actions taken.
        #[arg(long)]
        actions: String,
        /// An opportunity found, as KIND or KIND:AMOUNT (e.g. upsell:25000).
        #[arg(long)]
        opportunity: Option<String>,
    },
    /// Reopen a closed ticket.
    Reopen {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Mark the ticket as waiting on the customer (pauses its closure
    /// clock when its workflow says so; a customer reply or `resume` ends it).
    Wait {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// End a wait on the customer.
    Resume {
        id: String,
        #[arg(long, default_value = "resumed by the owner")]
        reason: String,
    },
    /// Show one ticket, its SLA clocks and its history.
    Show { id: String },
    /// List tickets, newest first.
    List {
        /// open, contacted or closed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        owner_email: Option<String>,
        #[arg(long)]
        program: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        #[arg(long)]
        page_token: Option<String>,
    },
}

pub async fn run(args: TicketsArgs) -> ExitCode {
    match execute(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => client::report(&args.server, e),
    }
}

fn parse_opportunity(s: &str) -> Result<v1::Opportunity, CliError> {
    let (kind, amount) = match s.split_once(':') {
        Some((k, a)) => {
            let amount: f64 = a.trim().parse().map_err(|_| {
                CliError::Usage(format!(
                    "--opportunity {s:?}: amount {a:?} is not a number (use KIND or KIND:AMOUNT)"
                ))
            })?;
            (k, Some(amount))
        }
        None => (s, None),
    };
    Ok(v1::Opportunity {
        kind: kind.trim().to_string(),
        amount,
    })
}

fn parse_channel(s: &str) -> Result<v1::ContactChannel, CliError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "phone" => Ok(v1::ContactChannel::Phone),
        "email" => Ok(v1::ContactChannel::Email),
        "meeting" => Ok(v1::ContactChannel::Meeting),
        "other" => Ok(v1::ContactChannel::Other),
        _ => Err(CliError::Usage(format!(
            "--channel {s:?} is not a channel; use phone, email, meeting or other"
        ))),
    }
}

fn parse_status(s: &str) -> Result<v1::TicketStatus, CliError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "open" => Ok(v1::TicketStatus::Open),
        "contacted" => Ok(v1::TicketStatus::Contacted),
        "closed" => Ok(v1::TicketStatus::Closed),
        _ => Err(CliError::Usage(format!(
            "--status {s:?} is not a status; use open, contacted or closed"
        ))),
    }
}

async fn execute(args: &TicketsArgs) -> Result<(), CliError> {
    let request_id = args
        .request_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let actor = args.actor.clone().unwrap_or_default();
    // Validate local arguments before connecting.
    let prepared = match &args.command {
        TicketCommand::Contact { channel, .. } => Some(parse_channel(channel)? as i32),
        _ => None,
    };
    let opportunity = match &args.command {
        TicketCommand::Close {
            opportunity: Some(o),
            ..
        } => Some(parse_opportunity(o)?),
        _ => None,
    };
    let status = match &args.command {
        TicketCommand::List {
            status: Some(s), ..
        } => parse_status(s)? as i32,
        _ => 0,
    };
    let mut client = TicketServiceClient::new(client::channel(&args.server).await?);
    let resp = match &args.command {
        TicketCommand::Open {
            account,
            owner_email,
            program,
            title,
        } => {
            client
                .open_ticket(v1::OpenTicketRequest {
                    request_id,
                    account_id: account.clone(),
                    owner_email: owner_email.clone(),
                    program_id: program.clone().unwrap_or_default(),
                    title: title.clone().unwrap_or_default(),
                    actor,
                })
                .await
        }
        TicketCommand::Contact { id, summary, .. } => {
            client
                .log_contact(v1::LogContactRequest {
                    request_id,
                    ticket_id: id.clone(),
                    channel: prepared.unwrap_or_default(),
                    summary: summary.clone(),
                    actor,
                })
                .await
        }
        TicketCommand::Note { id, text } => {
            client
                .add_note(v1::AddNoteRequest {
                    request_id,
                    ticket_id: id.clone(),
                    text: text.clone(),
                    actor,
                })
                .await
        }
        TicketCommand::Reassign {
            id,
            owner_email,
            reason,
        } => {
            client
                .reassign_ticket(v1::ReassignTicketRequest {
                    request_id,
                    ticket_id: id.clone(),
                    new_owner_email: owner_email.clone(),
                    reason: reason.clone(),
                    actor,
                })
                .await
        }
        TicketCommand::Reply { id, text } => {
            client
                .record_customer_reply(v1::RecordCustomerReplyRequest {
                    request_id,
                    ticket_id: id.clone(),
                    text: text.clone(),
                    actor,
                })
                .await
        }
        TicketCommand::Close {
            id,
            root_cause_category,
            root_cause,
            actions,
            ..
        } => {
            client
                .close_ticket(v1::CloseTicketRequest {
                    request_id,
                    ticket_id: id.clone(),
                    root_cause_category: root_cause_category.clone(),
                    root_cause: root_cause.clone(),
                    actions_taken: actions.clone(),
                    opportunity,
                    actor,
                })
                .await
        }
        TicketCommand::Reopen { id, reason } => {
            client
                .reopen_ticket(v1::ReopenTicketRequest {
                    request_id,
                    ticket_id: id.clone(),
                    reason: reason.clone(),
                    actor,
                })
                .await
        }
        TicketCommand::Wait { id, reason } => {
            client
                .wait_on_customer(v1::WaitRequest {
                    request_id,
                    ticket_id: id.clone(),
                    reason: reason.clone(),
                    actor,
                })
                .await
        }
        TicketCommand::Resume { id, reason } => {
            client
                .end_wait(v1::WaitRequest {
                    request_id,
                    ticket_id: id.clone(),
                    reason: reason.clone(),
                    actor,
                })
                .await
        }
        TicketCommand::Show { id } => {
            let r = client
                .get_ticket(v1::GetTicketRequest {
                    ticket_id: id.clone(),
                    min_sequence: 0,
                })
                .await
                .map_err(CliError::Rpc)?
                .into_inner();
            let ticket = r.ticket.unwrap_or_default();
            match args.output {
                Output::Json => {
                    let mut v = output::ticket_json(&ticket, Some(&r.activity));
                    v["notifications"] = output::notifications_json(&r.notifications);
                    v["sla"] = r
                        .sla
                        .as_ref()
                        .map_or(serde_json::Value::Null, output::sla_json);
                    output::print_json(&v)
                }
                Output::Table => {
                    output::print_ticket(&ticket, Some(&r.activity));
                    if let Some(s) = &r.sla {
                        output::print_sla(s);
                    }
                    output::print_notifications(&r.notifications);
                }
                Output::Id => outln!("{}", ticket.id),
            }
            return Ok(());
        }
        TicketCommand::List {
            owner_email,
            program,
            account,
            page_size,
            page_token,
            ..
        } => {
            let r = client
                .list_tickets(v1::ListTicketsRequest {
                    status,
                    owner_email: owner_email.clone().unwrap_or_default(),
                    program_id: program.clone().unwrap_or_default(),
                    account_id: account.clone().unwrap_or_default(),
                    page_size: *page_size,
                    page_token: page_token.clone().unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(CliError::Rpc)?
                .into_inner();
            match args.output {
                Output::Json => output::print_json(&output::list_json(&r)),
                Output::Table => output::print_list(&r),
                Output::Id => r.tickets.iter().for_each(|t| outln!("{}", t.id)),
            }
            return Ok(());
        }
    };
    let r = resp.map_err(CliError::Rpc)?.into_inner();
    let ticket = r.ticket.unwrap_or_default();
    match args.output {
        Output::Json => output::print_json(&output::ticket_json(&ticket, None)),
        Output::Id => outln!("{}", ticket.id),
        Output::Table => {
            if r.replayed {
                outln!("(request already applied; nothing new was written)");
            }
            output::print_ticket(&ticket, None)
        }
    }
    Ok(())
}
