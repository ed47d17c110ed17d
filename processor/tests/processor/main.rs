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

/// A read model that has heard of nothing yet: a gateway on Kafka behind the log, or one whose
/// creation timed out before the decision.
struct KnowsNothing;

impl seatflow_commands::SectionDirectory for KnowsNothing {
    fn layout(&self, _: &seatflow_aggregates::SectionKey) -> Option<seatflow_aggregates::Layout> {
        None
    }
    fn rules(&self, _: &seatflow_aggregates::SectionKey) -> Option<seatflow_aggregates::SaleRules> {
        None
    }
    fn event_exists(&self, _: &str) -> bool {
        false
    }
    fn reservation(
        &self,
        _: seatflow_aggregates::ReservationId,
    ) -> Option<seatflow_aggregates::Reservation> {
        None
    }
    fn held_by(
        &self,
        _: &str,
        _: &seatflow_aggregates::SectionKey,
        _: seatflow_aggregates::Millis,
    ) -> Option<seatflow_aggregates::Reservation> {
        None
    }
    fn note_accepted(&self, _: &seatflow_aggregates::Reservation) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_created_again_under_its_key_reaches_the_sections_it_made() {
    use seatflow_commands::{CommandError, CommandService, EventKey, NewSection, SalePolicy};
    let dir = tempfile::tempdir().expect("dir");
    let config = config();
    let sink = Arc::new(Collect::default());
    let store = open_store(dir.path(), &config).expect("open");
    let (processor, _workers) = Processor::start(store, &config, sink.clone()).expect("start");
    let commands = CommandService::new(
        Arc::new(processor),
        Arc::new(KnowsNothing),
        Arc::new(seatflow_commands::StatusCache::new()),
        Arc::new(seatflow_commands::Dedup::new(
            std::time::Duration::from_secs(60),
        )),
        seatflow_commands::Limits::default(),
    );
    let sections = |rows| {
        vec![
            NewSection {
                section: "A".into(),
                rows,
                seats_per_row: 10,
            },
            NewSection {
                section: "B".into(),
                rows: 2,
                seats_per_row: 5,
            },
        ]
    };
    let planned = |rows| {
        commands
            .plan_event("Spring tour", &sections(rows), SalePolicy::default())
            .expect("valid")
    };
    let key = EventKey {
        organizer: "org-1",
        key: "tour-2027",
    };
    let first = commands
        .create_event(&planned(3), Some(&key))
        .await
        .expect("created");
    assert_eq!(first, key.event_id());
    let again = commands
        .create_event(&planned(3), Some(&key))
        .await
        .expect("the same creation again");
    assert_eq!(again, first);
    let initialized = |sink: &Collect| {
        sink.0
            .lock()
            .iter()
            .filter(|record| matches!(record.event, Event::SectionInitialized(_)))
            .count()
    };
    assert_eq!(initialized(&sink), 2, "each section made once");

    // The same key with other seats: refused by the section's owner, nothing made.
    match commands.create_event(&planned(4), Some(&key)).await {
        Err(CommandError::Invalid { field, message }) => {
            assert_eq!(field, "Idempotency-Key");
            assert!(message.contains(&first), "{message}");
        }
        other => panic!("expected the key refused, got {other:?}"),
    }
    assert_eq!(initialized(&sink), 2);

    // Without a key, another event.
    let other = commands
        .create_event(&planned(3), None)
        .await
        .expect("created");
    assert_ne!(other, first);
    assert_eq!(initialized(&sink), 4);
}
