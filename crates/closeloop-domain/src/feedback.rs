//! Survey responses and their revisions.
//!
//! One aggregate per `(source, response_id)`. Revisions are ordered by
//! [`Feedback::revised`] (`revised_at`, else `submitted_at`), then by a
//! digest of their content, whatever order they arrive in: a newer revision
//! is [`FeedbackEvent::Updated`]; an older one arriving late is recorded as
//! [`FeedbackEvent::Superseded`] and never applied; any content the response
//! has had before (current, older or superseded) is a duplicate and writes
//! nothing. The digest is the wire codec's (`closeloop-contracts`), so it is
//! stable across builds; here it is only compared.

use std::collections::{BTreeMap, HashMap};

use std::fmt;

use uuid::Uuid;

use crate::{AccountId, Decision, Digested, Email, Timestamp};

const FEEDBACK_NS: Uuid = Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0020);

/// A feedback id: UUIDv5 of `(source, response_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeedbackId(Uuid);

impl FeedbackId {
    pub fn of(source: &str, response_id: &str) -> FeedbackId {
        FeedbackId(Uuid::new_v5(
            &FEEDBACK_NS,
            format!("{source}/{response_id}").as_bytes(),
        ))
    }

    /// A feedback id as written (e.g. a workflow ticket's origin).
    pub fn parse(s: &str) -> Option<FeedbackId> {
        Uuid::try_parse(s).ok().map(FeedbackId)
    }
}

impl fmt::Display for FeedbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// One answer as submitted.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerValue {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

impl AnswerValue {
    /// The value as error messages name it (`5`, `5.5`, `"text"`, `true`).
    pub fn describe(&self) -> String {
        match self {
            AnswerValue::Int(i) => i.to_string(),
            AnswerValue::Float(f) => format!("{f:?}"),
            AnswerValue::Text(s) => format!("{s:?}"),
            AnswerValue::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Respondent {
    pub email: Option<Email>,
    pub name: String,
    pub role: String,
}

/// A validated survey response (one revision of it).
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub response_id: String,
    pub source: String,
    pub program: String,
    pub account_id: AccountId,
    pub respondent: Respondent,
    pub submitted_at: Timestamp,
    /// When this revision was made (a vendor's `updated_at`); `None`: it is
    /// the response as submitted. Orders revisions: see [`Feedback::revised`].
    pub revised_at: Option<Timestamp>,
    pub answers: BTreeMap<String, AnswerValue>,
    pub attributes: BTreeMap<String, String>,
}

impl Feedback {
    /// When this revision was made: `revised_at`, else `submitted_at`.
    /// Revisions of one response are ordered by it, then by content, so a
    /// late delivery of an older revision never replaces a newer one.
    pub fn revised(&self) -> Timestamp {
        self.revised_at.unwrap_or(self.submitted_at)
    }
}

/// What the stream holds for one response.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackState {
    /// The newest revision (by [`Feedback::revised`], then content).
    pub feedback: Feedback,
    /// Its content digest.
    pub digest: u128,
    /// 0 until the first update.
    pub revision: u32,
    /// Stream sequence of the last event (the concurrency token).
    pub sequence: u64,
    /// Every content the response has had (received, updated or
    /// superseded): its digest and the sequence of its event.
    pub seen: HashMap<u128, u64>,
}

/// What happened to a response.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackEvent {
    Received(Feedback),
    Updated {
        feedback: Feedback,
        revision: u32,
    },
    /// An older revision that arrived after a newer one: recorded, not applied.
    Superseded {
        feedback: Feedback,
        current_revision: u32,
    },
}

impl FeedbackEvent {
    /// The revision's content.
    pub fn feedback(&self) -> &Feedback {
        match self {
            FeedbackEvent::Received(f)
            | FeedbackEvent::Updated { feedback: f, .. }
            | FeedbackEvent::Superseded { feedback: f, .. } => f,
        }
    }
}

/// How revisions are ordered: when made, then content.
fn order(f: &Feedback, digest: u128) -> (Timestamp, u128) {
    (f.revised(), digest)
}

/// What submitting revision `f` (whose content digest is `digest`) means.
pub fn decide(
    state: Option<&FeedbackState>,
    f: &Feedback,
    digest: u128,
) -> Decision<FeedbackEvent> {
    let Some(s) = state else {
        return Decision::Append(FeedbackEvent::Received(f.clone()));
    };
    if let Some(&sequence) = s.seen.get(&digest) {
        return Decision::AlreadyApplied { sequence };
    }
    Decision::Append(if order(f, digest) > order(&s.feedback, s.digest) {
        FeedbackEvent::Updated {
            feedback: f.clone(),
            revision: s.revision + 1,
        }
    } else {
        FeedbackEvent::Superseded {
            feedback: f.clone(),
            current_revision: s.revision,
        }
    })
}

/// Folds an event (whose revision's content digest is `digest`, stored at
/// `sequence`) into the response.
pub fn evolve(
    state: Option<FeedbackState>,
    event: &FeedbackEvent,
    digest: u128,
    sequence: u64,
) -> FeedbackState {
    let applied = match event {
        FeedbackEvent::Received(_) => Some(0),
        FeedbackEvent::Updated { revision, .. } => Some(*revision),
        FeedbackEvent::Superseded { .. } => None,
    };
    let feedback = event.feedback();
    let mut s = match (state, applied) {
        (Some(mut s), Some(revision)) => {
            s.feedback = feedback.clone();
            s.digest = digest;
            s.revision = revision;
            s
        }
        (Some(s), None) => s,
        (None, _) => FeedbackState {
            feedback: feedback.clone(),
            digest,
            revision: applied.unwrap_or(0),
            sequence: 0,
            seen: HashMap::new(),
        },
    };
    s.seen.insert(digest, sequence);
    s.sequence = sequence;
    s
}

/// A revision as stored: the event (with its content digest) and its
/// stream sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRevision {
    pub event: Digested<FeedbackEvent>,
    pub sequence: u64,
}

/// Survey responses as an [`crate::Aggregate`]: a command is one revision
/// with its content digest (the contract's), computed once where it enters.
pub struct FeedbackAggregate;

impl crate::Aggregate for FeedbackAggregate {
    type Id = FeedbackId;
    type State = FeedbackState;
    type Command = Digested<Feedback>;
    type Event = Digested<FeedbackEvent>;
    type Rule = std::convert::Infallible;
    type Recorded = StoredRevision;

    const TYPE: &'static str = "feedback";

    fn decide(
        _id: FeedbackId,
        state: Option<&FeedbackState>,
        _request_id: &str,
        f: &Digested<Feedback>,
    ) -> Result<Decision<Digested<FeedbackEvent>>, std::convert::Infallible> {
        Ok(match decide(state, &f.value, f.digest) {
            Decision::Append(value) => Decision::Append(Digested {
                value,
                digest: f.digest,
            }),
            Decision::AlreadyApplied { sequence } => Decision::AlreadyApplied { sequence },
        })
    }

    fn evolve(state: Option<FeedbackState>, r: &StoredRevision) -> Option<FeedbackState> {
        Some(evolve(state, &r.event.value, r.event.digest, r.sequence))
    }

    fn sequence(state: &FeedbackState) -> u64 {
        state.sequence
    }
}
