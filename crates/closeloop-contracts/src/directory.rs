//! Directory records: the wire contract of the domain's [`Records`] (one
//! aggregate per account, person and team record).

use std::marker::PhantomData;
use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::Digested;
use closeloop_domain::directory::{Account, Person, Team};
use closeloop_domain::notification::{Cadence, ChatHook, Preferences};
use closeloop_eventstore::{Contract, DecodeError, Envelope, EventContext, StoredEvent};
use closeloop_proto::v1;
use closeloop_proto::v1::directory_event::Event as Body;
use prost::Message;
use uuid::Uuid;

const EVENT_NS: Uuid = Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0011);

pub use closeloop_domain::directory::{Record, RecordKey, Records, Stored};

/// A kind of directory record and its wire form.
pub trait RecordKind: Send + Sync + 'static {
    type Record: Record;
    /// Aggregate type, e.g. `account`.
    const TYPE: &'static str = <Self::Record as Record>::TYPE;
    /// `Closeloop-Event-Type` of its upsert.
    const EVENT_TYPE: &'static str;
    fn natural_id(r: &Self::Record) -> String {
        r.natural_id()
    }
    /// The subject token of the record with `natural_id`.
    fn key(natural_id: &str) -> RecordKey {
        RecordKey::of::<Self::Record>(natural_id)
    }
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
    const EVENT_TYPE: &'static str = "closeloop.v1.AccountUpserted";
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
    const EVENT_TYPE: &'static str = "closeloop.v1.PersonUpserted";
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
    const EVENT_TYPE: &'static str = "closeloop.v1.TeamUpserted";
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

fn chat_to_proto(c: &Option<ChatHook>) -> Option<v1::ChatWebhook> {
    c.as_ref().map(|c| v1::ChatWebhook {
        kind: c.kind.as_str().to_string(),
        url: c.url.clone(),
    })
}

fn chat_from_proto(
    c: &Option<v1::ChatWebhook>,
) -> Result<Option<ChatHook>, Vec<closeloop_domain::FieldViolation>> {
    c.as_ref()
        .map(|c| ChatHook::parse("chat", &c.kind, &c.url))
        .transpose()
}

/// The wire form of preferences: none for the default (e-mail, at once),
/// so a record without preferences encodes as it always did.
fn notify_to_proto(p: &Preferences) -> Option<v1::NotificationPreferences> {
    if *p == Preferences::default() {
        return None;
    }
    let channels = if p.channels.is_empty() {
        vec!["none".to_string()]
    } else {
        p.channels.iter().map(|c| c.as_str().to_string()).collect()
    };
    let (digest_hour, digest_time_zone) = match &p.cadence {
        Cadence::Immediate => (None, String::new()),
        Cadence::DailyDigest { hour, tz } => (Some(u32::from(*hour)), tz.clone()),
    };
    Some(v1::NotificationPreferences {
        channels,
        digest_hour,
        digest_time_zone,
    })
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
        notify: notify_to_proto(&p.notify),
        chat: chat_to_proto(&p.chat),
    }
}

pub fn person_from_proto(p: &v1::Person) -> Result<Person, Vec<closeloop_domain::FieldViolation>> {
    let mut bad = Vec::new();
    let person = Person::parse(&p.email, &p.name, &p.manager_email).map_err(|e| bad.extend(e));
    let notify = match &p.notify {
        None => Ok(Preferences::default()),
        Some(n) => Preferences::parse("notify", &n.channels, n.digest_hour, &n.digest_time_zone),
    }
    .map_err(|e| bad.extend(e));
    let chat = chat_from_proto(&p.chat).map_err(|e| bad.extend(e));
    match (person, notify, chat) {
        (Ok(person), Ok(notify), Ok(chat)) => Ok(person.with_notifications(notify, chat)),
        _ => Err(bad),
    }
}

pub fn team_to_proto(t: &Team, sequence: u64) -> v1::Team {
    v1::Team {
        id: t.id.clone(),
        name: t.name.clone(),
        members: t.members.iter().map(|m| m.to_string()).collect(),
        sequence,
        chat: chat_to_proto(&t.chat),
    }
}

pub fn team_from_proto(t: &v1::Team) -> Result<Team, Vec<closeloop_domain::FieldViolation>> {
    let mut bad = Vec::new();
    let team = Team::parse(&t.id, &t.name, &t.members).map_err(|e| bad.extend(e));
    let chat = chat_from_proto(&t.chat).map_err(|e| bad.extend(e));
    match (team, chat) {
        (Ok(mut team), Ok(chat)) => {
            team.chat = chat;
            Ok(team)
        }
        _ => Err(bad),
    }
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

/// The wire contract of directory records of kind `K`
/// ([`Records`]`<K::Record>`): payload `closeloop.v1.DirectoryEvent`.
pub struct Directory<K>(PhantomData<K>);

/// An upsert of `record`: the command, with its wire digest computed once.
pub fn upsert<K: RecordKind>(record: K::Record) -> Digested<K::Record> {
    let digest = digest::<K>(&record);
    Digested {
        value: record,
        digest,
    }
}

/// The record a stored upsert wrote, and its request id, without the
/// digest (what views need).
pub fn decode_record<K: RecordKind>(
    stored: &StoredEvent,
) -> Result<(K::Record, String), DecodeError> {
    let (meta, body) = crate::codec::decode::<v1::DirectoryEvent>(stored)?;
    Ok((K::from_body(&body)?, meta.request_id))
}

impl<K: RecordKind> Contract for Directory<K> {
    type Aggregate = Records<K::Record>;

    fn encode(
        id: RecordKey,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &Digested<K::Record>,
    ) -> (Envelope, Bytes) {
        crate::codec::encode::<v1::DirectoryEvent>(
            &id.to_string(),
            event_id,
            K::EVENT_TYPE,
            request_id,
            at,
            ctx,
            K::to_body(&event.value),
        )
    }

    fn decode(stored: &StoredEvent) -> Result<Stored<K::Record>, DecodeError> {
        let (record, request_id) = decode_record::<K>(stored)?;
        Ok(Stored {
            record: upsert::<K>(record),
            sequence: stored.sequence,
            request_id,
        })
    }

    fn recorded(
        _id: RecordKey,
        event: &Digested<K::Record>,
        sequence: u64,
        request_id: &str,
        _at: SystemTime,
        _ctx: &EventContext,
    ) -> Stored<K::Record> {
        Stored {
            record: event.clone(),
            sequence,
            request_id: request_id.to_string(),
        }
    }
}

/// A content-derived request id, so re-sending an unchanged record is idempotent.
/// It is the digest the upsert already carries (see [`upsert`]).
pub fn content_request_id<R>(upsert: &Digested<R>) -> String {
    format!(
        "{CONTENT_REQUEST}{}",
        Uuid::from_u128(upsert.digest).simple()
    )
}
