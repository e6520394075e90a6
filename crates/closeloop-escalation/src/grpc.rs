//! `closeloop.v1.EscalationService`: SLA recompute, the weekly report and
//! the pending timers.

use std::sync::Arc;

use closeloop_contracts::sla::SlaContract;
use closeloop_domain::sla::{SlaCommand, SlaRequest, SlaRule};
use closeloop_domain::{FieldViolation, TicketId, Timestamp};
use closeloop_eventstore::{Clock, EventContext, ExecuteError, Executor};
use closeloop_programs::Catalog;
use closeloop_proto::convert;
use closeloop_proto::v1;
use closeloop_proto::v1::escalation_service_server::EscalationService;
use closeloop_readmodel::Db;
use sqlx::Row as _;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct EscalationGrpc {
    pub db: Db,
    pub slas: Executor<SlaContract>,
    pub catalog: Option<Arc<Catalog>>,
    pub clock: Clock,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("read model unavailable: {e}"))
}

fn ts(t: Timestamp) -> Option<prost_types::Timestamp> {
    Some(convert::timestamp(t))
}

#[tonic::async_trait]
impl EscalationService for EscalationGrpc {
    async fn recompute_sla(
        &self,
        req: Request<v1::RecomputeSlaRequest>,
    ) -> Result<Response<v1::RecomputeSlaResponse>, Status> {
        let r = req.into_inner();
        let Some(catalog) = &self.catalog else {
            return Err(Status::failed_precondition(
                "no programs file is configured: there is no workflow policy to recompute with",
            ));
        };
        let Some((_, workflow)) = catalog.workflow(r.workflow_id.trim()) else {
            return Err(closeloop_proto::status::invalid_argument(vec![
                FieldViolation::new(
                    "workflow_id",
                    format!("no workflow {:?} in the programs file", r.workflow_id),
                ),
            ]));
        };
        let policy = workflow.sla.policy();
        let digest = crate::view::policy_digest(&policy);
        let rows = sqlx::query(
            "SELECT ticket_id, policy_digest FROM sla_tickets WHERE workflow_id = $1 AND closed = 0",
        )
        .bind(workflow.id.as_str())
        .fetch_all(self.db.pool())
        .await
        .map_err(internal)?;
        let request = if r.request_id.trim().is_empty() {
            digest.clone()
        } else {
            r.request_id.trim().to_string()
        };
        let (mut recomputed, mut unchanged) = (0u32, 0u32);
        let at = Timestamp::from_system_time(self.clock.now());
        for row in rows {
            let id: String = row.try_get(0).map_err(internal)?;
            let current: String = row.try_get(1).map_err(internal)?;
            let Ok(tid) = TicketId::parse("ticket_id", &id) else {
                continue;
            };
            if current == digest {
                unchanged += 1;
                continue;
            }
            let cmd = SlaRequest {
                command: SlaCommand::Recompute {
                    policy: policy.clone(),
                    at,
                },
                calendars: catalog.calendars.clone(),
            };
            let ctx = EventContext {
                actor: "closeloop-escalation".into(),
                correlation_id: request.clone(),
                causation_id: request.clone(),
                traceparent: None,
            };
            match self
                .slas
                .execute(tid, &format!("recompute/{request}"), &ctx, &cmd)
                .await
            {
                Ok(_) => recomputed += 1,
                Err(ExecuteError::Rule(SlaRule::Closed)) => unchanged += 1,
                Err(ExecuteError::Rule(r)) => {
                    return Err(Status::failed_precondition(format!("ticket {id}: {r}")));
                }
                Err(e) => return Err(Status::unavailable(format!("ticket {id}: {e}"))),
            }
        }
        Ok(Response::new(v1::RecomputeSlaResponse {
            recomputed,
            unchanged,
        }))
    }

    async fn weekly_report(
        &self,
        req: Request<v1::WeeklyReportRequest>,
    ) -> Result<Response<v1::WeeklyReportResponse>, Status> {
        let r = req.into_inner();
        let (as_of, present) = match &r.as_of {
            Some(t) => (convert::from_timestamp(t), false),
            None => (Timestamp::from_system_time(self.clock.now()), true),
        };
        let region = r.region.trim();
        let report = crate::report::weekly(&self.db, region, as_of, present)
            .await
            .map_err(internal)?;
        let mut answer = to_proto(&report);
        if report.tickets() == 0 && !region.is_empty() {
            let known = crate::report::regions(&self.db).await.map_err(internal)?;
            if !known.iter().any(|k| k.eq_ignore_ascii_case(region)) {
                answer.region_unknown = true;
                answer.known_regions = known;
            }
        }
        Ok(Response::new(answer))
    }

    async fn list_timers(
        &self,
        req: Request<v1::ListTimersRequest>,
    ) -> Result<Response<v1::ListTimersResponse>, Status> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 100,
            n @ 1..=1000 => i64::from(n),
            n => {
                return Err(closeloop_proto::status::invalid_argument(vec![
                    FieldViolation::new("limit", format!("{n} is not within 1..=1000")),
                ]));
            }
        };
        let ticket = TicketId::parse_filter("ticket_id", &r.ticket_id)
            .map_err(|v| closeloop_proto::status::invalid_argument(vec![v]))?
            .map(|t| t.to_string())
            .unwrap_or_default();
        let rows = sqlx::query(
            "SELECT ticket_id, timer_key, due_at FROM sla_timers \
             WHERE ($1 = '' OR ticket_id = $1) ORDER BY due_at, ticket_id, timer_key LIMIT $2",
        )
        .bind(ticket)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(internal)?;
        let total: i64 = sqlx::query("SELECT COUNT(*) FROM sla_timers")
            .fetch_one(self.db.pool())
            .await
            .and_then(|r| r.try_get(0))
            .map_err(internal)?;
        Ok(Response::new(v1::ListTimersResponse {
            timers: rows
                .iter()
                .map(|r| {
                    Ok(v1::SlaTimer {
                        ticket_id: r.try_get(0)?,
                        key: r.try_get(1)?,
                        due_at: ts(Timestamp::from_micros(r.try_get(2)?)),
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(internal)?,
            total: total.max(0) as u64,
        }))
    }
}

/// The wire form of a report.
pub fn to_proto(report: &crate::report::Report) -> v1::WeeklyReportResponse {
    v1::WeeklyReportResponse {
        region: report.region.clone(),
        as_of: ts(report.as_of),
        tickets: report.tickets() as u32,
        owners: report
            .owners
            .iter()
            .map(|(owner, tickets)| v1::ReportOwner {
                owner_email: owner.clone(),
                tickets: tickets
                    .iter()
                    .map(|t| v1::ReportTicket {
                        ticket_id: t.ticket_id.clone(),
                        account_id: t.account_id.clone(),
                        title: t.title.clone(),
                        program_id: t.program_id.clone(),
                        opened_at: ts(t.opened_at),
                        age_days: t.age_days,
                        reasons: t.reasons.join(","),
                        first_contact_due: t.first_contact_due.and_then(ts),
                        close_due: t.close_due.and_then(ts),
                        escalation_level: t.escalation_level,
                        region: t.region.clone(),
                    })
                    .collect(),
            })
            .collect(),
        region_unknown: false,
        known_regions: Vec::new(),
    }
}
