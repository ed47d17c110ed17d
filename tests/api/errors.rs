//! Bad input: every malformed or invalid request gets a status and a JSON body naming the field.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{read, spawn_app};

async fn post_raw(
    app: &crate::helpers::TestApp,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send");
    read(response).await
}

#[track_caller]
fn assert_error(
    answer: &(StatusCode, Value),
    status: StatusCode,
    error: &str,
    field: Option<&str>,
) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(field) => assert_eq!(body["field"], field, "{body}"),
        // Left out, not null: clients generated from the document refuse a null there.
        None => assert!(body.get("field").is_none(), "{body}"),
    }
}

#[tokio::test]
async fn reservation_requests_are_checked_field_by_field() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 2, 3)]).await;
    let reserve = |body: Value| {
        let app = &app;
        async move { app.post("/api/reservations", &body).await }
    };

    let answer = post_raw(
        &app,
        "/api/reservations",
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("body"),
    );

    let answer =
        reserve(json!({"eventId": event, "section": "A", "userId": "u", "seatCount": "two"})).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("seatCount"),
    );

    // The document declares no field nullable: a null is a value of the wrong type, not an
    // absent field.
    let answer =
        reserve(json!({"eventId": event, "section": "A", "userId": "u", "seatCount": null})).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("seatCount"),
    );

    let answer = reserve(json!({"eventId": event, "section": "A", "seatCount": 1})).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("userId"),
    );

    let answer = reserve(
        json!({"eventId": event, "section": "A", "userId": "u", "seatCount": 1, "colour": "red"}),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("colour"),
    );

    let answer = reserve(json!({"eventId": event, "section": "A", "userId": "u", "seats": [{"row": "x", "seat": 1}]})).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("seats[0].row"),
    );

    let answer = reserve(json!({"eventId": event, "section": "A", "userId": "u"})).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("seatCount"),
    );

    for count in [0, 9, -1, 100_000] {
        let answer =
            reserve(json!({"eventId": event, "section": "A", "userId": "u", "seatCount": count}))
                .await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some("seatCount"),
        );
    }

    let answer =
        reserve(json!({"eventId": event, "section": "A", "userId": "u", "seatCount": 4})).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("seatCount"),
    );

    let answer =
        reserve(json!({"eventId": event, "section": "A", "userId": "", "seatCount": 1})).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("userId"),
    );

    let answer = reserve(
        json!({"eventId": event, "section": "A", "userId": "u", "seats": [{"row": 3, "seat": 1}]}),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("seats"),
    );

    let answer = reserve(
        json!({"eventId": event, "section": "A", "userId": "u", "seats": [{"row": 0, "seat": 1}]}),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("seats[0].row"),
    );

    let answer = reserve(json!({"eventId": event, "section": "A", "userId": "u", "seats": [{"row": 1, "seat": 1}, {"row": 1, "seat": 1}]})).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("seats"),
    );

    let answer = reserve(json!({"eventId": event, "section": "A", "userId": "u", "seatCount": 1, "seats": [{"row": 1, "seat": 1}]})).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("seats"),
    );

    let answer =
        reserve(json!({"eventId": "no-such-event", "section": "A", "userId": "u", "seatCount": 1}))
            .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "unknown_event",
        Some("eventId"),
    );

    let answer =
        reserve(json!({"eventId": event, "section": "Z", "userId": "u", "seatCount": 1})).await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "unknown_section",
        Some("section"),
    );

    let answer = app
        .post(
            "/api/reservations?wait=99999",
            &json!({"eventId": event, "section": "A", "userId": "u", "seatCount": 1}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("wait"),
    );

    let answer = app
        .post(
            "/api/reservations?wait=soon",
            &json!({"eventId": event, "section": "A", "userId": "u", "seatCount": 1}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("wait"),
    );

    // Nothing above held a seat.
    let (_, shown) = app.get(&format!("/api/events/{event}")).await;
    assert_eq!(shown["sections"][0]["available"], 6);
}

#[tokio::test]
async fn bodies_must_be_json_and_small() {
    let app = spawn_app().await;
    let answer = post_raw(&app, "/api/reservations", "text/plain", b"hello".to_vec()).await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Some("Content-Type"),
    );

    let huge = format!(
        r#"{{"name": "{}", "sections": []}}"#,
        "x".repeat(100 * 1024)
    );
    let answer = post_raw(&app, "/api/events", "application/json", huge.into_bytes()).await;
    assert_error(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        Some("body"),
    );

    let answer = post_raw(&app, "/api/events", "application/json", Vec::new()).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("body"),
    );
}

#[tokio::test]
async fn event_creation_is_checked_field_by_field() {
    let app = spawn_app().await;
    let create = |body: Value| {
        let app = &app;
        async move { app.post("/api/events", &body).await }
    };
    let answer =
        create(json!({"name": "x", "sections": [{"section": "A", "rows": 0, "seatsPerRow": 5}]}))
            .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("sections[].rows"),
    );
    let answer = create(
        json!({"name": "x", "sections": [{"section": "A", "rows": 5, "seatsPerRow": 5000}]}),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("sections[].seatsPerRow"),
    );
    let answer = create(
        json!({"name": "x", "sections": [{"section": "A", "rows": 1000, "seatsPerRow": 1000}]}),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("sections[]"),
    );
    let answer =
        create(json!({"name": " ", "sections": [{"section": "A", "rows": 1, "seatsPerRow": 1}]}))
            .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("name"),
    );
    let answer = create(json!({"name": "x", "sections": []})).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("sections"),
    );
    let answer = create(json!({"name": "x", "sections": [{"section": "A", "rows": 1, "seatsPerRow": 1}, {"section": "A", "rows": 2, "seatsPerRow": 2}]})).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("sections[].section"),
    );
    let answer = create(json!({"name": "x", "sections": [{"section": "A", "rows": 1}]})).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("sections[0].seatsPerRow"),
    );
    let (_, list) = app.get("/api/events").await;
    assert_eq!(list, json!([]), "no invalid request created anything");
}

#[tokio::test]
async fn unknown_things_are_404_with_a_json_body() {
    let app = spawn_app().await;
    let answer = app.get("/api/events/nope").await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "unknown_event",
        Some("eventId"),
    );
    let answer = app
        .get("/api/reservations/0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b")
        .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "unknown_reservation",
        Some("reservationId"),
    );
    // An id nobody can still be deciding (old, or not a UUID v7) is not waited for.
    for id in [
        "0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b".to_owned(),
        "4b1e2a3c-9d8f-4e7a-b6c5-d4e3f2a1b0c9".to_owned(),
    ] {
        let started = std::time::Instant::now();
        let answer = app.get(&format!("/api/reservations/{id}?wait=30000")).await;
        assert_eq!(answer.0, StatusCode::NOT_FOUND, "{}", answer.1);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{id} was waited for: {:?}",
            started.elapsed()
        );
    }
    let answer = app.get("/api/reservations/not-a-uuid").await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("reservationId"),
    );
    // A method the route does not have: 405 with the ones it has.
    let response = app
        .client
        .put(app.url("/api/events"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("GET, POST")
    );
    let response = app
        .client
        .patch(app.url("/api/reservations/0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("DELETE, GET")
    );
    let answer = app.get("/no/such/route").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", None);
    let event = app.create_event(&[("A", 1, 1)]).await;
    let answer = app
        .get(&format!("/api/events/{event}/sections/B/seats"))
        .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "unknown_section",
        Some("section"),
    );
    let answer = app.get("/api/events?limit=0").await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        Some("limit"),
    );
}
