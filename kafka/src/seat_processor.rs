//! The seat processor on Kafka: consume `reservation-commands`, decide with the same
//! [`Partition::decide_batch`] as the embedded runtime, and produce the outcomes
//! (`reservation-completed`), the slim counts (`section-status`), the replies
//! (`reservation-replies`, to the partition the command's gateway named), the state changelog
//! (`seat-state-changelog`: reservation outcomes) and each changed section's state
//! (`section-snapshots`: where a gateway starts, and the section half of the changelog)
//! together with the consumer offsets in ONE Kafka transaction.
//!
//! One consumer and a few transactional producers per process: a batch over many partitions is
//! split over several transactions, each on its own producer and broker connection (D50);
//! each assigned partition is one task (its own [`Partition`]), so workers == partitions across
//! the group. The loop never
//! keeps a transaction open across a poll that could rebalance; records of partitions revoked
//! while a batch was collected are dropped from it (their next owner gets them).
//!
//! Local state (RocksDB) is written only after the transaction committed, with the next input
//! offset as the partition's applied position. When a task starts, that position is compared
//! with the group's committed offset: equal means the disk is current (restart with its disk:
//! resume at once); anything else (no disk, a crash between commit and write, a partition that
//! was elsewhere meanwhile) rebuilds the partition's state from the changelog, whose records were
//! committed in the same transactions as the offsets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use seatflow_aggregates::room::{RoomHeader, Ticket, TicketId};
use seatflow_aggregates::{
    Action, Command, CommandReply, Completed, Event, Millis, Partition, PartitionSettings,
    QuotaKey, QuotaState, SectionKey, SectionStatus, partition_of_command,
};
use seatflow_avro::{StoredQuota, StoredRoom, StoredSection, StoredTicket, Wire, decode, encode};
use seatflow_processor::{
    CommitBatch, Position, ProcessorConfig, RoomChange, SectionWrite, Store, StoreError, entropy,
    now_millis, open_store,
};
use tracing::{debug, info, warn};

use crate::closing::ClosesWithin;
use crate::topics::TopicsConfig;
use crate::{client_config, forget_reached_ends};

/// Header naming the `reservation-replies` partition of the gateway that waits for the outcome.
pub const REPLY_PARTITION_HEADER: &str = "seatflow-reply-partition";
/// Header of a dead-letter record: why it could not be processed.
pub const ERROR_HEADER: &str = "seatflow-error";

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of one seat-processor process.
#[derive(Debug, Clone)]
pub struct SeatProcessorConfig {
    pub brokers: String,
    pub topics: TopicsConfig,
    /// Stable identity of this process (e.g. the StatefulSet pod name): its transactional id,
    /// so a restarted process fences its previous incarnation.
    pub instance_id: String,
    pub data_dir: PathBuf,
    pub max_batch: usize,
    /// Transactional producers (at least 1): the most transactions one batch is split over
    /// (one per 6 partitions it touches), each flushed over its
    /// own connection at once (librdkafka sends one partition per produce request, at most five
    /// at a time on a connection: D50).
    pub producers: usize,
    /// How each partition owner is set up (waitlist limit, what it keeps between batches).
    pub partition: PartitionSettings,
    pub sync_writes: bool,
    /// Record framing of the public topics (the Confluent wire format when a Schema Registry
    /// is configured); the changelog always uses single-object framing.
    pub wire: Wire,
}

#[derive(Debug, thiserror::Error)]
pub enum SeatProcessorError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("changelog record {key:?} of partition {partition} does not decode: {reason}")]
    Changelog {
        partition: i32,
        key: String,
        reason: String,
    },
}

/// Partitions revoked and assigned by a rebalance, for the loop to drop and to start.
#[derive(Default)]
struct RebalanceContext {
    revoked: Mutex<Vec<i32>>,
    assigned: Mutex<Vec<i32>>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut revoked = self.revoked.lock();
            revoked.extend(partitions.elements().iter().map(|e| e.partition()));
            info!(partitions = ?*revoked, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let assigned: Vec<i32> = partitions
                .elements()
                .iter()
                .map(|e| e.partition())
                .collect();
            info!(partitions = ?assigned, "partitions assigned");
            self.assigned.lock().extend(assigned);
        }
    }
}

/// A consumed command record, copied out of the consumer's buffer.
struct Input {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    reply_partition: Option<i32>,
    /// The W3C trace context the command came with.
    traceparent: Option<Vec<u8>>,
}

struct Names {
    wire: Wire,
    brokers: String,
    /// The partitions of every topic of the runtime (commands, outcomes, snapshots...).
    partitions: u32,
    partition: PartitionSettings,
    commands: String,
    completed: String,
    status: String,
    changelog: String,
    snapshots: String,
    replies: String,
    dead_letter: String,
}

/// Run until `stop` is set. Errors are fatal for the process (a fenced or broken producer, a
/// store that cannot be written): the orchestrator restarts it and it resumes from Kafka.
pub fn run(
    config: &SeatProcessorConfig,
    stop: CancellationToken,
) -> Result<(), SeatProcessorError> {
    let names = Names {
        wire: config.wire.clone(),
        brokers: config.brokers.clone(),
        partitions: u32::try_from(config.topics.partitions).unwrap_or(1),
        partition: config.partition,
        commands: config.topics.name("reservation-commands"),
        completed: config.topics.name("reservation-completed"),
        status: config.topics.name("section-status"),
        changelog: config.topics.name("seat-state-changelog"),
        snapshots: config.topics.name("section-snapshots"),
        replies: config.topics.name("reservation-replies"),
        dead_letter: config.topics.name("dead-letter"),
    };
    let store = open_store(
        &config.data_dir,
        &ProcessorConfig {
            partitions: u32::try_from(config.topics.partitions).unwrap_or(1),
            sync_writes: config.sync_writes,
            ..ProcessorConfig::default()
        },
    )?;
    let group = config.topics.name("seat-processor");
    let consumer: ClosesWithin<BaseConsumer<RebalanceContext>> = ClosesWithin::new(
        "seat processor consumer",
        client_config(&config.brokers)
            .set("group.id", &group)
            // Static membership: a restarted instance (same id, e.g. the same StatefulSet pod) takes
            // its partitions back at once, without a rebalance of the whole group.
            .set("group.instance.id", &config.instance_id)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(RebalanceContext::default())?,
    );
    consumer.subscribe(&[&names.commands])?;
    let producers = (0..config.producers.max(1))
        .map(|index| transactional_producer(config, &group, index))
        .collect::<Result<Vec<_>, _>>()?;
    let watchdog = Watchdog::start(stop.clone());
    for producer in &producers {
        producer.init_transactions(TXN_TIMEOUT)?;
    }
    info!(group, instance = %config.instance_id, producers = producers.len(), "seat processor running");

    let mut tasks: HashMap<i32, Partition> = HashMap::new();
    let mut marks_due: HashSet<i32> = HashSet::new();
    let max_batch = config.max_batch.max(1);
    crate::spawn_group_lag_reporter(
        &config.brokers,
        &group,
        &names.commands,
        "seat-processor",
        stop.clone(),
    )?;
    let mut memory_reported: Option<Instant> = None;
    while !stop.is_cancelled() {
        if memory_reported.is_none_or(|at| at.elapsed() >= MEMORY_REPORT_EVERY) {
            if let Err(e) = store.report_memory() {
                warn!(error = %e, "store memory not readable");
            }
            memory_reported = Some(Instant::now());
        }
        // Collect a batch; no transaction is open while polling.
        let mut batch = Vec::with_capacity(max_batch);
        let mut wait = Duration::from_millis(100);
        while batch.len() < max_batch {
            match consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    warn!(error = %e, "consumer error");
                    break;
                }
                Some(Ok(message)) => {
                    let reply_partition = message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key == REPLY_PARTITION_HEADER)
                            .and_then(|h| h.value)
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(|v| v.parse().ok())
                    });
                    batch.push(Input {
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec),
                        reply_partition,
                        traceparent: crate::trace::traceparent(&message).map(<[u8]>::to_vec),
                    });
                }
            }
            wait = Duration::ZERO;
        }
        let revoked: Vec<i32> = std::mem::take(&mut *consumer.context().revoked.lock());
        if !revoked.is_empty() {
            for partition in &revoked {
                tasks.remove(partition);
                marks_due.remove(partition);
            }
            batch.retain(|input| !revoked.contains(&input.partition));
        }
        // Every assigned partition gets its task at once, not at its first command: its clock
        // must run (holds that ended while it was elsewhere expire now).
        let assigned: Vec<i32> = std::mem::take(&mut *consumer.context().assigned.lock());
        if !assigned.is_empty() {
            let current = consumer.assignment()?;
            let mut starting: Vec<i32> = assigned
                .into_iter()
                .filter(|p| !tasks.contains_key(p))
                .filter(|p| current.find_partition(&names.commands, *p).is_some())
                .collect();
            starting.sort_unstable();
            starting.dedup();
            if !starting.is_empty() {
                tasks.extend(start_tasks(&consumer, &store, &names, &starting)?);
                marks_due.extend(unwritten_partitions(&consumer, &names, &starting)?);
            }
        }
        // The clock of each partition with a hold that ended runs in this transaction, with
        // or without inputs of its own: a busy partition must not hold up another's expiries.
        let now = now_millis();
        let mut due = Vec::new();
        for (partition, task) in tasks.iter_mut() {
            task.load_holds(&store)?;
            if task.next_expiry().is_some_and(|at| at <= now) {
                due.push(*partition);
            }
        }
        if batch.is_empty() {
            if !due.is_empty() {
                process_clock(
                    &consumer, &producers, &watchdog, &store, &names, &mut tasks, &due,
                )?;
            }
            continue;
        }
        process_batch(
            &consumer,
            &producers,
            &watchdog,
            &store,
            &names,
            &mut tasks,
            &mut marks_due,
            batch,
            &due,
        )?;
    }
    info!("seat processor stopping");
    Ok(())
}

/// The transactional producer `index` of this process. The first keeps the id every version
/// before D50 used, so that an upgraded process fences its predecessor's open transaction.
fn transactional_producer(
    config: &SeatProcessorConfig,
    group: &str,
    index: usize,
) -> Result<ClosesWithin<BaseProducer>, KafkaError> {
    let transactional_id = match index {
        0 => format!("{group}-{}", config.instance_id),
        _ => format!("{group}-{}-{index}", config.instance_id),
    };
    Ok(ClosesWithin::new(
        "seat processor producer",
        client_config(&config.brokers)
            .set("transactional.id", transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "1000000")
            // A failed record fails the transaction anyway (abortable error at commit), so only
            // failures need a report. Without this every delivered record waits in the event queue
            // until it is polled, and the flush before the commit waits for them.
            .set("delivery.report.only.error", "true")
            // librdkafka 2.12 can wait forever in send_offsets_to_transaction when the group
            // coordinator's broker died: it waits for a broker state change that a decommissioned
            // broker never makes (librdkafka issues #5511, #5456; seen in our broker-kill test).
            // Closing idle connections makes such a change within a few seconds of the stall (no
            // record is produced while it lasts), and the coordinator is looked up again.
            .set("connections.max.idle.ms", "5000")
            .create()?,
    ))
}

/// How many partitions a batch puts in one transaction before it uses another producer. Each
/// partition of a transaction costs its flush about four produce requests that one connection
/// carries one after another; each transaction costs the broker its markers and offsets. Measured
/// on 20 partitions (docs/BENCHMARK.md): 4-5 partitions per transaction answered fastest; on 4
/// partitions under full load one transaction per partition cost the broker a third more CPU.
const PARTITIONS_PER_TRANSACTION: usize = 6;

/// A batch's partitions dealt over its transactions: one transaction per
/// [`PARTITIONS_PER_TRANSACTION`] partitions, at most one per producer, every partition in
/// exactly one (with all of its inputs, in order).
fn split_for_transactions<T: Clone>(
    by_partition: &BTreeMap<i32, Vec<T>>,
    producers: usize,
) -> Vec<BTreeMap<i32, Vec<T>>> {
    let transactions = by_partition
        .len()
        .div_ceil(PARTITIONS_PER_TRANSACTION)
        .clamp(1, producers.max(1));
    let mut parts = vec![BTreeMap::new(); transactions];
    for (at, (partition, inputs)) in by_partition.iter().enumerate() {
        parts[at % transactions].insert(*partition, inputs.clone());
    }
    parts.retain(|part| !part.is_empty());
    parts
}

/// Decide a batch and make it visible in one transaction per producer, then write the local
/// state. A producer's part of the batch that fails before its commit is aborted and read again
/// from the committed offsets; the other parts stand. `marks_due` are the partitions whose
/// snapshots still have to be marked complete; the partitions of `clocks_due` are decided too,
/// without inputs if they have none (their clock).
#[allow(clippy::too_many_arguments)]
fn process_batch(
    consumer: &BaseConsumer<RebalanceContext>,
    producers: &[ClosesWithin<BaseProducer>],
    watchdog: &Watchdog,
    store: &Store,
    names: &Names,
    tasks: &mut HashMap<i32, Partition>,
    marks_due: &mut HashSet<i32>,
    batch: Vec<Input>,
    clocks_due: &[i32],
) -> Result<(), SeatProcessorError> {
    let mut new_partitions: Vec<i32> = batch
        .iter()
        .map(|i| i.partition)
        .filter(|p| !tasks.contains_key(p))
        .collect();
    new_partitions.sort_unstable();
    new_partitions.dedup();
    if !new_partitions.is_empty() {
        tasks.extend(start_tasks(consumer, store, names, &new_partitions)?);
        marks_due.extend(unwritten_partitions(consumer, names, &new_partitions)?);
    }
    let started = Instant::now();
    let mut by_partition = by_partition(&batch);
    for partition in clocks_due {
        by_partition.entry(*partition).or_default();
    }
    let marking: Vec<i32> = by_partition
        .keys()
        .copied()
        .filter(|partition| marks_due.contains(partition))
        .collect();
    let committed = transact(
        consumer,
        producers,
        watchdog,
        store,
        names,
        tasks,
        &by_partition,
        &marking,
    )?;
    for partition in &committed {
        marks_due.remove(partition);
    }
    let decided = batch
        .iter()
        .filter(|input| committed.contains(&input.partition))
        .count();
    if decided > 0 {
        seatflow_telemetry::metrics().batch_decided(decided, started.elapsed());
    }
    Ok(())
}

/// Inside one transaction per producer: mark `marking`'s snapshots complete, decide each
/// partition's inputs (none: its clock), produce what that makes happen and commit with the
/// input offsets; then write the local state. Every producer's records are queued before the
/// first commit waits for its acknowledgements, so the producers' connections carry them at
/// once. Which partitions committed: a producer's part that failed before its commit is aborted
/// and read again from the committed offsets (an error only when that is fatal).
#[allow(clippy::too_many_arguments)]
fn transact(
    consumer: &BaseConsumer<RebalanceContext>,
    producers: &[ClosesWithin<BaseProducer>],
    watchdog: &Watchdog,
    store: &Store,
    names: &Names,
    tasks: &mut HashMap<i32, Partition>,
    by_partition: &BTreeMap<i32, Vec<&Input>>,
    marking: &[i32],
) -> Result<HashSet<i32>, SeatProcessorError> {
    let parts = split_for_transactions(by_partition, producers.len());
    let now = now_millis();
    let mut produced = Vec::with_capacity(parts.len());
    for (part, producer) in parts.into_iter().zip(producers) {
        producer.begin_transaction()?;
        let marks: Vec<i32> = marking
            .iter()
            .copied()
            .filter(|partition| part.contains_key(partition))
            .collect();
        let writes = mark_snapshots_complete(producer, names, &marks)
            .and_then(|()| produce_batch(producer, store, names, tasks, &part, now));
        produced.push((producer, part, writes));
    }
    let mut committed = Vec::new();
    let mut fatal = None;
    for (producer, part, writes) in produced {
        let writes = writes.and_then(|writes| {
            commit_transaction(consumer, producer, watchdog, names, &writes)?;
            Ok(writes)
        });
        match writes {
            Ok(writes) => committed.extend(writes),
            Err(error) if fatal.is_none() => {
                fatal = abort_batch(consumer, producer, names, tasks, &part, error).err();
            }
            // After a fatal error the process ends: the next incarnation fences what is open.
            Err(_) => {}
        }
    }
    let partitions = committed.iter().map(|write| write.partition).collect();
    // What committed is written before a fatal error ends the process (one write, one sync).
    store_locally(store, tasks, committed);
    match fatal {
        Some(error) => Err(error),
        None => Ok(partitions),
    }
}

/// Key of the record saying that a partition of `section-snapshots` holds every section of its
/// partition: written once, in the partition's first transaction, when both it and the
/// partition's `reservation-completed` were still empty. A gateway starts from the snapshots of
/// a marked partition; of an unmarked one (a log written before the topic existed) it reads
/// the history instead.
pub const SNAPSHOTS_COMPLETE_KEY: &str = "complete";

/// Of `partitions`, those where nothing was written yet (`reservation-completed` and
/// `section-snapshots` both empty): their snapshots will hold every section once marked.
fn unwritten_partitions(
    consumer: &BaseConsumer<RebalanceContext>,
    names: &Names,
    partitions: &[i32],
) -> Result<Vec<i32>, KafkaError> {
    let mut unwritten = Vec::new();
    for partition in partitions {
        let (_, completed) = watermarks(consumer, &names.completed, *partition)?;
        let (_, snapshots) = watermarks(consumer, &names.snapshots, *partition)?;
        if completed == 0 && snapshots == 0 {
            unwritten.push(*partition);
        }
    }
    Ok(unwritten)
}

/// Inside the open transaction: mark these partitions' snapshots complete.
fn mark_snapshots_complete(
    producer: &BaseProducer,
    names: &Names,
    partitions: &[i32],
) -> Result<(), SeatProcessorError> {
    for partition in partitions {
        send(
            producer,
            BaseRecord::to(&names.snapshots)
                .partition(*partition)
                .key(SNAPSHOTS_COMPLETE_KEY.as_bytes())
                .payload(b"1".as_slice()),
        )?;
    }
    Ok(())
}

/// Decide the partitions' clocks (no input) and make what they decide visible in one
/// transaction per producer, then write the local state: holds that ended expire, exactly once, like any
/// other decision.
fn process_clock(
    consumer: &BaseConsumer<RebalanceContext>,
    producers: &[ClosesWithin<BaseProducer>],
    watchdog: &Watchdog,
    store: &Store,
    names: &Names,
    tasks: &mut HashMap<i32, Partition>,
    partitions: &[i32],
) -> Result<(), SeatProcessorError> {
    let by_partition: BTreeMap<i32, Vec<&Input>> =
        partitions.iter().map(|p| (*p, Vec::new())).collect();
    transact(
        consumer,
        producers,
        watchdog,
        store,
        names,
        tasks,
        &by_partition,
        &[],
    )?;
    Ok(())
}

/// The batch's inputs per partition, each partition's in offset order.
fn by_partition(batch: &[Input]) -> BTreeMap<i32, Vec<&Input>> {
    let mut grouped: BTreeMap<i32, Vec<&Input>> = BTreeMap::new();
    for input in batch {
        grouped.entry(input.partition).or_default().push(input);
    }
    grouped
}

/// What a partition writes to its local store once the transaction committed.
struct LocalWrite {
    partition: i32,
    sections: Vec<SectionWrite>,
    outcomes: Vec<Completed>,
    quotas: Vec<(QuotaKey, QuotaState)>,
    rooms: Vec<RoomChange>,
    /// The next input offset: the partition's position once written.
    next_offset: i64,
}

/// Decide each partition's commands and produce what the decisions make happen, inside the open
/// transaction: the interpreter of [`Action`]s on Kafka.
fn produce_batch(
    producer: &BaseProducer,
    store: &Store,
    names: &Names,
    tasks: &mut HashMap<i32, Partition>,
    by_partition: &BTreeMap<i32, Vec<&Input>>,
    now: Millis,
) -> Result<Vec<LocalWrite>, SeatProcessorError> {
    let mut writes = Vec::with_capacity(by_partition.len());
    for (&partition, inputs) in by_partition {
        let Some(task) = tasks.get_mut(&partition) else {
            continue;
        };
        let mut commands = Vec::with_capacity(inputs.len());
        let mut origins = Vec::with_capacity(inputs.len());
        for input in inputs {
            match decode_command(names, input) {
                Ok(command) => {
                    commands.push(command);
                    origins.push(*input);
                }
                Err(reason) => dead_letter(producer, names, input, &reason)?,
            }
        }
        // A clock batch (no input) leaves the partition where it is.
        let next_offset = match inputs.last() {
            Some(input) => input.offset + 1,
            None => store.input_offset(partition as u32)? as i64,
        };
        let mut write = LocalWrite {
            partition,
            sections: Vec::new(),
            outcomes: Vec::new(),
            quotas: Vec::new(),
            rooms: Vec::new(),
            next_offset,
        };
        let batch = Decided {
            partition,
            commands: &commands,
            origins: &origins,
        };
        for action in task.decide_batch(store, &commands, now)? {
            batch.produce(producer, names, action, &mut write)?;
        }
        writes.push(write);
    }
    Ok(writes)
}

/// One partition's decided commands and the records they came from (same index).
struct Decided<'a> {
    partition: i32,
    commands: &'a [Command],
    origins: &'a [&'a Input],
}

impl Decided<'_> {
    fn produce(
        &self,
        producer: &BaseProducer,
        names: &Names,
        action: Action,
        write: &mut LocalWrite,
    ) -> Result<(), SeatProcessorError> {
        match action {
            Action::Record { input, event } => {
                let value = names.wire.encode(&event).map_err(encode_error)?;
                self.produce_to(producer, &names.completed, input, event.key(), &value)?;
                if let Event::SectionInitialized(init) = &event {
                    let value = encode(&event).map_err(encode_error)?;
                    self.keyed(
                        producer,
                        &names.snapshots,
                        &snapshot_init_key(&init.key),
                        &value,
                    )?;
                }
                Ok(())
            }
            Action::PublishStatus {
                input,
                key,
                available,
            } => {
                let status = SectionStatus { key, available };
                let value = names.wire.encode(&status).map_err(encode_error)?;
                self.produce_to(producer, &names.status, input, &status.key, &value)
            }
            Action::Reply {
                input,
                outcome,
                available,
            } => {
                let origin = self.origins[input];
                let _traced = crate::trace::child_span(
                    "seat-processor decide",
                    origin.traceparent.as_deref(),
                )
                .entered();
                let Some(reply_partition) = origin.reply_partition else {
                    return Ok(());
                };
                let command = &self.commands[input];
                let reply = CommandReply {
                    correlation_id: CommandReply::correlation_of(command),
                    key: command.key().clone(),
                    available,
                    outcome,
                };
                let value = names.wire.encode(&reply).map_err(encode_error)?;
                send(
                    producer,
                    traced(
                        BaseRecord::to(&names.replies)
                            .partition(reply_partition)
                            .key(reply.correlation_id.as_bytes())
                            .payload(value.as_slice()),
                        origin.traceparent.as_deref(),
                    ),
                )?;
                Ok(())
            }
            Action::StoreSection { key, state, change } => {
                let value = encode(&StoredSection {
                    key: key.clone(),
                    state: state.clone(),
                })
                .map_err(encode_error)?;
                // The section's state goes to the snapshots only: gateways start from it, and a
                // rebuild reads it there (once, not twice, in every transaction's bytes).
                self.keyed(
                    producer,
                    &names.snapshots,
                    &snapshot_state_key(&key),
                    &value,
                )?;
                write.sections.push(SectionWrite { key, state, change });
                Ok(())
            }
            Action::StoreOutcome(completed) => {
                let value = encode(&completed).map_err(encode_error)?;
                let key = format!("r:{}", completed.reservation.id);
                self.keyed(producer, &names.changelog, &key, &value)?;
                write.outcomes.push(completed);
                Ok(())
            }
            Action::StoreQuota { key, state } => {
                // An empty quota is a tombstone: compaction forgets the key.
                let value = if state.is_empty() {
                    Vec::new()
                } else {
                    encode(&StoredQuota {
                        key: key.clone(),
                        state: state.clone(),
                    })
                    .map_err(encode_error)?
                };
                self.keyed(
                    producer,
                    &names.changelog,
                    &changelog_quota_key(&key),
                    &value,
                )?;
                write.quotas.push((key, state));
                Ok(())
            }
            Action::StoreRoom {
                key,
                header,
                tickets,
            } => {
                // Like a section's state, a room goes to the snapshots: its owner rebuilds from
                // there, and a starting gateway reads its replica there.
                let event_id = key.event_id;
                let stored = StoredRoom {
                    event_id: event_id.clone(),
                    header,
                };
                let value = encode(&stored).map_err(encode_error)?;
                self.keyed(
                    producer,
                    &names.snapshots,
                    &snapshot_room_key(&event_id),
                    &value,
                )?;
                for ticket in &tickets {
                    let value = encode(&StoredTicket(ticket.clone())).map_err(encode_error)?;
                    let ticket_key = snapshot_ticket_key(&event_id, ticket.id);
                    self.keyed(producer, &names.snapshots, &ticket_key, &value)?;
                }
                write.rooms.push(RoomChange {
                    event_id,
                    header,
                    tickets,
                });
                Ok(())
            }
            Action::Forward {
                input,
                command,
                with_caller,
            } => self.hand_on(producer, names, input, &command, with_caller),
        }
    }

    /// Hand `command` on to the partition that decides it: a record of the commands topic in
    /// this transaction (read by its owner only once committed), with the reply partition of
    /// `input`'s caller when that caller waits for its answer, and `input`'s trace context.
    fn hand_on(
        &self,
        producer: &BaseProducer,
        names: &Names,
        input: Option<usize>,
        command: &Command,
        with_caller: bool,
    ) -> Result<(), SeatProcessorError> {
        let origin = input.map(|input| self.origins[input]);
        let reply_to = origin
            .and_then(|origin| origin.reply_partition)
            .filter(|_| with_caller)
            .map(|partition| partition.to_string());
        let mut headers = OwnedHeaders::new();
        if let Some(reply_to) = &reply_to {
            headers = headers.insert(Header {
                key: REPLY_PARTITION_HEADER,
                value: Some(reply_to.as_bytes()),
            });
        }
        if let Some(traceparent) = origin.and_then(|origin| origin.traceparent.as_deref()) {
            headers = headers.insert(Header {
                key: crate::trace::TRACEPARENT,
                value: Some(traceparent),
            });
        }
        let value = names.wire.encode(command).map_err(encode_error)?;
        let key = command.routing_key();
        send(
            producer,
            BaseRecord::to(&names.commands)
                .partition(partition_of_command(command, names.partitions) as i32)
                .key(key.as_bytes())
                .payload(value.as_slice())
                .headers(headers),
        )?;
        Ok(())
    }

    /// A record on a public topic, in the input's partition, with the input's trace context
    /// (none for a decision of the partition's clock).
    fn produce_to(
        &self,
        producer: &BaseProducer,
        topic: &str,
        input: Option<usize>,
        key: &SectionKey,
        value: &[u8],
    ) -> Result<(), SeatProcessorError> {
        let key = key.routing_key();
        let traceparent = input.and_then(|input| self.origins[input].traceparent.as_deref());
        send(
            producer,
            traced(
                BaseRecord::to(topic)
                    .partition(self.partition)
                    .key(key.as_bytes())
                    .payload(value),
                traceparent,
            ),
        )?;
        Ok(())
    }

    /// A keyed record in the input's partition of `topic` (the changelog, the snapshots).
    fn keyed(
        &self,
        producer: &BaseProducer,
        topic: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), SeatProcessorError> {
        send(
            producer,
            BaseRecord::to(topic)
                .partition(self.partition)
                .key(key.as_bytes())
                .payload(value),
        )?;
        Ok(())
    }
}

fn decode_command(names: &Names, input: &Input) -> Result<Command, String> {
    match input.payload.as_deref() {
        None => Err("empty record".to_owned()),
        Some(payload) => names
            .wire
            .decode::<Command>(payload)
            .map_err(|e| e.to_string()),
    }
}

/// A record that is not a command goes to the dead-letter topic, with why.
fn dead_letter(
    producer: &BaseProducer,
    names: &Names,
    input: &Input,
    reason: &str,
) -> Result<(), SeatProcessorError> {
    warn!(
        partition = input.partition,
        offset = input.offset,
        trace_id = crate::trace::trace_id(input.traceparent.as_deref()),
        %reason,
        "command to dead-letter"
    );
    let headers = OwnedHeaders::new().insert(Header {
        key: ERROR_HEADER,
        value: Some(reason.as_bytes()),
    });
    let mut record = BaseRecord::<[u8], [u8]>::to(&names.dead_letter).headers(headers);
    if let Some(key) = &input.key {
        record = record.key(key.as_slice());
    }
    if let Some(payload) = &input.payload {
        record = record.payload(payload.as_slice());
    }
    send(producer, record)?;
    Ok(())
}

/// Deliver everything, send the consumed offsets and commit.
fn commit_transaction(
    consumer: &BaseConsumer<RebalanceContext>,
    producer: &BaseProducer,
    watchdog: &Watchdog,
    names: &Names,
    writes: &[LocalWrite],
) -> Result<(), SeatProcessorError> {
    let mut offsets = TopicPartitionList::new();
    for write in writes {
        offsets.add_partition_offset(
            &names.commands,
            write.partition,
            Offset::Offset(write.next_offset),
        )?;
    }
    let group = consumer
        .group_metadata()
        .ok_or_else(|| KafkaError::Canceled)?;
    // Deliver everything before the offsets and the commit.
    let started = Instant::now();
    flush(producer)?;
    let produced = Instant::now();
    watchdog.watch("send_offsets_to_transaction", || {
        retrying(|| producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT))
    })?;
    let offsets_sent = Instant::now();
    watchdog.watch("commit_transaction", || {
        retrying(|| producer.commit_transaction(TXN_TIMEOUT))
    })?;
    seatflow_telemetry::metrics().transaction_committed(produced.elapsed());
    debug!(
        partitions = writes.len(),
        flush_ms = produced.duration_since(started).as_millis() as u64,
        send_offsets_ms = offsets_sent.duration_since(produced).as_millis() as u64,
        commit_ms = offsets_sent.elapsed().as_millis() as u64,
        "batch committed"
    );
    Ok(())
}

/// Nothing of the batch is visible: abort, forget the in-memory decisions and read the batch
/// again from its first offsets. Fatal producer errors and store failures end the process.
fn abort_batch(
    consumer: &BaseConsumer<RebalanceContext>,
    producer: &BaseProducer,
    names: &Names,
    tasks: &mut HashMap<i32, Partition>,
    by_partition: &BTreeMap<i32, Vec<&Input>>,
    error: SeatProcessorError,
) -> Result<(), SeatProcessorError> {
    warn!(%error, "batch failed; aborting its transaction");
    if let SeatProcessorError::Kafka(KafkaError::Transaction(e)) = &error
        && e.is_fatal()
    {
        return Err(error);
    }
    retrying(|| producer.abort_transaction(TXN_TIMEOUT))?;
    for (partition, inputs) in by_partition {
        if let Some(task) = tasks.get_mut(partition) {
            task.abandon();
        }
        if let Some(first) = inputs.first() {
            consumer.seek(
                &names.commands,
                *partition,
                Offset::Offset(first.offset),
                TXN_TIMEOUT,
            )?;
        }
    }
    if matches!(error, SeatProcessorError::Store(_)) {
        return Err(error);
    }
    Ok(())
}

/// The transaction committed: now the local state, with the next input offset as each
/// partition's position, for every partition of the batch in one write (one sync).
fn store_locally(store: &Store, tasks: &mut HashMap<i32, Partition>, writes: Vec<LocalWrite>) {
    if writes.is_empty() {
        return;
    }
    let partitions: Vec<i32> = writes.iter().map(|w| w.partition).collect();
    let batches: Vec<CommitBatch> = writes
        .into_iter()
        .map(|write| CommitBatch {
            partition: write.partition as u32,
            sections: write.sections,
            outcomes: write.outcomes,
            quotas: write.quotas,
            rooms: write.rooms,
            // Handed-on commands wait in the commands topic, not in a local outbox.
            handed_on: Vec::new(),
            delivered: Vec::new(),
            position: Position::InputOffset(write.next_offset as u64),
        })
        .collect();
    if let Err(e) = store.commit_all(&batches) {
        // Kafka has the batch; the disk does not. These partitions rebuild from the changelog.
        warn!(error = %e, "local state write failed; the batch's partitions will rebuild");
        for partition in partitions {
            tasks.remove(&partition);
        }
    }
}

/// How often the local store's memory by kind goes to the metrics
/// (`seatflow_rocksdb_memory_bytes`, as on the embedded runtime).
const MEMORY_REPORT_EVERY: Duration = Duration::from_secs(5);

/// How long one transactional call may block before the process gives up on it.
const STALL_LIMIT: Duration = Duration::from_secs(90);

/// Ends the process when a transactional call blocks far past its timeout: librdkafka does not
/// always honour those timeouts (issue #5456), and a seat processor stalled silently is the
/// worst outcome (requests time out, nothing says why). Exiting is safe: the transaction was
/// not committed, the next incarnation fences it and resumes from the committed offsets, as
/// after a crash. The orchestrator (StatefulSet) restarts the process.
struct Watchdog {
    stop: CancellationToken,
    /// The transactional call under way, if any, and since when.
    call: Arc<Mutex<Option<(&'static str, Instant)>>>,
}

impl Watchdog {
    fn start(processor_stop: CancellationToken) -> Self {
        let stop = CancellationToken::new();
        let call: Arc<Mutex<Option<(&'static str, Instant)>>> = Arc::default();
        let (watching, watched_call) = (stop.clone(), call.clone());
        std::thread::Builder::new()
            .name("txn-watchdog".into())
            .spawn(move || {
                while !watching.is_cancelled() {
                    std::thread::sleep(Duration::from_secs(1));
                    let stalled = watched_call
                        .lock()
                        .filter(|(_, since)| since.elapsed() > STALL_LIMIT);
                    if let Some((call, since)) = stalled {
                        tracing::error!(
                            call,
                            blocked_s = since.elapsed().as_secs(),
                            "transactional call blocked past every timeout; exiting so that a \
                             restart fences the open transaction and resumes"
                        );
                        processor_stop.cancel();
                        std::process::exit(75);
                    }
                }
            })
            .expect("spawn the transaction watchdog");
        Self { stop, call }
    }

    /// Run a transactional call under watch.
    fn watch<T>(&self, call: &'static str, f: impl FnOnce() -> T) -> T {
        *self.call.lock() = Some((call, Instant::now()));
        let result = f();
        *self.call.lock() = None;
        result
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Repeat a transactional call while librdkafka says the error is retriable (a coordinator
/// moving to another broker, a leader election): the call is idempotent then. Abortable and
/// fatal errors are returned.
fn retrying(mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let deadline = Instant::now() + TXN_TIMEOUT * 4;
    loop {
        match call() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                warn!(error = %e, "transactional call failed; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// A partition's low and high offsets. A leader that moves or is not elected yet (a topic just
/// created, a broker just started) answers for a moment with an error that says so: asked
/// again for up to 30 s, not fatal for the process.
fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.fetch_watermarks(topic, partition, TXN_TIMEOUT) {
            Err(KafkaError::MetadataFetch(
                code @ (Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::UnknownTopicOrPartition
                | Code::UnknownPartition),
            )) if Instant::now() < deadline => {
                warn!(topic, partition, error = %code, "partition not readable yet; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

fn encode_error(e: seatflow_avro::EncodeError) -> SeatProcessorError {
    SeatProcessorError::Store(StoreError::Encode(e))
}

/// `section-snapshots` key of an event's waiting room (a `WaitingRoom`, its tickets apart).
pub(crate) fn snapshot_room_key(event_id: &str) -> String {
    format!("w:{event_id}")
}

/// `section-snapshots` key of one ticket of an event's waiting room (a `RoomTicket`).
pub(crate) fn snapshot_ticket_key(event_id: &str, ticket: TicketId) -> String {
    format!("t:{event_id}/{ticket}")
}

/// `seat-state-changelog` key of a user's quota in an event (a `UserQuota`; empty: none).
fn changelog_quota_key(key: &QuotaKey) -> String {
    format!("q:{}", key.routing_key())
}

/// The quota of a routing key `eventId#user/userId` (see [`QuotaKey::routing_key`]).
fn quota_of_routing_key(routing: &str) -> Option<QuotaKey> {
    let (event_id, user_id) = routing.split_once("#user/")?;
    Some(QuotaKey::new(event_id, user_id))
}

/// `section-snapshots` key of a section's initialisation (a `SeatEvent`, single-object framing).
pub fn snapshot_init_key(key: &SectionKey) -> String {
    format!("i:{}", key.routing_key())
}

/// `section-snapshots` key of a section's latest state (a `SectionState`, as in the changelog).
pub fn snapshot_state_key(key: &SectionKey) -> String {
    format!("s:{}", key.routing_key())
}

/// Wait until every queued record is delivered (or has failed, which fails the transaction).
///
/// Not `Producer::flush`: rdkafka's flush polls in steps of 100 ms and its poll only returns
/// at the end of its timeout, so every transaction waited ~100 ms there whatever its size
/// (measured; docs/BENCHMARK.md). Nor a loop of short polls: rdkafka rounds what is left of a
/// poll's timeout down to whole milliseconds, so a 1 ms poll does not block but spins, and the
/// spinning took ~40 % of the seat processor's CPU from the broker whose acks it waits for
/// (measured with perf). Here the events are served without waiting and the thread sleeps
/// between looks: the wait ends within `FLUSH_STEP` of the last delivery.
fn flush(producer: &BaseProducer) -> Result<(), KafkaError> {
    let deadline = Instant::now() + TXN_TIMEOUT;
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(KafkaError::Flush(
                rdkafka::types::RDKafkaErrorCode::MessageTimedOut,
            ));
        }
        std::thread::sleep(FLUSH_STEP);
    }
}

/// How long a flush sleeps between two looks at what is still in flight.
const FLUSH_STEP: Duration = Duration::from_micros(200);

/// Queue a record, waiting for room if the producer's queue is full.
/// The record with the command's trace context, if it came with one.
fn traced<'a>(
    record: BaseRecord<'a, [u8], [u8]>,
    traceparent: Option<&'a [u8]>,
) -> BaseRecord<'a, [u8], [u8]> {
    match traceparent {
        Some(traceparent) => record.headers(OwnedHeaders::new().insert(Header {
            key: crate::trace::TRACEPARENT,
            value: Some(traceparent),
        })),
        None => record,
    }
}

fn send(producer: &BaseProducer, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                back,
            )) => {
                producer.poll(Duration::from_millis(10));
                record = back;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Make the tasks of newly assigned partitions: each resumes from the disk when it is current;
/// the others are rebuilt from the changelog together, with one reader (a reader costs ~250 ms
/// to start; one per partition made a 20-partition rebuild take 20 times that).
fn start_tasks(
    consumer: &BaseConsumer<RebalanceContext>,
    store: &Store,
    names: &Names,
    partitions: &[i32],
) -> Result<Vec<(i32, Partition)>, SeatProcessorError> {
    let mut wanted = TopicPartitionList::new();
    for partition in partitions {
        wanted.add_partition(&names.commands, *partition);
    }
    let committed: HashMap<i32, i64> = consumer
        .committed_offsets(wanted, TXN_TIMEOUT)?
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), o),
            _ => (e.partition(), 0),
        })
        .collect();
    let mut to_rebuild = Vec::new();
    for partition in partitions {
        let committed = committed.get(partition).copied().unwrap_or(0);
        let applied = store.input_offset(*partition as u32)? as i64;
        if applied == committed {
            info!(
                partition,
                offset = committed,
                "partition resumes from its disk"
            );
        } else {
            to_rebuild.push((*partition, committed, applied));
        }
    }
    if !to_rebuild.is_empty() {
        let started = Instant::now();
        let targets: Vec<(i32, i64)> = to_rebuild.iter().map(|(p, c, _)| (*p, *c)).collect();
        let restored = restore_from_changelog(store, names, &targets)?;
        for (partition, committed, applied) in &to_rebuild {
            info!(
                partition,
                records = restored.get(partition).copied().unwrap_or(0),
                applied,
                committed,
                "partition rebuilt from the changelog"
            );
        }
        info!(
            partitions = to_rebuild.len(),
            records = restored.values().sum::<u64>(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "changelog rebuild done"
        );
    }
    Ok(partitions
        .iter()
        .map(|p| {
            let owner = Partition::configured(*p as u32, &names.partition).with_entropy(entropy());
            (*p, owner)
        })
        .collect())
}

/// Read the state of the partitions of `targets` (partition, committed input offset) to the
/// ends it has now, and write each partition's state with the committed offset as its applied
/// position: the reservation outcomes from `seat-state-changelog`, the section states from
/// `section-snapshots` (written in the same transactions). A log written before the snapshots
/// existed has its section states in the changelog: a snapshot, always newer, wins over those.
fn restore_from_changelog(
    store: &Store,
    names: &Names,
    targets: &[(i32, i64)],
) -> Result<HashMap<i32, u64>, SeatProcessorError> {
    let reader: BaseConsumer = client_config(&names.brokers)
        .set("group.id", format!("{}-restore", names.changelog))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let (mut latest, mut counts) = latest_records(&reader, &names.changelog, targets)?;
    let (snapshots, snapshot_counts) = latest_records(&reader, &names.snapshots, targets)?;
    for (partition, records) in snapshots {
        let states = records.into_iter().filter(|(key, _)| {
            key.starts_with(b"s:") || key.starts_with(b"w:") || key.starts_with(b"t:")
        });
        latest.entry(partition).or_default().extend(states);
    }
    for (partition, count) in snapshot_counts {
        *counts.entry(partition).or_default() += count;
    }
    for (partition, committed) in targets {
        let mut sections = Vec::new();
        let mut outcomes = Vec::new();
        let mut quotas = Vec::new();
        let mut room_headers: HashMap<String, RoomHeader> = HashMap::new();
        let mut room_tickets: HashMap<String, Vec<Ticket>> = HashMap::new();
        for (key, payload) in latest.remove(partition).unwrap_or_default() {
            let key = String::from_utf8_lossy(&key).into_owned();
            let bad = |reason: String| SeatProcessorError::Changelog {
                partition: *partition,
                key: key.clone(),
                reason,
            };
            if key.starts_with("s:") {
                let stored = decode::<StoredSection>(&payload).map_err(|e| bad(e.to_string()))?;
                sections.push(SectionWrite::whole(stored.key, stored.state));
            } else if key.starts_with("r:") {
                outcomes.push(decode::<Completed>(&payload).map_err(|e| bad(e.to_string()))?);
            } else if key.starts_with("w:") {
                let stored = decode::<StoredRoom>(&payload).map_err(|e| bad(e.to_string()))?;
                room_headers.insert(stored.event_id, stored.header);
            } else if let Some(ticket) = key.strip_prefix("t:") {
                let event_id = ticket
                    .rsplit_once('/')
                    .map_or("", |(event, _)| event)
                    .to_owned();
                let stored = decode::<StoredTicket>(&payload).map_err(|e| bad(e.to_string()))?;
                room_tickets.entry(event_id).or_default().push(stored.0);
            } else if let Some(routing) = key.strip_prefix("q:") {
                if payload.is_empty() {
                    // A tombstone not compacted away yet: no reservation counted.
                    if let Some(quota) = quota_of_routing_key(routing) {
                        quotas.push((quota, QuotaState::default()));
                    }
                } else {
                    let stored = decode::<StoredQuota>(&payload).map_err(|e| bad(e.to_string()))?;
                    quotas.push((stored.key, stored.state));
                }
            } else {
                return Err(bad("unknown key kind".into()));
            }
        }
        // A room's header is written in every transaction that changes the room, so a ticket
        // without one cannot be (it would be a room of another partition's key).
        let rooms = room_headers
            .into_iter()
            .map(|(event_id, header)| RoomChange {
                tickets: room_tickets.remove(&event_id).unwrap_or_default(),
                event_id,
                header,
            })
            .collect();
        store.commit(&CommitBatch {
            partition: *partition as u32,
            sections,
            outcomes,
            quotas,
            rooms,
            handed_on: Vec::new(),
            delivered: Vec::new(),
            position: Position::InputOffset(*committed as u64),
        })?;
    }
    Ok(counts)
}

/// The latest value of each key of `topic`'s partitions in `targets`, read to the ends they
/// have now (still encoded: a section is written once per transaction that changed it, and
/// decoding each superseded version, a 5 KB bitmap for a 200x200 section, was most of a
/// rebuild's time); and how many records each partition had.
fn latest_records(
    reader: &BaseConsumer,
    topic: &str,
    targets: &[(i32, i64)],
) -> Result<(LatestRecords, HashMap<i32, u64>), SeatProcessorError> {
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for (partition, _) in targets {
        let (low, high) = watermarks(reader, topic, *partition)?;
        if high > low {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(low))?;
            ends.insert(*partition, high);
        }
    }
    let mut latest: LatestRecords = HashMap::new();
    let mut counts: HashMap<i32, u64> = HashMap::new();
    if ends.is_empty() {
        return Ok((latest, counts));
    }
    reader.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut since_position_check = 0u32;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(KafkaError::Canceled.into());
        }
        // A partition is done when its position reached the end it had. The last records of a
        // partition are transaction markers, never delivered, so only the consumer's position
        // tells; asking for it is a round trip to librdkafka's main thread, so it is asked
        // every 10,000 records or when nothing arrives, not per record (that took 60 s per
        // 1,000,000 records).
        let message = if since_position_check >= 10_000 {
            None
        } else {
            reader.poll(Duration::from_millis(100))
        };
        let Some(message) = message else {
            since_position_check = 0;
            forget_reached_ends(reader, &mut ends)?;
            continue;
        };
        since_position_check += 1;
        let message = message?;
        latest.entry(message.partition()).or_default().insert(
            message.key().unwrap_or_default().to_vec(),
            message.payload().unwrap_or_default().to_vec(),
        );
        *counts.entry(message.partition()).or_default() += 1;
    }
    Ok((latest, counts))
}

/// Per partition, the latest payload of each key.
type LatestRecords = HashMap<i32, HashMap<Vec<u8>, Vec<u8>>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(partitions: impl IntoIterator<Item = i32>) -> BTreeMap<i32, Vec<(i32, u32)>> {
        partitions
            .into_iter()
            .map(|partition| (partition, vec![(partition, 0), (partition, 1)]))
            .collect()
    }

    #[test]
    fn a_batch_over_few_partitions_stays_one_transaction() {
        for producers in [1, 4, 16] {
            let parts = split_for_transactions(&batch(0..4), producers);
            assert_eq!(parts, vec![batch(0..4)], "{producers} producers");
        }
        assert_eq!(split_for_transactions(&batch([]), 4).len(), 0);
    }

    #[test]
    fn a_batch_over_many_partitions_is_dealt_over_the_producers() {
        let all = batch(0..20);
        for (producers, expected) in [(1, 1), (2, 2), (4, 4), (16, 4)] {
            let parts = split_for_transactions(&all, producers);
            assert_eq!(parts.len(), expected, "{producers} producers");
            assert!(
                parts
                    .iter()
                    .all(|part| part.len() <= 20usize.div_ceil(expected)),
                "{parts:?}"
            );
            // Every partition in exactly one part, with its inputs in order.
            let mut joined = BTreeMap::new();
            for part in parts {
                for (partition, inputs) in part {
                    assert!(
                        joined.insert(partition, inputs).is_none(),
                        "{partition} twice"
                    );
                }
            }
            assert_eq!(joined, all);
        }
    }
}
