//! Outbound webhook endpoints: `<prefix>.events.webhook.<endpoint_id>`.
//! The endpoint's life is the domain's ([`closeloop_domain::webhook`]);
//! this is its wire contract (payload `closeloop.v1.WebhookEvent`).
//! Deliveries to an endpoint are notifications on the webhook channel
//! ([`crate::notification`]).

use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::Aggregate;
use closeloop_eventstore::{Contract, DecodeError, Envelope, EventContext, StoredEvent};
use closeloop_proto::convert::{from_timestamp, timestamp};
use closeloop_proto::v1;
use closeloop_proto::v1::webhook_event::Event as Body;

pub use closeloop_domain::webhook::{
    EVENT_TYPES, Endpoint, EndpointAggregate, EndpointCommand, EndpointEvent, EndpointId,
    EndpointRule, EndpointStatus, StoredEndpoint, event_type,
};

pub const AGGREGATE: &str = EndpointAggregate::TYPE;

/// The protobuf body of an endpoint event, and its event type.
pub fn to_proto(e: &EndpointEvent) -> (Body, &'static str) {
    match e {
        EndpointEvent::Registered {
            url,
            events,
            description,
            secret,
        } => (
            Body::Registered(v1::WebhookRegistered {
                url: url.clone(),
                events: events.clone(),
                description: description.clone(),
                secret: secret.clone(),
            }),
            "closeloop.v1.WebhookRegistered",
        ),
        EndpointEvent::SecretRotated {
            secret,
            previous_valid_until,
        } => (
            Body::SecretRotated(v1::WebhookSecretRotated {
                secret: secret.clone(),
                previous_valid_until: Some(timestamp(*previous_valid_until)),
            }),
            "closeloop.v1.WebhookSecretRotated",
        ),
        EndpointEvent::Disabled { reason } => (
            Body::Disabled(v1::WebhookDisabled {
                reason: reason.clone(),
            }),
            "closeloop.v1.WebhookDisabled",
        ),
        EndpointEvent::Enabled => (
            Body::Enabled(v1::WebhookEnabled {}),
            "closeloop.v1.WebhookEnabled",
        ),
        EndpointEvent::Removed => (
            Body::Removed(v1::WebhookRemoved {}),
            "closeloop.v1.WebhookRemoved",
        ),
    }
}

/// The endpoint event of a protobuf body.
pub fn from_proto(b: Body) -> EndpointEvent {
    match b {
        Body::Registered(r) => EndpointEvent::Registered {
            url: r.url,
            events: r.events,
            description: r.description,
            secret: r.secret,
        },
        Body::SecretRotated(r) => EndpointEvent::SecretRotated {
            secret: r.secret,
            previous_valid_until: r
                .previous_valid_until
                .as_ref()
                .map(from_timestamp)
                .unwrap_or(closeloop_domain::Timestamp::from_micros(0)),
        },
        Body::Disabled(d) => EndpointEvent::Disabled { reason: d.reason },
        Body::Enabled(_) => EndpointEvent::Enabled,
        Body::Removed(_) => EndpointEvent::Removed,
    }
}

/// The wire contract of [`EndpointAggregate`].
pub struct WebhookContract;

impl Contract for WebhookContract {
    type Aggregate = EndpointAggregate;

    fn encode(
        id: EndpointId,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &EndpointEvent,
    ) -> (Envelope, Bytes) {
        let (body, event_type) = to_proto(event);
        crate::codec::encode::<v1::WebhookEvent>(
            &id.to_string(),
            event_id,
            event_type,
            request_id,
            at,
            ctx,
            body,
        )
    }

    fn decode(stored: &StoredEvent) -> Result<StoredEndpoint, DecodeError> {
        let (_, body) = crate::codec::decode::<v1::WebhookEvent>(stored)?;
        Ok(StoredEndpoint {
            event: from_proto(body),
            sequence: stored.sequence,
        })
    }

    fn recorded(
        _id: EndpointId,
        event: &EndpointEvent,
        sequence: u64,
        _request_id: &str,
        _at: SystemTime,
        _ctx: &EventContext,
    ) -> StoredEndpoint {
        StoredEndpoint {
            event: event.clone(),
            sequence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_event_survives_the_wire() {
        let events = [
            EndpointEvent::Registered {
                url: "https://crm.example/hooks".into(),
                events: vec!["ticket.closed".into()],
                description: "CRM".into(),
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            },
            EndpointEvent::SecretRotated {
                secret: "whsec_b".into(),
                previous_valid_until: closeloop_domain::Timestamp::from_micros(
                    1_700_000_000_000_000,
                ),
            },
            EndpointEvent::Disabled {
                reason: "410 Gone".into(),
            },
            EndpointEvent::Enabled,
            EndpointEvent::Removed,
        ];
        for e in events {
            assert_eq!(from_proto(to_proto(&e).0), e);
        }
    }
}
