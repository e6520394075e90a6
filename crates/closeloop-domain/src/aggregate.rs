//! What an aggregate type is: its pure decision and fold. How its events
//! look on the wire is its contract's business (`closeloop-contracts`), and
//! how they are stored the event store's (`closeloop-eventstore`).

use std::fmt::Display;
use std::hash::Hash;

use crate::Decision;

/// An aggregate type: one writer decides each command on one instance, in
/// the instance's current state, and folds what it wrote back in.
pub trait Aggregate: Send + Sync + 'static {
    /// Names one instance (the last token of its subject).
    type Id: Copy + Eq + Hash + Display + Send + Sync + 'static;
    type State: Clone + Send + Sync + 'static;
    type Command: Send + Sync;
    type Event: Send + Sync;
    /// A rule the command broke (answered to the client, not retried).
    type Rule: Send;
    /// An event as stored (with what `evolve` needs of its metadata, e.g.
    /// its sequence), as `evolve` takes it.
    type Recorded: Send;

    /// Subject token of the type: `<prefix>.events.<TYPE>.<id>`.
    const TYPE: &'static str;

    /// What `command` (request `request_id`) means for instance `id` in
    /// `state` (`None`: no events yet). Pure.
    fn decide(
        id: Self::Id,
        state: Option<&Self::State>,
        request_id: &str,
        command: &Self::Command,
    ) -> Result<Decision<Self::Event>, Self::Rule>;

    /// `state` with `event` folded in (`None`: the event cannot start an
    /// instance). Pure.
    fn evolve(state: Option<Self::State>, event: &Self::Recorded) -> Option<Self::State>;

    /// Stream sequence of the last event folded into `state` (the
    /// optimistic-concurrency token).
    fn sequence(state: &Self::State) -> u64;
}

/// A value with the digest of its wire form. Some aggregates compare
/// contents by a digest that only their contract can compute (it is stable
/// across builds because it is of the wire encoding); the contract computes
/// it once, where the value enters, and the pure code only compares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Digested<T> {
    pub value: T,
    pub digest: u128,
}
