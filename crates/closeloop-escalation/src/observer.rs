//! Watches every ticket's events and tells its SLA (the `escalation`
//! durable consumer, from the start of the stream so that tickets opened
//! before the role ran get clocks too).
//!
//! Each ticket event becomes one [`SlaCommand::Observe`] with request id
//! `ticket/<stream sequence>`: a redelivered event is recognised by the
//! SLA (it remembers the last ticket event it observed) and writes nothing.

use std::sync::Arc;

use closeloop_contracts::sla::SlaContract;
use closeloop_contracts::ticket::TicketContract;
use closeloop_directory::lookup::DirectoryLookup;
use closeloop_domain::sla::{Observation, SlaCommand, SlaRequest, SlaRule};
use closeloop_domain::ticket::Origin;
use closeloop_domain::{RecordedEvent, TicketEvent};
use closeloop_eventstore::consumer::{ConsumerSpec, EventHandler, Verdict};
use closeloop_eventstore::{Envelope, EventContext, ExecuteError, Executor, Prefix};
use closeloop_programs::Catalog;

/// Durable consumer name.
pub const CONSUMER: &str = "escalation";
/// Actor of the SLA events this role writes.
pub const ACTOR: &str = "closeloop-escalation";

pub fn consumer_spec(prefix: &Prefix) -> ConsumerSpec {
    ConsumerSpec::new(
        prefix.events_stream(),
        CONSUMER,
        prefix.aggregate_filter(closeloop_contracts::ticket::AGGREGATE),
    )
}

/// The handler. Cheap to clone.
#[derive(Clone)]
pub struct Observer {
    pub slas: Executor<SlaContract>,
    pub directory: DirectoryLookup,
    pub catalog: Option<Arc<Catalog>>,
}

impl Observer {
    fn calendars(&self) -> Arc<closeloop_domain::sla::Calendars> {
        self.catalog
            .as_ref()
            .map(|c| c.calendars.clone())
            .unwrap_or_default()
    }
}

impl EventHandler for Observer {
    type Contract = TicketContract;

    async fn handle(&self, rec: RecordedEvent, envelope: Option<&Envelope>) -> Verdict {
        let mut region = String::new();
        let mut workflow_id = String::new();
        let mut policy = None;
        if let TicketEvent::Opened {
            account_id,
            origin,
            program_id,
            ..
        } = &rec.event
        {
            match self.directory.account(account_id).await {
                Ok(Some(a)) => region = a.region,
                Ok(None) => {}
                Err(e) => return Verdict::Retry(format!("directory: {e}")),
            }
            match origin {
                Origin::Workflow { workflow_id: w, .. } => workflow_id.clone_from(w),
                // A manual ticket runs its program's policy (the file's
                // defaults for a program the file does not declare).
                Origin::Manual => {
                    policy = self.catalog.as_ref().map(|c| {
                        c.program(program_id)
                            .map_or(&c.default_sla, |p| &p.sla)
                            .policy()
                    })
                }
            }
        }
        let command = SlaRequest {
            command: SlaCommand::Observe(Box::new(Observation {
                ticket_sequence: rec.sequence,
                at: rec.occurred_at,
                event: rec.event,
                region,
                workflow_id,
                policy,
            })),
            calendars: self.calendars(),
        };
        let ctx = EventContext::caused_by(envelope, ACTOR);
        let request_id = format!("ticket/{}", rec.sequence);
        match self
            .slas
            .execute(rec.ticket_id, &request_id, &ctx, &command)
            .await
        {
            Ok(_) | Err(ExecuteError::Rule(SlaRule::NoChange)) => Verdict::Done,
            Err(ExecuteError::Rule(SlaRule::NotTracked(id))) => {
                // Its opening is not in the stream (deleted history or a
                // ticket of another install): nothing to run clocks on.
                tracing::warn!(ticket = %id, sequence = rec.sequence, "ticket event before its opening; no SLA");
                Verdict::Done
            }
            Err(ExecuteError::Rule(r)) => Verdict::DeadLetter(r.to_string()),
            Err(e @ ExecuteError::Corrupt { .. }) => Verdict::DeadLetter(e.to_string()),
            Err(e) => Verdict::Retry(e.to_string()),
        }
    }
}
