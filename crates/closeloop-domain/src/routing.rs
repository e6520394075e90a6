//! Routing decisions: one aggregate per survey response.
//!
//! Its first event is the decision ([`RoutingEvent::Decided`], exactly one
//! per response: which workflows the response triggered and, for each, the
//! ticket to open with its owner, stakeholders, guide and SLA); each later
//! revision of the response is attached to the tickets the decision opened
//! ([`RoutingEvent::Attached`]), never routed again.
//!
//! Ids and e-mail addresses are kept as written: the decision records what
//! routing saw, and the ticketing role parses them when it opens tickets.

use std::collections::BTreeMap;

use crate::Decision;
use crate::feedback::{AnswerValue, FeedbackId};
use crate::ticket::{Guide, SlaPolicy};

/// Request id of the decision: there is one per response.
pub const DECIDE_REQUEST: &str = "decide";

/// Request id of attaching revision `r`.
pub fn revision_request(r: u32) -> String {
    format!("revision-{r}")
}

/// One ticket a decision opens.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoutedTicket {
    pub workflow_id: String,
    pub workflow_name: String,
    /// `TicketId::for_feedback(feedback_id, workflow_id)`.
    pub ticket_id: String,
    pub title: String,
    /// Exactly one owner, always set (the fallback owner when the rule failed).
    pub owner_email: String,
    /// How the owner was found: `role:csm`, `team:partner-success#1`,
    /// `person` or `fallback`.
    pub owner_resolution: String,
    /// Why the owner rule failed, when the fallback owner was used.
    pub owner_fallback_reason: Option<String>,
    pub stakeholder_emails: Vec<String>,
    /// Stakeholder rules that did not resolve, with the reason.
    pub unresolved_stakeholders: Vec<String>,
    pub guide: Option<Guide>,
    /// `None` in decisions recorded without one (the defaults apply).
    pub sla: Option<SlaPolicy>,
    /// Closing the ticket needs an opportunity.
    pub require_opportunity: bool,
}

/// A workflow whose trigger could not be evaluated, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerError {
    pub workflow_id: String,
    pub error: String,
}

/// The decision about one response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoutingDecided {
    pub feedback_id: String,
    pub program_id: String,
    pub account_id: String,
    /// Version (content hash) of the programs file that decided.
    pub config_version: String,
    pub tickets: Vec<RoutedTicket>,
    /// True when the response triggered no workflow.
    pub unmatched: bool,
    /// Why nothing matched when it is not simply "no trigger was true".
    pub unmatched_reason: String,
    pub trigger_errors: Vec<TriggerError>,
    /// Stream sequence of the feedback event decided on.
    pub feedback_sequence: u64,
    /// The response's answers as text.
    pub answers: BTreeMap<String, String>,
}

/// A later revision of the response, attached to the tickets it opened.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedbackAttached {
    pub feedback_id: String,
    pub revision: u32,
    pub ticket_ids: Vec<String>,
    /// What changed, e.g. `comment: "Upgrade broke our workflows"`.
    pub summary: String,
    pub answers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RoutingEvent {
    Decided(Box<RoutingDecided>),
    Attached(FeedbackAttached),
}

/// A routing event as stored, with its stream sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRouting {
    pub event: RoutingEvent,
    pub sequence: u64,
}

/// A response's routing so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub decided: RoutingDecided,
    pub decided_sequence: u64,
    /// Last revision attached (0: the decision's).
    pub revision: u32,
    pub answers: BTreeMap<String, String>,
    pub sequence: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RoutingCommand {
    /// Record the decision (computed by the routing role from the programs
    /// and the directory).
    Decide(Box<RoutingDecided>),
    /// Attach revision `revision` with these answers.
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

/// Routing decisions as an [`crate::Aggregate`].
pub struct RoutingAggregate;

impl crate::Aggregate for RoutingAggregate {
    type Id = FeedbackId;
    type State = Routing;
    type Command = RoutingCommand;
    type Event = RoutingEvent;
    type Rule = RoutingRule;
    type Recorded = StoredRouting;

    const TYPE: &'static str = "routing";

    fn decide(
        id: FeedbackId,
        state: Option<&Routing>,
        _request_id: &str,
        cmd: &RoutingCommand,
    ) -> Result<Decision<RoutingEvent>, RoutingRule> {
        match (state, cmd) {
            (None, RoutingCommand::Decide(d)) => {
                Ok(Decision::Append(RoutingEvent::Decided(d.clone())))
            }
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
                Ok(Decision::Append(RoutingEvent::Attached(FeedbackAttached {
                    feedback_id: id.to_string(),
                    revision: *revision,
                    ticket_ids: s
                        .decided
                        .tickets
                        .iter()
                        .map(|t| t.ticket_id.clone())
                        .collect(),
                    summary: change_summary(&s.answers, answers),
                    answers: answers.clone(),
                })))
            }
        }
    }

    fn evolve(state: Option<Routing>, r: &StoredRouting) -> Option<Routing> {
        match (state, &r.event) {
            (None, RoutingEvent::Decided(d)) => Some(Routing {
                answers: d.answers.clone(),
                decided: (**d).clone(),
                decided_sequence: r.sequence,
                revision: 0,
                sequence: r.sequence,
            }),
            (None, RoutingEvent::Attached(_)) => None,
            (Some(s), RoutingEvent::Decided(_)) => Some(s),
            (Some(mut s), RoutingEvent::Attached(a)) => {
                s.revision = s.revision.max(a.revision);
                s.answers = a.answers.clone();
                s.sequence = r.sequence;
                Some(s)
            }
        }
    }

    fn sequence(state: &Routing) -> u64 {
        state.sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Aggregate;

    fn answers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn one_decision_then_revisions_in_order() {
        let id = FeedbackId::of("qualtrics", "R_1");
        let decided = RoutingDecided {
            feedback_id: id.to_string(),
            tickets: vec![RoutedTicket {
                ticket_id: "t1".into(),
                ..Default::default()
            }],
            answers: answers(&[("nps", "3")]),
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
        let Decision::Append(event) = d else { panic!() };
        let s = RoutingAggregate::evolve(None, &StoredRouting { event, sequence: 5 });
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
        let Decision::Append(RoutingEvent::Attached(a)) = d else {
            panic!()
        };
        assert_eq!(a.ticket_ids, ["t1"]);
        assert_eq!(a.summary, "comment: \"slow\"");
        let s = RoutingAggregate::evolve(
            s,
            &StoredRouting {
                event: RoutingEvent::Attached(a),
                sequence: 9,
            },
        );
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
