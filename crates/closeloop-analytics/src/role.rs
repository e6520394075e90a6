//! The `analytics` role: the fact projections of the active (and any
//! building) generation, the switch of a rebuild, and `AnalyticsService`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use closeloop_domain::Timestamp;
use closeloop_eventstore::{Clock, EventStore};
use closeloop_proto::v1::analytics_service_server::AnalyticsServiceServer;
use closeloop_readmodel::{Db, Fanout, Pending, Progress, Projection};
use closeloop_runtime::{MetricsSource, Role, Setup, Started};
use sqlx::migrate::Migrator;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use crate::generations;
use crate::grpc::AnalyticsGrpc;
use crate::tables::Tables;
use crate::view::{AccountFacts, ResponseFacts, RoutingFacts, SlaFacts, TicketFacts};

/// How often the supervisor looks at the generations without being woken.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The role.
pub struct Analytics;

impl Role for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }

    /// Its own tables, and the directory's it reads (teams).
    fn migrations(&self) -> Vec<&'static Migrator> {
        vec![&crate::MIGRATOR, &closeloop_directory::MIGRATOR]
    }

    fn start<'a>(&'a self, s: &'a mut Setup) -> Started<'a> {
        Box::pin(async move {
            // Teams come from the directory's views.
            closeloop_directory::project_background(s);
            let wake = Arc::new(Notify::new());
            let running = Arc::new(Running::default());
            s.metrics(running.clone());
            s.spawn(
                supervise(
                    s.db.clone(),
                    s.store.clone(),
                    s.store.clock().clone(),
                    running,
                    wake.clone(),
                    s.stopped(),
                )
                .instrument(tracing::info_span!("analytics_generations")),
            );
            let cache = Arc::new(crate::cache::Cache::default());
            s.spawn(
                crate::cache::keep_warm(cache.clone(), s.db.clone(), s.stopped())
                    .instrument(tracing::info_span!("analytics_cache")),
            );
            s.grpc(AnalyticsServiceServer::new(AnalyticsGrpc {
                db: s.db.clone(),
                store: s.store.clone(),
                catalog: s.catalog.clone(),
                clock: s.store.clock().clone(),
                wake,
                cache,
            }));
            Ok(())
        })
    }
}

/// The projectors this process runs, per generation: their names,
/// progress and lag (for `/metrics`).
#[derive(Default)]
pub struct Running {
    projectors: Mutex<Vec<(i64, &'static str, Progress, Pending)>>,
}

impl MetricsSource for Running {
    fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        let position = Family::<Vec<(String, String)>, Gauge>::default();
        let pending = Family::<Vec<(String, String)>, Gauge>::default();
        for (g, name, progress, behind) in self.projectors.lock().expect("running").iter() {
            let l = vec![
                ("projector".to_string(), name.to_string()),
                ("generation".to_string(), g.to_string()),
            ];
            position.get_or_create(&l).set(*progress.borrow() as i64);
            pending
                .get_or_create(&l)
                .set(behind.load(Ordering::Relaxed) as i64);
        }
        registry.register(
            "closeloop_analytics_projector_sequence",
            "Last event-stream sequence each analytics projector committed, by generation.",
            position,
        );
        registry.register(
            "closeloop_analytics_projector_pending",
            "Events each analytics projector may still have to apply, by generation: the stream's events its generation's reader has not reached, once it has applied all it was handed (0 when caught up).",
            pending,
        );
    }
}

/// One generation's projectors: stopped by sending `true`.
struct Set {
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

fn member<P: Projection>(
    set: &mut Set,
    fanout: &mut Fanout,
    projection: P,
    stopped: &(impl Future<Output = ()> + Clone + Send + 'static),
    out: &mut Vec<(&'static str, Progress, Pending)>,
) {
    let (tx, rx) = watch::channel(0u64);
    let pending = Pending::default();
    let name = projection.name();
    out.push((name, rx, pending.clone()));
    let task = fanout.member(projection, tx, pending, stopping(set, stopped));
    set.tasks
        .spawn(task.instrument(tracing::info_span!("projector", name)));
}

/// Resolves when the process stops or the set is stopped.
fn stopping(
    set: &Set,
    stopped: &(impl Future<Output = ()> + Clone + Send + 'static),
) -> impl Future<Output = ()> + Send + 'static {
    let mut stop = set.stop.subscribe();
    let process = stopped.clone();
    async move {
        tokio::select! {
            _ = process => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

/// Starts generation `t`'s projections: one reader of the stream (the
/// server walks it once) feeding the five, each with its own checkpoint.
fn start_set(
    db: &Db,
    store: &EventStore,
    t: &Tables,
    stopped: &(impl Future<Output = ()> + Clone + Send + 'static),
    out: &mut Vec<(&'static str, Progress, Pending)>,
) -> Set {
    let (stop, _) = watch::channel(false);
    let mut set = Set {
        stop,
        tasks: tokio::task::JoinSet::new(),
    };
    let mut fanout = Fanout::new(db.clone(), store.clone(), store.prefix().events_filter());
    member(&mut set, &mut fanout, TicketFacts::new(t), stopped, out);
    member(&mut set, &mut fanout, SlaFacts::new(t), stopped, out);
    member(&mut set, &mut fanout, ResponseFacts::new(t), stopped, out);
    member(&mut set, &mut fanout, AccountFacts::new(t), stopped, out);
    member(&mut set, &mut fanout, RoutingFacts::new(t), stopped, out);
    let shutdown = stopping(&set, stopped);
    set.tasks
        .spawn(fanout.reader(shutdown).instrument(tracing::info_span!(
            "analytics_reader",
            generation = t.generation
        )));
    set
}

/// Runs the projections of the active and building generations, stops
/// those of retired ones, and switches a building generation in when it
/// has caught up. Looks every second, and at once when woken (a rebuild
/// was asked for here).
async fn supervise(
    db: Db,
    store: EventStore,
    clock: Clock,
    running: Arc<Running>,
    wake: Arc<Notify>,
    stopped: impl Future<Output = ()> + Send + 'static,
) {
    let stopped = futures::FutureExt::shared(Box::pin(stopped));
    let mut sets: BTreeMap<i64, Set> = BTreeMap::new();
    loop {
        match generations::list(&db).await {
            Ok(all) => {
                let live: Vec<&generations::Generation> = all
                    .iter()
                    .filter(|g| g.state == "active" || g.state == "building")
                    .collect();
                for g in &live {
                    if let std::collections::btree_map::Entry::Vacant(slot) =
                        sets.entry(g.generation)
                    {
                        let mut out = Vec::new();
                        let set =
                            start_set(&db, &store, &Tables::of(g.generation), &stopped, &mut out);
                        running
                            .projectors
                            .lock()
                            .expect("running")
                            .extend(out.into_iter().map(|(n, p, l)| (g.generation, n, p, l)));
                        slot.insert(set);
                        tracing::info!(generation = g.generation, state = %g.state, "analytics projections started");
                    }
                }
                let gone: Vec<i64> = sets
                    .keys()
                    .copied()
                    .filter(|k| !live.iter().any(|g| g.generation == *k))
                    .collect();
                for g in gone {
                    if let Some(mut set) = sets.remove(&g) {
                        let _ = set.stop.send(true);
                        while set.tasks.join_next().await.is_some() {}
                        running
                            .projectors
                            .lock()
                            .expect("running")
                            .retain(|(gen_, ..)| *gen_ != g);
                        tracing::info!(
                            generation = g,
                            "analytics projections of a retired generation stopped"
                        );
                    }
                }
                for g in live.iter().filter(|g| g.state == "building") {
                    let now = Timestamp::from_system_time(clock.now()).as_micros();
                    match generations::caught_up(&db, g.generation).await {
                        Ok(true) => {
                            if let Err(e) = generations::switch(&db, g.generation, now).await {
                                tracing::warn!(error = %e, "analytics: switching generations failed; retrying");
                            }
                            // Look again at once: stop the retired set.
                            wake.notify_one();
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "analytics: reading positions failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "analytics: reading generations failed; retrying"),
        }
        tokio::select! {
            _ = stopped.clone() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}
