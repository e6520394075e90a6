//! The ticket aggregate on the event store: the single writer of tickets is
//! an [`Executor`] over [`TicketAggregate`].

use closeloop_eventstore::Executor;

pub use closeloop_contracts::ticket::TicketAggregate;

/// Runs ticket commands. See [`Executor`].
pub type TicketCommands = Executor<TicketAggregate>;
