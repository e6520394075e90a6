//! Ticket events ⇄ stored messages (protobuf payload + envelope headers).

use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::{RecordedEvent, TicketEvent, TicketId, Timestamp};
use closeloop_eventstore::{Envelope, EventContext, StoredEvent};
use closeloop_proto::{convert, v1};
use prost::Message;

pub fn encode(
    ticket_id: TicketId,
    event_id: &str,
    request_id: &str,
    at: SystemTime,
    ctx: &EventContext,
    event: &TicketEvent,
) -> (Envelope, Bytes) {
    let msg = v1::TicketEvent {
        event_id: event_id.to_string(),
        ticket_id: ticket_id.to_string(),
        occurred_at: Some(convert::timestamp(Timestamp::from_system_time(at))),
        request_id: request_id.to_string(),
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        causation_id: ctx.causation_id.clone(),
        event: Some(convert::event_body(event)),
    };
    // Schema version 1, application/protobuf.
    let env = Envelope::protobuf(event_id, convert::event_type_name(event), at, ctx);
    (env, Bytes::from(msg.encode_to_vec()))
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not a closeloop.v1.TicketEvent: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("event type {0:?} is unknown to this version (written by a newer closeloop?)")]
    UnknownType(String),
    #[error("ticket id {0:?} in payload is not a UUID")]
    BadTicketId(String),
}

pub fn decode(ev: &StoredEvent) -> Result<RecordedEvent, DecodeError> {
    let msg = v1::TicketEvent::decode(ev.payload.as_ref())?;
    let ticket_id = TicketId::parse("ticket_id", &msg.ticket_id)
        .map_err(|_| DecodeError::BadTicketId(msg.ticket_id.clone()))?;
    let event = msg
        .event
        .as_ref()
        .and_then(convert::from_event_body)
        .ok_or_else(|| {
            DecodeError::UnknownType(
                ev.envelope
                    .as_ref()
                    .map(|e| e.event_type.clone())
                    .unwrap_or_default(),
            )
        })?;
    let occurred_at = msg
        .occurred_at
        .as_ref()
        .map(convert::from_timestamp)
        .or_else(|| {
            ev.envelope
                .as_ref()
                .map(|e| Timestamp::from_system_time(e.occurred_at))
        })
        .unwrap_or_default();
    Ok(RecordedEvent {
        ticket_id,
        sequence: ev.sequence,
        occurred_at,
        request_id: msg.request_id,
        actor: msg.actor,
        event,
    })
}
