//! Logs and traces. Logs go to stderr (text, or JSON with `log_format = "json"`), filtered by
//! `RUST_LOG`. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans also go to an OpenTelemetry
//! collector by OTLP (HTTP/protobuf), sampled as `OTEL_TRACES_SAMPLER` / `_ARG` say (k8s:
//! `traceidratio`, 0.1), named by `OTEL_SERVICE_NAME`; the W3C `traceparent` carries a trace
//! from an HTTP request through the Kafka records to the seat processor and the projectors.

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

/// Flushes the spans still buffered when the process ends.
#[derive(Debug)]
pub struct TracingGuard(Option<SdkTracerProvider>);

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Set up logging (and tracing, when an OTLP endpoint is configured) for the process.
pub fn init(format: &str) -> TracingGuard {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(provider) = otlp_provider() else {
        // Logs only: the plain subscriber (a per-layer filter costs the hot path measurably).
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr);
        if format == "json" {
            builder.json().init();
        } else {
            builder.init();
        }
        return TracingGuard(None);
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
    TracingGuard(Some(provider))
}

fn otlp_provider() -> Option<SdkTracerProvider> {
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
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "seatflow".to_owned());
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
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
