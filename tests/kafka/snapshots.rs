//! A gateway's start does not read the history: it loads each section from `section-snapshots`
//! and reads only the last outcomes of each partition (about `recent_outcomes`), and knows what
//! the gateway before it knew: the same counts and seat maps, the recent reservations, and the
//! sale goes on without a seat sold twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{
    Children, ONE_AT_A_TIME, Sale, free_port, gateway_command, gateway_ready_with_event,
    gateway_with, kill, post, wait_ready,
};

const SECTIONS: [&str; 4] = ["A", "B", "C", "D"];
/// The read model's memory in both gateways (the smallest the settings accept).
const RECENT_OUTCOMES: usize = 1_000;
/// Single-seat reservations before the restart (more than four times the memory), every
/// tenth cancelled.
const RESERVATIONS: usize = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_starts_from_the_snapshots_not_from_the_history() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("snapshots").await;
    let disk = tempfile::tempdir().expect("dir");
    let recent = RECENT_OUTCOMES.to_string();
    let env = [("SEATFLOW_RECENT_OUTCOMES", recent.as_str())];
    let first_port = free_port();
    let mut children = Children(vec![
        sale.processor(disk.path(), "p0"),
        gateway_with(&sale.topics, "gw-first", 0, first_port, &env),
    ]);
    let sections: Vec<serde_json::Value> = SECTIONS
        .iter()
        .map(|section| serde_json::json!({"section": section, "rows": 40, "seatsPerRow": 40}))
        .collect();
    let (client, first, event_id) =
        gateway_ready_with_event(first_port, "A long sale", sections.into()).await;

    let (ids, last) = reserve_all(&client, &first, &event_id).await;
    let available: Vec<u64> = (0..SECTIONS.len())
        .map(|section| {
            let held = (0..RESERVATIONS)
                .filter(|i| i % SECTIONS.len() == section && i % 10 != 0)
                .count();
            1_600 - held as u64
        })
        .collect();
    let before = settled_seat_maps(&client, &first, &event_id, &available).await;

    // The first gateway goes; a new one starts on the same topics.
    kill(&mut children.0[1], "-TERM");
    let _ = children.0[1].wait();
    let log = tempfile::NamedTempFile::new().expect("log file");
    let second_port = free_port();
    children.0.push(
        gateway_command(&sale.topics, "gw-second", 1, second_port, &env)
            .env("RUST_LOG", "warn,seatflow_kafka=info")
            .env("SEATFLOW_LOG_FORMAT", "json")
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("second gateway starts"),
    );
    let second = format!("http://127.0.0.1:{second_port}");
    wait_ready(&client, &second).await;

    let start = caught_up_line(log.path());
    assert_eq!(start["sections"], 4, "{start}");
    let outcomes_read = start["outcomes_read"].as_u64().expect("outcomes_read");
    assert!(
        outcomes_read <= RECENT_OUTCOMES as u64,
        "the start read {outcomes_read} outcomes of a history of {}: more than the {} the \
         read model keeps",
        RESERVATIONS + RESERVATIONS / 10,
        RECENT_OUTCOMES
    );
    assert_eq!(
        seat_maps(&client, &second, &event_id).await,
        before,
        "the restarted gateway's seat maps differ from the first one's"
    );
    // The newest outcome is in memory again (no Redis or Postgres here to fall back on).
    let user = format!("fan-{last}");
    let newest = client
        .get(format!("{second}/api/reservations/{}", ids[last]))
        .header("X-User-Id", &user)
        .send()
        .await
        .expect("get");
    assert_eq!(newest.status().as_u16(), 200);

    // The sale goes on from the loaded state: every new seat was free before.
    let mut taken: HashSet<(String, usize, usize)> = HashSet::new();
    for i in 0..200 {
        let section = SECTIONS[i % SECTIONS.len()];
        let (status, answer) = post(
            &client,
            format!("{second}/api/reservations?wait=10000"),
            serde_json::json!({"eventId": event_id, "section": section, "userId": format!("late-{i}"), "seatCount": 2}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "CONFIRMED", "{answer}");
        for seat in answer["seats"].as_array().expect("seats") {
            let (row, number) = (
                seat["row"].as_u64().expect("row") as usize,
                seat["seat"].as_u64().expect("seat") as usize,
            );
            let map = &before[SECTIONS.iter().position(|s| *s == section).expect("known")];
            let was = map.1[row - 1].as_bytes()[number - 1];
            assert_eq!(
                was, b'o',
                "{section} {row}-{number} was sold before the restart"
            );
            assert!(
                taken.insert((section.to_owned(), row, number)),
                "{section} {row}-{number} sold twice"
            );
        }
    }
}

/// Reserve one seat for each of `RESERVATIONS` fans (users `fan-<i>`), spread over the
/// sections, 50 at a time, every tenth cancelled at once; their ids by fan, and the fan
/// answered last.
async fn reserve_all(client: &reqwest::Client, base: &str, event_id: &str) -> (Vec<String>, usize) {
    const CONCURRENCY: usize = 50;
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let (client, base, event_id) = (client.clone(), base.to_owned(), event_id.to_owned());
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (worker..RESERVATIONS).step_by(CONCURRENCY) {
                let (status, answer) = post(
                    &client,
                    format!("{base}/api/reservations?wait=10000"),
                    serde_json::json!({
                        "eventId": event_id,
                        "section": SECTIONS[i % SECTIONS.len()],
                        "userId": format!("fan-{i}"),
                        "seatCount": 1
                    }),
                )
                .await;
                assert_eq!(status, 200, "{answer}");
                assert_eq!(answer["status"], "CONFIRMED", "{answer}");
                let id = answer["reservationId"].as_str().expect("id").to_owned();
                if i % 10 == 0 {
                    let cancelled = client
                        .delete(format!("{base}/api/reservations/{id}"))
                        .header("X-User-Id", format!("fan-{i}"))
                        .send()
                        .await
                        .expect("delete");
                    assert_eq!(cancelled.status().as_u16(), 200, "cancel {id}");
                }
                ids.push((i, id, Instant::now()));
            }
            ids
        }));
    }
    let mut ids = vec![String::new(); RESERVATIONS];
    let mut last = (0, Instant::now() - Duration::from_secs(3_600));
    for worker in workers {
        for (i, id, answered) in worker.await.expect("worker") {
            ids[i] = id;
            if answered > last.1 {
                last = (i, answered);
            }
        }
    }
    (ids, last.0)
}

/// Each section's (available, rows) as the gateway shows them.
async fn seat_maps(
    client: &reqwest::Client,
    base: &str,
    event_id: &str,
) -> Vec<(u64, Vec<String>)> {
    let mut maps = Vec::new();
    for section in SECTIONS {
        let map: serde_json::Value = client
            .get(format!(
                "{base}/api/events/{event_id}/sections/{section}/seats"
            ))
            .send()
            .await
            .expect("seat map")
            .json()
            .await
            .expect("JSON");
        let rows = map["rowsMap"]
            .as_array()
            .expect("rowsMap")
            .iter()
            .map(|row| row.as_str().expect("row").to_owned())
            .collect();
        maps.push((map["available"].as_u64().expect("available"), rows));
    }
    maps
}

/// The seat maps once the sections show `available` (the read side follows the log).
async fn settled_seat_maps(
    client: &reqwest::Client,
    base: &str,
    event_id: &str,
    available: &[u64],
) -> Vec<(u64, Vec<String>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let maps = seat_maps(client, base, event_id).await;
        let shown: Vec<u64> = maps.iter().map(|(left, _)| *left).collect();
        if shown == available {
            return maps;
        }
        assert!(
            Instant::now() < deadline,
            "counts never settled at {available:?}: {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The fields of the gateway's "read side caught up" log line (JSON log format).
fn caught_up_line(log: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(log).expect("gateway log");
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|line| line["fields"].clone())
        .find(|fields| fields["message"] == "read side caught up with Kafka")
        .unwrap_or_else(|| panic!("no 'read side caught up' line in the gateway's log:\n{text}"))
}
