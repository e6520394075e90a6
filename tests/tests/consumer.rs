//! The durable consumer framework against a real nats-server: bounded
//! redelivery with a backoff schedule, then the message parked with the
//! reason; other keys flow on meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use closeloop_eventstore::consumer::{
    ConsumerSpec, Handler, RetryPolicy, Verdict, dlq_headers, dlq_stream, ensure_dlq, run_consumer,
};
use closeloop_eventstore::{Prefix, ensure_stream};
use closeloop_tests::{Nats, unique_prefix};

/// A private broker with a stream `<PREFIX>_WORK` on `<prefix>.work.>` and
/// the dead-letter stream.
async fn work_stream() -> (Nats, jetstream::Context, Prefix, String) {
    let nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    let prefix = Prefix::parse(&unique_prefix()).unwrap();
    let stream = format!("{}_WORK", prefix.as_str().to_ascii_uppercase());
    ensure_stream(
        &js,
        jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.work.>")],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    ensure_dlq(&js, &prefix).await.unwrap();
    (nats, js, prefix, stream)
}

/// A consumer running until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start<H: Handler + 'static>(
        js: &jetstream::Context,
        prefix: &Prefix,
        spec: ConsumerSpec,
        handler: H,
    ) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_consumer(
            js.clone(),
            prefix.clone(),
            spec,
            handler,
            async {
                let _ = stopped.await;
            },
        ));
        Running { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// Fails every message on subject `*.bad` until `fixed`; handles the rest.
#[derive(Clone, Default)]
struct Flaky {
    bad_calls: Arc<AtomicU64>,
    good: Arc<AtomicU64>,
    fixed: Arc<std::sync::atomic::AtomicBool>,
    recovered: Arc<AtomicU64>,
}

impl Handler for Flaky {
    async fn handle(&self, msg: &jetstream::Message) -> Verdict {
        if msg.subject.ends_with(".bad") && self.fixed.load(Ordering::SeqCst) {
            self.recovered.fetch_add(1, Ordering::SeqCst);
            Verdict::Done
        } else if msg.subject.ends_with(".bad") {
            let n = self.bad_calls.fetch_add(1, Ordering::SeqCst) + 1;
            Verdict::Retry(format!("database down (attempt {n})"))
        } else {
            self.good.fetch_add(1, Ordering::SeqCst);
            Verdict::Done
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_is_parked_after_its_last_delivery() {
    let (_nats, js, prefix, stream) = work_stream().await;
    js.publish(format!("{prefix}.work.bad"), "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    for _ in 0..3 {
        js.publish(format!("{prefix}.work.good"), "y".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let mut spec = ConsumerSpec::new(stream.clone(), "flaky", format!("{prefix}.work.>"));
    spec.retry = RetryPolicy {
        max_deliver: 4,
        backoff: vec![Duration::from_millis(50), Duration::from_millis(100)],
    };
    let metrics = spec.metrics.clone();
    let handler = Flaky::default();
    let running = Running::start(&js, &prefix, spec, handler.clone());

    let dlq = js.get_stream(dlq_stream(&prefix)).await.unwrap();
    let subject = format!("{prefix}.dlq.work.bad");
    let deadline = Instant::now() + Duration::from_secs(20);
    let parked = loop {
        if let Ok(m) = dlq.get_last_raw_message_by_subject(&subject).await {
            break m;
        }
        assert!(Instant::now() < deadline, "never parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = parked.headers.get(dlq_headers::REASON).unwrap().to_string();
    assert_eq!(
        reason,
        "gave up after 4 deliveries: database down (attempt 4)"
    );
    assert_eq!(
        parked.headers.get(dlq_headers::CONSUMER).unwrap().as_str(),
        "flaky"
    );
    // Exactly max_deliver attempts; the other key was never held up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handler.bad_calls.load(Ordering::SeqCst), 4);
    assert_eq!(handler.good.load(Ordering::SeqCst), 3);
    assert_eq!(metrics.dead_lettered.load(Ordering::SeqCst), 1);
    assert_eq!(metrics.retried.load(Ordering::SeqCst), 3);

    // The cause is fixed; the consumer replays from the parked message's
    // sequence and the running process picks the replay up.
    let letters = closeloop_eventstore::dlq::list(&js, &prefix, Some("flaky"))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].original_sequence, 1);
    assert!(
        closeloop_eventstore::dlq::list(&js, &prefix, Some("someone-else"))
            .await
            .unwrap()
            .is_empty()
    );
    handler.fixed.store(true, Ordering::SeqCst);
    let again = closeloop_eventstore::dlq::replay(&js, &stream, "flaky", 1)
        .await
        .unwrap();
    assert_eq!(again, 4);
    let deadline = Instant::now() + Duration::from_secs(20);
    while handler.recovered.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the replay never reached the handler"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        closeloop_eventstore::dlq::replay(&js, &stream, "nobody", 1).await,
        Err(closeloop_eventstore::dlq::DlqError::NoConsumer { .. })
    ));
    running.stop().await;
}

/// Records what it handled, in order.
#[derive(Clone, Default)]
struct Recorder(Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl Handler for Recorder {
    async fn handle(&self, msg: &jetstream::Message) -> Verdict {
        self.0.lock().unwrap().push((
            msg.subject.to_string(),
            String::from_utf8_lossy(&msg.payload).to_string(),
        ));
        Verdict::Done
    }
}

/// A consumer over two subject filters on NATS 2.9 (one durable each),
/// merged: every message of both, each subject's in order, nothing else;
/// a replay covers both durables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_takes_several_subject_filters_in_order_per_subject() {
    let (_nats, js, prefix, stream) = work_stream().await;
    for (subject, n) in [
        ("a.1", 1),
        ("b.1", 1),
        ("a.1", 2),
        ("c.1", 1),
        ("b.1", 2),
        ("a.1", 3),
    ] {
        js.publish(format!("{prefix}.work.{subject}"), n.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let spec = ConsumerSpec::new(stream.clone(), "multi", format!("{prefix}.work.a.*"))
        .also(format!("{prefix}.work.b.*"));
    assert_eq!(spec.durable_for(1), "multi-1");
    let handler = Recorder::default();
    let running = Running::start(&js, &prefix, spec, handler.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while handler.0.lock().unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "{:?}", handler.0.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = handler.0.lock().unwrap().clone();
    let of = |s: &str| -> Vec<String> {
        got.iter()
            .filter(|(subject, _)| subject.ends_with(s))
            .map(|(_, n)| n.clone())
            .collect()
    };
    assert_eq!(of(".a.1"), ["1", "2", "3"]);
    assert_eq!(of(".b.1"), ["1", "2"]);
    assert!(of(".c.1").is_empty(), "{got:?}");

    // Replaying the consumer replays both of its durables.
    let again = closeloop_eventstore::dlq::replay(&js, &stream, "multi", 1)
        .await
        .unwrap();
    assert_eq!(again, 5);
    running.stop().await;
}
