//! The waitlist over HTTP on the embedded default: a request that asks to wait is WAITLISTED
//! when its section has no room, becomes HELD when seats come back, can be cancelled, and is
//! refused `waitlist_full` beyond the configured bound.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_with, test_config};

async fn one_section(app: &TestApp, seats: u32) -> String {
    let (status, event) = app
        .post(
            "/api/events",
            &json!({"name": "Waiting night", "holdSeconds": 600,
                    "sections": [{"section": "A", "rows": 1, "seatsPerRow": seats}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    event["eventId"].as_str().expect("eventId").to_owned()
}

async fn reserve(app: &TestApp, event: &str, user: &str, count: u32, wait: bool) -> Value {
    let (status, body) = app
        .post(
            "/api/reservations?wait=5000",
            &json!({"eventId": event, "section": "A", "userId": user, "seatCount": count,
                    "waitlist": wait}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn cancel(app: &TestApp, id: &str, user: &str) -> Value {
    let response = app
        .client
        .delete(app.url(&format!("/api/reservations/{id}")))
        .header("X-User-Id", user)
        .send()
        .await
        .expect("cancel");
    let (status, body) = crate::helpers::read(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn until_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = app.get(&format!("/api/reservations/{id}")).await;
        if body["status"] == status {
            return body;
        }
        assert!(Instant::now() < deadline, "never {status}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn id(body: &Value) -> String {
    body["reservationId"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_waiting_request_is_held_when_seats_come_back_in_order() {
    let app = spawn_app().await;
    let event = one_section(&app, 4).await;
    let all = reserve(&app, &event, "first", 4, false).await;
    assert_eq!(all["status"], "HELD", "{all}");

    // Sold out: a plain request is refused at once, one that asks to wait waits in order.
    let (status, refused) = app
        .post(
            "/api/reservations?wait=5000",
            &json!({"eventId": event, "section": "A", "userId": "plain", "seatCount": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let early = reserve(&app, &event, "early", 3, true).await;
    assert_eq!(early["status"], "WAITLISTED", "{early}");
    assert!(early.get("reason").is_none(), "{early}");
    let late = reserve(&app, &event, "late", 2, true).await;
    assert_eq!(late["status"], "WAITLISTED", "{late}");
    // Each knows its place in the line, the earlier one first.
    let place = |body: &Value| body["waitlistPlace"].as_i64().expect("waitlistPlace");
    assert!(place(&early) < place(&late), "{early} {late}");
    assert!(all.get("waitlistPlace").is_none(), "{all}");
    // A retry finds the waiting reservation.
    let again = reserve(&app, &event, "late", 2, true).await;
    assert_eq!(again["reservationId"], late["reservationId"]);

    cancel(&app, &id(&all), "first").await;
    let held = until_status(&app, &id(&early), "HELD").await;
    assert_eq!(held["seats"].as_array().expect("seats").len(), 3);
    assert!(held["expiresAt"].is_string(), "{held}");
    assert_eq!(
        held["waitlistPlace"], early["waitlistPlace"],
        "the place is kept: {held}"
    );
    // One seat is left: the late request for two keeps waiting, and can be cancelled.
    let (_, still) = app.get(&format!("/api/reservations/{}", id(&late))).await;
    assert_eq!(still["status"], "WAITLISTED", "{still}");
    let cancelled = cancel(&app, &id(&late), "late").await;
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
    app.stop().await;
}

#[tokio::test]
async fn waiting_is_bounded_and_only_for_a_seat_count() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = test_config(dir.path());
    config.processor.waitlist_per_section = 1;
    let app = spawn_with(config).await;
    let event = one_section(&app, 2).await;
    reserve(&app, &event, "first", 2, false).await;
    let waiting = reserve(&app, &event, "w1", 1, true).await;
    assert_eq!(waiting["status"], "WAITLISTED", "{waiting}");
    let full = reserve(&app, &event, "w2", 1, true).await;
    assert_eq!(full["status"], "REJECTED", "{full}");
    assert_eq!(full["reason"], "waitlist_full", "{full}");

    let (status, body) = app
        .post(
            "/api/reservations",
            &json!({"eventId": event, "section": "A", "userId": "picky",
                    "seats": [{"row": 1, "seat": 1}], "waitlist": true}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "waitlist", "{body}");
    app.stop().await;
}
