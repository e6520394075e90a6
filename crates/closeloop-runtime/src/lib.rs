//! How a service plugs into `closeloop serve`.
//!
//! Each service crate (ingestion, routing, ticketing, and the coming
//! escalation, notification, analytics) exposes one [`Role`]: its name, the
//! migrations of the tables it owns, and [`Role::start`], which sets it up
//! through a [`Setup`]: projectors, durable consumers, background tasks, gRPC
//! services, HTTP routes and metrics. `closeloop-server` composes the roles
//! it is asked to run; adding a role is its crate plus one line in the
//! server's role list (and its Kubernetes manifests).
//!
//! Components several roles need (the directory's views) are started through
//! the same [`Setup`]: a projector is started once per process whichever
//! role asks for it first.

pub mod problem;
pub use problem::{PROBLEM_BASE, problem};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use closeloop_eventstore::consumer::{ConsumerMetrics, ConsumerSpec, Handler};
use closeloop_eventstore::{EventStore, ExecutorMetrics, Prefix};
use closeloop_programs::Catalog;
use closeloop_readmodel::{Db, Pending, Progress, Projection, run_projector};
use sqlx::migrate::Migrator;
use tokio::sync::watch;

mod migrations;

pub use migrations::{MigrationSet, MigrationsError};

/// A role's set-up failed; `closeloop serve` exits with this message.
#[derive(Debug, thiserror::Error)]
#[error("{role}: {reason}")]
pub struct RoleError {
    pub role: &'static str,
    pub reason: String,
}

impl RoleError {
    pub fn new(role: &'static str, reason: impl std::fmt::Display) -> Self {
        RoleError {
            role,
            reason: reason.to_string(),
        }
    }
}

/// What a role's [`Role::start`] returns.
pub type Started<'a> = Pin<Box<dyn Future<Output = Result<(), RoleError>> + Send + 'a>>;

/// One service, as `closeloop serve --roles <name>` runs it.
pub trait Role: Send + Sync {
    /// Its name in `--roles`.
    fn name(&self) -> &'static str;

    /// The migrations of the tables it owns and of the components whose
    /// tables it reads (all recorded in the database's one migration history).
    fn migrations(&self) -> Vec<&'static Migrator>;

    /// Starts it: whatever it runs and serves, registered on `setup`.
    fn start<'a>(&'a self, setup: &'a mut Setup) -> Started<'a>;
}

/// Metrics a role exports beyond its executors, consumers and projectors:
/// registered into the scrape's `prometheus-client` registry.
pub trait MetricsSource: Send + Sync {
    fn register(&self, registry: &mut prometheus_client::registry::Registry);
}

/// What the process gives its roles, and collects from them.
pub struct Setup {
    pub prefix: Prefix,
    pub store: EventStore,
    pub db: Db,
    /// The programs file, when one is configured.
    pub catalog: Option<Arc<Catalog>>,
    /// The vendor webhooks mapping file, when one is configured.
    pub webhooks: Option<PathBuf>,
    shutdown: watch::Receiver<bool>,
    tasks: tokio::task::JoinSet<()>,
    projectors: BTreeMap<&'static str, (Progress, Pending)>,
    consumers: Vec<(String, Arc<ConsumerMetrics>)>,
    executors: Vec<(&'static str, Arc<ExecutorMetrics>)>,
    metrics: Vec<Arc<dyn MetricsSource>>,
    grpc: tonic::service::RoutesBuilder,
    serving: Vec<&'static str>,
    http: axum::Router,
    notes: Vec<(&'static str, String)>,
    pressure: Pressure,
}

/// How far behind the path users wait on is in this process: the backlog
/// of its consumers and projectors that are not background ones (see
/// [`Setup::project_background`]). Side-effect work (notifications)
/// yields while it is large, so that in one process on a small machine a
/// burst of feedback becomes tickets first and the notifications follow;
/// in a process of its own (one role per Deployment) there is nothing to
/// yield to. Cheap to clone.
#[derive(Clone, Default)]
pub struct Pressure(Arc<std::sync::RwLock<PressureSources>>);

#[derive(Default)]
struct PressureSources {
    consumers: Vec<Arc<ConsumerMetrics>>,
    projectors: Vec<Pending>,
}

impl Pressure {
    /// Messages the user path's consumers and projectors have still to take.
    pub fn backlog(&self) -> u64 {
        let s = self.0.read().expect("pressure");
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        s.consumers
            .iter()
            .map(|m| m.pending.load(relaxed) + m.in_flight.load(relaxed))
            .chain(s.projectors.iter().map(|p| p.load(relaxed)))
            .sum()
    }

    /// Waits while the backlog is above `threshold`, at most `max`: side
    /// effects are delayed by a burst, never stopped by one.
    pub async fn yield_while_busy(&self, threshold: u64, max: std::time::Duration) {
        let start = std::time::Instant::now();
        while self.backlog() > threshold && start.elapsed() < max {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// What [`Setup::finish`] hands back to the server.
pub struct Assembled {
    pub tasks: tokio::task::JoinSet<()>,
    /// Each projector's committed sequence and pending events.
    pub projectors: Vec<(&'static str, Progress, Pending)>,
    pub consumers: Vec<(String, Arc<ConsumerMetrics>)>,
    pub executors: Vec<(&'static str, Arc<ExecutorMetrics>)>,
    pub metrics: Vec<Arc<dyn MetricsSource>>,
    pub grpc: tonic::service::Routes,
    /// Names of the gRPC services to report `SERVING` on grpc.health.v1.
    pub serving: Vec<&'static str>,
    pub http: axum::Router,
    /// What roles report in `/readyz` beside readiness (e.g. `email`: `off`).
    pub notes: Vec<(&'static str, String)>,
}

impl Setup {
    pub fn new(
        prefix: Prefix,
        store: EventStore,
        db: Db,
        catalog: Option<Arc<Catalog>>,
        webhooks: Option<PathBuf>,
        shutdown: watch::Receiver<bool>,
    ) -> Setup {
        Setup {
            prefix,
            store,
            db,
            catalog,
            webhooks,
            shutdown,
            tasks: tokio::task::JoinSet::new(),
            projectors: BTreeMap::new(),
            consumers: Vec::new(),
            executors: Vec::new(),
            metrics: Vec::new(),
            grpc: tonic::service::RoutesBuilder::default(),
            serving: Vec::new(),
            http: axum::Router::new(),
            notes: Vec::new(),
            pressure: Pressure::default(),
        }
    }

    /// The user path's backlog in this process (what side effects yield
    /// to).
    pub fn pressure(&self) -> Pressure {
        self.pressure.clone()
    }

    /// Resolves when the process is shutting down.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Starts `projection`'s projector, once per process: a second request
    /// for the same projection returns the running one's progress.
    pub fn project<P: Projection>(&mut self, projection: P) -> Progress {
        self.start_projector(projection, false)
    }

    /// Like [`Setup::project`], for a view of side effects (notifications):
    /// its lag is not the user path's ([`Pressure`]).
    pub fn project_background<P: Projection>(&mut self, projection: P) -> Progress {
        self.start_projector(projection, true)
    }

    fn start_projector<P: Projection>(&mut self, projection: P, background: bool) -> Progress {
        let name = projection.name();
        if let Some((p, _)) = self.projectors.get(name) {
            return p.clone();
        }
        let (tx, rx) = watch::channel(0u64);
        let pending = Pending::default();
        if !background {
            self.pressure
                .0
                .write()
                .expect("pressure")
                .projectors
                .push(pending.clone());
        }
        self.projectors.insert(name, (rx.clone(), pending.clone()));
        let stopped = self.stopped();
        self.tasks.spawn(run_projector(
            self.db.clone(),
            self.store.clone(),
            projection,
            tx,
            pending,
            stopped,
        ));
        rx
    }

    /// Runs a durable consumer; its counters go to `/metrics`, and `/readyz`
    /// answers 503 while it is not consuming (the role's readiness).
    pub fn consume<H: Handler + 'static>(&mut self, spec: ConsumerSpec, handler: H) {
        self.consumers
            .push((spec.durable.clone(), spec.metrics.clone()));
        if !spec.background {
            self.pressure
                .0
                .write()
                .expect("pressure")
                .consumers
                .push(spec.metrics.clone());
        }
        let stopped = self.stopped();
        self.tasks
            .spawn(closeloop_eventstore::consumer::run_consumer(
                self.store.jetstream().clone(),
                self.prefix.clone(),
                spec,
                handler,
                stopped,
            ));
    }

    /// Runs a background task until the process stops (the task is given
    /// the shutdown signal through [`Setup::stopped`] if it needs it).
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Exports an aggregate executor's outcomes as `aggregate` in `/metrics`.
    pub fn executor(&mut self, aggregate: &'static str, metrics: Arc<ExecutorMetrics>) {
        self.executors.push((aggregate, metrics));
    }

    /// Reports `detail` as `name` in `/readyz` (a state worth knowing that
    /// does not make the process unready, e.g. `email`: `off: no --smtp-url`).
    pub fn readiness(&mut self, name: &'static str, detail: String) {
        self.notes.push((name, detail));
    }

    /// Exports more `/metrics` lines.
    pub fn metrics(&mut self, source: Arc<dyn MetricsSource>) {
        self.metrics.push(source);
    }

    /// Serves a gRPC service (and reports it `SERVING` on grpc.health.v1).
    pub fn grpc<S>(&mut self, service: S)
    where
        S: tonic::codegen::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Error = Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.serving.push(S::NAME);
        self.grpc.add_service(service);
    }

    /// Serves HTTP routes on the HTTP address.
    pub fn http(&mut self, routes: axum::Router) {
        let router = std::mem::take(&mut self.http);
        self.http = router.merge(routes);
    }

    /// Everything the roles registered.
    pub fn finish(self) -> Assembled {
        Assembled {
            tasks: self.tasks,
            projectors: self
                .projectors
                .into_iter()
                .map(|(name, (progress, pending))| (name, progress, pending))
                .collect(),
            consumers: self.consumers,
            executors: self.executors,
            metrics: self.metrics,
            grpc: self.grpc.routes(),
            serving: self.serving,
            http: self.http,
            notes: self.notes,
        }
    }
}
