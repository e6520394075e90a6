//! One feedback is one trace: the roles run as separate processes exporting
//! over OTLP to a receiver that decodes what they really send
//! (`opentelemetry-proto`); the ingestion request's span, routing's and
//! ticketing's consumer spans share the caller's trace id, each a child of
//! the span that wrote the event it handles.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use closeloop_tests::{Backend, Nats, RoleProcess, TestDb, http_get, unique_prefix};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// One received span: service, name, trace id, span id, parent span id.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace: String,
    span: String,
    parent: String,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push(Received {
                        service: service.clone(),
                        name: s.name.clone(),
                        trace: hex(&s.trace_id),
                        span: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn start(role: &'static str, nats: &str, db: &str, prefix: &str, otlp: SocketAddr) -> RoleProcess {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_SERVICE_NAME", format!("closeloop-{role}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    RoleProcess::start(
        env!("CARGO_BIN_EXE_closeloop"),
        role,
        (nats, db, prefix),
        &env,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_feedback_is_one_trace_across_the_three_roles() {
    // The OTLP receiver.
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);

    let nats = Nats::start();
    let db = TestDb::new(Backend::Postgres).await;
    let prefix = unique_prefix();
    let roles: Vec<RoleProcess> = ["ingestion", "routing", "ticketing"]
        .iter()
        .map(|r| start(r, &nats.url(), &db.url, &prefix, otlp))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(40);
    for r in &roles {
        while http_get(r.http, "/readyz").await.map(|(s, _)| s) != Some(200) {
            assert!(Instant::now() < deadline, "role not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let ingestion = &roles[0];
    let import = std::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["directory", "import"])
        .arg(closeloop_tests::example("directory.yaml"))
        .arg("--server")
        .arg(format!("http://{}", ingestion.grpc))
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let caller = format!("00-{trace}-b7ad6b7169203331-01");
    let doc = std::fs::read(closeloop_tests::example(
        "feedback/relationship-nps-detractor.json",
    ))
    .unwrap();
    let (status, _, body) = closeloop_tests::http_request(
        ingestion.http,
        "POST",
        "/v1/feedback",
        &[
            ("Content-Type", "application/json"),
            ("traceparent", &caller),
        ],
        &doc,
    )
    .await;
    assert_eq!(status, 202, "{body}");

    // Wait for the spans of all three roles in the caller's trace.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<Received> = receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace == trace)
            .cloned()
            .collect();
        let has = |svc: &str, name: &str| spans.iter().any(|s| s.service == svc && s.name == name);
        if has("closeloop-ingestion", "http")
            && has("closeloop-routing", "consume")
            && has("closeloop-ticketing", "consume")
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans in trace {trace}: {spans:#?}\nall: {:#?}",
            receiver.0.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |svc: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == svc && s.name == name)
            .unwrap()
            .clone()
    };
    let http = find("closeloop-ingestion", "http");
    let routing = find("closeloop-routing", "consume");
    let ticketing = find("closeloop-ticketing", "consume");
    // Parent and child: the caller → the request → routing → ticketing.
    assert_eq!(http.parent, "b7ad6b7169203331", "{spans:#?}");
    assert_eq!(routing.parent, http.span, "{spans:#?}");
    assert_eq!(ticketing.parent, routing.span, "{spans:#?}");
}
