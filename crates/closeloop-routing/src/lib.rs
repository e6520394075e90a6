//! Routing decisions.
//!
//! [`decide`] is pure: given a validated response, its program and what the
//! directory says (through [`DirectoryView`]), it names, for every workflow
//! the response triggers, exactly one owner and the stakeholders to notify.
//! An owner that cannot be resolved (no CSM on the account, an empty team)
//! falls back to the program's fallback owner and the route is flagged with
//! the reason: a response is never dropped. A response that triggers nothing
//! is recorded as unmatched.
//!
//! Teams assign round-robin: the view says which turn of the team's rotation
//! a route takes ([`DirectoryView::turn`]); the routing role keeps those
//! turns durable (`closeloop_contracts::rotation`) so restarts and replicas continue the
//! rotation instead of starting it over.
//!
//! The rest of the crate is the routing role's I/O, [`role`]: the consumer
//! of feedback events, which reads the directory through its published
//! queries (`closeloop_directory::lookup`). The aggregates it writes (the
//! routing decision of a response, team rotations) are the domain's
//! (`closeloop_domain::{routing, rotation}`), their events' wire form is in
//! `closeloop_contracts::{routing, rotation}`.

pub mod role;

use std::collections::BTreeMap;

use closeloop_programs::canonical::Feedback;
use closeloop_programs::{Facts, OwnerRule, Program, Sla, Workflow};

/// What routing needs to know of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountInfo {
    pub name: String,
    pub region: String,
    pub segment: String,
    /// Role → e-mail.
    pub team: BTreeMap<String, String>,
}

/// The directory as routing sees it (a snapshot or a live view).
pub trait DirectoryView {
    fn account(&self, id: &str) -> Option<AccountInfo>;
    /// Members of a team in rotation order; `None` if the team is unknown.
    fn team_members(&self, team: &str) -> Option<Vec<String>>;
    /// The turn of `team`'s rotation that the route of `workflow_id` takes
    /// (0 for the team's first ticket); the owner is `members[turn % len]`.
    fn turn(&self, team: &str, workflow_id: &str) -> u64;
}

/// How an owner or stakeholder was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The account team's member in this role.
    Role(String),
    /// Member number `index` of the team's rotation.
    Team {
        team: String,
        index: usize,
    },
    Person,
    /// The rule could not be resolved; the reason says why.
    Unresolved(String),
}

/// One person who owns or hears about a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignee {
    pub rule: OwnerRule,
    /// Empty when unresolved.
    pub email: String,
    pub resolution: Resolution,
}

/// A ticket to open: one per triggered workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub workflow_id: String,
    pub workflow_name: String,
    /// Exactly one owner, always set (the fallback owner when the rule failed).
    pub owner: String,
    pub owner_resolution: Resolution,
    /// Why the fallback owner was used; `None` when the rule resolved.
    pub fallback_reason: Option<String>,
    /// Resolved stakeholders (owner excluded, no duplicates).
    pub stakeholders: Vec<String>,
    /// Stakeholder rules that did not resolve, with the reason.
    pub unresolved_stakeholders: Vec<String>,
    pub sla: Sla,
    /// The team whose rotation this route took a turn of, if any.
    pub rotation: Option<String>,
    /// The workflow's resolution guide.
    pub guide: closeloop_programs::Guide,
    /// What closing the ticket needs.
    pub closure: closeloop_programs::ClosureRules,
}

/// Everything routing decided about one response.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub program: String,
    /// Version of the programs file that made the decision.
    pub config_version: String,
    pub routes: Vec<Route>,
    /// Triggers that failed to evaluate (they did not match).
    pub trigger_errors: Vec<(String, String)>,
}

impl Decision {
    /// True when the response triggered no workflow (analytics counts these).
    pub fn unmatched(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The CEL facts of a response, with the account's directory entry.
pub fn facts<'a>(f: &Feedback, account: Option<&AccountInfo>) -> Facts<'a> {
    let mut respondent = BTreeMap::new();
    respondent.insert(
        "email",
        f.respondent
            .email
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default(),
    );
    respondent.insert("name", f.respondent.name.clone());
    respondent.insert("role", f.respondent.role.clone());
    let mut acc = BTreeMap::new();
    acc.insert("id", f.account_id.to_string());
    if let Some(a) = account {
        acc.insert("name", a.name.clone());
        acc.insert("region", a.region.clone());
        acc.insert("segment", a.segment.clone());
    }
    Facts {
        answers: f.answers.clone(),
        attributes: f.attributes.clone(),
        respondent,
        account: acc,
    }
}

fn resolve(
    rule: &OwnerRule,
    workflow_id: &str,
    account_id: &str,
    account: Option<&AccountInfo>,
    dir: &impl DirectoryView,
) -> Assignee {
    let (email, resolution) = match rule {
        OwnerRule::Person(p) => (p.clone(), Resolution::Person),
        OwnerRule::Role(role) => match account.and_then(|a| a.team.get(role)) {
            Some(e) => (e.clone(), Resolution::Role(role.clone())),
            None if account.is_none() => (
                String::new(),
                Resolution::Unresolved(format!("account {account_id} is not in the directory")),
            ),
            None => (
                String::new(),
                Resolution::Unresolved(format!("account {account_id} has no {role}")),
            ),
        },
        OwnerRule::Team(team) => match dir.team_members(team) {
            Some(m) if !m.is_empty() => {
                let turn = dir.turn(team, workflow_id);
                let index = (turn % m.len() as u64) as usize;
                (
                    m[index].clone(),
                    Resolution::Team {
                        team: team.clone(),
                        index,
                    },
                )
            }
            Some(_) => (
                String::new(),
                Resolution::Unresolved(format!("team {team} has no members")),
            ),
            None => (
                String::new(),
                Resolution::Unresolved(format!("team {team} is not in the directory")),
            ),
        },
    };
    Assignee {
        rule: rule.clone(),
        email,
        resolution,
    }
}

fn route(
    w: &Workflow,
    program: &Program,
    f: &Feedback,
    account: Option<&AccountInfo>,
    dir: &impl DirectoryView,
) -> Route {
    let account_id = f.account_id.as_str();
    let owner = resolve(&w.owner, &w.id, account_id, account, dir);
    let rotation = match &owner.resolution {
        Resolution::Team { team, .. } => Some(team.clone()),
        _ => None,
    };
    let (owner_email, fallback_reason) = match &owner.resolution {
        Resolution::Unresolved(why) => (program.fallback_owner.clone(), Some(why.clone())),
        _ => (owner.email.clone(), None),
    };
    let mut stakeholders: Vec<String> = Vec::new();
    let mut unresolved = Vec::new();
    for rule in &w.notify {
        // Stakeholder teams are told as a whole; they take no turn in the rotation.
        let people: Vec<String> = match rule {
            OwnerRule::Team(t) => dir.team_members(t).unwrap_or_default(),
            _ => {
                let a = resolve(rule, &w.id, account_id, account, dir);
                match a.resolution {
                    Resolution::Unresolved(why) => {
                        unresolved.push(format!("{}: {why}", rule.describe()));
                        Vec::new()
                    }
                    _ => vec![a.email],
                }
            }
        };
        if people.is_empty()
            && let OwnerRule::Team(t) = rule
        {
            unresolved.push(format!("{}: team {t} is unknown or empty", rule.describe()));
        }
        for p in people {
            if p != owner_email && !stakeholders.contains(&p) {
                stakeholders.push(p);
            }
        }
    }
    Route {
        workflow_id: w.id.clone(),
        workflow_name: w.name.clone(),
        owner: owner_email,
        owner_resolution: owner.resolution,
        fallback_reason,
        stakeholders,
        unresolved_stakeholders: unresolved,
        sla: w.sla.clone(),
        rotation,
        guide: w.guide.clone(),
        closure: w.closure,
    }
}

/// Decides the routes of one response. Pure: the same inputs give the same decision.
pub fn decide(
    f: &Feedback,
    program: &Program,
    config_version: &str,
    dir: &impl DirectoryView,
) -> Decision {
    let account = dir.account(f.account_id.as_str());
    let evaluation = program.evaluate(&facts(f, account.as_ref()));
    let routes = evaluation
        .matched
        .iter()
        .filter_map(|id| program.workflow(id))
        .map(|w| route(w, program, f, account.as_ref(), dir))
        .collect();
    Decision {
        program: program.id.clone(),
        config_version: config_version.to_string(),
        routes,
        trigger_errors: evaluation.errors,
    }
}
