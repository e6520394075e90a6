//! Outbound webhooks, as [Standard Webhooks](https://www.standardwebhooks.com/)
//! describes them.
//!
//! * Each delivery is a `POST` of a JSON body (`type`, `timestamp`, `data`;
//!   its JSON Schema is `docs/webhook-payload.schema.json`) with the headers
//!   `webhook-id` (the notification's id: the same on every retry and after
//!   a crash, so receivers drop copies), `webhook-timestamp` (Unix seconds
//!   of this attempt) and `webhook-signature`: `v1,<base64>` of the
//!   HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<body>` keyed with the
//!   endpoint's `whsec_` secret, space-separated with a second `v1,`
//!   signature by the previous secret while a rotation's overlap lasts.
//! * A 2xx answer delivers. `410 Gone` gives up and disables the endpoint.
//!   Any other answer, a timeout or a refused connection is retried on the
//!   schedule (about a day, with jitter), later when the endpoint's
//!   `Retry-After` asks for it.
//! * Every request goes through the outbound guard ([`crate::outbound`]).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use closeloop_domain::ticket::Origin;
use closeloop_domain::{RecordedEvent, Ticket, TicketEvent, Timestamp};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::email::SendError;

/// Bytes of a generated secret's key.
const KEY_BYTES: usize = 32;

/// An endpoint's signing secret, `whsec_<base64 of 24 to 64 bytes>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Parses a secret as written (`whsec_...`).
    pub fn parse(s: &str) -> Result<Secret, String> {
        let s = s.trim();
        let b64 = s.strip_prefix("whsec_").ok_or_else(|| {
            "a webhook secret starts with whsec_ followed by base64 (e.g. as `closeloop webhooks add` generates)"
                .to_string()
        })?;
        let key = B64
            .decode(b64)
            .map_err(|e| format!("the part after whsec_ is not base64: {e}"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "the key is {} bytes; use 24 to 64 (32 recommended)",
                key.len()
            ));
        }
        Ok(Secret(key))
    }

    /// A new random secret (32 bytes from the operating system's source,
    /// through UUIDv4).
    pub fn generate() -> Secret {
        let mut key = Vec::with_capacity(KEY_BYTES);
        while key.len() < KEY_BYTES {
            key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        key.truncate(KEY_BYTES);
        Secret(key)
    }

    /// `v1,<base64 signature>` of one delivery.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "whsec_{}", B64.encode(&self.0))
    }
}

fn rfc3339(t: Timestamp) -> String {
    humantime::format_rfc3339_micros(t.to_system_time()).to_string()
}

/// The JSON body of the delivery of ticket event `rec` (id `event_id`),
/// the ticket as it stood right after it being `ticket`. Its schema is
/// `docs/webhook-payload.schema.json`.
pub fn payload(event_id: &str, ticket: &Ticket, rec: &RecordedEvent) -> Value {
    let (_, feedback_id, workflow_id) = ticket.origin.parts();
    let change = match &rec.event {
        TicketEvent::Opened { origin, .. } => json!({
            "origin": match origin { Origin::Manual => "manual", Origin::Workflow { .. } => "workflow" },
        }),
        TicketEvent::ContactLogged { channel, summary } => json!({
            "channel": channel.as_str(),
            "summary": summary,
        }),
        TicketEvent::NoteAdded { text } => json!({ "text": text }),
        TicketEvent::OwnerReassigned {
            previous_owner_email,
            new_owner_email,
            reason,
        } => json!({
            "previous_owner_email": previous_owner_email,
            "new_owner_email": new_owner_email,
            "reason": reason,
        }),
        TicketEvent::CustomerReplied { text } => json!({ "text": text }),
        TicketEvent::Closed {
            root_cause_category,
            root_cause,
            actions_taken,
            opportunity,
        } => json!({
            "root_cause_category": root_cause_category,
            "root_cause": root_cause,
            "actions_taken": actions_taken,
            "opportunity": opportunity.as_ref().map(|(kind, amount)| json!({
                "kind": kind,
                "amount": amount,
            })),
        }),
        TicketEvent::Reopened { reason } => json!({ "reason": reason }),
        TicketEvent::FeedbackRevised { revision, summary } => json!({
            "revision": revision,
            "summary": summary,
        }),
        TicketEvent::AwaitingCustomer { reason } | TicketEvent::WaitEnded { reason } => {
            json!({ "reason": reason })
        }
    };
    let opt = |t: Option<Timestamp>| t.map(rfc3339);
    json!({
        "type": closeloop_domain::webhook::event_type(&rec.event),
        "timestamp": rfc3339(rec.occurred_at),
        "data": {
            "event_id": event_id,
            "ticket_id": rec.ticket_id.to_string(),
            "sequence": rec.sequence,
            "actor": rec.actor,
            "request_id": rec.request_id,
            "change": change,
            "ticket": {
                "id": ticket.id.to_string(),
                "status": ticket.status.to_string(),
                "title": ticket.title,
                "account_id": ticket.account_id,
                "owner_email": ticket.owner_email,
                "program_id": ticket.program_id,
                "workflow_id": Some(workflow_id).filter(|w| !w.is_empty()),
                "feedback_id": Some(feedback_id).filter(|f| !f.is_empty()),
                "stakeholders": ticket.plan.stakeholders,
                "opened_at": rfc3339(ticket.opened_at),
                "first_contact_due": rfc3339(ticket.opened_at.plus_secs(ticket.plan.sla.first_contact_secs)),
                "close_due": rfc3339(ticket.opened_at.plus_secs(ticket.plan.sla.close_within_secs)),
                "first_contact_at": opt(ticket.first_contact_at),
                "closed_at": opt(ticket.closed_at),
                "contact_count": ticket.contact_count,
                "reopen_count": ticket.reopen_count,
                "sequence": ticket.sequence,
            },
        },
    })
}

/// The body of `closeloop webhooks test`.
pub fn test_payload(endpoint_id: &str, now: SystemTime) -> Value {
    json!({
        "type": "webhook.test",
        "timestamp": humantime::format_rfc3339_micros(now).to_string(),
        "data": { "endpoint_id": endpoint_id },
    })
}

/// How a delivery went: the endpoint's status when it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
}

/// Posts `body` to `url` signed with `secrets` as delivery `msg_id`.
pub async fn post(
    http: &crate::outbound::Http,
    url: &str,
    msg_id: &str,
    secrets: &[Secret],
    body: &[u8],
) -> Result<Answer, SendError> {
    let now = SystemTime::now();
    let ts = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let signature = secrets
        .iter()
        .map(|s| s.sign(msg_id, ts, body))
        .collect::<Vec<_>>()
        .join(" ");
    let request = http.post(url).map_err(|r| SendError::Permanent {
        code: None,
        message: r.0,
    })?;
    let request = request
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec());
    match crate::outbound::call(request, "endpoint").await? {
        Ok(status) => Ok(Answer { status }),
        // Gone for good: stop (and the endpoint is disabled).
        Err(r) if r.status == 410 => Err(r.give_up()),
        Err(r) => Err(r.retry()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_generate_and_print() {
        let s = Secret::generate();
        let text = s.to_string();
        assert!(text.starts_with("whsec_"));
        assert_eq!(Secret::parse(&text).unwrap(), s);
        assert_ne!(Secret::generate(), s);
        for (bad, says) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with whsec_"),
            ("whsec_***", "not base64"),
            ("whsec_c2hvcnQ=", "use 24 to 64"),
        ] {
            let e = Secret::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            s.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        use crate::outbound::retry_after;
        use std::time::Duration;
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_400);
        assert_eq!(retry_after("120", now), Some(120));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(1_445_412_480 - 1_445_412_400)
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(0),
            "a date in the past: now"
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
