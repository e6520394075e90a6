//! `closeloop dlq ...` (and its older name for intake messages, `closeloop
//! intake rejected|redrive`): the dead letters of every consumer, admin
//! commands that talk to NATS directly.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use closeloop_eventstore::Prefix;
use closeloop_eventstore::dlq::{self, DlqError};
use serde_json::json;

use crate::client::exit;
use crate::output::outln;

/// Where the dead letters are: the NATS server and the install's prefix.
#[derive(Args)]
pub struct NatsArgs {
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_PREFIX",
        default_value = "closeloop"
    )]
    prefix: String,
    /// Output: a table, or JSON for scripts.
    #[arg(short = 'o', long = "output", global = true, default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

#[derive(Args)]
pub struct IntakeArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(subcommand)]
    command: IntakeCommand,
}

#[derive(Subcommand)]
enum IntakeCommand {
    /// List parked messages with the reason (same as `closeloop dlq list`).
    Rejected,
    /// Publish a parked intake message to its original subject again (after
    /// fixing the cause) and remove it from the dead letters (same as
    /// `closeloop dlq redrive`).
    Redrive {
        /// The dead letter's sequence, as `rejected` lists it.
        sequence: u64,
    },
}

#[derive(Args)]
pub struct DlqArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List parked messages: sequence, time, consumer, original subject and
    /// sequence, and the reason.
    List {
        /// Only those this durable consumer parked (e.g. routing,
        /// feedback-intake); a name that is no consumer's is refused (exit 4).
        #[arg(long)]
        consumer: Option<String>,
    },
    /// Publish a parked intake message to its original subject again (after
    /// fixing the cause) and remove it from the dead letters. Parked events
    /// are refused (exit 5): replay their consumer instead.
    Redrive {
        /// The dead letter's sequence, as `list` shows it.
        sequence: u64,
    },
    /// Make an event consumer read its events again from a stream sequence
    /// (after fixing what made it park one); its handler skips what it had
    /// already done.
    Replay {
        /// The durable consumer, as `list` and `closeloop status` name it
        /// (e.g. routing, ticketing-routes, escalation, notification).
        #[arg(long)]
        consumer: String,
        /// The stream sequence to start from (a dead letter's original sequence).
        #[arg(long)]
        from: u64,
    },
}

/// Consumers of intake messages (removed once handled: redriven, not replayed).
const INTAKE_CONSUMERS: [&str; 2] = ["feedback-intake", "directory-intake"];

fn code(e: &DlqError) -> u8 {
    match e {
        DlqError::NotFound { .. } | DlqError::NoConsumer { .. } => exit::NOT_FOUND,
        DlqError::ParkedEvent { .. }
        | DlqError::Malformed { .. }
        | DlqError::IntakeConsumer { .. } => exit::REFUSED,
        DlqError::Unavailable(_) => exit::UNAVAILABLE,
    }
}

async fn connect(a: &NatsArgs) -> Result<(Prefix, async_nats::jetstream::Context), ExitCode> {
    let prefix = Prefix::parse(&a.prefix).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::INVALID)
    })?;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(a.nats_url.as_str())
        .await
        .map_err(|e| {
            eprintln!("error: cannot connect to NATS at {}: {e}", a.nats_url);
            ExitCode::from(exit::UNAVAILABLE)
        })?;
    Ok((prefix, async_nats::jetstream::new(client)))
}

async fn list(a: &NatsArgs, consumer: Option<&str>, json_key: &str) -> ExitCode {
    let (prefix, js) = match connect(a).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match dlq::list(&js, &prefix, consumer).await {
        Ok(list) if a.output == "json" => {
            let items: Vec<_> = list
                .iter()
                .map(|r| {
                    json!({
                        "sequence": r.sequence,
                        "consumer": r.consumer,
                        "original_subject": r.original_subject,
                        "original_sequence": r.original_sequence,
                        "reason": r.reason,
                        "dead_lettered_at": r.dead_lettered_at,
                        "payload": String::from_utf8_lossy(&r.payload),
                    })
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({ json_key: items })).expect("json")
            );
            ExitCode::SUCCESS
        }
        Ok(list) => {
            if list.is_empty() {
                if let Some(c) = consumer {
                    match known_consumer(&js, &prefix, c).await {
                        Ok(()) => {}
                        Err(code) => return code,
                    }
                }
                outln!("no dead letters");
            }
            for r in list {
                outln!(
                    "{:<8} {}  {:<18} {} #{}\n         {}",
                    r.sequence,
                    r.dead_lettered_at,
                    r.consumer,
                    r.original_subject,
                    r.original_sequence,
                    r.reason
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(code(&e))
        }
    }
}

/// `Ok` when `consumer` is a durable consumer of the events or the intake
/// stream; else says which there are (exit 4): a consumer given wrong would
/// otherwise look like one without dead letters.
async fn known_consumer(
    js: &async_nats::jetstream::Context,
    prefix: &Prefix,
    consumer: &str,
) -> Result<(), ExitCode> {
    let streams = [
        prefix.events_stream(),
        closeloop_ingestion::nats::intake_stream(prefix),
    ];
    match dlq::consumer_names(js, &streams).await {
        Ok(names) if names.iter().any(|n| n == consumer) => Ok(()),
        Ok(names) => {
            eprintln!(
                "error: no consumer {consumer:?} on {} or {}; the consumers are: {}",
                streams[0],
                streams[1],
                if names.is_empty() {
                    "none (has closeloop run with this --prefix?)".to_string()
                } else {
                    names.join(", ")
                }
            );
            Err(ExitCode::from(exit::NOT_FOUND))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(code(&e)))
        }
    }
}

async fn redrive(a: &NatsArgs, sequence: u64) -> ExitCode {
    let (prefix, js) = match connect(a).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match dlq::redrive(&js, &prefix, sequence).await {
        Ok(subject) => {
            outln!("redriven {sequence} to {subject}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(code(&e))
        }
    }
}

async fn replay(a: &NatsArgs, consumer: &str, from: u64) -> ExitCode {
    if INTAKE_CONSUMERS.contains(&consumer) {
        let e = DlqError::IntakeConsumer {
            consumer: consumer.to_string(),
        };
        eprintln!("error: {e}");
        return ExitCode::from(code(&e));
    }
    let (prefix, js) = match connect(a).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match dlq::replay(&js, &prefix.events_stream(), consumer, from).await {
        Ok(pending) => {
            outln!(
                "consumer {consumer} replays from sequence {from}: {pending} events to read again"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(code(&e))
        }
    }
}

pub async fn run(args: IntakeArgs) -> ExitCode {
    match args.command {
        IntakeCommand::Rejected => list(&args.nats, None, "rejected").await,
        IntakeCommand::Redrive { sequence } => redrive(&args.nats, sequence).await,
    }
}

pub async fn run_dlq(args: DlqArgs) -> ExitCode {
    match &args.command {
        DlqCommand::List { consumer } => {
            list(&args.nats, consumer.as_deref(), "dead_letters").await
        }
        DlqCommand::Redrive { sequence } => redrive(&args.nats, *sequence).await,
        DlqCommand::Replay { consumer, from } => replay(&args.nats, consumer, *from).await,
    }
}
