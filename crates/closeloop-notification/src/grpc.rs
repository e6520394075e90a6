//! `closeloop.v1.NotificationService`: list notifications (those that gave
//! up, say) and redrive one after fixing what made it give up; register,
//! list, rotate, enable, test and remove outbound webhook endpoints.

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

use closeloop_contracts::webhook::{
    EVENT_TYPES, Endpoint, EndpointCommand, EndpointId, EndpointRule, EndpointStatus,
    WebhookContract,
};

use crate::endpoints::{self, EndpointRow};
use crate::outbound::Policy;
use crate::view::{self, NotificationRow};
use crate::webhook::Secret;

use closeloop_proto::status::ERROR_DOMAIN;

/// The service. Cheap to clone.
#[derive(Clone)]
pub struct NotificationGrpc {
    db: Db,
    notifications: Executor<NotificationContract>,
    webhooks: Executor<WebhookContract>,
    policy: Policy,
    http: crate::outbound::Http,
}

impl NotificationGrpc {
    pub fn new(
        db: Db,
        notifications: Executor<NotificationContract>,
        webhooks: Executor<WebhookContract>,
        policy: Policy,
        http: crate::outbound::Http,
    ) -> Self {
        NotificationGrpc {
            db,
            notifications,
            webhooks,
            policy,
            http,
        }
    }

    /// Endpoint `id` as the events have it (never behind the view).
    async fn endpoint(&self, id: &str) -> Result<(EndpointId, Endpoint), Status> {
        let Some(eid) = EndpointId::parse(id) else {
            return Err(closeloop_proto::status::invalid_argument(vec![
                FieldViolation::new(
                    "id",
                    format!("{id:?} is not a webhook endpoint id (a UUID)"),
                ),
            ]));
        };
        match self
            .webhooks
            .load(eid)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
        {
            Some(e) => Ok((eid, e)),
            None => Err(not_found(eid)),
        }
    }

    /// Runs `cmd` on endpoint `id` and answers with the endpoint after it.
    async fn command(
        &self,
        id: EndpointId,
        request_id: &str,
        cmd: EndpointCommand,
    ) -> Result<Endpoint, Status> {
        let ctx = EventContext {
            actor: "closeloop-cli".into(),
            correlation_id: id.to_string(),
            causation_id: request_id.to_string(),
            traceparent: None,
        };
        match self.webhooks.execute(id, request_id, &ctx, &cmd).await {
            Ok(_) => {}
            Err(ExecuteError::Rule(rule)) => {
                let (code, reason) = match &rule {
                    EndpointRule::NotRegistered(_) => (Code::NotFound, "NOT_FOUND"),
                    EndpointRule::Removed(_) => (Code::FailedPrecondition, "REMOVED"),
                    EndpointRule::AlreadyActive(_) => (Code::FailedPrecondition, "ALREADY_ACTIVE"),
                    EndpointRule::AlreadyDisabled(_) => {
                        (Code::FailedPrecondition, "ALREADY_DISABLED")
                    }
                };
                return Err(Status::with_error_details(
                    code,
                    rule.to_string(),
                    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
                ));
            }
            Err(ExecuteError::Contention(_)) => {
                return Err(Status::aborted("the endpoint kept changing; retry"));
            }
            Err(e) => return Err(Status::unavailable(e.to_string())),
        }
        self.webhooks
            .load(id)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| not_found(id))
    }

    /// The wire form of endpoint `id`, with its delivery counts.
    async fn webhook(&self, id: EndpointId, e: &Endpoint) -> v1::Webhook {
        let (delivered, pending, gave_up) = endpoints::counts(&self.db, &id.to_string())
            .await
            .unwrap_or_default();
        v1::Webhook {
            id: id.to_string(),
            url: e.url.clone(),
            events: e.events.clone(),
            description: e.description.clone(),
            status: e.status.as_str().to_string(),
            disabled_reason: match &e.status {
                EndpointStatus::Disabled { reason } => reason.clone(),
                _ => String::new(),
            },
            previous_secret_until: e
                .previous_secret
                .as_ref()
                .map(|(_, until)| closeloop_proto::convert::timestamp(*until)),
            delivered,
            pending,
            gave_up,
        }
    }
}

fn not_found(id: EndpointId) -> Status {
    Status::with_error_details(
        Code::NotFound,
        format!("no webhook endpoint {id}"),
        ErrorDetails::with_error_info("NOT_FOUND", ERROR_DOMAIN, HashMap::new()),
    )
}

/// The wire form of a view row (for lists: the view is enough).
async fn row_to_proto(db: &Db, r: &EndpointRow) -> v1::Webhook {
    let (delivered, pending, gave_up) = endpoints::counts(db, &r.id).await.unwrap_or_default();
    v1::Webhook {
        id: r.id.clone(),
        url: r.url.clone(),
        events: r.events.clone(),
        description: r.description.clone(),
        status: r.status.clone(),
        disabled_reason: r.disabled_reason.clone().unwrap_or_default(),
        previous_secret_until: r.previous_until().map(closeloop_proto::convert::timestamp),
        delivered,
        pending,
        gave_up,
    }
}

/// A secret as given (checked), or a new one.
fn secret_or_new(field: &str, given: &str) -> Result<Secret, FieldViolation> {
    if given.trim().is_empty() {
        Ok(Secret::generate())
    } else {
        Secret::parse(given).map_err(|e| FieldViolation::new(field, e))
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
        let ticket = closeloop_domain::TicketId::parse_filter("ticket_id", &r.ticket_id)
            .map_err(|v| closeloop_proto::status::invalid_argument(vec![v]))?
            .map(|t| t.to_string());
        let rows = view::list(
            &self.db,
            Some(status).filter(|s| !s.is_empty()),
            ticket.as_deref(),
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

    async fn add_webhook(
        &self,
        req: Request<v1::AddWebhookRequest>,
    ) -> Result<Response<v1::AddWebhookResponse>, Status> {
        let r = req.into_inner();
        let mut v = Vec::new();
        let url = match self.policy.check_url(&r.url) {
            Ok(u) => u.to_string(),
            Err(e) => {
                v.push(FieldViolation::new("url", e));
                String::new()
            }
        };
        let mut events: Vec<String> = Vec::new();
        for (i, e) in r.events.iter().enumerate() {
            let e = e.trim();
            if !EVENT_TYPES.contains(&e) {
                v.push(FieldViolation::new(
                    format!("events[{i}]"),
                    format!(
                        "{e:?} is not a webhook event type: use {}",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            } else if !events.iter().any(|x| x == e) {
                events.push(e.to_string());
            }
        }
        if r.description.chars().count() > 200 {
            v.push(FieldViolation::new("description", "at most 200 characters"));
        }
        let secret = match secret_or_new("secret", &r.secret) {
            Ok(s) => Some(s),
            Err(e) => {
                v.push(e);
                None
            }
        };
        let request_id = match r.request_id.trim() {
            "" => uuid::Uuid::new_v4().to_string(),
            id if id.len() <= 128 => id.to_string(),
            _ => {
                v.push(FieldViolation::new("request_id", "at most 128 characters"));
                String::new()
            }
        };
        let Some(secret) = secret.filter(|_| v.is_empty()) else {
            return Err(closeloop_proto::status::invalid_argument(v));
        };
        let id = EndpointId::for_request(&request_id);
        let e = self
            .command(
                id,
                &request_id,
                EndpointCommand::Register {
                    url,
                    events,
                    description: r.description.trim().to_string(),
                    secret: secret.to_string(),
                },
            )
            .await?;
        Ok(Response::new(v1::AddWebhookResponse {
            webhook: Some(self.webhook(id, &e).await),
            secret: e.secret,
        }))
    }

    async fn list_webhooks(
        &self,
        req: Request<v1::ListWebhooksRequest>,
    ) -> Result<Response<v1::ListWebhooksResponse>, Status> {
        let rows = endpoints::list(&self.db, req.into_inner().all)
            .await
            .map_err(unavailable)?;
        let mut webhooks = Vec::with_capacity(rows.len());
        for r in &rows {
            webhooks.push(row_to_proto(&self.db, r).await);
        }
        Ok(Response::new(v1::ListWebhooksResponse { webhooks }))
    }

    async fn remove_webhook(
        &self,
        req: Request<v1::WebhookRequest>,
    ) -> Result<Response<v1::WebhookResponse>, Status> {
        let (id, _) = self.endpoint(&req.into_inner().id).await?;
        let e = self.command(id, "remove", EndpointCommand::Remove).await?;
        Ok(Response::new(v1::WebhookResponse {
            webhook: Some(self.webhook(id, &e).await),
        }))
    }

    async fn rotate_webhook_secret(
        &self,
        req: Request<v1::RotateWebhookSecretRequest>,
    ) -> Result<Response<v1::AddWebhookResponse>, Status> {
        let r = req.into_inner();
        let secret = secret_or_new("secret", &r.secret)
            .map_err(|e| closeloop_proto::status::invalid_argument(vec![e]))?;
        let keep = r.keep_previous_secs.unwrap_or(86_400);
        if keep > 30 * 86_400 {
            return Err(closeloop_proto::status::invalid_argument(vec![
                FieldViolation::new("keep_previous_secs", "at most 30 days (2592000)"),
            ]));
        }
        let (id, _) = self.endpoint(&r.id).await?;
        let until =
            Timestamp::from_micros(view::micros(std::time::SystemTime::now())).plus_secs(keep);
        let e = self
            .command(
                id,
                &format!("rotate-{}", uuid::Uuid::new_v4()),
                EndpointCommand::RotateSecret {
                    secret: secret.to_string(),
                    previous_valid_until: until,
                },
            )
            .await?;
        Ok(Response::new(v1::AddWebhookResponse {
            webhook: Some(self.webhook(id, &e).await),
            secret: e.secret,
        }))
    }

    async fn enable_webhook(
        &self,
        req: Request<v1::WebhookRequest>,
    ) -> Result<Response<v1::WebhookResponse>, Status> {
        let (id, before) = self.endpoint(&req.into_inner().id).await?;
        let e = self
            .command(
                id,
                &format!("enable-{}", before.sequence),
                EndpointCommand::Enable,
            )
            .await?;
        Ok(Response::new(v1::WebhookResponse {
            webhook: Some(self.webhook(id, &e).await),
        }))
    }

    async fn test_webhook(
        &self,
        req: Request<v1::WebhookRequest>,
    ) -> Result<Response<v1::TestWebhookResponse>, Status> {
        let (id, e) = self.endpoint(&req.into_inner().id).await?;
        if e.status == EndpointStatus::Removed {
            return Err(Status::failed_precondition(format!(
                "webhook endpoint {id} was removed"
            )));
        }
        let secrets = e
            .signing_secrets(Timestamp::from_micros(view::micros(
                std::time::SystemTime::now(),
            )))
            .into_iter()
            .map(Secret::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::failed_precondition(format!("the endpoint's secret: {e}")))?;
        let msg_id = format!("test-{}", uuid::Uuid::new_v4());
        let body =
            crate::webhook::test_payload(&id.to_string(), std::time::SystemTime::now()).to_string();
        let started = std::time::Instant::now();
        let sent =
            crate::webhook::post(&self.http, &e.url, &msg_id, &secrets, body.as_bytes()).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let (status_code, delivered, error) = match sent {
            Ok(a) => (u32::from(a.status), true, String::new()),
            Err(crate::email::SendError::Transient { code, message, .. })
            | Err(crate::email::SendError::Permanent { code, message }) => {
                (code.map_or(0, u32::from), false, message)
            }
        };
        Ok(Response::new(v1::TestWebhookResponse {
            status_code,
            delivered,
            error,
            webhook_id: msg_id,
            elapsed_ms,
        }))
    }
}
