//! The seat processor over a real RocksDB store: batches, redelivery, reopening, the log.

use std::sync::Arc;

use parking_lot::Mutex;
use seatflow_aggregates::test_util::{init, key, reserve};
use seatflow_aggregates::{Command, Event, Rejection, SeatRequest, Status};
use seatflow_aggregates::{SectionStatus, partition_of};
use seatflow_processor::{CommitSink, LogRecord, Outcome, Processor, ProcessorConfig, open_store};

#[derive(Default)]
struct Collect(Mutex<Vec<LogRecord>>);

impl CommitSink for Collect {
    fn committed(&self, records: &[LogRecord], _statuses: &[SectionStatus]) {
        self.0.lock().extend_from_slice(records);
    }
}

fn config() -> ProcessorConfig {
    ProcessorConfig {
        partitions: 2,
        max_batch: 64,
        queue_depth: 1024,
        sync_writes: true,
        partition: seatflow_aggregates::PartitionSettings::default(),
    }
}

async fn confirmed(processor: &Processor, command: Command) -> seatflow_aggregates::Reservation {
    match processor.submit(command).await.expect("decided") {
        Outcome::Reservation(r) => r,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_survive_reopening_and_a_redelivered_command_is_answered_the_same() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config();
    let sink = Arc::new(Collect::default());
    let command = reserve("A", "u1", SeatRequest::Adjacent(2));
    let first = {
        let store = open_store(dir.path(), &config).expect("open");
        let (processor, workers) = Processor::start(store, &config, sink.clone()).expect("start");
        assert_eq!(
            processor.submit(init("A", 2, 3)).await.expect("init"),
            Outcome::SectionReady
        );
        assert_eq!(
            processor.submit(init("A", 2, 3)).await.expect("again"),
            Outcome::SectionReady
        );
        assert_eq!(
            processor.submit(init("A", 5, 5)).await.expect("conflict"),
            Outcome::Refused(Rejection::SectionExists)
        );
        // Many concurrent requests on one section: decided in order, never a seat twice.
        let mut handles = Vec::new();
        for user in 0..10 {
            let processor = processor.clone();
            handles.push(tokio::spawn(async move {
                processor
                    .submit(reserve("A", &format!("c{user}"), SeatRequest::Adjacent(1)))
                    .await
            }));
        }
        let mut held = Vec::new();
        for handle in handles {
            if let Outcome::Reservation(r) = handle.await.expect("join").expect("decided")
                && r.status == Status::Confirmed
            {
                held.extend(r.seats);
            }
        }
        held.sort();
        held.dedup();
        assert_eq!(held.len(), 6, "exactly the section's six seats were sold");
        let first = match processor.submit(command.clone()).await.expect("decided") {
            Outcome::Reservation(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(first.reason, Some(Rejection::SoldOut));
        drop(processor);
        workers.join();
        first
    };
    let records_before = sink.0.lock().len();

    // Reopened: the redelivered command is answered with its first outcome and records nothing.
    let store = open_store(dir.path(), &config).expect("reopen");
    let (processor, workers) =
        Processor::start(store.clone(), &config, sink.clone()).expect("start");
    match processor.submit(command).await.expect("decided") {
        Outcome::Reservation(again) => assert_eq!(again, first),
        other => panic!("{other:?}"),
    }
    assert_eq!(sink.0.lock().len(), records_before);
    // A new section on the other partition continues its log where it stopped.
    let other = (0..100)
        .map(|i| format!("S{i}"))
        .find(|s| partition_of(&key(s), 2) != partition_of(&key("A"), 2))
        .expect("a section on the other partition");
    processor.submit(init(&other, 1, 1)).await.expect("init");
    let late = confirmed(
        &processor,
        reserve(&other, "late", SeatRequest::Adjacent(1)),
    )
    .await;
    assert_eq!(late.status, Status::Confirmed);
    drop(processor);
    workers.join();

    // The log holds every decision once, in order per partition, numbered without gaps.
    let replayed: Vec<LogRecord> = (0..2)
        .flat_map(|partition| store.read_log(partition, 1))
        .collect::<Result<_, _>>()
        .expect("read the log");
    assert_eq!(replayed.len(), sink.0.lock().len());
    for partition in 0..2 {
        let seqs: Vec<u64> = replayed
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.seq)
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "partition {partition}"
        );
        assert_eq!(
            store.last_log_seq(partition).expect("position"),
            seqs.len() as u64
        );
    }
    let inits = replayed
        .iter()
        .filter(|r| matches!(r.event, Event::SectionInitialized(_)))
        .count();
    assert_eq!(inits, 2, "a repeated or refused init records nothing");
}

#[test]
fn a_store_refuses_another_partition_count() {
    let dir = tempfile::tempdir().expect("dir");
    let store = open_store(dir.path(), &config()).expect("open");
    drop(store);
    let error = open_store(
        dir.path(),
        &ProcessorConfig {
            partitions: 3,
            ..config()
        },
    )
    .expect_err("refused");
    assert!(error.to_string().contains("partitions"), "{error}");
}

/// A claim's hand-on written by the quota's partition just before a crash (in the store's
/// outbox, not decided by the section's partition yet) is decided at the next start, once: the
/// reservation comes into being with the quota's verdict and leaves the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_handed_on_before_a_crash_is_decided_at_the_next_start() {
    use seatflow_aggregates::test_util::init_with;
    use seatflow_aggregates::{ClaimQuota, QuotaVerdict, SaleRules, partition_of_command};
    use seatflow_processor::{CommitBatch, OutboxKey, Position};

    let dir = tempfile::tempdir().expect("dir");
    let config = config();
    let sink = Arc::new(Collect::default());
    let rules = SaleRules {
        max_seats_per_user: Some(4),
        ..SaleRules::default()
    };
    {
        let store = open_store(dir.path(), &config).expect("open");
        let (processor, workers) = Processor::start(store, &config, sink.clone()).expect("start");
        assert_eq!(
            processor
                .submit(init_with("A", 2, 5, rules))
                .await
                .expect("init"),
            Outcome::SectionReady
        );
        drop(processor);
        workers.join();
    }
    // What the quota's batch wrote before the crash: the granted reservation, on its way.
    let Command::Reserve(mut granted) = reserve("A", "u1", SeatRequest::Adjacent(3)) else {
        unreachable!()
    };
    granted.quota = QuotaVerdict::Granted;
    let handed_on = Command::Reserve(granted.clone());
    let target = partition_of_command(&handed_on, config.partitions);
    let claim = Command::ClaimQuota(ClaimQuota {
        reserve: granted.clone(),
        limit: 4,
    });
    let quota_partition = partition_of_command(&claim, config.partitions);
    let store = open_store(dir.path(), &config).expect("reopen");
    store
        .commit(&CommitBatch {
            rooms: Vec::new(),
            partition: quota_partition,
            sections: Vec::new(),
            outcomes: Vec::new(),
            quotas: Vec::new(),
            handed_on: vec![(
                OutboxKey::of(target, &handed_on).expect("a key"),
                handed_on.clone(),
            )],
            delivered: Vec::new(),
            position: Position::Log(Vec::new()),
        })
        .expect("commit");
    assert_eq!(store.outbox(target).expect("outbox").len(), 1);

    let (processor, workers) =
        Processor::start(store.clone(), &config, sink.clone()).expect("start");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let decided = loop {
        if let Some(reservation) = store.reservation(granted.reservation_id).expect("read") {
            break reservation;
        }
        assert!(std::time::Instant::now() < deadline, "never decided");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(decided.status, Status::Confirmed);
    assert_eq!(decided.seats.len(), 3);
    assert!(store.outbox(target).expect("outbox").is_empty());
    // The same reservation asked again is the same answer: decided once.
    assert_eq!(confirmed(&processor, handed_on).await, decided);
    drop(processor);
    workers.join();
}
