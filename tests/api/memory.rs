//! Memory bounded by configuration, not by history: outcomes the process no longer keeps in
//! memory (`recent_outcomes`) are answered from the store that holds all of them, before and
//! after a restart, and a retry still gets its seats back.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_with, test_config};

const KEPT: usize = 1_000;

/// What a client sees of `user`'s reservation `id`: its state, its place in the user's history,
/// and a retry's answer.
async fn check_found(app: &crate::helpers::TestApp, event: &str, id: &str, seats: &Value) {
    let (status, shown) = app.get(&format!("/api/reservations/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["status"], "CONFIRMED");
    assert_eq!(&shown["seats"], seats);

    let (status, history) = app.get("/api/users/first/reservations").await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let listed: Vec<&str> = history
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["reservationId"].as_str())
        .collect();
    assert_eq!(listed, vec![id], "{history}");

    let (status, retry) = app.reserve(event, "A", "first", 2).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(
        retry["reservationId"], id,
        "the retry got its first seats back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_memory_let_go_of_are_answered_from_the_store_before_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    config.http.recent_outcomes = KEPT;
    let app = spawn_with(config.clone()).await;
    let event = app.create_event(&[("A", 40, 100)]).await;
    let (status, first) = app.reserve(&event, "A", "first", 2).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let id = first["reservationId"].as_str().expect("id").to_owned();

    // Three times as many outcomes after it as memory keeps: it and its de-duplication key
    // are no longer in memory.
    let mut others = tokio::task::JoinSet::new();
    for chunk in 0..30 {
        let (client, url, event) = (
            app.client.clone(),
            app.url("/api/reservations?wait=5000"),
            event.clone(),
        );
        others.spawn(async move {
            for n in 0..KEPT / 10 {
                let body = serde_json::json!({
                    "eventId": event, "section": "A", "userId": format!("u{chunk}-{n}"), "seatCount": 1,
                });
                let response = client.post(&url).json(&body).send().await.expect("request");
                assert_eq!(response.status(), StatusCode::OK);
            }
        });
    }
    while let Some(done) = others.join_next().await {
        done.expect("reservations");
    }
    check_found(&app, &event, &id, &first["seats"]).await;

    // A restart reads no history, and finds it all the same.
    app.stop().await;
    let app = spawn_with(config).await;
    check_found(&app, &event, &id, &first["seats"]).await;
    let (status, shown) = app.get(&format!("/api/events/{event}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["sections"][0]["available"], 4_000 - 2 - 3_000);

    // Cancelled, the seats come back and a retry is a new reservation.
    let cancelled = app
        .client
        .delete(app.url(&format!("/api/reservations/{id}")))
        .header("X-User-Id", "first")
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancelled.status(), StatusCode::OK);
    let (status, again) = app.reserve(&event, "A", "first", 2).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_ne!(again["reservationId"], id.as_str());
}
