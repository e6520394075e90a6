//! `closeloop.v1.NotificationService`: list notifications (those that gave
//! up, say) and redrive one after fixing what made it give up.

use std::collections::HashMap;

use closeloop_contracts::notification::{
    NotificationCommand, NotificationContract, NotificationId, NotificationRule,
};
use closeloop_domain::{FieldViolation, Timestamp};
use closeloop_eventstore::{EventContext, ExecuteError, Executor};
use closeloop_proto::v1;
use closeloop_proto::v1::notification_service_server::NotificationService;
use closeloop_readmodel::Db;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::view::{self, NotificationRow};

use closeloop_proto::status::ERROR_DOMAIN;

/// The service. Cheap to clone.
#[derive(Clone)]
pub struct NotificationGrpc {
    db: Db,
    notifications: Executor<NotificationContract>,
}

impl NotificationGrpc {
    pub fn new(db: Db, notifications: Executor<NotificationContract>) -> Self {
        NotificationGrpc { db, notifications }
    }
}

/// The wire form of a view row.
pub fn to_proto(n: &NotificationRow) -> v1::TicketNotification {
    let ts = |us: i64| closeloop_proto::convert::timestamp(Timestamp::from_micros(us));
    v1::TicketNotification {
        id: n.id.clone(),
        recipient: n.recipient.clone(),
        channel: n.channel.clone(),
        kind: n.kind.clone(),
        status: n.status.clone(),
        attempts: n.attempts,
        last_error: n.last_error.clone().unwrap_or_default(),
        requested_at: Some(ts(n.requested_at)),
        finished_at: n.finished_at.map(ts),
        ticket_id: n.ticket_id.clone(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("notification read model unavailable: {e}"))
}

#[tonic::async_trait]
impl NotificationService for NotificationGrpc {
    async fn list_notifications(
        &self,
        req: Request<v1::ListNotificationsRequest>,
    ) -> Result<Response<v1::ListNotificationsResponse>, Status> {
        let r = req.into_inner();
        let status = r.status.trim();
        if !["", "pending", "delivered", "gave_up"].contains(&status) {
            return Err(closeloop_proto::status::invalid_argument(vec![
                FieldViolation::new(
                    "status",
                    format!("{status:?} is not a status: use pending, delivered or gave_up"),
                ),
            ]));
        }
        let limit = match r.limit {
            0 => 100,
            n => i64::from(n.min(1000)),
        };
        let rows = view::list(
            &self.db,
            Some(status).filter(|s| !s.is_empty()),
            Some(r.ticket_id.trim()).filter(|t| !t.is_empty()),
            limit,
        )
        .await
        .map_err(unavailable)?;
        Ok(Response::new(v1::ListNotificationsResponse {
            notifications: rows.iter().map(to_proto).collect(),
        }))
    }

    async fn redrive_notification(
        &self,
        req: Request<v1::RedriveNotificationRequest>,
    ) -> Result<Response<v1::RedriveNotificationResponse>, Status> {
        let r = req.into_inner();
        let Some(id) = NotificationId::parse(r.notification_id.trim()) else {
            return Err(closeloop_proto::status::invalid_argument(vec![
                FieldViolation::new(
                    "notification_id",
                    format!("{:?} is not a notification id (a UUID)", r.notification_id),
                ),
            ]));
        };
        // One redrive per round: the request id names the round, so a
        // retried redrive is answered from history.
        let current = self
            .notifications
            .load(id)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let round = current.as_ref().map_or(0, |s| s.attempts);
        let ctx = EventContext {
            actor: "closeloop-cli".into(),
            correlation_id: id.to_string(),
            causation_id: format!("redrive-{round}"),
            traceparent: None,
        };
        match self
            .notifications
            .execute(
                id,
                &format!("redrive-{round}"),
                &ctx,
                &NotificationCommand::Redrive,
            )
            .await
        {
            Ok(done) => Ok(Response::new(v1::RedriveNotificationResponse {
                sequence: done.sequence,
            })),
            Err(ExecuteError::Rule(rule)) => {
                let (code, reason) = match &rule {
                    NotificationRule::NotRequested(_) => (Code::NotFound, "NOT_FOUND"),
                    NotificationRule::NotGivenUp(..) => (Code::FailedPrecondition, "NOT_GIVEN_UP"),
                    NotificationRule::Finished(..) => (Code::FailedPrecondition, "FINISHED"),
                };
                let message = match rule {
                    NotificationRule::NotRequested(id) => format!("no notification {id}"),
                    other => other.to_string(),
                };
                Err(Status::with_error_details(
                    code,
                    message,
                    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
                ))
            }
            Err(ExecuteError::Contention(_)) => Err(Status::aborted(
                "the notification kept changing; retry the redrive",
            )),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}
