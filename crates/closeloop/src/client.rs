//! What every client subcommand shares: connecting, and turning errors into
//! a message and an exit code.

use std::process::ExitCode;

use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Exit codes, documented in the README.
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const INVALID: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const REFUSED: u8 = 5;
    pub const UNAVAILABLE: u8 = 6;
}

pub enum CliError {
    /// Bad arguments or input, found before or without asking the server.
    Usage(String),
    Connect(String),
    Rpc(Status),
}

impl From<Status> for CliError {
    fn from(s: Status) -> Self {
        CliError::Rpc(s)
    }
}

/// Prints the error (every bad field for invalid arguments) and picks the exit code.
pub fn report(server: &str, e: CliError) -> ExitCode {
    match e {
        CliError::Usage(m) => {
            eprintln!("error: {m}");
            ExitCode::from(exit::INVALID)
        }
        CliError::Connect(m) => {
            eprintln!("error: cannot reach closeloop at {server}: {m}");
            ExitCode::from(exit::UNAVAILABLE)
        }
        CliError::Rpc(s) => {
            match s.get_details_bad_request() {
                Some(br) if !br.field_violations.is_empty() => {
                    eprintln!(
                        "error: {}",
                        match s.code() {
                            Code::NotFound => "not found in the directory or the programs file",
                            _ => "invalid request",
                        }
                    );
                    for v in br.field_violations {
                        eprintln!("  {}: {}", v.field, v.description);
                    }
                }
                _ => eprintln!("error: {}", s.message()),
            }
            ExitCode::from(code(s.code()))
        }
    }
}

pub fn code(c: Code) -> u8 {
    match c {
        Code::InvalidArgument | Code::OutOfRange => exit::INVALID,
        Code::NotFound => exit::NOT_FOUND,
        Code::FailedPrecondition | Code::AlreadyExists => exit::REFUSED,
        Code::Unavailable | Code::Aborted | Code::DeadlineExceeded => exit::UNAVAILABLE,
        _ => exit::FAILURE,
    }
}

pub async fn channel(server: &str) -> Result<Channel, CliError> {
    let endpoint = Channel::from_shared(server.to_string())
        .map_err(|e| CliError::Usage(format!("--server {server:?} is not a URL: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5));
    endpoint
        .connect()
        .await
        .map_err(|e| CliError::Connect(source_chain(&e)))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
