//! The exact per-user limit over HTTP on the embedded default: `maxSeatsPerUser` is echoed and
//! checked, one user's concurrent requests over several sections never hold more than it, and
//! what a user gives back (cancel, expiry) is theirs to use again.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const SECTIONS: [&str; 4] = ["A", "B", "C", "D"];

/// An event of four 2 x 10 sections limited to `limit` seats per user, held `hold_seconds`.
async fn limited_event(app: &TestApp, limit: u32, hold_seconds: u32) -> String {
    let sections: Vec<Value> = SECTIONS
        .iter()
        .map(|s| json!({"section": s, "rows": 2, "seatsPerRow": 10}))
        .collect();
    let (status, event) = app
        .post(
            "/api/events",
            &json!({
                "name": "Limited night",
                "holdSeconds": hold_seconds,
                "maxSeatsPerUser": limit,
                "sections": sections
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    assert_eq!(event["maxSeatsPerUser"], limit, "{event}");
    event["eventId"].as_str().expect("eventId").to_owned()
}

/// `user` asks for `count` seats in `section` under its own idempotency key; the answer.
async fn reserve_keyed(
    app: &TestApp,
    event: &str,
    section: &str,
    user: &str,
    count: u32,
    key: &str,
) -> Value {
    reserve_with(&app.client, &app.address, event, section, user, count, key).await
}

async fn reserve_with(
    client: &reqwest::Client,
    address: &str,
    event: &str,
    section: &str,
    user: &str,
    count: u32,
    key: &str,
) -> Value {
    let response = client
        .post(format!("{address}/api/reservations?wait=5000"))
        .header("Idempotency-Key", key)
        .json(&json!({"eventId": event, "section": section, "userId": user, "seatCount": count}))
        .send()
        .await
        .expect("reserve");
    let (status, body) = crate::helpers::read(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The seats `user` holds (HELD or CONFIRMED) by their history.
async fn seats_held(app: &TestApp, user: &str) -> u64 {
    let (status, body) = app
        .get(&format!("/api/users/{user}/reservations?limit=100"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .expect("reservations")
        .iter()
        .filter(|r| r["status"] == "HELD" || r["status"] == "CONFIRMED")
        .map(|r| r["seats"].as_array().map_or(0, Vec::len) as u64)
        .sum()
}

#[tokio::test]
async fn the_sale_rules_are_echoed_and_bad_ones_named() {
    let app = spawn_app().await;
    let (status, plain) = app
        .post(
            "/api/events",
            &json!({"name": "Plain", "sections": [{"section": "A", "rows": 1, "seatsPerRow": 4}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert!(plain.get("maxSeatsPerUser").is_none(), "{plain}");
    assert_eq!(plain["avoidSingleSeats"], true, "{plain}");

    let (status, limited) = app
        .post(
            "/api/events",
            &json!({"name": "Limited", "maxSeatsPerUser": 6, "avoidSingleSeats": false,
                    "sections": [{"section": "A", "rows": 1, "seatsPerRow": 4}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{limited}");
    assert_eq!(limited["maxSeatsPerUser"], 6);
    assert_eq!(limited["avoidSingleSeats"], false);

    for bad in [json!(0), json!(101), json!(-1), json!("four")] {
        let (status, body) = app
            .post(
                "/api/events",
                &json!({"name": "Bad", "maxSeatsPerUser": bad,
                        "sections": [{"section": "A", "rows": 1, "seatsPerRow": 4}]}),
            )
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {status} {body}"
        );
        assert_eq!(body["field"], "maxSeatsPerUser", "{bad}: {body}");
    }
    let (status, body) = app
        .post(
            "/api/events",
            &json!({"name": "Bad", "avoidSingleSeats": "yes",
                    "sections": [{"section": "A", "rows": 1, "seatsPerRow": 4}]}),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(body["field"], "avoidSingleSeats", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn one_users_concurrent_requests_over_four_sections_never_hold_more_than_the_limit() {
    const LIMIT: u64 = 5;
    let app = spawn_app().await;
    let event = limited_event(&app, LIMIT as u32, 600).await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..40usize {
        let (client, address, event) = (app.client.clone(), app.address.clone(), event.clone());
        requests.spawn(async move {
            let section = SECTIONS[i % SECTIONS.len()];
            let count = 2;
            reserve_with(
                &client,
                &address,
                &event,
                section,
                "scalper",
                count,
                &format!("k{i}"),
            )
            .await
        });
    }
    let answers: Vec<Value> = requests.join_all().await;
    // A user's retries in one section are answered with the reservation they hold there: count
    // each reservation once.
    let mut distinct: std::collections::HashMap<String, &Value> = Default::default();
    for answer in &answers {
        distinct.insert(answer["reservationId"].to_string(), answer);
    }
    let held: u64 = distinct
        .values()
        .filter(|a| a["status"] == "HELD")
        .map(|a| a["seats"].as_array().map_or(0, Vec::len) as u64)
        .sum();
    let over = answers
        .iter()
        .filter(|a| a["status"] == "REJECTED" && a["reason"] == "user_limit_exceeded")
        .count();
    assert!(held <= LIMIT, "{held} seats held: {answers:?}");
    assert!(held >= LIMIT - 1, "the limit is used, not wasted: {held}");
    assert!(over > 0, "{answers:?}");
    assert_eq!(seats_held(&app, "scalper").await, held);
    // Another user is not limited by the scalper.
    let other = reserve_keyed(&app, &event, "D", "fan", 2, "fan-1").await;
    assert_eq!(other["status"], "HELD", "{other}");
    app.stop().await;
}

#[tokio::test]
async fn seats_given_back_by_cancel_or_expiry_can_be_reserved_again() {
    let app = spawn_app().await;
    let event = limited_event(&app, 4, 1).await;
    let first = reserve_keyed(&app, &event, "A", "u1", 4, "a").await;
    assert_eq!(first["status"], "HELD", "{first}");
    let over = reserve_keyed(&app, &event, "B", "u1", 1, "b").await;
    assert_eq!(over["reason"], "user_limit_exceeded", "{over}");

    // The hold expires (1 s); its seats leave the user's quota on the section's clock.
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        let again = reserve_keyed(&app, &event, "B", "u1", 4, &format!("c{attempt}")).await;
        if again["status"] == "HELD" {
            break;
        }
        assert_eq!(again["reason"], "user_limit_exceeded", "{again}");
        assert!(Instant::now() < deadline, "the quota never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
