//! The routing role: a durable consumer of feedback events
//! (`<prefix>.events.feedback.*`, consumer `routing`).
//!
//! For a first submission it reads the account and the program's teams from
//! the directory views, takes a durable rotation turn for every route owned
//! by a team, runs the pure [`crate::decide`] and records the outcome as
//! `RoutingDecided` (also when nothing matched). For a revision it records
//! `FeedbackAttached` for the tickets the decision opened. Both are
//! idempotent: a redelivered event finds its decision or revision already
//! recorded and writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use closeloop_contracts::feedback::{FeedbackContract, FeedbackEvent, FeedbackId, StoredRevision};
use closeloop_domain::TicketId;
use closeloop_domain::routing::{RoutedTicket, RoutingDecided, TriggerError};
use closeloop_eventstore::consumer::{ConsumerSpec, Decoded, EventHandler, Verdict};
use closeloop_eventstore::{Envelope, EventContext, ExecuteError, Executor, Prefix};
use closeloop_programs::canonical::Feedback;
use closeloop_programs::{Catalog, OwnerRule, Program};
use closeloop_readmodel::{Db, Progress};

use crate::{AccountInfo, Decision, DirectoryView, Resolution, Route};
use closeloop_contracts::rotation::{RotationContract, TakeTurn, TeamKey};
use closeloop_contracts::routing::{
    DECIDE_REQUEST, RoutingCommand, RoutingContract, answers_text, revision_request,
};
use closeloop_directory::lookup::DirectoryLookup;

/// Who routing events say acted.
pub const ACTOR: &str = "closeloop-routing";

/// Durable consumer name on the event stream.
pub const CONSUMER: &str = "routing";

/// What the routing consumer reads.
pub fn consumer_spec(prefix: &Prefix) -> ConsumerSpec {
    ConsumerSpec::new(
        prefix.events_stream(),
        CONSUMER,
        prefix.aggregate_filter(closeloop_contracts::feedback::AGGREGATE),
    )
}

/// A snapshot of what one routing decision needs, plus the rotation turns
/// the routing role has taken for its routes.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub account: Option<(String, AccountInfo)>,
    /// Team id → members in rotation order; absent: unknown team.
    pub teams: BTreeMap<String, Vec<String>>,
    /// (team, workflow id) → turn.
    pub turns: HashMap<(String, String), u64>,
}

impl DirectoryView for Snapshot {
    fn account(&self, id: &str) -> Option<AccountInfo> {
        self.account
            .as_ref()
            .filter(|(a, _)| a == id)
            .map(|(_, info)| info.clone())
    }

    fn team_members(&self, team: &str) -> Option<Vec<String>> {
        self.teams.get(team).cloned()
    }

    fn turn(&self, team: &str, workflow_id: &str) -> u64 {
        self.turns
            .get(&(team.to_string(), workflow_id.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// Directory snapshots kept between responses (per account and program).
const SNAPSHOT_CACHE: usize = 10_000;

type SnapshotCache = Arc<Mutex<HashMap<(String, String), (u64, Snapshot)>>>;

/// Routing counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct RoutingMetrics {
    /// Responses that triggered at least one workflow.
    pub routed: AtomicU64,
    /// Responses that triggered none (recorded as unmatched).
    pub unmatched: AtomicU64,
    /// Routes whose owner rule failed: the ticket went to the fallback owner, flagged.
    pub fallback_owner: AtomicU64,
}

impl closeloop_runtime::MetricsSource for RoutingMetrics {
    fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let decisions = Family::<Vec<(String, String)>, Counter>::default();
        for (outcome, c) in [("routed", &self.routed), ("unmatched", &self.unmatched)] {
            decisions
                .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
                .inc_by(c.load(Ordering::Relaxed));
        }
        registry.register(
            "closeloop_routing_decisions",
            "Responses routed, by outcome (unmatched: no workflow triggered).",
            decisions,
        );
        let fallback = Counter::<u64>::default();
        fallback.inc_by(self.fallback_owner.load(Ordering::Relaxed));
        registry.register(
            "closeloop_routing_fallback_owner",
            "Tickets routed to a program's fallback owner (flagged).",
            fallback,
        );
    }
}

/// The `routing` role: consumes feedback events and records routing
/// decisions; projects the directory views it reads.
pub struct Routing {
    catalog: Arc<Catalog>,
}

impl Routing {
    /// Routing needs the programs file (its workflows are what it routes to).
    pub fn new(catalog: Option<Arc<Catalog>>) -> Result<Routing, closeloop_runtime::RoleError> {
        let catalog = catalog.ok_or_else(|| {
            closeloop_runtime::RoleError::new(
                CONSUMER,
                "the routing role needs a programs file: pass --programs or set CLOSELOOP_PROGRAMS",
            )
        })?;
        Ok(Routing { catalog })
    }
}

impl closeloop_runtime::Role for Routing {
    fn name(&self) -> &'static str {
        "routing"
    }

    fn migrations(&self) -> Vec<&'static sqlx::migrate::Migrator> {
        vec![&closeloop_directory::MIGRATOR]
    }

    fn start<'a>(&'a self, s: &'a mut closeloop_runtime::Setup) -> closeloop_runtime::Started<'a> {
        Box::pin(async move {
            let directory = closeloop_directory::project(s);
            let router = Router::new(
                self.catalog.clone(),
                s.db.clone(),
                s.store.clone(),
                vec![directory.accounts, directory.teams],
            );
            s.metrics(router.metrics());
            s.consume(consumer_spec(&s.prefix), Decoded(router));
            Ok(())
        })
    }
}

/// The routing role's handler. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    metrics: Arc<RoutingMetrics>,
    catalog: Arc<Catalog>,
    /// The directory's published queries.
    directory_lookup: DirectoryLookup,
    routing: Executor<RoutingContract>,
    rotation: Executor<RotationContract>,
    /// Progress of the directory projectors (accounts, teams) in this
    /// process: a cached snapshot is reused only while none has moved.
    directory: Vec<Progress>,
    snapshots: SnapshotCache,
}

impl Router {
    /// `directory`: the progress of the account and team projectors that
    /// feed the views routing reads (empty: no caching).
    pub fn new(
        catalog: Arc<Catalog>,
        db: Db,
        store: closeloop_eventstore::EventStore,
        directory: Vec<Progress>,
    ) -> Router {
        Router {
            metrics: Arc::default(),
            catalog,
            directory_lookup: DirectoryLookup::new(db, store.clone()),
            routing: Executor::new(store.clone()),
            rotation: Executor::new(store),
            directory,
            snapshots: Arc::default(),
        }
    }

    pub fn metrics(&self) -> Arc<RoutingMetrics> {
        self.metrics.clone()
    }

    /// The directory generation: changes whenever a directory view changes.
    fn generation(&self) -> u64 {
        self.directory.iter().map(|p| *p.borrow()).sum()
    }

    /// The account's and program's directory snapshot, from the cache while
    /// the directory has not changed, else from the views; what a view does
    /// not have yet (an import that just finished) is read from the
    /// directory's events, which are the authority.
    pub async fn snapshot(&self, account: &str, program: &Program) -> Result<Snapshot, String> {
        let key = (account.to_string(), program.id.clone());
        let generation = self.generation();
        if !self.directory.is_empty()
            && let Some((g, snap)) = self.snapshots.lock().expect("cache").get(&key)
            && *g == generation
        {
            return Ok(snap.clone());
        }
        let wanted = teams(program);
        let mut snap = Snapshot::default();
        let unavailable = |e: closeloop_directory::lookup::LookupError| e.to_string();
        if let Some(a) = self
            .directory_lookup
            .account(account)
            .await
            .map_err(unavailable)?
        {
            let team = a
                .team
                .iter()
                .map(|(r, e)| (r.clone(), e.to_string()))
                .collect();
            snap.account = Some((
                account.to_string(),
                AccountInfo {
                    name: a.name,
                    region: a.region,
                    segment: a.segment,
                    team,
                },
            ));
        }
        for team in &wanted {
            if let Some(t) = self
                .directory_lookup
                .team(team)
                .await
                .map_err(unavailable)?
            {
                let members = t.members.iter().map(|m| m.to_string()).collect();
                snap.teams.insert(team.clone(), members);
            }
        }
        // An account that is nowhere is not cached: it may be imported next.
        if snap.account.is_some() && !self.directory.is_empty() {
            let mut cache = self.snapshots.lock().expect("cache");
            if cache.len() >= SNAPSHOT_CACHE {
                cache.clear();
            }
            cache.insert(key, (generation, snap.clone()));
        }
        Ok(snap)
    }

    async fn decide(
        &self,
        id: FeedbackId,
        f: &Feedback,
        feedback_sequence: u64,
        ctx: &EventContext,
    ) -> Verdict {
        // A redelivery of a decided response computes the same decision and
        // finds it recorded (the decide request id), writing nothing.
        let mut decided = RoutingDecided {
            feedback_id: id.to_string(),
            program_id: f.program.clone(),
            account_id: f.account_id.to_string(),
            config_version: self.catalog.version.clone(),
            feedback_sequence,
            answers: answers_text(&f.answers),
            ..Default::default()
        };
        match self.catalog.program(&f.program) {
            None => {
                decided.unmatched = true;
                decided.unmatched_reason = format!(
                    "program {:?} is not in programs version {}",
                    f.program, self.catalog.version
                );
            }
            Some(program) => {
                let mut snap = match self.snapshot(f.account_id.as_str(), program).await {
                    Ok(s) => s,
                    Err(e) => return Verdict::Retry(e),
                };
                let d = match self.take_turns(id, f, program, &mut snap, ctx).await {
                    Ok(d) => d,
                    Err(e) => return Verdict::Retry(e),
                };
                fill(&mut decided, id, &d, &snap, f);
            }
        }
        let unmatched = decided.unmatched;
        let fallbacks = decided
            .tickets
            .iter()
            .filter(|t| t.owner_fallback_reason.is_some())
            .count() as u64;
        match self
            .routing
            .execute(
                id,
                DECIDE_REQUEST,
                ctx,
                &RoutingCommand::Decide(Box::new(decided)),
            )
            .await
        {
            Ok(done) => {
                if !done.replayed {
                    let m = &self.metrics;
                    let c = if unmatched { &m.unmatched } else { &m.routed };
                    c.fetch_add(1, Ordering::Relaxed);
                    m.fallback_owner.fetch_add(fallbacks, Ordering::Relaxed);
                }
                Verdict::Done
            }
            Err(e) => verdict(e),
        }
    }

    /// Decides once to see which routes need a team's turn, takes those turns
    /// durably, and decides again with them.
    async fn take_turns(
        &self,
        id: FeedbackId,
        f: &Feedback,
        program: &Program,
        snap: &mut Snapshot,
        ctx: &EventContext,
    ) -> Result<Decision, String> {
        let version = &self.catalog.version;
        let first = crate::decide(f, program, version, snap);
        let needs_turns = first.routes.iter().any(|r| r.rotation.is_some());
        // A redelivered response that was decided before takes no new turns
        // (its decision stands, even if the programs file changed since).
        if needs_turns
            && self
                .routing
                .load(id)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
        {
            return Ok(first);
        }
        let mut took = false;
        for r in &first.routes {
            let Some(team) = &r.rotation else { continue };
            let route_key = format!("{id}/{}", r.workflow_id);
            let done = self
                .rotation
                .execute(
                    TeamKey::of(team),
                    &route_key,
                    ctx,
                    &TakeTurn {
                        team: team.clone(),
                        route_key: route_key.clone(),
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            let turn = done.state.taken.get(&route_key).copied().unwrap_or(0);
            snap.turns
                .insert((team.clone(), r.workflow_id.clone()), turn);
            took = true;
        }
        Ok(if took {
            crate::decide(f, program, version, snap)
        } else {
            first
        })
    }

    async fn attach(
        &self,
        id: FeedbackId,
        f: &Feedback,
        revision: u32,
        ctx: &EventContext,
    ) -> Verdict {
        let cmd = RoutingCommand::Attach {
            revision,
            answers: answers_text(&f.answers),
        };
        match self
            .routing
            .execute(id, &revision_request(revision), ctx, &cmd)
            .await
        {
            Ok(_) => Verdict::Done,
            Err(e) => verdict(e),
        }
    }
}

fn verdict(e: ExecuteError<closeloop_contracts::routing::RoutingRule>) -> Verdict {
    match e {
        // The decision is not recorded yet (it is being retried): keep order.
        ExecuteError::Rule(r) => Verdict::Retry(r.to_string()),
        ExecuteError::Corrupt { sequence, reason } => Verdict::DeadLetter(format!(
            "routing history is unreadable at sequence {sequence}: {reason}"
        )),
        e => Verdict::Retry(e.to_string()),
    }
}

/// Teams a program's workflows name, as owners or stakeholders.
fn teams(p: &Program) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in &p.workflows {
        for rule in std::iter::once(&w.owner).chain(&w.notify) {
            if let OwnerRule::Team(t) = rule
                && !out.contains(t)
            {
                out.push(t.clone());
            }
        }
    }
    out
}

fn resolution(r: &Route) -> String {
    match &r.owner_resolution {
        Resolution::Role(role) => format!("role:{role}"),
        Resolution::Team { team, index } => format!("team:{team}#{index}"),
        Resolution::Person => "person".into(),
        Resolution::Unresolved(_) => "fallback".into(),
    }
}

fn fill(out: &mut RoutingDecided, id: FeedbackId, d: &Decision, snap: &Snapshot, f: &Feedback) {
    let account_name = snap
        .account
        .as_ref()
        .map(|(_, a)| a.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| f.account_id.to_string());
    out.unmatched = d.unmatched();
    out.trigger_errors = d
        .trigger_errors
        .iter()
        .map(|(w, e)| TriggerError {
            workflow_id: w.clone(),
            error: e.clone(),
        })
        .collect();
    out.tickets = d
        .routes
        .iter()
        .map(|r| RoutedTicket {
            workflow_id: r.workflow_id.clone(),
            workflow_name: r.workflow_name.clone(),
            ticket_id: TicketId::for_feedback(&id.to_string(), &r.workflow_id).to_string(),
            title: closeloop_domain::Text::shortened(
                &format!("{}: {account_name}", r.workflow_name),
                closeloop_domain::values::TITLE_MAX,
            ),
            owner_email: r.owner.clone(),
            owner_resolution: resolution(r),
            owner_fallback_reason: r.fallback_reason.clone(),
            stakeholder_emails: r.stakeholders.clone(),
            unresolved_stakeholders: r.unresolved_stakeholders.clone(),
            guide: Some(r.guide.clone()),
            require_opportunity: r.closure.require_opportunity,
            sla: Some(r.sla.policy()),
        })
        .collect();
}

impl EventHandler for Router {
    type Contract = FeedbackContract;

    async fn handle(&self, stored: StoredRevision, envelope: Option<&Envelope>) -> Verdict {
        let ctx = EventContext::caused_by(envelope, ACTOR);
        let sequence = stored.sequence;
        match &stored.event.value {
            FeedbackEvent::Received(f) => {
                let id = FeedbackId::of(&f.source, &f.response_id);
                self.decide(id, f, sequence, &ctx).await
            }
            FeedbackEvent::Updated { feedback, revision } => {
                let id = FeedbackId::of(&feedback.source, &feedback.response_id);
                self.attach(id, feedback, *revision, &ctx).await
            }
            // A late older revision: the tickets keep the newer one.
            FeedbackEvent::Superseded { .. } => Verdict::Done,
        }
    }
}
