//! Logs and traces of `closeloop serve`.
//!
//! Logs go to stderr (text or JSON). Traces are exported over OTLP (gRPC)
//! when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) variable is set, named by
//! `OTEL_SERVICE_NAME` (default `closeloop`) and `OTEL_RESOURCE_ATTRIBUTES`,
//! batched as `OTEL_BSP_*` says; `OTEL_SDK_DISABLED=true` turns them off.
//! Without an endpoint no span is recorded for OpenTelemetry at all (events
//! still carry a `traceparent` continuing the caller's trace).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::LogFormat;

/// Flushes and stops trace export when dropped at the end of `main`.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("warning: flushing traces failed: {e}");
        }
    }
}

fn configured() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn provider() -> Option<SdkTracerProvider> {
    if !configured() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: OTLP trace export is configured but cannot start: {e}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("closeloop");
    }
    Some(
        SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build(),
    )
}

/// Installs logging, and trace export when configured (`traces`: only for
/// `serve`; client commands never export). Call inside the tokio runtime.
pub fn init(format: LogFormat, default: &str, traces: bool) -> Telemetry {
    use tracing_subscriber::Layer as _;
    // RUST_LOG filters the logs; the spans exported are closeloop's own at
    // info level and above, whatever the log level.
    let logs = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
    };
    let provider = if traces { provider() } else { None };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("closeloop"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(otel);
    match format {
        LogFormat::Text => registry.with(fmt.with_filter(logs())).init(),
        LogFormat::Json => registry.with(fmt.json().with_filter(logs())).init(),
    }
    Telemetry { provider }
}
