//! The one codec every contract uses. The metadata every event payload
//! carries (event id, time, request id, actor, correlation and causation)
//! and the envelope headers are built here, once; a contract only maps its
//! domain events to and from its protobuf body.

use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::Timestamp;
use closeloop_eventstore::{Envelope, EventContext, StoredEvent};
use closeloop_proto::{convert, v1};
use prost::Message;

/// The metadata fields of every event message (`closeloop.v1.*Event`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub event_id: String,
    pub occurred_at: Option<prost_types::Timestamp>,
    pub request_id: String,
    pub actor: String,
    pub correlation_id: String,
    pub causation_id: String,
}

/// A `closeloop.v1.*Event` message: the metadata and a `oneof event` body.
pub trait EventMessage: Message + Default + Sized {
    type Body;
    /// Its protobuf name, for errors.
    const NAME: &'static str;
    /// The message of `body`, for aggregate `id` (messages that carry it).
    fn assemble(meta: Meta, id: &str, body: Self::Body) -> Self;
    fn disassemble(self) -> (Meta, Option<Self::Body>);
}

macro_rules! event_message {
    ($msg:ty, $body:ty, $name:literal $(, $id:ident)?) => {
        impl EventMessage for $msg {
            type Body = $body;
            const NAME: &'static str = $name;

            #[allow(unused_variables)]
            fn assemble(m: Meta, id: &str, body: $body) -> Self {
                Self {
                    event_id: m.event_id,
                    $($id: id.to_string(),)?
                    occurred_at: m.occurred_at,
                    request_id: m.request_id,
                    actor: m.actor,
                    correlation_id: m.correlation_id,
                    causation_id: m.causation_id,
                    event: Some(body),
                }
            }

            fn disassemble(self) -> (Meta, Option<$body>) {
                (
                    Meta {
                        event_id: self.event_id,
                        occurred_at: self.occurred_at,
                        request_id: self.request_id,
                        actor: self.actor,
                        correlation_id: self.correlation_id,
                        causation_id: self.causation_id,
                    },
                    self.event,
                )
            }
        }
    };
}

event_message!(
    v1::TicketEvent,
    v1::ticket_event::Event,
    "closeloop.v1.TicketEvent",
    ticket_id
);
event_message!(
    v1::FeedbackEvent,
    v1::feedback_event::Event,
    "closeloop.v1.FeedbackEvent"
);
event_message!(
    v1::RoutingEvent,
    v1::routing_event::Event,
    "closeloop.v1.RoutingEvent"
);
event_message!(
    v1::RotationEvent,
    v1::rotation_event::Event,
    "closeloop.v1.RotationEvent"
);
event_message!(
    v1::NotificationEvent,
    v1::notification_event::Event,
    "closeloop.v1.NotificationEvent"
);
event_message!(
    v1::WebhookEvent,
    v1::webhook_event::Event,
    "closeloop.v1.WebhookEvent"
);
event_message!(
    v1::SlaEvent,
    v1::sla_event::Event,
    "closeloop.v1.SlaEvent",
    ticket_id
);
event_message!(
    v1::ReportEvent,
    v1::report_event::Event,
    "closeloop.v1.ReportEvent",
    report_key
);
event_message!(
    v1::DirectoryEvent,
    v1::directory_event::Event,
    "closeloop.v1.DirectoryEvent"
);

/// The stored form of `body` (of type `event_type`, e.g.
/// `closeloop.v1.TicketClosed`) on aggregate `id`: its envelope and payload.
pub fn encode<M: EventMessage>(
    id: &str,
    event_id: &str,
    event_type: &str,
    request_id: &str,
    at: SystemTime,
    ctx: &EventContext,
    body: M::Body,
) -> (Envelope, Bytes) {
    let meta = Meta {
        event_id: event_id.to_string(),
        occurred_at: Some(convert::timestamp(Timestamp::from_system_time(at))),
        request_id: request_id.to_string(),
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        causation_id: ctx.causation_id.clone(),
    };
    let msg = M::assemble(meta, id, body);
    (
        Envelope::protobuf(event_id, event_type, at, ctx),
        Bytes::from(msg.encode_to_vec()),
    )
}

/// A stored event's metadata and body; `Err` when the payload is not an
/// `M` or has no body this version knows (written by a newer closeloop).
pub fn decode<M: EventMessage>(stored: &StoredEvent) -> Result<(Meta, M::Body), String> {
    let msg = M::decode(stored.payload.as_ref())
        .map_err(|e| format!("payload is not a {}: {e}", M::NAME))?;
    let (meta, body) = msg.disassemble();
    let body = body.ok_or_else(|| {
        format!(
            "{} of type {:?} has no body this version knows (written by a newer closeloop?)",
            M::NAME,
            stored
                .envelope
                .as_ref()
                .map(|e| e.event_type.as_str())
                .unwrap_or_default()
        )
    })?;
    Ok((meta, body))
}
