//! Logs, traces and the metrics push. Logs go to stderr (text, or JSON with `log_format = "json"`), filtered by
//! `RUST_LOG`. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans also go to an OpenTelemetry
//! collector by OTLP (HTTP/protobuf), sampled as `OTEL_TRACES_SAMPLER` / `_ARG` say (k8s:
//! `traceidratio`, 0.1), named by `OTEL_SERVICE_NAME`; the W3C `traceparent` carries a trace
//! from an HTTP request through the Kafka records to the seat processor and the projectors.
//! The same endpoint also receives the metrics ([`crate::otlp_metrics`]). Every export names
//! the process by `service.name` and `service.instance.id` (the pod's name, `HOSTNAME`, in
//! Kubernetes), plus `OTEL_RESOURCE_ATTRIBUTES`.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Whether spans are exported (an OTLP endpoint is configured).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported: without it the gateway makes no per-request span (measured: the
/// span cost a quarter of the embedded sold-out throughput).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
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
