//! Errors of the ticketing service and their gRPC form.

use closeloop_domain::{FieldViolation, RuleViolation};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use closeloop_proto::status::ERROR_DOMAIN;

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("invalid request: {}", .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldViolation>),
    #[error(transparent)]
    Rule(#[from] RuleViolation),
    #[error("not in the directory or the programs file: {}", .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    UnknownReferences(Vec<FieldViolation>),
    #[error(
        "program_id {0:?} cannot be checked: the ticketing role runs without a programs file (--programs); \
         leave program_id empty or configure the programs file"
    )]
    ProgramsNotConfigured(String),
    #[error("gave up after {0} attempts: the ticket kept changing under concurrent writers; retry")]
    Contention(u32),
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("stored event {sequence} cannot be decoded: {reason}")]
    Corrupt { sequence: u64, reason: String },
    #[error("read model unavailable: {0}")]
    ReadModel(String),
    #[error("read model has applied sequence {at}, not yet {wanted}; retry shortly")]
    NotCaughtUp { at: u64, wanted: u64 },
}

impl From<closeloop_eventstore::ExecuteError<RuleViolation>> for TicketError {
    fn from(e: closeloop_eventstore::ExecuteError<RuleViolation>) -> Self {
        use closeloop_eventstore::ExecuteError as E;
        match e {
            E::Rule(r) => TicketError::Rule(r),
            E::Contention(n) => TicketError::Contention(n),
            E::Unavailable(s) => TicketError::Unavailable(s),
            E::Corrupt { sequence, reason } => TicketError::Corrupt { sequence, reason },
        }
    }
}

impl From<Vec<FieldViolation>> for TicketError {
    fn from(v: Vec<FieldViolation>) -> Self {
        TicketError::Invalid(v)
    }
}

impl From<FieldViolation> for TicketError {
    fn from(v: FieldViolation) -> Self {
        TicketError::Invalid(vec![v])
    }
}

fn reason(r: &RuleViolation) -> &'static str {
    match r {
        RuleViolation::NotFound(_) => "TICKET_NOT_FOUND",
        RuleViolation::AlreadyExists(_) => "TICKET_EXISTS",
        RuleViolation::Closed(_) => "TICKET_CLOSED",
        RuleViolation::CloseBeforeContact => "CONTACT_REQUIRED",
        RuleViolation::OpportunityRequired => "OPPORTUNITY_REQUIRED",
        RuleViolation::NotClosed(_) => "TICKET_NOT_CLOSED",
        RuleViolation::SameOwner(_) => "SAME_OWNER",
        RuleViolation::RequestIdReused { .. } => "REQUEST_ID_REUSED",
        RuleViolation::AlreadyWaiting(_) => "ALREADY_WAITING",
        RuleViolation::NotWaiting => "NOT_WAITING",
    }
}

impl From<TicketError> for Status {
    fn from(e: TicketError) -> Status {
        let msg = e.to_string();
        match e {
            TicketError::Invalid(v) => closeloop_proto::status::invalid_argument(v),
            TicketError::Rule(r) => {
                let code = match r {
                    RuleViolation::NotFound(_) => Code::NotFound,
                    RuleViolation::AlreadyExists(_) => Code::AlreadyExists,
                    _ => Code::FailedPrecondition,
                };
                Status::with_error_details(
                    code,
                    msg,
                    ErrorDetails::with_error_info(
                        reason(&r),
                        ERROR_DOMAIN,
                        std::collections::HashMap::new(),
                    ),
                )
            }
            TicketError::UnknownReferences(v) => {
                let mut details = ErrorDetails::with_bad_request(
                    v.into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                details.set_error_info(
                    "UNKNOWN_REFERENCE",
                    ERROR_DOMAIN,
                    std::collections::HashMap::new(),
                );
                Status::with_error_details(Code::NotFound, msg, details)
            }
            TicketError::ProgramsNotConfigured(_) => Status::with_error_details(
                Code::FailedPrecondition,
                msg,
                ErrorDetails::with_error_info(
                    "PROGRAMS_NOT_CONFIGURED",
                    ERROR_DOMAIN,
                    std::collections::HashMap::new(),
                ),
            ),
            TicketError::Contention(_) => Status::aborted(msg),
            TicketError::Unavailable(_)
            | TicketError::ReadModel(_)
            | TicketError::NotCaughtUp { .. } => Status::unavailable(msg),
            TicketError::Corrupt { .. } => Status::internal(msg),
        }
    }
}
