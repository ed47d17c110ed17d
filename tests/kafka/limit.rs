//! The exact per-user limit on Kafka: one user fires 50 concurrent requests at four sections
//! through two gateways, the seat processors are killed half-way and come back on empty disks
//! (their quotas rebuilt from the changelog). The user never holds more than the limit, every request
//! is answered, and the quota comes back when the holds expire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use seatflow_aggregates::{Event, Rejection, Status};

use super::{
    Children, ONE_AT_A_TIME, Sale, create_event_from, free_port, gateway, kill, read_all,
    wait_ready,
};

const LIMIT: u64 = 6;
const HOLD_SECONDS: u64 = 30;
const SECTIONS: [&str; 4] = ["A", "B", "C", "D"];

/// Ask, under its own idempotency key, and follow it until it is decided: its final answer.
async fn reserve_decided(
    client: reqwest::Client,
    base: String,
    event: String,
    section: &'static str,
    key: String,
) -> serde_json::Value {
    let mut answer = serde_json::Value::Null;
    // A gateway refuses while its processor's partitions move (503): ask again.
    for _ in 0..60 {
        let response = client
            .post(format!("{base}/api/reservations?wait=15000"))
            .header("Idempotency-Key", &key)
            .json(&serde_json::json!({"eventId": event, "section": section,
                "userId": "scalper", "seatCount": 2}))
            .send()
            .await
            .expect("reserve");
        let status = response.status();
        answer = response.json().await.expect("JSON");
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{answer}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let id = answer["reservationId"]
        .as_str()
        .unwrap_or_else(|| panic!("no reservation: {answer}"))
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    while answer["status"] == "PENDING" {
        assert!(Instant::now() < deadline, "never decided: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        answer = client
            .get(format!("{base}/api/reservations/{id}"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("JSON");
    }
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_across_sections_gateways_and_processor_crashes_never_exceeds_the_limit() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("limit").await;
    let disks = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let ports = [free_port(), free_port()];
    let mut children = Children(vec![
        sale.processor(disks[0].path(), "p0"),
        sale.processor(disks[1].path(), "p1"),
        gateway(&sale.topics, "gw-limit-0", 0, ports[0]),
        gateway(&sale.topics, "gw-limit-1", 1, ports[1]),
    ]);
    let bases: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    let client = reqwest::Client::new();
    for base in &bases {
        wait_ready(&client, base).await;
    }
    let sections: Vec<serde_json::Value> = SECTIONS
        .iter()
        .map(|s| serde_json::json!({"section": s, "rows": 4, "seatsPerRow": 10}))
        .collect();
    let event = create_event_from(
        &client,
        &bases[0],
        serde_json::json!({"name": "Limited on Kafka", "holdSeconds": HOLD_SECONDS,
            "maxSeatsPerUser": LIMIT, "sections": sections}),
    )
    .await;
    // Both gateways know the event and each of its sections before the burst (a gateway
    // following the feeds learns the sections one by one: the event can be known before all
    // of them are).
    for base in &bases {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = client
                .get(format!("{base}/api/events/{event}"))
                .send()
                .await
                .expect("event");
            let known = if response.status() == 200 {
                let view: serde_json::Value = response.json().await.expect("JSON");
                view["sections"].as_array().map_or(0, Vec::len)
            } else {
                0
            };
            if known == SECTIONS.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{base} knows {known} of the sections"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // 50 requests over two gateways and four sections, 25 at once, then 25 more while both
    // seat processors are killed; they come back on empty disks (quotas rebuilt from the
    // changelog). The first 25 fill the quota; a processor that forgot it would let the next
    // ones through.
    let started = Instant::now();
    let spawn = |requests: &mut tokio::task::JoinSet<serde_json::Value>, i: usize| {
        requests.spawn(reserve_decided(
            client.clone(),
            bases[i % 2].clone(),
            event.clone(),
            SECTIONS[(i / 2) % SECTIONS.len()],
            format!("burst-{i}"),
        ));
    };
    let mut first_half = tokio::task::JoinSet::new();
    for i in 0..25 {
        spawn(&mut first_half, i);
    }
    let mut answers = first_half.join_all().await;
    kill(&mut children.0[0], "-KILL");
    kill(&mut children.0[1], "-KILL");
    let mut second_half = tokio::task::JoinSet::new();
    for i in 25..50 {
        spawn(&mut second_half, i);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    children.0.push(sale.processor(disks[2].path(), "p0"));
    children.0.push(sale.processor(disks[3].path(), "p1"));
    answers.extend(second_half.join_all().await);
    let burst = started.elapsed();
    assert!(
        burst < Duration::from_secs(HOLD_SECONDS - 5),
        "the burst took {burst:?}: holds may have expired during it"
    );

    let mut distinct: HashMap<String, &serde_json::Value> = HashMap::new();
    for answer in &answers {
        distinct.insert(answer["reservationId"].to_string(), answer);
    }
    let held: u64 = distinct
        .values()
        .filter(|a| a["status"] == "HELD")
        .map(|a| a["seats"].as_array().map_or(0, Vec::len) as u64)
        .sum();
    let over = distinct
        .values()
        .filter(|a| a["reason"] == "user_limit_exceeded")
        .count();
    assert!(held <= LIMIT, "{held} seats held: {answers:?}");
    assert_eq!(held, LIMIT, "the limit is used, not wasted: {answers:?}");
    assert!(over > 0, "{answers:?}");
    for answer in distinct.values() {
        assert!(
            answer["status"] == "HELD" || answer["status"] == "REJECTED",
            "{answer}"
        );
    }

    // The log agrees: every reservation decided once, never more than the limit held.
    let outcomes = read_all::<Event>(
        &sale.brokers,
        &sale.topics,
        "reservation-completed",
        |records| records.len() >= distinct.len(),
    );
    let mut decided: HashMap<String, usize> = HashMap::new();
    let mut ever_held = 0u64;
    for event in &outcomes {
        if let Event::ReservationCompleted(completed) = event {
            let reservation = &completed.reservation;
            if reservation.status == Status::Held || reservation.status == Status::Rejected {
                *decided.entry(reservation.id.to_string()).or_default() += 1;
            }
            if reservation.status == Status::Held {
                ever_held += reservation.seats.len() as u64;
            }
            if reservation.status == Status::Rejected {
                assert_eq!(
                    reservation.reason,
                    Some(Rejection::UserLimitExceeded {
                        limit: LIMIT as u16
                    }),
                    "{reservation:?}"
                );
            }
        }
    }
    assert!(ever_held <= LIMIT, "{ever_held} seats were held in the log");
    assert!(
        decided.values().all(|times| *times == 1),
        "decided twice: {decided:?}"
    );
    assert_eq!(decided.len(), distinct.len());

    // The holds expire; the user's quota comes back (a new reservation, not the answer of a
    // retry that finds a hold still there).
    let first_end = distinct
        .values()
        .filter_map(|a| a["expiresAt"].as_str())
        .filter_map(|at| humantime::parse_rfc3339(at).ok())
        .min()
        .expect("a hold");
    let deadline = Instant::now() + Duration::from_secs(HOLD_SECONDS + 60);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let again = reserve_decided(
            client.clone(),
            bases[attempt % 2].clone(),
            event.clone(),
            "A",
            format!("after-{attempt}"),
        )
        .await;
        let new = !distinct.contains_key(&again["reservationId"].to_string());
        if again["status"] == "HELD" && new {
            assert!(
                std::time::SystemTime::now() >= first_end,
                "a new hold before any expiry: {again}"
            );
            break;
        }
        if new {
            assert_eq!(again["reason"], "user_limit_exceeded", "{again}");
        }
        assert!(Instant::now() < deadline, "the quota never came back");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
