//! Routing decisions: `<prefix>.events.routing.<feedback_id>`. The decision
//! logic is the domain's ([`closeloop_domain::routing`]); this is its wire
//! contract (payload `closeloop.v1.RoutingEvent`).

use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::Aggregate;
use closeloop_domain::routing::TriggerError;
use closeloop_eventstore::{Contract, DecodeError, Envelope, EventContext, StoredEvent};
use closeloop_proto::v1::routing_event::Event as Body;
use closeloop_proto::{convert, v1};

pub use closeloop_domain::feedback::FeedbackId;
pub use closeloop_domain::routing::{
    DECIDE_REQUEST, FeedbackAttached, RoutedTicket, Routing, RoutingAggregate, RoutingCommand,
    RoutingDecided, RoutingEvent, RoutingRule, StoredRouting, answers_text, change_summary,
    revision_request,
};

pub const AGGREGATE: &str = RoutingAggregate::TYPE;

fn routed_to_proto(t: &RoutedTicket) -> v1::RoutedTicket {
    v1::RoutedTicket {
        workflow_id: t.workflow_id.clone(),
        workflow_name: t.workflow_name.clone(),
        ticket_id: t.ticket_id.clone(),
        title: t.title.clone(),
        owner_email: t.owner_email.clone(),
        owner_resolution: t.owner_resolution.clone(),
        owner_fallback_reason: t.owner_fallback_reason.clone().unwrap_or_default(),
        stakeholder_emails: t.stakeholder_emails.clone(),
        unresolved_stakeholders: t.unresolved_stakeholders.clone(),
        guide: t.guide.as_ref().map(convert::guide),
        sla: t.sla.as_ref().map(convert::sla),
        require_opportunity: t.require_opportunity,
    }
}

fn routed_from_proto(t: v1::RoutedTicket) -> RoutedTicket {
    RoutedTicket {
        workflow_id: t.workflow_id,
        workflow_name: t.workflow_name,
        ticket_id: t.ticket_id,
        title: t.title,
        owner_email: t.owner_email,
        owner_resolution: t.owner_resolution,
        owner_fallback_reason: Some(t.owner_fallback_reason).filter(|r| !r.is_empty()),
        stakeholder_emails: t.stakeholder_emails,
        unresolved_stakeholders: t.unresolved_stakeholders,
        guide: t.guide.as_ref().map(convert::from_guide),
        sla: t.sla.as_ref().map(convert::from_sla),
        require_opportunity: t.require_opportunity,
    }
}

/// The protobuf body of a routing event.
pub fn to_proto(e: &RoutingEvent) -> Body {
    match e {
        RoutingEvent::Decided(d) => Body::Decided(v1::RoutingDecided {
            feedback_id: d.feedback_id.clone(),
            program_id: d.program_id.clone(),
            account_id: d.account_id.clone(),
            config_version: d.config_version.clone(),
            tickets: d.tickets.iter().map(routed_to_proto).collect(),
            unmatched: d.unmatched,
            unmatched_reason: d.unmatched_reason.clone(),
            trigger_errors: d
                .trigger_errors
                .iter()
                .map(|t| v1::TriggerError {
                    workflow_id: t.workflow_id.clone(),
                    error: t.error.clone(),
                })
                .collect(),
            feedback_sequence: d.feedback_sequence,
            answers: d.answers.clone().into_iter().collect(),
        }),
        RoutingEvent::Attached(a) => Body::Attached(v1::FeedbackAttached {
            feedback_id: a.feedback_id.clone(),
            revision: a.revision,
            ticket_ids: a.ticket_ids.clone(),
            summary: a.summary.clone(),
            answers: a.answers.clone().into_iter().collect(),
        }),
    }
}

/// The routing event of a protobuf body.
pub fn from_proto(b: Body) -> RoutingEvent {
    match b {
        Body::Decided(d) => RoutingEvent::Decided(Box::new(RoutingDecided {
            feedback_id: d.feedback_id,
            program_id: d.program_id,
            account_id: d.account_id,
            config_version: d.config_version,
            tickets: d.tickets.into_iter().map(routed_from_proto).collect(),
            unmatched: d.unmatched,
            unmatched_reason: d.unmatched_reason,
            trigger_errors: d
                .trigger_errors
                .into_iter()
                .map(|t| TriggerError {
                    workflow_id: t.workflow_id,
                    error: t.error,
                })
                .collect(),
            feedback_sequence: d.feedback_sequence,
            answers: d.answers.into_iter().collect(),
        })),
        Body::Attached(a) => RoutingEvent::Attached(FeedbackAttached {
            feedback_id: a.feedback_id,
            revision: a.revision,
            ticket_ids: a.ticket_ids,
            summary: a.summary,
            answers: a.answers.into_iter().collect(),
        }),
    }
}

/// The wire contract of [`RoutingAggregate`].
pub struct RoutingContract;

impl Contract for RoutingContract {
    type Aggregate = RoutingAggregate;

    fn encode(
        id: FeedbackId,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &RoutingEvent,
    ) -> (Envelope, Bytes) {
        let event_type = match event {
            RoutingEvent::Decided(_) => "closeloop.v1.RoutingDecided",
            RoutingEvent::Attached(_) => "closeloop.v1.FeedbackAttached",
        };
        crate::codec::encode::<v1::RoutingEvent>(
            &id.to_string(),
            event_id,
            event_type,
            request_id,
            at,
            ctx,
            to_proto(event),
        )
    }

    fn decode(stored: &StoredEvent) -> Result<StoredRouting, DecodeError> {
        let (_, body) = crate::codec::decode::<v1::RoutingEvent>(stored)?;
        Ok(StoredRouting {
            event: from_proto(body),
            sequence: stored.sequence,
        })
    }

    fn recorded(
        _id: FeedbackId,
        event: &RoutingEvent,
        sequence: u64,
        _request_id: &str,
        _at: SystemTime,
        _ctx: &EventContext,
    ) -> StoredRouting {
        StoredRouting {
            event: event.clone(),
            sequence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_domain::ticket::{Guide, SlaPolicy};

    #[test]
    fn a_decision_survives_the_wire() {
        let e = RoutingEvent::Decided(Box::new(RoutingDecided {
            feedback_id: "f".into(),
            program_id: "p".into(),
            account_id: "A-1".into(),
            config_version: "v".into(),
            tickets: vec![RoutedTicket {
                workflow_id: "w".into(),
                ticket_id: "t".into(),
                owner_email: "o@v.io".into(),
                owner_fallback_reason: Some("no csm".into()),
                guide: Some(Guide {
                    title: "G".into(),
                    steps: vec!["call".into()],
                    ..Default::default()
                }),
                sla: Some(SlaPolicy::default()),
                require_opportunity: true,
                ..Default::default()
            }],
            trigger_errors: vec![TriggerError {
                workflow_id: "x".into(),
                error: "no such key".into(),
            }],
            feedback_sequence: 4,
            answers: [("nps".to_string(), "3".to_string())].into(),
            ..Default::default()
        }));
        assert_eq!(from_proto(to_proto(&e)), e);
    }
}
