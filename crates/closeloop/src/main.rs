//! `closeloop`: runs the services (`closeloop serve --roles ...`) and is the
//! admin/client CLI (`closeloop tickets ...`) talking gRPC to a server.

mod analytics;
mod client;
mod directory;
mod feedback;
mod http;
mod intake;
mod notifications;
mod output;
mod programs;
mod sla;
mod status;
mod telemetry;
mod tickets;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

/// jemalloc, not the system's malloc: the services allocate and free many
/// small, short-lived values (an event's decoded fields, a batch's rows), on
/// which glibc's malloc spent a third of an analytics rebuild's CPU, and
/// kept more memory (see `docs/operations.md`). The benches declare the same.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "closeloop", version, about = "Close the loop on customer feedback", long_about = None)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CLOSELOOP_LOG_FORMAT"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run closeloop services (all roles locally, one role per Deployment on Kubernetes).
    Serve(Box<ServeArgs>),
    /// Work with tickets on a running server.
    Tickets(tickets::TicketsArgs),
    /// Work with programs files (listening programs and their workflows).
    Programs(programs::ProgramsArgs),
    /// Import and look up accounts, people and teams.
    Directory(directory::DirectoryArgs),
    /// Submit canonical feedback documents to a running server (HTTP intake).
    Feedback(feedback::FeedbackArgs),
    /// The NATS intake's rejected (dead-lettered) messages: list and redrive
    /// (older names of `closeloop dlq list|redrive`).
    Intake(intake::IntakeArgs),
    /// Every consumer's dead letters: list them, redrive intake messages,
    /// replay an event consumer from a sequence.
    Dlq(intake::DlqArgs),
    /// Each process's roles, readiness, and each projector's and consumer's
    /// position, lag and dead letters (from its /readyz and /metrics), and
    /// with --nats-url what each consumer parked.
    Status(status::StatusArgs),
    /// Notifications: those that gave up, redriving them, and checking
    /// templates before a start.
    Notifications(notifications::NotificationsArgs),
    /// Outbound webhook endpoints: add, list, remove, rotate-secret,
    /// enable, test.
    Webhooks(webhooks::WebhooksArgs),
    /// SLA clocks: recompute a workflow's open tickets, list pending timers.
    Sla(sla::SlaArgs),
    /// Reports: the weekly open-ticket report.
    Reports(sla::ReportsArgs),
    /// Analytics: closure and first-contact rates against targets,
    /// escalations, NPS, uplift, closure quality, leaderboard, journey,
    /// with --explain for the items behind a row.
    Report(analytics::ReportArgs),
    /// Read-model projections: rebuild the analytics views without
    /// downtime; each projection's generation, position and lag.
    Projections(analytics::ProjectionsArgs),
    /// Administration: the clock closeloop runs on.
    Admin(sla::AdminArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum ClockKind {
    /// The wall clock.
    Wall,
    /// A simulated clock that moves only with `closeloop admin clock`
    /// (tests, demos, what-if runs; never production).
    Simulated,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Roles to run: `all` or a comma-separated subset of
    /// ingestion,routing,ticketing,escalation,notification,analytics.
    #[arg(long, env = "CLOSELOOP_ROLES", default_value = "all",
          value_parser = closeloop_server::Roles::parse)]
    roles: closeloop_server::Roles,
    /// NATS server with JetStream.
    #[arg(
        long,
        env = "CLOSELOOP_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// Read-model database: sqlite://PATH or postgres://USER@HOST/DB.
    /// Default: a SQLite file under --data-dir.
    #[arg(long, env = "CLOSELOOP_DATABASE_URL")]
    database_url: Option<String>,
    /// Directory for local state (the default SQLite database).
    #[arg(long, env = "CLOSELOOP_DATA_DIR", default_value = "./.closeloop")]
    data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, env = "CLOSELOOP_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    /// HTTP listen address (/healthz, /readyz).
    #[arg(long, env = "CLOSELOOP_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Subject and stream prefix, so several installs can share one NATS.
    #[arg(long, env = "CLOSELOOP_PREFIX", default_value = "closeloop")]
    prefix: String,
    /// Programs file: listening programs and their workflows (see docs/programs.md).
    #[arg(long, env = "CLOSELOOP_PROGRAMS")]
    programs: Option<PathBuf>,
    /// Vendor webhooks mapping file (Delighted, Formbricks; see docs/ingestion.md).
    /// Secrets are read from the environment variables it names.
    #[arg(long, env = "CLOSELOOP_WEBHOOKS")]
    webhooks: Option<PathBuf>,
    /// JetStream replicas for the event stream, 1 to 5 (3 on a NATS cluster).
    #[arg(long, env = "CLOSELOOP_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5))]
    stream_replicas: usize,
    /// SMTP server for notification e-mail: smtp://HOST:PORT,
    /// smtp://HOST:PORT?tls=required (STARTTLS) or smtps://HOST:PORT; user
    /// and password may be in the URL. Unset: e-mail is off.
    #[arg(long, env = "CLOSELOOP_SMTP_URL")]
    smtp_url: Option<String>,
    /// File holding the SMTP password (the URL names the user).
    #[arg(long, env = "CLOSELOOP_SMTP_PASSWORD_FILE")]
    smtp_password_file: Option<String>,
    /// Sender of notification e-mail, e.g. "closeloop <cx@vendor.example>".
    #[arg(long, env = "CLOSELOOP_MAIL_FROM", default_value = "")]
    mail_from: String,
    /// Directory of notification templates overriding the shipped ones
    /// (subject.txt, body.txt, body.html; a sub-directory per workflow).
    #[arg(long, env = "CLOSELOOP_TEMPLATES")]
    templates: Option<PathBuf>,
    /// Link to a ticket in notifications, `{id}` replaced by the ticket id
    /// (default: the `closeloop tickets show ID` command).
    #[arg(long, env = "CLOSELOOP_TICKET_URL")]
    ticket_url: Option<String>,
    /// Address ranges outbound HTTP (webhooks, chat) may reach although
    /// they are internal (loopback, private, link-local, ...), comma-separated
    /// CIDR, e.g. 127.0.0.0/8. Default: none.
    #[arg(long, env = "CLOSELOOP_OUTBOUND_ALLOW", default_value = "")]
    outbound_allow: String,
    /// The clock every role takes its time from.
    #[arg(long, env = "CLOSELOOP_CLOCK", value_enum, default_value = "wall")]
    clock: ClockKind,
    /// Where a simulated clock starts (RFC 3339) if no process of the
    /// install has started it yet (default: now).
    #[arg(long, env = "CLOSELOOP_CLOCK_START")]
    clock_start: Option<String>,
}

fn init_logging(format: LogFormat, default: &str) {
    // Client commands: logs only; the handle has nothing to flush.
    drop(telemetry::init(format, default, false));
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let roles = args.roles.clone();
    let clock = match (args.clock, &args.clock_start) {
        (ClockKind::Wall, None) => closeloop_server::ClockConfig::Wall,
        (ClockKind::Wall, Some(_)) => {
            anyhow::bail!("--clock-start needs --clock simulated")
        }
        (ClockKind::Simulated, start) => closeloop_server::ClockConfig::Simulated {
            start: start
                .as_deref()
                .map(|s| {
                    humantime::parse_rfc3339_weak(s.trim())
                        .with_context(|| format!("--clock-start {s:?} is not an RFC 3339 time"))
                })
                .transpose()?,
        },
    };
    let prefix = closeloop_server::prefix(&args.prefix)?;
    let database_url = match args.database_url {
        Some(u) => u,
        None => format!("sqlite://{}", args.data_dir.join("closeloop.db").display()),
    };
    let listeners = closeloop_server::Listeners::bind(args.grpc_addr, args.http_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on gRPC {} / HTTP {} (already in use? set --grpc-addr/--http-addr)",
                args.grpc_addr, args.http_addr
            )
        })?;
    tracing::info!(grpc = %args.grpc_addr, http = %args.http_addr, "listening");
    closeloop_server::run(
        closeloop_server::Config {
            nats_url: args.nats_url,
            database_url,
            prefix,
            roles,
            stream_replicas: args.stream_replicas,
            programs: args.programs,
            webhooks: args.webhooks,
            notification: closeloop_notification::role::Config {
                smtp_url: args.smtp_url,
                mail_from: args.mail_from,
                smtp_password_file: args.smtp_password_file,
                templates: args.templates,
                ticket_url: args.ticket_url,
                outbound_allow: args.outbound_allow,
            },
            clock,
        },
        listeners,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let _telemetry = telemetry::init(cli.log_format, "info", true);
            match serve(*args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let text = client::source_chain(e.as_ref());
                    tracing::error!(error = %text, "closeloop serve failed");
                    eprintln!("error: {text}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tickets(args) => {
            init_logging(cli.log_format, "warn");
            tickets::run(args).await
        }
        Command::Programs(args) => programs::run(args),
        Command::Intake(args) => {
            init_logging(cli.log_format, "warn");
            intake::run(args).await
        }
        Command::Feedback(args) => {
            init_logging(cli.log_format, "warn");
            feedback::run(args).await
        }
        Command::Directory(args) => {
            init_logging(cli.log_format, "warn");
            directory::run(args).await
        }
        Command::Status(args) => status::run(args).await,
        Command::Notifications(args) => notifications::run(args).await,
        Command::Webhooks(args) => webhooks::run(args).await,
        Command::Sla(args) => sla::run_sla(args).await,
        Command::Reports(args) => sla::run_reports(args).await,
        Command::Report(args) => analytics::run(args).await,
        Command::Projections(args) => analytics::run_projections(args).await,
        Command::Admin(args) => sla::run_admin(args).await,
        Command::Dlq(args) => {
            init_logging(cli.log_format, "warn");
            intake::run_dlq(args).await
        }
    }
}
