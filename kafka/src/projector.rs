//! The projector: `reservation-completed` into the Postgres audit table, in batches, each batch
//! written with the log positions after it in one database transaction. It reads from the
//! positions stored in the database (not from consumer-group offsets), so the database alone
//! says what was projected: a restart resumes exactly there, nothing lost or doubled.
//!
//! One projector at a time does the work (it assigns itself every partition); a second one is
//! harmless (rows only move forward in the log) but useless. While Postgres is down the
//! projector retries with backoff and reads nothing more: the lag grows in Kafka and is caught
//! up afterwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use seatflow_aggregates::Event;
use seatflow_avro::Wire;
use seatflow_projections::audit::{AuditError, AuditRow, AuditStore};
use tracing::{debug, info, warn};

use crate::topics::TopicsConfig;
use crate::{client_config, forget_reached_ends};

/// The name under which the audit projection stores its positions.
pub const AUDIT_PROJECTION: &str = "audit";

/// Settings of a projector.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    pub brokers: String,
    pub topics: TopicsConfig,
    pub wire: Wire,
    /// Most records in one database transaction.
    pub max_batch: usize,
    /// How long a batch waits for more records after its first one.
    pub linger: Duration,
    /// Database connections writing each batch at once (each takes a share of the partitions).
    pub writers: usize,
    /// Replay mode: stop once the ends the topic had at start are projected, logging progress.
    pub stop_at_end: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Project until `stop` is set.
pub async fn run(
    config: &ProjectorConfig,
    store: &AuditStore,
    stop: Arc<AtomicBool>,
) -> Result<(), ProjectorError> {
    let topic = config.topics.name("reservation-completed");
    let Some(positions) = with_retries(&stop, "read the projection's positions", || {
        store.positions(AUDIT_PROJECTION)
    })
    .await
    else {
        return Ok(());
    };
    let consumer: BaseConsumer = client_config(&config.brokers)
        .set("group.id", config.topics.name("projector"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "20")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..config.topics.partitions {
        let offset = positions
            .get(&partition)
            .map_or(Offset::Beginning, |next| Offset::Offset(*next));
        assignment.add_partition_offset(&topic, partition, offset)?;
    }
    consumer.assign(&assignment)?;
    info!(
        topic,
        resumed_partitions = positions.len(),
        "projector running"
    );
    let ends = if config.stop_at_end {
        let mut ends = HashMap::new();
        for partition in 0..config.topics.partitions {
            let (_, high) =
                consumer.fetch_watermarks(&topic, partition, Duration::from_secs(30))?;
            ends.insert(partition, high);
        }
        Some(ends)
    } else {
        None
    };

    // A thread reads and decodes the next batches while one is written.
    let (batches, mut to_write) = tokio::sync::mpsc::channel::<Batch>(2);
    let reader = {
        let (config, stop) = (config.clone(), stop.clone());
        std::thread::Builder::new()
            .name("projector-reader".into())
            .spawn(move || read_batches(&consumer, &config, &batches, &stop, ends))
            .expect("spawn the projector's reader")
    };
    while let Some(batch) = to_write.recv().await {
        if !write_batch(store.clone(), stop.clone(), batch, config.writers.max(1)).await {
            break;
        }
    }
    stop.store(true, Ordering::Release);
    drop(to_write);
    // The reader notices within one poll (200 ms); wait for it off the async workers.
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    info!("projector stopping");
    Ok(())
}

/// Rows of a batch, and the next offset of every partition it read.
#[derive(Default)]
struct Batch {
    rows: Vec<AuditRow>,
    next: BTreeMap<i32, i64>,
}

/// Read batches of up to `max_batch` records (waiting at most `linger` after the first) until
/// `stop` is set or the writer is gone.
fn read_batches(
    consumer: &BaseConsumer,
    config: &ProjectorConfig,
    batches: &tokio::sync::mpsc::Sender<Batch>,
    stop: &AtomicBool,
    mut ends: Option<HashMap<i32, i64>>,
) {
    let max_batch = config.max_batch.max(1);
    let total: i64 = ends.as_ref().map_or(0, |ends| ends.values().sum());
    let (mut read, mut reported) = (0u64, Instant::now());
    while !stop.load(Ordering::Acquire) {
        if let Some(remaining) = ends.as_mut() {
            // Replay: done once every partition's position reached the end it had at start
            // (the last records are transaction markers, only the position shows them passed).
            let _ = forget_reached_ends(consumer, remaining);
            remaining.retain(|_, end| *end > 0);
            if remaining.is_empty() {
                info!(
                    records = read,
                    "replay reached the end of the log it started with"
                );
                return;
            }
            if reported.elapsed() >= Duration::from_secs(1) {
                info!(records = read, of_about = total, "replay progress");
                reported = Instant::now();
            }
        }
        let mut batch = Batch::default();
        let mut records = 0usize;
        let mut first_at: Option<Instant> = None;
        while records < max_batch {
            let wait = match first_at {
                None => Duration::from_millis(200),
                Some(at) => config.linger.saturating_sub(at.elapsed()),
            };
            let message = match consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    warn!(error = %e, "projector consumer error");
                    break;
                }
                Some(Ok(message)) => message,
            };
            first_at.get_or_insert_with(Instant::now);
            records += 1;
            let (partition, offset) = (message.partition(), message.offset());
            batch.next.insert(partition, offset + 1);
            match message.payload().map(|p| config.wire.decode::<Event>(p)) {
                Some(Ok(Event::ReservationCompleted(completed))) => batch.rows.push(
                    AuditRow::from_reservation(&completed.reservation, partition, offset),
                ),
                Some(Ok(Event::SectionInitialized(_))) => {}
                Some(Err(e)) => {
                    warn!(partition, offset, error = %e, "undecodable outcome skipped")
                }
                None => warn!(partition, offset, "empty outcome record skipped"),
            }
        }
        read += records as u64;
        if records > 0 && batches.blocking_send(batch).is_err() {
            return;
        }
    }
}

/// Write a batch over `writers` connections at once, each taking the rows and positions of its
/// own partitions (`partition % writers`), so that a partition's rows and position always go
/// through one transaction. `false` if stopped before it was written.
async fn write_batch(
    store: AuditStore,
    stop: Arc<AtomicBool>,
    batch: Batch,
    writers: usize,
) -> bool {
    let Batch { rows, next } = batch;
    let started = Instant::now();
    let total = rows.len();
    let lane_of = |partition: i32| partition.rem_euclid(writers as i32) as usize;
    let mut lanes: Vec<Batch> = (0..writers).map(|_| Batch::default()).collect();
    for row in rows {
        lanes[lane_of(row.log_partition)].rows.push(row);
    }
    for (partition, offset) in next {
        lanes[lane_of(partition)].next.insert(partition, offset);
    }
    let mut writes = tokio::task::JoinSet::new();
    for lane in lanes.into_iter().filter(|lane| !lane.next.is_empty()) {
        let rows = lane.rows;
        let next: Vec<(i32, i64)> = lane.next.into_iter().collect();
        let (store, stop) = (store.clone(), stop.clone());
        writes.spawn(async move {
            with_retries(&stop, "write a batch", || {
                store.apply(AUDIT_PROJECTION, &rows, &next)
            })
            .await
            .is_some()
        });
    }
    let mut written = true;
    while let Some(done) = writes.join_next().await {
        written &= done.unwrap_or(false);
    }
    debug!(
        rows = total,
        write_ms = started.elapsed().as_millis() as u64,
        "batch projected"
    );
    written
}

/// Run a database call until it succeeds, waiting longer after each failure (up to 5 s); `None`
/// if `stop` is set meanwhile.
async fn with_retries<T, F, Fut>(stop: &AtomicBool, what: &str, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AuditError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match call().await {
            Ok(value) => return Some(value),
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "projector cannot {what}; retrying");
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if stop.load(Ordering::Acquire) {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
