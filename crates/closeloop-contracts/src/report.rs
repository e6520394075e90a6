//! Weekly reports: `<prefix>.events.report.<key>`, written only by the
//! escalation role. The domain's pure `decide`/`evolve`
//! ([`closeloop_domain::report`]) and the protobuf codec (payload
//! `closeloop.v1.ReportEvent`).

use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::report::{
    RecordedReport, ReportEvent, ReportKey, ReportLine, ReportOwner, WeeklyReport,
};
use closeloop_domain::{Aggregate, Timestamp};
use closeloop_eventstore::{Contract, DecodeError, Envelope, EventContext, StoredEvent};
use closeloop_proto::{convert, v1};
use v1::report_event::Event as Body;

pub use closeloop_domain::report::ReportAggregate;

/// Aggregate type name: subjects are `<prefix>.events.report.<key>`.
pub const AGGREGATE: &str = ReportAggregate::TYPE;

fn ts(t: Timestamp) -> Option<prost_types::Timestamp> {
    Some(convert::timestamp(t))
}

/// The wire form of a report's owners (also what `WeeklyReport` answers).
pub fn owners(r: &WeeklyReport) -> Vec<v1::ReportOwner> {
    r.owners
        .iter()
        .map(|o| v1::ReportOwner {
            owner_email: o.owner.clone(),
            tickets: o
                .lines
                .iter()
                .map(|t| v1::ReportTicket {
                    ticket_id: t.ticket_id.clone(),
                    account_id: t.account_id.clone(),
                    title: t.title.clone(),
                    program_id: t.program_id.clone(),
                    opened_at: ts(t.opened_at),
                    age_days: t.age_days,
                    reasons: t.reasons.join(","),
                    first_contact_due: t.first_contact_due.and_then(ts),
                    close_due: t.close_due.and_then(ts),
                    escalation_level: t.escalation_level,
                    region: r.region.clone(),
                })
                .collect(),
        })
        .collect()
}

fn from_owners(owners: Vec<v1::ReportOwner>) -> Vec<ReportOwner> {
    let t = |p: &Option<prost_types::Timestamp>| p.as_ref().map(convert::from_timestamp);
    owners
        .into_iter()
        .map(|o| ReportOwner {
            owner: o.owner_email,
            lines: o
                .tickets
                .into_iter()
                .map(|l| ReportLine {
                    opened_at: t(&l.opened_at).unwrap_or_default(),
                    first_contact_due: t(&l.first_contact_due),
                    close_due: t(&l.close_due),
                    ticket_id: l.ticket_id,
                    account_id: l.account_id,
                    title: l.title,
                    program_id: l.program_id,
                    age_days: l.age_days,
                    reasons: l
                        .reasons
                        .split(',')
                        .filter(|r| !r.is_empty())
                        .map(String::from)
                        .collect(),
                    escalation_level: l.escalation_level,
                })
                .collect(),
        })
        .collect()
}

/// Decodes a stored report event.
pub fn decode(stored: &StoredEvent) -> Result<RecordedReport, DecodeError> {
    let (meta, body) = crate::codec::decode::<v1::ReportEvent>(stored)?;
    let key = stored
        .subject
        .rsplit('.')
        .next()
        .and_then(ReportKey::parse)
        .ok_or_else(|| {
            DecodeError::from(format!("subject {:?} names no report", stored.subject))
        })?;
    let Body::Generated(g) = body;
    Ok(RecordedReport {
        key,
        sequence: stored.sequence,
        occurred_at: meta
            .occurred_at
            .as_ref()
            .map(convert::from_timestamp)
            .unwrap_or_default(),
        event: ReportEvent::Generated(Box::new(WeeklyReport {
            region: g.region,
            scheduled_at: g
                .scheduled_at
                .as_ref()
                .map(convert::from_timestamp)
                .unwrap_or_default(),
            recipients: g.recipients,
            owners: from_owners(g.owners),
            tickets: g.tickets,
            truncated: g.truncated,
        })),
    })
}

/// The wire contract of [`ReportAggregate`]: payload `closeloop.v1.ReportEvent`.
pub struct ReportContract;

impl Contract for ReportContract {
    type Aggregate = ReportAggregate;

    fn encode(
        id: ReportKey,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &ReportEvent,
    ) -> (Envelope, Bytes) {
        let ReportEvent::Generated(r) = event;
        crate::codec::encode::<v1::ReportEvent>(
            &id.to_string(),
            event_id,
            "closeloop.v1.WeeklyReportGenerated",
            request_id,
            at,
            ctx,
            Body::Generated(v1::WeeklyReportGenerated {
                region: r.region.clone(),
                scheduled_at: ts(r.scheduled_at),
                recipients: r.recipients.clone(),
                owners: owners(r),
                tickets: r.tickets,
                truncated: r.truncated,
            }),
        )
    }

    fn decode(stored: &StoredEvent) -> Result<RecordedReport, DecodeError> {
        decode(stored)
    }

    fn recorded(
        id: ReportKey,
        event: &ReportEvent,
        sequence: u64,
        _request_id: &str,
        at: SystemTime,
        _ctx: &EventContext,
    ) -> RecordedReport {
        RecordedReport {
            key: id,
            sequence,
            occurred_at: Timestamp::from_system_time(at),
            event: event.clone(),
        }
    }
}
