//! Runs a chosen set of closeloop roles in one process.
//!
//! [`run`] takes bound listeners and a shutdown future (mini-redis style), so
//! the same entry point serves `closeloop serve`, Kubernetes Deployments of
//! one role each, and in-process integration tests on random ports.

mod clock;
mod http;
mod metrics;
mod roles;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use closeloop_eventstore::{EventStore, Prefix, StoreConfig};
use closeloop_readmodel::Db;
use closeloop_runtime::{MigrationSet, Role as RoleModule, Setup};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use roles::{Role, Roles, RolesError};

/// Longest the exit waits to flush the NATS connection.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything `closeloop serve` is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub database_url: String,
    pub prefix: Prefix,
    pub roles: Roles,
    /// JetStream replicas of the event stream (1 single server, 3 in a cluster).
    pub stream_replicas: usize,
    /// The programs file (listening programs and workflows); feedback intake
    /// answers 503 without one.
    pub programs: Option<std::path::PathBuf>,
    /// The vendor webhooks mapping file (Delighted, Formbricks); the webhook
    /// endpoints answer 404 without one.
    pub webhooks: Option<std::path::PathBuf>,
    /// The notification role's e-mail and templates.
    pub notification: closeloop_notification::role::Config,
    /// The time the install runs on.
    pub clock: ClockConfig,
}

/// Which clock `closeloop serve` runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClockConfig {
    /// The wall clock (production).
    #[default]
    Wall,
    /// A simulated clock shared by the install's processes, moved only
    /// through `ClockService` (tests, demos, what-if runs); it starts at
    /// `start` (default: now) unless another process started it already.
    Simulated {
        start: Option<std::time::SystemTime>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Role(#[from] closeloop_runtime::RoleError),
    #[error(transparent)]
    Roles(#[from] RolesError),
    #[error(transparent)]
    Migrations(#[from] closeloop_runtime::MigrationsError),
    #[error("programs file {path} is invalid:\n{errors}")]
    Programs { path: String, errors: String },
    #[error("cannot start the simulated clock: {0}")]
    Clock(#[from] closeloop_eventstore::ClockError),
    #[error("cannot connect to NATS at {url}: {reason}")]
    Nats { url: String, reason: String },
    #[error(transparent)]
    Store(#[from] closeloop_eventstore::StoreError),
    #[error(transparent)]
    Db(#[from] closeloop_readmodel::DbError),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Listeners the server accepts on; bind port 0 in tests.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    pub async fn bind(grpc: SocketAddr, http: SocketAddr) -> std::io::Result<Listeners> {
        Ok(Listeners {
            grpc: TcpListener::bind(grpc).await?,
            http: TcpListener::bind(http).await?,
        })
    }
}

/// Connects to NATS, provisions the event stream, opens the read-model
/// database, starts the configured roles and serves gRPC and HTTP until
/// `shutdown` resolves; then drains in-flight requests and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Its state is large (every role's set-up): on the heap, not on the
    // caller's stack or in the caller's future.
    Box::pin(serve(config, listeners, shutdown)).await
}

async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Configuration errors first: they need no broker to be reported.
    let catalog = match &config.programs {
        None => None,
        Some(path) => Some(std::sync::Arc::new(
            closeloop_programs::Catalog::load(path).map_err(|errs| ServerError::Programs {
                path: path.display().to_string(),
                errors: errs
                    .iter()
                    .map(|e| format!("  {e}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            })?,
        )),
    };
    if let Some(c) = &catalog {
        tracing::info!(
            programs = c.programs.len(),
            workflows = c.workflow_count(),
            version = %c.version,
            "programs loaded"
        );
    }
    let modules = config
        .roles
        .iter()
        .map(|r| module(r, &config, &catalog))
        .collect::<Result<Vec<_>, _>>()?;

    let nats = async_nats::ConnectOptions::new()
        .name("closeloop")
        .connection_timeout(Duration::from_secs(5))
        // Reconnect quickly after a broker restart: 100 ms doubling to 2 s.
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5)))
                .min(Duration::from_secs(2))
        })
        .connect(config.nats_url.as_str())
        .await
        .map_err(|e| ServerError::Nats {
            url: config.nats_url.clone(),
            reason: e.to_string(),
        })?;
    let store = EventStore::open(
        nats.clone(),
        StoreConfig {
            prefix: config.prefix.clone(),
            replicas: config.stream_replicas,
            ..StoreConfig::default()
        },
    )
    .await?;
    let clock = match &config.clock {
        ClockConfig::Wall => closeloop_eventstore::Clock::Wall,
        ClockConfig::Simulated { start } => {
            let c =
                closeloop_eventstore::Clock::simulated(store.jetstream(), &config.prefix, *start)
                    .await?;
            tracing::warn!(
                now = %humantime::format_rfc3339_micros(c.now()),
                "SIMULATED CLOCK: time stands still until moved with `closeloop admin clock`; \
                 never run production this way"
            );
            c
        }
    };
    let store = store.with_clock(clock.clone());
    let db = Db::connect(&config.database_url).await?;
    let migrations = MigrationSet::of(
        std::iter::once(&closeloop_readmodel::MIGRATOR)
            .chain(modules.iter().flat_map(|m| m.migrations())),
    )?;
    db.migrate(&migrations.migrator().await?).await?;
    tracing::info!(
        roles = %config.roles,
        prefix = %config.prefix,
        stream = %config.prefix.events_stream(),
        database = ?db.backend(),
        "closeloop starting"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut setup = Setup::new(
        config.prefix.clone(),
        store,
        db.clone(),
        catalog,
        config.webhooks.clone(),
        stop_rx,
    );
    for m in &modules {
        m.start(&mut setup).await?;
    }
    let stopped = || setup.stopped();
    let (grpc_stop, http_stop) = (stopped(), stopped());
    let parts = setup.finish();

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in &parts.serving {
        health
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // Reflection in both protocol versions: grpcurl and IDE plugins of
    // before 2023 only speak v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(closeloop_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let requests = metrics::Requests::default();
    let grpc = tonic::transport::Server::builder()
        .layer(metrics::GrpcMetrics(requests.clone()))
        // One span per call, a child of the caller's traceparent.
        .trace_fn(|req| {
            let span = tracing::info_span!("grpc", path = %req.uri().path());
            closeloop_eventstore::trace::follow(
                &span,
                req.headers()
                    .get(closeloop_eventstore::headers::TRACEPARENT)
                    .and_then(|v| v.to_str().ok()),
            );
            span
        })
        .add_routes(parts.grpc)
        .add_service(
            closeloop_proto::v1::clock_service_server::ClockServiceServer::new(clock::ClockGrpc(
                clock.clone(),
            )),
        )
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);

    let http_state = http::State {
        nats: nats.clone(),
        db,
        roles: config.roles.clone(),
        executors: parts.executors,
        projectors: parts.projectors,
        consumers: parts.consumers,
        metrics: parts.metrics,
        requests: requests.clone(),
        notes: {
            let mut notes = parts.notes;
            if !notes.iter().any(|(n, _)| *n == "clock") {
                notes.push(("clock", clock.kind().to_string()));
            }
            notes
        },
    };
    let http_listener = listeners.http;
    let role_routes = parts.http;
    let http_task = tokio::spawn(async move {
        let router = http::with_fallbacks(http::router(http_state).merge(role_routes))
            .layer(axum::middleware::from_fn_with_state(requests, http::traced));
        use axum::serve::ListenerExt;
        let http_listener = http_listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on an HTTP connection");
            }
        });
        axum::serve(http_listener, router)
            .with_graceful_shutdown(http_stop)
            .await
    });

    // TCP_NODELAY on every accepted connection: without it a response
    // written in two segments (e.g. a WINDOW_UPDATE, then the answer) waits
    // for the client's delayed ACK, about 40 ms (Nagle's algorithm).
    let grpc_incoming =
        tonic::transport::server::TcpIncoming::from(listeners.grpc).with_nodelay(Some(true));
    let grpc_task = tokio::spawn(grpc.serve_with_incoming_shutdown(grpc_incoming, grpc_stop));

    shutdown.await;
    tracing::info!("shutting down: draining requests");
    let _ = stop_tx.send(true);
    let grpc_result = grpc_task.await.expect("grpc task panicked");
    let http_result = http_task.await.expect("http task panicked");
    let mut tasks = parts.tasks;
    while tasks.join_next().await.is_some() {}
    // Flush anything buffered to the broker before exiting, but not
    // forever: with the broker unreachable the flush waits for a reconnect
    // that may never come, and the process would hang until killed. What
    // could be left unflushed is never something a client was told was
    // accepted (events are acknowledged by JetStream before a request is
    // answered).
    match tokio::time::timeout(FLUSH_TIMEOUT, nats.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "NATS flush failed at exit"),
        Err(_) => tracing::warn!(
            timeout_secs = FLUSH_TIMEOUT.as_secs(),
            "NATS unreachable: exiting without flushing the connection"
        ),
    }
    grpc_result?;
    http_result.map_err(ServerError::Http)?;
    tracing::info!("closeloop stopped");
    Ok(())
}

/// The role list: each implemented role's module, built from the process
/// configuration (a new role is one line here, its crate and its manifests).
fn module(
    role: Role,
    config: &Config,
    catalog: &Option<std::sync::Arc<closeloop_programs::Catalog>>,
) -> Result<Box<dyn RoleModule>, ServerError> {
    Ok(match role {
        Role::Ingestion => Box::new(closeloop_ingestion::role::Ingestion::new(
            config.webhooks.as_deref(),
        )?),
        Role::Routing => Box::new(closeloop_routing::role::Routing::new(catalog.clone())?),
        Role::Ticketing => Box::new(closeloop_ticketing::role::Ticketing),
        Role::Notification => Box::new(closeloop_notification::role::Notification::new(
            &config.notification,
        )?),
        Role::Escalation => Box::new(closeloop_escalation::role::Escalation),
        Role::Analytics => Box::new(closeloop_analytics::role::Analytics),
    })
}

/// Parses a `--prefix` value.
pub fn prefix(s: &str) -> Result<Prefix, closeloop_eventstore::PrefixError> {
    Prefix::parse(s)
}
