//! Traces across the processes: an HTTP request's trace (its `traceparent`) continues through
//! the command record into the seat processor and through the outcome record into the
//! projector, and each process exports its spans by OTLP to the configured collector — here a
//! stand-in that keeps what it receives.

use std::sync::Arc;

use parking_lot::Mutex;
use poem::{EndpointExt, handler, post};

use super::redis::{borrowed, eventually, redis_env, redis_projector, redis_url};
use super::{Children, ONE_AT_A_TIME, Sale, create_event, free_port, gateway_with, wait_ready};

/// The client's trace: sampled (`-01`), so every process records its part of it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

type Received = Arc<Mutex<Vec<Vec<u8>>>>;

#[handler]
fn collect(body: Vec<u8>, received: poem::web::Data<&Received>) -> poem::Response {
    received.lock().push(body);
    poem::Response::builder()
        .content_type("application/x-protobuf")
        .body(Vec::<u8>::new())
}

/// An OTLP/HTTP trace receiver on a free port: every export request's body, as received.
async fn stand_in_collector() -> (String, Received) {
    let port = free_port();
    let received: Received = Arc::default();
    let app = poem::Route::new()
        .at("/v1/traces", post(collect))
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
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    received.lock().iter().any(|body| {
        body.windows(service.len()).any(|w| w == service.as_bytes())
            && body.windows(16).any(|w| w == trace_id.as_slice())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_from_the_gateway_to_the_seat_processor_and_the_projector() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (collector, received) = stand_in_collector().await;
    let sale = Sale::without_event("otel").await;
    let topics = sale.topics.clone();
    let otel = |service: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.clone()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
            // Only traces the caller sampled: a span here proves the context travelled.
            ("OTEL_TRACES_SAMPLER", "parentbased_always_off".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ]
    };
    let prefix = format!("otel-{}", uuid::Uuid::now_v7().simple());
    let mut projector_env = redis_env(&redis_url(), &prefix);
    projector_env.extend(otel("seatflow-projector"));
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let _children = Children(vec![
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
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let event_id = create_event(
        &client,
        &base,
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
            async || exported(&received, service),
        )
        .await;
    }
}
