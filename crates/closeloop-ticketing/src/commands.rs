//! The ticket aggregate on the event store: the single writer of tickets is
//! an [`Executor`] over the domain's ticket aggregate, through [`TicketContract`].

use closeloop_eventstore::Executor;

pub use closeloop_contracts::ticket::TicketContract;

/// Runs ticket commands. See [`Executor`].
pub type TicketCommands = Executor<TicketContract>;
