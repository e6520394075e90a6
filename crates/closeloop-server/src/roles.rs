//! The roles one `closeloop serve` process can run.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Ingestion,
    Routing,
    Ticketing,
    Escalation,
    Notification,
    Analytics,
}

impl Role {
    /// Every role, which `--roles all` means: `ingestion` takes feedback in
    /// and serves the account directory; `routing` turns feedback into
    /// routing decisions; `ticketing` opens and runs tickets; `escalation`
    /// runs SLA clocks and escalates; `notification` tells owners and
    /// stakeholders; `analytics` answers closure rates, NPS and the other
    /// views.
    pub const ALL: [Role; 6] = [
        Role::Ingestion,
        Role::Routing,
        Role::Ticketing,
        Role::Escalation,
        Role::Notification,
        Role::Analytics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingestion => "ingestion",
            Role::Routing => "routing",
            Role::Ticketing => "ticketing",
            Role::Escalation => "escalation",
            Role::Notification => "notification",
            Role::Analytics => "analytics",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RolesError {
    #[error("no roles given: use 'all' or a comma-separated list of {}", names(&Role::ALL))]
    Empty,
    #[error("unknown role {0:?}: use 'all' or a comma-separated list of {all}", all = names(&Role::ALL))]
    Unknown(String),
}

fn names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A non-empty, de-duplicated set of roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles(Vec<Role>);

impl Roles {
    /// Parses `all` or a comma-separated list such as `ticketing,routing`.
    pub fn parse(s: &str) -> Result<Roles, RolesError> {
        let mut roles = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("all") {
                roles.extend(Role::ALL);
                continue;
            }
            let role = Role::ALL
                .into_iter()
                .find(|r| r.as_str().eq_ignore_ascii_case(part))
                .ok_or_else(|| RolesError::Unknown(part.to_string()))?;
            roles.push(role);
        }
        roles.sort();
        roles.dedup();
        if roles.is_empty() {
            return Err(RolesError::Empty);
        }
        Ok(Roles(roles))
    }

    pub fn all() -> Roles {
        Roles(Role::ALL.to_vec())
    }

    /// The roles, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    pub fn contains(&self, r: Role) -> bool {
        self.0.contains(&r)
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&names(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_lists_and_rejects_unknown() {
        assert_eq!(Roles::parse("all").unwrap(), Roles::all());
        assert_eq!(
            Roles::parse(
                "ticketing, ingestion ,routing,notification,escalation,ticketing,Analytics"
            )
            .unwrap(),
            Roles::all()
        );
        assert_eq!(Roles::parse("ticketing").unwrap().to_string(), "ticketing");
        assert_eq!(Roles::parse(""), Err(RolesError::Empty));
        assert_eq!(
            Roles::parse("ticketing,billing"),
            Err(RolesError::Unknown("billing".into()))
        );
        assert_eq!(Roles::parse("analytics").unwrap().to_string(), "analytics");
        assert_eq!(
            Roles::parse("routing,ticketing").unwrap().to_string(),
            "routing, ticketing"
        );
    }
}
