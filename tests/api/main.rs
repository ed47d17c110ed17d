//! The HTTP API end to end on the embedded default, as a client sees it.

mod auth;
mod availability;
mod bounds;
mod connections;
mod crash;
#[path = "../support/embedded.rs"]
mod embedded;
mod errors;
mod events;
mod helpers;
mod lifecycle;
mod limit;
mod memory;
mod openapi;
mod queue;
mod rate_limits;
#[path = "../support/receiver.rs"]
mod receiver;
mod waitlist;
mod webhooks;

use std::collections::HashSet;

use helpers::{read, spawn_app, spawn_app_in};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn seats_of(outcome: &Value) -> Vec<(u64, u64)> {
    outcome["seats"]
        .as_array()
        .expect("seats array")
        .iter()
        .map(|s| {
            (
                s["row"].as_u64().expect("row"),
                s["seat"].as_u64().expect("seat"),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_event_is_created_listed_and_shown_with_its_seat_map() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 2, 3), ("B", 1, 5)]).await;

    let (status, body) = app.get(&format!("/api/events/{event}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "Test concert");
    assert_eq!(
        body["sections"][0],
        json!({"section": "A", "rows": 2, "seatsPerRow": 3, "available": 6})
    );
    assert_eq!(body["sections"][1]["available"], 5);

    let (status, list) = app.get("/api/events").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|e| e["eventId"] == event.as_str())
    );

    let (status, map) = app
        .get(&format!("/api/events/{event}/sections/A/seats"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(map["rowsMap"], json!(["ooo", "ooo"]));
}

#[tokio::test]
async fn a_reservation_gets_adjacent_seats_in_the_best_row_and_the_counts_follow() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 3, 4)]).await;

    let (status, outcome) = app.reserve(&event, "A", "alice", 3).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["status"], "CONFIRMED");
    assert_eq!(seats_of(&outcome), vec![(1, 1), (1, 2), (1, 3)]);
    assert_eq!(outcome["reason"], Value::Null);

    // Two more do not fit next to each other in row 1 (one seat left): they go to row 2.
    let (_, second) = app.reserve(&event, "A", "bob", 2).await;
    assert_eq!(seats_of(&second), vec![(2, 1), (2, 2)]);

    let (_, map) = app
        .get(&format!("/api/events/{event}/sections/A/seats"))
        .await;
    assert_eq!(map["rowsMap"], json!(["xxxo", "xxoo", "oooo"]));
    let (_, shown) = app.get(&format!("/api/events/{event}")).await;
    assert_eq!(shown["sections"][0]["available"], 7);

    let id = outcome["reservationId"].as_str().expect("id");
    let (status, fetched) = app.get(&format!("/api/reservations/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["status"], "CONFIRMED");
    assert_eq!(fetched["userId"], "alice");
}

#[tokio::test]
async fn without_wait_a_reservation_is_accepted_as_pending_and_decided_for_a_poll() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 1, 4)]).await;
    let (status, accepted) = app
        .post(
            "/api/reservations",
            &json!({"eventId": event, "section": "A", "userId": "u", "seatCount": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(accepted["status"], "PENDING");
    let id = accepted["reservationId"].as_str().expect("id");
    let (status, polled) = app.get(&format!("/api/reservations/{id}?wait=2000")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(polled["status"], "CONFIRMED");
}

#[tokio::test]
async fn a_sale_sells_out_exactly_and_then_answers_sold_out_at_once() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 2, 3)]).await;
    let mut held = HashSet::new();
    for user in 0..6 {
        let (status, outcome) = app.reserve(&event, "A", &format!("u{user}"), 1).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(outcome["status"], "CONFIRMED");
        for seat in seats_of(&outcome) {
            assert!(held.insert(seat), "seat {seat:?} sold twice");
        }
    }
    assert_eq!(held.len(), 6);
    let (status, refused) = app.reserve(&event, "A", "late", 1).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["error"], "sold_out");
}

#[tokio::test]
async fn picked_seats_are_all_or_nothing() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 2, 4)]).await;
    let pick = |user: &str, seats: Value| json!({"eventId": event, "section": "A", "userId": user, "seats": seats});
    let (status, first) = app
        .post(
            "/api/reservations?wait=5000",
            &pick(
                "alice",
                json!([{"row": 2, "seat": 4}, {"row": 1, "seat": 1}]),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["status"], "CONFIRMED");
    assert_eq!(seats_of(&first), vec![(1, 1), (2, 4)]);

    let (status, clash) = app
        .post(
            "/api/reservations?wait=5000",
            &pick("bob", json!([{"row": 1, "seat": 2}, {"row": 2, "seat": 4}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(clash["status"], "REJECTED");
    assert_eq!(clash["reason"], "seat_taken");
    let (_, map) = app
        .get(&format!("/api/events/{event}/sections/A/seats"))
        .await;
    assert_eq!(
        map["rowsMap"],
        json!(["xooo", "ooox"]),
        "nothing of bob's request is held"
    );
}

#[tokio::test]
async fn a_retry_by_the_same_user_returns_the_first_reservation() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 5, 5), ("B", 5, 5)]).await;
    let (_, first) = app.reserve(&event, "A", "carol", 2).await;
    let (status, retry) = app.reserve(&event, "A", "carol", 2).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retry["reservationId"], first["reservationId"]);
    assert_eq!(retry["seats"], first["seats"]);
    let (_, shown) = app.get(&format!("/api/events/{event}")).await;
    assert_eq!(
        shown["sections"][0]["available"], 23,
        "the retry held no more seats"
    );

    // Another section is another reservation.
    let (_, other) = app.reserve(&event, "B", "carol", 2).await;
    assert_ne!(other["reservationId"], first["reservationId"]);
}

#[tokio::test]
async fn an_idempotency_key_answers_the_reservation_it_made_whatever_its_status() {
    let app = spawn_app().await;
    let event = app
        .create_event(&[("A", 1, 3), ("B", 1, 3), ("S", 1, 1)])
        .await;
    let (_, taken) = app.reserve(&event, "S", "zed", 1).await;
    assert_eq!(taken["status"], "CONFIRMED");
    let keyed = |body: Value, key: &str| {
        app.client
            .post(app.url("/api/reservations?wait=5000"))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    // Refused at once (sold out): nothing is recorded under the key.
    let sold_out = json!({"eventId": event, "section": "S", "userId": "erin", "seatCount": 1});
    let (status, body) = read(keyed(sold_out, "k-1").await.expect("request")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let request = json!({"eventId": event, "section": "A", "userId": "erin", "seatCount": 3});
    let (status, first) = read(keyed(request.clone(), "k-2").await.expect("request")).await;
    assert_eq!(
        (status, &first["status"]),
        (StatusCode::OK, &json!("CONFIRMED"))
    );
    // Cancelled: a plain retry would make a new reservation; the same key answers the first.
    let cancelled = app
        .client
        .delete(app.url(&format!(
            "/api/reservations/{}",
            first["reservationId"].as_str().expect("id")
        )))
        .header("X-User-Id", "erin")
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancelled.status(), StatusCode::OK);
    let (status, again) = read(keyed(request.clone(), "k-2").await.expect("request")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["reservationId"], first["reservationId"]);
    assert_eq!(again["status"], "CANCELLED");

    // The refused request's key is free for a request that succeeds.
    let (status, fresh) = read(keyed(request, "k-1").await.expect("request")).await;
    assert_eq!(
        (status, &fresh["status"]),
        (StatusCode::OK, &json!("CONFIRMED"))
    );
    assert_ne!(fresh["reservationId"], first["reservationId"]);

    // The key of another request, or of another user's, is not a key for this one.
    let other = json!({"eventId": event, "section": "B", "userId": "erin", "seatCount": 1});
    let (status, body) = read(keyed(other, "k-2").await.expect("request")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "Idempotency-Key");
    let frank = json!({"eventId": event, "section": "B", "userId": "frank", "seatCount": 1});
    let (status, body) = read(keyed(frank, "k-2").await.expect("request")).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("CONFIRMED"))
    );
    assert_ne!(body["reservationId"], first["reservationId"]);

    let bad = json!({"eventId": event, "section": "B", "userId": "gus", "seatCount": 1});
    let (status, body) = read(keyed(bad, &"k".repeat(129)).await.expect("request")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "Idempotency-Key");
}

#[tokio::test]
async fn a_rejected_first_attempt_does_not_block_a_new_one() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 2, 2)]).await;
    for (user, row, seat) in [("x", 1, 1), ("z", 2, 2)] {
        app.post(
            "/api/reservations?wait=5000",
            &json!({"eventId": event, "section": "A", "userId": user, "seats": [{"row": row, "seat": seat}]}),
        )
        .await;
    }
    // Two seats are left but not next to each other: decided and rejected.
    let (status, first) = app.reserve(&event, "A", "dave", 2).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["status"], "REJECTED");
    assert_eq!(first["reason"], "no_adjacent_seats");
    let (status, second) = app.reserve(&event, "A", "dave", 1).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["status"], "CONFIRMED");
    assert_ne!(second["reservationId"], first["reservationId"]);
}

#[tokio::test]
async fn only_the_owner_cancels_and_the_seats_come_back() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 1, 2)]).await;
    let (_, held) = app.reserve(&event, "A", "erin", 2).await;
    let id = held["reservationId"].as_str().expect("id").to_owned();
    let cancel = |user: Option<&str>| {
        let mut request = app
            .client
            .delete(app.url(&format!("/api/reservations/{id}")));
        if let Some(user) = user {
            request = request.header("X-User-Id", user);
        }
        request.send()
    };

    let (status, body) = helpers::read(cancel(Some("mallory")).await.expect("send")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "not_owner");

    let (status, body) = helpers::read(cancel(None).await.expect("send")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "X-User-Id");

    let (status, cancelled) = helpers::read(cancel(Some("erin")).await.expect("send")).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["seats"], held["seats"]);
    assert!(cancelled["cancelledAt"].is_string());

    let (status, again) = helpers::read(cancel(Some("erin")).await.expect("send")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "CANCELLED");

    let (_, shown) = app.get(&format!("/api/events/{event}")).await;
    assert_eq!(shown["sections"][0]["available"], 2);
    // The freed seats sell again, and the user may reserve again after cancelling.
    let (_, resold) = app.reserve(&event, "A", "erin", 2).await;
    assert_eq!(resold["status"], "CONFIRMED");
    assert_ne!(resold["reservationId"], held["reservationId"]);
}

#[tokio::test]
async fn a_rejected_reservation_cannot_be_cancelled() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 1, 3)]).await;
    let (_, first) = app
        .post(
            "/api/reservations?wait=5000",
            &json!({"eventId": event, "section": "A", "userId": "f", "seats": [{"row": 1, "seat": 1}]}),
        )
        .await;
    app.post(
        "/api/reservations?wait=5000",
        &json!({"eventId": event, "section": "A", "userId": "g", "seats": [{"row": 1, "seat": 2}]}),
    )
    .await;
    let (_, taken) = app
        .post(
            "/api/reservations?wait=5000",
            &json!({"eventId": event, "section": "A", "userId": "h", "seats": [{"row": 1, "seat": 1}]}),
        )
        .await;
    assert_eq!(first["status"], "CONFIRMED");
    assert_eq!(taken["status"], "REJECTED", "{taken}");
    let id = taken["reservationId"].as_str().expect("id");
    let response = app
        .client
        .delete(app.url(&format!("/api/reservations/{id}")))
        .header("X-User-Id", "h")
        .send()
        .await
        .expect("send");
    let (status, body) = helpers::read(response).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "not_cancellable");
}

#[tokio::test]
async fn a_users_reservations_are_listed_newest_first() {
    let app = spawn_app().await;
    let event = app
        .create_event(&[("A", 5, 5), ("B", 5, 5), ("C", 5, 5)])
        .await;
    let mut ids = Vec::new();
    for section in ["A", "B", "C"] {
        let (_, outcome) = app.reserve(&event, section, "gina", 1).await;
        ids.push(outcome["reservationId"].clone());
    }
    let (status, list) = app.get("/api/users/gina/reservations").await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<Value> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["reservationId"].clone())
        .collect();
    ids.reverse();
    assert_eq!(listed, ids);
    let (_, page) = app
        .get("/api/users/gina/reservations?offset=1&limit=1")
        .await;
    assert_eq!(page.as_array().expect("page").len(), 1);
    assert_eq!(page[0]["reservationId"], ids[1]);
    let (_, nobody) = app.get("/api/users/nobody/reservations").await;
    assert_eq!(nobody, json!([]));
}

#[tokio::test]
async fn health_docs_and_spec_are_served() {
    let app = spawn_app().await;
    let (status, live) = app.get("/health/live").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(live["status"], "up");
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    let (status, spec) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/events",
        "/api/events/{eventId}",
        "/api/events/{eventId}/sections/{section}/seats",
        "/api/reservations",
        "/api/reservations/{reservationId}",
        "/api/users/{userId}/reservations",
        "/health/ready",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the spec"
        );
    }
    let docs = app.client.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    let docs = docs.text().await.expect("html");
    assert!(docs.contains("swagger"));
    // Swagger UI shows the document clients get, not poem-openapi's uncompleted one.
    let served = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("spec")
        .text()
        .await
        .expect("text");
    assert!(docs.contains(&served), "/docs carries /openapi.json");
}

#[tokio::test]
async fn everything_decided_survives_a_restart() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 2, 3)]).await;
    let (_, kept) = app.reserve(&event, "A", "hank", 3).await;
    let (_, cancelled) = app.reserve(&event, "A", "ivy", 2).await;
    let id = cancelled["reservationId"].as_str().expect("id").to_owned();
    app.client
        .delete(app.url(&format!("/api/reservations/{id}")))
        .header("X-User-Id", "ivy")
        .send()
        .await
        .expect("cancel");
    let data_dir = app.data_dir.clone();
    let dir = app.stop().await;

    let app = spawn_app_in(&data_dir).await;
    let kept_id = kept["reservationId"].as_str().expect("id");
    let (status, again) = app.get(&format!("/api/reservations/{kept_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "CONFIRMED");
    assert_eq!(again["seats"], kept["seats"]);
    let (_, gone) = app.get(&format!("/api/reservations/{id}")).await;
    assert_eq!(gone["status"], "CANCELLED");
    let (_, map) = app
        .get(&format!("/api/events/{event}/sections/A/seats"))
        .await;
    assert_eq!(map["rowsMap"], json!(["xxx", "ooo"]));
    // New sales continue from the restored state.
    let (_, next) = app.reserve(&event, "A", "jack", 3).await;
    assert_eq!(seats_of(&next), vec![(2, 1), (2, 2), (2, 3)]);
    let (status, _) = app.reserve(&event, "A", "kim", 1).await;
    assert_eq!(status, StatusCode::CONFLICT);
    drop(dir);
}
