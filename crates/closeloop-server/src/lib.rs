//! Runs a chosen set of closeloop roles in one process.
//!
//! [`run`] takes bound listeners and a shutdown future (mini-redis style), so
//! the same entry point serves `closeloop serve`, Kubernetes Deployments of
//! one role each, and in-process integration tests on random ports.

mod http;
mod roles;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use closeloop_directory::grpc::{DirectoryGrpc, DirectoryProgress};
use closeloop_directory::projection::{AccountView, PersonView, TeamView};
use closeloop_eventstore::consumer::ConsumerMetrics;
use closeloop_eventstore::{EventStore, Prefix, StoreConfig};
use closeloop_ingestion::grpc::FeedbackGrpc;
use closeloop_proto::v1::directory_service_server::DirectoryServiceServer;
use closeloop_proto::v1::feedback_service_server::FeedbackServiceServer;
use closeloop_proto::v1::ticket_service_server::TicketServiceServer;
use closeloop_readmodel::{Db, Progress, Projection, run_projector};
use closeloop_ticketing::{commands::TicketCommands, grpc::TicketGrpc, projection};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use roles::{Role, Roles, RolesError};

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
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Intake(String),
    #[error("the routing role needs a programs file: pass --programs or set CLOSELOOP_PROGRAMS")]
    RoutingWithoutPrograms,
    #[error("programs file {path} is invalid:\n{errors}")]
    Programs { path: String, errors: String },
    #[error("webhooks file {path} is invalid:\n{errors}")]
    Webhooks { path: String, errors: String },
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
    let webhooks = match &config.webhooks {
        None => None,
        Some(path) => Some(std::sync::Arc::new(
            closeloop_ingestion::webhooks::Webhooks::load(path).map_err(|errs| {
                ServerError::Webhooks {
                    path: path.display().to_string(),
                    errors: errs
                        .iter()
                        .map(|e| format!("  {e}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                }
            })?,
        )),
    };
    if config.roles.contains(Role::Routing) && catalog.is_none() {
        return Err(ServerError::RoutingWithoutPrograms);
    }
    if let Some(c) = &catalog {
        tracing::info!(
            programs = c.programs.len(),
            workflows = c.workflow_count(),
            version = %c.version,
            "programs loaded"
        );
    }
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
    let db = Db::connect(&config.database_url).await?;
    tracing::info!(
        roles = %config.roles,
        prefix = %config.prefix,
        stream = %config.prefix.events_stream(),
        database = ?db.backend(),
        "closeloop starting"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    // Reflection in both protocol versions: grpcurl and IDE plugins of
    // before 2023 only speak v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(closeloop_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut grpc = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);

    let mut tasks = tokio::task::JoinSet::new();
    let mut projector_progress = Vec::new();
    let mut intake = None;
    let mut ticket_commands = None;
    let mut consumers = Vec::new();
    let mut routing_metrics = None;
    if config.roles.contains(Role::Ticketing) {
        let progress_rx = spawn_projector(
            &mut tasks,
            &mut projector_progress,
            &db,
            &store,
            projection::TicketStateProjection,
            stopped(),
        );
        let commands = TicketCommands::new(store.clone());
        ticket_commands = Some(commands.metrics());
        spawn_consumer(
            &mut tasks,
            &mut consumers,
            &store,
            closeloop_ticketing::routes::consumer_spec(&config.prefix),
            closeloop_ticketing::routes::RouteOpener::new(commands.clone()),
            stopped(),
        );
        let references = closeloop_ticketing::grpc::References {
            directory: closeloop_directory::lookup::DirectoryLookup::new(db.clone(), store.clone()),
            catalog: catalog.clone(),
        };
        let svc = TicketGrpc::new(commands, db.clone(), progress_rx, references);
        health
            .set_serving::<TicketServiceServer<TicketGrpc>>()
            .await;
        grpc = grpc.add_service(TicketServiceServer::new(svc));
    }

    // Ingestion serves the directory and routing reads it: either projects it.
    let directory_progress =
        if config.roles.contains(Role::Ingestion) || config.roles.contains(Role::Routing) {
            let (tasks_, progress_) = (&mut tasks, &mut projector_progress);
            Some(DirectoryProgress {
                accounts: spawn_projector(tasks_, progress_, &db, &store, AccountView, stopped()),
                people: spawn_projector(tasks_, progress_, &db, &store, PersonView, stopped()),
                teams: spawn_projector(tasks_, progress_, &db, &store, TeamView, stopped()),
            })
        } else {
            None
        };

    if let (true, Some(catalog)) = (config.roles.contains(Role::Routing), &catalog) {
        let router = closeloop_routing::role::Router::new(
            catalog.clone(),
            db.clone(),
            store.clone(),
            directory_progress
                .as_ref()
                .map(|p| vec![p.accounts.clone(), p.teams.clone()])
                .unwrap_or_default(),
        );
        routing_metrics = Some(router.metrics());
        spawn_consumer(
            &mut tasks,
            &mut consumers,
            &store,
            closeloop_routing::role::consumer_spec(&config.prefix),
            router,
            stopped(),
        );
    }

    if let (true, Some(progress)) = (config.roles.contains(Role::Ingestion), directory_progress) {
        let directory_writer = closeloop_directory::writer::DirectoryWriter::new(store.clone());
        let svc = DirectoryGrpc::new(directory_writer.clone(), db.clone(), progress);
        health
            .set_serving::<DirectoryServiceServer<DirectoryGrpc>>()
            .await;
        grpc = grpc.add_service(DirectoryServiceServer::new(svc));
        let feedback_intake =
            closeloop_ingestion::intake::Intake::new(catalog.clone(), db.clone(), store.clone());
        health
            .set_serving::<FeedbackServiceServer<FeedbackGrpc>>()
            .await;
        grpc = grpc.add_service(FeedbackServiceServer::new(FeedbackGrpc::new(
            feedback_intake.clone(),
        )));
        closeloop_ingestion::nats::ensure_streams(store.jetstream(), &config.prefix)
            .await
            .map_err(|e| ServerError::Intake(e.to_string()))?;
        spawn_consumer(
            &mut tasks,
            &mut consumers,
            &store,
            closeloop_ingestion::nats::intake_spec(
                &config.prefix,
                "directory-intake",
                closeloop_ingestion::directory_intake::directory_subject(&config.prefix),
            ),
            closeloop_ingestion::directory_intake::DirectoryIntake {
                writer: directory_writer,
            },
            stopped(),
        );
        if catalog.is_some() {
            spawn_consumer(
                &mut tasks,
                &mut consumers,
                &store,
                closeloop_ingestion::nats::feedback_intake_spec(&config.prefix),
                feedback_intake.clone(),
                stopped(),
            );
        } else {
            tracing::warn!(
                "no --programs file: feedback intake answers 503 and {} is not consumed",
                closeloop_ingestion::nats::feedback_subject(&config.prefix)
            );
        }
        intake = Some(feedback_intake);
    }

    let http_state = http::State {
        nats: nats.clone(),
        db: db.clone(),
        roles: config.roles.clone(),
        ticket_commands,
        projectors: projector_progress,
        consumers,
        routing: routing_metrics,
    };
    let http_listener = listeners.http;
    let http_stop = stopped();
    let http_task = tokio::spawn(async move {
        let mut router = http::router(http_state);
        if let Some(intake) = intake {
            router = router.merge(closeloop_ingestion::http::router(intake, webhooks));
        }
        use axum::serve::ListenerExt;
        let http_listener = http_listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on an HTTP connection");
            }
        });
        axum::serve(http_listener, http::with_fallbacks(router))
            .with_graceful_shutdown(http_stop)
            .await
    });

    // TCP_NODELAY on every accepted connection: without it a response
    // written in two segments (e.g. a WINDOW_UPDATE, then the answer) waits
    // for the client's delayed ACK, about 40 ms (Nagle's algorithm).
    let grpc_incoming =
        tonic::transport::server::TcpIncoming::from(listeners.grpc).with_nodelay(Some(true));
    let grpc_task = tokio::spawn(grpc.serve_with_incoming_shutdown(grpc_incoming, stopped()));

    shutdown.await;
    tracing::info!("shutting down: draining requests");
    let _ = stop_tx.send(true);
    let grpc_result = grpc_task.await.expect("grpc task panicked");
    let http_result = http_task.await.expect("http task panicked");
    while tasks.join_next().await.is_some() {}
    // Flush anything buffered to the broker before exiting.
    let _ = nats.flush().await;
    grpc_result?;
    http_result.map_err(ServerError::Http)?;
    tracing::info!("closeloop stopped");
    Ok(())
}

/// Starts `projection`'s projector and registers its progress for `/metrics`;
/// returns the progress for read-your-writes queries.
fn spawn_projector<P: Projection>(
    tasks: &mut tokio::task::JoinSet<()>,
    progress: &mut Vec<(&'static str, Progress)>,
    db: &Db,
    store: &EventStore,
    projection: P,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Progress {
    let (tx, rx) = watch::channel(0u64);
    progress.push((projection.name(), rx.clone()));
    tasks.spawn(run_projector(
        db.clone(),
        store.clone(),
        projection,
        tx,
        stopped,
    ));
    rx
}

/// Starts a durable consumer and registers its counters for `/metrics`.
fn spawn_consumer<H: closeloop_eventstore::consumer::Handler + 'static>(
    tasks: &mut tokio::task::JoinSet<()>,
    consumers: &mut Vec<(String, std::sync::Arc<ConsumerMetrics>)>,
    store: &EventStore,
    spec: closeloop_eventstore::consumer::ConsumerSpec,
    handler: H,
    stopped: impl Future<Output = ()> + Send + 'static,
) {
    consumers.push((spec.durable.clone(), spec.metrics.clone()));
    tasks.spawn(closeloop_eventstore::consumer::run_consumer(
        store.jetstream().clone(),
        store.prefix().clone(),
        spec,
        handler,
        stopped,
    ));
}

/// Parses a `--prefix` value.
pub fn prefix(s: &str) -> Result<Prefix, closeloop_eventstore::PrefixError> {
    Prefix::parse(s)
}
