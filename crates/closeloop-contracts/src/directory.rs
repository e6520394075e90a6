//! Directory records as aggregates.

use std::fmt;
use std::marker::PhantomData;
use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::directory::{Account, Person, Team};
use closeloop_eventstore::{Aggregate, Decision, Envelope, EventContext, StoredEvent};
use closeloop_proto::v1;
use closeloop_proto::v1::directory_event::Event as Body;
use prost::Message;
use uuid::Uuid;

const KEY_NS: Uuid = Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0010);
const EVENT_NS: Uuid = Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0011);

/// Subject token of a record: a UUIDv5 of its type and natural id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordKey(Uuid);

impl RecordKey {
    pub fn of<K: RecordKind>(natural_id: &str) -> RecordKey {
        RecordKey(Uuid::new_v5(
            &KEY_NS,
            format!("{}/{natural_id}", K::TYPE).as_bytes(),
        ))
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A kind of directory record and its wire form.
pub trait RecordKind: Send + Sync + 'static {
    type Record: Clone + PartialEq + Send + Sync + 'static;
    /// Aggregate type, e.g. `account`.
    const TYPE: &'static str;
    /// `Closeloop-Event-Type` of its upsert.
    const EVENT_TYPE: &'static str;
    fn natural_id(r: &Self::Record) -> String;
    fn to_body(r: &Self::Record) -> Body;
    /// `Err` when the body is another kind or no longer parses.
    fn from_body(b: &Body) -> Result<Self::Record, String>;
}

fn violations(v: Vec<closeloop_domain::FieldViolation>) -> String {
    v.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

pub struct AccountKind;
impl RecordKind for AccountKind {
    type Record = Account;
    const TYPE: &'static str = "account";
    const EVENT_TYPE: &'static str = "closeloop.v1.AccountUpserted";
    fn natural_id(r: &Account) -> String {
        r.id.to_string()
    }
    fn to_body(r: &Account) -> Body {
        Body::AccountUpserted(v1::AccountUpserted {
            account: Some(account_to_proto(r, 0)),
        })
    }
    fn from_body(b: &Body) -> Result<Account, String> {
        match b {
            Body::AccountUpserted(v1::AccountUpserted { account: Some(a) }) => {
                account_from_proto(a).map_err(violations)
            }
            _ => Err("not an account event".into()),
        }
    }
}

pub struct PersonKind;
impl RecordKind for PersonKind {
    type Record = Person;
    const TYPE: &'static str = "person";
    const EVENT_TYPE: &'static str = "closeloop.v1.PersonUpserted";
    fn natural_id(r: &Person) -> String {
        r.email.to_string()
    }
    fn to_body(r: &Person) -> Body {
        Body::PersonUpserted(v1::PersonUpserted {
            person: Some(person_to_proto(r, 0)),
        })
    }
    fn from_body(b: &Body) -> Result<Person, String> {
        match b {
            Body::PersonUpserted(v1::PersonUpserted { person: Some(p) }) => {
                person_from_proto(p).map_err(violations)
            }
            _ => Err("not a person event".into()),
        }
    }
}

pub struct TeamKind;
impl RecordKind for TeamKind {
    type Record = Team;
    const TYPE: &'static str = "team";
    const EVENT_TYPE: &'static str = "closeloop.v1.TeamUpserted";
    fn natural_id(r: &Team) -> String {
        r.id.clone()
    }
    fn to_body(r: &Team) -> Body {
        Body::TeamUpserted(v1::TeamUpserted {
            team: Some(team_to_proto(r, 0)),
        })
    }
    fn from_body(b: &Body) -> Result<Team, String> {
        match b {
            Body::TeamUpserted(v1::TeamUpserted { team: Some(t) }) => {
                team_from_proto(t).map_err(violations)
            }
            _ => Err("not a team event".into()),
        }
    }
}

pub fn account_to_proto(a: &Account, sequence: u64) -> v1::Account {
    v1::Account {
        id: a.id.to_string(),
        name: a.name.clone(),
        region: a.region.clone(),
        segment: a.segment.clone(),
        team: a
            .team
            .iter()
            .map(|(role, email)| v1::AccountTeamMember {
                role: role.clone(),
                email: email.to_string(),
            })
            .collect(),
        sequence,
    }
}

pub fn account_from_proto(
    a: &v1::Account,
) -> Result<Account, Vec<closeloop_domain::FieldViolation>> {
    let team: Vec<(String, String)> = a
        .team
        .iter()
        .map(|m| (m.role.clone(), m.email.clone()))
        .collect();
    Account::parse(&a.id, &a.name, &a.region, &a.segment, &team)
}

pub fn person_to_proto(p: &Person, sequence: u64) -> v1::Person {
    v1::Person {
        email: p.email.to_string(),
        name: p.name.clone(),
        manager_email: p
            .manager
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        sequence,
    }
}

pub fn person_from_proto(p: &v1::Person) -> Result<Person, Vec<closeloop_domain::FieldViolation>> {
    Person::parse(&p.email, &p.name, &p.manager_email)
}

pub fn team_to_proto(t: &Team, sequence: u64) -> v1::Team {
    v1::Team {
        id: t.id.clone(),
        name: t.name.clone(),
        members: t.members.iter().map(|m| m.to_string()).collect(),
        sequence,
    }
}

pub fn team_from_proto(t: &v1::Team) -> Result<Team, Vec<closeloop_domain::FieldViolation>> {
    Team::parse(&t.id, &t.name, &t.members)
}

/// One stored upsert: the record it wrote, its sequence and request id.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<R> {
    pub record: R,
    pub sequence: u64,
    pub request_id: String,
}

pub use closeloop_domain::directory::{CONTENT_REQUEST, RecordState, RequestIdReused};

/// A digest of a record's wire form.
fn digest<K: RecordKind>(r: &K::Record) -> u128 {
    let bytes = v1::DirectoryEvent {
        event: Some(K::to_body(r)),
        ..Default::default()
    }
    .encode_to_vec();
    Uuid::new_v5(&EVENT_NS, &bytes).as_u128()
}

/// Directory records of kind `K` as an [`Aggregate`].
pub struct Directory<K>(PhantomData<K>);

impl<K: RecordKind> Aggregate for Directory<K> {
    type Id = RecordKey;
    type State = RecordState<K::Record>;
    type Command = K::Record;
    type Event = K::Record;
    type Rule = RequestIdReused;
    type Recorded = Stored<K::Record>;

    const TYPE: &'static str = K::TYPE;

    fn decide(
        _id: RecordKey,
        state: Option<&Self::State>,
        request_id: &str,
        command: &K::Record,
    ) -> Result<Decision<K::Record>, RequestIdReused> {
        closeloop_domain::directory::decide(state, request_id, command, digest::<K>(command))
    }

    fn evolve(state: Option<Self::State>, event: &Self::Recorded) -> Option<Self::State> {
        Some(closeloop_domain::directory::evolve(
            state,
            &event.record,
            digest::<K>(&event.record),
            &event.request_id,
            event.sequence,
        ))
    }

    fn sequence(state: &Self::State) -> u64 {
        state.sequence
    }

    fn encode(
        id: RecordKey,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &K::Record,
    ) -> (Envelope, Bytes) {
        crate::codec::encode::<v1::DirectoryEvent>(
            &id.to_string(),
            event_id,
            K::EVENT_TYPE,
            request_id,
            at,
            ctx,
            K::to_body(event),
        )
    }

    fn decode(stored: &StoredEvent) -> Result<Self::Recorded, String> {
        let (meta, body) = crate::codec::decode::<v1::DirectoryEvent>(stored)?;
        Ok(Stored {
            record: K::from_body(&body)?,
            sequence: stored.sequence,
            request_id: meta.request_id,
        })
    }

    fn recorded(
        _id: RecordKey,
        event: &K::Record,
        sequence: u64,
        request_id: &str,
        _at: SystemTime,
        _ctx: &EventContext,
    ) -> Self::Recorded {
        Stored {
            record: event.clone(),
            sequence,
            request_id: request_id.to_string(),
        }
    }
}

/// A content-derived request id, so re-sending an unchanged record is idempotent.
pub fn content_request_id<K: RecordKind>(record: &K::Record) -> String {
    format!(
        "{CONTENT_REQUEST}{}",
        Uuid::from_u128(digest::<K>(record)).simple()
    )
}
