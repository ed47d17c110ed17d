//! `kill -9` in the middle of a sale: nothing confirmed is lost, no seat is sold twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{free_port, read, spawn_process, wait_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_no_confirmed_reservation_and_sells_no_seat_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut first = spawn_process(dir.path(), port);
    let client = reqwest::Client::new();
    wait_ready(&client, &first.address).await;

    let (status, event) = read(
        client
            .post(format!("{}/api/events", first.address))
            .json(&json!({"name": "crash", "sections": [
                {"section": "A", "rows": 300, "seatsPerRow": 300},
                {"section": "B", "rows": 300, "seatsPerRow": 300}
            ]}))
            .send()
            .await
            .expect("create"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let event_id = event["eventId"].as_str().expect("id").to_owned();

    // Clients reserve continuously; every CONFIRMED answer they get is recorded.
    let confirmed: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for worker in 0..16 {
        let (client, address, event_id) = (client.clone(), first.address.clone(), event_id.clone());
        let (confirmed, sent) = (confirmed.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let user = format!("w{worker}-{i}");
                sent.lock().push(user.clone());
                let section = if i % 2 == 0 { "A" } else { "B" };
                let answer = client
                    .post(format!("{address}/api/reservations?wait=5000"))
                    .json(&json!({"eventId": event_id, "section": section, "userId": user, "seatCount": 1 + i % 3}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(response) = answer else { break };
                let Ok(body) = response.json::<Value>().await else { break };
                if body["status"] == "CONFIRMED" {
                    confirmed
                        .lock()
                        .insert(body["reservationId"].as_str().unwrap_or_default().to_owned(), body);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    first.child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    first.child.wait().expect("reaped");
    for client in clients {
        let _ = client.await;
    }
    let confirmed = confirmed.lock().clone();
    assert!(
        confirmed.len() > 50,
        "the load ran ({} confirmed)",
        confirmed.len()
    );

    let mut second = spawn_process(dir.path(), port);
    wait_ready(&client, &second.address).await;

    // Every reservation a client saw confirmed is still confirmed, with the same seats.
    for (id, seen) in &confirmed {
        let (status, now) = read(
            client
                .get(format!("{}/api/reservations/{id}", second.address))
                .send()
                .await
                .expect("get"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "confirmed reservation {id} lost");
        assert_eq!(now["status"], "CONFIRMED");
        assert_eq!(now["seats"], seen["seats"]);
    }

    // No seat is held by two reservations, and the seat maps hold exactly the confirmed seats.
    let users = sent.lock().clone();
    let mut held: HashSet<(String, u64, u64)> = HashSet::new();
    let mut held_count = 0usize;
    for user in &users {
        let (_, list) = read(
            client
                .get(format!("{}/api/users/{user}/reservations", second.address))
                .send()
                .await
                .expect("list"),
        )
        .await;
        for reservation in list.as_array().expect("array") {
            if reservation["status"] != "CONFIRMED" {
                continue;
            }
            for seat in reservation["seats"].as_array().expect("seats") {
                held_count += 1;
                let key = (
                    reservation["section"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    seat["row"].as_u64().unwrap_or_default(),
                    seat["seat"].as_u64().unwrap_or_default(),
                );
                assert!(held.insert(key.clone()), "seat {key:?} sold twice");
            }
        }
    }
    let mut mapped = 0usize;
    for section in ["A", "B"] {
        let (_, map) = read(
            client
                .get(format!(
                    "{}/api/events/{event_id}/sections/{section}/seats",
                    second.address
                ))
                .send()
                .await
                .expect("map"),
        )
        .await;
        mapped += map["rowsMap"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| row.as_str().unwrap_or_default().matches('x').count())
            .sum::<usize>();
    }
    assert_eq!(
        mapped, held_count,
        "seat maps and confirmed reservations agree"
    );

    // And the sale goes on after the restart.
    let (status, after) = read(
        client
            .post(format!("{}/api/reservations?wait=5000", second.address))
            .json(&json!({"eventId": event_id, "section": "A", "userId": "after-restart", "seatCount": 1}))
            .send()
            .await
            .expect("reserve"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["status"], "CONFIRMED");
    let seat = &after["seats"][0];
    let key = (
        "A".to_owned(),
        seat["row"].as_u64().unwrap_or_default(),
        seat["seat"].as_u64().unwrap_or_default(),
    );
    assert!(
        !held.contains(&key),
        "a held seat was sold again after the restart"
    );
    second.child.kill().expect("stop");
    let _ = second.child.wait();
}
