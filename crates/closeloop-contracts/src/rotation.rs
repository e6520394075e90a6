//! Team rotations as aggregates: `<prefix>.events.rotation.<team_key>`.
//!
//! A route owned by a team takes one turn of the team's rotation. The turn is
//! keyed by the route (`<feedback_id>/<workflow_id>`), so a redelivered
//! response takes the same turn again instead of a new one, and optimistic
//! concurrency on the team's subject makes every routing replica agree.

use std::convert::Infallible;
use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use closeloop_eventstore::{Aggregate, Decision, Envelope, EventContext, StoredEvent};
use closeloop_proto::v1;
use closeloop_proto::v1::rotation_event::Event as Body;
use uuid::Uuid;

const TEAM_NS: Uuid = Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0030);

pub const AGGREGATE: &str = "rotation";

/// Subject token of a team's rotation: UUIDv5 of the team id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TeamKey(Uuid);

impl TeamKey {
    pub fn of(team: &str) -> TeamKey {
        TeamKey(Uuid::new_v5(&TEAM_NS, team.as_bytes()))
    }
}

impl fmt::Display for TeamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

pub use closeloop_domain::rotation::{Rotation, TakeTurn, TurnTaken};

pub struct RotationAggregate;

impl Aggregate for RotationAggregate {
    type Id = TeamKey;
    type State = Rotation;
    type Command = TakeTurn;
    type Event = TurnTaken;
    type Rule = Infallible;
    type Recorded = (TurnTaken, u64);

    const TYPE: &'static str = AGGREGATE;

    fn decide(
        _id: TeamKey,
        state: Option<&Rotation>,
        _request_id: &str,
        cmd: &TakeTurn,
    ) -> Result<Decision<TurnTaken>, Infallible> {
        Ok(closeloop_domain::rotation::decide(state, cmd))
    }

    fn evolve(state: Option<Rotation>, (t, sequence): &Self::Recorded) -> Option<Rotation> {
        Some(closeloop_domain::rotation::evolve(state, t, *sequence))
    }

    fn sequence(state: &Rotation) -> u64 {
        state.sequence
    }

    fn encode(
        id: TeamKey,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &TurnTaken,
    ) -> (Envelope, Bytes) {
        crate::codec::encode::<v1::RotationEvent>(
            &id.to_string(),
            event_id,
            "closeloop.v1.TurnTaken",
            request_id,
            at,
            ctx,
            Body::TurnTaken(v1::TurnTaken {
                team: event.team.clone(),
                route_key: event.route_key.clone(),
                turn: event.turn,
            }),
        )
    }

    fn decode(stored: &StoredEvent) -> Result<Self::Recorded, String> {
        let (_, Body::TurnTaken(t)) = crate::codec::decode::<v1::RotationEvent>(stored)?;
        Ok((
            TurnTaken {
                team: t.team,
                route_key: t.route_key,
                turn: t.turn,
            },
            stored.sequence,
        ))
    }

    fn recorded(
        _id: TeamKey,
        event: &TurnTaken,
        sequence: u64,
        _request_id: &str,
        _at: SystemTime,
        _ctx: &EventContext,
    ) -> Self::Recorded {
        (event.clone(), sequence)
    }
}
