//! The event envelope: metadata every event carries in NATS headers.

use std::time::SystemTime;

use async_nats::HeaderMap;

/// Header names. `Nats-*` are the server's; `Closeloop-*` are ours.
pub mod headers {
    pub const MSG_ID: &str = "Nats-Msg-Id";
    pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
    pub const EVENT_ID: &str = "Closeloop-Event-Id";
    pub const EVENT_TYPE: &str = "Closeloop-Event-Type";
    pub const SCHEMA_VERSION: &str = "Closeloop-Schema-Version";
    pub const OCCURRED_AT: &str = "Closeloop-Occurred-At";
    pub const CORRELATION_ID: &str = "Closeloop-Correlation-Id";
    pub const CAUSATION_ID: &str = "Closeloop-Causation-Id";
    /// Stream sequence of the previous event of the same aggregate (same
    /// subject); `0` for its first event. Readers use it to apply one
    /// aggregate's events in order whatever order they are delivered in.
    pub const PREVIOUS_SEQUENCE: &str = "Closeloop-Previous-Sequence";
    pub const TRACEPARENT: &str = "traceparent";
    pub const CONTENT_TYPE: &str = "Content-Type";
}

/// Metadata of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Deterministic id; also sent as `Nats-Msg-Id`.
    pub event_id: String,
    /// Fully qualified protobuf message name, e.g. `closeloop.v1.TicketClosed`.
    pub event_type: String,
    /// Schema version of the payload (starts at 1).
    pub schema_version: u32,
    pub occurred_at: SystemTime,
    pub correlation_id: String,
    pub causation_id: String,
    pub traceparent: Option<String>,
    /// `application/protobuf` for closeloop's own events.
    pub content_type: String,
    /// Stream sequence of the aggregate's previous event, as the append
    /// recorded it (`Closeloop-Previous-Sequence`; 0: the first event).
    /// `None` on an envelope not read from the stream.
    pub previous_sequence: Option<u64>,
}

impl Envelope {
    /// The envelope of a protobuf event (`application/protobuf`, schema
    /// version 1) written in `ctx`.
    pub fn protobuf(
        event_id: &str,
        event_type: &str,
        occurred_at: SystemTime,
        ctx: &crate::EventContext,
    ) -> Envelope {
        Envelope {
            event_id: event_id.to_string(),
            event_type: event_type.to_string(),
            schema_version: 1,
            occurred_at,
            correlation_id: ctx.correlation_id.clone(),
            causation_id: ctx.causation_id.clone(),
            traceparent: ctx.traceparent.clone(),
            content_type: "application/protobuf".to_string(),
            previous_sequence: None,
        }
    }

    /// The headers it is stored with (without the append's concurrency headers).
    pub fn to_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(headers::MSG_ID, self.event_id.as_str());
        h.insert(headers::EVENT_ID, self.event_id.as_str());
        h.insert(headers::EVENT_TYPE, self.event_type.as_str());
        h.insert(
            headers::SCHEMA_VERSION,
            self.schema_version.to_string().as_str(),
        );
        h.insert(
            headers::OCCURRED_AT,
            humantime::format_rfc3339_micros(self.occurred_at)
                .to_string()
                .as_str(),
        );
        if !self.correlation_id.is_empty() {
            h.insert(headers::CORRELATION_ID, self.correlation_id.as_str());
        }
        if !self.causation_id.is_empty() {
            h.insert(headers::CAUSATION_ID, self.causation_id.as_str());
        }
        if let Some(tp) = &self.traceparent {
            h.insert(headers::TRACEPARENT, tp.as_str());
        }
        h.insert(headers::CONTENT_TYPE, self.content_type.as_str());
        h
    }

    /// Reads an envelope back. Missing optional headers become empty values;
    /// a missing event type or unparsable time is reported as `None` so the
    /// caller can park the message instead of guessing.
    pub fn from_headers(h: Option<&HeaderMap>) -> Option<Envelope> {
        let h = h?;
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
        let occurred_at = humantime::parse_rfc3339(&get(headers::OCCURRED_AT)?).ok()?;
        Some(Envelope {
            event_id: get(headers::EVENT_ID).or_else(|| get(headers::MSG_ID))?,
            event_type: get(headers::EVENT_TYPE)?,
            schema_version: get(headers::SCHEMA_VERSION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            occurred_at,
            correlation_id: get(headers::CORRELATION_ID).unwrap_or_default(),
            causation_id: get(headers::CAUSATION_ID).unwrap_or_default(),
            traceparent: get(headers::TRACEPARENT),
            content_type: get(headers::CONTENT_TYPE).unwrap_or_default(),
            previous_sequence: get(headers::PREVIOUS_SEQUENCE).and_then(|v| v.parse().ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn headers_round_trip() {
        let e = Envelope {
            event_id: "id-1".into(),
            event_type: "closeloop.v1.NoteAdded".into(),
            schema_version: 1,
            occurred_at: UNIX_EPOCH + Duration::from_micros(1_763_800_000_123_456),
            correlation_id: "c".into(),
            causation_id: String::new(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            content_type: "application/protobuf".into(),
            previous_sequence: None,
        };
        let h = e.to_headers();
        assert_eq!(h.get(headers::MSG_ID).unwrap().as_str(), "id-1");
        assert_eq!(Envelope::from_headers(Some(&h)), Some(e));
        assert_eq!(Envelope::from_headers(None), None);
    }
}
