//! `closeloop intake ...`: the NATS intake's dead letters (admin commands
//! that talk to NATS directly).

use crate::output::outln;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use closeloop_eventstore::Prefix;
use closeloop_ingestion::nats;
use serde_json::json;

use crate::client::exit;

#[derive(Args)]
pub struct IntakeArgs {
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
    #[command(subcommand)]
    command: IntakeCommand,
}

#[derive(Subcommand)]
enum IntakeCommand {
    /// List messages the intake parked in the dead-letter stream, with the reason.
    Rejected,
    /// Publish a parked message to its original subject again (after fixing
    /// the cause) and remove it from the dead letters.
    Redrive {
        /// The dead letter's sequence, as `rejected` lists it.
        sequence: u64,
    },
}

pub async fn run(args: IntakeArgs) -> ExitCode {
    let prefix = match Prefix::parse(&args.prefix) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::INVALID);
        }
    };
    let client = match async_nats::ConnectOptions::new()
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(args.nats_url.as_str())
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot connect to NATS at {}: {e}", args.nats_url);
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    let js = async_nats::jetstream::new(client);
    match args.command {
        IntakeCommand::Rejected => match nats::list_rejected(&js, &prefix).await {
            Ok(list) if args.output == "json" => {
                let items: Vec<_> = list
                    .iter()
                    .map(|r| {
                        json!({
                            "sequence": r.sequence,
                            "original_subject": r.original_subject,
                            "reason": r.reason,
                            "dead_lettered_at": r.dead_lettered_at,
                            "payload": String::from_utf8_lossy(&r.payload),
                        })
                    })
                    .collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "rejected": items })).expect("json")
                );
                ExitCode::SUCCESS
            }
            Ok(list) => {
                if list.is_empty() {
                    outln!("no rejected messages");
                }
                for r in list {
                    outln!(
                        "{:<8} {}  {}\n         {}",
                        r.sequence,
                        r.dead_lettered_at,
                        r.original_subject,
                        r.reason
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(exit::UNAVAILABLE)
            }
        },
        IntakeCommand::Redrive { sequence } => match nats::redrive(&js, &prefix, sequence).await {
            Ok(subject) => {
                outln!("redriven {sequence} to {subject}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                use closeloop_ingestion::nats::RedriveError as E;
                eprintln!("error: {e}");
                ExitCode::from(match e {
                    E::NotFound { .. } => exit::NOT_FOUND,
                    E::ParkedEvent { .. } | E::Malformed { .. } => exit::REFUSED,
                    E::Unavailable(_) => exit::UNAVAILABLE,
                })
            }
        },
    }
}
