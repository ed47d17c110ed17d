//! Seat processors as real processes on the real broker (started by `ops/test`): killed with
//! SIGKILL mid-load, or sharing the partitions with another that leaves. Every command is decided
//! exactly once, no seat is sold twice, the sale sells out exactly.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use seatflow_aggregates::{
    Command, Event, InitSection, Layout, ReservationId, Reserve, SeatRequest, SectionKey,
    SectionStatus, Status,
};
use seatflow_avro::{decode, encode};
use seatflow_kafka::{REPLY_PARTITION_HEADER, TopicsConfig, create_topics};

#[path = "../support/database.rs"]
mod database;
mod events;
mod lifecycle;
mod limit;
#[path = "../support/receiver.rs"]
mod receiver;
mod redis;
mod registry;
mod room;
mod snapshots;
mod telemetry;
mod webhooks;
use database::fresh_database;

const PARTITIONS: i32 = 4;

/// These tests run real processes and brokers on a 2-core machine: one at a time, so that a
/// slow machine is not mistaken for a broken sale.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const SECTIONS: [&str; 4] = ["A", "B", "C", "D"];
const ROWS: u16 = 10;
const SEATS_PER_ROW: u16 = 10;

fn brokers() -> String {
    std::env::var("SEATFLOW_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "SEATFLOW_TEST_KAFKA_BROKERS is not set: run the tests with ops/test (it starts Kafka)"
        )
    })
}

struct Sale {
    brokers: String,
    topics: TopicsConfig,
    event_id: String,
    producer: BaseProducer,
}

impl Sale {
    async fn new() -> Self {
        Self::on(brokers(), 1, 1).await
    }

    async fn on(brokers: String, replication: i32, min_insync_replicas: i32) -> Self {
        let topics = TopicsConfig {
            prefix: format!("it-{}-", uuid::Uuid::now_v7().simple()),
            partitions: PARTITIONS,
            replication,
            min_insync_replicas,
        };
        create_topics(&brokers, &topics.specs())
            .await
            .expect("topics");
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .expect("producer");
        let sale = Self {
            brokers,
            topics,
            event_id: format!("evt-{}", uuid::Uuid::now_v7().simple()),
            producer,
        };
        let inits: Vec<Command> = SECTIONS
            .iter()
            .enumerate()
            .map(|(position, section)| {
                Command::InitSection(InitSection {
                    key: SectionKey::new(sale.event_id.as_str(), *section),
                    event_name: "kafka sale".into(),
                    position: position as u32,
                    layout: Layout::new(ROWS, SEATS_PER_ROW).expect("layout"),
                    rules: Default::default(),
                    requested_at: 0,
                })
            })
            .collect();
        sale.send(&inits);
        sale
    }

    /// Fresh topics on the single broker and a producer, but no event: for tests that create
    /// theirs over HTTP.
    async fn without_event(kind: &str) -> Self {
        let topics = TopicsConfig {
            prefix: format!("{kind}-{}-", uuid::Uuid::now_v7().simple()),
            partitions: PARTITIONS,
            replication: 1,
            min_insync_replicas: 1,
        };
        create_topics(&brokers(), &topics.specs())
            .await
            .expect("topics");
        Self {
            brokers: brokers(),
            topics,
            event_id: String::new(),
            producer: ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .create()
                .expect("producer"),
        }
    }

    fn reserves(&self, count: usize, seed: usize) -> Vec<Command> {
        (0..count)
            .map(|i| {
                let n = seed + i;
                Command::Reserve(Reserve {
                    reservation_id: ReservationId::new_v7(),
                    key: SectionKey::new(self.event_id.as_str(), SECTIONS[n % SECTIONS.len()]),
                    user_id: format!("user-{n}"),
                    request: SeatRequest::Adjacent(1 + (n % 3) as u16),
                    requested_at: 0,
                    quota: Default::default(),
                    waitlist: false,
                })
            })
            .collect()
    }

    /// Send in small chunks over about `spread`, so that things can happen mid-load.
    fn send_spread(&self, commands: &[Command], spread: Duration) {
        let chunks = commands.len().div_ceil(10).max(1);
        for chunk in commands.chunks(10) {
            self.send(chunk);
            std::thread::sleep(spread / chunks as u32);
        }
    }

    fn send(&self, commands: &[Command]) {
        let topic = self.topics.name("reservation-commands");
        for command in commands {
            let key = command.routing_key();
            let value = encode(command).expect("encode");
            let partition = seatflow_aggregates::partition_of_command(command, PARTITIONS as u32);
            let headers = OwnedHeaders::new().insert(Header {
                key: REPLY_PARTITION_HEADER,
                value: Some("0".as_bytes()),
            });
            let mut record = BaseRecord::to(&topic)
                .partition(partition as i32)
                .key(key.as_bytes())
                .payload(value.as_slice())
                .headers(headers);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        self.producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                }
            }
        }
        self.producer
            .flush(Duration::from_secs(30))
            .expect("flushed");
    }

    fn processor(&self, data_dir: &Path, instance: &str) -> Child {
        self.processor_with(data_dir, instance, &[])
    }

    fn processor_with(&self, data_dir: &Path, instance: &str, env: &[(&str, &str)]) -> Child {
        self.processor_command(data_dir, instance, env)
            .spawn()
            .expect("seatflow seat-processor starts")
    }

    /// The seat processor's command line, to adjust before it is spawned.
    fn processor_command(&self, data_dir: &Path, instance: &str, env: &[(&str, &str)]) -> Process {
        let mut process = Process::new(env!("CARGO_BIN_EXE_seatflow"));
        process
            .env("SEATFLOW_METRICS_BIND", "127.0.0.1:0") // several on one machine
            .envs(env.iter().copied())
            .arg("seat-processor")
            .arg("--data-dir")
            .arg(data_dir)
            .env("SEATFLOW_KAFKA_BROKERS", &self.brokers)
            .env("SEATFLOW_KAFKA_TOPIC_PREFIX", &self.topics.prefix)
            .env("SEATFLOW_KAFKA_PARTITIONS", PARTITIONS.to_string())
            .env(
                "SEATFLOW_KAFKA_REPLICATION",
                self.topics.replication.to_string(),
            )
            .env(
                "SEATFLOW_KAFKA_MIN_INSYNC_REPLICAS",
                self.topics.min_insync_replicas.to_string(),
            )
            .env("SEATFLOW_INSTANCE_ID", instance)
            .env(
                "RUST_LOG",
                std::env::var("SEATFLOW_TEST_PROCESSOR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::inherit()) // logs; quiet unless SEATFLOW_TEST_PROCESSOR_LOG is set
            .stderr(Stdio::inherit());
        process
    }

    /// Read the committed outcomes until every reservation id has one (or time runs out), then
    /// check the sale.
    fn verify(&self, reservations: &[Command]) {
        let wanted: HashSet<ReservationId> = reservations
            .iter()
            .filter_map(Command::reservation_id)
            .collect();
        let events: Vec<Event> = read_all(
            &self.brokers,
            &self.topics,
            "reservation-completed",
            |e: &Vec<Event>| {
                let decided: HashSet<ReservationId> = e
                    .iter()
                    .filter_map(|e| match e {
                        Event::ReservationCompleted(c) => Some(c.reservation.id),
                        _ => None,
                    })
                    .collect();
                decided.len() >= wanted.len()
            },
        );
        let mut decided: HashMap<ReservationId, u32> = HashMap::new();
        let mut held = HashSet::new();
        let mut sold = 0;
        for event in &events {
            let Event::ReservationCompleted(completed) = event else {
                continue;
            };
            *decided.entry(completed.reservation.id).or_default() += 1;
            if completed.reservation.status == Status::Confirmed {
                for seat in &completed.reservation.seats {
                    assert!(
                        held.insert((completed.reservation.key.section.clone(), *seat)),
                        "{seat} of {} sold twice",
                        completed.reservation.key
                    );
                    sold += 1;
                }
            }
        }
        for id in &wanted {
            assert_eq!(
                decided.get(id),
                Some(&1),
                "reservation {id} decided {:?} times",
                decided.get(id)
            );
        }
        let capacity = SECTIONS.len() * usize::from(ROWS) * usize::from(SEATS_PER_ROW);
        assert_eq!(sold, capacity, "the sale sells out exactly");
        let statuses: Vec<SectionStatus> = read_all(
            &self.brokers,
            &self.topics,
            "section-status",
            |s: &Vec<SectionStatus>| s.len() >= SECTIONS.len(),
        );
        let mut last: HashMap<SectionKey, u32> = HashMap::new();
        for status in statuses {
            last.insert(status.key, status.available);
        }
        assert!(last.values().all(|available| *available == 0), "{last:?}");
    }
}

fn read_all<T: seatflow_avro::Contract>(
    brokers: &str,
    topics: &TopicsConfig,
    topic: &str,
    done: impl Fn(&Vec<T>) -> bool,
) -> Vec<T> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("verify-{}", uuid::Uuid::now_v7()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let name = topics.name(topic);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(&name, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut quiet_since = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            // librdkafka reports a broker going away as a consumer error; it reconnects by
            // itself (the failover test kills a broker while this reads).
            Some(Err(e)) => eprintln!("reader: {e}"),
            Some(Ok(message)) => {
                records.push(decode::<T>(message.payload().expect("payload")).expect("decodes"));
                quiet_since = Instant::now();
            }
            None => {
                if done(&records) && quiet_since.elapsed() > Duration::from_secs(1) {
                    return records;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out reading {name} ({} records)",
            records.len()
        );
    }
}

/// Wait until the seat-processor group is stable with `members` members.
fn wait_for_group(brokers: &str, topics: &TopicsConfig, members: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    let group = topics.name("seat-processor");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(list) = consumer.fetch_group_list(Some(&group), Duration::from_secs(5))
            && list
                .groups()
                .iter()
                .any(|g| g.state() == "Stable" && g.members().len() == members)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never had {members} stable members"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until at least `count` outcomes are committed (the processor is mid-load).
fn wait_for_outcomes(brokers: &str, topics: &TopicsConfig, count: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("watch-{}", uuid::Uuid::now_v7()))
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let name = topics.name("reservation-completed");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(&name, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < count {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(50)) {
            seen += 1;
        }
        assert!(Instant::now() < deadline, "only {seen} outcomes appeared");
    }
}

/// Child processes killed when the test ends, whatever way it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn kill(child: &mut Child, signal: &str) {
    Process::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    child.wait().expect("reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_processor_killed_mid_load_decides_every_command_exactly_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::new().await;
    let disk = tempfile::tempdir().expect("dir");
    let mut processor = sale.processor(disk.path(), "p0");
    wait_for_group(&sale.brokers, &sale.topics, 1);
    let commands = sale.reserves(1200, 0);
    std::thread::scope(|scope| {
        scope.spawn(|| sale.send_spread(&commands, Duration::from_millis(3000)));
        wait_for_outcomes(&sale.brokers, &sale.topics, 200);
        kill(&mut processor, "-KILL");
        std::thread::sleep(Duration::from_millis(200));
        processor = sale.processor(disk.path(), "p0");
    });
    sale.verify(&commands);
    kill(&mut processor, "-TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_to_the_remaining_processor_when_one_leaves_mid_load() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::new().await;
    let (disk0, disk1) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let mut first = sale.processor(disk0.path(), "p0");
    let mut second = sale.processor(disk1.path(), "p1");
    wait_for_group(&sale.brokers, &sale.topics, 2);
    let commands = sale.reserves(1200, 7);
    std::thread::scope(|scope| {
        scope.spawn(|| sale.send_spread(&commands, Duration::from_millis(3000)));
        wait_for_outcomes(&sale.brokers, &sale.topics, 200);
        kill(&mut second, "-TERM");
    });
    sale.verify(&commands);
    kill(&mut first, "-TERM");
}

// ---- the whole flow: gateways and a seat processor on Kafka ---------------------------------

fn gateway(topics: &TopicsConfig, instance: &str, reply_partition: i32, port: u16) -> Child {
    gateway_with(topics, instance, reply_partition, port, &[])
}

fn gateway_with(
    topics: &TopicsConfig,
    instance: &str,
    reply_partition: i32,
    port: u16,
    env: &[(&str, &str)],
) -> Child {
    gateway_command(topics, instance, reply_partition, port, env)
        .spawn()
        .expect("seatflow gateway starts")
}

/// A gateway's command line, to adjust before it is spawned.
fn gateway_command(
    topics: &TopicsConfig,
    instance: &str,
    reply_partition: i32,
    port: u16,
    env: &[(&str, &str)],
) -> Process {
    let mut process = Process::new(env!("CARGO_BIN_EXE_seatflow"));
    process
        .envs(env.iter().copied())
        .arg("gateway")
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("SEATFLOW_KAFKA_BROKERS", brokers())
        .env("SEATFLOW_KAFKA_TOPIC_PREFIX", &topics.prefix)
        .env("SEATFLOW_KAFKA_PARTITIONS", PARTITIONS.to_string())
        .env("SEATFLOW_KAFKA_REPLICATION", "1")
        .env("SEATFLOW_KAFKA_MIN_INSYNC_REPLICAS", "1")
        .env("SEATFLOW_INSTANCE_ID", instance)
        .env(
            "SEATFLOW_GATEWAY_REPLY_PARTITION",
            reply_partition.to_string(),
        )
        .env(
            "RUST_LOG",
            std::env::var("SEATFLOW_TEST_PROCESSOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    process
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{base}/health/ready")).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type HeldSeat = (String, Option<u64>, Option<u64>);

/// Record a CONFIRMED outcome's seats, failing if one was already held.
fn hold(
    held: &mut HashSet<HeldSeat>,
    confirmed: &mut Vec<serde_json::Value>,
    outcome: serde_json::Value,
) {
    if outcome["status"] != "CONFIRMED" {
        return;
    }
    for seat in outcome["seats"].as_array().expect("seats") {
        let key = (
            outcome["section"].to_string(),
            seat["row"].as_u64(),
            seat["seat"].as_u64(),
        );
        assert!(held.insert(key), "a seat sold twice: {outcome}");
    }
    confirmed.push(outcome);
}

/// Create an event over HTTP (201 expected); its id.
async fn create_event(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    sections: serde_json::Value,
) -> String {
    create_event_from(
        client,
        base,
        serde_json::json!({"name": name, "sections": sections}),
    )
    .await
}

/// Create an event of this body over HTTP (201 expected); its id.
async fn create_event_from(
    client: &reqwest::Client,
    base: &str,
    body: serde_json::Value,
) -> String {
    let (status, event) = post(client, format!("{base}/api/events"), body).await;
    assert_eq!(status, 201, "{event}");
    event["eventId"].as_str().expect("id").to_owned()
}

/// Wait until the gateway on `port` is ready, then create an event through it: the client, the
/// gateway's base URL and the event's id.
async fn gateway_ready_with_event(
    port: u16,
    name: &str,
    sections: serde_json::Value,
) -> (reqwest::Client, String, String) {
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let event_id = create_event(&client, &base, name, sections).await;
    (client, base, event_id)
}

async fn post(
    client: &reqwest::Client,
    url: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client.post(url).json(&body).send().await.expect("request");
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_through_kafka_sells_out_exactly_and_any_gateway_answers() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let processor_sale = Sale::without_event("e2e").await;
    let topics = processor_sale.topics.clone();
    let disk = tempfile::tempdir().expect("dir");
    let (port_a, port_b) = (free_port(), free_port());
    let mut children = Children(vec![
        processor_sale.processor(disk.path(), "p0"),
        gateway(&topics, "gw-a", 0, port_a),
        gateway(&topics, "gw-b", 1, port_b),
    ]);
    let (a, b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &a).await;
    wait_ready(&client, &b).await;

    let event_id = create_event(
        &client,
        &a,
        "Kafka night",
        serde_json::json!([
            {"section": "A", "rows": 5, "seatsPerRow": 5},
            {"section": "B", "rows": 5, "seatsPerRow": 5}
        ]),
    )
    .await;

    // A reservation answered by one gateway is cancelled through the other at once (it was a
    // 404: DELETE looked only in that gateway's memory, which the feed had not reached yet).
    // Accepted without waiting: the other gateway cannot have seen its outcome yet.
    for round in 0..3 {
        let user = format!("early-{round}");
        let (status, first) = post(
            &client,
            format!("{a}/api/reservations"),
            serde_json::json!({"eventId": event_id, "section": "A", "userId": user, "seatCount": 1}),
        )
        .await;
        assert_eq!(status, 202, "{first}");
        let id = first["reservationId"].as_str().expect("id");
        let cancelled = client
            .delete(format!("{b}/api/reservations/{id}"))
            .header("X-User-Id", &user)
            .send()
            .await
            .expect("delete");
        let status = cancelled.status().as_u16();
        let body: serde_json::Value = cancelled.json().await.expect("json");
        assert_eq!(status, 200, "cancel on the other gateway: {body}");
        assert_eq!(body["status"], "CANCELLED", "{body}");
        // The same user asks again on the gateway that cancelled: new seats, not the old id.
        let (status, again) = post(
            &client,
            format!("{b}/api/reservations?wait=10000"),
            serde_json::json!({"eventId": event_id, "section": "A", "userId": user, "seatCount": 1}),
        )
        .await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["status"], "CONFIRMED", "{again}");
        assert_ne!(again["reservationId"], first["reservationId"], "{again}");
        let again_id = again["reservationId"].as_str().expect("id");
        let freed = client
            .delete(format!("{b}/api/reservations/{again_id}"))
            .header("X-User-Id", &user)
            .send()
            .await
            .expect("delete");
        assert_eq!(freed.status().as_u16(), 200);
    }

    // Customers on both gateways, until both sections refuse at once.
    let mut held = HashSet::new();
    let mut confirmed = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..120 {
        let (client, base, event_id) = (
            client.clone(),
            if i % 2 == 0 { a.clone() } else { b.clone() },
            event_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let section = if i % 3 == 0 { "A" } else { "B" };
            let (status, answer) = post(
                &client,
                format!("{base}/api/reservations?wait=10000"),
                serde_json::json!({"eventId": event_id, "section": section, "userId": format!("fan-{i}"), "seatCount": 1 + i % 2}),
            )
            .await;
            if status != 202 {
                return (status, answer);
            }
            // Not decided within the 10 s asked for (a loaded 2-core machine): poll, as a
            // client does; the outcome must come.
            let id = answer["reservationId"].as_str().expect("id").to_owned();
            let polled = client
                .get(format!("{base}/api/reservations/{id}?wait=20000"))
                .send()
                .await
                .expect("poll");
            let status = polled.status().as_u16();
            (status, polled.json().await.unwrap_or(serde_json::Value::Null))
        }));
    }
    for task in tasks {
        let (status, outcome) = task.await.expect("join");
        match status {
            200 => {
                assert!(
                    outcome["status"] == "CONFIRMED" || outcome["status"] == "REJECTED",
                    "{outcome}"
                );
                hold(&mut held, &mut confirmed, outcome);
            }
            409 => {}
            other => panic!("HTTP {other}: {outcome}"),
        }
    }
    // Sweep up single seats left behind by two-seat requests.
    for section in ["A", "B"] {
        for i in 0..60 {
            let (status, outcome) = post(
                &client,
                format!("{a}/api/reservations?wait=10000"),
                serde_json::json!({"eventId": event_id, "section": section, "userId": format!("sweep-{section}-{i}"), "seatCount": 1}),
            )
            .await;
            if status == 409 {
                break;
            }
            assert_eq!(status, 200, "{outcome}");
            hold(&mut held, &mut confirmed, outcome);
        }
    }
    assert_eq!(held.len(), 50, "the sale sold out exactly");

    // Both gateways see the counts (from section-status / the outcomes) and any reservation.
    for base in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown: serde_json::Value = client
                .get(format!("{base}/api/events/{event_id}"))
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            let left: u64 = shown["sections"]
                .as_array()
                .expect("sections")
                .iter()
                .map(|s| s["available"].as_u64().unwrap_or(99))
                .sum();
            if left == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{base} still shows {left} seats");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for outcome in confirmed.iter().take(10) {
            let id = outcome["reservationId"].as_str().expect("id");
            let response = client
                .get(format!("{base}/api/reservations/{id}?wait=5000"))
                .send()
                .await
                .expect("get");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut found = response.status().as_u16();
            while found == 404 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                found = client
                    .get(format!("{base}/api/reservations/{id}"))
                    .send()
                    .await
                    .expect("get")
                    .status()
                    .as_u16();
            }
            assert_eq!(found, 200, "{base} does not know reservation {id}");
        }
    }
    let statuses: Vec<SectionStatus> = read_all(
        &brokers(),
        &topics,
        "section-status",
        |s: &Vec<SectionStatus>| s.len() >= 2,
    );
    let mut last: HashMap<SectionKey, u32> = HashMap::new();
    for status in statuses {
        last.insert(status.key, status.available);
    }
    assert_eq!(last.len(), 2);
    assert!(last.values().all(|available| *available == 0), "{last:?}");
    for child in &mut children.0 {
        kill(child, "-TERM");
    }
    children.0.clear();
}

/// Reserved and answered on A, cancelled on B, asked again on A at once, while the section is
/// busy: A's read model may not have B's cancellation yet, and it answered the cancelled
/// reservation as CONFIRMED (the client was told it held seats it did not hold). A retry that
/// would be answered with held seats now reads after a barrier: A's feed has every outcome of
/// the section committed before the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_right_after_a_cancel_on_another_gateway_gets_new_seats() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("again").await;
    let disk = tempfile::tempdir().expect("dir");
    let (port_a, port_b) = (free_port(), free_port());
    let _children = Children(vec![
        sale.processor(disk.path(), "p0"),
        gateway(&sale.topics, "gw-a", 0, port_a),
        gateway(&sale.topics, "gw-b", 1, port_b),
    ]);
    let (client, a, event_id) = gateway_ready_with_event(
        port_a,
        "Again night",
        serde_json::json!([{"section": "A", "rows": 100, "seatsPerRow": 100}]),
    )
    .await;
    let b = format!("http://127.0.0.1:{port_b}");
    wait_ready(&client, &b).await;
    // Other fans keep the section's partition busy on both gateways meanwhile.
    let busy = {
        let (client, a, b, event_id) = (client.clone(), a.clone(), b.clone(), event_id.clone());
        tokio::spawn(async move {
            let mut fans = Vec::new();
            for i in 0..2_000 {
                let (client, base, event_id) = (
                    client.clone(),
                    if i % 2 == 0 { a.clone() } else { b.clone() },
                    event_id.clone(),
                );
                fans.push(tokio::spawn(async move {
                    post(
                        &client,
                        format!("{base}/api/reservations?wait=10000"),
                        serde_json::json!({"eventId": event_id, "section": "A", "userId": format!("fan-{i}"), "seatCount": 1}),
                    )
                    .await
                }));
            }
            for fan in fans {
                let _ = fan.await;
            }
        })
    };
    let mut stale = Vec::new();
    for round in 0..20 {
        let user = format!("again-{round}");
        let reserve = serde_json::json!({"eventId": event_id, "section": "A", "userId": user, "seatCount": 1});
        let (status, first) = post(
            &client,
            format!("{a}/api/reservations?wait=10000"),
            reserve.clone(),
        )
        .await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["status"], "CONFIRMED", "{first}");
        let id = first["reservationId"].as_str().expect("id").to_owned();
        let cancelled = client
            .delete(format!("{b}/api/reservations/{id}"))
            .header("X-User-Id", &user)
            .send()
            .await
            .expect("delete");
        assert_eq!(cancelled.status().as_u16(), 200);
        let (status, again) =
            post(&client, format!("{a}/api/reservations?wait=10000"), reserve).await;
        assert_eq!(status, 200, "{again}");
        if again["reservationId"] == first["reservationId"] {
            stale.push(round);
        }
        assert_eq!(again["status"], "CONFIRMED", "{again}");
    }
    busy.await.expect("join");
    assert!(
        stale.is_empty(),
        "rounds {stale:?}: a retry was answered with the reservation cancelled on the other gateway"
    );
}

// ---- a 3-broker cluster: the leader of a busy partition dies mid-load ------------------------

/// `?wait=N` is one wait of at most N: the bus's wait for the reply and the gateway's wait for
/// the outcome share it (each waited N: 2 s for `wait=1000` with no seat processor). And an
/// accepted, undecided reservation is PENDING when polled on its gateway (it was a 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_once_for_its_outcome_when_nothing_decides_it() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("wait-once").await;
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut children = Children(vec![
        sale.processor(disk.path(), "p0"),
        gateway(&sale.topics, "gw-wait", 0, port),
    ]);
    let (client, base, event_id) = gateway_ready_with_event(
        port,
        "Nobody decides",
        serde_json::json!([{"section": "A", "rows": 2, "seatsPerRow": 2}]),
    )
    .await;
    // Nothing decides from here on (the killed child is reaped; Children's drop is a no-op).
    kill(&mut children.0[0], "-KILL");

    for wait_ms in [1_000u64, 2_000] {
        let started = Instant::now();
        let (status, answer) = post(
            &client,
            format!("{base}/api/reservations?wait={wait_ms}"),
            serde_json::json!({"eventId": event_id, "section": "A", "userId": format!("u{wait_ms}"), "seatCount": 1}),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "PENDING", "{answer}");
        assert!(
            took >= Duration::from_millis(wait_ms) && took < Duration::from_millis(wait_ms * 6 / 5),
            "wait={wait_ms} answered after {took:?}"
        );
        // Polled on the gateway that accepted it: still PENDING (202), as documented, not 404.
        let id = answer["reservationId"].as_str().expect("id");
        let started = Instant::now();
        let polled = client
            .get(format!("{base}/api/reservations/{id}?wait=500"))
            .send()
            .await
            .expect("poll");
        let took = started.elapsed();
        assert_eq!(polled.status(), 202);
        let polled: serde_json::Value = polled.json().await.expect("JSON");
        assert_eq!(polled["status"], "PENDING", "{polled}");
        assert_eq!(polled["reservationId"], answer["reservationId"]);
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(600),
            "wait=500 answered after {took:?}"
        );
    }
}

fn cluster() -> String {
    std::env::var("SEATFLOW_TEST_KAFKA_CLUSTER").unwrap_or_else(|_| {
        panic!("SEATFLOW_TEST_KAFKA_CLUSTER is not set: run the tests with ops/test (it starts a 3-node cluster)")
    })
}

/// The `__consumer_offsets` partition that holds a group (so its leader is the group's
/// coordinator): Java's `String.hashCode` of the group id, sign bit cleared, modulo the
/// partition count, as the broker computes it.
fn group_coordinator_partition(group: &str, offsets_partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    (hash & 0x7fff_ffff) % offsets_partitions
}

#[test]
fn the_group_coordinator_partition_is_computed_as_the_broker_does() {
    // Known values of Java's String.hashCode: "hello" = 99162322, and "polygenelubricants" =
    // Integer.MIN_VALUE, whose cleared sign bit gives 0.
    assert_eq!(group_coordinator_partition("hello", 50), 99_162_322 % 50);
    assert_eq!(group_coordinator_partition("polygenelubricants", 50), 0);
    assert_eq!(group_coordinator_partition("", 50), 0);
}

fn ops(script: &str, args: &[&str]) {
    // Read when the test runs, not when it was built (a shared target directory may hold a
    // binary built in another checkout).
    let root = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let status = Process::new(format!("{root}/ops/kafka/{script}"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("ops script runs");
    assert!(status.success(), "ops/kafka/{script} {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sale_goes_on_when_the_leader_broker_of_a_busy_partition_is_killed() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::on(cluster(), 3, 2).await;
    let disk = tempfile::tempdir().expect("dir");
    let mut children = Children(vec![sale.processor(disk.path(), "p0")]);
    wait_for_group(&sale.brokers, &sale.topics, 1);
    let commands = sale.reserves(1200, 3);
    let metadata_client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &sale.brokers)
        .create()
        .expect("client");
    let metadata = metadata_client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let leader_of = |topic: &str, partition: i32| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
            .map(|p| p.leader())
            .unwrap_or_else(|| panic!("no leader for {topic}[{partition}]"))
    };
    let commands_topic = sale.topics.name("reservation-commands");
    let busy_leaders: Vec<i32> = SECTIONS
        .iter()
        .map(|section| {
            let key = SectionKey::new(sale.event_id.as_str(), *section);
            leader_of(
                &commands_topic,
                seatflow_aggregates::partition_of(&key, PARTITIONS as u32) as i32,
            )
        })
        .collect();
    // The worst broker to lose: the group coordinator of the seat processors, when it also
    // leads a busy partition (it was the one that stalled librdkafka, issues #5511/#5456).
    let coordinator = leader_of(
        "__consumer_offsets",
        group_coordinator_partition(&sale.topics.name("seat-processor"), 50),
    );
    let leader = if busy_leaders.contains(&coordinator) {
        coordinator
    } else {
        busy_leaders[0]
    };
    eprintln!(
        "killing broker {leader} (group coordinator: {coordinator}, busy leaders: {busy_leaders:?})"
    );
    /// Start the killed node again however the test ends: the next tests need the cluster.
    struct Revive(String);
    impl Drop for Revive {
        fn drop(&mut self) {
            ops("start", &["node", &self.0]);
        }
    }
    let _revive = Revive(leader.to_string());
    std::thread::scope(|scope| {
        scope.spawn(|| sale.send_spread(&commands, Duration::from_millis(4000)));
        wait_for_outcomes(&sale.brokers, &sale.topics, 200);
        ops("stop", &["node", &leader.to_string(), "--kill"]);
    });
    sale.verify(&commands);
    for child in &mut children.0 {
        kill(child, "-TERM");
    }
    children.0.clear();
}

/// A record's payload and headers, as bytes.
type RawRecord = (Vec<u8>, Vec<(String, Vec<u8>)>);

/// Up to `count` records of a topic, raw, from the beginning (committed records only).
fn read_raw(brokers: &str, topic: &str, count: usize) -> Vec<RawRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-{}", uuid::Uuid::now_v7()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.len() < count && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            records.push((message.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_schema_registry_the_topics_carry_the_confluent_wire_format() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (url, registry) = registry::start().await;
    let sale = Sale::without_event("sr").await;
    let topics = sale.topics.clone();
    let disk = tempfile::tempdir().expect("dir");
    let with_registry = [("SEATFLOW_SCHEMA_REGISTRY_URL", url.as_str())];
    let port = free_port();
    let mut children = Children(vec![
        sale.processor_with(disk.path(), "p0", &with_registry),
        gateway_with(&topics, "gw-a", 0, port, &with_registry),
    ]);
    let (client, base, event_id) = gateway_ready_with_event(
        port,
        "Registry night",
        serde_json::json!([
            {"section": "A", "rows": 2, "seatsPerRow": 4}
        ]),
    )
    .await;
    let (mut confirmed, mut decided) = (0, 0);
    for i in 0..6 {
        let (status, outcome) = post(
            &client,
            format!("{base}/api/reservations?wait=10000"),
            serde_json::json!({"eventId": event_id, "section": "A", "userId": format!("fan-{i}"), "seatCount": 2}),
        )
        .await;
        match (status, outcome["status"].as_str()) {
            (200, Some("CONFIRMED")) => confirmed += 1,
            // Refused by the gateway's pre-filter once sold out: never published.
            (200, Some("REJECTED")) | (409, _) => {}
            _ => panic!("HTTP {status}: {outcome}"),
        }
        if status == 200 {
            decided += 1;
        }
    }
    assert_eq!(
        confirmed, 4,
        "2 rows of 4 seats, 2 adjacent seats per reservation"
    );

    // Both processes registered the four public schemas under Confluent's subject names and
    // read back what the registry holds.
    let wire = {
        let registry = registry.lock();
        let mut ids = seatflow_avro::RegistryIds::default();
        for topic in [
            "reservation-commands",
            "reservation-completed",
            "section-status",
            "reservation-replies",
        ] {
            let subject = format!("{}-value", topics.name(topic));
            let call = format!("POST /subjects/{subject}/versions");
            assert_eq!(
                registry.calls.iter().filter(|c| **c == call).count(),
                2,
                "{subject}: registered by the gateway and by the processor"
            );
            assert!(
                registry
                    .calls
                    .contains(&format!("GET /subjects/{subject}/versions/1"))
            );
            let id = registry.id_of(&subject, 1).expect("registered");
            let schema = registry.schema_of(id).expect("schema").clone();
            ids.learn(id, &schema).expect("parses");
        }
        seatflow_avro::Wire::confluent(ids)
    };

    // Every record on the public topics: 00 + that subject's id + a datum it decodes.
    let id_of = |topic: &str| {
        registry
            .lock()
            .id_of(&format!("{}-value", topics.name(topic)), 1)
            .expect("id")
    };
    let framed_by = |bytes: &[u8]| {
        assert_eq!(bytes[0], 0, "Confluent magic byte");
        u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"))
    };
    let published = 1 + decided; // the section's initialisation and the decided reservations
    let commands = read_raw(&brokers(), &topics.name("reservation-commands"), published);
    assert_eq!(commands.len(), published);
    for (bytes, _) in &commands {
        assert_eq!(framed_by(bytes), id_of("reservation-commands"));
        wire.decode::<Command>(bytes).expect("a command");
    }
    let completed = read_raw(&brokers(), &topics.name("reservation-completed"), published);
    assert_eq!(completed.len(), published, "one event per command");
    for (bytes, _) in &completed {
        assert_eq!(framed_by(bytes), id_of("reservation-completed"));
        wire.decode::<Event>(bytes).expect("an event");
    }
    for (bytes, _) in read_raw(&brokers(), &topics.name("section-status"), published) {
        assert_eq!(framed_by(&bytes), id_of("section-status"));
        wire.decode::<SectionStatus>(&bytes).expect("a status");
    }
    for (bytes, _) in read_raw(&brokers(), &topics.name("reservation-replies"), published) {
        assert_eq!(framed_by(&bytes), id_of("reservation-replies"));
        wire.decode::<seatflow_aggregates::CommandReply>(&bytes)
            .expect("a reply");
    }
    // `seatflow log dump` reads the Confluent-framed records through the registry.
    let output = Process::new(env!("CARGO_BIN_EXE_seatflow"))
        .args(["log", "dump", "--topic", "reservation-completed"])
        .env("SEATFLOW_KAFKA_BROKERS", brokers())
        .env("SEATFLOW_KAFKA_TOPIC_PREFIX", &topics.prefix)
        .env("SEATFLOW_KAFKA_PARTITIONS", PARTITIONS.to_string())
        .env("SEATFLOW_SCHEMA_REGISTRY_URL", &url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("seatflow log runs");
    assert!(output.status.success());
    let dumped: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON record per line"))
        .collect();
    assert_eq!(dumped.len(), published, "every outcome, once");
    assert!(
        dumped
            .iter()
            .all(|r| r["value"].is_object() && r["value"].get("undecodable").is_none()),
        "{dumped:?}"
    );
    let confirmed_in_log = dumped
        .iter()
        .filter(|r| r.to_string().contains("\"CONFIRMED\""))
        .count();
    assert_eq!(confirmed_in_log, confirmed);

    // A command framed with an id the registry never gave goes to the dead-letter topic, with
    // the reason.
    let single_object = encode(&sale.reserves(1, 900)[0]).expect("encode");
    let mut unknown_id = vec![0];
    unknown_id.extend_from_slice(&999u32.to_be_bytes());
    unknown_id.extend_from_slice(&single_object[10..]); // the datum after C3 01 + fingerprint
    let topic = topics.name("reservation-commands");
    sale.producer
        .send(
            BaseRecord::to(&topic)
                .partition(0)
                .key("x")
                .payload(unknown_id.as_slice()),
        )
        .expect("send");
    sale.producer.flush(Duration::from_secs(10)).expect("flush");
    let dead = read_raw(&brokers(), &topics.name("dead-letter"), 1);
    assert_eq!(dead.len(), 1);
    let reason = dead[0]
        .1
        .iter()
        .find(|(key, _)| key == seatflow_kafka::ERROR_HEADER)
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .expect("reason header");
    assert!(reason.contains("schema id 999"), "{reason}");

    for child in &mut children.0 {
        kill(child, "-TERM");
    }
    children.0.clear();
}

/// Positions name what they are positions in: a projector on another topic prefix, against a
/// database a projector of another prefix wrote, projects every row of its own topic (it
/// resumed at the other topic's offsets and dropped rows without a warning).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_on_another_topic_prefix_projects_all_of_its_own_topic() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (database_url, store) = fresh_database().await;
    let client = reqwest::Client::new();
    for (round, name) in ["first-prefix", "second-prefix"].into_iter().enumerate() {
        let sale = Sale::without_event(name).await;
        let disk = tempfile::tempdir().expect("dir");
        let port = free_port();
        let mut children = Children(vec![
            sale.processor(disk.path(), "p0"),
            gateway(&sale.topics, name, 0, port),
        ]);
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&client, &base).await;
        // Twelve sections, so that every partition holds outcomes of both topics.
        let sections: Vec<String> = ('A'..='L').map(String::from).collect();
        let layout: Vec<serde_json::Value> = sections
            .iter()
            .map(|s| serde_json::json!({"section": s, "rows": 1, "seatsPerRow": 5}))
            .collect();
        let event_id = create_event(&client, &base, name, serde_json::json!(layout)).await;
        for (i, section) in sections.iter().cycle().take(24).enumerate() {
            let (status, outcome) = post(
                &client,
                format!("{base}/api/reservations?wait=10000"),
                serde_json::json!({"eventId": event_id, "section": section, "userId": format!("{name}-{i}"), "seatCount": 1}),
            )
            .await;
            assert_eq!(status, 200, "{outcome}");
        }
        // The projector starts on a topic that already holds the sale (as after an outage),
        // so the other topic's offsets are within this one's range.
        children.0.push(projector(&sale.topics, &database_url));
        let expected = 24 * (round + 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut rows = store.all_rows().await.expect("rows").len();
        while rows < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            rows = store.all_rows().await.expect("rows").len();
        }
        assert_eq!(
            rows, expected,
            "{name}: every outcome of this topic is audited"
        );
        for child in &mut children.0 {
            kill(child, "-TERM");
        }
        children.0.clear();
    }
}

fn projector(topics: &TopicsConfig, database_url: &str) -> Child {
    projector_with(topics, database_url, &[])
}

fn projector_with(topics: &TopicsConfig, database_url: &str, env: &[(&str, &str)]) -> Child {
    Process::new(env!("CARGO_BIN_EXE_seatflow"))
        .envs(env.iter().copied())
        .arg("projector")
        .env("SEATFLOW_METRICS_BIND", "127.0.0.1:0") // several on one machine
        .env("SEATFLOW_KAFKA_BROKERS", brokers())
        .env("SEATFLOW_KAFKA_TOPIC_PREFIX", &topics.prefix)
        .env("SEATFLOW_KAFKA_PARTITIONS", PARTITIONS.to_string())
        .env("SEATFLOW_DATABASE_URL", database_url)
        .env(
            "RUST_LOG",
            std::env::var("SEATFLOW_TEST_PROCESSOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()
        .expect("seatflow projector starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_lands_exactly_once_in_the_audit_table_across_a_projector_crash() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (database_url, store) = fresh_database().await;
    let sale = Sale::without_event("audit").await;
    let topics = sale.topics.clone();
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut children = Children(vec![
        sale.processor(disk.path(), "p0"),
        gateway_with(
            &topics,
            "gw-a",
            0,
            port,
            &[("SEATFLOW_DATABASE_URL", database_url.as_str())],
        ),
        projector(&topics, &database_url),
    ]);
    let (client, base, event_id) = gateway_ready_with_event(
        port,
        "Audit night",
        serde_json::json!([
            {"section": "A", "rows": 4, "seatsPerRow": 5},
            {"section": "B", "rows": 4, "seatsPerRow": 5}
        ]),
    )
    .await;

    // What the clients were told, by reservation id.
    let mut told: HashMap<String, serde_json::Value> = HashMap::new();
    let reserve = async |i: usize| {
        let section = if i.is_multiple_of(2) { "A" } else { "B" };
        let (status, outcome) = post(
            &client,
            format!("{base}/api/reservations?wait=10000"),
            serde_json::json!({"eventId": event_id, "section": section, "userId": format!("fan-{i}"), "seatCount": 1 + i % 3}),
        )
        .await;
        match status {
            200 => Some(outcome),
            409 => None, // refused by the pre-filter: never decided, never audited
            other => panic!("HTTP {other}: {outcome}"),
        }
    };
    for i in 0..12 {
        if let Some(outcome) = reserve(i).await {
            told.insert(
                outcome["reservationId"].as_str().expect("id").into(),
                outcome,
            );
        }
    }
    // The projector dies mid-sale; the sale goes on; it comes back.
    kill(&mut children.0[2], "-KILL");
    for i in 12..30 {
        if let Some(outcome) = reserve(i).await {
            told.insert(
                outcome["reservationId"].as_str().expect("id").into(),
                outcome,
            );
        }
    }
    // One cancellation: its row must say so.
    let (cancelled_id, cancelled_by) = told
        .iter()
        .find(|(_, o)| o["status"] == "CONFIRMED")
        .map(|(id, o)| (id.clone(), o["userId"].as_str().expect("user").to_owned()))
        .expect("a confirmed reservation");
    let response = client
        .delete(format!("{base}/api/reservations/{cancelled_id}"))
        .header("X-User-Id", &cancelled_by)
        .send()
        .await
        .expect("cancel");
    assert_eq!(response.status().as_u16(), 200);
    let cancelled: serde_json::Value = response.json().await.expect("json");
    assert_eq!(cancelled["status"], "CANCELLED");
    told.insert(cancelled_id.clone(), cancelled);
    children.0[2] = projector(&topics, &database_url);

    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = store.all_rows().await.expect("rows");
        let done = rows.len() == told.len()
            && rows
                .iter()
                .any(|r| r.id.to_string() == cancelled_id && r.status == "CANCELLED");
        if done || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rows.len(), told.len(), "one row per decided reservation");
    for row in &rows {
        let outcome = told
            .get(&row.id.to_string())
            .unwrap_or_else(|| panic!("a row no client was told about: {row:?}"));
        assert_eq!(row.status, outcome["status"].as_str().expect("status"));
        assert_eq!(row.user_id, outcome["userId"].as_str().expect("user"));
        assert_eq!(row.event_id, event_id);
        let seats: Vec<(u64, u64)> = row
            .seats
            .as_array()
            .expect("seats")
            .iter()
            .map(|s| {
                (
                    s["row"].as_u64().expect("row"),
                    s["seat"].as_u64().expect("seat"),
                )
            })
            .collect();
        let told_seats: Vec<(u64, u64)> = outcome["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .map(|s| {
                (
                    s["row"].as_u64().expect("row"),
                    s["seat"].as_u64().expect("seat"),
                )
            })
            .collect();
        assert_eq!(seats, told_seats, "{outcome}");
        assert_eq!(row.cancelled_at.is_some(), row.status == "CANCELLED");
    }

    // The gateway reads a user's history, and a reservation it does not hold in memory, from
    // the audit: a row put there directly (as if decided before this gateway started) is found.
    let old_row = seatflow_projections::audit::AuditRow {
        id: uuid::Uuid::now_v7(),
        user_id: "early-bird".into(),
        log_partition: 0,
        log_offset: 0,
        ..rows[0].clone()
    };
    store
        .apply("elsewhere", std::slice::from_ref(&old_row), &[])
        .await
        .expect("apply");
    let history: serde_json::Value = client
        .get(format!("{base}/api/users/early-bird/reservations"))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history[0]["reservationId"], old_row.id.to_string());
    let found = client
        .get(format!("{base}/api/reservations/{}", old_row.id))
        .send()
        .await
        .expect("lookup");
    assert_eq!(found.status().as_u16(), 200);
    // A real user's history: what they were told, newest first.
    let (some_id, some_outcome) = told.iter().next().expect("an outcome");
    let user = some_outcome["userId"].as_str().expect("user");
    let history: serde_json::Value = client
        .get(format!("{base}/api/users/{user}/reservations"))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    assert_eq!(history[0]["reservationId"], some_id.as_str(), "{history}");
    assert_eq!(history[0]["status"], some_outcome["status"]);
    for child in &mut children.0 {
        kill(child, "-TERM");
    }
    children.0.clear();
}

/// A TCP proxy to PostgreSQL that the test can cut ("Postgres is down") and restore.
struct Outage {
    port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Outage {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cut = down.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if cut.load(Ordering::Acquire) {
                    continue; // dropped: connection refused, in effect
                }
                let (cut, upstream) = (cut.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let cut_off = async {
                        while !cut.load(Ordering::Acquire) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_off => {}
                    }
                });
            }
        });
        Self { port, down }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Release);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_go_on_while_postgres_is_down_and_the_audit_catches_up_after() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (database_url, store) = fresh_database().await;
    // postgres://user@host:port/db -> the same through the proxy.
    let (server, name) = database_url.rsplit_once('/').expect("a database");
    let (credentials, address) = server.rsplit_once('@').expect("user@host");
    let outage = Outage::start(address.to_owned()).await;
    let through_proxy = format!("{credentials}@127.0.0.1:{}/{name}", outage.port);
    let sale = Sale::without_event("pgdown").await;
    let topics = sale.topics.clone();
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut children = Children(vec![
        sale.processor(disk.path(), "p0"),
        gateway(&topics, "gw-a", 0, port),
        projector(&topics, &through_proxy),
    ]);
    let (client, base, event_id) = gateway_ready_with_event(
        port,
        "Outage night",
        serde_json::json!([
            {"section": "A", "rows": 10, "seatsPerRow": 10}
        ]),
    )
    .await;
    let mut told: HashMap<String, String> = HashMap::new();
    let rows_after = async |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let rows = store.all_rows().await.expect("rows");
            if rows.len() >= count || Instant::now() > deadline {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    for round in 0..3 {
        if round == 1 {
            outage.set_down(true);
        }
        if round == 2 {
            // Down for a while: nothing more reached the audit, yet every sale was answered.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(store.all_rows().await.expect("rows").len(), 10);
            outage.set_down(false);
        }
        for i in 0..10 {
            let (status, outcome) = post(
                &client,
                format!("{base}/api/reservations?wait=10000"),
                serde_json::json!({"eventId": event_id, "section": "A", "userId": format!("fan-{round}-{i}"), "seatCount": 1}),
            )
            .await;
            assert_eq!(status, 200, "{outcome}");
            told.insert(
                outcome["reservationId"].as_str().expect("id").into(),
                outcome["status"].as_str().expect("status").into(),
            );
        }
        if round == 0 {
            assert_eq!(rows_after(10).await.len(), 10);
        }
    }
    let rows = rows_after(30).await;
    assert_eq!(rows.len(), 30, "every outcome once, after the outage");
    for row in &rows {
        assert_eq!(Some(&row.status), told.get(&row.id.to_string()));
    }

    // A replay into a fresh database equals the live projection; a tampered live row is caught.
    let replay = async |live: &str| {
        let (into, _) = fresh_database().await;
        let output = Process::new(env!("CARGO_BIN_EXE_seatflow"))
            .args(["replay", "audit", "--into", &into, "--verify"])
            .env("SEATFLOW_KAFKA_BROKERS", brokers())
            .env("SEATFLOW_KAFKA_TOPIC_PREFIX", &topics.prefix)
            .env("SEATFLOW_KAFKA_PARTITIONS", PARTITIONS.to_string())
            .env("SEATFLOW_DATABASE_URL", live)
            .env("RUST_LOG", "warn")
            .output()
            .expect("seatflow replay runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (verified, report) = replay(&database_url).await;
    assert!(verified, "{report}");
    assert!(
        report.contains("verify: 30 rows equal, 0 different"),
        "{report}"
    );
    // Rows the daily archive moved are still the projection's: compared where they are now.
    let archive = Process::new(env!("CARGO_BIN_EXE_seatflow"))
        .args(["archive", "--older-than", "0s"])
        .env("SEATFLOW_DATABASE_URL", &database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("seatflow archive runs");
    assert!(archive.status.success(), "{archive:?}");
    assert!(
        store.all_rows().await.expect("rows").is_empty(),
        "all archived"
    );
    let (verified, report) = replay(&database_url).await;
    assert!(verified, "after the archive: {report}");
    assert!(
        report.contains("verify: 30 rows equal, 0 different, 0 missing"),
        "{report}"
    );
    let status = Process::new("psql")
        .args([
            database_url.as_str(),
            "-qc",
            &format!(
                "UPDATE reservation_archive SET status = 'REJECTED' WHERE id = '{}'",
                rows[0].id
            ),
        ])
        .status()
        .expect("psql runs");
    assert!(status.success());
    let (verified, report) = replay(&database_url).await;
    assert!(
        !verified,
        "a tampered row must fail the verification: {report}"
    );
    assert!(report.contains("29 rows equal, 1 different"), "{report}");
    for child in &mut children.0 {
        kill(child, "-TERM");
    }
    children.0.clear();
}

// ---- `seatflow all` on Kafka: alive at once, stopped within a bound ---------------------------

/// One role of seatflow on Kafka (`all`: every role in one process) with an audit database.
fn role(
    name: &str,
    topics: &TopicsConfig,
    database_url: &str,
    port: u16,
    data_dir: &Path,
) -> Child {
    Process::new(env!("CARGO_BIN_EXE_seatflow"))
        .arg(name)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env("SEATFLOW_METRICS_BIND", "127.0.0.1:0")
        .env("SEATFLOW_KAFKA_BROKERS", brokers())
        .env("SEATFLOW_KAFKA_TOPIC_PREFIX", &topics.prefix)
        .env("SEATFLOW_KAFKA_PARTITIONS", PARTITIONS.to_string())
        .env("SEATFLOW_KAFKA_REPLICATION", "1")
        .env("SEATFLOW_KAFKA_MIN_INSYNC_REPLICAS", "1")
        .env("SEATFLOW_INSTANCE_ID", format!("{name}-{port}"))
        .env("SEATFLOW_DATABASE_URL", database_url)
        .env(
            "RUST_LOG",
            std::env::var("SEATFLOW_TEST_PROCESSOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()
        .expect("seatflow starts")
}

/// SIGTERM, then the exit status if the process ended within `limit`.
fn terminate_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    Process::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `seatflow all` with an audit database hung at start in 2 of ~10 cold starts (the migration,
/// a block_in_place, ran inside one join with every other role, so not even `/health/live`
/// answered), and a SIGTERM during start-up once waited for ever (the Kafka consumer's close
/// has no bound). Every role, stopped during its start and once running: each answers
/// `/health/live` at once (those with an API) and exits within a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_is_alive_at_once_and_stops_within_a_bound_on_sigterm() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("roles").await;
    let client = reqwest::Client::new();
    for (name, has_api) in [
        ("all", true),
        ("gateway", true),
        ("seat-processor", false),
        ("projector", false),
    ] {
        for stop_after in [Duration::from_millis(200), Duration::from_millis(1500)] {
            let (database_url, _store) = fresh_database().await;
            let disk = tempfile::tempdir().expect("dir");
            let port = free_port();
            let mut running = Children(vec![role(
                name,
                &sale.topics,
                &database_url,
                port,
                disk.path(),
            )]);
            let started = Instant::now();
            if has_api && stop_after > Duration::from_secs(1) {
                loop {
                    let live = client
                        .get(format!("http://127.0.0.1:{port}/health/live"))
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .ok();
                    if live == Some(200) {
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "{name}: /health/live unanswered for {:?}",
                        started.elapsed()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            tokio::time::sleep(stop_after.saturating_sub(started.elapsed())).await;
            let stopping = Instant::now();
            let status = terminate_within(&mut running.0[0], Duration::from_secs(20));
            let Some(status) = status else {
                panic!("{name}: still running 20 s after SIGTERM ({stop_after:?} after start)");
            };
            assert!(
                status.success(),
                "{name}: exit {status} on SIGTERM {stop_after:?} after start"
            );
            eprintln!(
                "{name}: stopped {:?} after SIGTERM ({stop_after:?} after start)",
                stopping.elapsed()
            );
            running.0.clear();
        }
    }
}
