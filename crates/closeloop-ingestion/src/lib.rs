//! Feedback in.
//!
//! [`canonical`] is the contract upstream systems code against: a JSON
//! survey response (see `docs/ingestion.md`), parsed into a validated
//! [`canonical::Feedback`] with every problem reported as a JSON pointer to
//! the offending field, and checked against the program's questions.

/// The canonical feedback contract (defined with the programs it is checked against).
pub use closeloop_programs::canonical;
pub mod directory_intake;
/// The feedback aggregate (moved to the event contracts).
pub use closeloop_contracts::feedback;
pub mod grpc;
pub mod http;
pub mod intake;
pub mod nats;
pub mod role;
pub mod webhooks;
