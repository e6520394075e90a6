//! Team rotations: `<prefix>.events.rotation.<team_key>`. The turn logic is
//! the domain's ([`closeloop_domain::rotation`]); this is its wire contract.
//!
//! A route owned by a team takes one turn of the team's rotation. The turn is
//! keyed by the route (`<feedback_id>/<workflow_id>`), so a redelivered
//! response takes the same turn again instead of a new one, and optimistic
//! concurrency on the team's subject makes every routing replica agree.

use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::Aggregate;
use closeloop_eventstore::{Contract, DecodeError, Envelope, EventContext, StoredEvent};
use closeloop_proto::v1;
use closeloop_proto::v1::rotation_event::Event as Body;

pub use closeloop_domain::rotation::{
    Rotation, RotationAggregate, StoredTurn, TakeTurn, TeamKey, TurnTaken,
};

pub const AGGREGATE: &str = RotationAggregate::TYPE;

/// The wire contract of [`RotationAggregate`]: payload `closeloop.v1.RotationEvent`.
pub struct RotationContract;

impl Contract for RotationContract {
    type Aggregate = RotationAggregate;

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

    fn decode(stored: &StoredEvent) -> Result<StoredTurn, DecodeError> {
        let (_, Body::TurnTaken(t)) = crate::codec::decode::<v1::RotationEvent>(stored)?;
        Ok(StoredTurn {
            turn: TurnTaken {
                team: t.team,
                route_key: t.route_key,
                turn: t.turn,
            },
            sequence: stored.sequence,
        })
    }

    fn recorded(
        _id: TeamKey,
        event: &TurnTaken,
        sequence: u64,
        _request_id: &str,
        _at: SystemTime,
        _ctx: &EventContext,
    ) -> StoredTurn {
        StoredTurn {
            turn: event.clone(),
            sequence,
        }
    }
}
