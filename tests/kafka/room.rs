//! The waiting room on Kafka: buyers join through two gateways before the sale, the room is
//! decided by its one owner, both seat processors are killed mid-queue and come back on empty
//! disks (the room rebuilt from `section-snapshots`), a gateway is killed and restarted (its
//! replica rebuilt the same way). No ticket is lost, no one is admitted twice, never more than
//! `maxActive` at once, and an admission issued by one gateway buys through the other.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use seatflow_aggregates::Event;
use seatflow_aggregates::room::RoomEvent;
use serde_json::{Value, json};

use super::{
    Children, ONE_AT_A_TIME, Sale, create_event_from, free_port, gateway_with, kill, read_all,
    wait_ready,
};

const BUYERS: usize = 12;
const MAX_ACTIVE: usize = 3;
const SECRET: (&str, &str) = (
    "SEATFLOW_AUTH_ADMISSION_SECRET",
    "kafka-room-test-admission-secret-32b!",
);

async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Ask until the answer is not a 503 (partitions moving between processors).
async fn settled(make: impl Fn() -> reqwest::RequestBuilder) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = call(make()).await;
        if status != 503 {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "503 for a minute: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn in_millis(ms: u64) -> String {
    let at = SystemTime::now() + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_on_kafka_loses_no_ticket_and_admits_no_one_twice_through_crashes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("room").await;
    let disks: Vec<tempfile::TempDir> = (0..6).map(|_| tempfile::tempdir().expect("dir")).collect();
    let ports = [free_port(), free_port()];
    let mut children = Children(vec![
        sale.processor(disks[0].path(), "p0"),
        sale.processor(disks[1].path(), "p1"),
        gateway_with(&sale.topics, "gw-room-0", 0, ports[0], &[SECRET]),
        gateway_with(&sale.topics, "gw-room-1", 1, ports[1], &[SECRET]),
    ]);
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let client = reqwest::Client::new();
    for base in &bases {
        wait_ready(&client, base).await;
    }
    let on_sale_in = 8_000;
    let created = Instant::now();
    let event = create_event_from(
        &client,
        &bases[0],
        json!({"name": "Room on Kafka", "onSaleAt": in_millis(on_sale_in),
            "waitingRoom": {"maxActive": MAX_ACTIVE, "sessionSeconds": 600},
            "sections": [{"section": "A", "rows": 10, "seatsPerRow": 10}]}),
    )
    .await;

    // Everyone joins before the sale, through both gateways.
    let mut tickets: HashMap<String, String> = HashMap::new();
    for n in 0..BUYERS {
        let user = format!("buyer-{n}");
        let base = &bases[n % 2];
        let (status, joined) = settled(|| {
            client
                .post(format!("{base}/api/events/{event}/queue"))
                .header("X-User-Id", &user)
        })
        .await;
        assert_eq!(status, 201, "{joined}");
        assert_eq!(joined["position"], Value::Null, "{joined}");
        tickets.insert(
            user,
            joined["ticketId"].as_str().expect("ticket").to_owned(),
        );
    }
    assert!(
        created.elapsed() < Duration::from_millis(on_sale_in),
        "the joins took until the sale"
    );

    // Both seat processors die before the on-sale and come back on empty disks.
    kill(&mut children.0[0], "-KILL");
    kill(&mut children.0[1], "-KILL");
    children.0.push(sale.processor(disks[2].path(), "p0"));
    children.0.push(sale.processor(disks[3].path(), "p1"));
    // A gateway dies too and comes back (its replica from the snapshots).
    kill(&mut children.0[3], "-KILL");
    children.0.push(gateway_with(
        &sale.topics,
        "gw-room-1",
        1,
        ports[1],
        &[SECRET],
    ));
    wait_ready(&client, &bases[1]).await;

    // After the sale: every ticket is known to both gateways, with the same place, and
    // exactly MAX_ACTIVE are admitted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut admitted: Vec<(String, Value)> = loop {
        let mut admitted = Vec::new();
        let mut placed = 0;
        for (user, ticket) in &tickets {
            let mut seen = Vec::new();
            for base in &bases {
                let (status, body) = call(
                    client
                        .get(format!("{base}/api/events/{event}/queue/{ticket}"))
                        .header("X-User-Id", user),
                )
                .await;
                assert!(status == 200 || status == 404, "{status} {body}");
                seen.push(body);
            }
            if seen[0]["position"].is_u64() && seen[0]["position"] == seen[1]["position"] {
                placed += 1;
            }
            if seen[0]["status"] == "ADMITTED" {
                admitted.push((user.clone(), seen[0].clone()));
            }
        }
        if placed == BUYERS && admitted.len() == MAX_ACTIVE {
            break admitted;
        }
        assert!(
            Instant::now() < deadline,
            "{placed} placed, {} admitted",
            admitted.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // An admission from one gateway buys through the other; the confirmation ends its
    // session and the next buyer is admitted.
    let (user, first) = admitted.remove(0);
    let token = first["admissionToken"].as_str().expect("token").to_owned();
    let (status, bought) = settled(|| {
        client
            .post(format!("{}/api/reservations?wait=15000", bases[1]))
            .header("X-Admission-Token", &token)
            .json(&json!({"eventId": event, "section": "A", "userId": user, "seatCount": 2}))
    })
    .await;
    assert_eq!(status, 200, "{bought}");
    assert_eq!(bought["status"], "CONFIRMED", "{bought}");
    let (status, refused) = call(
        client
            .post(format!("{}/api/reservations?wait=15000", bases[0]))
            .json(&json!({"eventId": event, "section": "A", "userId": "buyer-x", "seatCount": 1})),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"], "admission_required");

    // Mid-sale, with sessions running: both processors die again and come back on empty
    // disks. The next admission is decided once, by the rebuilt owner.
    kill(&mut children.0[4], "-KILL");
    kill(&mut children.0[5], "-KILL");
    children.0.push(sale.processor(disks[4].path(), "p0"));
    children.0.push(sale.processor(disks[5].path(), "p1"));

    // The log: every ticket joined once, none admitted twice, never more than MAX_ACTIVE
    // sessions at once, and the session of the buyer ended by the confirmation.
    let log = read_all::<Event>(
        &sale.brokers,
        &sale.topics,
        "reservation-completed",
        |events| {
            events
            .iter()
            .filter(|e| matches!(e, Event::Room(r) if matches!(r.event, RoomEvent::Admitted { .. })))
            .count()
            > MAX_ACTIVE
        },
    );
    // Give a doubled admission (a rebuilt owner deciding again) time to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = read_all::<Event>(
        &sale.brokers,
        &sale.topics,
        "reservation-completed",
        |events| events.len() >= log.len(),
    );
    let mut joined = HashSet::new();
    let mut ever_admitted = HashSet::new();
    let mut active = HashSet::new();
    let mut ended = 0;
    for event in &log {
        let Event::Room(recorded) = event else {
            continue;
        };
        match &recorded.event {
            RoomEvent::Joined { ticket, .. } => assert!(joined.insert(*ticket), "joined twice"),
            RoomEvent::Admitted { ticket, .. } => {
                assert!(ever_admitted.insert(*ticket), "admitted twice: {ticket}");
                active.insert(*ticket);
                assert!(
                    active.len() <= MAX_ACTIVE,
                    "{} sessions at once",
                    active.len()
                );
            }
            RoomEvent::Ended { ticket, .. } => {
                active.remove(ticket);
                ended += 1;
            }
            RoomEvent::Opened { .. } | RoomEvent::Shuffled { .. } => {}
        }
    }
    assert_eq!(joined.len(), BUYERS, "no ticket lost");
    assert_eq!(ended, 1, "the confirmed buyer's session ended");
    assert_eq!(
        ever_admitted.len(),
        MAX_ACTIVE + 1,
        "its place went to the next"
    );
}
