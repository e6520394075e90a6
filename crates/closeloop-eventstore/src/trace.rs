//! W3C trace context between requests, events and the spans that handle
//! them, through OpenTelemetry's `traceparent` propagator.
//!
//! Every transport (HTTP, gRPC, NATS intake) and every consumer makes its
//! span a child of the `traceparent` it received ([`follow`]); every event
//! is written with the `traceparent` of the span that wrote it
//! ([`for_event`]). With an OpenTelemetry layer installed (`closeloop serve`
//! exports over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), one
//! feedback's path through intake, routing and ticketing is one trace of
//! parent and child spans. Without one, events still carry a `traceparent`
//! that continues the caller's trace.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

const HEADER: &str = "traceparent";

/// Whether `value` has the exact shape of a version-00 `traceparent`
/// (`00-` + 32 + `-` + 16 + `-` + 2 lowercase hex digits); the propagator
/// itself accepts shorter ids.
fn well_formed(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(parts.as_slice(), [v, t, p, f] if *v == "00" && hex(t, 32) && hex(p, 16) && hex(f, 2))
}

/// The span context a `traceparent` value names, if it is well formed.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    if !well_formed(traceparent.trim()) {
        return None;
    }
    let carrier = HashMap::from([(HEADER.to_string(), traceparent.trim().to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

fn format(sc: &SpanContext) -> String {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(
        &Context::new().with_remote_span_context(sc.clone()),
        &mut carrier,
    );
    carrier.remove(HEADER).unwrap_or_default()
}

/// New ids come from the SDK's own generator (a random generator per
/// thread, seeded from the OS once): `uuid`'s v4 asked the kernel for
/// random bytes on every call, twice per command.
fn ids() -> RandomIdGenerator {
    RandomIdGenerator::default()
}

/// A child of `parent` (same trace, a new span id), or a new sampled root.
pub fn child_of(parent: Option<&str>) -> String {
    child_of_context(parent.and_then(parse).as_ref())
}

fn child_of_context(parent: Option<&SpanContext>) -> String {
    let sc = match parent {
        Some(p) => SpanContext::new(
            p.trace_id(),
            ids().new_span_id(),
            p.trace_flags(),
            false,
            p.trace_state().clone(),
        ),
        None => SpanContext::new(
            ids().new_trace_id(),
            ids().new_span_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
    };
    format(&sc)
}

/// Makes `span` a child of the caller's `traceparent` (ignored when absent
/// or malformed: the span then starts a trace of its own).
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(sc) = traceparent.and_then(parse) {
        let _ = span.set_parent(Context::new().with_remote_span_context(sc));
    }
}

/// The `traceparent` an event written in `span` carries: the span's own
/// context when spans are recorded (and it continues `parent`'s trace),
/// else a child of `parent` (or a new root) made here.
pub fn for_event(span: &tracing::Span, parent: Option<&str>) -> String {
    let cx = span.context();
    let own = cx.span().span_context().clone();
    let parent = parent.and_then(parse);
    let continues = parent
        .as_ref()
        .is_none_or(|p| p.trace_id() == own.trace_id());
    if own.is_valid() && continues {
        format(&own)
    } else {
        child_of_context(parent.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_and_continue_their_trace() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse(parent).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        let child = child_of(Some(parent));
        assert_eq!(&child[..35], &parent[..35]);
        assert_ne!(child, parent);
        assert!(parse(&child).is_some());
        let root = child_of(None);
        assert!(parse(&root).is_some());
        assert_ne!(&root[3..35], &parent[3..35]);
        // No OpenTelemetry layer in unit tests: the event continues the parent.
        let e = for_event(&tracing::Span::none(), Some(parent));
        assert_eq!(&e[..35], &parent[..35]);
    }
}
