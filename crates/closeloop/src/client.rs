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

/// `e` and its causes, each once: a cause whose text the message so far
/// already holds (error messages that name their cause, and layers that
/// repeat the one beneath, e.g. "tcp connect error: tcp connect error") is
/// not repeated, as printing every source would.
pub fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::source_chain;

    /// An error whose message names its cause, as many library errors'
    /// do, and which also returns it as its source.
    #[derive(Debug)]
    struct Names(std::io::Error);

    impl std::fmt::Display for Names {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot connect to db: {}", self.0)
        }
    }

    impl std::error::Error for Names {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let refused = || std::io::Error::other("connection refused");
        let named = anyhow::Error::new(Names(refused()));
        assert_eq!(
            format!("{named:#}"),
            "cannot connect to db: connection refused: connection refused"
        );
        assert_eq!(
            source_chain(named.as_ref()),
            "cannot connect to db: connection refused"
        );
        let wrapped = anyhow::Error::new(refused()).context("serve");
        assert_eq!(source_chain(wrapped.as_ref()), "serve: connection refused");
    }
}
