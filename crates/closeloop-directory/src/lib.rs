//! The account directory: accounts (with their account team by role), people
//! (with their manager) and teams (with members in rotation order).
//!
//! * [`records`]: each record is an aggregate, written by the generic
//!   [`closeloop_eventstore::Executor`]; an upsert equal to the stored record
//!   writes nothing.
//! * [`projection`]: the `accounts`, `people` and `teams` views, one
//!   projection (and checkpoint) per record type.
//! * [`grpc::DirectoryGrpc`] serves `closeloop.v1.DirectoryService`.
//! * [`lookup::DirectoryLookup`]: what other components ask of the
//!   directory (does this account, person or team exist?).

pub mod grpc;
pub mod lookup;
pub mod projection;
/// The directory records' event contract (in `closeloop-contracts`).
pub use closeloop_contracts::directory as records;
pub mod rows;
pub mod writer;

/// Starts the directory's views (once per process, whichever role asks
/// first) and returns their progress, for read-your-writes and caches.
pub fn project(setup: &mut closeloop_runtime::Setup) -> grpc::DirectoryProgress {
    grpc::DirectoryProgress {
        accounts: setup.project(projection::AccountView),
        people: setup.project(projection::PersonView),
        teams: setup.project(projection::TeamView),
    }
}

/// Like [`project`], for a role whose side effects should not wait on the
/// directory's own lag (notification): in a process of its own, a large
/// directory import is not the user path's backlog. In one process with a
/// role that projects them first (ingestion, routing), those keep counting.
pub fn project_background(setup: &mut closeloop_runtime::Setup) -> grpc::DirectoryProgress {
    grpc::DirectoryProgress {
        accounts: setup.project_background(projection::AccountView),
        people: setup.project_background(projection::PersonView),
        teams: setup.project_background(projection::TeamView),
    }
}

/// The migrations of the tables this crate owns (versions unique across
/// crates; see `closeloop_runtime::MigrationSet`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
