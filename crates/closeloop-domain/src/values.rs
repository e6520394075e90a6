//! Validated values. Each type can only be built by parsing, so code that
//! holds one never re-checks it. Parse errors are [`FieldViolation`]s that
//! name the offending field, ready for a gRPC `BadRequest` or an HTTP
//! problem document.

use std::fmt;

use uuid::Uuid;

/// Longest ticket title, in characters.
pub const TITLE_MAX: usize = 200;
/// Longest free text (contact summary, note, reply, root cause, actions), in characters.
pub const TEXT_MAX: usize = 4000;
/// Longest reason (reassign, reopen), in characters.
pub const REASON_MAX: usize = 1000;
/// Longest identifier (account, program, request), in characters.
pub const ID_MAX: usize = 128;
/// Longest e-mail address (RFC 5321 path limit).
pub const EMAIL_MAX: usize = 254;

/// One bad field of a request: which field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Collects violations across the fields of one request, so a client learns
/// about every bad field at once rather than one per round trip.
#[derive(Debug, Default)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the value on success and records the violation on failure.
    pub fn check<T>(&mut self, r: Result<T, FieldViolation>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn push(&mut self, v: FieldViolation) {
        self.0.push(v);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), Vec<FieldViolation>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn parse_identifier(field: &str, value: &str) -> Result<String, FieldViolation> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if v.chars().count() > ID_MAX {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {ID_MAX} characters"),
        ));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(FieldViolation::new(
            field,
            format!("contains {c:?}; use letters, digits, '-', '_', '.' or ':'"),
        ));
    }
    Ok(v.to_string())
}

string_newtype!(
    /// A customer account id as the CRM knows it, e.g. `ACME-001`.
    AccountId
);
impl AccountId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        parse_identifier(field, value).map(AccountId)
    }
}

string_newtype!(
    /// A listening program id, e.g. `relationship-nps`.
    ProgramId
);
impl ProgramId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        parse_identifier(field, value).map(ProgramId)
    }
}

string_newtype!(
    /// A client-chosen idempotency key for one command.
    RequestId
);
impl RequestId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        let v = value.trim();
        if v.is_empty() {
            return Err(FieldViolation::new(
                field,
                "is required (any unique string per logical request, e.g. a UUID)",
            ));
        }
        if v.len() > ID_MAX {
            return Err(FieldViolation::new(
                field,
                format!("must be at most {ID_MAX} bytes"),
            ));
        }
        if v.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(FieldViolation::new(
                field,
                "must be printable ASCII without spaces",
            ));
        }
        Ok(RequestId(v.to_string()))
    }
}

string_newtype!(
    /// A lower-cased e-mail address (`local@domain.tld`).
    Email
);
impl Email {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        let v = value.trim().to_ascii_lowercase();
        if v.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        if v.len() > EMAIL_MAX {
            return Err(FieldViolation::new(
                field,
                format!("must be at most {EMAIL_MAX} characters"),
            ));
        }
        let bad = || {
            FieldViolation::new(
                field,
                format!("{value:?} is not an e-mail address (expected name@example.com)"),
            )
        };
        let (local, domain) = v.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains('@')
            || v.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
        Ok(Email(v))
    }
}

/// Non-blank free text with a maximum length in characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text(String);

impl Text {
    /// Trims surrounding whitespace; rejects blank text and text over `max` characters.
    pub fn parse(field: &str, value: &str, max: usize) -> Result<Self, FieldViolation> {
        let v = value.trim();
        if v.is_empty() {
            return Err(FieldViolation::new(
                field,
                "is required and must not be blank",
            ));
        }
        let n = v.chars().count();
        if n > max {
            return Err(FieldViolation::new(
                field,
                format!("is {n} characters; the limit is {max}"),
            ));
        }
        Ok(Text(v.to_string()))
    }

    /// Like [`Text::parse`] but an empty value is `None`.
    /// A title made from other names (a workflow's name and an account's):
    /// shortened to `max` characters with an ellipsis rather than refused,
    /// so a long name never keeps a ticket from opening.
    pub fn shortened(value: &str, max: usize) -> String {
        let v = value.trim();
        if v.chars().count() <= max {
            v.to_string()
        } else {
            format!("{}…", truncate(v, max.saturating_sub(1)).trim_end())
        }
    }

    pub fn parse_optional(
        field: &str,
        value: &str,
        max: usize,
    ) -> Result<Option<Self>, FieldViolation> {
        if value.trim().is_empty() {
            Ok(None)
        } else {
            Text::parse(field, value, max).map(Some)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ticket id: a UUID. Manual tickets get one derived from the opening
/// request id, so retrying an open cannot create a second ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketId(Uuid);

/// Namespace for deterministic ticket ids (UUIDv5).
const TICKET_NS: Uuid = Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0001);

impl TicketId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        let v = value.trim();
        if v.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        Uuid::try_parse(v).map(TicketId).map_err(|_| {
            FieldViolation::new(
                field,
                format!(
                    "{:?} is not a ticket id (expected a UUID such as 0b6f3a52-8c1e-5d2a-9f00-1c2d3e4f5a6b)",
                    truncate(v, 80)
                ),
            )
        })
    }

    /// A ticket id a list may be filtered by: `None` when blank, else as
    /// [`TicketId::parse`] (any case; a typo is refused, not taken for a
    /// ticket with nothing to list).
    pub fn parse_filter(field: &str, value: &str) -> Result<Option<Self>, FieldViolation> {
        if value.trim().is_empty() {
            Ok(None)
        } else {
            Self::parse(field, value).map(Some)
        }
    }

    /// The id of the ticket a manual `open` with this request id creates.
    pub fn for_manual_request(request_id: &RequestId) -> Self {
        TicketId(Uuid::new_v5(
            &TICKET_NS,
            format!("manual/{}", request_id.as_str()).as_bytes(),
        ))
    }

    /// The id of the ticket a workflow opens for one piece of feedback.
    pub fn for_feedback(feedback_id: &str, workflow_id: &str) -> Self {
        TicketId(Uuid::new_v5(
            &TICKET_NS,
            format!("feedback/{feedback_id}/{workflow_id}").as_bytes(),
        ))
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// How the owner reached the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Phone,
    Email,
    Meeting,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Phone,
        Channel::Email,
        Channel::Meeting,
        Channel::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Phone => "phone",
            Channel::Email => "email",
            Channel::Meeting => "meeting",
            Channel::Other => "other",
        }
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(value.trim()))
            .ok_or_else(|| {
                FieldViolation::new(
                    field,
                    format!("{value:?} is not a channel; use phone, email, meeting or other"),
                )
            })
    }
}

/// Why the customer was unhappy: a fixed taxonomy so closure quality and
/// root causes can be compared across teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootCauseCategory {
    Product,
    Implementation,
    Support,
    Pricing,
    Relationship,
    Communication,
    Partner,
    Other,
}

impl RootCauseCategory {
    pub const ALL: [RootCauseCategory; 8] = [
        RootCauseCategory::Product,
        RootCauseCategory::Implementation,
        RootCauseCategory::Support,
        RootCauseCategory::Pricing,
        RootCauseCategory::Relationship,
        RootCauseCategory::Communication,
        RootCauseCategory::Partner,
        RootCauseCategory::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RootCauseCategory::Product => "product",
            RootCauseCategory::Implementation => "implementation",
            RootCauseCategory::Support => "support",
            RootCauseCategory::Pricing => "pricing",
            RootCauseCategory::Relationship => "relationship",
            RootCauseCategory::Communication => "communication",
            RootCauseCategory::Partner => "partner",
            RootCauseCategory::Other => "other",
        }
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        let v = value.trim();
        if v.is_empty() {
            return Err(FieldViolation::new(field, "is required to close a ticket"));
        }
        RootCauseCategory::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(v))
            .ok_or_else(|| {
                let all: Vec<_> = RootCauseCategory::ALL.iter().map(|c| c.as_str()).collect();
                FieldViolation::new(
                    field,
                    format!(
                        "{:?} is not a root-cause category; use one of {}",
                        truncate(v, 60),
                        all.join(", ")
                    ),
                )
            })
    }
}

string_newtype!(
    /// A kind of opportunity: a lowercase word such as `upsell` or `renewal`.
    OpportunityKind
);
impl OpportunityKind {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        let v = value.trim().to_ascii_lowercase();
        if v.is_empty() || v.len() > 64 {
            return Err(FieldViolation::new(field, "must be 1 to 64 characters"));
        }
        if !v
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(FieldViolation::new(
                field,
                format!("{value:?} must be a word of letters, digits, '-' or '_' (e.g. upsell)"),
            ));
        }
        Ok(OpportunityKind(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("e", " Dana@ACME.example ").unwrap().as_str(),
            "dana@acme.example"
        );
        for bad in [
            "",
            "dana",
            "dana@",
            "@acme.example",
            "dana@acme",
            "da na@acme.io",
            "a@b@c.io",
        ] {
            let err = Email::parse("owner_email", bad).unwrap_err();
            assert_eq!(err.field, "owner_email", "{bad}");
        }
    }

    #[test]
    fn text_limits_are_in_characters_and_say_so() {
        assert!(Text::parse("t", &"é".repeat(10), 10).is_ok());
        let err = Text::parse("note", &"x".repeat(11), 10).unwrap_err();
        assert_eq!(err.description, "is 11 characters; the limit is 10");
        assert!(Text::parse("t", "   ", 10).is_err());
    }

    #[test]
    fn long_titles_are_shortened_to_the_limit() {
        assert_eq!(
            Text::shortened("  Detractor: Acme  ", 200),
            "Detractor: Acme"
        );
        let long = Text::shortened(&"é".repeat(300), TITLE_MAX);
        assert_eq!(long.chars().count(), TITLE_MAX);
        assert!(long.ends_with('…'));
        assert!(Text::parse("title", &long, TITLE_MAX).is_ok());
    }

    #[test]
    fn ticket_ids_are_deterministic_and_parse_back() {
        let r = RequestId::parse("r", "req-1").unwrap();
        let a = TicketId::for_manual_request(&r);
        assert_eq!(a, TicketId::for_manual_request(&r));
        assert_eq!(TicketId::parse("id", &a.to_string()).unwrap(), a);
        assert!(TicketId::parse("ticket_id", "not-a-uuid").is_err());
        assert_ne!(
            TicketId::for_feedback("f1", "w1"),
            TicketId::for_feedback("f1", "w2")
        );
    }

    #[test]
    fn identifiers_reject_spaces_and_overlong() {
        assert!(AccountId::parse("a", "ACME-001").is_ok());
        assert!(AccountId::parse("a", "ACME 001").is_err());
        assert!(AccountId::parse("a", &"a".repeat(ID_MAX + 1)).is_err());
        assert!(RequestId::parse("r", "").is_err());
    }

    #[test]
    fn enums_parse_case_insensitively_and_list_choices() {
        assert_eq!(Channel::parse("c", "Phone").unwrap(), Channel::Phone);
        assert!(
            Channel::parse("c", "fax")
                .unwrap_err()
                .description
                .contains("phone")
        );
        assert_eq!(
            RootCauseCategory::parse("c", "product").unwrap(),
            RootCauseCategory::Product
        );
        assert!(RootCauseCategory::parse("c", "").is_err());
    }
}
