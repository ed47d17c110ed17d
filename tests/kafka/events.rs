//! Creating an event on Kafka when nothing decides it in time: the creation is still in the
//! command log, and a retry with its `Idempotency-Key` reaches that one event from any gateway.

use std::time::{Duration, Instant};

use super::{Children, ONE_AT_A_TIME, Sale, free_port, gateway, wait_ready};

async fn create(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client
        .post(format!("{base}/api/events"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// The events named `name` that the gateway at `base` lists.
async fn named(client: &reqwest::Client, base: &str, name: &str) -> Vec<serde_json::Value> {
    let events: Vec<serde_json::Value> = client
        .get(format!("{base}/api/events?limit=1000"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    events.into_iter().filter(|e| e["name"] == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_created_while_nothing_decides_is_reached_by_a_retry_with_its_key() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("keyed-event").await;
    let disk = tempfile::tempdir().expect("dir");
    let (port_a, port_b) = (free_port(), free_port());
    // No seat processor yet: the creation is logged, not decided.
    let mut children = Children(vec![
        gateway(&sale.topics, "gw-a", 0, port_a),
        gateway(&sale.topics, "gw-b", 1, port_b),
    ]);
    let client = reqwest::Client::new();
    let (a, b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    wait_ready(&client, &a).await;
    wait_ready(&client, &b).await;
    let name = "Decided later";
    let body = serde_json::json!({"name": name, "sections": [
        {"section": "A", "rows": 2, "seatsPerRow": 5},
        {"section": "B", "rows": 3, "seatsPerRow": 5},
    ]});
    let (status, answer) = create(&client, &a, "later-1", &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("Idempotency-Key")),
        "the 503 says how to retry: {answer}"
    );

    // A seat processor starts and decides what was logged; the organizer retries elsewhere.
    children.0.push(sale.processor(disk.path(), "p0"));
    let (status, created) = create(&client, &b, "later-1", &body).await;
    assert_eq!(status, 201, "{created}");
    let (status, again) = create(&client, &a, "later-1", &body).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["eventId"], created["eventId"]);
    // Both attempts' sections were decided (the first attempt's before the retry's): one
    // event, on both gateways, for as long as we look.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for base in [&a, &b] {
            let events = named(&client, base, name).await;
            assert_eq!(events.len(), 1, "{events:?}");
            assert_eq!(events[0]["eventId"], created["eventId"]);
            assert_eq!(events[0]["sections"].as_array().map(Vec::len), Some(2));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
