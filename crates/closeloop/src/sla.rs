//! `closeloop sla ...`, `closeloop reports weekly` and `closeloop admin
//! clock ...`: the escalation role's and the clock's clients.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use closeloop_proto::convert;
use closeloop_proto::v1;
use closeloop_proto::v1::clock_service_client::ClockServiceClient;
use closeloop_proto::v1::escalation_service_client::EscalationServiceClient;
use serde_json::json;

use crate::client::{self, CliError};
use crate::output::{self, outln, rfc3339, text};

#[derive(Args)]
pub struct SlaArgs {
    /// gRPC address of a closeloop server running the escalation role.
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    #[command(subcommand)]
    command: SlaCommand,
}

#[derive(Subcommand)]
enum SlaCommand {
    /// Restart the clocks of a workflow's open tickets under the workflow's
    /// current policy (after changing it in the programs file), counted
    /// from each ticket's opening. Tickets already under it are left alone.
    Recompute {
        #[arg(long)]
        workflow: String,
        /// Idempotency key (default: the new policy's fingerprint).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Timers not fired yet, soonest first.
    Timers {
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Args)]
pub struct ReportsArgs {
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Open tickets that are breached, escalated or within 24 h of a
    /// breach, grouped by owner.
    Weekly {
        /// An account region such as EMEA (default: every region).
        #[arg(long, default_value = "")]
        region: String,
        /// Evaluate as of this time (RFC 3339; default: now).
        #[arg(long)]
        as_of: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
}

#[derive(Args)]
pub struct AdminArgs {
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// The time closeloop runs on; moving a simulated one
    /// (`serve --clock simulated`).
    Clock {
        #[command(subcommand)]
        command: Option<ClockCommand>,
    },
}

#[derive(Subcommand)]
enum ClockCommand {
    /// Show the time and the kind of clock.
    Show,
    /// Set a simulated clock (RFC 3339, e.g. 2026-01-05T09:00:00Z; only forward).
    Set { to: String },
    /// Move a simulated clock forward, e.g. 7d, 36h, 90m.
    Advance { by: String },
}

pub fn parse_time(field: &str, s: &str) -> Result<prost_types::Timestamp, CliError> {
    humantime::parse_rfc3339_weak(s.trim())
        .map(|t| convert::timestamp(closeloop_domain::Timestamp::from_system_time(t)))
        .map_err(|e| CliError::Usage(format!("{field} {s:?} is not an RFC 3339 time: {e}")))
}

pub async fn run_sla(args: SlaArgs) -> ExitCode {
    let server = args.server.clone();
    match sla(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => client::report(&server, e),
    }
}

async fn sla(args: SlaArgs) -> Result<(), CliError> {
    let mut c = EscalationServiceClient::new(client::channel(&args.server).await?);
    match args.command {
        SlaCommand::Recompute {
            workflow,
            request_id,
        } => {
            let r = c
                .recompute_sla(v1::RecomputeSlaRequest {
                    workflow_id: workflow.clone(),
                    request_id: request_id.unwrap_or_default(),
                })
                .await?
                .into_inner();
            outln!(
                "workflow {workflow}: {} open tickets recomputed, {} unchanged",
                r.recomputed,
                r.unchanged
            );
        }
        SlaCommand::Timers { ticket, limit } => {
            let r = c
                .list_timers(v1::ListTimersRequest {
                    limit,
                    ticket_id: ticket.unwrap_or_default(),
                })
                .await?
                .into_inner();
            for t in &r.timers {
                outln!("{}  {}  {}", text(&rfc3339(&t.due_at)), t.ticket_id, t.key);
            }
            outln!("{} of {} pending timers", r.timers.len(), r.total);
        }
    }
    Ok(())
}

pub async fn run_reports(args: ReportsArgs) -> ExitCode {
    let server = args.server.clone();
    match reports(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => client::report(&server, e),
    }
}

async fn reports(args: ReportsArgs) -> Result<(), CliError> {
    let ReportCommand::Weekly {
        region,
        as_of,
        output: format,
    } = args.command;
    let as_of = as_of.map(|t| parse_time("--as-of", &t)).transpose()?;
    let mut c = EscalationServiceClient::new(client::channel(&args.server).await?);
    let r = c
        .weekly_report(v1::WeeklyReportRequest { region, as_of })
        .await?
        .into_inner();
    if r.region_unknown {
        // On stderr: the report itself (empty) stays what a script reads.
        eprintln!(
            "note: no ticket is in region {:?}; {}",
            r.region,
            if r.known_regions.is_empty() {
                "no ticket has a region (an account's region is set in the directory)".to_string()
            } else {
                format!("the regions of tickets are: {}", r.known_regions.join(", "))
            }
        );
    }
    match format {
        Format::Json => output::print_json(&json!({
            "region": r.region,
            "as_of": rfc3339(&r.as_of),
            "tickets": r.tickets,
            "owners": r.owners.iter().map(|o| json!({
                "owner": o.owner_email,
                "tickets": o.tickets.iter().map(|t| json!({
                    "ticket_id": t.ticket_id,
                    "account_id": t.account_id,
                    "title": t.title,
                    "program_id": t.program_id,
                    "region": t.region,
                    "opened_at": rfc3339(&t.opened_at),
                    "age_days": t.age_days,
                    "reasons": t.reasons.split(',').collect::<Vec<_>>(),
                    "first_contact_due": rfc3339(&t.first_contact_due),
                    "close_due": rfc3339(&t.close_due),
                    "escalation_level": t.escalation_level,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record([
                "owner",
                "ticket_id",
                "account_id",
                "title",
                "program_id",
                "region",
                "opened_at",
                "age_days",
                "reasons",
                "first_contact_due",
                "close_due",
                "escalation_level",
            ]);
            for o in &r.owners {
                for t in &o.tickets {
                    let _ = w.write_record([
                        o.owner_email.clone(),
                        t.ticket_id.clone(),
                        t.account_id.clone(),
                        t.title.clone(),
                        t.program_id.clone(),
                        t.region.clone(),
                        text(&rfc3339(&t.opened_at)),
                        t.age_days.to_string(),
                        t.reasons.clone(),
                        text(&rfc3339(&t.first_contact_due)),
                        text(&rfc3339(&t.close_due)),
                        t.escalation_level.to_string(),
                    ]);
                }
            }
            let bytes = w.into_inner().unwrap_or_default();
            output::write_stdout(format_args!("{}", String::from_utf8_lossy(&bytes)));
        }
        Format::Table => {
            let region = if r.region.is_empty() {
                "all regions"
            } else {
                &r.region
            };
            outln!(
                "weekly report, {region}, as of {}: {} tickets need attention",
                text(&rfc3339(&r.as_of)),
                r.tickets
            );
            for o in &r.owners {
                outln!();
                outln!("{}", o.owner_email);
                for t in &o.tickets {
                    let level = if t.escalation_level > 0 {
                        format!(" (level {})", t.escalation_level)
                    } else {
                        String::new()
                    };
                    outln!(
                        "  {}  {:<12} {:>3}d  {}{level}  contact by {}  close by {}  {}",
                        t.ticket_id,
                        t.account_id,
                        t.age_days,
                        t.reasons,
                        text(&rfc3339(&t.first_contact_due)),
                        text(&rfc3339(&t.close_due)),
                        t.title
                    );
                }
            }
        }
    }
    Ok(())
}

pub async fn run_admin(args: AdminArgs) -> ExitCode {
    let server = args.server.clone();
    match admin(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => client::report(&server, e),
    }
}

async fn admin(args: AdminArgs) -> Result<(), CliError> {
    let AdminCommand::Clock { command } = args.command;
    let mut c = ClockServiceClient::new(client::channel(&args.server).await?);
    let state = match command.unwrap_or(ClockCommand::Show) {
        ClockCommand::Show => c.get_clock(v1::GetClockRequest {}).await?,
        ClockCommand::Set { to } => {
            let to = parse_time("time", &to)?;
            c.set_clock(v1::SetClockRequest { to: Some(to) }).await?
        }
        ClockCommand::Advance { by } => {
            let d: Duration = humantime::parse_duration(by.trim()).map_err(|e| {
                CliError::Usage(format!(
                    "{by:?} is not a duration such as 7d, 36h or 90m: {e}"
                ))
            })?;
            c.advance_clock(v1::AdvanceClockRequest {
                seconds: d.as_secs(),
            })
            .await?
        }
    }
    .into_inner();
    outln!("{} ({} clock)", text(&rfc3339(&state.now)), state.kind);
    Ok(())
}
