//! Mapping between domain values and their protobuf form.

use closeloop_domain::ticket::{ClosureRecord, Guide, Origin, Plan, ResponseTemplate, SlaPolicy};
use closeloop_domain::{Channel, Status, Ticket, TicketEvent, Timestamp};

use crate::v1;

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = t.to_parts();
    prost_types::Timestamp { seconds, nanos }
}

pub fn from_timestamp(t: &prost_types::Timestamp) -> Timestamp {
    Timestamp::from_parts(t.seconds, t.nanos)
}

pub fn channel(c: Channel) -> v1::ContactChannel {
    match c {
        Channel::Phone => v1::ContactChannel::Phone,
        Channel::Email => v1::ContactChannel::Email,
        Channel::Meeting => v1::ContactChannel::Meeting,
        Channel::Other => v1::ContactChannel::Other,
    }
}

/// `None` for `UNSPECIFIED` or an unknown number.
pub fn from_channel(c: i32) -> Option<Channel> {
    match v1::ContactChannel::try_from(c).ok()? {
        v1::ContactChannel::Phone => Some(Channel::Phone),
        v1::ContactChannel::Email => Some(Channel::Email),
        v1::ContactChannel::Meeting => Some(Channel::Meeting),
        v1::ContactChannel::Other => Some(Channel::Other),
        v1::ContactChannel::Unspecified => None,
    }
}

pub fn status(s: Status) -> v1::TicketStatus {
    match s {
        Status::Open => v1::TicketStatus::Open,
        Status::Contacted => v1::TicketStatus::Contacted,
        Status::Closed => v1::TicketStatus::Closed,
    }
}

pub fn from_status(s: v1::TicketStatus) -> Option<Status> {
    match s {
        v1::TicketStatus::Open => Some(Status::Open),
        v1::TicketStatus::Contacted => Some(Status::Contacted),
        v1::TicketStatus::Closed => Some(Status::Closed),
        v1::TicketStatus::Unspecified => None,
    }
}

/// Lower-case word for a status number, as the CLI and docs show it.
pub fn status_word(s: i32) -> &'static str {
    match v1::TicketStatus::try_from(s).ok().and_then(from_status) {
        Some(s) => s.as_str(),
        None => "unspecified",
    }
}

pub fn channel_word(c: i32) -> &'static str {
    from_channel(c)
        .map(Channel::as_str)
        .unwrap_or("unspecified")
}

fn opportunity(o: &Option<(String, Option<f64>)>) -> Option<v1::Opportunity> {
    o.as_ref().map(|(kind, amount)| v1::Opportunity {
        kind: kind.clone(),
        amount: *amount,
    })
}

fn from_opportunity(o: &Option<v1::Opportunity>) -> Option<(String, Option<f64>)> {
    o.as_ref().map(|o| (o.kind.clone(), o.amount))
}

fn source_enum(source: &str) -> v1::TicketSource {
    match source {
        "manual" => v1::TicketSource::Manual,
        "workflow" => v1::TicketSource::Workflow,
        _ => v1::TicketSource::Unspecified,
    }
}

/// The `oneof` body of a ticket event.
pub fn event_body(e: &TicketEvent) -> v1::ticket_event::Event {
    use v1::ticket_event::Event as E;
    match e {
        TicketEvent::Opened {
            account_id,
            owner_email,
            program_id,
            title,
            origin,
            plan,
        } => {
            let (source, feedback_id, workflow_id) = origin.parts();
            E::Opened(v1::TicketOpened {
                account_id: account_id.clone(),
                owner_email: owner_email.clone(),
                program_id: program_id.clone(),
                title: title.clone(),
                source: source_enum(source) as i32,
                feedback_id: feedback_id.to_string(),
                workflow_id: workflow_id.to_string(),
                stakeholder_emails: plan.stakeholders.clone(),
                guide: plan.guide.as_ref().map(guide),
                sla: Some(sla(&plan.sla)),
                owner_fallback_reason: plan.fallback_reason.clone().unwrap_or_default(),
                config_version: plan.config_version.clone(),
                require_opportunity: plan.require_opportunity,
            })
        }
        TicketEvent::ContactLogged {
            channel: c,
            summary,
        } => E::ContactLogged(v1::ContactLogged {
            channel: channel(*c) as i32,
            summary: summary.clone(),
        }),
        TicketEvent::NoteAdded { text } => E::NoteAdded(v1::NoteAdded { text: text.clone() }),
        TicketEvent::OwnerReassigned {
            previous_owner_email,
            new_owner_email,
            reason,
        } => E::OwnerReassigned(v1::OwnerReassigned {
            previous_owner_email: previous_owner_email.clone(),
            new_owner_email: new_owner_email.clone(),
            reason: reason.clone(),
        }),
        TicketEvent::CustomerReplied { text } => {
            E::CustomerReplied(v1::CustomerReplied { text: text.clone() })
        }
        TicketEvent::Closed {
            root_cause_category,
            root_cause,
            actions_taken,
            opportunity: o,
        } => E::Closed(v1::TicketClosed {
            root_cause_category: root_cause_category.clone(),
            root_cause: root_cause.clone(),
            actions_taken: actions_taken.clone(),
            opportunity: opportunity(o),
        }),
        TicketEvent::Reopened { reason } => E::Reopened(v1::TicketReopened {
            reason: reason.clone(),
        }),
        TicketEvent::FeedbackRevised { revision, summary } => {
            E::FeedbackRevised(v1::FeedbackRevised {
                revision: *revision,
                summary: summary.clone(),
            })
        }
        TicketEvent::AwaitingCustomer { reason } => E::AwaitingCustomer(v1::AwaitingCustomer {
            reason: reason.clone(),
        }),
        TicketEvent::WaitEnded { reason } => E::WaitEnded(v1::WaitEnded {
            reason: reason.clone(),
        }),
    }
}

pub fn guide(g: &Guide) -> v1::ResolutionGuide {
    v1::ResolutionGuide {
        title: g.title.clone(),
        link: g.link.clone(),
        steps: g.steps.clone(),
        templates: g
            .templates
            .iter()
            .map(|t| v1::ResponseTemplate {
                name: t.name.clone(),
                subject: t.subject.clone(),
                body: t.body.clone(),
            })
            .collect(),
        talking_points: g.talking_points.clone(),
        faq: g.faq.clone(),
    }
}

pub fn from_guide(g: &v1::ResolutionGuide) -> Guide {
    Guide {
        title: g.title.clone(),
        link: g.link.clone(),
        steps: g.steps.clone(),
        templates: g
            .templates
            .iter()
            .map(|t| ResponseTemplate {
                name: t.name.clone(),
                subject: t.subject.clone(),
                body: t.body.clone(),
            })
            .collect(),
        talking_points: g.talking_points.clone(),
        faq: g.faq.clone(),
    }
}

/// The wire form of a policy. Options are written only when one differs
/// from its default, so a policy with defaults encodes as it did before
/// options existed (content digests of routing decisions stay the same).
pub fn sla(s: &SlaPolicy) -> v1::SlaPolicy {
    let d = SlaPolicy::default();
    let defaults = s.further_levels_secs == d.further_levels_secs
        && s.warn_pct == d.warn_pct
        && s.calendar == d.calendar
        && s.region_calendars == d.region_calendars
        && s.pause_while_waiting == d.pause_while_waiting
        && s.reset_on_reassign == d.reset_on_reassign;
    v1::SlaPolicy {
        first_contact_secs: s.first_contact_secs,
        escalate_after_secs: s.escalate_after_secs,
        close_within_secs: s.close_within_secs,
        options: (!defaults).then(|| v1::SlaOptions {
            further_levels_secs: s.further_levels_secs.clone(),
            warn_pct: s.warn_pct.clone(),
            calendar: s.calendar.clone(),
            region_calendars: s
                .region_calendars
                .iter()
                .map(|(region, calendar)| v1::RegionCalendar {
                    region: region.clone(),
                    calendar: calendar.clone(),
                })
                .collect(),
            pause_while_waiting: s.pause_while_waiting,
            reset_on_reassign: s.reset_on_reassign,
        }),
    }
}

/// A policy from its wire form (absent options: the defaults).
pub fn from_sla(s: &v1::SlaPolicy) -> SlaPolicy {
    let base = SlaPolicy {
        first_contact_secs: s.first_contact_secs,
        escalate_after_secs: s.escalate_after_secs,
        close_within_secs: s.close_within_secs,
        ..SlaPolicy::default()
    };
    match &s.options {
        None => base,
        Some(o) => SlaPolicy {
            further_levels_secs: o.further_levels_secs.clone(),
            warn_pct: o.warn_pct.clone(),
            calendar: o.calendar.clone(),
            region_calendars: o
                .region_calendars
                .iter()
                .map(|r| (r.region.clone(), r.calendar.clone()))
                .collect(),
            pause_while_waiting: o.pause_while_waiting,
            reset_on_reassign: o.reset_on_reassign,
            ..base
        },
    }
}

/// The protobuf message name of an event body, as sent in the
/// `Closeloop-Event-Type` header (e.g. `closeloop.v1.TicketClosed`).
pub fn event_type_name(e: &TicketEvent) -> &'static str {
    match e {
        TicketEvent::Opened { .. } => "closeloop.v1.TicketOpened",
        TicketEvent::ContactLogged { .. } => "closeloop.v1.ContactLogged",
        TicketEvent::NoteAdded { .. } => "closeloop.v1.NoteAdded",
        TicketEvent::OwnerReassigned { .. } => "closeloop.v1.OwnerReassigned",
        TicketEvent::CustomerReplied { .. } => "closeloop.v1.CustomerReplied",
        TicketEvent::Closed { .. } => "closeloop.v1.TicketClosed",
        TicketEvent::Reopened { .. } => "closeloop.v1.TicketReopened",
        TicketEvent::FeedbackRevised { .. } => "closeloop.v1.FeedbackRevised",
        TicketEvent::AwaitingCustomer { .. } => "closeloop.v1.AwaitingCustomer",
        TicketEvent::WaitEnded { .. } => "closeloop.v1.WaitEnded",
    }
}

/// Decodes an event body. `None` when the `oneof` is empty (an event type
/// from a newer version this build does not know).
pub fn from_event_body(e: &v1::ticket_event::Event) -> Option<TicketEvent> {
    use v1::ticket_event::Event as E;
    Some(match e {
        E::Opened(o) => TicketEvent::Opened {
            account_id: o.account_id.clone(),
            owner_email: o.owner_email.clone(),
            program_id: o.program_id.clone(),
            title: o.title.clone(),
            origin: if o.source == v1::TicketSource::Workflow as i32 {
                Origin::Workflow {
                    feedback_id: o.feedback_id.clone(),
                    workflow_id: o.workflow_id.clone(),
                }
            } else {
                Origin::Manual
            },
            plan: Box::new(Plan {
                stakeholders: o.stakeholder_emails.clone(),
                guide: o.guide.as_ref().map(from_guide),
                sla: o.sla.as_ref().map(from_sla).unwrap_or_default(),
                fallback_reason: Some(o.owner_fallback_reason.clone()).filter(|r| !r.is_empty()),
                config_version: o.config_version.clone(),
                require_opportunity: o.require_opportunity,
            }),
        },
        E::ContactLogged(c) => TicketEvent::ContactLogged {
            channel: from_channel(c.channel).unwrap_or(Channel::Other),
            summary: c.summary.clone(),
        },
        E::NoteAdded(n) => TicketEvent::NoteAdded {
            text: n.text.clone(),
        },
        E::OwnerReassigned(r) => TicketEvent::OwnerReassigned {
            previous_owner_email: r.previous_owner_email.clone(),
            new_owner_email: r.new_owner_email.clone(),
            reason: r.reason.clone(),
        },
        E::CustomerReplied(r) => TicketEvent::CustomerReplied {
            text: r.text.clone(),
        },
        E::Closed(c) => TicketEvent::Closed {
            root_cause_category: c.root_cause_category.clone(),
            root_cause: c.root_cause.clone(),
            actions_taken: c.actions_taken.clone(),
            opportunity: from_opportunity(&c.opportunity),
        },
        E::Reopened(r) => TicketEvent::Reopened {
            reason: r.reason.clone(),
        },
        E::FeedbackRevised(r) => TicketEvent::FeedbackRevised {
            revision: r.revision,
            summary: r.summary.clone(),
        },
        E::AwaitingCustomer(r) => TicketEvent::AwaitingCustomer {
            reason: r.reason.clone(),
        },
        E::WaitEnded(r) => TicketEvent::WaitEnded {
            reason: r.reason.clone(),
        },
    })
}

pub fn closure(c: &ClosureRecord) -> v1::Closure {
    v1::Closure {
        root_cause_category: c.root_cause_category.clone(),
        root_cause: c.root_cause.clone(),
        actions_taken: c.actions_taken.clone(),
        opportunity: opportunity(&c.opportunity),
    }
}

/// The wire form of an aggregate's state (what a command returns).
pub fn ticket(t: &Ticket) -> v1::Ticket {
    let (source, feedback_id, workflow_id) = t.origin.parts();
    v1::Ticket {
        id: t.id.to_string(),
        status: status(t.status) as i32,
        account_id: t.account_id.clone(),
        owner_email: t.owner_email.clone(),
        program_id: t.program_id.clone(),
        title: t.title.clone(),
        source: source_enum(source) as i32,
        feedback_id: feedback_id.to_string(),
        workflow_id: workflow_id.to_string(),
        opened_at: Some(timestamp(t.opened_at)),
        last_touched_at: Some(timestamp(t.last_touched_at)),
        first_contact_at: t.first_contact_at.map(timestamp),
        closed_at: t.closed_at.map(timestamp),
        closure: t.closure.as_ref().map(closure),
        contact_count: t.contact_count,
        note_count: t.note_count,
        reply_count: t.reply_count,
        reopen_count: t.reopen_count,
        sequence: t.sequence,
        stakeholder_emails: t.plan.stakeholders.clone(),
        guide: t.plan.guide.as_ref().map(guide),
        sla: Some(sla(&t.plan.sla)),
        owner_fallback_reason: t.plan.fallback_reason.clone().unwrap_or_default(),
        config_version: t.plan.config_version.clone(),
        feedback_revision: t.feedback_revision,
        first_contact_due: Some(timestamp(
            t.opened_at.plus_secs(t.plan.sla.first_contact_secs),
        )),
        close_due: Some(timestamp(
            t.opened_at.plus_secs(t.plan.sla.close_within_secs),
        )),
        require_opportunity: t.plan.require_opportunity,
        waiting_reason: t.waiting.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_default_policy_encodes_as_before_options_existed() {
        let old = v1::SlaPolicy {
            first_contact_secs: 172_800,
            escalate_after_secs: 604_800,
            close_within_secs: 2_592_000,
            options: None,
        };
        assert_eq!(sla(&SlaPolicy::default()), old);
        assert_eq!(from_sla(&old), SlaPolicy::default());
        let custom = SlaPolicy {
            pause_while_waiting: true,
            ..SlaPolicy::default()
        };
        assert!(sla(&custom).options.is_some());
        assert_eq!(from_sla(&sla(&custom)), custom);
    }

    #[test]
    fn every_event_round_trips_through_protobuf() {
        let events = vec![
            TicketEvent::Opened {
                account_id: "A".into(),
                owner_email: "o@x.io".into(),
                program_id: "p".into(),
                title: "t".into(),
                origin: Origin::Workflow {
                    feedback_id: "f".into(),
                    workflow_id: "w".into(),
                },
                plan: Box::new(Plan {
                    stakeholders: vec!["s@x.io".into()],
                    guide: Some(Guide {
                        title: "g".into(),
                        steps: vec!["call".into()],
                        templates: vec![ResponseTemplate {
                            name: "n".into(),
                            subject: "s".into(),
                            body: "b".into(),
                        }],
                        ..Guide::default()
                    }),
                    sla: SlaPolicy {
                        first_contact_secs: 1,
                        escalate_after_secs: 2,
                        close_within_secs: 3,
                        further_levels_secs: vec![4],
                        warn_pct: vec![10],
                        calendar: "office".into(),
                        region_calendars: vec![("EMEA".into(), "emea".into())],
                        pause_while_waiting: true,
                        reset_on_reassign: true,
                    },
                    fallback_reason: Some("account A has no csm".into()),
                    config_version: "v1".into(),
                    require_opportunity: true,
                }),
            },
            TicketEvent::FeedbackRevised {
                revision: 2,
                summary: "comment: \"late\"".into(),
            },
            TicketEvent::ContactLogged {
                channel: Channel::Meeting,
                summary: "s".into(),
            },
            TicketEvent::NoteAdded { text: "n".into() },
            TicketEvent::OwnerReassigned {
                previous_owner_email: "a@x.io".into(),
                new_owner_email: "b@x.io".into(),
                reason: "r".into(),
            },
            TicketEvent::CustomerReplied { text: "y".into() },
            TicketEvent::Closed {
                root_cause_category: "product".into(),
                root_cause: "rc".into(),
                actions_taken: "a".into(),
                opportunity: Some(("upsell".into(), Some(12.5))),
            },
            TicketEvent::Reopened { reason: "r".into() },
        ];
        for e in events {
            let msg = v1::TicketEvent {
                event: Some(event_body(&e)),
                ..Default::default()
            };
            let decoded = v1::TicketEvent::decode(msg.encode_to_vec().as_slice()).unwrap();
            assert_eq!(from_event_body(decoded.event.as_ref().unwrap()), Some(e));
        }
    }
}
