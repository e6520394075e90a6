//! `closeloop feedback submit FILE...`: posts canonical feedback documents
//! to a server's HTTP intake (`/v1/feedback:batch`, 500 per request), the
//! same contract upstream systems use, and prints what became of each.

use crate::output::outln;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::exit;

#[derive(Args)]
pub struct FeedbackArgs {
    /// The server's HTTP address (plain http: in-cluster or through a port-forward).
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_HTTP_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    #[command(subcommand)]
    command: FeedbackCommand,
}

#[derive(Subcommand)]
enum FeedbackCommand {
    /// Submit canonical feedback documents (files holding one JSON object or
    /// an array of them; see docs/ingestion.md).
    Submit {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Posts `body` as JSON; returns the status and the parsed answer.
async fn post(url: &str, path: &str, body: Vec<u8>) -> Result<(u16, Value), String> {
    let (status, bytes) = crate::http::request("POST", url, path, Some(body)).await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Every document of every file, labelled `file` or `file[i]`.
fn read(files: &[PathBuf]) -> Result<Vec<(String, Value)>, String> {
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", f.display()))?;
        match v {
            Value::Array(items) => {
                for (i, d) in items.into_iter().enumerate() {
                    docs.push((format!("{}[{i}]", f.display()), d));
                }
            }
            d => docs.push((f.display().to_string(), d)),
        }
    }
    Ok(docs)
}

pub async fn run(args: FeedbackArgs) -> ExitCode {
    let FeedbackCommand::Submit { files } = args.command;
    let docs = match read(&files) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::INVALID);
        }
    };
    let (mut invalid, mut unavailable) = (0, 0);
    for chunk in docs.chunks(500) {
        let body = Value::Array(chunk.iter().map(|(_, d)| d.clone()).collect()).to_string();
        let (status, answer) = match post(&args.url, "/v1/feedback:batch", body.into_bytes()).await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(exit::UNAVAILABLE);
            }
        };
        let Some(results) = answer["results"].as_array() else {
            eprintln!(
                "error: HTTP {status}: {}",
                answer["detail"].as_str().unwrap_or("unexpected answer")
            );
            return ExitCode::from(if status >= 500 {
                exit::UNAVAILABLE
            } else {
                exit::INVALID
            });
        };
        for r in results {
            let i = r["index"].as_u64().unwrap_or(0) as usize;
            let label = chunk.get(i).map(|(l, _)| l.as_str()).unwrap_or("?");
            let st = r["status"].as_str().unwrap_or("?");
            match st {
                "invalid" => {
                    invalid += 1;
                    outln!("{label}: invalid");
                    for e in r["errors"].as_array().into_iter().flatten() {
                        outln!(
                            "  {}: {}",
                            e["pointer"].as_str().unwrap_or(""),
                            e["detail"].as_str().unwrap_or("")
                        );
                    }
                }
                "unavailable" => {
                    unavailable += 1;
                    outln!(
                        "{label}: not stored ({}); retry",
                        r["error"].as_str().unwrap_or("")
                    );
                }
                _ => outln!(
                    "{label}: {st} {}",
                    r["feedback_id"].as_str().unwrap_or_default()
                ),
            }
        }
    }
    if unavailable > 0 {
        ExitCode::from(exit::UNAVAILABLE)
    } else if invalid > 0 {
        ExitCode::from(exit::INVALID)
    } else {
        ExitCode::SUCCESS
    }
}
