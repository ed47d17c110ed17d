//! Logs, traces and the metrics push. Logs go to stderr (text, or JSON with
//! `log_format = "json"`), filtered by `RUST_LOG`. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans
//! also go to an OpenTelemetry collector by OTLP (HTTP/protobuf), named by `OTEL_SERVICE_NAME`;
//! a request starts a trace as `OTEL_TRACES_SAMPLER` / `_ARG` say (k8s: `traceidratio`, 0.1) or
//! continues its caller's; the W3C `traceparent` carries a trace from an HTTP request through
//! the Kafka records to the seat processor and the projectors. The same endpoint also receives
//! the metrics ([`crate::otlp_metrics`]). Every export names the process by `service.name` and
//! `service.instance.id` (the pod's name, `HOSTNAME`, in Kubernetes), plus
//! `OTEL_RESOURCE_ATTRIBUTES`.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Whether spans are exported (an OTLP endpoint is configured).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The share of requests without a caller's trace that start one (`f64` bits).
static ROOT_RATIO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether the gateway makes a span for a request: traces are exported, and the caller sent a
/// `traceparent` (its sampled flag then decides) or the request draws a new trace at the
/// configured ratio. A request that gets no span costs nothing: measured, a span for every
/// request at a 10 % sampler cost a fifth of the embedded sold-out throughput.
pub fn trace_request(headers: &poem::http::HeaderMap) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    EXPORTING.load(Relaxed)
        && (headers.contains_key("traceparent")
            || rand::random::<f64>() < f64::from_bits(ROOT_RATIO.load(Relaxed)))
}

/// The share of new (root) traces `OTEL_TRACES_SAMPLER` / `_ARG` ask for: `always_on` and the
/// default `parentbased_always_on` 1, `always_off` and `parentbased_always_off` 0,
/// `traceidratio` and `parentbased_traceidratio` their argument (default 1). A span under a
/// caller's or another process's context follows that context's sampled flag.
pub fn root_ratio(sampler: Option<&str>, argument: Option<&str>) -> Result<f64, String> {
    let ratio = || match argument.map(str::trim) {
        None | Some("") => Ok(1.0),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG={text:?} is not a ratio in [0, 1]")),
    };
    match sampler.map(str::trim) {
        None | Some("") | Some("always_on") | Some("parentbased_always_on") => Ok(1.0),
        Some("always_off") | Some("parentbased_always_off") => Ok(0.0),
        Some("traceidratio") | Some("parentbased_traceidratio") => ratio(),
        Some(other) => Err(format!(
            "OTEL_TRACES_SAMPLER={other:?} is not supported (always_on, always_off, \
             traceidratio, or their parentbased_ forms)"
        )),
    }
}

/// Flushes the spans still buffered and pushes the metrics a last time when the process ends.
#[derive(Debug)]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
    metrics: Option<crate::otlp_metrics::MetricsPush>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
        drop(self.metrics.take());
    }
}

/// Set up logging (and tracing, when an OTLP endpoint is configured) for the process.
pub fn init(format: &str) -> TracingGuard {
    let resource = resource();
    let provider = init_logs_and_traces(format, &resource);
    let metrics = crate::otlp_metrics::PushConfig::from_env(|name| std::env::var(name).ok())
        .and_then(|config| {
            let attributes = resource
                .iter()
                .map(|(key, value)| (key.to_string(), value.as_str().into_owned()))
                .collect();
            crate::otlp_metrics::start(config, attributes)
        });
    TracingGuard { provider, metrics }
}

fn init_logs_and_traces(
    format: &str,
    resource: &opentelemetry_sdk::Resource,
) -> Option<SdkTracerProvider> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(provider) = otlp_provider(resource) else {
        // Logs only: the plain subscriber (a per-layer filter costs the hot path measurably).
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr);
        if format == "json" {
            builder.json().init();
        } else {
            builder.init();
        }
        return None;
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if format == "json" {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    // The collector gets seatflow's spans whatever RUST_LOG says about the logs.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("seatflow"))
        .with_filter(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter()))
        .with(otel)
        .init();
    let sampler = std::env::var("OTEL_TRACES_SAMPLER").ok();
    let argument = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
    let ratio = root_ratio(sampler.as_deref(), argument.as_deref()).unwrap_or_else(|e| {
        tracing::warn!("{e}; sampling every trace");
        1.0
    });
    ROOT_RATIO.store(ratio.to_bits(), std::sync::atomic::Ordering::Relaxed);
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    Some(provider)
}

/// This process, for a collector: `service.name` (`OTEL_SERVICE_NAME`, else `seatflow`),
/// `OTEL_RESOURCE_ATTRIBUTES`, and a `service.instance.id` unless those name one — several
/// pods' cumulative counters under one identity would be read as one counter going up and down.
fn resource() -> opentelemetry_sdk::Resource {
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "seatflow".to_owned());
    let named = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let instance = opentelemetry::Key::from_static_str("service.instance.id");
    if named.get(&instance).is_some() {
        return named;
    }
    // Kubernetes sets HOSTNAME to the pod's name; elsewhere several processes share a host.
    let id = std::env::var("HOSTNAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|host| host.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        format!("{host}-{}", std::process::id())
    });
    opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(
            named
                .iter()
                .map(|(key, value)| opentelemetry::KeyValue::new(key.clone(), value.clone())),
        )
        .with_attribute(opentelemetry::KeyValue::new(instance, id))
        .build()
}

fn otlp_provider(resource: &opentelemetry_sdk::Resource) -> Option<SdkTracerProvider> {
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|endpoint| !endpoint.is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("seatflow: no OTLP export of traces: {e}");
            return None;
        }
    };
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.clone())
            // Which requests start a trace is decided before their span exists
            // (`trace_request`); a span that exists is recorded unless its parent was not.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .build(),
    )
}

/// The trace context a set of headers carries (`traceparent`), as a parent for a span.
pub fn extract(headers: &poem::http::HeaderMap) -> opentelemetry::Context {
    struct Headers<'a>(&'a poem::http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    TraceContextPropagator::new().extract(&Headers(headers))
}

#[cfg(test)]
mod tests {
    use super::root_ratio;

    #[test]
    fn the_sampler_variables_give_the_share_of_new_traces() {
        assert_eq!(root_ratio(None, None), Ok(1.0));
        assert_eq!(root_ratio(Some("parentbased_always_off"), None), Ok(0.0));
        assert_eq!(root_ratio(Some("always_off"), Some("0.5")), Ok(0.0));
        assert_eq!(root_ratio(Some("traceidratio"), Some("0.1")), Ok(0.1));
        assert_eq!(root_ratio(Some("parentbased_traceidratio"), None), Ok(1.0));
        assert!(root_ratio(Some("traceidratio"), Some("1.5")).is_err());
        assert!(root_ratio(Some("traceidratio"), Some("often")).is_err());
        let unsupported = root_ratio(Some("jaeger_remote"), None).expect_err("unsupported");
        assert!(unsupported.contains("jaeger_remote"), "{unsupported}");
    }
}
