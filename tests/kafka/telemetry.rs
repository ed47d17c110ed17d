//! Traces across the processes: an HTTP request's trace (its `traceparent`) continues through
//! the command record into the seat processor and through the outcome record into the
//! projector, and each process exports its spans by OTLP to the configured collector — here a
//! stand-in that keeps what it receives. The same collector receives each process's metrics,
//! pushed every interval and once more when the process ends.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use parking_lot::Mutex;
use poem::{EndpointExt, handler, post};
use prost::Message as _;

use super::redis::{borrowed, eventually, redis_env, redis_projector, redis_url, seatflow_with};
use super::{
    Children, ONE_AT_A_TIME, Sale, free_port, gateway_ready_with_event, gateway_with, kill,
};

/// The client's trace: sampled (`-01`), so every process records its part of it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// What the stand-in collector received, by signal.
#[derive(Clone, Default)]
struct Collected {
    traces: Received,
    metrics: Received,
}

#[handler]
fn collect_traces(body: Vec<u8>, collected: poem::web::Data<&Collected>) -> poem::Response {
    collected.traces.lock().push(body);
    accepted()
}

#[handler]
fn collect_metrics(body: Vec<u8>, collected: poem::web::Data<&Collected>) -> poem::Response {
    collected.metrics.lock().push(body);
    accepted()
}

fn accepted() -> poem::Response {
    poem::Response::builder()
        .content_type("application/x-protobuf")
        .body(Vec::<u8>::new())
}

/// An OTLP/HTTP receiver on a free port: every export request's body, as received.
async fn stand_in_collector() -> (String, Collected) {
    let port = free_port();
    let received = Collected::default();
    let app = poem::Route::new()
        .at("/v1/traces", post(collect_traces))
        .at("/v1/metrics", post(collect_metrics))
        .data(received.clone());
    tokio::spawn(
        poem::Server::new(poem::listener::TcpListener::bind(format!(
            "127.0.0.1:{port}"
        )))
        .run(app),
    );
    (format!("http://127.0.0.1:{port}"), received)
}

/// Whether a service exported a span of the trace (the protobuf carries the trace id's 16
/// bytes and the service name as they are).
fn exported(received: &Received, service: &str) -> bool {
    let trace_id = hex_bytes(TRACE_ID);
    received.lock().iter().any(|body| {
        body.windows(service.len()).any(|w| w == service.as_bytes())
            && body.windows(16).any(|w| w == trace_id.as_slice())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_across_the_processes_and_each_process_pushes_its_metrics() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (collector, collected) = stand_in_collector().await;
    let sale = Sale::without_event("otel").await;
    let topics = sale.topics.clone();
    let otel = |service: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.clone()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
            // Only traces the caller sampled: a span here proves the context travelled.
            ("OTEL_TRACES_SAMPLER", "parentbased_always_off".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_owned()),
        ]
    };
    let prefix = format!("otel-{}", uuid::Uuid::now_v7().simple());
    let mut projector_env = redis_env(&redis_url(), &prefix);
    projector_env.extend(otel("seatflow-projector"));
    // The projector pushes its metrics only when it ends: its numbers arrive by the last push.
    projector_env.push(("OTEL_METRIC_EXPORT_INTERVAL", "600000".to_owned()));
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut children = Children(vec![
        sale.processor_with(
            disk.path(),
            "p0",
            &borrowed(&otel("seatflow-seat-processor")),
        ),
        gateway_with(
            &topics,
            "gw-a",
            0,
            port,
            &borrowed(&otel("seatflow-gateway")),
        ),
        redis_projector(&topics, &projector_env),
    ]);
    let (client, base, event_id) = gateway_ready_with_event(
        port,
        "Traced night",
        serde_json::json!([{"section": "A", "rows": 2, "seatsPerRow": 5}]),
    )
    .await;
    let response = client
        .post(format!("{base}/api/reservations?wait=10000"))
        .header("traceparent", TRACEPARENT)
        .json(&serde_json::json!({"eventId": event_id, "section": "A", "userId": "fan", "seatCount": 2}))
        .send()
        .await
        .expect("reserve");
    assert_eq!(response.status(), 200);

    for service in [
        "seatflow-gateway",
        "seatflow-seat-processor",
        "seatflow-projector",
    ] {
        eventually(
            &format!("{service} exports a span of the request's trace"),
            async || exported(&collected.traces, service),
        )
        .await;
    }

    // Metrics, pushed every 300 ms, with the values of what happened: one confirmed reservation
    // answered 200; two decisions (the section's initialisation and the reservation).
    eventually(
        "the gateway pushes its metrics: one confirmed reservation, one 200 on /api/reservations",
        async || {
            let pushed = latest_metrics(&collected.metrics, "seatflow-gateway");
            let answered = pushed.as_ref().and_then(|p| {
                histogram_count(
                    p,
                    "seatflow_http_request_duration_seconds",
                    &[("route", "/api/reservations"), ("status", "200")],
                )
            });
            let confirmed = pushed.as_ref().and_then(|p| {
                number(
                    p,
                    "seatflow_reservation_requests",
                    &[("outcome", "confirmed")],
                )
            });
            (answered, confirmed) == (Some(1), Some(1.0))
        },
    )
    .await;
    eventually(
        "the seat processor pushes its metrics: two decisions",
        async || {
            latest_metrics(&collected.metrics, "seatflow-seat-processor")
                .and_then(|p| histogram_count(&p, "seatflow_seat_processor_decision_seconds", &[]))
                == Some(2)
        },
    )
    .await;
    let gateway = latest_metrics(&collected.metrics, "seatflow-gateway").expect("pushed");
    let instance = resource_attribute(&gateway, "service.instance.id");
    assert!(
        instance.as_deref().is_some_and(|id| !id.is_empty()),
        "every push names its instance: {instance:?}"
    );

    assert!(
        latest_metrics(&collected.metrics, "seatflow-projector").is_none(),
        "the projector's interval has not passed"
    );
    // The requests sent without a `traceparent` (readiness polls, the event's creation) drew
    // no trace at this sampler: the gateway made no span for them, so every span it exported
    // is of the caller's trace.
    let trace_id = hex_bytes(TRACE_ID);
    let gateway_traces = traces_exported(&collected.traces, "seatflow-gateway");
    assert_eq!(
        gateway_traces,
        std::collections::BTreeSet::from([trace_id]),
        "the gateway traced only the request that asked for it"
    );

    let projector = &mut children.0[2];
    kill(projector, "-TERM");
    let _ = projector.wait();
    let last = latest_metrics(&collected.metrics, "seatflow-projector")
        .expect("the projector pushes its metrics once more when it ends");
    assert_eq!(
        number(
            &last,
            "seatflow_projector_lag_seconds",
            &[("projection", "redis")]
        ),
        Some(0.0),
        "caught up when it stopped"
    );
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// The trace ids of every span a service exported.
fn traces_exported(received: &Received, service: &str) -> std::collections::BTreeSet<Vec<u8>> {
    received
        .lock()
        .iter()
        .map(|body| ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf"))
        .flat_map(|request| request.resource_spans)
        .filter(|spans| {
            spans
                .resource
                .as_ref()
                .and_then(|r| text(&r.attributes, "service.name"))
                .as_deref()
                == Some(service)
        })
        .flat_map(|spans| spans.scope_spans)
        .flat_map(|scope| scope.spans)
        .map(|span| span.trace_id)
        .collect()
}

/// The newest metrics push of a service.
fn latest_metrics(received: &Received, service: &str) -> Option<ExportMetricsServiceRequest> {
    received
        .lock()
        .iter()
        .rev()
        .map(|body| ExportMetricsServiceRequest::decode(body.as_slice()).expect("OTLP protobuf"))
        .find(|request| resource_attribute(request, "service.name").as_deref() == Some(service))
}

fn resource_attribute(request: &ExportMetricsServiceRequest, key: &str) -> Option<String> {
    let resource = request.resource_metrics.first()?.resource.as_ref()?;
    text(&resource.attributes, key)
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
        .and_then(|value| match value {
            any_value::Value::StringValue(text) => Some(text.clone()),
            _ => None,
        })
}

fn named<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
}

fn labelled(attributes: &[KeyValue], labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(key, value)| text(attributes, key).as_deref() == Some(*value))
}

/// A counter's or gauge's value at the labels.
fn number(
    request: &ExportMetricsServiceRequest,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let points = match named(request, name)?.data.as_ref()? {
        metric::Data::Sum(sum) => &sum.data_points,
        metric::Data::Gauge(gauge) => &gauge.data_points,
        _ => return None,
    };
    let point = points.iter().find(|p| labelled(&p.attributes, labels))?;
    match point.value? {
        number_data_point::Value::AsInt(n) => Some(n as f64),
        number_data_point::Value::AsDouble(x) => Some(x),
    }
}

/// A histogram's count at the labels, checked against its buckets.
fn histogram_count(
    request: &ExportMetricsServiceRequest,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<u64> {
    let metric::Data::Histogram(histogram) = named(request, name)?.data.as_ref()? else {
        return None;
    };
    let point = histogram
        .data_points
        .iter()
        .find(|p| labelled(&p.attributes, labels))?;
    assert_eq!(
        point.bucket_counts.iter().sum::<u64>(),
        point.count,
        "{name}: the buckets count every observation once"
    );
    assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
    Some(point.count)
}

/// A record the seat processor or a projector cannot read is logged with the trace id of the
/// request that wrote it — sampled or not, with or without a collector — so a log search by
/// trace id finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_record_is_logged_with_its_trace_id() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer};

    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("logtrace").await;
    let disk = tempfile::tempdir().expect("dir");
    let logs = |name: &str| {
        let path = disk.path().join(name);
        (path.clone(), std::fs::File::create(path).expect("log file"))
    };
    let (processor_log, processor_file) = logs("seat-processor.log");
    let (projector_log, projector_file) = logs("projector.log");
    let json_logs = [("SEATFLOW_LOG_FORMAT", "json"), ("RUST_LOG", "warn")];
    let prefix = format!("logtrace-{}", uuid::Uuid::now_v7().simple());
    let _children = Children(vec![
        sale.processor_command(&disk.path().join("data"), "p0", &[])
            .envs(json_logs)
            .stderr(processor_file)
            .spawn()
            .expect("seat processor starts"),
        seatflow_with(&sale.topics, &redis_env(&redis_url(), &prefix))
            .arg("projector")
            .envs(json_logs)
            .stderr(projector_file)
            .spawn()
            .expect("projector starts"),
    ]);

    // Unsampled (`-00`): no span is recorded anywhere, the log line still names the trace.
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-00");
    for topic in ["reservation-commands", "section-status"] {
        let topic = sale.topics.name(topic);
        sale.producer
            .send(
                BaseRecord::to(&topic)
                    .partition(0)
                    .key("x")
                    .payload(b"not a record".as_slice())
                    .headers(OwnedHeaders::new().insert(Header {
                        key: "traceparent",
                        value: Some(traceparent.as_str()),
                    })),
            )
            .expect("send");
    }
    sale.producer.flush(Duration::from_secs(10)).expect("flush");

    for (log, message) in [
        (&processor_log, "command to dead-letter"),
        (&projector_log, "record skipped"),
    ] {
        eventually(
            &format!("{} logs {message:?} with the trace id", log.display()),
            async || {
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                    .any(|line| {
                        line["fields"]["message"] == message
                            && line["fields"]["trace_id"] == TRACE_ID
                    })
            },
        )
        .await;
    }
}
