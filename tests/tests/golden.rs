//! Stored events stay readable: one stored message (payload and envelope
//! headers) of every event type, written once by the code of its time and
//! kept in `tests/golden/events/`, must decode to the same domain event with
//! every later version of closeloop. A change that cannot read one of these
//! files breaks every install's history: add an upcaster instead.
//!
//! `CLOSELOOP_WRITE_GOLDEN=1 cargo test --test golden` writes the files of
//! event types that have none yet (new types); existing files are never
//! rewritten.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use closeloop_contracts::feedback::{FeedbackContract, FeedbackEvent, FeedbackId, content_digest};
use closeloop_contracts::rotation::{RotationContract, TeamKey};
use closeloop_contracts::routing::RoutingContract;
use closeloop_contracts::ticket::TicketContract;
use closeloop_directory::records::{
    AccountKind, Directory, PersonKind, RecordKind, TeamKind, upsert,
};
use closeloop_domain::directory::{Account, Person, Team};
use closeloop_domain::notification::{Cadence, ChatHook, ChatKind, NotifyChannel, Preferences};
use closeloop_domain::ticket::{Guide, Origin, Plan, ResponseTemplate, SlaPolicy};
use closeloop_domain::{AccountId, Channel, Email, TicketEvent, TicketId};
use closeloop_eventstore::{Aggregate, Contract, Envelope, EventContext, StoredEvent, event_id};
use closeloop_programs::AnswerValue;
use closeloop_programs::canonical::{Feedback, Respondent};
use closeloop_proto::v1;

const SEQUENCE: u64 = 7;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/events")
}

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(1_762_075_800_123_456)
}

fn ctx() -> EventContext {
    EventContext {
        actor: "dana.li@vendor.example".into(),
        correlation_id: "crm-case-9".into(),
        causation_id: "req-1".into(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    }
}

/// Checks (or, for a new type with `CLOSELOOP_WRITE_GOLDEN=1`, writes) the
/// golden file `name` of `event` on aggregate `id`.
fn golden<C: Contract>(
    name: &str,
    id: <C::Aggregate as Aggregate>::Id,
    event: <C::Aggregate as Aggregate>::Event,
) -> Result<(), String>
where
    <C::Aggregate as Aggregate>::Recorded: PartialEq + Debug,
{
    let payload_path = dir().join(format!("{name}.pb"));
    let headers_path = dir().join(format!("{name}.headers.json"));
    let request_id = "req-1";
    if !payload_path.exists() {
        if std::env::var("CLOSELOOP_WRITE_GOLDEN").as_deref() != Ok("1") {
            return Err(format!(
                "{name}: no golden file; write it with CLOSELOOP_WRITE_GOLDEN=1"
            ));
        }
        let eid = event_id(C::Aggregate::TYPE, &id, 0, request_id);
        let (env, payload) = C::encode(id, &eid, request_id, at(), &ctx(), &event);
        let headers: BTreeMap<String, String> = env
            .to_headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v[0].to_string()))
            .collect();
        std::fs::create_dir_all(dir()).unwrap();
        std::fs::write(&payload_path, &payload).unwrap();
        std::fs::write(
            &headers_path,
            serde_json::to_string_pretty(&headers).unwrap() + "\n",
        )
        .unwrap();
    }
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&headers_path).unwrap()).unwrap();
    let mut h = HeaderMap::new();
    for (k, v) in &headers {
        h.insert(k.as_str(), v.as_str());
    }
    let envelope = Envelope::from_headers(Some(&h))
        .ok_or_else(|| format!("{name}: the envelope headers no longer parse"))?;
    let stored = StoredEvent {
        subject: format!("closeloop.events.{}.{id}", C::Aggregate::TYPE),
        sequence: SEQUENCE,
        envelope: Some(envelope),
        payload: std::fs::read(&payload_path).unwrap().into(),
        pending: 0,
    };
    let decoded = C::decode(&stored).map_err(|e| format!("{name}: {e}"))?;
    let want = C::recorded(id, &event, SEQUENCE, request_id, at(), &ctx());
    if decoded != want {
        return Err(format!("{name}: decodes to\n{decoded:#?}\nnot\n{want:#?}"));
    }
    Ok(())
}

fn email(s: &str) -> Email {
    Email::parse("email", s).unwrap()
}

fn plan() -> Plan {
    Plan {
        stakeholders: vec!["ae@vendor.example".into(), "renewals@vendor.example".into()],
        guide: Some(Guide {
            title: "Detractor playbook".into(),
            link: "https://wiki.vendor.example/cx/guides/nps-detractor".into(),
            steps: vec!["Call within 48 hours".into(), "Find the root cause".into()],
            templates: vec![ResponseTemplate {
                name: "First outreach".into(),
                subject: "Thank you for your feedback".into(),
                body: "Hello {{name}}".into(),
            }],
            talking_points: vec!["Listen first".into()],
            faq: "https://wiki.vendor.example/cx/faq".into(),
        }),
        sla: SlaPolicy {
            first_contact_secs: 86_400,
            escalate_after_secs: 5 * 86_400,
            close_within_secs: 20 * 86_400,
            ..SlaPolicy::default()
        },
        fallback_reason: Some("account ACME-001 has no csm".into()),
        config_version: "sha256:4f2a".into(),
        require_opportunity: true,
    }
}

fn feedback(comment: &str, revised: Option<i64>) -> Feedback {
    Feedback {
        response_id: "R_5f2a".into(),
        source: "qualtrics".into(),
        program: "relationship-nps".into(),
        account_id: AccountId::parse("account_id", "ACME-001").unwrap(),
        respondent: Respondent {
            email: Some(email("cio@acme.example")),
            name: "Dana Li".into(),
            role: "CIO".into(),
        },
        submitted_at: closeloop_domain::Timestamp::from_micros(1_762_075_800_000_000),
        revised_at: revised.map(closeloop_domain::Timestamp::from_micros),
        answers: [
            ("nps".to_string(), AnswerValue::Int(3)),
            ("comment".to_string(), AnswerValue::Text(comment.into())),
            ("effort".to_string(), AnswerValue::Float(2.5)),
            ("renew".to_string(), AnswerValue::Bool(false)),
        ]
        .into_iter()
        .collect(),
        attributes: [("region".to_string(), "EMEA".to_string())]
            .into_iter()
            .collect(),
    }
}

fn routed_ticket() -> v1::RoutedTicket {
    v1::RoutedTicket {
        workflow_id: "rnps-detractor".into(),
        workflow_name: "NPS detractor follow-up".into(),
        ticket_id: TicketId::for_feedback("f-1", "rnps-detractor").to_string(),
        title: "NPS detractor follow-up: Acme Corp".into(),
        owner_email: "dana.li@vendor.example".into(),
        owner_resolution: "role:csm".into(),
        owner_fallback_reason: String::new(),
        stakeholder_emails: vec!["ae@vendor.example".into()],
        unresolved_stakeholders: vec!["role:renewals".into()],
        guide: Some(closeloop_proto::convert::guide(
            plan().guide.as_ref().unwrap(),
        )),
        require_opportunity: true,
        sla: Some(closeloop_proto::convert::sla(&plan().sla)),
    }
}

#[test]
fn every_stored_event_type_still_decodes() {
    let ticket = TicketId::for_feedback("f-1", "rnps-detractor");
    let fid = FeedbackId::of("qualtrics", "R_5f2a");
    let mut failures = Vec::new();
    let mut check = |r: Result<(), String>| {
        if let Err(e) = r {
            failures.push(e);
        }
    };

    // Tickets.
    let opened = |origin: Origin, plan: Plan| TicketEvent::Opened {
        account_id: "ACME-001".into(),
        owner_email: "dana.li@vendor.example".into(),
        program_id: "relationship-nps".into(),
        title: "NPS detractor follow-up: Acme Corp".into(),
        origin,
        plan: Box::new(plan),
    };
    let t = |name: &str, e: TicketEvent| golden::<TicketContract>(name, ticket, e);
    check(t(
        "ticket-opened-manual",
        opened(Origin::Manual, Plan::default()),
    ));
    check(t(
        "ticket-opened-workflow",
        opened(
            Origin::Workflow {
                feedback_id: fid.to_string(),
                workflow_id: "rnps-detractor".into(),
            },
            plan(),
        ),
    ));
    check(t(
        "ticket-contact-logged",
        TicketEvent::ContactLogged {
            channel: Channel::Phone,
            summary: "Called the CIO".into(),
        },
    ));
    check(t(
        "ticket-note-added",
        TicketEvent::NoteAdded {
            text: "Left a voicemail".into(),
        },
    ));
    check(t(
        "ticket-owner-reassigned",
        TicketEvent::OwnerReassigned {
            previous_owner_email: "dana.li@vendor.example".into(),
            new_owner_email: "lee@vendor.example".into(),
            reason: "holiday cover".into(),
        },
    ));
    check(t(
        "ticket-customer-replied",
        TicketEvent::CustomerReplied {
            text: "Thanks for calling".into(),
        },
    ));
    check(t(
        "ticket-closed",
        TicketEvent::Closed {
            root_cause_category: "product".into(),
            root_cause: "SSO regression in 7.2".into(),
            actions_taken: "Hotfix deployed; weekly check-ins".into(),
            opportunity: Some(("expansion".into(), Some(12_500.0))),
        },
    ));
    check(t(
        "ticket-reopened",
        TicketEvent::Reopened {
            reason: "customer still unhappy".into(),
        },
    ));
    check(t(
        "ticket-opened-sla-options",
        opened(
            Origin::Workflow {
                feedback_id: fid.to_string(),
                workflow_id: "rnps-detractor".into(),
            },
            Plan {
                sla: sla_options(),
                ..plan()
            },
        ),
    ));
    check(t(
        "ticket-awaiting-customer",
        TicketEvent::AwaitingCustomer {
            reason: "waiting for their logs".into(),
        },
    ));
    check(t(
        "ticket-wait-ended",
        TicketEvent::WaitEnded {
            reason: "logs received".into(),
        },
    ));
    check(t(
        "ticket-feedback-revised",
        TicketEvent::FeedbackRevised {
            revision: 2,
            summary: "comment: \"SSO is down too\"".into(),
        },
    ));

    // Feedback.
    let f = |name: &str, e: FeedbackEvent| {
        let digest = content_digest(e.feedback());
        golden::<FeedbackContract>(name, fid, closeloop_domain::Digested { value: e, digest })
    };
    check(f(
        "feedback-received",
        FeedbackEvent::Received(feedback("Upgrade broke our workflows", None)),
    ));
    check(f(
        "feedback-updated",
        FeedbackEvent::Updated {
            feedback: feedback("SSO is down too", Some(1_762_079_400_000_000)),
            revision: 1,
        },
    ));
    check(f(
        "feedback-superseded",
        FeedbackEvent::Superseded {
            feedback: feedback("older", Some(1_762_076_000_000_000)),
            current_revision: 1,
        },
    ));

    // Routing and rotations.
    use v1::routing_event::Event as Routing;
    let r = |name: &str, e: Routing| {
        golden::<RoutingContract>(name, fid, closeloop_contracts::routing::from_proto(e))
    };
    check(r(
        "routing-decided",
        Routing::Decided(v1::RoutingDecided {
            feedback_id: fid.to_string(),
            program_id: "relationship-nps".into(),
            account_id: "ACME-001".into(),
            config_version: "sha256:4f2a".into(),
            tickets: vec![routed_ticket()],
            unmatched: false,
            unmatched_reason: String::new(),
            trigger_errors: vec![v1::TriggerError {
                workflow_id: "rnps-passive".into(),
                error: "no such key: partnership".into(),
            }],
            feedback_sequence: 3,
            answers: [("nps".to_string(), "3".to_string())].into_iter().collect(),
        }),
    ));
    check(r(
        "routing-unmatched",
        Routing::Decided(v1::RoutingDecided {
            feedback_id: fid.to_string(),
            program_id: "retired-program".into(),
            account_id: "ACME-001".into(),
            unmatched: true,
            unmatched_reason: "program retired-program is not configured".into(),
            ..Default::default()
        }),
    ));
    check(r(
        "routing-feedback-attached",
        Routing::Attached(v1::FeedbackAttached {
            feedback_id: fid.to_string(),
            revision: 1,
            ticket_ids: vec![routed_ticket().ticket_id],
            summary: "comment: \"SSO is down too\"".into(),
            answers: [("comment".to_string(), "SSO is down too".to_string())]
                .into_iter()
                .collect(),
        }),
    ));
    check(golden::<RotationContract>(
        "rotation-turn-taken",
        TeamKey::of("partner-success"),
        closeloop_contracts::rotation::TurnTaken {
            team: "partner-success".into(),
            route_key: format!("{fid}/impl-csat-partner"),
            turn: 4,
        },
    ));

    // Notifications.
    {
        use closeloop_contracts::notification::{
            AttemptOutcome, NoticeKind, NotificationContract, NotificationEvent, NotificationId,
            NotifyChannel,
        };
        let nid = NotificationId::of("event-1", "dana.li@vendor.example", NotifyChannel::Email);
        let n = |name: &str, e: NotificationEvent| golden::<NotificationContract>(name, nid, e);
        check(n(
            "notification-requested",
            NotificationEvent::Requested {
                ticket_id: ticket.to_string(),
                cause_event_id: "event-1".into(),
                recipient: "dana.li@vendor.example".into(),
                channel: NotifyChannel::Email,
                kind: NoticeKind::OwnerAssigned,
                not_before: None,
            },
        ));
        check(n(
            "notification-attempted",
            NotificationEvent::Attempted {
                attempt: 1,
                outcome: AttemptOutcome::Retryable {
                    status: Some(451),
                    error: "451 4.3.0 mailbox busy".into(),
                    retry_after: None,
                },
            },
        ));
        check(n(
            "notification-digest-requested",
            NotificationEvent::Requested {
                ticket_id: ticket.to_string(),
                cause_event_id: "event-2".into(),
                recipient: "kim@vendor.example".into(),
                channel: NotifyChannel::Chat,
                kind: NoticeKind::ReassignedFyi,
                not_before: Some(closeloop_domain::Timestamp::from_micros(
                    1_762_153_200_000_000,
                )),
            },
        ));
        // A webhook delivery, asked to come back later (Retry-After).
        let hook = "3b5f1f7e-8c2a-5d0e-9a41-6f0c2d7e1a90";
        let wid = NotificationId::of("event-1", hook, NotifyChannel::Webhook);
        let w = |name: &str, e: NotificationEvent| golden::<NotificationContract>(name, wid, e);
        check(w(
            "notification-webhook-requested",
            NotificationEvent::Requested {
                ticket_id: ticket.to_string(),
                cause_event_id: "event-1".into(),
                recipient: hook.into(),
                channel: NotifyChannel::Webhook,
                kind: NoticeKind::Webhook,
                not_before: None,
            },
        ));
        check(w(
            "notification-webhook-attempted",
            NotificationEvent::Attempted {
                attempt: 1,
                outcome: AttemptOutcome::Retryable {
                    status: Some(429),
                    error: "HTTP 429 Too Many Requests".into(),
                    retry_after: Some(120),
                },
            },
        ));
        check(n(
            "notification-delivered",
            NotificationEvent::Delivered { attempt: 2 },
        ));
        check(n(
            "notification-gave-up",
            NotificationEvent::GaveUp {
                attempts: 12,
                reason: "gave up after 12 attempts: 451 4.3.0 mailbox busy".into(),
            },
        ));
        check(n(
            "notification-redriven",
            NotificationEvent::Redriven { attempts: 12 },
        ));
    }

    // Webhook endpoints.
    {
        use closeloop_contracts::webhook::{EndpointEvent, EndpointId, WebhookContract};
        let eid = EndpointId::for_request("add-crm");
        let e = |name: &str, ev: EndpointEvent| golden::<WebhookContract>(name, eid, ev);
        check(e(
            "webhook-registered",
            EndpointEvent::Registered {
                url: "https://crm.example/hooks/closeloop".into(),
                events: vec!["ticket.opened".into(), "ticket.closed".into()],
                description: "CRM mirror".into(),
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            },
        ));
        check(e(
            "webhook-secret-rotated",
            EndpointEvent::SecretRotated {
                secret: "whsec_c2VjcmV0LXR3by1zZWNyZXQtdHdvLXNlY3JldA==".into(),
                previous_valid_until: closeloop_domain::Timestamp::from_micros(
                    1_762_162_200_000_000,
                ),
            },
        ));
        check(e(
            "webhook-disabled",
            EndpointEvent::Disabled {
                reason: "410 Gone answered to delivery 5d0c...".into(),
            },
        ));
        check(e("webhook-enabled", EndpointEvent::Enabled));
        check(e("webhook-removed", EndpointEvent::Removed));
    }

    // Directory records.
    check(golden::<Directory<AccountKind>>(
        "directory-account-upserted",
        AccountKind::key("ACME-001"),
        upsert::<AccountKind>(Account {
            id: AccountId::parse("id", "ACME-001").unwrap(),
            name: "Acme Corp".into(),
            region: "EMEA".into(),
            segment: "enterprise".into(),
            team: [
                ("csm".to_string(), email("dana.li@vendor.example")),
                ("account_executive".to_string(), email("ae@vendor.example")),
            ]
            .into_iter()
            .collect(),
        }),
    ));
    check(golden::<Directory<PersonKind>>(
        "directory-person-upserted",
        PersonKind::key("dana.li@vendor.example"),
        upsert::<PersonKind>(Person {
            email: email("dana.li@vendor.example"),
            name: "Dana Li".into(),
            manager: Some(email("lee@vendor.example")),
            notify: Preferences::default(),
            chat: None,
        }),
    ));
    check(golden::<Directory<PersonKind>>(
        "directory-person-upserted-preferences",
        PersonKind::key("kim@vendor.example"),
        upsert::<PersonKind>(Person {
            email: email("kim@vendor.example"),
            name: "Kim Nguyen".into(),
            manager: Some(email("lee@vendor.example")),
            notify: Preferences {
                channels: vec![NotifyChannel::Email, NotifyChannel::Chat],
                cadence: Cadence::DailyDigest {
                    hour: 8,
                    tz: "Europe/Paris".into(),
                },
            },
            chat: Some(ChatHook {
                kind: ChatKind::Slack,
                url: "https://hooks.slack.com/services/T000/B000/XXXX".into(),
            }),
        }),
    ));
    check(golden::<Directory<TeamKind>>(
        "directory-team-upserted",
        TeamKind::key("partner-success"),
        upsert::<TeamKind>(Team {
            id: "partner-success".into(),
            name: "Partner success".into(),
            members: vec![email("kim@vendor.example"), email("raj@vendor.example")],
            chat: None,
        }),
    ));
    check(golden::<Directory<TeamKind>>(
        "directory-team-upserted-chat",
        TeamKind::key("cx-emea"),
        upsert::<TeamKind>(Team {
            id: "cx-emea".into(),
            name: "CX EMEA".into(),
            members: vec![email("kim@vendor.example")],
            chat: Some(ChatHook {
                kind: ChatKind::Teams,
                url: "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke".into(),
            }),
        }),
    ));

    // SLAs.
    {
        use closeloop_contracts::sla::SlaContract;
        use closeloop_domain::Timestamp;
        use closeloop_domain::sla::{
            ClockKind, ClockStart, SlaEvent, StartCause, StopReason, Tracked, UntouchedPeriod,
        };
        let ts = |s: i64| Timestamp::from_micros(1_762_075_800_000_000 + s * 1_000_000);
        let period = |p: u32, since: i64| UntouchedPeriod {
            period: p,
            since: ts(since),
            level_due: vec![(1, ts(since + 7 * 86_400)), (2, ts(since + 14 * 86_400))],
        };
        let s = |name: &str, e: SlaEvent| golden::<SlaContract>(name, ticket, e);
        check(s(
            "sla-clocks-started",
            SlaEvent::ClocksStarted {
                ticket_sequence: 4,
                at: ts(0),
                cause: StartCause::Opened,
                owner: "dana.li@vendor.example".into(),
                tracked: Some(Box::new(Tracked {
                    account_id: "ACME-001".into(),
                    program_id: "relationship-nps".into(),
                    workflow_id: "rnps-detractor".into(),
                    title: "NPS detractor follow-up: Acme Corp".into(),
                    opened_at: ts(0),
                    policy: sla_options(),
                    calendar: "emea-office".into(),
                    region: "EMEA".into(),
                })),
                clocks: vec![
                    ClockStart {
                        kind: ClockKind::FirstContact,
                        run: 1,
                        budget_secs: 86_400,
                        started_at: ts(0),
                        due_at: ts(3 * 86_400),
                        warn_at: vec![(50, ts(86_400)), (75, ts(2 * 86_400))],
                    },
                    ClockStart {
                        kind: ClockKind::Closure,
                        run: 1,
                        budget_secs: 20 * 86_400,
                        started_at: ts(0),
                        due_at: ts(28 * 86_400),
                        warn_at: vec![],
                    },
                ],
                replaced: vec![],
                untouched: period(1, 0),
            },
        ));
        check(s(
            "sla-clocks-restarted",
            SlaEvent::ClocksStarted {
                ticket_sequence: 9,
                at: ts(5 * 86_400),
                cause: StartCause::Reassigned,
                owner: "lee@vendor.example".into(),
                tracked: None,
                clocks: vec![ClockStart {
                    kind: ClockKind::Closure,
                    run: 2,
                    budget_secs: 20 * 86_400,
                    started_at: ts(5 * 86_400),
                    due_at: ts(33 * 86_400),
                    warn_at: vec![(50, ts(15 * 86_400))],
                }],
                replaced: vec![ClockKind::Closure],
                untouched: period(2, 5 * 86_400),
            },
        ));
        check(s(
            "sla-touched",
            SlaEvent::Touched {
                ticket_sequence: 5,
                at: ts(3600),
                action: "contact_logged".into(),
                owner: "dana.li@vendor.example".into(),
                stopped: vec![(ClockKind::FirstContact, StopReason::Met)],
                untouched: Some(period(2, 3600)),
            },
        ));
        check(s(
            "sla-touched-closed",
            SlaEvent::Touched {
                ticket_sequence: 12,
                at: ts(9 * 86_400),
                action: "closed".into(),
                owner: "dana.li@vendor.example".into(),
                stopped: vec![(ClockKind::Closure, StopReason::Met)],
                untouched: None,
            },
        ));
        check(s(
            "sla-clock-paused",
            SlaEvent::ClockPaused {
                ticket_sequence: 6,
                at: ts(86_400),
                kind: ClockKind::Closure,
                reason: "waiting for their logs".into(),
                consumed_micros: 28_800_000_000,
            },
        ));
        check(s(
            "sla-clock-resumed",
            SlaEvent::ClockResumed {
                ticket_sequence: 7,
                at: ts(3 * 86_400),
                kind: ClockKind::Closure,
                reason: "customer replied".into(),
                paused_secs: 16 * 3600,
                due_at: ts(30 * 86_400),
                warn_at: vec![(75, ts(20 * 86_400))],
            },
        ));
        check(s(
            "sla-warned",
            SlaEvent::Warned {
                kind: ClockKind::FirstContact,
                run: 1,
                pct: 75,
                due_at: ts(3 * 86_400),
                owner: "dana.li@vendor.example".into(),
            },
        ));
        check(s(
            "sla-breached",
            SlaEvent::Breached {
                kind: ClockKind::Closure,
                run: 1,
                owner: "dana.li@vendor.example".into(),
                original_due: ts(28 * 86_400),
                due_at: ts(30 * 86_400),
            },
        ));
        check(s(
            "sla-escalated",
            SlaEvent::Escalated {
                level: 2,
                period: 3,
                untouched_since: ts(86_400),
                owner: "dana.li@vendor.example".into(),
                to: "fallback@vendor.example".into(),
                fallback_reason: "mia@vendor.example has no manager in the directory".into(),
            },
        ));
    }

    // Weekly reports.
    {
        use closeloop_contracts::report::ReportContract;
        use closeloop_domain::Timestamp;
        use closeloop_domain::report::{
            ReportEvent, ReportKey, ReportLine, ReportOwner, WeeklyReport,
        };
        let ts = |s: i64| Timestamp::from_micros(1_762_075_800_000_000 + s * 1_000_000);
        check(golden::<ReportContract>(
            "report-weekly-generated",
            ReportKey::of_region("EMEA"),
            ReportEvent::Generated(Box::new(WeeklyReport {
                region: "EMEA".into(),
                scheduled_at: ts(7 * 86_400),
                recipients: vec!["salesops-emea@vendor.example".into()],
                owners: vec![ReportOwner {
                    owner: "dana.li@vendor.example".into(),
                    lines: vec![ReportLine {
                        ticket_id: ticket.to_string(),
                        account_id: "ACME-001".into(),
                        title: "NPS detractor follow-up: Acme Corp".into(),
                        program_id: "relationship-nps".into(),
                        opened_at: ts(0),
                        age_days: 7,
                        reasons: vec!["breached".into(), "escalated".into()],
                        first_contact_due: None,
                        close_due: Some(ts(30 * 86_400)),
                        escalation_level: 1,
                    }],
                }],
                tickets: 1,
                truncated: false,
            })),
        ));
    }

    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn sla_options() -> SlaPolicy {
    SlaPolicy {
        first_contact_secs: 86_400,
        escalate_after_secs: 5 * 86_400,
        close_within_secs: 20 * 86_400,
        further_levels_secs: vec![10 * 86_400],
        warn_pct: vec![50, 90],
        calendar: "emea-office".into(),
        region_calendars: vec![("APAC".into(), "apac-office".into())],
        pause_while_waiting: true,
        reset_on_reassign: true,
    }
}
