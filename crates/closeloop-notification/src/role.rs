//! The `notification` role.
//!
//! * A durable consumer of ticket events (`<prefix>.events.ticket.*`,
//!   consumer `notification`) asks the domain who hears what about each
//!   event and requests each notification on its own aggregate, with the
//!   deterministic id (event id, recipient, channel) and request id
//!   `request`: a redelivered or replayed event writes nothing new.
//! * The `notifications` view is the outbox. A delivery worker takes the
//!   due rows, claims each (so replicas never send one at once), renders it
//!   and sends it, and records the attempt: delivered, or failed (retried on
//!   the domain's schedule, about a day), or given up. A slow SMTP server
//!   delays only the deliveries, never the consumer or the intake path.
//! * Each ticket event also goes, signed, to every active webhook endpoint
//!   that asked for its type ([`crate::webhook`]): one notification per
//!   endpoint on the webhook channel, through the same outbox.
//! * Deliveries run side by side (up to 64 at once, at most 4 per webhook
//!   endpoint), so a slow or failing endpoint holds up only its own.
//! * Without `--smtp-url` e-mail is off: no e-mail notification is
//!   requested (nothing piles up to go out when it is switched on), and
//!   `/readyz` says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use closeloop_contracts::feedback::{FeedbackContract, FeedbackId};
use closeloop_contracts::notification::{
    AttemptOutcome, NoticeKind, NotificationCommand, NotificationContract, NotificationId,
    NotifyChannel,
};
use closeloop_contracts::ticket::{TicketAggregate, TicketContract};
use closeloop_contracts::webhook::{EndpointCommand, EndpointId, WebhookContract};
use closeloop_directory::lookup::DirectoryLookup;
use closeloop_domain::notification::{Preferences, notices, retry_delay, sla_notices};
use closeloop_domain::sla::{RecordedSla, SlaEvent};
use closeloop_domain::ticket::Origin;
use closeloop_domain::{Aggregate, RecordedEvent, Ticket, TicketEvent, TicketId, Timestamp};
use closeloop_eventstore::clock::Clock;
use closeloop_eventstore::consumer::{ConsumerSpec, Decoded, EventHandler, Verdict};
use closeloop_eventstore::{Contract, Envelope, EventContext, EventStore, Executor, Prefix};
use closeloop_readmodel::{Db, Progress};
use tracing::Instrument;

use crate::email::{Mailer, SendError};
use crate::endpoints::{self, EndpointView};
use crate::templates::{
    AccountCtx, ClosureCtx, Context, EventCtx, FeedbackCtx, GuideCtx, ResponseTemplateCtx,
    Templates, TicketCtx,
};
use crate::view::{self, NotificationRow, micros};

/// Who notification events say acted.
pub const ACTOR: &str = "closeloop-notification";
/// Durable consumer name on the event stream.
pub const CONSUMER: &str = "notification";
/// Request id of a notification's request (one per notification).
pub const REQUEST: &str = "request";

/// What the notification consumer reads: every ticket event from the time
/// the role first runs (starting it on an install with history tells
/// nobody about old tickets).
pub fn consumer_spec(prefix: &Prefix) -> ConsumerSpec {
    ConsumerSpec::new(
        prefix.events_stream(),
        CONSUMER,
        prefix.aggregate_filter(TicketAggregate::TYPE),
    )
    .only_new()
    .lanes(REQUEST_LANES)
    .background()
}

/// Backlog of the user path above which notification work waits (up to
/// [`YIELD_AT_MOST`] per step).
const BUSY: u64 = 64;
const YIELD_AT_MOST: Duration = Duration::from_secs(5);

/// Ticket events whose notifications are requested at once: fewer than
/// the front half's consumers, so that on a busy machine the intake →
/// ticket path keeps the larger share (notifications catch up after a
/// burst).
const REQUEST_LANES: usize = 8;

/// The role's configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `smtp://...`/`smtps://...`; `None`: e-mail is off.
    pub smtp_url: Option<String>,
    /// The `From` of every e-mail.
    pub mail_from: String,
    /// A file holding the SMTP password (instead of the URL's).
    pub smtp_password_file: Option<String>,
    /// The operator's template directory.
    pub templates: Option<std::path::PathBuf>,
    /// A link to a ticket, `{id}` replaced by its id (e.g. a CRM's page);
    /// else notifications name the CLI command.
    pub ticket_url: Option<String>,
    /// `--outbound-allow`: address ranges outbound HTTP may reach although
    /// the guard refuses them (comma-separated CIDR).
    pub outbound_allow: String,
}

/// The `notification` role.
pub struct Notification {
    mailer: Option<Mailer>,
    templates: Arc<Templates>,
    ticket_url: Option<String>,
    outbound: crate::outbound::Policy,
    http: crate::outbound::Http,
}

impl Notification {
    /// Checks the configuration now: the SMTP URL and sender, and every
    /// template (a broken template stops the start, never a send).
    pub fn new(config: &Config) -> Result<Notification, closeloop_runtime::RoleError> {
        let fail = |e: &dyn std::fmt::Display| closeloop_runtime::RoleError::new(CONSUMER, e);
        let templates = Templates::load(config.templates.as_deref()).map_err(|e| fail(&e))?;
        let outbound =
            crate::outbound::Policy::parse(&config.outbound_allow).map_err(|e| fail(&e))?;
        let http = crate::outbound::Http::new(outbound.clone()).map_err(|e| fail(&e))?;
        let mailer = match &config.smtp_url {
            None => None,
            Some(_) if config.mail_from.trim().is_empty() => {
                return Err(fail(
                    &"--smtp-url needs --mail-from (CLOSELOOP_MAIL_FROM), e.g. \"closeloop <cx@vendor.example>\"",
                ));
            }
            Some(url) => {
                let password = match &config.smtp_password_file {
                    Some(p) => Some(Mailer::password_file(p).map_err(|e| fail(&e))?),
                    None => None,
                };
                Some(Mailer::new(url, &config.mail_from, password).map_err(|e| fail(&e))?)
            }
        };
        Ok(Notification {
            mailer,
            templates: Arc::new(templates),
            ticket_url: config.ticket_url.clone(),
            outbound,
            http,
        })
    }
}

impl closeloop_runtime::Role for Notification {
    fn name(&self) -> &'static str {
        "notification"
    }

    fn migrations(&self) -> Vec<&'static sqlx::migrate::Migrator> {
        vec![&closeloop_directory::MIGRATOR, &crate::MIGRATOR]
    }

    fn start<'a>(&'a self, s: &'a mut closeloop_runtime::Setup) -> closeloop_runtime::Started<'a> {
        Box::pin(async move {
            let directory = closeloop_directory::project_background(s);
            let progress = s.project_background(view::NotificationView);
            let endpoints_seen = s.project_background(EndpointView);
            let metrics = Arc::new(NotificationMetrics::default());
            let requester = Requester {
                store: s.store.clone(),
                lookup: DirectoryLookup::new(s.db.clone(), s.store.clone()),
                pressure: s.pressure(),
                db: s.db.clone(),
                notifications: Executor::new(s.store.clone()),
                metrics: metrics.clone(),
                tickets: Arc::new(Bounded::new(10_000)),
                email: self.mailer.is_some(),
                hooks: Arc::new(Memo::new(vec![endpoints_seen])),
                targets: Arc::new(Memo::new(vec![directory.people, directory.teams])),
            };
            let webhooks: Executor<WebhookContract> = Executor::new(s.store.clone());
            s.executor(
                closeloop_contracts::notification::AGGREGATE,
                requester.notifications.metrics(),
            );
            s.executor(closeloop_contracts::webhook::AGGREGATE, webhooks.metrics());
            s.metrics(metrics.clone());
            s.grpc(
                closeloop_proto::v1::notification_service_server::NotificationServiceServer::new(
                    crate::grpc::NotificationGrpc::new(
                        s.db.clone(),
                        requester.notifications.clone(),
                        webhooks.clone(),
                        self.outbound.clone(),
                        self.http.clone(),
                    ),
                ),
            );
            s.consume(consumer_spec(&s.prefix), Decoded(requester.clone()));
            s.consume(
                sla_consumer_spec(&s.prefix),
                Decoded(SlaRequester(requester.clone())),
            );
            s.consume(
                report_consumer_spec(&s.prefix),
                Decoded(ReportRequester(requester.clone())),
            );
            let mut channels = vec![
                NotifyChannel::Webhook.as_str(),
                NotifyChannel::Chat.as_str(),
            ];
            match &self.mailer {
                Some(mailer) => {
                    tracing::info!(smtp = %mailer.server, "notification: e-mail on");
                    s.readiness("email", format!("on ({})", mailer.server));
                    channels.push(NotifyChannel::Email.as_str());
                }
                None => {
                    tracing::warn!(
                        "notification: no --smtp-url: e-mail is off (no e-mail notification is requested)"
                    );
                    s.readiness("email", "off: no --smtp-url".to_string());
                }
            }
            s.readiness(
                "outbound",
                if self.outbound.allow.is_empty() {
                    "guarded: internal addresses refused".to_string()
                } else {
                    let allowed: Vec<String> = self
                        .outbound
                        .allow
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    format!("guarded; allowed: {}", allowed.join(", "))
                },
            );
            let worker = Arc::new(Worker {
                db: s.db.clone(),
                requester,
                mailer: self.mailer.clone(),
                http: self.http.clone(),
                webhooks,
                channels,
                templates: self.templates.clone(),
                lookup: DirectoryLookup::new(s.db.clone(), s.store.clone()),
                feedback: Executor::new(s.store.clone()),
                events: Bounded::new(1_000),
                feedbacks: Bounded::new(1_000),
                ticket_url: self.ticket_url.clone(),
                me: uuid::Uuid::new_v4().to_string(),
                metrics,
                clock: s.store.clock().clone(),
            });
            let stopped = s.stopped();
            s.spawn(
                worker
                    .run(progress, stopped)
                    .instrument(tracing::info_span!("deliver")),
            );
            Ok(())
        })
    }
}

/// The channels metrics are kept for, in [`channel_index`] order.
const METRIC_CHANNELS: [NotifyChannel; 3] = [
    NotifyChannel::Email,
    NotifyChannel::Chat,
    NotifyChannel::Webhook,
];

fn channel_index(c: &str) -> usize {
    METRIC_CHANNELS
        .iter()
        .position(|m| m.as_str() == c)
        .unwrap_or(0)
}

type ByChannel = [AtomicU64; 3];

/// Delivery counters by channel, for `/metrics`.
#[derive(Debug)]
pub struct NotificationMetrics {
    requested: ByChannel,
    delivered: ByChannel,
    failed: ByChannel,
    gave_up: ByChannel,
    /// Request to delivery, in seconds, by channel (a shared handle: every
    /// scrape registers this one family).
    latency: prometheus_client::metrics::family::Family<
        Vec<(String, String)>,
        prometheus_client::metrics::histogram::Histogram,
    >,
}

impl Default for NotificationMetrics {
    fn default() -> Self {
        fn histogram() -> prometheus_client::metrics::histogram::Histogram {
            prometheus_client::metrics::histogram::Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0,
            ])
        }
        NotificationMetrics {
            requested: Default::default(),
            delivered: Default::default(),
            failed: Default::default(),
            gave_up: Default::default(),
            latency: prometheus_client::metrics::family::Family::new_with_constructor(histogram),
        }
    }
}

impl NotificationMetrics {
    fn count(which: &ByChannel, channel: &str) {
        which[channel_index(channel)].fetch_add(1, Ordering::Relaxed);
    }
}

impl closeloop_runtime::MetricsSource for NotificationMetrics {
    fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let deliveries = Family::<Vec<(String, String)>, Counter>::default();
        for (outcome, by_channel) in [
            ("requested", &self.requested),
            ("delivered", &self.delivered),
            ("failed", &self.failed),
            ("gave_up", &self.gave_up),
        ] {
            for (channel, c) in METRIC_CHANNELS.iter().zip(by_channel) {
                deliveries
                    .get_or_create(&vec![
                        ("channel".to_string(), channel.as_str().to_string()),
                        ("outcome".to_string(), outcome.to_string()),
                    ])
                    .inc_by(c.load(Ordering::Relaxed));
            }
        }
        registry.register(
            "closeloop_notifications",
            "Notifications by channel and outcome (requested, delivered, failed attempts, gave up).",
            deliveries,
        );
        registry.register(
            "closeloop_notification_delivery_seconds",
            "From a notification's request to the receiver accepting it, by channel.",
            self.latency.clone(),
        );
    }
}

/// A small map that forgets everything when full (a cache: the stream is
/// the truth).
struct Bounded<K, V> {
    map: std::sync::Mutex<HashMap<K, V>>,
    max: usize,
}

impl<K: std::hash::Hash + Eq, V: Clone> Bounded<K, V> {
    fn new(max: usize) -> Self {
        Bounded {
            map: std::sync::Mutex::default(),
            max,
        }
    }

    fn take(&self, k: &K) -> Option<V> {
        self.map.lock().expect("cache").remove(k)
    }

    fn get(&self, k: &K) -> Option<V> {
        self.map.lock().expect("cache").get(k).cloned()
    }

    fn put(&self, k: K, v: V) {
        let mut m = self.map.lock().expect("cache");
        if m.len() >= self.max {
            m.clear();
        }
        m.insert(k, v);
    }
}

/// Requests the notifications of each ticket event. Cheap to clone.
#[derive(Clone)]
pub struct Requester {
    store: EventStore,
    /// People's preferences and chat webhooks.
    lookup: DirectoryLookup,
    /// The user path's backlog in this process, yielded to.
    pressure: closeloop_runtime::Pressure,
    /// The webhook endpoints' view.
    db: Db,
    notifications: Executor<NotificationContract>,
    metrics: Arc<NotificationMetrics>,
    /// Each ticket as of the last event this process handled: the next
    /// event (whose previous sequence is that one) is folded in without
    /// reading the ticket's history again.
    tickets: Arc<Bounded<TicketId, Ticket>>,
    /// Whether e-mail is on: a channel that is off is nobody's channel, so
    /// nothing piles up to be sent all at once when it is switched on.
    email: bool,
    /// The active webhook endpoints, read again only when their view moved.
    hooks: Arc<Memo<Arc<Vec<crate::endpoints::EndpointRow>>>>,
    /// How each person is told (`None`: not in the directory), forgotten
    /// whenever the people or teams views move.
    targets: Arc<Memo<HashMap<String, Option<Target>>>>,
}

/// How a person is told: their preferences and chat webhook.
type Target = (
    Preferences,
    Option<closeloop_domain::notification::ChatHook>,
);

/// A value derived from views, kept until one of them commits more: a
/// ticket event then costs no query unless the views changed.
struct Memo<T> {
    views: Vec<Progress>,
    value: std::sync::Mutex<Option<(Vec<u64>, T)>>,
}

impl<T: Clone + Default> Memo<T> {
    fn new(views: Vec<Progress>) -> Self {
        Memo {
            views,
            value: std::sync::Mutex::default(),
        }
    }

    fn positions(&self) -> Vec<u64> {
        self.views.iter().map(|v| *v.borrow()).collect()
    }

    /// The value if the views have not moved since it was stored.
    fn get(&self) -> Option<T> {
        let now = self.positions();
        match &*self.value.lock().expect("memo") {
            Some((at, v)) if *at == now => Some(v.clone()),
            _ => None,
        }
    }

    /// Runs `f` on the value for the views' current positions (emptied to
    /// `T::default()` if they moved since it was stored), and returns those
    /// positions with what `f` returns.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> (Vec<u64>, R) {
        let now = self.positions();
        let mut guard = self.value.lock().expect("memo");
        if !matches!(&*guard, Some((at, _)) if *at == now) {
            *guard = Some((now.clone(), T::default()));
        }
        let (_, v) = guard.as_mut().expect("set above");
        (now, f(v))
    }

    /// Stores `value`, read when the views were at `at`.
    fn put(&self, at: Vec<u64>, value: T) {
        *self.value.lock().expect("memo") = Some((at, value));
    }

    /// Runs `f` on the stored value if it is still the one for positions
    /// `at` (what was read at `at` is added only to a value of `at`).
    fn update_if(&self, at: &[u64], f: impl FnOnce(&mut T)) {
        if let Some((stored, v)) = &mut *self.value.lock().expect("memo")
            && stored.as_slice() == at
        {
            f(v);
        }
    }
}

/// A ticket as it stood right after one of its events, and that event
/// (for an SLA notification: the ticket as it stands, its last event, and
/// the SLA event).
struct AtEvent {
    ticket: Ticket,
    event: RecordedEvent,
    sla: Option<RecordedSla>,
}

impl Requester {
    /// Ticket `id` folded up to the event with id `event_id` (or with
    /// stream sequence `sequence`; neither: its last event).
    async fn ticket_at(
        &self,
        id: TicketId,
        event_id: Option<&str>,
        sequence: Option<u64>,
    ) -> Result<Option<AtEvent>, String> {
        let subject = self
            .store
            .prefix()
            .aggregate_subject(TicketAggregate::TYPE, &id.to_string());
        let events = self
            .store
            .read_aggregate(&subject)
            .await
            .map_err(|e| e.to_string())?;
        let mut state = None;
        let last = events.len().saturating_sub(1);
        for (i, stored) in events.iter().enumerate() {
            let rec = TicketContract::decode(stored).map_err(|e| e.0)?;
            state = TicketAggregate::evolve(state, &rec);
            let found = (i == last && event_id.is_none() && sequence.is_none())
                || event_id.is_some_and(|e| {
                    stored
                        .envelope
                        .as_ref()
                        .is_some_and(|env| env.event_id == e)
                })
                || sequence == Some(stored.sequence);
            if found {
                return Ok(state.map(|ticket| AtEvent {
                    ticket,
                    event: rec,
                    sla: None,
                }));
            }
        }
        Ok(None)
    }

    /// Ticket `id` as it stands, with SLA event `event_id` of it.
    async fn ticket_with_sla(
        &self,
        id: TicketId,
        event_id: &str,
    ) -> Result<Option<AtEvent>, String> {
        let Some(sla) = self
            .stored_event(
                closeloop_contracts::sla::AGGREGATE,
                &id.to_string(),
                event_id,
            )
            .await?
        else {
            return Ok(None);
        };
        let sla = closeloop_contracts::sla::decode(&sla).map_err(|e| e.0)?;
        Ok(self.ticket_at(id, None, None).await?.map(|at| AtEvent {
            sla: Some(sla),
            ..at
        }))
    }

    /// The stored event with id `event_id` on aggregate `aggregate`/`id`.
    async fn stored_event(
        &self,
        aggregate: &str,
        id: &str,
        event_id: &str,
    ) -> Result<Option<closeloop_eventstore::StoredEvent>, String> {
        let subject = self.store.prefix().aggregate_subject(aggregate, id);
        Ok(self
            .store
            .read_aggregate(&subject)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|s| s.envelope.as_ref().is_some_and(|e| e.event_id == event_id)))
    }
}

/// Durable consumer of the weekly report events.
pub const REPORT_CONSUMER: &str = "notification-reports";

pub fn report_consumer_spec(prefix: &Prefix) -> ConsumerSpec {
    ConsumerSpec::new(
        prefix.events_stream(),
        REPORT_CONSUMER,
        prefix.aggregate_filter(closeloop_contracts::report::AGGREGATE),
    )
    .only_new()
    .background()
}

/// What a weekly report's notifications carry as their ticket id: the
/// report's stream (`report/<key>`).
pub fn report_ref(key: &closeloop_domain::report::ReportKey) -> String {
    format!("report/{key}")
}

/// Requests the e-mail of each weekly report to its recipients.
#[derive(Clone)]
struct ReportRequester(Requester);

impl EventHandler for ReportRequester {
    type Contract = closeloop_contracts::report::ReportContract;

    async fn handle(
        &self,
        rec: closeloop_domain::report::RecordedReport,
        envelope: Option<&Envelope>,
    ) -> Verdict {
        let r = &self.0;
        let Some(env) = envelope else {
            return Verdict::DeadLetter("report event without an envelope (no event id)".into());
        };
        if !r.email {
            return Verdict::Done;
        }
        let closeloop_domain::report::ReportEvent::Generated(report) = &rec.event;
        let ctx = EventContext::caused_by(Some(env), ACTOR);
        for to in &report.recipients {
            let to = to.trim().to_ascii_lowercase();
            let id = NotificationId::of(&env.event_id, &to, NotifyChannel::Email);
            let cmd = NotificationCommand::Request {
                ticket_id: report_ref(&rec.key),
                cause_event_id: env.event_id.clone(),
                recipient: to,
                channel: NotifyChannel::Email,
                kind: NoticeKind::WeeklyReport,
                not_before: None,
            };
            match r.notifications.execute(id, REQUEST, &ctx, &cmd).await {
                Ok(done) if !done.replayed => {
                    NotificationMetrics::count(&r.metrics.requested, NotifyChannel::Email.as_str());
                }
                Ok(_) => {}
                Err(e) => return Verdict::Retry(e.to_string()),
            }
        }
        Verdict::Done
    }
}

/// Durable consumer of the SLA events.
pub const SLA_CONSUMER: &str = "notification-sla";

pub fn sla_consumer_spec(prefix: &Prefix) -> ConsumerSpec {
    ConsumerSpec::new(
        prefix.events_stream(),
        SLA_CONSUMER,
        prefix.aggregate_filter(closeloop_contracts::sla::AGGREGATE),
    )
    .only_new()
    .background()
}

/// Requests the notifications of SLA events: warnings and breaches to the
/// owner, escalations to their target with the owner in copy.
#[derive(Clone)]
struct SlaRequester(Requester);

impl EventHandler for SlaRequester {
    type Contract = closeloop_contracts::sla::SlaContract;

    async fn handle(&self, rec: RecordedSla, envelope: Option<&Envelope>) -> Verdict {
        let r = &self.0;
        let Some(env) = envelope else {
            return Verdict::DeadLetter("SLA event without an envelope (no event id)".into());
        };
        let default_prefs = |_: &str| Preferences::default();
        let candidates: Vec<String> = sla_notices(&rec.event, rec.occurred_at, &default_prefs)
            .into_iter()
            .map(|n| n.recipient)
            .collect();
        if candidates.is_empty() {
            // Clocks starting, stopping, pausing: nobody is told.
            return Verdict::Done;
        }
        // Feedback still becoming tickets in this process goes first.
        r.pressure.yield_while_busy(BUSY, YIELD_AT_MOST).await;
        let targets = match r.targets_of(&candidates).await {
            Ok(t) => t,
            Err(e) => return Verdict::Retry(format!("directory unreadable: {e}")),
        };
        let prefs = |p: &str| {
            targets
                .get(p)
                .and_then(|t| t.as_ref())
                .map(|t| t.0.clone())
                .unwrap_or_default()
        };
        let ctx = EventContext::caused_by(Some(env), ACTOR);
        for n in sla_notices(&rec.event, rec.occurred_at, &prefs)
            .into_iter()
            .filter(|n| r.email || n.channel != NotifyChannel::Email)
        {
            let id = NotificationId::of(&env.event_id, &n.recipient, n.channel);
            let cmd = NotificationCommand::Request {
                ticket_id: rec.ticket_id.to_string(),
                cause_event_id: env.event_id.clone(),
                recipient: n.recipient,
                channel: n.channel,
                kind: n.kind,
                not_before: None,
            };
            match r.notifications.execute(id, REQUEST, &ctx, &cmd).await {
                Ok(done) if !done.replayed => {
                    NotificationMetrics::count(&r.metrics.requested, n.channel.as_str());
                }
                Ok(_) => {}
                Err(e) => return Verdict::Retry(e.to_string()),
            }
        }
        Verdict::Done
    }
}

impl Requester {
    /// How each of `people` is told, from memory when the directory views
    /// have not moved since, else read (one query for those not known).
    async fn targets_of(
        &self,
        people: &[String],
    ) -> Result<HashMap<String, Option<Target>>, closeloop_directory::lookup::LookupError> {
        let mut out: HashMap<String, Option<Target>> = HashMap::with_capacity(people.len());
        let mut missing: Vec<String> = Vec::new();
        let (at, ()) = self.targets.with(|known| {
            for p in people {
                match known.get(p) {
                    Some(t) => {
                        out.insert(p.clone(), t.clone());
                    }
                    None => missing.push(p.clone()),
                }
            }
        });
        if missing.is_empty() {
            return Ok(out);
        }
        let mut found = self.lookup.notification_targets(&missing).await?;
        let read: Vec<(String, Option<Target>)> = missing
            .into_iter()
            .map(|p| {
                let t = found.remove(&p);
                (p, t)
            })
            .collect();
        self.targets.update_if(&at, |known| {
            if known.len() > 10_000 {
                known.clear();
            }
            known.extend(read.iter().cloned());
        });
        out.extend(read);
        Ok(out)
    }

    /// Folds `rec` onto the cached ticket when it follows it; else forgets
    /// the ticket (it is read when next needed).
    fn fold_cached(&self, rec: &RecordedEvent, env: &Envelope) {
        if let Some(t) = self.tickets.take(&rec.ticket_id)
            && env.previous_sequence == Some(t.sequence)
            && let Some(next) = TicketAggregate::evolve(Some(t), rec)
        {
            self.tickets.put(rec.ticket_id, next);
        }
    }

    /// The ticket right after `rec`: folded onto the cached state when the
    /// event follows it (or is the ticket's first), else read from the
    /// ticket's events.
    async fn state_after(
        &self,
        rec: &RecordedEvent,
        env: &Envelope,
    ) -> Result<Option<Ticket>, String> {
        let cached = self.tickets.take(&rec.ticket_id);
        let next = match (cached, env.previous_sequence) {
            (Some(t), Some(prev)) if t.sequence == prev => TicketAggregate::evolve(Some(t), rec),
            (None, Some(0)) => TicketAggregate::evolve(None, rec),
            _ => self
                .ticket_at(rec.ticket_id, None, Some(rec.sequence))
                .await?
                .map(|a| a.ticket),
        };
        if let Some(t) = &next {
            self.tickets.put(rec.ticket_id, t.clone());
        }
        Ok(next)
    }
}

impl EventHandler for Requester {
    type Contract = TicketContract;

    async fn handle(&self, rec: RecordedEvent, envelope: Option<&Envelope>) -> Verdict {
        let Some(env) = envelope else {
            return Verdict::DeadLetter("ticket event without an envelope (no event id)".into());
        };
        // Feedback still becoming tickets in this process goes first.
        self.pressure.yield_while_busy(BUSY, YIELD_AT_MOST).await;
        // Events that tell no person (contacts, notes, revisions) and that
        // no endpoint wants need no ticket read at all.
        let event_type = closeloop_contracts::webhook::event_type(&rec.event);
        let active = match self.hooks.get() {
            Some(a) => a,
            None => {
                let at = self.hooks.positions();
                match endpoints::active(&self.db).await {
                    Ok(all) => {
                        let all = Arc::new(all);
                        self.hooks.put(at, all.clone());
                        all
                    }
                    Err(e) => return Verdict::Retry(format!("webhook endpoints unreadable: {e}")),
                }
            }
        };
        let hooks: Vec<String> = active
            .iter()
            .filter(|e| e.wants(event_type))
            .map(|e| e.id.clone())
            .collect();
        if hooks.is_empty() && !tells_people(&rec.event) {
            // Keep a cached ticket current (no read), so the next event
            // that tells someone folds onto it instead of reading the
            // ticket's history.
            self.fold_cached(&rec, env);
            return Verdict::Done;
        }
        let ctx = EventContext::caused_by(Some(env), ACTOR);
        let ticket = match self.state_after(&rec, env).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Verdict::Retry(format!("ticket {} is not readable yet", rec.ticket_id));
            }
            Err(e) => return Verdict::Retry(e),
        };
        // Who could be told (everyone at the defaults), then how each
        // wants to be (the directory's preferences; the defaults for a
        // person not in it).
        let default_prefs = |_: &str| Preferences::default();
        let candidates: Vec<String> = notices(&rec.event, &ticket, &default_prefs)
            .into_iter()
            .map(|n| n.recipient)
            .collect();
        let targets = match self.targets_of(&candidates).await {
            Ok(t) => t,
            Err(e) => return Verdict::Retry(format!("directory unreadable: {e}")),
        };
        let prefs = |p: &str| {
            targets
                .get(p)
                .and_then(|t| t.as_ref())
                .map(|t| t.0.clone())
                .unwrap_or_default()
        };
        let people = notices(&rec.event, &ticket, &prefs)
            .into_iter()
            // E-mail that is off is nobody's channel.
            .filter(|n| self.email || n.channel != NotifyChannel::Email)
            .map(|n| {
                let not_before = n.not_before(rec.occurred_at);
                (n.recipient, n.channel, n.kind, not_before)
            });
        let wanted = people.chain(
            hooks
                .into_iter()
                .map(|h| (h, NotifyChannel::Webhook, NoticeKind::Webhook, None)),
        );
        for (recipient, channel, kind, not_before) in wanted {
            let id = NotificationId::of(&env.event_id, &recipient, channel);
            let cmd = NotificationCommand::Request {
                ticket_id: rec.ticket_id.to_string(),
                cause_event_id: env.event_id.clone(),
                recipient,
                channel,
                kind,
                not_before,
            };
            match self.notifications.execute(id, REQUEST, &ctx, &cmd).await {
                Ok(done) if !done.replayed => {
                    NotificationMetrics::count(&self.metrics.requested, channel.as_str());
                }
                Ok(_) => {}
                Err(e) => return Verdict::Retry(e.to_string()),
            }
        }
        Verdict::Done
    }
}

/// Whether ticket event `e` tells any person anything (whatever the
/// ticket): the kinds [`notices`] has a case for.
fn tells_people(e: &TicketEvent) -> bool {
    !matches!(
        e,
        TicketEvent::ContactLogged { .. }
            | TicketEvent::NoteAdded { .. }
            | TicketEvent::FeedbackRevised { .. }
            | TicketEvent::AwaitingCustomer { .. }
            | TicketEvent::WaitEnded { .. }
    )
}

/// The delivery worker: e-mail (when on), chat and webhooks.
struct Worker {
    db: Db,
    requester: Requester,
    mailer: Option<Mailer>,
    http: crate::outbound::Http,
    webhooks: Executor<WebhookContract>,
    /// The channels delivered (names from [`NotifyChannel::as_str`]).
    channels: Vec<&'static str>,
    templates: Arc<Templates>,
    lookup: DirectoryLookup,
    feedback: Executor<FeedbackContract>,
    /// A ticket event's notifications (owner, stakeholders) share its reads.
    events: Bounded<String, Arc<AtEvent>>,
    /// What the customer said, by feedback id (a response's revisions
    /// change it: kept only as long as a ticket event's notifications go out).
    feedbacks: Bounded<String, Option<FeedbackCtx>>,
    ticket_url: Option<String>,
    /// This worker's claim name.
    me: String,
    metrics: Arc<NotificationMetrics>,
    /// The install's clock: what is due (a notification's due time, its
    /// retries and its digest are times of this clock, from its events).
    /// Claims are leases between processes and run on the wall clock.
    clock: Clock,
}

/// How long a claim lasts: longer than one send may take (the SMTP client
/// gives up on a silent server after 20 s, the HTTP client after 10 s).
/// After a crash between sending and recording, the notification is sent
/// again (same Message-ID or webhook-id) once its claim has expired.
const CLAIM: Duration = Duration::from_secs(60);
/// Namespace of digest Message-IDs (UUIDv5 of the members' ids).
const DIGEST_NS: uuid::Uuid = uuid::Uuid::from_u128(0x9d2e_41c7_0b8a_4f35_a6d1_3e7c_58b0_0042);
/// Longest sleep between looks at the outbox.
const IDLE: Duration = Duration::from_secs(1);
/// Deliveries under way at once.
const IN_FLIGHT: usize = 64;
/// Deliveries under way at once to one webhook endpoint (or chat URL): a
/// slow endpoint holds these, never the others'.
const PER_ENDPOINT: usize = 4;
/// Deliveries under way at once to the SMTP server.
const PER_SMTP: usize = 32;

/// Where a delivery goes, for the per-destination limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Dest {
    /// The SMTP server (every e-mail).
    Smtp,
    /// A webhook endpoint or a chat recipient: its rows are left out of
    /// the outbox query while it is full.
    Endpoint { channel: String, recipient: String },
    /// One digest: one message, sent by one task.
    Digest {
        channel: String,
        recipient: String,
        at: i64,
    },
}

impl Dest {
    fn of(n: &NotificationRow) -> Dest {
        match n.digest_at {
            Some(at) => Dest::Digest {
                channel: n.channel.clone(),
                recipient: n.recipient.clone(),
                at,
            },
            None if n.channel == NotifyChannel::Email.as_str() => Dest::Smtp,
            None => Dest::Endpoint {
                channel: n.channel.clone(),
                recipient: n.recipient.clone(),
            },
        }
    }

    /// Deliveries to it at once.
    fn limit(&self) -> usize {
        match self {
            Dest::Smtp => PER_SMTP,
            Dest::Endpoint { .. } => PER_ENDPOINT,
            Dest::Digest { .. } => 1,
        }
    }
}

/// Frees the slot of a delivery that ended.
fn finished(
    done: Result<(String, Dest), tokio::task::JoinError>,
    busy: &mut HashMap<Dest, usize>,
    sending: &mut std::collections::HashSet<String>,
) {
    match done {
        Ok((id, dest)) => {
            sending.remove(&id);
            if let Some(c) = busy.get_mut(&dest) {
                *c = c.saturating_sub(1);
            }
        }
        Err(e) => tracing::error!(error = %e, "a delivery task failed"),
    }
}

impl Worker {
    async fn run(
        self: Arc<Self>,
        mut progress: Progress,
        stopped: impl std::future::Future<Output = ()>,
    ) {
        let mut stopped = std::pin::pin!(stopped);
        let mut swept = std::time::Instant::now();
        let mut tasks: tokio::task::JoinSet<(String, Dest)> = tokio::task::JoinSet::new();
        let mut busy: HashMap<Dest, usize> = HashMap::new();
        let mut sending: std::collections::HashSet<String> = Default::default();
        loop {
            while let Some(done) = tasks.try_join_next() {
                finished(done, &mut busy, &mut sending);
            }
            // Leases (claims) count in wall time; due times in the
            // install's clock's (the same on the wall clock).
            let wall = micros(SystemTime::now());
            let now = micros(self.clock.now());
            if swept.elapsed() > Duration::from_secs(60) {
                swept = std::time::Instant::now();
                if let Err(e) = view::sweep_claims(&self.db, wall).await {
                    tracing::debug!(error = %e, "cannot sweep expired claims");
                }
            }
            // Feedback still becoming tickets in this process goes first.
            self.requester
                .pressure
                .yield_while_busy(BUSY, YIELD_AT_MOST)
                .await;
            let free = IN_FLIGHT.saturating_sub(tasks.len());
            let mut wait = IDLE;
            // Whether the view moving should wake this loop: not while
            // every slot is taken, nor after a look that found due rows but
            // could start none (their destinations are busy): then only a
            // delivery ending (or the idle timer) frees something. Every
            // notification event projected would otherwise mean another
            // look at the outbox while nothing can be started.
            let mut watch_view = free > 0;
            if free > 0 {
                // More than there is room for: rows of a busy endpoint are
                // passed over for others'.
                // Destinations with no room are left out of the query (their
                // rows would otherwise fill it: head-of-line blocking).
                let smtp_full = busy.get(&Dest::Smtp).copied().unwrap_or(0) >= PER_SMTP;
                let channels: Vec<&'static str> = self
                    .channels
                    .iter()
                    .copied()
                    .filter(|c| !(smtp_full && *c == NotifyChannel::Email.as_str()))
                    .collect();
                let full: Vec<(String, String)> = busy
                    .iter()
                    .filter(|(d, n)| **n >= d.limit())
                    .filter_map(|(d, _)| match d {
                        Dest::Endpoint { channel, recipient } => {
                            Some((channel.clone(), recipient.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                let due = view::due(
                    &self.db,
                    view::Now { due: now, wall },
                    &channels,
                    &full,
                    (free * 2).max(8) as i64,
                )
                .await;
                match due {
                    Ok(due) if !due.is_empty() => {
                        let before = tasks.len();
                        // What there is room for, claimed in one write.
                        let mut room: HashMap<Dest, usize> = HashMap::new();
                        let mut picked = Vec::new();
                        for n in due {
                            if tasks.len() + picked.len() >= IN_FLIGHT || sending.contains(&n.id) {
                                continue;
                            }
                            let dest = Dest::of(&n);
                            let limit = dest.limit();
                            let taken = room.entry(dest.clone()).or_default();
                            if busy.get(&dest).copied().unwrap_or(0) + *taken >= limit {
                                continue;
                            }
                            *taken += 1;
                            picked.push((n, dest));
                        }
                        let ids: Vec<String> = picked.iter().map(|(n, _)| n.id.clone()).collect();
                        let until = wall + CLAIM.as_micros() as i64;
                        let claimed =
                            match view::claim_all(&self.db, &ids, &self.me, wall, until).await {
                                Ok(c) => c.into_iter().collect::<std::collections::HashSet<_>>(),
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot claim");
                                    Default::default()
                                }
                            };
                        for (n, dest) in picked {
                            if !claimed.contains(&n.id) {
                                continue;
                            }
                            *busy.entry(dest.clone()).or_default() += 1;
                            sending.insert(n.id.clone());
                            let w = self.clone();
                            let id = n.id.clone();
                            tasks.spawn(
                                async move {
                                    w.deliver(n).await;
                                    (id, dest)
                                }
                                .in_current_span(),
                            );
                        }
                        watch_view = tasks.len() > before;
                    }
                    // Nothing to send now: sleep until the next row is due
                    // (one due already is being sent, here or by another
                    // worker: the view changing wakes this loop).
                    // A simulated clock's time moves only when moved (the
                    // loop wakes on that): the idle timer is the wait then.
                    Ok(_) => {
                        if let Ok(Some(t)) = view::next_due(&self.db, &self.channels).await
                            && t > now
                            && matches!(self.clock, Clock::Wall)
                        {
                            wait = Duration::from_micros((t - now) as u64).min(IDLE);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "outbox unreadable; retrying"),
                }
            }
            tokio::select! {
                _ = &mut stopped => return,
                _ = progress.changed(), if watch_view => {}
                _ = self.clock.moved() => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    finished(done, &mut busy, &mut sending);
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Claims `n` for this worker: true when nobody else holds it and the
    /// view still has it pending at the attempt `n` was read at.
    async fn claim(&self, n: &NotificationRow) -> bool {
        let now = micros(SystemTime::now()); // a lease: wall time
        match view::claim(
            &self.db,
            &n.id,
            &self.me,
            now,
            now + CLAIM.as_micros() as i64,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!(notification = %n.id, error = %e, "cannot claim");
                return false;
            }
        }
        self.still_due(n).await
    }

    /// After claiming `n`: whether the view still has it pending at the
    /// attempt it was read at (else the claim is given back).
    async fn still_due(&self, n: &NotificationRow) -> bool {
        // The row may have been read before the projector recorded this
        // notification's last attempt (which also removed its claim): only
        // what the view says now, after the claim, counts.
        match view::get(&self.db, &n.id).await {
            Ok(Some(now)) if now.status == "pending" && now.attempts == n.attempts => true,
            Ok(_) => {
                let _ = view::release(&self.db, &n.id, &self.me).await;
                false
            }
            Err(e) => {
                tracing::warn!(notification = %n.id, error = %e, "cannot read the outbox");
                let _ = view::release(&self.db, &n.id, &self.me).await;
                false
            }
        }
    }

    /// Sends one due notification (if this worker gets its claim), or the
    /// whole digest it belongs to as one message, and records the attempt
    /// of each notification sent.
    async fn deliver(&self, n: NotificationRow) {
        // Claimed by the loop that started this delivery.
        if !self.still_due(&n).await {
            return;
        }
        let span = tracing::info_span!("notify", notification = %n.id, channel = %n.channel, kind = %n.kind, attempt = n.attempts + 1);
        let Some(digest_at) = n.digest_at else {
            let outcome = self.send(&n).instrument(span.clone()).await;
            self.record(&n, &outcome).instrument(span).await;
            return;
        };
        // The recipient's other FYIs of this digest go in the same message.
        let mut members = vec![n.clone()];
        match view::digest(&self.db, &n.recipient, &n.channel, digest_at).await {
            Ok(rows) => {
                for m in rows {
                    if m.id != n.id
                        && m.next_attempt_at <= micros(self.clock.now())
                        && self.claim(&m).await
                    {
                        members.push(m);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the digest; sending what is claimed"),
        }
        members.sort_by(|a, b| (a.requested_at, &a.id).cmp(&(b.requested_at, &b.id)));
        let outcome = self.send_digest(&members).instrument(span.clone()).await;
        for m in &members {
            self.record(m, &outcome).instrument(span.clone()).await;
        }
    }

    /// Records how sending `n` went: the attempt, and giving up when it was
    /// the last or the receiver refused.
    async fn record(&self, n: &NotificationRow, outcome: &Result<(), SendError>) {
        let now = micros(self.clock.now());
        let Some(id) = NotificationId::parse(&n.id) else {
            tracing::error!(notification = %n.id, "outbox row with an id that is not a UUID");
            return;
        };
        let attempt = n.attempts + 1;
        let ctx = EventContext {
            actor: ACTOR.to_string(),
            correlation_id: n.ticket_id.clone(),
            causation_id: n.cause_event_id.clone(),
            traceparent: None,
        };
        let request = format!("attempt-{attempt}");
        let m = &self.metrics;
        let (record, give_up) = match outcome {
            Ok(()) => {
                NotificationMetrics::count(&m.delivered, &n.channel);
                m.latency
                    .get_or_create(&vec![("channel".to_string(), n.channel.clone())])
                    .observe((now - n.requested_at).max(0) as f64 / 1_000_000.0);
                (AttemptOutcome::Delivered, None)
            }
            Err(SendError::Transient {
                code,
                message,
                retry_after,
            }) => {
                NotificationMetrics::count(&m.failed, &n.channel);
                tracing::warn!(error = %message, "delivery failed; will retry");
                // The schedule counts from the start of this round (a
                // redrive starts a new one).
                let in_round = attempt.saturating_sub(n.round_start);
                let last = retry_delay(in_round).is_none();
                (
                    AttemptOutcome::Retryable {
                        status: *code,
                        error: message.clone(),
                        retry_after: *retry_after,
                    },
                    last.then(|| format!("gave up after {attempt} attempts: {message}")),
                )
            }
            Err(SendError::Permanent { code, message }) => {
                NotificationMetrics::count(&m.failed, &n.channel);
                tracing::warn!(error = %message, "delivery refused; giving up");
                (
                    AttemptOutcome::Permanent {
                        status: *code,
                        error: message.clone(),
                    },
                    Some(format!("refused: {message}")),
                )
            }
        };
        let gone = matches!(
            outcome,
            Err(SendError::Permanent {
                code: Some(410),
                ..
            })
        ) && n.channel == NotifyChannel::Webhook.as_str();
        let exec = &self.requester.notifications;
        let recorded = exec
            .execute(
                id,
                &request,
                &ctx,
                &NotificationCommand::RecordAttempt {
                    attempt,
                    outcome: record,
                },
            )
            .await;
        if let Err(e) = recorded {
            // The claim expires and the notification is sent again, with
            // the same Message-ID.
            tracing::warn!(error = %e, "cannot record the attempt");
            return;
        }
        if let Some(reason) = give_up {
            NotificationMetrics::count(&m.gave_up, &n.channel);
            if let Err(e) = exec
                .execute(id, "give-up", &ctx, &NotificationCommand::GiveUp { reason })
                .await
            {
                tracing::warn!(error = %e, "cannot record giving up");
            }
        }
        if gone && let Some(endpoint) = EndpointId::parse(&n.recipient) {
            // The receiver says the endpoint is gone for good: stop sending
            // there until an operator enables it again.
            let reason = format!("410 Gone answered to delivery {}", n.id);
            match self
                .webhooks
                .execute(
                    endpoint,
                    &format!("gone-{}", n.id),
                    &ctx,
                    &EndpointCommand::Disable { reason },
                )
                .await
            {
                Ok(_) => {
                    tracing::warn!(endpoint = %endpoint, "webhook endpoint disabled: 410 Gone")
                }
                Err(closeloop_eventstore::ExecuteError::Rule(_)) => {}
                Err(e) => tracing::warn!(error = %e, "cannot disable the endpoint"),
            }
        }
    }

    /// The ticket event that caused `n`, with the ticket right after it
    /// (shared by the event's notifications).
    async fn cause(&self, n: &NotificationRow) -> Result<Arc<AtEvent>, SendError> {
        let transient = |message: String| SendError::Transient {
            code: None,
            message,
            retry_after: None,
        };
        if let Some(at) = self.events.get(&n.cause_event_id) {
            return Ok(at);
        }
        let ticket_id =
            TicketId::parse("ticket_id", &n.ticket_id).map_err(|e| SendError::Permanent {
                code: None,
                message: e.to_string(),
            })?;
        let sla = NoticeKind::parse(&n.kind).is_some_and(NoticeKind::is_sla);
        let found = if sla {
            self.requester
                .ticket_with_sla(ticket_id, &n.cause_event_id)
                .await
        } else {
            self.requester
                .ticket_at(ticket_id, Some(&n.cause_event_id), None)
                .await
        };
        let at =
            Arc::new(found.map_err(transient)?.ok_or_else(|| {
                transient(format!("ticket event {} not found", n.cause_event_id))
            })?);
        self.events.put(n.cause_event_id.clone(), at.clone());
        Ok(at)
    }

    async fn send(&self, n: &NotificationRow) -> Result<(), SendError> {
        if n.channel == NotifyChannel::Webhook.as_str() {
            return self.send_webhook(n).await;
        }
        if n.kind == NoticeKind::WeeklyReport.as_str() {
            let rendered = self.render_report(n).await?;
            return self
                .send_rendered(n, None, &format!("{}@closeloop", n.id), &rendered)
                .await;
        }
        let (ctx, rendered) = self.render(n).await?;
        // The manager's escalation names the owner in copy.
        let cc = (n.kind == NoticeKind::Escalation.as_str()
            && ctx.ticket.owner_email != n.recipient)
            .then_some(ctx.ticket.owner_email.as_str());
        // Stable per notification: a copy sent again after a crash between
        // sending and recording has the same Message-ID.
        self.send_rendered(n, cc, &format!("{}@closeloop", n.id), &rendered)
            .await
    }

    /// Sends `rendered` to `n`'s recipient on `n`'s channel (e-mail with
    /// `message_id`, or chat).
    async fn send_rendered(
        &self,
        n: &NotificationRow,
        cc: Option<&str>,
        message_id: &str,
        rendered: &crate::templates::Rendered,
    ) -> Result<(), SendError> {
        if n.channel == NotifyChannel::Chat.as_str() {
            let hook = self
                .lookup
                .chat_of(&n.recipient)
                .await
                .map_err(|e| SendError::Transient {
                    code: None,
                    message: format!("directory unreadable: {e}"),
                    retry_after: None,
                })?
                .ok_or_else(|| SendError::Permanent {
                    code: None,
                    message: format!(
                        "no chat webhook for {}: set `chat` on the person or on one of their teams in the directory",
                        n.recipient
                    ),
                })?;
            return crate::chat::post(&self.http, &hook, &rendered.subject, &rendered.chat).await;
        }
        let Some(mailer) = &self.mailer else {
            return Err(SendError::Transient {
                code: None,
                message: "e-mail is off (no --smtp-url)".into(),
                retry_after: None,
            });
        };
        let message = mailer.message(&n.recipient, cc, message_id, rendered)?;
        mailer.send(message).await
    }

    /// Weekly report notification `n` rendered: the report is read back
    /// from its event.
    async fn render_report(
        &self,
        n: &NotificationRow,
    ) -> Result<crate::templates::Rendered, SendError> {
        use crate::templates::{ReportContext, ReportOwnerCtx, ReportTicketCtx};
        let permanent = |message: String| SendError::Permanent {
            code: None,
            message,
        };
        let transient = |message: String| SendError::Transient {
            code: None,
            message,
            retry_after: None,
        };
        let key = n
            .ticket_id
            .strip_prefix("report/")
            .and_then(closeloop_domain::report::ReportKey::parse)
            .ok_or_else(|| permanent(format!("{:?} names no report", n.ticket_id)))?;
        let stored = self
            .requester
            .stored_event(
                closeloop_contracts::report::AGGREGATE,
                &key.to_string(),
                &n.cause_event_id,
            )
            .await
            .map_err(transient)?
            .ok_or_else(|| transient(format!("report event {} not found", n.cause_event_id)))?;
        let rec = closeloop_contracts::report::decode(&stored).map_err(|e| permanent(e.0))?;
        let closeloop_domain::report::ReportEvent::Generated(r) = rec.event;
        let rfc3339 =
            |ts: Timestamp| humantime::format_rfc3339_seconds(ts.to_system_time()).to_string();
        let listed: usize = r.owners.iter().map(|o| o.lines.len()).sum();
        let ctx = ReportContext {
            region: r.region.clone(),
            as_of: rfc3339(r.scheduled_at),
            tickets: r.tickets,
            listed: u32::try_from(listed).unwrap_or(u32::MAX),
            truncated: r.truncated,
            owners: r
                .owners
                .iter()
                .map(|o| ReportOwnerCtx {
                    owner: o.owner.clone(),
                    tickets: o
                        .lines
                        .iter()
                        .map(|t| ReportTicketCtx {
                            ticket_id: t.ticket_id.clone(),
                            account_id: t.account_id.clone(),
                            title: t.title.clone(),
                            age_days: t.age_days,
                            reasons: t.reasons.clone(),
                            first_contact_due: t.first_contact_due.map(rfc3339),
                            close_due: t.close_due.map(rfc3339),
                            escalation_level: t.escalation_level,
                            act: match &self.ticket_url {
                                Some(u) => u.replace("{id}", &t.ticket_id),
                                None => format!("closeloop tickets show {}", t.ticket_id),
                            },
                        })
                        .collect(),
                })
                .collect(),
        };
        self.templates
            .render_report(&ctx)
            .map_err(|e| permanent(e.to_string()))
    }

    /// Notification `n` rendered, with the context it was rendered from.
    async fn render(
        &self,
        n: &NotificationRow,
    ) -> Result<(Context, crate::templates::Rendered), SendError> {
        let at = self.cause(n).await?;
        let ctx = self
            .context(n, &at)
            .await
            .map_err(|message| SendError::Transient {
                code: None,
                message,
                retry_after: None,
            })?;
        let workflow = match &at.ticket.origin {
            Origin::Workflow { workflow_id, .. } => Some(workflow_id.as_str()),
            Origin::Manual => None,
        };
        let rendered = self
            .templates
            .render(workflow, &ctx)
            .map_err(|e| SendError::Permanent {
                code: None,
                message: e.to_string(),
            })?;
        Ok((ctx, rendered))
    }

    /// One message listing the FYIs of one digest (`members`: one
    /// recipient, channel and digest time), with a Message-ID of the
    /// members' ids: sent again after a crash, the same digest has the same
    /// id.
    async fn send_digest(&self, members: &[NotificationRow]) -> Result<(), SendError> {
        let first = members.first().expect("a digest has a member");
        let mut items = Vec::with_capacity(members.len());
        for m in members {
            let (ctx, r) = self.render(m).await?;
            let mut lines: Vec<&str> = r.chat.lines().collect();
            if lines.len() > 1 {
                lines.pop();
            }
            items.push(crate::templates::DigestItem {
                subject: r.subject.clone(),
                kind: m.kind.clone(),
                ticket_id: m.ticket_id.clone(),
                title: ctx.ticket.title.clone(),
                account: ctx.account.name.clone(),
                summary: lines.join(" ").replace('*', ""),
                act: ctx.act.clone(),
            });
        }
        let (hour, time_zone) = match self.lookup.person(&first.recipient).await {
            Ok(Some(p)) => match p.notify.cadence {
                closeloop_domain::notification::Cadence::DailyDigest { hour, tz } => (hour, tz),
                _ => (0, "UTC".to_string()),
            },
            _ => (0, "UTC".to_string()),
        };
        let rendered = self
            .templates
            .render_digest(&crate::templates::DigestContext {
                recipient: first.recipient.clone(),
                hour,
                time_zone,
                items,
            })
            .map_err(|e| SendError::Permanent {
                code: None,
                message: e.to_string(),
            })?;
        let mut ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        let message_id = uuid::Uuid::new_v5(&DIGEST_NS, ids.join(",").as_bytes());
        self.send_rendered(
            first,
            None,
            &format!("digest-{message_id}@closeloop"),
            &rendered,
        )
        .await
    }

    /// Delivers ticket event `n.cause_event_id` to endpoint `n.recipient`,
    /// signed with its secrets as they are now, `webhook-id` the
    /// notification's id.
    async fn send_webhook(&self, n: &NotificationRow) -> Result<(), SendError> {
        let refuse = |message: String| SendError::Permanent {
            code: None,
            message,
        };
        let endpoint = endpoints::get(&self.db, &n.recipient)
            .await
            .map_err(|e| SendError::Transient {
                code: None,
                message: format!("webhook endpoints unreadable: {e}"),
                retry_after: None,
            })?
            .ok_or_else(|| refuse(format!("no webhook endpoint {}", n.recipient)))?;
        match endpoint.status.as_str() {
            "active" => {}
            "disabled" => {
                return Err(refuse(format!(
                    "endpoint disabled ({})",
                    endpoint
                        .disabled_reason
                        .as_deref()
                        .unwrap_or("by an operator")
                )));
            }
            _ => return Err(refuse("endpoint removed".into())),
        }
        let secrets = endpoint
            .signing_secrets(micros(SystemTime::now()))
            .into_iter()
            .map(crate::webhook::Secret::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refuse(format!("the endpoint's secret is unusable: {e}")))?;
        let at = self.cause(n).await?;
        let body = crate::webhook::payload(&n.cause_event_id, &at.ticket, &at.event).to_string();
        crate::webhook::post(&self.http, &endpoint.url, &n.id, &secrets, body.as_bytes())
            .await
            .map(|_| ())
    }

    /// What the templates see for notification `n` caused by `at`.
    async fn context(&self, n: &NotificationRow, at: &AtEvent) -> Result<Context, String> {
        let t = &at.ticket;
        let rfc3339 =
            |ts: Timestamp| humantime::format_rfc3339_seconds(ts.to_system_time()).to_string();
        let account = self
            .lookup
            .account(&t.account_id)
            .await
            .map_err(|e| e.to_string())?;
        let account = match account {
            Some(a) => AccountCtx {
                name: if a.name.is_empty() {
                    t.account_id.clone()
                } else {
                    a.name
                },
                region: a.region,
                segment: a.segment,
                team: a
                    .team
                    .iter()
                    .map(|(r, e)| (r.clone(), e.to_string()))
                    .collect(),
            },
            None => AccountCtx {
                name: t.account_id.clone(),
                region: String::new(),
                segment: String::new(),
                team: Default::default(),
            },
        };
        let (workflow_id, feedback) = match &t.origin {
            Origin::Workflow {
                feedback_id,
                workflow_id,
            } => {
                let key = format!("{}/{feedback_id}", n.cause_event_id);
                let f = match self.feedbacks.get(&key) {
                    Some(f) => f,
                    None => {
                        let f = self.feedback_ctx(feedback_id).await?;
                        self.feedbacks.put(key, f.clone());
                        f
                    }
                };
                (Some(workflow_id.clone()), f)
            }
            Origin::Manual => (None, None),
        };
        let guide = t.plan.guide.as_ref().map(|g| GuideCtx {
            title: g.title.clone(),
            link: g.link.clone(),
            steps: g.steps.clone(),
            templates: g
                .templates
                .iter()
                .map(|r| ResponseTemplateCtx {
                    name: r.name.clone(),
                    subject: r.subject.clone(),
                    body: r.body.clone(),
                })
                .collect(),
            talking_points: g.talking_points.clone(),
            faq: g.faq.clone(),
        });
        let closure = t.closure.as_ref().map(|c| ClosureCtx {
            root_cause_category: c.root_cause_category.clone(),
            root_cause: c.root_cause.clone(),
            actions_taken: c.actions_taken.clone(),
            opportunity: c.opportunity.as_ref().map(|(kind, amount)| match amount {
                Some(a) => format!("{kind} ({a})"),
                None => kind.clone(),
            }),
        });
        let event = match &at.event.event {
            TicketEvent::OwnerReassigned {
                previous_owner_email,
                reason,
                ..
            } => EventCtx {
                reason: Some(reason.clone()).filter(|r| !r.is_empty()),
                previous_owner: Some(previous_owner_email.clone()),
                text: None,
                sla: None,
            },
            TicketEvent::CustomerReplied { text } => EventCtx {
                text: Some(text.clone()),
                ..Default::default()
            },
            TicketEvent::Reopened { reason } => EventCtx {
                reason: Some(reason.clone()).filter(|r| !r.is_empty()),
                ..Default::default()
            },
            _ => EventCtx::default(),
        };
        let event = match &at.sla {
            Some(s) => EventCtx {
                sla: Some(sla_ctx(s, t)),
                ..EventCtx::default()
            },
            None => event,
        };
        let id = t.id.to_string();
        Ok(Context {
            kind: n.kind.clone(),
            recipient: n.recipient.clone(),
            ticket: TicketCtx {
                id: id.clone(),
                title: if t.title.is_empty() {
                    format!("Ticket for {}", account.name)
                } else {
                    t.title.clone()
                },
                status: t.status.to_string(),
                account_id: t.account_id.clone(),
                owner_email: t.owner_email.clone(),
                program_id: t.program_id.clone(),
                workflow_id,
                opened_at: rfc3339(t.opened_at),
                first_contact_due: rfc3339(t.opened_at.plus_secs(t.plan.sla.first_contact_secs)),
                close_due: rfc3339(t.opened_at.plus_secs(t.plan.sla.close_within_secs)),
                fallback_reason: t.plan.fallback_reason.clone(),
            },
            account,
            feedback,
            guide,
            closure,
            event,
            act: match &self.ticket_url {
                Some(u) => u.replace("{id}", &id),
                None => format!("closeloop tickets show {id}"),
            },
        })
    }

    async fn feedback_ctx(&self, feedback_id: &str) -> Result<Option<FeedbackCtx>, String> {
        let Some(id) = FeedbackId::parse(feedback_id) else {
            return Ok(None);
        };
        let Some(state) = self.feedback.load(id).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let f = state.feedback;
        let answers = closeloop_domain::routing::answers_text(&f.answers);
        let score = ["nps", "csat", "ces", "score"]
            .iter()
            .find_map(|k| answers.get(*k).cloned());
        let comment = answers.get("comment").cloned().or_else(|| {
            f.answers.iter().find_map(|(_, v)| match v {
                closeloop_domain::feedback::AnswerValue::Text(t) => Some(t.clone()),
                _ => None,
            })
        });
        let respondent = match (&f.respondent.name, &f.respondent.email) {
            (n, Some(e)) if !n.is_empty() => format!("{n} <{e}>"),
            (_, Some(e)) => e.to_string(),
            (n, None) if !n.is_empty() => n.clone(),
            _ => "a respondent".to_string(),
        };
        Ok(Some(FeedbackCtx {
            respondent,
            score,
            comment,
            answers,
        }))
    }
}

/// What the templates see of SLA event `s` on ticket `t`.
fn sla_ctx(s: &RecordedSla, t: &Ticket) -> crate::templates::SlaCtx {
    let rfc3339 =
        |ts: Timestamp| humantime::format_rfc3339_seconds(ts.to_system_time()).to_string();
    let days =
        |from: Timestamp| (s.occurred_at.as_micros() - from.as_micros()).max(0) / 86_400_000_000;
    let clock = |k: closeloop_domain::sla::ClockKind| match k {
        closeloop_domain::sla::ClockKind::FirstContact => "first contact".to_string(),
        closeloop_domain::sla::ClockKind::Closure => "closure".to_string(),
    };
    let base = crate::templates::SlaCtx {
        age_days: days(t.opened_at),
        ..Default::default()
    };
    match &s.event {
        SlaEvent::Warned {
            kind, pct, due_at, ..
        } => crate::templates::SlaCtx {
            clock: Some(clock(*kind)),
            pct: Some(*pct),
            due_at: Some(rfc3339(*due_at)),
            original_due: Some(rfc3339(*due_at)),
            ..base
        },
        SlaEvent::Breached {
            kind,
            original_due,
            due_at,
            ..
        } => crate::templates::SlaCtx {
            clock: Some(clock(*kind)),
            due_at: Some(rfc3339(*due_at)),
            original_due: Some(rfc3339(*original_due)),
            ..base
        },
        SlaEvent::Escalated {
            level,
            untouched_since,
            to,
            fallback_reason,
            ..
        } => crate::templates::SlaCtx {
            level: Some(*level),
            untouched_since: Some(rfc3339(*untouched_since)),
            untouched_days: Some(days(*untouched_since)),
            escalated_to: Some(to.clone()).filter(|t| !t.is_empty()),
            fallback_reason: Some(fallback_reason.clone()).filter(|r| !r.is_empty()),
            ..base
        },
        _ => base,
    }
}
