//! Team rotations as aggregates: `<prefix>.events.rotation.<team_key>`.
//!
//! A route owned by a team takes one turn of the team's rotation. The turn is
//! keyed by the route (`<feedback_id>/<workflow_id>`), so a redelivered
//! response takes the same turn again instead of a new one, and optimistic
//! concurrency on the team's subject makes every routing replica agree.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::Timestamp;
use closeloop_eventstore::{Aggregate, Decision, Envelope, EventContext, StoredEvent};
use closeloop_proto::v1::rotation_event::Event as Body;
use closeloop_proto::{convert, v1};
use prost::Message;
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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rotation {
    /// Turns given so far; the next route takes turn `turns`.
    pub turns: u64,
    /// Route key → the turn it took.
    pub taken: HashMap<String, u64>,
    pub sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeTurn {
    pub team: String,
    pub route_key: String,
}

pub struct RotationAggregate;

impl Aggregate for RotationAggregate {
    type Id = TeamKey;
    type State = Rotation;
    type Command = TakeTurn;
    type Event = v1::TurnTaken;
    type Rule = Infallible;
    type Recorded = (v1::TurnTaken, u64);

    const TYPE: &'static str = AGGREGATE;

    fn decide(
        _id: TeamKey,
        state: Option<&Rotation>,
        _request_id: &str,
        cmd: &TakeTurn,
    ) -> Result<Decision<v1::TurnTaken>, Infallible> {
        if let Some(s) = state
            && s.taken.contains_key(&cmd.route_key)
        {
            return Ok(Decision::AlreadyApplied {
                sequence: s.sequence,
            });
        }
        Ok(Decision::Append(v1::TurnTaken {
            team: cmd.team.clone(),
            route_key: cmd.route_key.clone(),
            turn: state.map_or(0, |s| s.turns),
        }))
    }

    fn evolve(state: Option<Rotation>, (t, sequence): &Self::Recorded) -> Option<Rotation> {
        let mut s = state.unwrap_or_default();
        s.taken.insert(t.route_key.clone(), t.turn);
        s.turns = s.turns.max(t.turn + 1);
        s.sequence = *sequence;
        Some(s)
    }

    fn sequence(state: &Rotation) -> u64 {
        state.sequence
    }

    fn encode(
        _id: TeamKey,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &v1::TurnTaken,
    ) -> (Envelope, Bytes) {
        let msg = v1::RotationEvent {
            event_id: event_id.to_string(),
            occurred_at: Some(convert::timestamp(Timestamp::from_system_time(at))),
            request_id: request_id.to_string(),
            actor: ctx.actor.clone(),
            correlation_id: ctx.correlation_id.clone(),
            causation_id: ctx.causation_id.clone(),
            event: Some(Body::TurnTaken(event.clone())),
        };
        let env = Envelope::protobuf(event_id, "closeloop.v1.TurnTaken", at, ctx);
        (env, Bytes::from(msg.encode_to_vec()))
    }

    fn decode(stored: &StoredEvent) -> Result<Self::Recorded, String> {
        let msg = v1::RotationEvent::decode(stored.payload.as_ref())
            .map_err(|e| format!("payload is not a closeloop.v1.RotationEvent: {e}"))?;
        match msg.event {
            Some(Body::TurnTaken(t)) => Ok((t, stored.sequence)),
            None => Err("rotation event without a body (newer version?)".into()),
        }
    }

    fn recorded(
        _id: TeamKey,
        event: &v1::TurnTaken,
        sequence: u64,
        _request_id: &str,
        _at: SystemTime,
        _ctx: &EventContext,
    ) -> Self::Recorded {
        (event.clone(), sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(s: Option<Rotation>, key: &str, seq: u64) -> (Option<Rotation>, Option<u64>) {
        let cmd = TakeTurn {
            team: "ps".into(),
            route_key: key.into(),
        };
        match RotationAggregate::decide(TeamKey::of("ps"), s.as_ref(), key, &cmd).unwrap() {
            Decision::Append(t) => {
                let turn = t.turn;
                (RotationAggregate::evolve(s, &(t, seq)), Some(turn))
            }
            Decision::AlreadyApplied { .. } => (s, None),
        }
    }

    #[test]
    fn each_route_takes_one_turn_however_often_it_asks() {
        let (s, t0) = take(None, "f1/w", 1);
        let (s, t1) = take(s, "f2/w", 2);
        let (s, again) = take(s, "f1/w", 3);
        let (s, t2) = take(s, "f3/w", 4);
        assert_eq!((t0, t1, again, t2), (Some(0), Some(1), None, Some(2)));
        let s = s.unwrap();
        assert_eq!((s.turns, s.taken["f1/w"], s.sequence), (3, 0, 4));
    }
}
