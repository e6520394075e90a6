//! gRPC statuses closeloop services share.

use closeloop_domain::FieldViolation;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Domain of the `google.rpc.ErrorInfo` reasons closeloop returns.
pub const ERROR_DOMAIN: &str = "closeloop.dev";

/// `INVALID_ARGUMENT` naming every bad field in a `google.rpc.BadRequest`.
pub fn invalid_argument(violations: Vec<FieldViolation>) -> Status {
    let message = format!(
        "invalid request: {}",
        violations
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(
            violations
                .into_iter()
                .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                .collect::<Vec<_>>(),
        ),
    )
}
