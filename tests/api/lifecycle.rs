//! The checkout lifecycle over HTTP on the embedded default: an event with `holdSeconds` holds
//! its reservations, a confirmation in time confirms, a hold left alone expires on the
//! partition's own clock (seats back on sale, also after a restart), and every refusal has its
//! status and code.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, read, spawn_app, spawn_app_in};

/// An event of one `rows x seats` section "A" whose reservations are held `hold_seconds`.
pub(crate) async fn event_with_holds(
    app: &TestApp,
    rows: u32,
    seats: u32,
    hold_seconds: u32,
) -> String {
    let (status, event) = app
        .post(
            "/api/events",
            &json!({
                "name": "Checkout night",
                "holdSeconds": hold_seconds,
                "sections": [{"section": "A", "rows": rows, "seatsPerRow": seats}]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    assert_eq!(event["holdSeconds"], hold_seconds, "{event}");
    event["eventId"].as_str().expect("eventId").to_owned()
}

pub(crate) async fn confirm(
    app: &TestApp,
    id: &str,
    user: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/api/reservations/{id}/confirm")))
        .header("X-User-Id", user);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("confirm")).await
}

pub(crate) async fn cancel(app: &TestApp, id: &str, user: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .delete(app.url(&format!("/api/reservations/{id}")))
        .header("X-User-Id", user)
        .send()
        .await
        .expect("cancel");
    read(response).await
}

async fn available(app: &TestApp, event: &str) -> u64 {
    let (status, body) = app.get(&format!("/api/events/{event}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["sections"][0]["available"]
        .as_u64()
        .expect("available")
}

/// Poll the reservation until its status is `status` (at most `within`); its JSON.
async fn until_status(app: &TestApp, id: &str, status: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = app.get(&format!("/api/reservations/{id}")).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        if body["status"] == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after {within:?}: {body}",
            body["status"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn millis_of(timestamp: &Value) -> i64 {
    let text = timestamp.as_str().expect("a timestamp");
    let at = humantime::parse_rfc3339(text).expect("RFC 3339");
    at.duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

#[tokio::test]
async fn a_held_reservation_confirmed_in_time_is_confirmed_once() {
    let app = spawn_app().await;
    let event = event_with_holds(&app, 2, 5, 600).await;
    let (status, held) = app.reserve(&event, "A", "ann", 2).await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["status"], "HELD", "{held}");
    let hold_ends = millis_of(&held["expiresAt"]) - millis_of(&held["decidedAt"]);
    assert_eq!(hold_ends, 600_000, "{held}");
    assert_eq!(available(&app, &event).await, 8);
    let id = held["reservationId"].as_str().expect("id");

    let (status, confirmed) = confirm(&app, id, "ann", Some(json!({"paymentRef": "pay-7"}))).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["status"], "CONFIRMED");
    assert_eq!(confirmed["paymentRef"], "pay-7");
    assert!(confirmed["confirmedAt"].is_string(), "{confirmed}");
    assert!(confirmed.get("expiresAt").is_none(), "{confirmed}");
    assert_eq!(confirmed["seats"], held["seats"]);
    // Again, without a body: the same answer.
    let (status, again) = confirm(&app, id, "ann", None).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, confirmed);
    assert_eq!(available(&app, &event).await, 8);
}

#[tokio::test]
async fn a_hold_left_alone_expires_and_its_seats_are_sold_again() {
    let app = spawn_app().await;
    let event = event_with_holds(&app, 1, 2, 1).await;
    let (_, held) = app.reserve(&event, "A", "bob", 2).await;
    assert_eq!(held["status"], "HELD", "{held}");
    let id = held["reservationId"].as_str().expect("id").to_owned();
    let (status, refused) = app.reserve(&event, "A", "cat", 1).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "sold out while held: {refused}"
    );

    let expired = until_status(&app, &id, "EXPIRED", Duration::from_secs(5)).await;
    let late = millis_of(&expired["expiredAt"]) - millis_of(&held["expiresAt"]);
    assert!(
        (0..1_000).contains(&late),
        "expired {late} ms after its hold's end: {expired}"
    );
    assert_eq!(available(&app, &event).await, 2);
    // Too late to confirm or cancel; the seats go to the next buyer.
    let (status, body) = confirm(&app, &id, "bob", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "hold_expired", "{body}");
    let (status, body) = cancel(&app, &id, "bob").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "not_cancellable", "{body}");
    let (status, sold_again) = app.reserve(&event, "A", "cat", 2).await;
    assert_eq!(status, StatusCode::OK, "{sold_again}");
    assert_eq!(sold_again["seats"], held["seats"]);
    // The same user asking again gets new seats, not the expired reservation.
    let (status, bob_again) = app.reserve(&event, "A", "bob", 1).await;
    assert_eq!(status, StatusCode::CONFLICT, "{bob_again}");
    assert_eq!(bob_again["error"], "sold_out", "{bob_again}");
}

#[tokio::test]
async fn cancelling_a_hold_frees_its_seats_and_it_cannot_be_confirmed_after() {
    let app = spawn_app().await;
    let event = event_with_holds(&app, 1, 4, 600).await;
    let (_, held) = app.reserve(&event, "A", "dan", 3).await;
    let id = held["reservationId"].as_str().expect("id");
    let (status, cancelled) = cancel(&app, id, "dan").await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(available(&app, &event).await, 4);
    let (status, body) = confirm(&app, id, "dan", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "not_confirmable", "{body}");
}

#[tokio::test]
async fn a_confirmation_is_refused_with_the_status_and_field_at_fault() {
    let app = spawn_app().await;
    let event = event_with_holds(&app, 1, 4, 600).await;
    let (_, held) = app.reserve(&event, "A", "eve", 1).await;
    let id = held["reservationId"].as_str().expect("id");
    let (status, body) = confirm(&app, id, "mallory", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let unknown = uuid::Uuid::now_v7().to_string();
    let (status, body) = confirm(&app, &unknown, "eve", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = confirm(&app, "not-an-id", "eve", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "reservationId", "{body}");
    let long = "p".repeat(129);
    let (status, body) = confirm(&app, id, "eve", Some(json!({"paymentRef": long}))).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(body["field"], "paymentRef", "{body}");
    let (status, body) = confirm(&app, id, "eve", Some(json!({"paymentReference": "x"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Nothing of that changed the hold.
    let (_, still) = app.get(&format!("/api/reservations/{id}")).await;
    assert_eq!(still["status"], "HELD", "{still}");
}

#[tokio::test]
async fn hold_seconds_out_of_range_is_refused_naming_the_field() {
    let app = spawn_app().await;
    for bad in [json!(-1), json!(3_601), json!("ten"), json!(1.5)] {
        let (status, body) = app
            .post(
                "/api/events",
                &json!({"name": "x", "holdSeconds": bad, "sections": [{"section": "A", "rows": 1, "seatsPerRow": 1}]}),
            )
            .await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
        assert_eq!(body["field"], "holdSeconds", "{bad}: {body}");
    }
    // Absent or 0: confirmed when decided, as before.
    for policy in [json!({}), json!({"holdSeconds": 0})] {
        let mut request =
            json!({"name": "x", "sections": [{"section": "A", "rows": 1, "seatsPerRow": 2}]});
        request
            .as_object_mut()
            .expect("object")
            .extend(policy.as_object().expect("object").clone());
        let (status, event) = app.post("/api/events", &request).await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
        assert_eq!(event["holdSeconds"], 0, "{event}");
        let id = event["eventId"].as_str().expect("id");
        let (_, reservation) = app.reserve(id, "A", "fay", 1).await;
        assert_eq!(reservation["status"], "CONFIRMED", "{reservation}");
        assert!(reservation["confirmedAt"].is_string(), "{reservation}");
    }
}

#[tokio::test]
async fn a_hold_that_ended_while_the_server_was_down_expires_when_it_is_back() {
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_app_in(dir.path()).await;
    let event = event_with_holds(&app, 1, 3, 1).await;
    let (_, held) = app.reserve(&event, "A", "gus", 3).await;
    assert_eq!(held["status"], "HELD", "{held}");
    let id = held["reservationId"].as_str().expect("id").to_owned();
    app.stop().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let app = spawn_app_in(dir.path()).await;
    let expired = until_status(&app, &id, "EXPIRED", Duration::from_secs(5)).await;
    assert!(expired["expiredAt"].is_string(), "{expired}");
    assert_eq!(available(&app, &event).await, 3);
    // Once: another restart finds it expired and the seats free.
    app.stop().await;
    let app = spawn_app_in(dir.path()).await;
    let (_, again) = app.get(&format!("/api/reservations/{id}")).await;
    assert_eq!(again, expired);
    assert_eq!(available(&app, &event).await, 3);
}
