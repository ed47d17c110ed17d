//! The projectors: the decided-event log into the Postgres audit ([`run`]), into the Redis
//! read models ([`run_redis`]) and into queued webhook deliveries ([`run_webhooks`]), in
//! batches, each batch written with the log positions after it in one transaction (a database transaction; a Redis `MULTI`/`EXEC`). Each reads from the
//! positions stored beside its projection (not from consumer-group offsets), so the projection
//! alone says what was projected: a restart resumes exactly there, nothing lost or doubled.
//!
//! One projector of each kind at a time does the work (it assigns itself every partition); a
//! second one is harmless but useless. While its store is down a projector retries with backoff
//! and reads nothing more: the lag grows in Kafka and is caught up afterwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use seatflow_aggregates::{Event, SectionStatus};
use seatflow_avro::Wire;
use seatflow_projections::audit::{AuditRow, AuditStore};
use seatflow_projections::redis::{RedisBatch, RedisReads};
use seatflow_projections::webhooks::WebhookStore;
use seatflow_projections::webhooks::deliver::{Queued, project};
use tracing::{debug, info, warn};

use crate::client_config;
use crate::closing::ClosesWithin;
use crate::topics::TopicsConfig;
use seatflow_projections::retry::with_retries;

/// The name under which the audit projection stores its positions.
pub const AUDIT_PROJECTION: &str = "audit";

/// Settings of a projector.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    pub brokers: String,
    pub topics: TopicsConfig,
    pub wire: Wire,
    /// Most records in one transaction.
    pub max_batch: usize,
    /// How long a batch waits for more records after its first one.
    pub linger: Duration,
    /// Database connections writing each batch at once (each takes a share of the partitions).
    pub writers: usize,
    /// Replay mode: stop once the ends the topics had at start are projected, logging progress.
    pub stop_at_end: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Decoded records of a batch, and the next offset of every (topic, partition) it read.
struct Batch<T> {
    items: T,
    next: BTreeMap<(usize, i32), i64>,
    /// The newest record's timestamp (epoch milliseconds), for the projection lag.
    newest: Option<i64>,
}

impl<T: Default> Default for Batch<T> {
    fn default() -> Self {
        Self {
            items: T::default(),
            next: BTreeMap::new(),
            newest: None,
        }
    }
}

/// The lag of a projection that just wrote `batch`: how old its newest record was.
fn report_lag<T>(projection: &'static str, batch: &Batch<T>) {
    if let Some(newest) = batch.newest {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lag = Duration::from_millis(u64::try_from(now - newest).unwrap_or(0));
        seatflow_telemetry::metrics().projector_lag(projection, lag);
    }
}

type ProjectionConsumer = ClosesWithin<BaseConsumer>;

/// Log positions by (topic index, partition).
type Positions = HashMap<(usize, i32), i64>;

/// Adds one record to what a batch holds: `(items, topic index, partition, offset, payload)`;
/// a record it cannot read is skipped, and why is logged with the record's trace id.
type Decode<T> = fn(&mut T, &Wire, usize, i32, i64, &[u8]) -> Result<(), String>;

/// A consumer assigned to `topics` from `positions` (keyed by topic index; the beginning where
/// none is stored), with the ends to stop at in replay mode.
fn assign(
    config: &ProjectorConfig,
    group: &str,
    topics: &[String],
    positions: &Positions,
) -> Result<(ProjectionConsumer, Option<Positions>), ProjectorError> {
    let consumer: BaseConsumer = client_config(&config.brokers)
        .set("group.id", config.topics.name(group))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "20")
        .create()?;
    let consumer: ProjectionConsumer = ClosesWithin::new("projector consumer", consumer);
    let mut assignment = TopicPartitionList::new();
    for (index, topic) in topics.iter().enumerate() {
        for partition in 0..config.topics.partitions {
            let offset = positions
                .get(&(index, partition))
                .map_or(Offset::Beginning, |next| Offset::Offset(*next));
            assignment.add_partition_offset(topic, partition, offset)?;
        }
    }
    consumer.assign(&assignment)?;
    info!(
        ?topics,
        resumed_partitions = positions.len(),
        "projector running"
    );
    if !config.stop_at_end {
        return Ok((consumer, None));
    }
    let mut ends = HashMap::new();
    for (index, topic) in topics.iter().enumerate() {
        for partition in 0..config.topics.partitions {
            let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(30))?;
            ends.insert((index, partition), high);
        }
    }
    Ok((consumer, Some(ends)))
}

/// Read and decode batches on a thread of its own (the next batch is read while one is
/// written); they arrive on the returned channel until `stop` or the end of a replay.
fn spawn_reader<T: Default + Send + 'static>(
    projection: &'static str,
    consumer: ProjectionConsumer,
    config: &ProjectorConfig,
    topics: Vec<String>,
    decode: Decode<T>,
    ends: Option<Positions>,
    stop: CancellationToken,
) -> (
    std::thread::JoinHandle<()>,
    tokio::sync::mpsc::Receiver<Batch<T>>,
) {
    let (batches, to_write) = tokio::sync::mpsc::channel::<Batch<T>>(2);
    let config = config.clone();
    let reader = std::thread::Builder::new()
        .name("projector-reader".into())
        .spawn(move || {
            read_batches(
                projection, &consumer, &config, &topics, decode, &batches, &stop, ends,
            )
        })
        .expect("spawn the projector's reader");
    (reader, to_write)
}

/// After the writer loop: stop the reader and wait for it off the async workers (it notices
/// within one poll, 200 ms).
async fn stop_reader(reader: std::thread::JoinHandle<()>, stop: &CancellationToken) {
    stop.cancel();
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    info!("projector stopping");
}

/// The name the audit's positions are stored under: the projection and the topic they are
/// positions in. Offsets of one topic mean nothing in another: a projector on a new topic
/// prefix against a database that served another must not resume at that one's offsets.
fn audit_positions_key(topic: &str) -> String {
    format!("{AUDIT_PROJECTION}:{topic}")
}

/// Project `reservation-completed` into the audit until `stop` is set.
pub async fn run(
    config: &ProjectorConfig,
    store: &AuditStore,
    stop: CancellationToken,
) -> Result<(), ProjectorError> {
    let topics = vec![config.topics.name("reservation-completed")];
    let positions_key = audit_positions_key(&topics[0]);
    let Some(positions) = with_retries(&stop, "read the projection's positions", || {
        store.positions(&positions_key)
    })
    .await
    else {
        return Ok(());
    };
    if positions.is_empty() {
        info!(
            topic = %topics[0],
            "no audit positions stored for this topic: projecting it from its start"
        );
    }
    let positions = positions
        .into_iter()
        .map(|(partition, next)| ((0, partition), next))
        .collect();
    let (consumer, ends) = assign(config, "projector", &topics, &positions)?;
    let (reader, mut to_write) = spawn_reader(
        AUDIT_PROJECTION,
        consumer,
        config,
        topics,
        decode_audit,
        ends,
        stop.clone(),
    );
    while let Some(batch) = to_write.recv().await {
        let newest = Batch::<()> {
            newest: batch.newest,
            ..Batch::default()
        };
        let writers = config.writers.max(1);
        if !write_audit(store.clone(), stop.clone(), batch, writers, &positions_key).await {
            break;
        }
        report_lag(AUDIT_PROJECTION, &newest);
    }
    drop(to_write);
    stop_reader(reader, &stop).await;
    Ok(())
}

fn decode_audit(
    rows: &mut Vec<AuditRow>,
    wire: &Wire,
    _topic: usize,
    partition: i32,
    offset: i64,
    payload: &[u8],
) -> Result<(), String> {
    match wire.decode::<Event>(payload) {
        Ok(Event::ReservationCompleted(completed)) => {
            rows.push(AuditRow::from_reservation(
                &completed.reservation,
                partition,
                offset,
            ));
            Ok(())
        }
        Ok(Event::SectionInitialized(_) | Event::Room(_)) => Ok(()),
        Err(e) => Err(format!("undecodable outcome: {e}")),
    }
}

/// Project `reservation-completed` into queued webhook deliveries until `stop` is set: each
/// batch's deliveries and the positions after it in one write of `store` (positions under
/// `webhooks:<topic>`). The senders (`deliver::run`) post them.
pub async fn run_webhooks(
    config: &ProjectorConfig,
    store: Arc<dyn WebhookStore>,
    queued: Queued,
    stop: CancellationToken,
) -> Result<(), ProjectorError> {
    let topics = vec![config.topics.name("reservation-completed")];
    let positions_key = format!("webhooks:{}", topics[0]);
    let Some(positions) = with_retries(&stop, "read the webhook projection's positions", || {
        store.positions(&positions_key)
    })
    .await
    else {
        return Ok(());
    };
    let positions = positions
        .into_iter()
        .map(|(partition, next)| ((0, partition), next))
        .collect();
    let (consumer, ends) = assign(config, "projector-webhooks", &topics, &positions)?;
    let (reader, mut to_write) = spawn_reader(
        "webhooks",
        consumer,
        config,
        topics,
        decode_events,
        ends,
        stop.clone(),
    );
    while let Some(batch) = to_write.recv().await {
        let next: Vec<(i32, i64)> = batch
            .next
            .iter()
            .map(|((_, partition), offset)| (*partition, *offset))
            .collect();
        if with_retries(&stop, "queue webhook deliveries", || {
            project(store.as_ref(), &positions_key, &batch.items, &next, &queued)
        })
        .await
        .is_none()
        {
            break;
        }
        report_lag("webhooks", &batch);
    }
    drop(to_write);
    stop_reader(reader, &stop).await;
    Ok(())
}

fn decode_events(
    events: &mut Vec<Event>,
    wire: &Wire,
    _topic: usize,
    _partition: i32,
    _offset: i64,
    payload: &[u8],
) -> Result<(), String> {
    events.push(
        wire.decode::<Event>(payload)
            .map_err(|e| format!("undecodable outcome: {e}"))?,
    );
    Ok(())
}

/// Project `section-status` (counts, cache invalidation) and `reservation-completed`
/// (outcomes) into the Redis read models until `stop` is set. Redis restarted without its data
/// (no persistence) is noticed at the next batch and the models are rebuilt from the start of
/// the log.
pub async fn run_redis(
    config: &ProjectorConfig,
    store: &RedisReads,
    stop: CancellationToken,
) -> Result<(), ProjectorError> {
    loop {
        match project_redis(config, store, &stop).await? {
            RedisRun::Stopped => return Ok(()),
            RedisRun::Lost => warn!(
                "Redis lost the read models (restarted without its data?): rebuilding them from the start of the log"
            ),
        }
    }
}

enum RedisRun {
    Stopped,
    /// The positions vanished under the projector.
    Lost,
}

async fn project_redis(
    config: &ProjectorConfig,
    store: &RedisReads,
    stop: &CancellationToken,
) -> Result<RedisRun, ProjectorError> {
    let topics = vec![
        config.topics.name("section-status"),
        config.topics.name("reservation-completed"),
    ];
    let Some(stored) = with_retries(stop, "read the Redis projection's positions", || {
        store.positions()
    })
    .await
    else {
        return Ok(RedisRun::Stopped);
    };
    let positions: Positions = stored
        .into_iter()
        .filter_map(|((topic, partition), next)| {
            let index = topics.iter().position(|t| *t == topic)?;
            Some(((index, partition), next))
        })
        .collect();
    let mut wrote_before = !positions.is_empty();
    let (consumer, ends) = assign(config, "projector-redis", &topics, &positions)?;
    // The reader has a stop flag of its own: a rebuild stops it without stopping the projector.
    let reader_stop = CancellationToken::new();
    let (reader, mut to_write) = spawn_reader(
        "redis",
        consumer,
        config,
        topics.clone(),
        decode_redis,
        ends,
        reader_stop.clone(),
    );
    let mut run = RedisRun::Stopped;
    loop {
        // The reader follows its own flag: watch the projector's here.
        let batch = tokio::select! {
            batch = to_write.recv() => batch,
            () = stopped(stop) => None,
        };
        let Some(batch) = batch else {
            break;
        };
        let next: Vec<(String, i32, i64)> = batch
            .next
            .iter()
            .map(|((topic, partition), offset)| (topics[*topic].clone(), *partition, *offset))
            .collect();
        let started = Instant::now();
        let written = with_retries(stop, "write a batch to Redis", || {
            store.apply(&batch.items, &next)
        })
        .await;
        let Some(positions_existed) = written else {
            break;
        };
        if wrote_before && !positions_existed {
            run = RedisRun::Lost;
            break;
        }
        wrote_before = true;
        report_lag("redis", &batch);
        debug!(
            statuses = batch.items.statuses.len(),
            outcomes = batch.items.outcomes.len(),
            write_ms = started.elapsed().as_millis() as u64,
            "batch projected into Redis"
        );
    }
    drop(to_write);
    stop_reader(reader, &reader_stop).await;
    if matches!(run, RedisRun::Lost) {
        // Forget what this run wrote over the emptied store, positions included.
        with_retries(stop, "clear the Redis projection's positions", || {
            store.forget_positions()
        })
        .await;
    }
    Ok(if stop.is_cancelled() {
        RedisRun::Stopped
    } else {
        run
    })
}

/// Resolves once `stop` is set.
async fn stopped(stop: &CancellationToken) {
    stop.cancelled().await;
}

fn decode_redis(
    batch: &mut RedisBatch,
    wire: &Wire,
    topic: usize,
    partition: i32,
    offset: i64,
    payload: &[u8],
) -> Result<(), String> {
    if topic == 0 {
        let status = wire
            .decode::<SectionStatus>(payload)
            .map_err(|e| format!("undecodable section status: {e}"))?;
        batch.statuses.push(status);
        Ok(())
    } else {
        decode_audit(&mut batch.outcomes, wire, topic, partition, offset, payload)
    }
}

/// Read batches of up to `max_batch` records (waiting at most `linger` after the first) until
/// `stop` is set, the writer is gone, or (replay) every partition reached its end.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn read_batches<T: Default>(
    projection: &'static str,
    consumer: &ProjectionConsumer,
    config: &ProjectorConfig,
    topics: &[String],
    decode: Decode<T>,
    batches: &tokio::sync::mpsc::Sender<Batch<T>>,
    stop: &CancellationToken,
    mut ends: Option<Positions>,
) {
    let max_batch = config.max_batch.max(1);
    let total: i64 = ends.as_ref().map_or(0, |ends| ends.values().sum());
    let (mut read, mut reported) = (0u64, Instant::now());
    let topic_index = |name: &str| topics.iter().position(|t| t == name);
    let mut lag_reported = Instant::now();
    while !stop.is_cancelled() {
        if lag_reported.elapsed() >= Duration::from_secs(5) {
            crate::report_lag(consumer, projection);
            lag_reported = Instant::now();
        }
        if let Some(remaining) = ends.as_mut() {
            // Replay: done once every partition's position reached the end it had at start
            // (the last records are transaction markers, only the position shows them passed).
            if let Ok(position) = consumer.position() {
                for element in position.elements() {
                    if let (Offset::Offset(at), Some(topic)) =
                        (element.offset(), topic_index(element.topic()))
                        && remaining
                            .get(&(topic, element.partition()))
                            .is_some_and(|end| at >= *end)
                    {
                        remaining.remove(&(topic, element.partition()));
                    }
                }
            }
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
        let mut batch = Batch::<T>::default();
        let mut records = 0usize;
        let mut first_at: Option<Instant> = None;
        while records < max_batch {
            let wait = match first_at {
                None => Duration::from_millis(200),
                Some(at) => config.linger.saturating_sub(at.elapsed()),
            };
            let message = match consumer.poll(wait) {
                None => {
                    // Nothing more to read and nothing waiting to be written: caught up.
                    if records == 0 && batches.capacity() == batches.max_capacity() {
                        seatflow_telemetry::metrics().projector_lag(projection, Duration::ZERO);
                    }
                    break;
                }
                Some(Err(e)) => {
                    warn!(error = %e, "projector consumer error");
                    break;
                }
                Some(Ok(message)) => message,
            };
            first_at.get_or_insert_with(Instant::now);
            records += 1;
            let (partition, offset) = (message.partition(), message.offset());
            let Some(topic) = topic_index(message.topic()) else {
                continue;
            };
            batch.next.insert((topic, partition), offset + 1);
            if let Some(at) = message.timestamp().to_millis() {
                batch.newest = Some(batch.newest.map_or(at, |newest| newest.max(at)));
            }
            let traceparent = crate::trace::traceparent(&message);
            let _traced = crate::trace::child_span(projection, traceparent).entered();
            let decoded = match message.payload() {
                Some(payload) => decode(
                    &mut batch.items,
                    &config.wire,
                    topic,
                    partition,
                    offset,
                    payload,
                ),
                None => Err("empty record".to_owned()),
            };
            if let Err(reason) = decoded {
                warn!(
                    topic = message.topic(),
                    partition,
                    offset,
                    trace_id = crate::trace::trace_id(traceparent),
                    %reason,
                    "record skipped"
                );
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
async fn write_audit(
    store: AuditStore,
    stop: CancellationToken,
    batch: Batch<Vec<AuditRow>>,
    writers: usize,
    positions_key: &str,
) -> bool {
    let Batch {
        items: rows, next, ..
    } = batch;
    let started = Instant::now();
    let total = rows.len();
    let lane_of = |partition: i32| partition.rem_euclid(writers as i32) as usize;
    let mut lanes: Vec<Batch<Vec<AuditRow>>> = (0..writers).map(|_| Batch::default()).collect();
    for row in rows {
        lanes[lane_of(row.log_partition)].items.push(row);
    }
    for ((topic, partition), offset) in next {
        lanes[lane_of(partition)]
            .next
            .insert((topic, partition), offset);
    }
    let mut writes = tokio::task::JoinSet::new();
    for lane in lanes.into_iter().filter(|lane| !lane.next.is_empty()) {
        let rows = lane.items;
        let next: Vec<(i32, i64)> = lane
            .next
            .into_iter()
            .map(|((_, partition), offset)| (partition, offset))
            .collect();
        let (store, stop, positions_key) = (store.clone(), stop.clone(), positions_key.to_owned());
        writes.spawn(async move {
            with_retries(&stop, "write a batch", || {
                store.apply(&positions_key, &rows, &next)
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
