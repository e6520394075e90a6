//! Feedback as an aggregate: one per `(source, response_id)`, on
//! `<prefix>.events.feedback.<feedback_id>`. The revision logic is the
//! domain's ([`closeloop_domain::feedback`]); this is its wire contract and
//! the content digest that orders and de-duplicates revisions (a UUIDv5 of
//! the deterministic protobuf encoding, stable across builds).

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::{AccountId, Aggregate, Digested, Email};
use closeloop_eventstore::{Contract, DecodeError, Envelope, EventContext, StoredEvent};
use closeloop_programs::AnswerValue;
use closeloop_proto::v1::feedback_event::Event as Body;
use closeloop_proto::{convert, v1};
use prost::Message;
use uuid::Uuid;

use closeloop_programs::canonical::{Feedback, Respondent};

const EVENT_NS: Uuid = Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0021);

/// Aggregate type: subjects are `<prefix>.events.feedback.<feedback_id>`.
pub const AGGREGATE: &str = FeedbackAggregate::TYPE;

pub use closeloop_domain::feedback::{
    FeedbackAggregate, FeedbackEvent, FeedbackId, FeedbackState, StoredRevision,
};

pub fn to_proto(id: FeedbackId, f: &Feedback) -> v1::Feedback {
    v1::Feedback {
        feedback_id: id.to_string(),
        response_id: f.response_id.clone(),
        source: f.source.clone(),
        program: f.program.clone(),
        account_id: f.account_id.to_string(),
        respondent: Some(v1::Respondent {
            email: f
                .respondent
                .email
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            name: f.respondent.name.clone(),
            role: f.respondent.role.clone(),
        }),
        submitted_at: Some(convert::timestamp(f.submitted_at)),
        revised_at: f.revised_at.map(convert::timestamp),
        answers: f
            .answers
            .iter()
            .map(|(k, v)| {
                use v1::answer::Value as A;
                let value = match v {
                    AnswerValue::Int(i) => A::IntValue(*i),
                    AnswerValue::Float(x) => A::DoubleValue(*x),
                    AnswerValue::Text(s) => A::StringValue(s.clone()),
                    AnswerValue::Bool(b) => A::BoolValue(*b),
                };
                (k.clone(), v1::Answer { value: Some(value) })
            })
            .collect(),
        attributes: f.attributes.clone().into_iter().collect(),
    }
}

/// Reads a stored feedback back. Stored feedback was valid when written, so
/// only structural damage is an error.
pub fn from_proto(p: &v1::Feedback) -> Result<Feedback, String> {
    let account_id = AccountId::parse("account_id", &p.account_id).map_err(|v| v.to_string())?;
    let respondent = p.respondent.clone().unwrap_or_default();
    let answers: BTreeMap<String, AnswerValue> = p
        .answers
        .iter()
        .filter_map(|(k, a)| {
            use v1::answer::Value as A;
            let v = match a.value.as_ref()? {
                A::IntValue(i) => AnswerValue::Int(*i),
                A::DoubleValue(x) => AnswerValue::Float(*x),
                A::StringValue(s) => AnswerValue::Text(s.clone()),
                A::BoolValue(b) => AnswerValue::Bool(*b),
            };
            Some((k.clone(), v))
        })
        .collect();
    Ok(Feedback {
        response_id: p.response_id.clone(),
        source: p.source.clone(),
        program: p.program.clone(),
        account_id,
        respondent: Respondent {
            email: Email::parse("email", &respondent.email).ok(),
            name: respondent.name,
            role: respondent.role,
        },
        submitted_at: p
            .submitted_at
            .as_ref()
            .map(convert::from_timestamp)
            .unwrap_or_default(),
        revised_at: p.revised_at.as_ref().map(convert::from_timestamp),
        answers,
        attributes: p.attributes.clone().into_iter().collect(),
    })
}

/// A digest of one revision's content: UUIDv5 of its protobuf encoding,
/// which is deterministic (map fields are ordered), so the digest is stable
/// across builds and replicas.
pub fn content_digest(f: &Feedback) -> u128 {
    let id = FeedbackId::of(&f.source, &f.response_id);
    Uuid::new_v5(&EVENT_NS, &to_proto(id, f).encode_to_vec()).as_u128()
}

/// The request id of a submission: its content digest. It names the
/// request (causation id, logs); the event id is the executor's, from the
/// response and its position, so content that returns to an earlier
/// version is a new event with a new id.
pub fn content_request_id(f: &Feedback) -> String {
    request_id_of(content_digest(f))
}

fn request_id_of(digest: u128) -> String {
    format!("content-{}", Uuid::from_u128(digest).simple())
}

/// A submission of `f`: the command (with its content digest, computed
/// once here) and its request id.
pub fn submission(f: Feedback) -> (Digested<Feedback>, String) {
    let digest = content_digest(&f);
    (Digested { value: f, digest }, request_id_of(digest))
}

/// The wire contract of [`FeedbackAggregate`]: payload
/// `closeloop.v1.FeedbackEvent`; a decoded revision gets its content digest.
pub struct FeedbackContract;

impl Contract for FeedbackContract {
    type Aggregate = FeedbackAggregate;

    fn encode(
        id: FeedbackId,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &Digested<FeedbackEvent>,
    ) -> (Envelope, Bytes) {
        let (body, event_type) = match &event.value {
            FeedbackEvent::Received(f) => (
                Body::Received(v1::FeedbackReceived {
                    feedback: Some(to_proto(id, f)),
                }),
                "closeloop.v1.FeedbackReceived",
            ),
            FeedbackEvent::Updated { feedback, revision } => (
                Body::Updated(v1::FeedbackUpdated {
                    feedback: Some(to_proto(id, feedback)),
                    revision: *revision,
                }),
                "closeloop.v1.FeedbackUpdated",
            ),
            FeedbackEvent::Superseded {
                feedback,
                current_revision,
            } => (
                Body::Superseded(v1::FeedbackSuperseded {
                    feedback: Some(to_proto(id, feedback)),
                    current_revision: *current_revision,
                }),
                "closeloop.v1.FeedbackSuperseded",
            ),
        };
        crate::codec::encode::<v1::FeedbackEvent>(
            &id.to_string(),
            event_id,
            event_type,
            request_id,
            at,
            ctx,
            body,
        )
    }

    fn decode(stored: &StoredEvent) -> Result<StoredRevision, DecodeError> {
        let (_, body) = crate::codec::decode::<v1::FeedbackEvent>(stored)?;
        let event = match body {
            Body::Received(v1::FeedbackReceived { feedback: Some(f) }) => {
                FeedbackEvent::Received(from_proto(&f)?)
            }
            Body::Updated(v1::FeedbackUpdated {
                feedback: Some(f),
                revision,
            }) => FeedbackEvent::Updated {
                feedback: from_proto(&f)?,
                revision,
            },
            Body::Superseded(v1::FeedbackSuperseded {
                feedback: Some(f),
                current_revision,
            }) => FeedbackEvent::Superseded {
                feedback: from_proto(&f)?,
                current_revision,
            },
            _ => return Err("feedback event without feedback".into()),
        };
        Ok(StoredRevision {
            event: Digested {
                digest: content_digest(event.feedback()),
                value: event,
            },
            sequence: stored.sequence,
        })
    }

    fn recorded(
        _id: FeedbackId,
        event: &Digested<FeedbackEvent>,
        sequence: u64,
        _request_id: &str,
        _at: SystemTime,
        _ctx: &EventContext,
    ) -> StoredRevision {
        StoredRevision {
            event: event.clone(),
            sequence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_domain::{Decision, Timestamp};

    /// Decides a submission of `f`, answering the plain event.
    fn decide_(
        id: FeedbackId,
        s: Option<&FeedbackState>,
        r: &str,
        f: &Feedback,
    ) -> Result<Decision<FeedbackEvent>, std::convert::Infallible> {
        Ok(
            match FeedbackAggregate::decide(id, s, r, &submission(f.clone()).0)? {
                Decision::Append(d) => Decision::Append(d.value),
                Decision::AlreadyApplied { sequence } => Decision::AlreadyApplied { sequence },
            },
        )
    }

    /// Folds event `e` stored at `sequence`.
    fn evolve_(
        s: Option<FeedbackState>,
        (e, sequence): &(FeedbackEvent, u64),
    ) -> Option<FeedbackState> {
        let digest = content_digest(e.feedback());
        FeedbackAggregate::evolve(
            s,
            &StoredRevision {
                event: Digested {
                    value: e.clone(),
                    digest,
                },
                sequence: *sequence,
            },
        )
    }

    fn sample() -> Feedback {
        Feedback {
            response_id: "R_1".into(),
            source: "qualtrics".into(),
            program: "relationship-nps".into(),
            account_id: AccountId::parse("a", "ACME-001").unwrap(),
            respondent: Respondent {
                email: Some(Email::parse("e", "cio@acme.example").unwrap()),
                name: "Dana".into(),
                role: "CIO".into(),
            },
            submitted_at: Timestamp::from_micros(1_762_075_800_000_000),
            revised_at: None,
            answers: [
                ("nps".to_string(), AnswerValue::Int(3)),
                ("comment".to_string(), AnswerValue::Text("broken".into())),
            ]
            .into_iter()
            .collect(),
            attributes: [("region".to_string(), "EMEA".to_string())]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn protobuf_round_trip_and_content_ids() {
        let f = sample();
        let id = FeedbackId::of(&f.source, &f.response_id);
        assert_eq!(from_proto(&to_proto(id, &f)).unwrap(), f);
        assert_eq!(content_request_id(&f), content_request_id(&f.clone()));
        let mut g = f.clone();
        g.answers
            .insert("comment".into(), AnswerValue::Text("fixed".into()));
        assert_ne!(content_request_id(&f), content_request_id(&g));
        g.revised_at = Some(Timestamp::from_micros(1_762_075_900_000_000));
        assert_eq!(from_proto(&to_proto(id, &g)).unwrap(), g);
    }

    #[test]
    fn content_id_is_a_fixed_function_of_the_content() {
        // A golden value: the id must not change between builds or
        // replicas, or a resubmission would not dedupe at the broker.
        let f = sample();
        assert_eq!(
            content_request_id(&f),
            "content-cdb14c0dd1be592eb5e713c09111f33d"
        );
    }

    #[test]
    fn same_content_is_a_duplicate_changed_content_an_update() {
        let f = sample();
        let id = FeedbackId::of(&f.source, &f.response_id);
        let d = decide_(id, None, "r", &f).unwrap();
        assert_eq!(d, Decision::Append(FeedbackEvent::Received(f.clone())));
        let s = evolve_(None, &(FeedbackEvent::Received(f.clone()), 7)).unwrap();
        assert_eq!(
            decide_(id, Some(&s), "r", &f).unwrap(),
            Decision::AlreadyApplied { sequence: 7 }
        );
        let mut g = f.clone();
        g.answers
            .insert("comment".into(), AnswerValue::Text("added later".into()));
        g.revised_at = Some(Timestamp::from_micros(1_762_075_860_000_000));
        assert_eq!(
            decide_(id, Some(&s), "r2", &g).unwrap(),
            Decision::Append(FeedbackEvent::Updated {
                feedback: g,
                revision: 1
            })
        );
    }

    /// Folds `events` (sequences 1, 2, ...) into a state.
    fn fold(events: &[FeedbackEvent]) -> Option<FeedbackState> {
        events
            .iter()
            .zip(1..)
            .fold(None, |s, (e, seq)| evolve_(s, &(e.clone(), seq)))
    }

    fn revised(f: &Feedback, comment: &str, secs_later: i64) -> Feedback {
        let mut g = f.clone();
        g.answers
            .insert("comment".into(), AnswerValue::Text(comment.into()));
        g.revised_at = Some(Timestamp::from_micros(
            f.submitted_at.as_micros() + secs_later * 1_000_000,
        ));
        g
    }

    #[test]
    fn content_returning_to_an_earlier_version_is_a_duplicate_of_that_version() {
        // created (A), updated (B), then created redelivered (A).
        let a = sample();
        let id = FeedbackId::of(&a.source, &a.response_id);
        let b = revised(&a, "more detail", 60);
        let s = fold(&[
            FeedbackEvent::Received(a.clone()),
            FeedbackEvent::Updated {
                feedback: b.clone(),
                revision: 1,
            },
        ])
        .unwrap();
        assert_eq!(
            decide_(id, Some(&s), "r", &a).unwrap(),
            Decision::AlreadyApplied { sequence: 1 }
        );
        assert_eq!(
            decide_(id, Some(&s), "r", &b).unwrap(),
            Decision::AlreadyApplied { sequence: 2 }
        );
        // The customer genuinely went back to A's answers later: a new revision.
        let mut a2 = a.clone();
        a2.revised_at = Some(Timestamp::from_micros(
            a.submitted_at.as_micros() + 120_000_000,
        ));
        assert_eq!(
            decide_(id, Some(&s), "r", &a2).unwrap(),
            Decision::Append(FeedbackEvent::Updated {
                feedback: a2,
                revision: 2
            })
        );
    }

    #[test]
    fn an_older_revision_arriving_late_is_superseded_never_applied() {
        let a = sample();
        let id = FeedbackId::of(&a.source, &a.response_id);
        let b = revised(&a, "first edit", 60);
        let c = revised(&a, "second edit", 120);
        // c arrives first (as Received), then the older b.
        let s = fold(&[FeedbackEvent::Received(c.clone())]).unwrap();
        let d = decide_(id, Some(&s), "r", &b).unwrap();
        let late = FeedbackEvent::Superseded {
            feedback: b.clone(),
            current_revision: 0,
        };
        assert_eq!(d, Decision::Append(late.clone()));
        let s = fold(&[FeedbackEvent::Received(c.clone()), late]).unwrap();
        assert_eq!((&s.feedback, s.revision, s.sequence), (&c, 0, 2));
        // Its redelivery is a duplicate; the original (older still) is superseded.
        assert_eq!(
            decide_(id, Some(&s), "r", &b).unwrap(),
            Decision::AlreadyApplied { sequence: 2 }
        );
        assert!(matches!(
            decide_(id, Some(&s), "r", &a).unwrap(),
            Decision::Append(FeedbackEvent::Superseded { .. })
        ));
    }

    #[test]
    fn revisions_made_at_the_same_time_are_ordered_by_content_alike_in_any_arrival_order() {
        let a = sample();
        let id = FeedbackId::of(&a.source, &a.response_id);
        let mut b = a.clone();
        b.answers.insert("nps".into(), AnswerValue::Int(4));
        let newest = |x: &Feedback, y: &Feedback| {
            let s = fold(&[FeedbackEvent::Received(x.clone())]).unwrap();
            match decide_(id, Some(&s), "r", y).unwrap() {
                Decision::Append(FeedbackEvent::Updated { feedback, .. }) => feedback,
                Decision::Append(FeedbackEvent::Superseded { .. }) => x.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(newest(&a, &b), newest(&b, &a));
    }
}
