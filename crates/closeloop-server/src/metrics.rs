//! `/metrics`: Prometheus text through `prometheus-client`'s registry.
//!
//! Request counts and latency histograms (gRPC calls and HTTP requests) are
//! recorded as they happen; the counters the roles keep (executors,
//! consumers, projectors, routing) are read into a registry at each scrape.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A metric's labels.
pub type Labels = Vec<(String, String)>;

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Requests served, kept for the life of the process.
#[derive(Clone)]
pub struct Requests {
    count: Family<Labels, Counter>,
    seconds: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            count: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl Requests {
    /// One request of `transport` (`grpc`, `http`) to `route`, answered `code`.
    pub fn record(&self, transport: &str, route: &str, code: &str, started: Instant) {
        self.count
            .get_or_create(&labels([
                ("transport", transport),
                ("route", route),
                ("code", code),
            ]))
            .inc();
        self.seconds
            .get_or_create(&labels([("transport", transport), ("route", route)]))
            .observe(started.elapsed().as_secs_f64());
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "closeloop_requests",
            "gRPC calls and HTTP requests served, by transport, route and code (gRPC status or HTTP status).",
            self.count.clone(),
        );
        r.register(
            "closeloop_request_duration_seconds",
            "Time to answer gRPC calls and HTTP requests, by transport and route.",
            self.seconds.clone(),
        );
    }
}

/// A tower layer recording every gRPC call in [`Requests`].
#[derive(Clone)]
pub struct GrpcMetrics(pub Requests);

impl<S> tower::Layer<S> for GrpcMetrics {
    type Service = GrpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            requests: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    requests: Requests,
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = req.uri().path().to_string();
        let requests = self.requests.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await;
            if let Ok(r) = &resp {
                // An error is a trailers-only answer: its status is in the
                // headers. Otherwise the call succeeded (status 0, OK).
                let code = r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0");
                let route = if code == "12" { "unimplemented" } else { &path };
                requests.record("grpc", route, code, started);
            }
            resp
        })
    }
}

/// What the server knows at a scrape: everything registered by the roles.
pub fn encode(s: &crate::http::State) -> String {
    let mut r = Registry::default();
    s.requests.register(&mut r);

    let commands = Family::<Labels, Counter>::default();
    let conflicts = Family::<Labels, Counter>::default();
    for (aggregate, m) in &s.executors {
        for (outcome, c) in [
            ("written", &m.written),
            ("replayed", &m.replayed),
            ("aborted", &m.aborted),
        ] {
            commands
                .get_or_create(&labels([("aggregate", aggregate), ("outcome", outcome)]))
                .inc_by(c.load(Ordering::Relaxed));
        }
        conflicts
            .get_or_create(&labels([("aggregate", aggregate)]))
            .inc_by(m.conflicts.load(Ordering::Relaxed));
    }
    r.register(
        "closeloop_commands",
        "Commands on each aggregate type, by outcome.",
        commands,
    );
    r.register(
        "closeloop_command_conflicts",
        "Appends that lost an optimistic-concurrency race and were decided again, by aggregate type.",
        conflicts,
    );

    let position = Family::<Labels, Gauge>::default();
    let pending = Family::<Labels, Gauge>::default();
    for (name, progress, behind) in &s.projectors {
        let l = labels([("projector", name)]);
        position.get_or_create(&l).set(*progress.borrow() as i64);
        pending
            .get_or_create(&l)
            .set(behind.load(Ordering::Relaxed) as i64);
    }
    r.register(
        "closeloop_projector_sequence",
        "Last event-stream sequence each projector committed.",
        position,
    );
    r.register(
        "closeloop_projector_pending",
        "Events of each projector's filter not applied yet (its lag).",
        pending,
    );

    let messages = Family::<Labels, Counter>::default();
    let position = Family::<Labels, Gauge>::default();
    let pending = Family::<Labels, Gauge>::default();
    for (name, m) in &s.consumers {
        for (verdict, c) in [
            ("done", &m.done),
            ("dead_letter", &m.dead_lettered),
            ("retry", &m.retried),
        ] {
            messages
                .get_or_create(&labels([("consumer", name), ("verdict", verdict)]))
                .inc_by(c.load(Ordering::Relaxed));
        }
        let l = labels([("consumer", name)]);
        position
            .get_or_create(&l)
            .set(m.position.load(Ordering::Relaxed) as i64);
        pending
            .get_or_create(&l)
            .set(m.pending.load(Ordering::Relaxed) as i64);
    }
    r.register(
        "closeloop_consumer_messages",
        "Messages each durable consumer handled, by verdict.",
        messages,
    );
    r.register(
        "closeloop_consumer_position",
        "Stream sequence of the last message each durable consumer received.",
        position,
    );
    r.register(
        "closeloop_consumer_pending",
        "Messages each durable consumer has not received yet (its lag).",
        pending,
    );

    for m in &s.metrics {
        m.register(&mut r);
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).expect("metrics encode");
    out
}
