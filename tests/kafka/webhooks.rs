//! Webhooks on Kafka: registered through a gateway (kept in the audit database), queued by the
//! projector from `reservation-completed` and posted from there. The receiver is down at first
//! and the projector is killed mid-delivery and restarted: every decision still reaches the
//! receiver, in order per reservation, each delivery under one id however often it is posted.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::receiver::{Answer, Receiver};
use super::{
    Children, ONE_AT_A_TIME, Sale, create_event, free_port, fresh_database, gateway_with, kill,
    post, projector_with, wait_ready,
};

const RETRY_FAST: [(&str, &str); 2] = [
    ("SEATFLOW_WEBHOOKS_FIRST_RETRY_MS", "100"),
    ("SEATFLOW_WEBHOOKS_MAX_RETRY_MS", "400"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_reaches_the_receiver_across_an_outage_and_a_projector_crash() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (database_url, _store) = fresh_database().await;
    let sale = Sale::without_event("webhooks").await;
    let topics = sale.topics.clone();
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut children = Children(vec![
        sale.processor(disk.path(), "p0"),
        gateway_with(
            &topics,
            "gw-a",
            0,
            port,
            &[
                ("SEATFLOW_DATABASE_URL", database_url.as_str()),
                ("SEATFLOW_WEBHOOKS_ALLOW_PRIVATE_URLS", "true"),
            ],
        ),
        projector_with(&topics, &database_url, &RETRY_FAST),
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let event = create_event(
        &client,
        &base,
        "Webhook night",
        json!([{"section": "A", "rows": 1, "seatsPerRow": 6}]),
    )
    .await;
    // Down for its first 4 posts.
    let receiver = Receiver::start(|n| {
        if n < 4 {
            Answer::Status(503)
        } else {
            Answer::Status(200)
        }
    })
    .await;
    // The projector creates the tables: a registration before that is answered 503.
    let deadline = Instant::now() + Duration::from_secs(60);
    let webhook = loop {
        let (status, answer) = post(
            &client,
            format!("{base}/api/webhooks"),
            json!({"url": receiver.url, "eventId": event,
                   "events": ["reservation.confirmed", "reservation.cancelled", "section.sold_out"]}),
        )
        .await;
        if status == 201 {
            break answer;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(
            Instant::now() < deadline,
            "the webhook tables never appeared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let secret = webhook["secret"].as_str().expect("secret").to_owned();

    let mut expected: Vec<(String, String)> = Vec::new();
    let mut reservations = Vec::new();
    for user in 0..6 {
        let (status, outcome) = post(
            &client,
            format!("{base}/api/reservations?wait=10000"),
            json!({"eventId": event, "section": "A", "userId": format!("fan-{user}"), "seatCount": 1}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["status"], "CONFIRMED");
        let id = outcome["reservationId"].as_str().expect("id").to_owned();
        expected.push(("reservation.confirmed".into(), id.clone()));
        reservations.push(id);
        if user == 2 {
            // The projector dies with deliveries queued and the receiver still down.
            receiver
                .until(Duration::from_secs(20), |posts| !posts.is_empty())
                .await;
            kill(&mut children.0[2], "-KILL");
        }
    }
    expected.push(("section.sold_out".into(), "A".into()));
    let cancelled = &reservations[0];
    let response = client
        .delete(format!("{base}/api/reservations/{cancelled}"))
        .header("X-User-Id", "fan-0")
        .send()
        .await
        .expect("cancel");
    assert_eq!(response.status().as_u16(), 200);
    expected.push(("reservation.cancelled".into(), cancelled.clone()));
    children.0[2] = projector_with(&topics, &database_url, &RETRY_FAST);

    let delivered_ids = |posts: &[super::receiver::Post]| {
        posts
            .iter()
            .filter(|p| p.answered == 200)
            .map(|p| p.delivery.clone())
            .collect::<HashSet<_>>()
    };
    let posts = receiver
        .until(Duration::from_secs(60), |posts| {
            delivered_ids(posts).len() >= expected.len()
        })
        .await;
    // What was told, once per delivery id, in the order each was first delivered.
    let mut seen = HashSet::new();
    let mut told: Vec<(String, String)> = Vec::new();
    let mut bodies: HashMap<String, String> = HashMap::new();
    for post in posts.iter().filter(|p| p.answered == 200) {
        assert!(post.signed_with(&secret), "{post:?}");
        let first = bodies
            .entry(post.delivery.clone())
            .or_insert(post.body.clone());
        assert_eq!(*first, post.body, "a delivery is posted with one body");
        if !seen.insert(post.delivery.clone()) {
            continue;
        }
        let body: Value = post.json();
        let subject = body["data"]["reservationId"]
            .as_str()
            .or(body["data"]["section"].as_str())
            .expect("subject")
            .to_owned();
        told.push((body["type"].as_str().expect("type").to_owned(), subject));
    }
    let mut sorted_told = told.clone();
    sorted_told.sort();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    assert_eq!(sorted_told, sorted_expected, "posts: {posts:?}");
    let first_of = |wanted: (&str, &str)| {
        told.iter()
            .position(|(t, s)| t == wanted.0 && s == wanted.1)
            .expect("told")
    };
    assert!(
        first_of(("reservation.confirmed", cancelled))
            < first_of(("reservation.cancelled", cancelled)),
        "in order per reservation: {told:?}"
    );

    let id = webhook["id"].as_str().expect("id");
    let (status, log) = {
        let response = client
            .get(format!("{base}/api/webhooks/{id}/deliveries"))
            .send()
            .await
            .expect("deliveries");
        (
            response.status().as_u16(),
            response.json::<Value>().await.expect("json"),
        )
    };
    assert_eq!(status, 200, "{log}");
    let log = log.as_array().expect("deliveries");
    assert_eq!(log.len(), expected.len(), "queued once each: {log:?}");
    assert!(
        log.iter().any(|d| d["attempts"].as_u64() > Some(1)),
        "some were retried: {log:?}"
    );
    for _ in 0..50 {
        let (_, log) = {
            let response = client
                .get(format!("{base}/api/webhooks/{id}/deliveries"))
                .send()
                .await
                .expect("deliveries");
            (0, response.json::<Value>().await.expect("json"))
        };
        if log
            .as_array()
            .expect("deliveries")
            .iter()
            .all(|d| d["status"] == "DELIVERED")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deliveries not all recorded DELIVERED");
}
