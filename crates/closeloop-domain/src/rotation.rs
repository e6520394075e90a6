//! Team rotations: round-robin assignment that survives restarts.
//!
//! A route owned by a team takes one turn of the team's rotation (the owner
//! is member `turn % len(members)`). The turn is keyed by the route
//! (`<feedback_id>/<workflow_id>`), so a redelivered response takes the same
//! turn again instead of a new one.

use std::collections::HashMap;
use std::fmt;

use uuid::Uuid;

use crate::Decision;

const TEAM_NS: Uuid = Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0030);

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

/// A team's rotation so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rotation {
    /// Turns given so far; the next route takes turn `turns`.
    pub turns: u64,
    /// Route key → the turn it took.
    pub taken: HashMap<String, u64>,
    /// Stream sequence of the last turn taken.
    pub sequence: u64,
}

/// A route asks for its turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeTurn {
    pub team: String,
    pub route_key: String,
}

/// A route took a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnTaken {
    pub team: String,
    pub route_key: String,
    pub turn: u64,
}

/// The route's turn: the one it took before, else the next one.
pub fn decide(state: Option<&Rotation>, cmd: &TakeTurn) -> Decision<TurnTaken> {
    if let Some(s) = state
        && s.taken.contains_key(&cmd.route_key)
    {
        return Decision::AlreadyApplied {
            sequence: s.sequence,
        };
    }
    Decision::Append(TurnTaken {
        team: cmd.team.clone(),
        route_key: cmd.route_key.clone(),
        turn: state.map_or(0, |s| s.turns),
    })
}

/// Folds a turn taken (at stream sequence `sequence`) into the rotation.
pub fn evolve(state: Option<Rotation>, t: &TurnTaken, sequence: u64) -> Rotation {
    let mut s = state.unwrap_or_default();
    s.taken.insert(t.route_key.clone(), t.turn);
    s.turns = s.turns.max(t.turn + 1);
    s.sequence = sequence;
    s
}

/// A turn as stored, with its stream sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTurn {
    pub turn: TurnTaken,
    pub sequence: u64,
}

/// Team rotations as an [`crate::Aggregate`].
pub struct RotationAggregate;

impl crate::Aggregate for RotationAggregate {
    type Id = TeamKey;
    type State = Rotation;
    type Command = TakeTurn;
    type Event = TurnTaken;
    type Rule = std::convert::Infallible;
    type Recorded = StoredTurn;

    const TYPE: &'static str = "rotation";

    fn decide(
        _id: TeamKey,
        state: Option<&Rotation>,
        _request_id: &str,
        cmd: &TakeTurn,
    ) -> Result<Decision<TurnTaken>, std::convert::Infallible> {
        Ok(decide(state, cmd))
    }

    fn evolve(state: Option<Rotation>, t: &StoredTurn) -> Option<Rotation> {
        Some(evolve(state, &t.turn, t.sequence))
    }

    fn sequence(state: &Rotation) -> u64 {
        state.sequence
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
        match decide(s.as_ref(), &cmd) {
            Decision::Append(t) => (Some(evolve(s, &t, seq)), Some(t.turn)),
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
