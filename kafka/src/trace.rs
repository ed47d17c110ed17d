//! The W3C trace context (`traceparent`) in Kafka record headers: the gateway writes the one of
//! the HTTP request's span into each command, the seat processor copies it onto the outcomes it
//! produces (and records a span under it when the trace is sampled), the projectors record a
//! span under it. Without a tracer configured, spans are not recorded and the header is only
//! carried along. Log lines about one record carry its `trace_id` (sampled or not), so a log
//! search by a trace id finds every process's lines about that request.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header's name.
pub const TRACEPARENT: &str = "traceparent";

/// A Kafka record's `traceparent` header, if it has one.
pub fn traceparent<M: rdkafka::Message>(message: &M) -> Option<&[u8]> {
    use rdkafka::message::Headers;
    message
        .headers()?
        .iter()
        .find(|header| header.key == TRACEPARENT)
        .and_then(|header| header.value)
}

/// The trace id (32 lowercase hex digits) a `traceparent` names, for log lines; `None` when
/// there is none or it is malformed (W3C: `00-<trace id>-<parent id>-<flags>`, a zero id is
/// invalid).
pub fn trace_id(traceparent: Option<&[u8]>) -> Option<&str> {
    let text = std::str::from_utf8(traceparent?).ok()?;
    let mut parts = text.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    (id.len() == 32 && id.bytes().all(hex) && id.bytes().any(|c| c != b'0')).then_some(id)
}

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
    let span = tracing::info_span!(
        "kafka",
        otel.name = name,
        trace_id = trace_id(Some(traceparent.as_bytes()))
    );
    let _ = span.set_parent(parent);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_the_second_field_of_a_well_formed_traceparent() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let header = format!("00-{id}-00f067aa0ba902b7-01");
        assert_eq!(trace_id(Some(header.as_bytes())), Some(id));
        for malformed in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(Some(malformed.as_bytes())), None, "{malformed:?}");
        }
        assert_eq!(trace_id(Some(&[0xff, 0xfe])), None);
        assert_eq!(trace_id(None), None);
    }
}
