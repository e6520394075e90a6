//! Notifications: `<prefix>.events.notification.<notification_id>`. The
//! decision of who hears what and each notification's life are the
//! domain's ([`closeloop_domain::notification`]); this is their wire
//! contract (payload `closeloop.v1.NotificationEvent`).

use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::Aggregate;
use closeloop_eventstore::{Contract, DecodeError, Envelope, EventContext, StoredEvent};
use closeloop_proto::v1;
use closeloop_proto::v1::notification_event::Event as Body;

pub use closeloop_domain::notification::{
    AttemptOutcome, DeliveryStatus, NoticeKind, Notification, NotificationAggregate,
    NotificationCommand, NotificationEvent, NotificationId, NotificationRule, NotifyChannel,
    StoredNotification,
};

pub const AGGREGATE: &str = NotificationAggregate::TYPE;

fn channel_to_proto(c: NotifyChannel) -> i32 {
    match c {
        NotifyChannel::Email => v1::NotificationChannel::Email as i32,
        NotifyChannel::Chat => v1::NotificationChannel::Chat as i32,
        NotifyChannel::Webhook => v1::NotificationChannel::Webhook as i32,
    }
}

fn channel_from_proto(c: i32) -> Result<NotifyChannel, DecodeError> {
    match v1::NotificationChannel::try_from(c) {
        Ok(v1::NotificationChannel::Email) => Ok(NotifyChannel::Email),
        Ok(v1::NotificationChannel::Chat) => Ok(NotifyChannel::Chat),
        Ok(v1::NotificationChannel::Webhook) => Ok(NotifyChannel::Webhook),
        _ => Err(format!("notification channel {c} is unknown to this version").into()),
    }
}

/// The protobuf body of a notification event, and its event type.
pub fn to_proto(e: &NotificationEvent) -> (Body, &'static str) {
    match e {
        NotificationEvent::Requested {
            ticket_id,
            cause_event_id,
            recipient,
            channel,
            kind,
            not_before,
        } => (
            Body::Requested(v1::NotificationRequested {
                ticket_id: ticket_id.clone(),
                cause_event_id: cause_event_id.clone(),
                recipient: recipient.clone(),
                channel: channel_to_proto(*channel),
                kind: kind.as_str().to_string(),
                not_before: not_before.map(closeloop_proto::convert::timestamp),
            }),
            "closeloop.v1.NotificationRequested",
        ),
        NotificationEvent::Attempted { attempt, outcome } => {
            let (permanent, status, retry_after) = match outcome {
                AttemptOutcome::Retryable {
                    status,
                    retry_after,
                    ..
                } => (false, *status, *retry_after),
                AttemptOutcome::Permanent { status, .. } => (true, *status, None),
                AttemptOutcome::Delivered => (false, None, None),
            };
            let error = outcome.error().unwrap_or_default().to_string();
            (
                Body::Attempted(v1::NotificationAttempted {
                    attempt: *attempt,
                    permanent,
                    status_code: status.map_or(0, u32::from),
                    error,
                    retry_after_secs: retry_after.unwrap_or(0),
                }),
                "closeloop.v1.NotificationAttempted",
            )
        }
        NotificationEvent::Delivered { attempt } => (
            Body::Delivered(v1::NotificationDelivered { attempt: *attempt }),
            "closeloop.v1.NotificationDelivered",
        ),
        NotificationEvent::GaveUp { attempts, reason } => (
            Body::GaveUp(v1::NotificationGaveUp {
                attempts: *attempts,
                reason: reason.clone(),
            }),
            "closeloop.v1.NotificationGaveUp",
        ),
        NotificationEvent::Redriven { attempts } => (
            Body::Redriven(v1::NotificationRedriven {
                attempts: *attempts,
            }),
            "closeloop.v1.NotificationRedriven",
        ),
    }
}

/// The notification event of a protobuf body.
pub fn from_proto(b: Body) -> Result<NotificationEvent, DecodeError> {
    Ok(match b {
        Body::Requested(r) => NotificationEvent::Requested {
            kind: NoticeKind::parse(&r.kind).ok_or_else(|| {
                DecodeError(format!(
                    "notification kind {:?} is unknown to this version",
                    r.kind
                ))
            })?,
            channel: channel_from_proto(r.channel)?,
            ticket_id: r.ticket_id,
            cause_event_id: r.cause_event_id,
            recipient: r.recipient,
            not_before: r
                .not_before
                .as_ref()
                .map(closeloop_proto::convert::from_timestamp),
        },
        Body::Attempted(a) => {
            let status = (a.status_code > 0).then(|| a.status_code.min(u32::from(u16::MAX)) as u16);
            NotificationEvent::Attempted {
                attempt: a.attempt,
                outcome: if a.permanent {
                    AttemptOutcome::Permanent {
                        status,
                        error: a.error,
                    }
                } else {
                    AttemptOutcome::Retryable {
                        status,
                        error: a.error,
                        retry_after: (a.retry_after_secs > 0).then_some(a.retry_after_secs),
                    }
                },
            }
        }
        Body::Delivered(d) => NotificationEvent::Delivered { attempt: d.attempt },
        Body::GaveUp(g) => NotificationEvent::GaveUp {
            attempts: g.attempts,
            reason: g.reason,
        },
        Body::Redriven(r) => NotificationEvent::Redriven {
            attempts: r.attempts,
        },
    })
}

/// A stored notification event as views take it: the notification's id
/// (the subject's last token), the event, its sequence and when it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Projected {
    pub id: String,
    pub event: NotificationEvent,
    pub sequence: u64,
    /// Microseconds since the epoch (`Closeloop-Occurred-At`).
    pub at: i64,
}

/// Decodes `stored` for a view.
pub fn projected(stored: &StoredEvent) -> Result<Projected, DecodeError> {
    let StoredNotification { event, sequence } = NotificationContract::decode(stored)?;
    let at = stored
        .envelope
        .as_ref()
        .map_or_else(SystemTime::now, |e| e.occurred_at)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    Ok(Projected {
        id: stored
            .subject
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_string(),
        event,
        sequence,
        at,
    })
}

/// The wire contract of [`NotificationAggregate`].
pub struct NotificationContract;

impl Contract for NotificationContract {
    type Aggregate = NotificationAggregate;

    fn encode(
        id: NotificationId,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &NotificationEvent,
    ) -> (Envelope, Bytes) {
        let (body, event_type) = to_proto(event);
        crate::codec::encode::<v1::NotificationEvent>(
            &id.to_string(),
            event_id,
            event_type,
            request_id,
            at,
            ctx,
            body,
        )
    }

    fn decode(stored: &StoredEvent) -> Result<StoredNotification, DecodeError> {
        let (_, body) = crate::codec::decode::<v1::NotificationEvent>(stored)?;
        Ok(StoredNotification {
            event: from_proto(body)?,
            sequence: stored.sequence,
        })
    }

    fn recorded(
        _id: NotificationId,
        event: &NotificationEvent,
        sequence: u64,
        _request_id: &str,
        _at: SystemTime,
        _ctx: &EventContext,
    ) -> StoredNotification {
        StoredNotification {
            event: event.clone(),
            sequence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_notification_event_survives_the_wire() {
        let events = [
            NotificationEvent::Requested {
                ticket_id: "t".into(),
                cause_event_id: "e".into(),
                recipient: "o@v.io".into(),
                channel: NotifyChannel::Chat,
                kind: NoticeKind::ClosedOutcome,
                not_before: Some(closeloop_domain::Timestamp::from_micros(
                    1_700_000_000_000_000,
                )),
            },
            NotificationEvent::Attempted {
                attempt: 2,
                outcome: AttemptOutcome::Retryable {
                    status: Some(421),
                    error: "try later".into(),
                    retry_after: None,
                },
            },
            NotificationEvent::Attempted {
                attempt: 3,
                outcome: AttemptOutcome::Retryable {
                    status: Some(429),
                    error: "slow down".into(),
                    retry_after: Some(120),
                },
            },
            NotificationEvent::Requested {
                ticket_id: "t".into(),
                cause_event_id: "e".into(),
                recipient: "3f0c8e2a-0000-4000-8000-000000000001".into(),
                channel: NotifyChannel::Webhook,
                kind: NoticeKind::Webhook,
                not_before: None,
            },
            NotificationEvent::Attempted {
                attempt: 3,
                outcome: AttemptOutcome::Permanent {
                    status: None,
                    error: "no such host".into(),
                },
            },
            NotificationEvent::Delivered { attempt: 4 },
            NotificationEvent::GaveUp {
                attempts: 4,
                reason: "r".into(),
            },
            NotificationEvent::Redriven { attempts: 4 },
        ];
        for e in events {
            assert_eq!(from_proto(to_proto(&e).0).unwrap(), e);
        }
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(k.as_str()), Some(k));
        }
    }
}
