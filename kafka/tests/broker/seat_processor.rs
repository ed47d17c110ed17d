//! The exactly-once seat processor against the real broker: outcomes, replies, redelivery,
//! restart with its disk, and a rebuild from the changelog when the disk is gone.

use std::collections::HashSet;
use tokio_util::sync::CancellationToken;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use seatflow_aggregates::test_util::{init, reserve};
use seatflow_aggregates::{
    Cancel, Command, CommandReply, Completed, Event, Outcome, Rejection, SeatRequest,
    SectionStatus, Status,
};
use seatflow_avro::{decode, encode};
use seatflow_kafka::{
    REPLY_PARTITION_HEADER, SeatProcessorConfig, TopicsConfig, create_topics, run_seat_processor,
};

use crate::{brokers, unique_prefix};

struct Running {
    stop: CancellationToken,
    thread: JoinHandle<()>,
}

fn start(config: &SeatProcessorConfig) -> Running {
    let stop = CancellationToken::new();
    let thread = {
        let (config, stop) = (config.clone(), stop.clone());
        std::thread::spawn(move || run_seat_processor(&config, stop).expect("seat processor runs"))
    };
    Running { stop, thread }
}

impl Running {
    fn stop(self) {
        self.stop.cancel();
        self.thread.join().expect("processor thread");
    }
}

fn send_commands(topics: &TopicsConfig, commands: &[Command]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for command in commands {
        let key = command.routing_key();
        let value = encode(command).expect("encode");
        let headers = OwnedHeaders::new().insert(Header {
            key: REPLY_PARTITION_HEADER,
            value: Some("0".as_bytes()),
        });
        let partition =
            seatflow_aggregates::partition_of_command(command, topics.partitions as u32);
        producer
            .send(
                BaseRecord::to(&topics.name("reservation-commands"))
                    .partition(partition as i32)
                    .key(key.as_bytes())
                    .payload(value.as_slice())
                    .headers(headers),
            )
            .expect("queued");
    }
    producer.flush(Duration::from_secs(10)).expect("flushed");
}

/// Every committed record of a topic (all partitions) read so far, waiting until `done` holds.
fn read_until<T>(
    topics: &TopicsConfig,
    topic: &str,
    decode_one: impl Fn(&[u8]) -> T,
    done: impl Fn(&[T]) -> bool,
) -> Vec<T> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let name = topics.name(topic);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..topics.partitions {
        assignment
            .add_partition_offset(&name, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&records) {
        assert!(
            Instant::now() < deadline,
            "timed out reading {name}: {} records",
            records.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("message");
            records.push(decode_one(message.payload().expect("payload")));
        }
    }
    // Anything more would be a duplicate: give it a moment to show up.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            records.push(decode_one(
                message.expect("message").payload().expect("payload"),
            ));
        }
    }
    records
}

fn completions(events: &[Event]) -> Vec<&Completed> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ReservationCompleted(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn commands_are_decided_once_through_kafka_and_the_state_survives_restarts_and_lost_disks() {
    let topics = TopicsConfig {
        prefix: unique_prefix(),
        partitions: 2,
        replication: 1,
        min_insync_replicas: 1,
    };
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(create_topics(&brokers(), &topics.specs()))
        .expect("topics");
    let disk = tempfile::tempdir().expect("dir");
    let config = SeatProcessorConfig {
        brokers: brokers(),
        topics: topics.clone(),
        instance_id: "p0".into(),
        data_dir: disk.path().to_owned(),
        max_batch: 64,
        partition: seatflow_aggregates::PartitionSettings::default(),
        sync_writes: true,
        wire: seatflow_kafka::Wire::single_object(),
    };

    // A 2x3 section and 8 users asking for one seat each; one command is delivered twice.
    let mut commands = vec![init("A", 2, 3)];
    for user in 0..8 {
        commands.push(reserve("A", &format!("u{user}"), SeatRequest::Adjacent(1)));
    }
    commands.push(commands[3].clone());
    let processor = start(&config);
    send_commands(&topics, &commands);
    let events = read_until(
        &topics,
        "reservation-completed",
        |b| decode::<Event>(b).expect("event"),
        |e| e.len() >= 9,
    );
    let done = completions(&events);
    assert_eq!(
        events.len(),
        9,
        "one init + 8 outcomes, nothing for the redelivery"
    );
    let confirmed: Vec<&Completed> = done
        .iter()
        .copied()
        .filter(|c| c.reservation.status == Status::Confirmed)
        .collect();
    assert_eq!(confirmed.len(), 6);
    let seats: HashSet<_> = confirmed
        .iter()
        .flat_map(|c| c.reservation.seats.clone())
        .collect();
    assert_eq!(seats.len(), 6, "no seat twice");
    assert!(
        done.iter()
            .filter(|c| c.reservation.status == Status::Rejected)
            .all(|c| c.reservation.reason == Some(Rejection::SoldOut))
    );

    let statuses = read_until(
        &topics,
        "section-status",
        |b| decode::<SectionStatus>(b).expect("status"),
        |s| s.len() >= 9,
    );
    assert_eq!(statuses.last().map(|s| s.available), Some(0));
    let replies = read_until(
        &topics,
        "reservation-replies",
        |b| decode::<CommandReply>(b).expect("reply"),
        |r| r.len() >= 10,
    );
    assert_eq!(
        replies.len(),
        10,
        "every command is answered, the redelivery too"
    );
    let init_reply = replies
        .iter()
        .find(|r| r.correlation_id == format!("init:{}", commands[0].key().routing_key()))
        .expect("the init is answered");
    assert_eq!(init_reply.outcome, Outcome::SectionReady);
    let Command::Reserve(repeated) = &commands[3] else {
        panic!("a reserve")
    };
    let answers: Vec<_> = replies
        .iter()
        .filter(|r| r.correlation_id == repeated.reservation_id.to_string())
        .collect();
    assert_eq!(answers.len(), 2);
    assert_eq!(
        answers[0].outcome, answers[1].outcome,
        "the redelivery gets the first outcome"
    );

    // Its local store's memory is on the metrics, as the embedded runtime's is.
    let metrics = seatflow_telemetry::metrics().encode();
    let memtables = metrics
        .lines()
        .find_map(|line| line.strip_prefix("seatflow_rocksdb_memory_bytes{kind=\"memtables\"} "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(
        memtables.is_some_and(|bytes| bytes > 0.0),
        "no memtables figure in:\n{metrics}"
    );

    // Restart with its disk: a redelivered command is still answered, not decided again.
    processor.stop();
    let processor = start(&config);
    send_commands(&topics, &[commands[5].clone()]);
    let replies = read_until(
        &topics,
        "reservation-replies",
        |b| decode::<CommandReply>(b).expect("reply"),
        |r| r.len() >= 11,
    );
    assert_eq!(replies.len(), 11);
    processor.stop();
    let events = read_until(
        &topics,
        "reservation-completed",
        |b| decode::<Event>(b).expect("event"),
        |e| e.len() >= 9,
    );
    assert_eq!(events.len(), 9, "nothing decided twice after the restart");

    // The disk is gone: the state is rebuilt from the changelog. Cancel a confirmed reservation
    // and sell its seat again; a processor without the state would not know the section.
    let fresh = tempfile::tempdir().expect("dir");
    let config = SeatProcessorConfig {
        data_dir: fresh.path().to_owned(),
        ..config
    };
    let processor = start(&config);
    let held = &confirmed[0].reservation;
    let cancel = Command::Cancel(Cancel {
        reservation_id: held.id,
        key: held.key.clone(),
        user_id: held.user_id.clone(),
        requested_at: 0,
    });
    let again = reserve("A", "late", SeatRequest::Adjacent(1));
    send_commands(&topics, &[cancel, again.clone()]);
    let events = read_until(
        &topics,
        "reservation-completed",
        |b| decode::<Event>(b).expect("event"),
        |e| e.len() >= 11,
    );
    processor.stop();
    let done = completions(&events);
    let cancelled = done
        .iter()
        .find(|c| c.reservation.status == Status::Cancelled)
        .expect("cancelled");
    assert_eq!(cancelled.reservation.seats, held.seats);
    assert_eq!(cancelled.available, 1);
    let Command::Reserve(late) = &again else {
        panic!("a reserve")
    };
    let resold = done
        .iter()
        .find(|c| c.reservation.id == late.reservation_id)
        .expect("decided");
    assert_eq!(resold.reservation.status, Status::Confirmed);
    assert_eq!(
        resold.reservation.seats, held.seats,
        "the freed seat, and only it, sells again"
    );
}
