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

/// Fresh topics of `partitions` partitions and a processor's settings on a fresh disk.
fn new_processor(
    partitions: i32,
    instance_id: &str,
    max_batch: usize,
    producers: usize,
) -> (TopicsConfig, tempfile::TempDir, SeatProcessorConfig) {
    let topics = TopicsConfig {
        prefix: unique_prefix(),
        partitions,
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
        instance_id: instance_id.into(),
        data_dir: disk.path().to_owned(),
        max_batch,
        producers,
        partition: seatflow_aggregates::PartitionSettings::default(),
        sync_writes: true,
        wire: seatflow_kafka::Wire::single_object(),
    };
    (topics, disk, config)
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
    let (topics, _disk, config) = new_processor(2, "p0", 64, 2);

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

/// A batch over many partitions is committed in several transactions, one per producer: every
/// command is still decided exactly once, across a restart with the disk and one without it.
#[test]
fn a_batch_split_over_several_producers_decides_every_command_once() {
    let (topics, _disk, config) = new_processor(12, "split", 256, 3);
    // 24 sections of 2 seats over the 12 partitions, 3 requests for each: sent before the
    // processor starts, so that its first batches hold most partitions at once.
    let sections: Vec<String> = (0..24).map(|n| format!("S{n}")).collect();
    let touched: HashSet<u32> = sections
        .iter()
        .map(|section| {
            seatflow_aggregates::partition_of_command(
                &init(section, 1, 2),
                topics.partitions as u32,
            )
        })
        .collect();
    assert!(
        touched.len() > 6,
        "the batch spans more partitions than one transaction takes"
    );
    let mut commands: Vec<Command> = sections.iter().map(|section| init(section, 1, 2)).collect();
    for section in &sections {
        for user in 0..3 {
            commands.push(reserve(
                section,
                &format!("{section}-u{user}"),
                SeatRequest::Adjacent(1),
            ));
        }
    }
    send_commands(&topics, &commands);
    let processor = start(&config);
    let decided = |expected: usize| {
        read_until(
            &topics,
            "reservation-completed",
            |b| decode::<Event>(b).expect("event"),
            move |e| e.len() >= expected,
        )
    };
    let events = decided(96);
    assert_eq!(events.len(), 96, "24 inits + 72 outcomes, each once");
    let done = completions(&events);
    for section in &sections {
        let confirmed: Vec<&&Completed> = done
            .iter()
            .filter(|c| &c.reservation.key.section == section)
            .filter(|c| c.reservation.status == Status::Confirmed)
            .collect();
        let seats: HashSet<_> = confirmed
            .iter()
            .flat_map(|c| c.reservation.seats.clone())
            .collect();
        assert_eq!((confirmed.len(), seats.len()), (2, 2), "section {section}");
    }
    processor.stop();

    // Restarted with its disk, then without it: nothing is decided again, and what comes
    // after is decided on the state the split transactions left.
    let processor = start(&config);
    let late: Vec<Command> = sections
        .iter()
        .map(|section| {
            reserve(
                section,
                &format!("{section}-late"),
                SeatRequest::Adjacent(1),
            )
        })
        .collect();
    send_commands(&topics, &late[..12]);
    let events = decided(108);
    assert_eq!(events.len(), 108, "nothing decided twice after the restart");
    processor.stop();
    let fresh = tempfile::tempdir().expect("dir");
    let processor = start(&SeatProcessorConfig {
        data_dir: fresh.path().to_owned(),
        ..config
    });
    send_commands(&topics, &late[12..]);
    let events = decided(120);
    assert_eq!(events.len(), 120, "nothing decided twice after the rebuild");
    let late_outcomes: Vec<&Completed> = completions(&events)
        .into_iter()
        .filter(|c| c.reservation.user_id.ends_with("-late"))
        .collect();
    assert_eq!(late_outcomes.len(), 24);
    assert!(
        late_outcomes
            .iter()
            .all(|c| c.reservation.status == Status::Rejected
                && c.reservation.reason == Some(Rejection::SoldOut)),
        "every section was sold out by the split transactions"
    );
    processor.stop();
}
