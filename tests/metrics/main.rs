//! `/metrics` after a small sale on the embedded runtime: every metric the process exports is
//! there, with the value that matches what happened. Its own test binary: the metrics are
//! process-wide, and other tests' requests would count too.

use std::collections::HashMap;

#[path = "../support/embedded.rs"]
mod embedded;

use serde_json::json;

/// `name{labels} value` lines of the exposition, by `name{labels}`.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_a_small_sale_did() {
    let dir = tempfile::tempdir().expect("dir");
    let app = embedded::start(seatflow::Config::embedded(dir.path(), 2)).await;
    let base = app.base.clone();
    let client = reqwest::Client::new();

    // One section of 2 x 3 seats: three pairs sell it out.
    let created: serde_json::Value = client
        .post(format!("{base}/api/events"))
        .json(&json!({"name": "Metrics night", "sections": [{"section": "A", "rows": 2, "seatsPerRow": 3}]}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let event = created["eventId"].as_str().expect("id");
    let post = async |body: serde_json::Value| {
        client
            .post(format!("{base}/api/reservations?wait=5000"))
            .json(&body)
            .send()
            .await
            .expect("reserve")
            .status()
            .as_u16()
    };
    let reserve = async |user: &str, count: u32| {
        post(json!({"eventId": event, "section": "A", "userId": user, "seatCount": count})).await
    };
    let mut statuses = Vec::new();
    statuses.push(reserve("ann", 3).await); // confirmed: row 1
    statuses.push(reserve("ann", 3).await); // the retry: the same reservation
    statuses.push(reserve("bob", 2).await); // confirmed: row 2
    // Decided and rejected: the picked seat is taken (one seat is left, so the pre-filter lets
    // it through).
    statuses.push(
        post(json!({"eventId": event, "section": "A", "userId": "cat", "seats": [{"row": 1, "seat": 1}]}))
            .await,
    );
    statuses.push(reserve("dan", 1).await); // confirmed: the last seat
    statuses.push(reserve("eve", 1).await); // sold out: refused by the pre-filter
    statuses.push(reserve("", 1).await); // invalid
    assert_eq!(statuses, [200, 200, 200, 200, 200, 409, 422]);

    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(
        response.headers()["content-type"],
        seatflow_telemetry::CONTENT_TYPE
    );
    let text = response.text().await.expect("text");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let found = samples(&text);
    let value = |key: &str| {
        *found
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in /metrics:\n{text}"))
    };

    for (outcome, count) in [
        ("confirmed", 3.0),
        ("deduplicated", 1.0),
        ("rejected", 1.0),
        ("prefiltered", 1.0),
        ("invalid", 1.0),
    ] {
        assert_eq!(
            value(&format!(
                "seatflow_reservation_requests_total{{outcome=\"{outcome}\"}}"
            )),
            count,
            "{outcome}"
        );
    }
    assert_eq!(value("seatflow_dedup_hits_total"), 1.0);
    let route = "route=\"/api/reservations\"";
    assert_eq!(
        value(&format!(
            "seatflow_http_request_duration_seconds_count{{{route},status=\"200\"}}"
        )),
        5.0
    );
    assert_eq!(
        value(&format!(
            "seatflow_http_request_duration_seconds_count{{{route},status=\"409\"}}"
        )),
        1.0
    );
    assert_eq!(
        value("seatflow_http_request_duration_seconds_count{route=\"/api/events\",status=\"201\"}"),
        1.0
    );
    assert_eq!(
        value("seatflow_pending_requests"),
        0.0,
        "nobody is still parked"
    );
    // Decided by the workers: the section's creation and the four reservations that became
    // commands (the retry, the refusal and the invalid request never did).
    assert_eq!(value("seatflow_seat_processor_decision_seconds_count"), 5.0);
    assert_eq!(value("seatflow_seat_processor_batch_size_sum"), 5.0);
    assert!(value("seatflow_rocksdb_write_seconds_count") >= 5.0);
    assert!(value("seatflow_rocksdb_write_seconds_sum") > 0.0);
    assert_eq!(
        value("seatflow_redis_up"),
        1.0,
        "no Redis configured: nothing down"
    );
    assert_eq!(value("seatflow_redis_failures_total"), 0.0);

    app.stop().await;
}
