//! Creating an event again with an `Idempotency-Key`: the same event, never a second one; the
//! same key with other settings is refused.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{claims, hs256, jwt_settings, spawn_auth};
use crate::helpers::{TestApp, read, spawn_app};

fn concert(rows: u32) -> Value {
    json!({"name": "Spring tour", "holdSeconds": 0, "sections": [
        {"section": "A", "rows": rows, "seatsPerRow": 10},
        {"section": "B", "rows": 2, "seatsPerRow": 5},
    ]})
}

async fn create(
    app: &TestApp,
    body: &Value,
    key: Option<&str>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = app.client.post(app.url("/api/events")).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    read(request.send().await.expect("request")).await
}

async fn event_count(app: &TestApp) -> usize {
    let (status, events) = app.get("/api/events").await;
    assert_eq!(status, StatusCode::OK, "{events}");
    events.as_array().expect("a list").len()
}

#[tokio::test]
async fn an_event_created_again_with_its_idempotency_key_is_the_same_event() {
    let app = spawn_app().await;
    let (status, first) = create(&app, &concert(3), Some("tour-2027"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let event_id = first["eventId"].as_str().expect("eventId").to_owned();
    let (status, sold) = app.reserve(&event_id, "A", "fan-1", 2).await;
    assert_eq!(status, StatusCode::OK, "{sold}");

    // The answer was lost, say: the organizer sends the same creation again.
    let (status, again) = create(&app, &concert(3), Some("tour-2027"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["eventId"], first["eventId"]);
    assert_eq!(
        again["sections"][0]["available"], 28,
        "the event as it is now"
    );
    assert_eq!(event_count(&app).await, 1, "no second event");

    // Without a key, every creation is a new event.
    let (status, other) = create(&app, &concert(3), None, None).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_ne!(other["eventId"], first["eventId"]);
    assert_eq!(event_count(&app).await, 2);
}

#[tokio::test]
async fn an_idempotency_key_used_again_with_other_settings_is_422() {
    let app = spawn_app().await;
    let (status, first) = create(&app, &concert(3), Some("k1"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let event_id = first["eventId"].as_str().expect("eventId");

    let mut renamed = concert(3);
    renamed["name"] = json!("Autumn tour");
    let mut longer_hold = concert(3);
    longer_hold["holdSeconds"] = json!(600);
    let mut fewer_sections = concert(3);
    fewer_sections["sections"] = json!([{"section": "A", "rows": 3, "seatsPerRow": 10}]);
    for other in [concert(4), renamed, longer_hold, fewer_sections] {
        let (status, body) = create(&app, &other, Some("k1"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}: {body}");
        assert_eq!(body["error"], "invalid_value", "{body}");
        assert_eq!(body["field"], "Idempotency-Key", "{body}");
        assert!(
            body["message"]
                .as_str()
                .expect("message")
                .contains(event_id),
            "{body}"
        );
    }
    assert_eq!(event_count(&app).await, 1);

    // Bounded like a reservation's key.
    let (status, body) = create(&app, &concert(3), Some(&"k".repeat(129)), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "Idempotency-Key", "{body}");
}

#[tokio::test]
async fn two_organizers_with_the_same_key_make_two_events() {
    let (app, _dir) = spawn_auth(jwt_settings()).await;
    let alice = hs256(&claims("alice", &["organizer"]));
    let bob = hs256(&claims("bob", &["organizer"]));
    let (status, of_alice) = create(&app, &concert(3), Some("shared"), Some(&alice)).await;
    assert_eq!(status, StatusCode::CREATED, "{of_alice}");
    let (status, of_bob) = create(&app, &concert(3), Some("shared"), Some(&bob)).await;
    assert_eq!(status, StatusCode::CREATED, "{of_bob}");
    assert_ne!(of_alice["eventId"], of_bob["eventId"]);
    let (status, again) = create(&app, &concert(3), Some("shared"), Some(&alice)).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["eventId"], of_alice["eventId"]);
}
