//! The account directory: accounts (with their account team by role),
//! people (with their manager) and teams (with their members). Routing reads
//! it to turn "the account's CSM" or "the partner-success team" into one
//! person, and escalation to find an owner's manager.
//!
//! Directory records are replaced whole by an upsert; upserting a record
//! equal to the stored one writes nothing.

use std::collections::BTreeMap;

use crate::notification::{ChatHook, Preferences};
use crate::values::{AccountId, Email, FieldViolation, Violations};

/// Longest name (account, person, team), in characters.
pub const NAME_MAX: usize = 200;

fn name(v: &mut Violations, field: &str, value: &str, required: bool) -> String {
    let t = value.trim();
    if required && t.is_empty() {
        v.push(FieldViolation::new(field, "is required"));
    } else if t.chars().count() > NAME_MAX {
        v.push(FieldViolation::new(
            field,
            format!(
                "is {} characters; the limit is {NAME_MAX}",
                t.chars().count()
            ),
        ));
    }
    t.to_string()
}

/// A role or team id: 1-64 of a-z, 0-9, '-', '_'.
pub fn parse_token(field: &str, value: &str) -> Result<String, FieldViolation> {
    let v = value.trim();
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(v.to_string())
    } else {
        Err(FieldViolation::new(
            field,
            format!("{v:?} is not a valid id: use 1-64 of a-z, 0-9, '-' and '_'"),
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub region: String,
    pub segment: String,
    /// Role (e.g. `csm`) → the person in that role.
    pub team: BTreeMap<String, Email>,
}

impl Account {
    /// Parses an account; `team` is `(role, email)` pairs.
    pub fn parse(
        id: &str,
        name_: &str,
        region: &str,
        segment: &str,
        team: &[(String, String)],
    ) -> Result<Account, Vec<FieldViolation>> {
        let mut v = Violations::new();
        let id = v.check(AccountId::parse("id", id));
        let name_ = name(&mut v, "name", name_, true);
        let region = name(&mut v, "region", region, false);
        let segment = name(&mut v, "segment", segment, false);
        let mut members = BTreeMap::new();
        for (role, email) in team {
            let field = format!("team.{role}");
            let r = v.check(parse_token(&field, role));
            let e = v.check(Email::parse(&field, email));
            if let (Some(r), Some(e)) = (r, e)
                && members.insert(r.clone(), e).is_some()
            {
                v.push(FieldViolation::new(field, "role is given twice"));
            }
        }
        v.into_result()?;
        Ok(Account {
            id: id.expect("checked"),
            name: name_,
            region,
            segment,
            team: members,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub email: Email,
    pub name: String,
    pub manager: Option<Email>,
    /// How the person is told (default: e-mail, immediately).
    pub notify: Preferences,
    /// Their own chat webhook (else their team's).
    pub chat: Option<ChatHook>,
}

impl Person {
    pub fn parse(email: &str, name_: &str, manager: &str) -> Result<Person, Vec<FieldViolation>> {
        let mut v = Violations::new();
        let email = v.check(Email::parse("email", email));
        let name_ = name(&mut v, "name", name_, false);
        let manager = if manager.trim().is_empty() {
            None
        } else {
            v.check(Email::parse("manager_email", manager))
        };
        if let (Some(e), Some(m)) = (&email, &manager)
            && e == m
        {
            v.push(FieldViolation::new(
                "manager_email",
                "a person cannot manage themselves",
            ));
        }
        v.into_result()?;
        Ok(Person {
            email: email.expect("checked"),
            name: name_,
            manager,
            notify: Preferences::default(),
            chat: None,
        })
    }

    /// This person with notification preferences `notify` and chat
    /// webhook `chat`.
    pub fn with_notifications(mut self, notify: Preferences, chat: Option<ChatHook>) -> Person {
        self.notify = notify;
        self.chat = chat;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: String,
    pub name: String,
    /// Members in rotation order (round-robin assignment walks this list).
    pub members: Vec<Email>,
    /// The team's chat channel.
    pub chat: Option<ChatHook>,
}

impl Team {
    pub fn parse(id: &str, name_: &str, members: &[String]) -> Result<Team, Vec<FieldViolation>> {
        let mut v = Violations::new();
        let id = v.check(parse_token("id", id));
        let name_ = name(&mut v, "name", name_, false);
        let mut list: Vec<Email> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            if let Some(e) = v.check(Email::parse(&format!("members[{i}]"), m)) {
                if list.contains(&e) {
                    v.push(FieldViolation::new(
                        format!("members[{i}]"),
                        format!("{e} is listed twice"),
                    ));
                } else {
                    list.push(e);
                }
            }
        }
        if members.is_empty() {
            v.push(FieldViolation::new(
                "members",
                "a team needs at least one member",
            ));
        }
        v.into_result()?;
        Ok(Team {
            id: id.expect("checked"),
            name: name_,
            members: list,
            chat: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_reports_every_bad_field() {
        let err = Account::parse(
            "ACME 1",
            "",
            "EMEA",
            "",
            &[("CSM".into(), "x".into()), ("ae".into(), "ae@v.io".into())],
        )
        .unwrap_err();
        let f: Vec<_> = err.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(f, ["id", "name", "team.CSM", "team.CSM"]);
        let a = Account::parse(
            "ACME-001",
            "Acme",
            "EMEA",
            "enterprise",
            &[("csm".into(), "Dana@V.io".into())],
        )
        .unwrap();
        assert_eq!(a.team["csm"].as_str(), "dana@v.io");
    }

    #[test]
    fn person_and_team_rules() {
        assert!(Person::parse("a@v.io", "A", "a@v.io").is_err());
        assert_eq!(Person::parse("a@v.io", "A", "").unwrap().manager, None);
        assert!(Team::parse("partner-success", "PS", &[]).is_err());
        let dup = Team::parse("ps", "PS", &["a@v.io".into(), "A@v.io".into()]).unwrap_err();
        assert_eq!(dup[0].field, "members[1]");
    }
}

/// A directory record as it stands, with the sequence of its last change.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordState<R> {
    pub record: R,
    pub sequence: u64,
    /// Client request ids applied to the record (content-derived ones are
    /// not kept: equal content is already idempotent): the digest of the
    /// record each wrote and its sequence.
    pub requests: std::collections::HashMap<String, (u128, u64)>,
}

/// A client's request id was used before on this record for another record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "request_id {0:?} was already used on this record with other content; \
     a retry must repeat its request exactly: use a new request_id for a new request"
)]
pub struct RequestIdReused(pub String);

/// Request ids the writer derives from content start with this; all
/// others are the client's.
pub const CONTENT_REQUEST: &str = "content-";

/// What upserting `record` (its wire digest `digest`) with `request_id`
/// means: a client's request id is answered from history, even if the
/// record changed since (a late retry never reverts a newer upsert), and
/// refused with other content; an unchanged record writes nothing.
pub fn decide<R: Clone + PartialEq>(
    state: Option<&RecordState<R>>,
    request_id: &str,
    record: &R,
    digest: u128,
) -> Result<crate::Decision<R>, RequestIdReused> {
    if let Some(&(wrote, sequence)) = state.and_then(|s| s.requests.get(request_id)) {
        return if wrote == digest {
            Ok(crate::Decision::AlreadyApplied { sequence })
        } else {
            Err(RequestIdReused(request_id.to_string()))
        };
    }
    Ok(match state {
        Some(s) if &s.record == record => crate::Decision::AlreadyApplied {
            sequence: s.sequence,
        },
        _ => crate::Decision::Append(record.clone()),
    })
}

/// Folds an upsert of `record` (digest `digest`, by `request_id`, stored at
/// `sequence`) into the record.
pub fn evolve<R: Clone>(
    state: Option<RecordState<R>>,
    record: &R,
    digest: u128,
    request_id: &str,
    sequence: u64,
) -> RecordState<R> {
    let mut requests = state.map(|s| s.requests).unwrap_or_default();
    if !request_id.is_empty() && !request_id.starts_with(CONTENT_REQUEST) {
        requests.insert(request_id.to_string(), (digest, sequence));
    }
    RecordState {
        record: record.clone(),
        sequence,
        requests,
    }
}

/// A kind of directory record.
pub trait Record: Clone + PartialEq + Send + Sync + 'static {
    /// Aggregate type, e.g. `account`.
    const TYPE: &'static str;
    /// The id people use: an account id, a person's e-mail, a team id.
    fn natural_id(&self) -> String;
}

impl Record for Account {
    const TYPE: &'static str = "account";
    fn natural_id(&self) -> String {
        self.id.to_string()
    }
}

impl Record for Person {
    const TYPE: &'static str = "person";
    fn natural_id(&self) -> String {
        self.email.to_string()
    }
}

impl Record for Team {
    const TYPE: &'static str = "team";
    fn natural_id(&self) -> String {
        self.id.clone()
    }
}

const KEY_NS: uuid::Uuid = uuid::Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0010);

/// Subject token of a record: a UUIDv5 of its type and natural id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordKey(uuid::Uuid);

impl RecordKey {
    pub fn of<R: Record>(natural_id: &str) -> RecordKey {
        RecordKey(uuid::Uuid::new_v5(
            &KEY_NS,
            format!("{}/{natural_id}", R::TYPE).as_bytes(),
        ))
    }
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// One stored upsert: the record it wrote (with its wire digest), its
/// sequence and request id.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<R> {
    pub record: crate::Digested<R>,
    pub sequence: u64,
    pub request_id: String,
}

/// Directory records of type `R` as an [`crate::Aggregate`]: a command is
/// the whole record with its wire digest (the contract's).
pub struct Records<R>(std::marker::PhantomData<R>);

impl<R: Record> crate::Aggregate for Records<R> {
    type Id = RecordKey;
    type State = RecordState<R>;
    type Command = crate::Digested<R>;
    type Event = crate::Digested<R>;
    type Rule = RequestIdReused;
    type Recorded = Stored<R>;

    const TYPE: &'static str = R::TYPE;

    fn decide(
        _id: RecordKey,
        state: Option<&RecordState<R>>,
        request_id: &str,
        command: &crate::Digested<R>,
    ) -> Result<crate::Decision<crate::Digested<R>>, RequestIdReused> {
        Ok(
            match decide(state, request_id, &command.value, command.digest)? {
                crate::Decision::Append(_) => crate::Decision::Append(command.clone()),
                crate::Decision::AlreadyApplied { sequence } => {
                    crate::Decision::AlreadyApplied { sequence }
                }
            },
        )
    }

    fn evolve(state: Option<RecordState<R>>, s: &Stored<R>) -> Option<RecordState<R>> {
        Some(evolve(
            state,
            &s.record.value,
            s.record.digest,
            &s.request_id,
            s.sequence,
        ))
    }

    fn sequence(state: &RecordState<R>) -> u64 {
        state.sequence
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use crate::Decision;

    #[test]
    fn client_request_ids_name_one_upsert_content_ids_only_dedupe() {
        let a = evolve(None, &"A".to_string(), 1, "import-1", 10);
        let b = evolve(Some(a.clone()), &"B".to_string(), 2, "import-2", 11);
        // A late retry of import-1 is answered from history, not re-applied.
        assert_eq!(
            decide(Some(&b), "import-1", &"A".to_string(), 1),
            Ok(Decision::AlreadyApplied { sequence: 10 })
        );
        // import-1 with other content is refused.
        assert_eq!(
            decide(Some(&b), "import-1", &"C".to_string(), 3),
            Err(RequestIdReused("import-1".into()))
        );
        // Content-derived ids are not remembered: going back to A is a change.
        let by_content = evolve(Some(b.clone()), &"A".to_string(), 1, "content-x", 12);
        assert!(!by_content.requests.contains_key("content-x"));
        assert_eq!(
            decide(Some(&b), "content-y", &"A".to_string(), 1),
            Ok(Decision::Append("A".to_string()))
        );
        assert_eq!(
            decide(Some(&b), "content-z", &"B".to_string(), 2),
            Ok(Decision::AlreadyApplied { sequence: 11 })
        );
    }
}
