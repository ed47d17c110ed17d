//! The checkout on Kafka: holds confirmed in time stay, holds left alone expire on the seat
//! processor's clock (in its transactions, exactly once), also when their end passed while the
//! processor was killed.

use std::time::{Duration, Instant};

use seatflow_aggregates::{Event, SectionKey, Status};

use super::{
    Children, ONE_AT_A_TIME, Sale, create_event_from, free_port, gateway, kill, post, read_all,
    wait_ready,
};

async fn reserve(
    client: &reqwest::Client,
    base: &str,
    event: &str,
    user: &str,
) -> serde_json::Value {
    let (status, answer) = post(
        client,
        format!("{base}/api/reservations?wait=10000"),
        serde_json::json!({"eventId": event, "section": "A", "userId": user, "seatCount": 2}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Poll the reservation on the gateway until it is `status` (at most `within`).
async fn until_status(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    status: &str,
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let answer: serde_json::Value = client
            .get(format!("{base}/api/reservations/{id}"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("JSON");
        if answer["status"] == status {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "not {status} after {within:?}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_expire_on_the_processors_clock_exactly_once_also_across_a_crash() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("holds").await;
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut children = Children(vec![
        sale.processor(disk.path(), "p0"),
        gateway(&sale.topics, "gw-holds", 0, port),
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let (status, created) = post(
        &client,
        format!("{base}/api/events"),
        serde_json::json!({"name": "Checkout on Kafka", "holdSeconds": 1,
            "sections": [{"section": "A", "rows": 1, "seatsPerRow": 6}]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["holdSeconds"], 1, "{created}");
    let event = created["eventId"].as_str().expect("id").to_owned();

    // Confirmed in time: stays. Left alone: expires.
    let kept = reserve(&client, &base, &event, "kim").await;
    assert_eq!(kept["status"], "HELD", "{kept}");
    let kept_id = kept["reservationId"].as_str().expect("id").to_owned();
    let confirmed: serde_json::Value = client
        .post(format!("{base}/api/reservations/{kept_id}/confirm"))
        .header("X-User-Id", "kim")
        .send()
        .await
        .expect("confirm")
        .json()
        .await
        .expect("JSON");
    assert_eq!(confirmed["status"], "CONFIRMED", "{confirmed}");
    let left = reserve(&client, &base, &event, "lou").await;
    assert_eq!(left["status"], "HELD", "{left}");
    let left_id = left["reservationId"].as_str().expect("id").to_owned();
    let expired = until_status(&client, &base, &left_id, "EXPIRED", Duration::from_secs(10)).await;
    assert!(expired["expiredAt"].is_string(), "{expired}");

    // A hold whose end passes while the processor is dead expires when it is back.
    let crashed = reserve(&client, &base, &event, "max").await;
    assert_eq!(crashed["status"], "HELD", "{crashed}");
    let crashed_id = crashed["reservationId"].as_str().expect("id").to_owned();
    kill(&mut children.0[0], "-KILL");
    let _ = children.0[0].wait();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    children.0.push(sale.processor(disk.path(), "p0"));
    until_status(
        &client,
        &base,
        &crashed_id,
        "EXPIRED",
        Duration::from_secs(60),
    )
    .await;

    // Each hold ended once in the log; the seats of the expired ones are back.
    let outcomes = read_all::<Event>(
        &sale.brokers,
        &sale.topics,
        "reservation-completed",
        |records| {
            records
            .iter()
            .filter(|e| matches!(e, Event::ReservationCompleted(c) if c.reservation.status == Status::Expired))
            .count()
            >= 2
        },
    );
    for id in [&left_id, &crashed_id] {
        let expiries = outcomes
            .iter()
            .filter(|e| {
                matches!(e, Event::ReservationCompleted(c)
                if c.reservation.id.to_string() == *id && c.reservation.status == Status::Expired)
            })
            .count();
        assert_eq!(expiries, 1, "{id} expired {expiries} times");
    }
    assert!(
        !outcomes
            .iter()
            .any(|e| matches!(e, Event::ReservationCompleted(c)
        if c.reservation.id.to_string() == kept_id && c.reservation.status == Status::Expired))
    );
    let (status, event_view) = {
        let response = client
            .get(format!("{base}/api/events/{event}"))
            .send()
            .await
            .expect("event");
        (
            response.status(),
            response.json::<serde_json::Value>().await.expect("JSON"),
        )
    };
    assert_eq!(status, 200);
    assert_eq!(event_view["sections"][0]["available"], 4, "{event_view}");
}

/// A hold expires on time while other partitions are busy: the seat processor's clock runs for
/// every partition with a hold that ended in each transaction, not only when no command came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_expires_on_time_while_other_partitions_are_busy() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("busy-clock").await;
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let _children = Children(vec![
        sale.processor(disk.path(), "p0"),
        gateway(&sale.topics, "gw-busy-clock", 0, port),
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let sections: Vec<String> = (0..8).map(|i| format!("S{i}")).collect();
    let event = create_event_from(
        &client,
        &base,
        serde_json::json!({"name": "Busy clock", "holdSeconds": 1,
            "sections": sections.iter().map(|s| serde_json::json!(
                {"section": s, "rows": 10, "seatsPerRow": 100})).collect::<Vec<_>>()}),
    )
    .await;
    let partition =
        |section: &str| seatflow_aggregates::partition_of(&SectionKey::new(&event, section), 4);
    let quiet = &sections[0];
    let busy: Vec<String> = sections
        .iter()
        .filter(|s| partition(s) != partition(quiet))
        .cloned()
        .collect();
    assert!(!busy.is_empty(), "every section on one partition");

    let (status, held) = post(
        &client,
        format!("{base}/api/reservations?wait=10000"),
        serde_json::json!({"eventId": event, "section": quiet, "userId": "quiet", "seatCount": 1}),
    )
    .await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["status"], "HELD", "{held}");
    let id = held["reservationId"].as_str().expect("id").to_owned();

    // Commands keep coming for the other partitions for 4 s, past the hold's end.
    let until = Instant::now() + Duration::from_secs(4);
    let mut flood = tokio::task::JoinSet::new();
    for lane in 0..8 {
        let (client, base, event, busy) =
            (client.clone(), base.clone(), event.clone(), busy.clone());
        flood.spawn(async move {
            let mut n = 0;
            while Instant::now() < until {
                let section = &busy[n % busy.len()];
                let _ = post(
                    &client,
                    format!("{base}/api/reservations?wait=10000"),
                    serde_json::json!({"eventId": event, "section": section,
                        "userId": format!("fan-{lane}-{n}"), "seatCount": 1}),
                )
                .await;
                n += 1;
            }
        });
    }
    flood.join_all().await;
    let expired = until_status(&client, &base, &id, "EXPIRED", Duration::from_secs(10)).await;
    let at = |answer: &serde_json::Value, field: &str| {
        humantime::parse_rfc3339(answer[field].as_str().expect("time")).expect("RFC 3339")
    };
    let lag = at(&expired, "expiredAt")
        .duration_since(at(&held, "expiresAt"))
        .unwrap_or_default();
    assert!(
        lag < Duration::from_secs(1),
        "expired {lag:?} after its end"
    );
}

/// The waitlist on Kafka survives a lost disk: a request waits, its processor dies and comes
/// back on an empty disk (rebuilt from the changelog), and when the hold ahead of it expires
/// the waiting request is HELD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_is_held_after_its_processor_lost_its_disk() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("waitlist").await;
    let disks = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let port = free_port();
    let mut children = Children(vec![
        sale.processor(disks[0].path(), "p0"),
        gateway(&sale.topics, "gw-waitlist", 0, port),
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let event = create_event_from(
        &client,
        &base,
        serde_json::json!({"name": "Waiting on Kafka", "holdSeconds": 3,
            "sections": [{"section": "A", "rows": 1, "seatsPerRow": 2}]}),
    )
    .await;
    let first = reserve(&client, &base, &event, "first").await;
    assert_eq!(first["status"], "HELD", "{first}");
    let (status, waiting) = post(
        &client,
        format!("{base}/api/reservations?wait=10000"),
        serde_json::json!({"eventId": event, "section": "A", "userId": "patient",
            "seatCount": 2, "waitlist": true}),
    )
    .await;
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting["status"], "WAITLISTED", "{waiting}");
    let id = waiting["reservationId"].as_str().expect("id").to_owned();

    kill(&mut children.0[0], "-KILL");
    children.0.push(sale.processor(disks[1].path(), "p0"));
    let held = until_status(&client, &base, &id, "HELD", Duration::from_secs(60)).await;
    assert_eq!(held["seats"].as_array().map(Vec::len), Some(2), "{held}");
}
