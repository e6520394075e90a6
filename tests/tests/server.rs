//! The server as an operator and a connector meet it: probes, metrics,
//! gRPC health and reflection, the event stream's provisioning and the
//! envelope on every event, and behaviour while the broker is down.

use std::time::Duration;

use async_nats::jetstream;
use closeloop_proto::v1;
use closeloop_tests::{Backend, Nats, TestDb, http_get, metric, spawn_app, unique_prefix};
use futures::StreamExt;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_metrics_health_and_reflection() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;

    let (status, body) = http_get(app.http_addr, "/healthz").await.unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_get(app.http_addr, "/readyz").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"nats\":\"ok\""), "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    for consumer in [
        "routing",
        "ticketing-routes",
        "feedback-intake",
        "directory-intake",
    ] {
        assert_eq!(ready["consumers"][consumer], "consuming", "{body}");
    }

    let channel = tonic::transport::Channel::from_shared(app.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "closeloop.v1.TicketService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(msg)) = resp.next().await else {
        panic!("no reflection answer")
    };
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"closeloop.v1.TicketService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    let mut c = app.tickets().await;
    let r = c
        .open_ticket(v1::OpenTicketRequest {
            request_id: "m-1".into(),
            account_id: "ACME-001".into(),
            owner_email: "dana@vendor.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.get_ticket(v1::GetTicketRequest {
        ticket_id: r.ticket.unwrap().id,
        min_sequence: r.sequence,
    })
    .await
    .unwrap();
    let (_, body) = http_get(app.http_addr, "/metrics").await.unwrap();
    assert!(
        body.contains("closeloop_commands_total{aggregate=\"ticket\",outcome=\"written\"} 1"),
        "{body}"
    );
    assert!(body.contains(&format!(
        "closeloop_projector_sequence{{projector=\"ticket_state\"}} {}",
        r.sequence
    )));
    assert_eq!(
        metric(
            &body,
            "closeloop_command_conflicts_total{aggregate=\"ticket\"}"
        ),
        0
    );
    app.stop().await.unwrap();
}

/// Older grpcurl releases and IDE plugins speak only reflection v1alpha.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_v1alpha_clients_too() {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    let channel = tonic::transport::Channel::from_shared(app.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut refl = ServerReflectionClient::new(channel);
    let requests = vec![
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("closeloop.v1.TicketService".into()),
    ];
    let mut resp = refl
        .server_reflection_info(futures::stream::iter(requests.into_iter().map(|r| {
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(r),
            }
        })))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(msg)) = resp.next().await else {
        panic!("no v1alpha reflection answer")
    };
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"closeloop.v1.FeedbackService".to_string()),
        "{names:?}"
    );
    let Some(Ok(msg)) = resp.next().await else {
        panic!("no answer for the symbol")
    };
    let Some(MessageResponse::FileDescriptorResponse(files)) = msg.message_response else {
        panic!("unexpected reflection answer: {msg:?}")
    };
    assert!(!files.file_descriptor_proto.is_empty());
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_the_documented_envelope() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.seed_ticket_directory().await;
    let mut c = app.tickets().await;
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut req = tonic::Request::new(v1::OpenTicketRequest {
        request_id: "env-1".into(),
        account_id: "ACME-001".into(),
        owner_email: "dana@vendor.example".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("traceparent", trace.parse().unwrap());
    req.metadata_mut()
        .insert("x-correlation-id", "crm-case-9".parse().unwrap());
    let r = c.open_ticket(req).await.unwrap().into_inner();
    let id = r.ticket.unwrap().id;

    let stream = nats.events_stream(&prefix).await;
    let msg = stream.get_raw_message(r.sequence).await.unwrap();
    assert_eq!(msg.subject.as_str(), format!("{prefix}.events.ticket.{id}"));
    let h = |k: &str| {
        msg.headers
            .get(k)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    let event_id = h("Nats-Msg-Id");
    assert_eq!(h("Closeloop-Event-Id"), event_id);
    assert_eq!(
        uuid::Uuid::parse_str(&event_id).unwrap().get_version_num(),
        5,
        "deterministic"
    );
    assert_eq!(h("Closeloop-Event-Type"), "closeloop.v1.TicketOpened");
    assert_eq!(h("Closeloop-Schema-Version"), "1");
    assert_eq!(h("Content-Type"), "application/protobuf");
    assert_eq!(h("Closeloop-Correlation-Id"), "crm-case-9");
    assert_eq!(h("Closeloop-Causation-Id"), "env-1");
    assert!(humantime::parse_rfc3339(&h("Closeloop-Occurred-At")).is_ok());
    let tp = h("traceparent");
    assert_eq!(&tp[..35], &trace[..35], "same trace id, new span");
    assert_ne!(tp, trace);
    let payload: v1::TicketEvent = prost::Message::decode(msg.payload.as_ref()).unwrap();
    assert_eq!(payload.event_id, event_id);
    assert_eq!(payload.ticket_id, id);
    assert!(matches!(
        payload.event,
        Some(v1::ticket_event::Event::Opened(_))
    ));
    app.stop().await.unwrap();
}

/// Every role provisions the event, intake and dead-letter streams at start;
/// on a fresh install they all do it at the same instant. Whoever loses the
/// race to create a stream finds it and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_starts_provision_each_stream_once_and_all_succeed() {
    use closeloop_eventstore::{EventStore, Prefix, StoreConfig};
    let nats = Nats::start();
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(nats.client().await);
    }
    for round in 0..25 {
        let prefix = Prefix::parse(&unique_prefix()).unwrap();
        let starts = clients.iter().map(|c| {
            let (c, prefix) = (c.clone(), prefix.clone());
            async move {
                let store = EventStore::open(
                    c,
                    StoreConfig {
                        prefix: prefix.clone(),
                        ..StoreConfig::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
                closeloop_ingestion::nats::ensure_streams(store.jetstream(), &prefix)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        for r in futures::future::join_all(starts).await {
            assert!(r.is_ok(), "round {round}: {r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_provisioned_idempotently_and_verified() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    // Twice: the second start finds and accepts the stream.
    spawn_app(&nats.url(), &db.url, &prefix)
        .await
        .stop()
        .await
        .unwrap();
    spawn_app(&nats.url(), &db.url, &prefix)
        .await
        .stop()
        .await
        .unwrap();
    let js = jetstream::new(nats.client().await);
    let mut s = nats.events_stream(&prefix).await;
    let cfg = s.info().await.unwrap().config.clone();
    assert!(cfg.deny_delete && cfg.deny_purge && cfg.allow_direct);
    assert_eq!(cfg.subjects, [format!("{prefix}.events.>")]);

    // A stream of the same name that would expire events is refused at start.
    let bad = unique_prefix();
    js.create_stream(jetstream::stream::Config {
        name: closeloop_eventstore::Prefix::parse(&bad)
            .unwrap()
            .events_stream(),
        subjects: vec![format!("{bad}.events.>")],
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    let listeners = closeloop_server::Listeners::bind(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let err = closeloop_server::run(
        closeloop_server::Config {
            nats_url: nats.url(),
            database_url: db.url.clone(),
            prefix: closeloop_server::prefix(&bad).unwrap(),
            roles: closeloop_server::Roles::all(),
            stream_replicas: 1,
            programs: Some(closeloop_tests::example("programs.yaml")),
            webhooks: None,
            notification: Default::default(),
            clock: Default::default(),
        },
        listeners,
        std::future::pending(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("incompatible configuration") && err.contains("max_age"),
        "{err}"
    );

    // So is one that would let events be deleted or purged.
    let deletable = unique_prefix();
    let p = closeloop_eventstore::Prefix::parse(&deletable).unwrap();
    js.create_stream(jetstream::stream::Config {
        name: p.events_stream(),
        subjects: vec![p.events_filter()],
        ..Default::default()
    })
    .await
    .unwrap();
    let err = closeloop_eventstore::EventStore::open(
        nats.client().await,
        closeloop_eventstore::StoreConfig {
            prefix: p,
            ..Default::default()
        },
    )
    .await
    .err()
    .expect("a deletable stream is refused")
    .to_string();
    assert!(err.contains("deny_delete and deny_purge"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_is_unavailable_and_loses_nothing() {
    let mut nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let mut c = app.tickets().await;
    let r = c
        .open_ticket(v1::OpenTicketRequest {
            request_id: "o-1".into(),
            account_id: "ACME-001".into(),
            owner_email: "dana@vendor.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = r.ticket.unwrap().id;

    nats.stop();
    let note = v1::AddNoteRequest {
        request_id: "n-1".into(),
        ticket_id: id.clone(),
        text: "written during the outage".into(),
        actor: String::new(),
    };
    let e = c.add_note(note.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let (status, body) = http_get(app.http_addr, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not ready"));

    // Same store, same port: the client reconnects; the earlier event is
    // still there and the retried note is written exactly once.
    nats.restart();
    let mut written = None;
    for _ in 0..100 {
        match c.add_note(note.clone()).await {
            Ok(r) => {
                written = Some(r.into_inner());
                break;
            }
            Err(e) if e.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let written = written.expect("broker came back");
    let view = c
        .get_ticket(v1::GetTicketRequest {
            ticket_id: id,
            min_sequence: written.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.ticket.unwrap().note_count, 1);
    assert_eq!(view.activity.len(), 2);
    app.stop().await.unwrap();
}

/// SIGTERM while the broker is unreachable: the process still stops (after
/// at most the exit's flush timeout), instead of waiting for a reconnect
/// that may never come until the kubelet kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_while_the_broker_is_down() {
    let mut nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    nats.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("the server did not stop within 20 s of its shutdown signal")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopping took {:?}",
        started.elapsed()
    );
}

/// A PostgreSQL server that does not answer fails the start (after the
/// patience given to a database still starting) naming why, not with the
/// pool's "pool timed out while waiting for an open connection".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_naming_why() {
    // A port nothing listens on: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = closeloop_readmodel::Db::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Connection refused"), "{e}");
    assert!(!e.contains("pool timed out"), "{e}");
}

/// `/metrics` as a scraper reads it: parsed by the reference parser (the
/// Python `prometheus_client`, Debian's python3-prometheus-client), with
/// request counts and latency histograms for gRPC and HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_the_reference_parser() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let mut c = app.tickets().await;
    c.open_ticket(v1::OpenTicketRequest {
        request_id: "m-1".into(),
        account_id: "ACME-001".into(),
        owner_email: "dana@vendor.example".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let _ = http_get(app.http_addr, "/readyz").await.unwrap();
    // Paths nobody serves (a scanner's) share one series, whatever they are.
    for path in ["/v1/no-such-thing", "/v1/feedback/../x", "/wp-login.php"] {
        let _ = http_get(app.http_addr, path).await.unwrap();
    }
    let (status, body) = http_get(app.http_addr, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    out[family.name] = {"type": family.type, "samples": [[s.name, s.labels, s.value] for s in family.samples]}
print(json.dumps(out))
"#;
    let mut py = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (deploy/local/install-test-tools.sh installs the parser)");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the reference parser refused /metrics: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let family = |name: &str| families[name].clone();
    assert_eq!(
        family("closeloop_commands")["type"],
        "counter",
        "{families}"
    );
    assert_eq!(
        family("closeloop_request_duration_seconds")["type"],
        "histogram"
    );
    assert_eq!(family("closeloop_projector_pending")["type"], "gauge");
    assert_eq!(family("closeloop_consumer_pending")["type"], "gauge");
    let samples = |name: &str| {
        family(name)["samples"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let has = |name: &str, want: &[(&str, &str)]| {
        samples(name)
            .iter()
            .any(|s| want.iter().all(|(k, v)| s[1][*k].as_str() == Some(*v)))
    };
    assert!(
        has(
            "closeloop_requests",
            &[
                ("transport", "grpc"),
                ("route", "/closeloop.v1.TicketService/OpenTicket"),
                ("code", "0")
            ]
        ),
        "{families}"
    );
    assert!(
        has(
            "closeloop_requests",
            &[("transport", "http"), ("route", "/readyz"), ("code", "200")]
        ),
        "{families}"
    );
    let http_routes: Vec<String> = samples("closeloop_requests")
        .iter()
        .filter(|s| s[1]["transport"] == "http")
        .map(|s| s[1]["route"].as_str().unwrap().to_string())
        .collect();
    assert!(
        http_routes
            .iter()
            .all(|r| r == "/readyz" || r == "unmatched"),
        "{http_routes:?}"
    );
    assert!(has(
        "closeloop_requests",
        &[
            ("transport", "http"),
            ("route", "unmatched"),
            ("code", "404")
        ]
    ));
    assert!(has(
        "closeloop_commands",
        &[("aggregate", "ticket"), ("outcome", "written")]
    ));
    assert!(has(
        "closeloop_consumer_messages",
        &[("consumer", "routing")]
    ));
    app.stop().await.unwrap();
}
