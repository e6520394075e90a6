//! gRPC statuses closeloop services share.

use closeloop_domain::FieldViolation;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Domain of the `google.rpc.ErrorInfo` reasons closeloop returns.
pub const ERROR_DOMAIN: &str = "closeloop.dev";

/// The message of [`invalid_argument`]: `invalid request: ` and every bad
/// field with its description.
pub fn invalid_message(violations: &[FieldViolation]) -> String {
    format!(
        "invalid request: {}",
        violations
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// `INVALID_ARGUMENT` naming every bad field in a `google.rpc.BadRequest`.
pub fn invalid_argument(violations: Vec<FieldViolation>) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        invalid_message(&violations),
        ErrorDetails::with_bad_request(
            violations
                .into_iter()
                .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                .collect::<Vec<_>>(),
        ),
    )
}
