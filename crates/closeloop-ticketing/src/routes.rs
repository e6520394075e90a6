//! Opens the tickets routing decided: a durable consumer of routing events
//! (`<prefix>.events.routing.*`, consumer `ticketing-routes`).
//!
//! `RoutingDecided` opens one ticket per route, with the deterministic id
//! `TicketId::for_feedback(feedback_id, workflow_id)` and a request id per
//! route, so a redelivered decision answers from the ticket's history instead
//! of opening a second ticket. `FeedbackAttached` records the revision on
//! every ticket of the response (an older or repeated revision writes
//! nothing). Tickets of one decision are written concurrently.

use closeloop_contracts::routing::{
    RoutedTicket, RoutingAggregate, RoutingContract, RoutingDecided, RoutingEvent, StoredRouting,
};
use closeloop_domain::ticket::{Origin, Plan};
use closeloop_domain::values::TITLE_MAX;
use closeloop_domain::{AccountId, Email, ProgramId, RuleViolation, Text, TicketCommand, TicketId};
use closeloop_eventstore::consumer::{ConsumerSpec, EventHandler, Verdict};
use closeloop_eventstore::{Aggregate, Envelope, EventContext, ExecuteError, Prefix};

use crate::commands::TicketCommands;

pub const ACTOR: &str = "closeloop-ticketing";
pub const CONSUMER: &str = "ticketing-routes";
pub fn consumer_spec(prefix: &Prefix) -> ConsumerSpec {
    ConsumerSpec::new(
        prefix.events_stream(),
        CONSUMER,
        prefix.aggregate_filter(RoutingAggregate::TYPE),
    )
}

/// The handler. Cheap to clone.
#[derive(Clone)]
pub struct RouteOpener {
    commands: TicketCommands,
}

impl RouteOpener {
    pub fn new(commands: TicketCommands) -> RouteOpener {
        RouteOpener { commands }
    }
}

/// The open command for one routed ticket; `Err` names what is malformed.
pub fn open_command(
    d: &RoutingDecided,
    t: &RoutedTicket,
) -> Result<(TicketId, TicketCommand), String> {
    let bad = |v: closeloop_domain::FieldViolation| format!("route {}: {v}", t.workflow_id);
    let id = TicketId::for_feedback(&d.feedback_id, &t.workflow_id);
    let cmd = TicketCommand::Open {
        account_id: AccountId::parse("account_id", &d.account_id).map_err(bad)?,
        owner: Email::parse("owner_email", &t.owner_email).map_err(bad)?,
        program_id: Some(ProgramId::parse("program_id", &d.program_id).map_err(bad)?),
        // Decisions recorded before titles were shortened at routing may be
        // longer than a title may be: shortened here, never refused.
        title: Text::parse_optional("title", &Text::shortened(&t.title, TITLE_MAX), TITLE_MAX)
            .map_err(bad)?,
        origin: Origin::Workflow {
            feedback_id: d.feedback_id.clone(),
            workflow_id: t.workflow_id.clone(),
        },
        plan: Box::new(Plan {
            stakeholders: t.stakeholder_emails.clone(),
            guide: t.guide.clone(),
            sla: t.sla.clone().unwrap_or_default(),
            fallback_reason: t.owner_fallback_reason.clone(),
            config_version: d.config_version.clone(),
            require_opportunity: t.require_opportunity,
        }),
    };
    Ok((id, cmd))
}

fn verdict(e: ExecuteError<RuleViolation>) -> Verdict {
    match e {
        // A revision before its ticket exists: the decision is still being retried.
        ExecuteError::Rule(RuleViolation::NotFound(id)) => {
            Verdict::Retry(format!("ticket {id} is not open yet"))
        }
        ExecuteError::Rule(r) => Verdict::DeadLetter(r.to_string()),
        ExecuteError::Corrupt { sequence, reason } => Verdict::DeadLetter(format!(
            "ticket history is unreadable at sequence {sequence}: {reason}"
        )),
        e => Verdict::Retry(e.to_string()),
    }
}

/// The first failure wins: a dead letter over a retry over done.
fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let mut out = Verdict::Done;
    for v in verdicts {
        out = match (out, v) {
            (d @ Verdict::DeadLetter(_), _) => d,
            (_, d @ Verdict::DeadLetter(_)) => d,
            (r @ Verdict::Retry(_), _) => r,
            (_, v) => v,
        };
    }
    out
}

impl EventHandler for RouteOpener {
    type Contract = RoutingContract;

    async fn handle(&self, stored: StoredRouting, envelope: Option<&Envelope>) -> Verdict {
        let ctx = EventContext::caused_by(envelope, ACTOR);
        match stored.event {
            RoutingEvent::Decided(d) => {
                let mut commands = Vec::new();
                for t in &d.tickets {
                    match open_command(&d, t) {
                        Ok(c) => commands.push((t.workflow_id.clone(), c)),
                        Err(e) => return Verdict::DeadLetter(e),
                    }
                }
                let runs = commands.iter().map(|(wf, (id, cmd))| {
                    let (ctx, d) = (&ctx, &d);
                    async move {
                        let request = format!("routing/{}/{wf}", d.feedback_id);
                        match self.commands.execute(*id, &request, ctx, cmd).await {
                            Ok(_) => Verdict::Done,
                            Err(e) => verdict(e),
                        }
                    }
                });
                worst(futures::future::join_all(runs).await)
            }
            RoutingEvent::Attached(a) => {
                let cmd = TicketCommand::AttachFeedback {
                    revision: a.revision,
                    summary: a.summary.clone(),
                };
                let request = format!("revision/{}", a.revision);
                let mut ids = Vec::new();
                for t in &a.ticket_ids {
                    match TicketId::parse("ticket_ids", t) {
                        Ok(id) => ids.push(id),
                        Err(e) => return Verdict::DeadLetter(e.to_string()),
                    }
                }
                let runs = ids.into_iter().map(|id| {
                    let (ctx, cmd, request) = (&ctx, &cmd, &request);
                    async move {
                        match self.commands.execute(id, request, ctx, cmd).await {
                            Ok(_) => Verdict::Done,
                            Err(e) => verdict(e),
                        }
                    }
                });
                worst(futures::future::join_all(runs).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_domain::ticket::SlaPolicy;

    #[test]
    fn worst_verdict_wins() {
        assert_eq!(worst([Verdict::Done, Verdict::Done]), Verdict::Done);
        assert_eq!(
            worst([Verdict::Retry("a".into()), Verdict::Done]),
            Verdict::Retry("a".into())
        );
        assert_eq!(
            worst([Verdict::Retry("a".into()), Verdict::DeadLetter("b".into())]),
            Verdict::DeadLetter("b".into())
        );
    }

    #[test]
    fn a_routed_ticket_becomes_an_open_command_with_its_plan() {
        let d = RoutingDecided {
            feedback_id: "f1".into(),
            program_id: "relationship-nps".into(),
            account_id: "ACME-001".into(),
            config_version: "v9".into(),
            ..Default::default()
        };
        let t = RoutedTicket {
            workflow_id: "nps-detractor".into(),
            title: "Detractor: ACME".into(),
            owner_email: "csm@vendor.example".into(),
            owner_fallback_reason: Some("account ACME-001 has no csm".into()),
            stakeholder_emails: vec!["ae@vendor.example".into()],
            ..Default::default()
        };
        let (id, cmd) = open_command(&d, &t).unwrap();
        assert_eq!(id, TicketId::for_feedback("f1", "nps-detractor"));
        let TicketCommand::Open { plan, .. } = cmd else {
            panic!()
        };
        assert_eq!(plan.stakeholders, ["ae@vendor.example"]);
        assert_eq!(plan.sla, SlaPolicy::default());
        assert_eq!(plan.config_version, "v9");
        assert!(plan.fallback_reason.is_some());
        let broken = RoutedTicket {
            owner_email: "not-an-email".into(),
            ..t
        };
        assert!(
            open_command(&d, &broken)
                .unwrap_err()
                .contains("owner_email")
        );
    }
}
