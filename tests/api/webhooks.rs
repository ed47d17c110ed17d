//! Webhooks on the embedded default: registration (validated, the secret shown once, owned),
//! deliveries signed and in order per reservation, retries until a failing receiver is back
//! (also across a restart), 410 disabling, and a slow receiver holding up no other.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, read, spawn_with, test_config};
use crate::lifecycle::{cancel, confirm, event_with_holds};
use crate::receiver::{Answer, Post, Receiver};

/// A server that may post to loopback receivers, retrying fast.
async fn spawn(dir: &std::path::Path) -> TestApp {
    let mut config = test_config(dir);
    config.webhooks.allow_private_urls = true;
    config.webhooks.first_retry_ms = 100;
    config.webhooks.max_retry_ms = 400;
    config.webhooks.timeout_ms = 5_000;
    config.limits.enabled = false;
    spawn_with(config).await
}

async fn register(app: &TestApp, url: &str, events: &[&str], event: Option<&str>) -> Value {
    let mut body = json!({"url": url, "events": events});
    if let Some(event) = event {
        body["eventId"] = json!(event);
    }
    let (status, webhook) = app.post("/api/webhooks", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    webhook
}

async fn reserve(app: &TestApp, event: &str, user: &str, seats: u32) -> String {
    let (status, outcome) = app.reserve(event, "A", user, seats).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    outcome["reservationId"]
        .as_str()
        .expect("reservationId")
        .to_owned()
}

/// (type, reservation id or section) of each delivered post, in arrival order.
fn told(posts: &[Post]) -> Vec<(String, String)> {
    posts
        .iter()
        .map(|post| {
            let body = post.json();
            let subject = body["data"]["reservationId"]
                .as_str()
                .or(body["data"]["section"].as_str())
                .expect("a subject")
                .to_owned();
            (body["type"].as_str().expect("type").to_owned(), subject)
        })
        .collect()
}

const ALL: [&str; 6] = [
    "reservation.held",
    "reservation.confirmed",
    "reservation.expired",
    "reservation.cancelled",
    "waitlist.promoted",
    "section.sold_out",
];

#[tokio::test]
async fn every_decision_is_posted_signed_and_in_order_per_reservation() {
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn(dir.path()).await;
    let receiver = Receiver::ok().await;
    let event = event_with_holds(&app, 1, 2, 1).await;
    let webhook = register(&app, &receiver.url, &ALL, Some(&event)).await;
    let secret = webhook["secret"].as_str().expect("the secret, once");
    assert!(secret.starts_with("whsec_"), "{webhook}");
    assert_eq!(webhook["enabled"], true);
    let id = webhook["id"].as_str().expect("id");
    let (status, shown) = app.get(&format!("/api/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown.get("secret").is_none(), "never shown again: {shown}");
    assert_eq!(shown["events"].as_array().map(Vec::len), Some(6));

    // ann holds and pays; bob holds the last seat (sold out) and lets it expire; cid takes it
    // (sold out again) and cancels.
    let ann = reserve(&app, &event, "ann", 1).await;
    let (status, _) = confirm(&app, &ann, "ann", Some(json!({"paymentRef": "p-1"}))).await;
    assert_eq!(status, StatusCode::OK);
    let bob = reserve(&app, &event, "bob", 1).await;
    let expired = app.get(&format!("/api/reservations/{bob}")).await.1.clone();
    assert_eq!(expired["status"], "HELD");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let cid = reserve(&app, &event, "cid", 1).await;
    let (status, _) = cancel(&app, &cid, "cid").await;
    assert_eq!(status, StatusCode::OK);

    let posts = receiver
        .until(Duration::from_secs(10), |posts| posts.len() >= 8)
        .await;
    let told = told(&posts);
    assert_eq!(told.len(), 8, "{told:?}");
    let of = |subject: &str| -> Vec<String> {
        told.iter()
            .filter(|(_, s)| s == subject)
            .map(|(t, _)| t.clone())
            .collect()
    };
    assert_eq!(of(&ann), ["reservation.held", "reservation.confirmed"]);
    assert_eq!(of(&bob), ["reservation.held", "reservation.expired"]);
    assert_eq!(of(&cid), ["reservation.held", "reservation.cancelled"]);
    assert_eq!(of("A"), ["section.sold_out", "section.sold_out"]);
    for post in &posts {
        assert!(post.signed_with(secret), "{post:?}");
        assert!(!post.signed_with("whsec_another"), "{post:?}");
        assert_eq!(post.topic, post.json()["type"]);
        assert_eq!(post.delivery, post.json()["id"]);
        assert_eq!(post.signature.len(), 64);
        let now = chrono::Utc::now().timestamp();
        assert!((now - post.timestamp).abs() < 30, "{}", post.timestamp);
    }
    let confirmed = posts
        .iter()
        .map(Post::json)
        .find(|body| body["type"] == "reservation.confirmed")
        .expect("a confirmation");
    assert_eq!(confirmed["data"]["paymentRef"], "p-1");
    assert_eq!(confirmed["data"]["userId"], "ann");

    // The delivery log, newest first, paged by seq.
    let (status, log) = app
        .get(&format!("/api/webhooks/{id}/deliveries?limit=5"))
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let page = log.as_array().expect("deliveries");
    assert_eq!(page.len(), 5);
    assert!(
        page.iter().all(|d| d["status"] == "DELIVERED"
            && d["attempts"] == 1
            && d["lastStatusCode"] == 200)
    );
    assert_eq!(page[0]["event"], "reservation.cancelled");
    let last = page[4]["seq"].as_i64().expect("seq");
    let (_, rest) = app
        .get(&format!("/api/webhooks/{id}/deliveries?before={last}"))
        .await;
    assert_eq!(rest.as_array().map(Vec::len), Some(3), "{rest}");
    assert_eq!(rest[2]["event"], "reservation.held");
    assert_eq!(rest[2]["payload"]["data"]["reservationId"], ann.as_str());
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_fails_gets_everything_once_it_is_back() {
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn(dir.path()).await;
    // Down for its first 6 posts (5xx, then a 429), then up.
    let receiver = Receiver::start(|n| match n {
        0..5 => Answer::Status(503),
        5 => Answer::Status(429),
        _ => Answer::Status(200),
    })
    .await;
    let event = app.create_event(&[("A", 1, 10)]).await;
    let webhook = register(&app, &receiver.url, &["reservation.confirmed"], None).await;
    let mut ids = Vec::new();
    for user in ["u1", "u2", "u3"] {
        ids.push(reserve(&app, &event, user, 1).await);
    }
    let posts = receiver
        .until(Duration::from_secs(15), |posts| {
            posts.iter().filter(|p| p.answered == 200).count() >= 3
        })
        .await;
    let delivered: Vec<String> = told(&receiver.delivered())
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let mut sorted = delivered.clone();
    sorted.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(sorted, expected, "each delivered once: {posts:?}");
    assert!(posts.len() > 3, "retried: {}", posts.len());
    // A retry is the same delivery: same id, same body.
    let mut bodies: HashMap<String, String> = HashMap::new();
    for post in &posts {
        let first = bodies
            .entry(post.delivery.clone())
            .or_insert(post.body.clone());
        assert_eq!(*first, post.body);
    }
    // The receiver answered before the deliverer wrote down its last attempt: read the log
    // once every delivery shows as delivered.
    let id = webhook["id"].as_str().expect("id");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let log = loop {
        let (_, log) = app.get(&format!("/api/webhooks/{id}/deliveries")).await;
        let log = log.as_array().expect("deliveries").clone();
        let settled = log.len() == 3 && log.iter().all(|d| d["status"] == "DELIVERED");
        if settled || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(log.len(), 3);
    let attempts: u64 = log.iter().map(|d| d["attempts"].as_u64().expect("n")).sum();
    assert_eq!(attempts as usize, posts.len(), "{log:?}");
    assert!(log.iter().all(|d| d["status"] == "DELIVERED"), "{log:?}");
    app.stop().await;
}

#[tokio::test]
async fn queued_deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn(dir.path()).await;
    let receiver = Receiver::start(|_| Answer::Status(500)).await;
    let event = app.create_event(&[("A", 1, 10)]).await;
    register(&app, &receiver.url, &["reservation.confirmed"], None).await;
    let id = reserve(&app, &event, "u1", 1).await;
    receiver
        .until(Duration::from_secs(5), |posts| !posts.is_empty())
        .await;
    app.stop().await;

    receiver.answer(|_| Answer::Status(200));
    let app = spawn(dir.path()).await;
    receiver
        .until(Duration::from_secs(10), |posts| {
            posts.iter().any(|p| p.answered == 200)
        })
        .await;
    let delivered = told(&receiver.delivered());
    assert_eq!(
        delivered,
        [("reservation.confirmed".to_owned(), id)],
        "{:?}",
        receiver.posts()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_answering_410_disables_its_webhook() {
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn(dir.path()).await;
    let receiver = Receiver::start(|_| Answer::Status(410)).await;
    let event = app.create_event(&[("A", 1, 10)]).await;
    let webhook = register(&app, &receiver.url, &["reservation.confirmed"], None).await;
    let id = webhook["id"].as_str().expect("id");
    reserve(&app, &event, "u1", 1).await;
    receiver
        .until(Duration::from_secs(5), |posts| !posts.is_empty())
        .await;
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = app.get(&format!("/api/webhooks/{id}")).await.1;
        if shown["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shown["enabled"], false, "{shown}");
    assert!(
        shown["disabledReason"]
            .as_str()
            .is_some_and(|r| r.contains("410"))
    );
    reserve(&app, &event, "u2", 1).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(receiver.posts().len(), 1, "nothing more is posted");
    let (_, log) = app.get(&format!("/api/webhooks/{id}/deliveries")).await;
    let statuses: Vec<&str> = log
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["status"].as_str().expect("status"))
        .collect();
    // A disabled webhook is not queued anything more.
    assert_eq!(statuses, ["GONE"], "{log}");
    app.stop().await;
}

#[tokio::test]
async fn a_slow_receiver_does_not_hold_up_another() {
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn(dir.path()).await;
    let slow = Receiver::start(|_| Answer::Slow(Duration::from_secs(3))).await;
    let fast = Receiver::ok().await;
    let event = app.create_event(&[("A", 1, 10)]).await;
    register(&app, &slow.url, &["reservation.confirmed"], None).await;
    register(&app, &fast.url, &["reservation.confirmed"], None).await;
    let started = std::time::Instant::now();
    for user in ["u1", "u2", "u3", "u4", "u5", "u6"] {
        reserve(&app, &event, user, 1).await;
    }
    let posts = fast
        .until(Duration::from_secs(10), |posts| posts.len() >= 6)
        .await;
    assert_eq!(posts.len(), 6);
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "the fast receiver had everything after {:?}",
        started.elapsed()
    );
    assert!(slow.posts().is_empty(), "the slow one is still answering");
    app.stop().await;
}

#[tokio::test]
async fn a_registration_is_checked_and_a_webhook_is_its_organizer_s() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = test_config(dir.path());
    config.auth = crate::auth::jwt_settings();
    config.limits.enabled = false;
    let app = spawn_with(config).await;
    let org = crate::auth::hs256(&crate::auth::claims("org-1", &["organizer"]));
    let other = crate::auth::hs256(&crate::auth::claims("org-2", &["organizer"]));
    let buyer = crate::auth::hs256(&crate::auth::claims("buyer", &[]));
    let call = async |method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
        let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    };
    let hook = |url: &str| json!({"url": url, "events": ["reservation.held"]});
    for (body, status, field) in [
        (hook("ftp://hooks.example.com/x"), 422, "url"),
        (hook("not a url"), 422, "url"),
        (hook("http://127.0.0.1:9/hook"), 422, "url"),
        (hook("http://169.254.169.254/latest"), 422, "url"),
        (
            json!({"url": "https://hooks.example.com/x", "events": []}),
            422,
            "events",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": ["reservation.held", "seat.sold"]}),
            400,
            "events[1]",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": ["reservation.held"], "eventId": "6b0e7f5e-0000-7000-8000-000000000000"}),
            404,
            "eventId",
        ),
    ] {
        let (got, answer) = call(reqwest::Method::POST, "/api/webhooks", &org, Some(body)).await;
        assert_eq!(got.as_u16(), status, "{answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let (status, _) = call(
        reqwest::Method::POST,
        "/api/webhooks",
        &buyer,
        Some(hook("https://hooks.example.com/x")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, created) = call(
        reqwest::Method::POST,
        "/api/webhooks",
        &org,
        Some(hook("https://hooks.example.com/x")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id");
    let path = format!("/api/webhooks/{id}");
    // Another organizer neither sees nor removes it.
    let (status, _) = call(reqwest::Method::GET, &path, &other, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(reqwest::Method::DELETE, &path, &other, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = call(reqwest::Method::GET, "/api/webhooks", &other, None).await;
    assert_eq!(listed, json!([]));
    let (_, listed) = call(reqwest::Method::GET, "/api/webhooks", &org, None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let (status, _) = call(
        reqwest::Method::GET,
        &format!("{path}/deliveries"),
        &other,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Its organizer removes it.
    let (status, _) = call(reqwest::Method::DELETE, &path, &org, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = call(reqwest::Method::GET, &path, &org, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"], "unknown_webhook");
    app.stop().await;
}
