//! What a hostile client tried against the old server, each now bounded with an answer naming
//! the field: an event of a million seats in one request, events by the hundred, names that
//! lie on screen, one user under two spellings, lengths counted in bytes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{call, claims, hs256, jwt_settings};
use crate::helpers::{spawn_app, spawn_with, test_config};

fn section(name: &str, rows: u32, seats: u32) -> Value {
    json!({"section": name, "rows": rows, "seatsPerRow": seats})
}

#[tokio::test]
async fn an_event_is_capped_in_seats_and_its_names_are_clean() {
    let app = spawn_app().await;
    // 1,000 sections of 1,000 x 100 seats: 100 million seats asked for in 48 KiB.
    let huge: Vec<Value> = (0..1000)
        .map(|i| section(&format!("S{i}"), 1000, 100))
        .collect();
    let (status, body) = app
        .post("/api/events", &json!({"name": "Huge", "sections": huge}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "sections", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("200000"),
        "{body}"
    );

    for (name, sections, field) in [
        ("x\u{1b}[31mred", vec![section("A", 1, 1)], "name"),
        ("nul\u{0}", vec![section("A", 1, 1)], "name"),
        ("ok", vec![section("..", 1, 1)], "sections[].section"),
        ("ok", vec![section(" ", 1, 1)], "sections[].section"),
        (
            "ok",
            vec![section("A", 1, 1), section(" A ", 1, 1)],
            "sections[].section",
        ),
    ] {
        let (status, body) = app
            .post("/api/events", &json!({"name": name, "sections": sections}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}: {body}");
        assert_eq!(body["field"], field, "{name:?}: {body}");
    }
    let (status, event) = app
        .post(
            "/api/events",
            &json!({"name": "  Die Ärzte  ", "sections": [section(" Floor ", 1, 4)]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    assert_eq!(event["name"], "Die Ärzte");
    assert_eq!(event["sections"][0]["section"], "Floor");
    let event_id = event["eventId"].as_str().expect("id").to_owned();

    // One user, however spelled; lengths in characters.
    let reserve = |user: String| json!({"eventId": event_id, "section": "Floor ", "userId": user, "seatCount": 1});
    let (status, first) = app
        .post("/api/reservations?wait=5000", &reserve("alice ".into()))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["userId"], "alice");
    let (_, history) = app.get("/api/users/alice/reservations").await;
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    let (status, body) = app
        .post("/api/reservations?wait=5000", &reserve("é".repeat(128)))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "128 two-byte characters fit: {body}"
    );
    let (status, body) = app
        .post("/api/reservations?wait=5000", &reserve("é".repeat(129)))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "userId");
    app.stop().await;
}

#[tokio::test]
async fn an_organizer_creates_a_bounded_number_of_events_per_hour() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = test_config(dir.path());
    config.auth = jwt_settings();
    config.limits.events_per_organizer_per_hour = 2;
    let app = spawn_with(config).await;
    let create = |token: String| {
        let app = &app;
        async move {
            call(
                app,
                reqwest::Method::POST,
                "/api/events",
                Some(&token),
                Some(json!({"name": "One more", "sections": [section("A", 1, 1)]})),
            )
            .await
        }
    };
    let olga = hs256(&claims("olga", &["organizer"]));
    for _ in 0..2 {
        assert_eq!(create(olga.clone()).await.0, StatusCode::CREATED);
    }
    let (status, body, _) = create(olga).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "too_many_events");
    // Another organizer has their own allowance.
    let (status, _, _) = create(hs256(&claims("oscar", &["organizer"]))).await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}
