//! Outbound webhook endpoints: a connected system's URL, the ticket event
//! types it wants, and the secret its deliveries are signed with (Standard
//! Webhooks), as an aggregate ([`EndpointAggregate`]: registered, secret
//! rotated, disabled, enabled, removed).
//!
//! Parsing a URL or a secret is the edge's business (the notification
//! role checks both at registration); here they are already valid.

use crate::Decision;
use crate::Timestamp;
use crate::ticket::TicketEvent;

/// The webhook event types, one per ticket event (`type` in a delivery's
/// JSON body, and what `--events` takes).
pub const EVENT_TYPES: [&str; 10] = [
    "ticket.opened",
    "ticket.contact_logged",
    "ticket.note_added",
    "ticket.owner_reassigned",
    "ticket.customer_replied",
    "ticket.closed",
    "ticket.reopened",
    "ticket.feedback_revised",
    "ticket.awaiting_customer",
    "ticket.wait_ended",
];

/// The webhook event type of ticket event `e`.
pub fn event_type(e: &TicketEvent) -> &'static str {
    match e {
        TicketEvent::Opened { .. } => EVENT_TYPES[0],
        TicketEvent::ContactLogged { .. } => EVENT_TYPES[1],
        TicketEvent::NoteAdded { .. } => EVENT_TYPES[2],
        TicketEvent::OwnerReassigned { .. } => EVENT_TYPES[3],
        TicketEvent::CustomerReplied { .. } => EVENT_TYPES[4],
        TicketEvent::Closed { .. } => EVENT_TYPES[5],
        TicketEvent::Reopened { .. } => EVENT_TYPES[6],
        TicketEvent::FeedbackRevised { .. } => EVENT_TYPES[7],
        TicketEvent::AwaitingCustomer { .. } => EVENT_TYPES[8],
        TicketEvent::WaitEnded { .. } => EVENT_TYPES[9],
    }
}

/// Namespace of endpoint ids (UUIDv5 of the registering request's id).
const ENDPOINT_NS: uuid::Uuid = uuid::Uuid::from_u128(0x2b1f_7c4e_90aa_4d1b_8e0c_5a7d_3f61_0041);

/// An endpoint's id: UUIDv5 of the request that registered it, so a
/// retried registration names the same endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(uuid::Uuid);

impl EndpointId {
    pub fn for_request(request_id: &str) -> EndpointId {
        EndpointId(uuid::Uuid::new_v5(&ENDPOINT_NS, request_id.as_bytes()))
    }

    pub fn parse(s: &str) -> Option<EndpointId> {
        uuid::Uuid::try_parse(s.trim()).ok().map(EndpointId)
    }
}

impl std::fmt::Display for EndpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Whether an endpoint receives deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointStatus {
    Active,
    /// Stopped: the receiver answered `410 Gone`, or an operator said so.
    Disabled {
        reason: String,
    },
    Removed,
}

impl EndpointStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndpointStatus::Active => "active",
            EndpointStatus::Disabled { .. } => "disabled",
            EndpointStatus::Removed => "removed",
        }
    }
}

/// A registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// Webhook event types delivered; empty: all of them.
    pub events: Vec<String>,
    pub description: String,
    /// `whsec_...`: deliveries are signed with it.
    pub secret: String,
    /// The secret before the last rotation and until when deliveries are
    /// signed with it too (so the receiver can switch over).
    pub previous_secret: Option<(String, Timestamp)>,
    pub status: EndpointStatus,
    pub sequence: u64,
}

impl Endpoint {
    /// Whether deliveries of `event_type` go to this endpoint now.
    pub fn wants(&self, event_type: &str) -> bool {
        self.status == EndpointStatus::Active
            && (self.events.is_empty() || self.events.iter().any(|e| e == event_type))
    }

    /// The secrets a delivery at `now` is signed with: the current one, and
    /// the previous one while its overlap lasts.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let Some((old, until)) = &self.previous_secret
            && now < *until
        {
            out.push(old.as_str());
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointCommand {
    Register {
        url: String,
        events: Vec<String>,
        description: String,
        secret: String,
    },
    /// Sign with `secret` from now on, and with the current one too until
    /// `previous_valid_until`.
    RotateSecret {
        secret: String,
        previous_valid_until: Timestamp,
    },
    Disable {
        reason: String,
    },
    Enable,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    Registered {
        url: String,
        events: Vec<String>,
        description: String,
        secret: String,
    },
    SecretRotated {
        secret: String,
        previous_valid_until: Timestamp,
    },
    Disabled {
        reason: String,
    },
    Enabled,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointRule {
    #[error("no webhook endpoint {0}")]
    NotRegistered(EndpointId),
    #[error("webhook endpoint {0} was removed")]
    Removed(EndpointId),
    #[error("webhook endpoint {0} is already active")]
    AlreadyActive(EndpointId),
    #[error("webhook endpoint {0} is already disabled")]
    AlreadyDisabled(EndpointId),
}

/// An endpoint event as stored, with its stream sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEndpoint {
    pub event: EndpointEvent,
    pub sequence: u64,
}

/// One endpoint's life as an [`crate::Aggregate`].
pub struct EndpointAggregate;

impl crate::Aggregate for EndpointAggregate {
    type Id = EndpointId;
    type State = Endpoint;
    type Command = EndpointCommand;
    type Event = EndpointEvent;
    type Rule = EndpointRule;
    type Recorded = StoredEndpoint;

    const TYPE: &'static str = "webhook";

    fn decide(
        id: EndpointId,
        state: Option<&Endpoint>,
        _request_id: &str,
        cmd: &EndpointCommand,
    ) -> Result<Decision<EndpointEvent>, EndpointRule> {
        match (state, cmd) {
            (
                None,
                EndpointCommand::Register {
                    url,
                    events,
                    description,
                    secret,
                },
            ) => Ok(Decision::Append(EndpointEvent::Registered {
                url: url.clone(),
                events: events.clone(),
                description: description.clone(),
                secret: secret.clone(),
            })),
            // The id is the request's: registered by this very request.
            (Some(s), EndpointCommand::Register { .. }) => Ok(Decision::AlreadyApplied {
                sequence: s.sequence,
            }),
            (None, _) => Err(EndpointRule::NotRegistered(id)),
            (Some(s), _) if s.status == EndpointStatus::Removed => Err(EndpointRule::Removed(id)),
            (
                Some(_),
                EndpointCommand::RotateSecret {
                    secret,
                    previous_valid_until,
                },
            ) => Ok(Decision::Append(EndpointEvent::SecretRotated {
                secret: secret.clone(),
                previous_valid_until: *previous_valid_until,
            })),
            (Some(s), EndpointCommand::Disable { reason }) => match s.status {
                EndpointStatus::Active => Ok(Decision::Append(EndpointEvent::Disabled {
                    reason: reason.clone(),
                })),
                _ => Err(EndpointRule::AlreadyDisabled(id)),
            },
            (Some(s), EndpointCommand::Enable) => match s.status {
                EndpointStatus::Disabled { .. } => Ok(Decision::Append(EndpointEvent::Enabled)),
                _ => Err(EndpointRule::AlreadyActive(id)),
            },
            (Some(_), EndpointCommand::Remove) => Ok(Decision::Append(EndpointEvent::Removed)),
        }
    }

    fn evolve(state: Option<Endpoint>, r: &StoredEndpoint) -> Option<Endpoint> {
        let mut s = match (state, &r.event) {
            (
                None,
                EndpointEvent::Registered {
                    url,
                    events,
                    description,
                    secret,
                },
            ) => Endpoint {
                url: url.clone(),
                events: events.clone(),
                description: description.clone(),
                secret: secret.clone(),
                previous_secret: None,
                status: EndpointStatus::Active,
                sequence: 0,
            },
            (None, _) => return None,
            (Some(s), EndpointEvent::Registered { .. }) => s,
            (
                Some(mut s),
                EndpointEvent::SecretRotated {
                    secret,
                    previous_valid_until,
                },
            ) => {
                let old = std::mem::replace(&mut s.secret, secret.clone());
                s.previous_secret = Some((old, *previous_valid_until));
                s
            }
            (Some(mut s), EndpointEvent::Disabled { reason }) => {
                s.status = EndpointStatus::Disabled {
                    reason: reason.clone(),
                };
                s
            }
            (Some(mut s), EndpointEvent::Enabled) => {
                s.status = EndpointStatus::Active;
                s
            }
            (Some(mut s), EndpointEvent::Removed) => {
                s.status = EndpointStatus::Removed;
                s
            }
        };
        s.sequence = r.sequence;
        Some(s)
    }

    fn sequence(state: &Endpoint) -> u64 {
        state.sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Aggregate;

    fn fold(events: &[EndpointEvent]) -> Option<Endpoint> {
        events.iter().zip(1..).fold(None, |s, (e, sequence)| {
            EndpointAggregate::evolve(
                s,
                &StoredEndpoint {
                    event: e.clone(),
                    sequence,
                },
            )
        })
    }

    fn registered(events: &[&str]) -> EndpointEvent {
        EndpointEvent::Registered {
            url: "https://crm.example/hooks".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            description: String::new(),
            secret: "whsec_new".into(),
        }
    }

    #[test]
    fn every_ticket_event_has_a_webhook_type() {
        let all: std::collections::BTreeSet<_> = EVENT_TYPES.iter().collect();
        assert_eq!(all.len(), EVENT_TYPES.len());
        assert_eq!(
            event_type(&TicketEvent::Closed {
                root_cause_category: "c".into(),
                root_cause: "r".into(),
                actions_taken: "a".into(),
                opportunity: None
            }),
            "ticket.closed"
        );
    }

    #[test]
    fn an_endpoint_gets_the_types_it_asked_for_while_active() {
        let all = fold(&[registered(&[])]).unwrap();
        assert!(EVENT_TYPES.iter().all(|t| all.wants(t)));
        let some = fold(&[registered(&["ticket.closed"])]).unwrap();
        assert!(some.wants("ticket.closed") && !some.wants("ticket.opened"));
        let gone = fold(&[
            registered(&[]),
            EndpointEvent::Disabled {
                reason: "410 Gone".into(),
            },
        ])
        .unwrap();
        assert!(!gone.wants("ticket.closed"));
        let back = fold(&[
            registered(&[]),
            EndpointEvent::Disabled { reason: "x".into() },
            EndpointEvent::Enabled,
        ])
        .unwrap();
        assert!(back.wants("ticket.closed"));
    }

    #[test]
    fn a_rotation_signs_with_both_secrets_until_the_overlap_ends() {
        let until = Timestamp::from_micros(1_000);
        let e = fold(&[
            EndpointEvent::Registered {
                url: "https://x".into(),
                events: vec![],
                description: String::new(),
                secret: "whsec_old".into(),
            },
            EndpointEvent::SecretRotated {
                secret: "whsec_new".into(),
                previous_valid_until: until,
            },
        ])
        .unwrap();
        assert_eq!(
            e.signing_secrets(Timestamp::from_micros(999)),
            ["whsec_new", "whsec_old"]
        );
        assert_eq!(e.signing_secrets(until), ["whsec_new"]);
    }

    #[test]
    fn commands_on_missing_removed_or_same_state_endpoints_are_refused() {
        let id = EndpointId::for_request("r1");
        assert_eq!(id, EndpointId::for_request("r1"));
        assert_ne!(id, EndpointId::for_request("r2"));
        assert_eq!(
            EndpointAggregate::decide(id, None, "r", &EndpointCommand::Remove),
            Err(EndpointRule::NotRegistered(id))
        );
        let active = fold(&[registered(&[])]).unwrap();
        assert_eq!(
            EndpointAggregate::decide(id, Some(&active), "r", &EndpointCommand::Enable),
            Err(EndpointRule::AlreadyActive(id))
        );
        let register = EndpointCommand::Register {
            url: "u".into(),
            events: vec![],
            description: String::new(),
            secret: "s".into(),
        };
        assert_eq!(
            EndpointAggregate::decide(id, Some(&active), "r", &register),
            Ok(Decision::AlreadyApplied { sequence: 1 })
        );
        let removed = fold(&[registered(&[]), EndpointEvent::Removed]).unwrap();
        assert_eq!(
            EndpointAggregate::decide(
                id,
                Some(&removed),
                "r",
                &EndpointCommand::Disable { reason: "x".into() }
            ),
            Err(EndpointRule::Removed(id))
        );
        assert!(!removed.wants("ticket.opened"));
    }
}
