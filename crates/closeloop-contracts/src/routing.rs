//! The routing aggregate: `<prefix>.events.routing.<feedback_id>`.
//!
//! Its first event is the decision (`RoutingDecided`, exactly one per
//! response); each later revision of the response is attached to the tickets
//! the decision opened (`FeedbackAttached`), never routed again.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::feedback::FeedbackId;
use bytes::Bytes;
use closeloop_eventstore::{Aggregate, Decision, Envelope, EventContext, StoredEvent};
use closeloop_programs::AnswerValue;
use closeloop_proto::v1;
use closeloop_proto::v1::routing_event::Event as Body;

pub const AGGREGATE: &str = "routing";

/// Request id of the decision: there is one per response.
pub const DECIDE_REQUEST: &str = "decide";

/// Request id of attaching revision `r`.
pub fn revision_request(r: u32) -> String {
    format!("revision-{r}")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub decided: v1::RoutingDecided,
    pub decided_sequence: u64,
    /// Last revision attached (0: the decision's).
    pub revision: u32,
    pub answers: BTreeMap<String, String>,
    pub sequence: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RoutingCommand {
    Decide(Box<v1::RoutingDecided>),
    Attach {
        revision: u32,
        answers: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingRule {
    /// A revision arrived before the decision (redelivery order): retry later.
    #[error("response {0} has no routing decision yet")]
    NotDecided(FeedbackId),
}

/// Answers as text, for decisions and change summaries.
pub fn answers_text(answers: &BTreeMap<String, AnswerValue>) -> BTreeMap<String, String> {
    answers
        .iter()
        .map(|(k, v)| {
            let text = match v {
                AnswerValue::Int(i) => i.to_string(),
                AnswerValue::Float(x) => x.to_string(),
                AnswerValue::Text(s) => s.clone(),
                AnswerValue::Bool(b) => b.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// What changed between two revisions, e.g. `comment: "too slow"; nps: 3 -> 6`.
pub fn change_summary(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> String {
    let mut parts = Vec::new();
    for (k, v) in new {
        match old.get(k) {
            None => parts.push(format!("{k}: {v:?}")),
            Some(o) if o != v => parts.push(format!("{k}: {o:?} -> {v:?}")),
            Some(_) => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        parts.push(format!("{k}: removed"));
    }
    if parts.is_empty() {
        "answers unchanged (respondent or attributes changed)".into()
    } else {
        parts.join("; ")
    }
}

pub struct RoutingAggregate;

impl Aggregate for RoutingAggregate {
    type Id = FeedbackId;
    type State = Routing;
    type Command = RoutingCommand;
    type Event = Body;
    type Rule = RoutingRule;
    type Recorded = (Body, u64);

    const TYPE: &'static str = AGGREGATE;

    fn decide(
        id: FeedbackId,
        state: Option<&Routing>,
        _request_id: &str,
        cmd: &RoutingCommand,
    ) -> Result<Decision<Body>, RoutingRule> {
        match (state, cmd) {
            (None, RoutingCommand::Decide(d)) => Ok(Decision::Append(Body::Decided((**d).clone()))),
            (Some(s), RoutingCommand::Decide(_)) => Ok(Decision::AlreadyApplied {
                sequence: s.decided_sequence,
            }),
            (None, RoutingCommand::Attach { .. }) => Err(RoutingRule::NotDecided(id)),
            (Some(s), RoutingCommand::Attach { revision, .. }) if *revision <= s.revision => {
                Ok(Decision::AlreadyApplied {
                    sequence: s.sequence,
                })
            }
            (Some(s), RoutingCommand::Attach { revision, answers }) => {
                Ok(Decision::Append(Body::Attached(v1::FeedbackAttached {
                    feedback_id: id.to_string(),
                    revision: *revision,
                    ticket_ids: s
                        .decided
                        .tickets
                        .iter()
                        .map(|t| t.ticket_id.clone())
                        .collect(),
                    summary: change_summary(&s.answers, answers),
                    answers: answers.clone().into_iter().collect(),
                })))
            }
        }
    }

    fn evolve(state: Option<Routing>, (event, sequence): &Self::Recorded) -> Option<Routing> {
        match (state, event) {
            (None, Body::Decided(d)) => Some(Routing {
                answers: d.answers.clone().into_iter().collect(),
                decided: d.clone(),
                decided_sequence: *sequence,
                revision: 0,
                sequence: *sequence,
            }),
            (None, Body::Attached(_)) => None,
            (Some(s), Body::Decided(_)) => Some(s),
            (Some(mut s), Body::Attached(a)) => {
                s.revision = s.revision.max(a.revision);
                s.answers = a.answers.clone().into_iter().collect();
                s.sequence = *sequence;
                Some(s)
            }
        }
    }

    fn sequence(state: &Routing) -> u64 {
        state.sequence
    }

    fn encode(
        id: FeedbackId,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &Body,
    ) -> (Envelope, Bytes) {
        let event_type = match event {
            Body::Decided(_) => "closeloop.v1.RoutingDecided",
            Body::Attached(_) => "closeloop.v1.FeedbackAttached",
        };
        crate::codec::encode::<v1::RoutingEvent>(
            &id.to_string(),
            event_id,
            event_type,
            request_id,
            at,
            ctx,
            event.clone(),
        )
    }

    fn decode(stored: &StoredEvent) -> Result<Self::Recorded, String> {
        let (_, body) = crate::codec::decode::<v1::RoutingEvent>(stored)?;
        Ok((body, stored.sequence))
    }

    fn recorded(
        _id: FeedbackId,
        event: &Body,
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

    fn answers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn one_decision_then_revisions_in_order() {
        let id = FeedbackId::of("qualtrics", "R_1");
        let decided = v1::RoutingDecided {
            feedback_id: id.to_string(),
            tickets: vec![v1::RoutedTicket {
                ticket_id: "t1".into(),
                ..Default::default()
            }],
            answers: [("nps".to_string(), "3".to_string())].into_iter().collect(),
            ..Default::default()
        };
        let attach = |r: u32, a: &[(&str, &str)]| RoutingCommand::Attach {
            revision: r,
            answers: answers(a),
        };
        assert_eq!(
            RoutingAggregate::decide(id, None, "x", &attach(1, &[])),
            Err(RoutingRule::NotDecided(id))
        );
        let d = RoutingAggregate::decide(
            id,
            None,
            DECIDE_REQUEST,
            &RoutingCommand::Decide(Box::new(decided.clone())),
        )
        .unwrap();
        let Decision::Append(ev) = d else { panic!() };
        let s = RoutingAggregate::evolve(None, &(ev, 5));
        assert_eq!(
            RoutingAggregate::decide(
                id,
                s.as_ref(),
                DECIDE_REQUEST,
                &RoutingCommand::Decide(Box::new(decided))
            ),
            Ok(Decision::AlreadyApplied { sequence: 5 })
        );
        let d = RoutingAggregate::decide(
            id,
            s.as_ref(),
            "r1",
            &attach(1, &[("nps", "3"), ("comment", "slow")]),
        )
        .unwrap();
        let Decision::Append(Body::Attached(a)) = d else {
            panic!()
        };
        assert_eq!(a.ticket_ids, ["t1"]);
        assert_eq!(a.summary, "comment: \"slow\"");
        let s = RoutingAggregate::evolve(s, &(Body::Attached(a), 9));
        assert_eq!(
            RoutingAggregate::decide(id, s.as_ref(), "r1", &attach(1, &[])),
            Ok(Decision::AlreadyApplied { sequence: 9 })
        );
    }

    #[test]
    fn change_summary_names_added_changed_and_removed_answers() {
        let old = answers(&[("nps", "3"), ("reason", "price")]);
        let new = answers(&[("nps", "6"), ("comment", "ok")]);
        assert_eq!(
            change_summary(&old, &new),
            "comment: \"ok\"; nps: \"3\" -> \"6\"; reason: removed"
        );
    }
}
