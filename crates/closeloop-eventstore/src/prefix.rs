//! The install's subject prefix, which namespaces every subject and stream so
//! that several installs (and every test) can share one NATS server.

use std::fmt;

/// A validated subject prefix: 1-32 characters of `a-z`, `0-9`, `-`, `_`,
/// starting with a letter or digit. Default `closeloop`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid prefix {0:?}: use 1-32 characters of a-z, 0-9, '-' or '_', starting with a letter or digit"
)]
pub struct PrefixError(String);

impl Prefix {
    pub fn parse(s: &str) -> Result<Prefix, PrefixError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Prefix(s.to_string()))
        } else {
            Err(PrefixError(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Name of the event stream: `CLOSELOOP_EVENTS` for prefix `closeloop`.
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.0.to_ascii_uppercase().replace('-', "_"))
    }

    /// Subjects the event stream captures: `<prefix>.events.>`.
    pub fn events_filter(&self) -> String {
        format!("{}.events.>", self.0)
    }

    /// All events of one aggregate type: `<prefix>.events.<type>.*`.
    pub fn aggregate_filter(&self, aggregate_type: &str) -> String {
        format!("{}.events.{aggregate_type}.*", self.0)
    }

    /// The subject of one aggregate instance: `<prefix>.events.<type>.<id>`.
    pub fn aggregate_subject(&self, aggregate_type: &str, id: &str) -> String {
        format!("{}.events.{aggregate_type}.{id}", self.0)
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix("closeloop".into())
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_stream_names() {
        let p = Prefix::parse("t-1").unwrap();
        assert_eq!(p.events_stream(), "T_1_EVENTS");
        assert_eq!(
            p.aggregate_subject("ticket", "abc"),
            "t-1.events.ticket.abc"
        );
        assert_eq!(p.aggregate_filter("ticket"), "t-1.events.ticket.*");
        for bad in ["", "A", "a.b", "a b", "-a", &"a".repeat(33)] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
    }
}
