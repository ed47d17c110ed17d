//! The W3C trace context (`traceparent`) in Kafka record headers: the gateway writes the one of
//! the HTTP request's span into each command, the seat processor copies it onto the outcomes it
//! produces (and records a span under it when the trace is sampled), the projectors record a
//! span under it. Without a tracer configured, spans are not recorded and the header is only
//! carried along.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header's name.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of the current span, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    struct One(Option<String>);
    impl Injector for One {
        fn set(&mut self, key: &str, value: String) {
            if key == TRACEPARENT {
                self.0 = Some(value);
            }
        }
    }
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut one = One(None);
    TraceContextPropagator::new().inject_context(&context, &mut one);
    one.0
}

/// A span named `name` under the trace `traceparent` names, when that trace is sampled;
/// otherwise a span that records nothing.
pub fn child_span(name: &'static str, traceparent: Option<&[u8]>) -> tracing::Span {
    struct One<'a>(&'a str);
    impl Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == TRACEPARENT).then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT]
        }
    }
    let Some(traceparent) = traceparent.and_then(|t| std::str::from_utf8(t).ok()) else {
        return tracing::Span::none();
    };
    let parent = TraceContextPropagator::new().extract(&One(traceparent));
    if !parent.span().span_context().is_sampled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("kafka", otel.name = name);
    let _ = span.set_parent(parent);
    span
}
