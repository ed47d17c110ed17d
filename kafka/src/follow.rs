//! A gateway's read side, fed from Kafka.
//!
//! At start, [`follow`] reads `section-snapshots` whole (compacted: each section's
//! initialisation and latest state, so its size follows the number of sections, not the
//! history), then follows `reservation-completed` (the read model, the waiters) and
//! `section-status` (the pre-filter's counts) from where the snapshots leave off: the last
//! [`Warm::outcomes_per_partition`] outcomes of each partition, so that recent reservations are
//! in memory again, and nothing older. It reports when it has caught up with the ends it saw
//! after reading the snapshots (the readiness of the gateway).
//!
//! Why the overlap is harmless: the ends of the followed topics are noted BEFORE the snapshots
//! are read, so the followed records start at or before the snapshots' point and reach past it
//! by readiness. Applying an outcome sets or frees exactly its seats (a seat already in that
//! state is left alone) and replaces the reservation's entry, so a run of outcomes applied again
//! on a state that already includes them ends in the same state: the last outcome that touched
//! a seat decides it, before and after.
//!
//! A partition whose snapshots are not marked complete (a log written before the topic
//! existed; see the seat processor's `SNAPSHOTS_COMPLETE_KEY`) is read from its first record,
//! as before.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use seatflow_aggregates::room::{RoomHeader, RoomState};
use seatflow_aggregates::{Event, SectionInitialized, SectionState, SectionStatus, partition_of};
use seatflow_avro::{StoredRoom, StoredSection, StoredTicket, Wire, decode};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::closing::ClosesWithin;
use crate::seat_processor::SNAPSHOTS_COMPLETE_KEY;
use crate::topics::TopicsConfig;
use crate::{client_config, forget_reached_ends};

/// What the read side is fed.
pub trait ReadFeed: Send + Sync + 'static {
    fn status(&self, status: &SectionStatus);
    fn event(&self, partition: u32, offset: i64, event: &Event);
    /// A section as its latest snapshot has it: at start, before any record is followed.
    fn snapshot(&self, init: &SectionInitialized, state: SectionState);
    /// An event's waiting room as its latest snapshot has it: at start, like a section.
    fn room(&self, event_id: &str, room: RoomState);
}

/// How much of `reservation-completed` a starting gateway reads besides the snapshots.
#[derive(Debug, Clone, Copy)]
pub struct Warm {
    /// The last outcomes of each partition: about the read model's memory (`recent_outcomes`
    /// over the partitions), so that a restarted gateway knows the recent reservations it knew.
    pub outcomes_per_partition: i64,
}

/// A request to the follow loop: tell `done` once everything committed to `partition` of
/// `reservation-completed` before the request was read.
struct Barrier {
    partition: i32,
    done: oneshot::Sender<()>,
}

/// Read-your-writes across gateways: waits until this gateway's read model has every outcome
/// committed for a section before the call (a cancellation made through another gateway a
/// moment ago included). Answered by the follow loop from its consumer's position.
#[derive(Debug, Clone)]
pub struct FeedBarrier {
    requests: std::sync::mpsc::Sender<Barrier>,
    partitions: u32,
}

/// Longest a barrier waits; past it the read model answers as it is.
const BARRIER_LIMIT: Duration = Duration::from_secs(2);

/// How long one watermark query may take before the start is tried again.
const WATERMARK_LIMIT: Duration = Duration::from_secs(5);

impl seatflow_commands::ReadBarrier for FeedBarrier {
    fn caught_up<'a>(
        &'a self,
        key: &'a seatflow_aggregates::SectionKey,
    ) -> seatflow_commands::BarrierFuture<'a> {
        Box::pin(async move {
            let (done, reached) = oneshot::channel();
            let partition = partition_of(key, self.partitions) as i32;
            if self.requests.send(Barrier { partition, done }).is_err() {
                return false;
            }
            let caught_up = matches!(
                tokio::time::timeout(BARRIER_LIMIT, reached).await,
                Ok(Ok(()))
            );
            if !caught_up {
                warn!(section = %key, "read side not caught up within the barrier's limit");
            }
            caught_up
        })
    }
}

/// Barriers waiting for the consumer to reach a position: (partition, end at request, done).
type Waiting = Vec<(i32, i64, oneshot::Sender<()>)>;

/// Take new barrier requests: each waits for the end `reservation-completed` has now.
fn take_barriers(
    consumer: &BaseConsumer,
    topic: &str,
    requests: &std::sync::mpsc::Receiver<Barrier>,
    waiting: &mut Waiting,
) {
    while let Ok(request) = requests.try_recv() {
        match consumer.fetch_watermarks(topic, request.partition, BARRIER_LIMIT) {
            Ok((_, high)) => waiting.push((request.partition, high, request.done)),
            // Unknown end: the waiter's limit answers it.
            Err(e) => warn!(error = %e, "no end for a read barrier"),
        }
    }
}

/// Where the consumer stands on each partition of `topic`.
fn positions(consumer: &BaseConsumer, topic: &str) -> HashMap<i32, i64> {
    let Ok(position) = consumer.position() else {
        return HashMap::new();
    };
    position
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .filter_map(|e| match e.offset() {
            Offset::Offset(at) => Some((e.partition(), at)),
            _ => None,
        })
        .collect()
}

/// Release the barriers whose partition the consumer has read to their end (positions, not
/// records: transaction markers take offsets too).
fn release_barriers(consumer: &BaseConsumer, topic: &str, waiting: &mut Waiting) {
    if waiting.is_empty() {
        return;
    }
    let reached = positions(consumer, topic);
    let mut still = Vec::with_capacity(waiting.len());
    for (partition, end, done) in waiting.drain(..) {
        if end <= 0 || reached.get(&partition).is_some_and(|at| *at >= end) {
            let _ = done.send(());
        } else if !done.is_closed() {
            still.push((partition, end, done));
        }
    }
    *waiting = still;
}

/// One partition of one topic.
type Slot = (String, i32);

/// The topics a gateway reads.
struct Names {
    snapshots: String,
    status: String,
    completed: String,
    partitions: i32,
}

/// Where the follow loop starts and what it must reach before the gateway is ready.
struct Start {
    assignment: TopicPartitionList,
    /// The end to reach on each followed partition.
    behind: HashMap<Slot, i64>,
    sections: usize,
}

/// Follow the read topics until `stop`, starting from the snapshots (see the module's doc);
/// `caught_up` is set once the followed topics reached the ends they had after the snapshots
/// were read (and `also_ready` is set). The barrier waits for the loop to reach the current
/// end of one section's partition.
#[allow(clippy::too_many_arguments)]
pub fn follow(
    brokers: &str,
    topics: &TopicsConfig,
    wire: Wire,
    feed: Arc<dyn ReadFeed>,
    warm: Warm,
    also_ready: Arc<AtomicBool>,
    caught_up: Arc<AtomicBool>,
    stop: CancellationToken,
) -> Result<(std::thread::JoinHandle<()>, FeedBarrier), KafkaError> {
    let (barrier_requests, barriers) = std::sync::mpsc::channel::<Barrier>();
    let barrier = FeedBarrier {
        requests: barrier_requests,
        partitions: u32::try_from(topics.partitions).unwrap_or(1),
    };
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", topics.name("gateway-read"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let consumer = ClosesWithin::new("gateway read consumer", consumer);
    let names = Names {
        snapshots: topics.name("section-snapshots"),
        status: topics.name("section-status"),
        completed: topics.name("reservation-completed"),
        partitions: topics.partitions,
    };
    let handle = std::thread::Builder::new()
        .name("gateway-read".into())
        .spawn(move || {
            let started = Instant::now();
            let Some(start) = start_until_stopped(&consumer, &names, &*feed, warm, &stop) else {
                return;
            };
            if let Err(e) = consumer.assign(&start.assignment) {
                warn!(error = %e, "cannot assign the read topics");
                return;
            }
            let mut behind = start.behind;
            let mut outcomes_read: u64 = 0;
            let mut waiting: Waiting = Vec::new();
            while !stop.is_cancelled() {
                if behind.is_empty()
                    && also_ready.load(Ordering::Acquire)
                    && !caught_up.load(Ordering::Acquire)
                {
                    info!(
                        sections = start.sections,
                        outcomes_read,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "read side caught up with Kafka"
                    );
                    caught_up.store(true, Ordering::Release);
                }
                take_barriers(&consumer, &names.completed, &barriers, &mut waiting);
                release_barriers(&consumer, &names.completed, &mut waiting);
                // Short polls while a barrier waits: its end is often a transaction marker,
                // which only an empty poll moves the position past.
                let wait = if waiting.is_empty() { 100 } else { 2 };
                let Some(message) = consumer.poll(Duration::from_millis(wait)) else {
                    if !behind.is_empty() {
                        forget_reached(&consumer, &mut behind);
                    }
                    continue;
                };
                let Ok(message) = message else { continue };
                if message.topic() == names.completed && !caught_up.load(Ordering::Relaxed) {
                    outcomes_read += 1;
                }
                apply(&wire, &names, &*feed, &message);
                let slot = (message.topic().to_owned(), message.partition());
                if behind
                    .get(&slot)
                    .is_some_and(|end| message.offset() + 1 >= *end)
                {
                    behind.remove(&slot);
                }
            }
        })
        .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
    Ok((handle, barrier))
}

/// One followed record into the read side.
fn apply(wire: &Wire, names: &Names, feed: &dyn ReadFeed, message: &BorrowedMessage<'_>) {
    let payload = message.payload().unwrap_or_default();
    let decoded = if message.topic() == names.status {
        wire.decode::<SectionStatus>(payload)
            .map(|status| feed.status(&status))
    } else {
        wire.decode::<Event>(payload)
            .map(|event| feed.event(message.partition() as u32, message.offset(), &event))
    };
    if let Err(e) = decoded {
        warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            trace_id = crate::trace::trace_id(crate::trace::traceparent(message)),
            error = %e,
            "undecodable record skipped"
        );
    }
}

/// Drop from `behind` the partitions the consumer's position has reached (transaction markers
/// take offsets too: positions, not records).
fn forget_reached(consumer: &BaseConsumer, behind: &mut HashMap<Slot, i64>) {
    let Ok(position) = consumer.position() else {
        return;
    };
    for element in position.elements() {
        if let Offset::Offset(at) = element.offset() {
            let slot = (element.topic().to_owned(), element.partition());
            if behind.get(&slot).is_some_and(|end| at >= *end) {
                behind.remove(&slot);
            }
        }
    }
}

/// [`start`], tried again until the broker answers (topics just created have no leader for a
/// moment); `None` when stopped first.
fn start_until_stopped(
    consumer: &BaseConsumer,
    names: &Names,
    feed: &dyn ReadFeed,
    warm: Warm,
    stop: &CancellationToken,
) -> Option<Start> {
    while !stop.is_cancelled() {
        match start(consumer, names, feed, warm, stop) {
            Ok(Some(start)) => return Some(start),
            Ok(None) => return None,
            Err(e) => {
                warn!(error = %e, "read topics not readable yet; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    None
}

/// Read the snapshots into the feed and decide where each followed partition starts.
fn start(
    consumer: &BaseConsumer,
    names: &Names,
    feed: &dyn ReadFeed,
    warm: Warm,
    stop: &CancellationToken,
) -> Result<Option<Start>, KafkaError> {
    // Before the snapshots: the followed records must start at or before their point.
    let started = Instant::now();
    let before = watermarks(
        consumer,
        [&names.completed, &names.status],
        names.partitions,
    )?;
    let Some(mut snapshots) = read_snapshots(consumer, names, stop)? else {
        return Ok(None);
    };
    let read = started.elapsed();
    let after = watermarks(
        consumer,
        [&names.completed, &names.status],
        names.partitions,
    )?;
    let sections = snapshots.apply(feed);
    info!(
        read_ms = read.as_millis() as u64,
        loaded_ms = started.elapsed().as_millis() as u64,
        sections,
        "section snapshots loaded"
    );
    let mut assignment = TopicPartitionList::new();
    let mut behind = HashMap::new();
    for partition in 0..names.partitions {
        let complete = snapshots.complete.contains(&partition);
        for topic in [&names.completed, &names.status] {
            let slot = (topic.clone(), partition);
            let (low, high) = before[&slot];
            let from = match (complete, topic == &names.completed) {
                (false, _) => low,
                (true, true) => (high - warm.outcomes_per_partition).max(low),
                (true, false) => high,
            };
            assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
            let end = after[&slot].1;
            if end > from {
                behind.insert(slot, end);
            }
        }
    }
    Ok(Some(Start {
        assignment,
        behind,
        sections,
    }))
}

/// (low, high) of every partition of `topics`.
fn watermarks<'a>(
    consumer: &BaseConsumer,
    topics: impl IntoIterator<Item = &'a String>,
    partitions: i32,
) -> Result<HashMap<Slot, (i64, i64)>, KafkaError> {
    let mut marks = HashMap::new();
    for topic in topics {
        for partition in 0..partitions {
            let mark = consumer.fetch_watermarks(topic, partition, WATERMARK_LIMIT)?;
            marks.insert((topic.clone(), partition), mark);
        }
    }
    Ok(marks)
}

/// What `section-snapshots` holds: the latest record per key.
#[derive(Default)]
struct Snapshots {
    /// Partitions marked complete.
    complete: HashSet<i32>,
    /// Routing key -> the section's initialisation.
    inits: HashMap<String, SectionInitialized>,
    /// Routing key -> the section's latest state, still encoded (only the last one of each
    /// section is decoded).
    states: HashMap<String, Vec<u8>>,
    /// Event id -> its waiting room's header.
    rooms: HashMap<String, RoomHeader>,
    /// Event id -> ticket key -> the ticket's latest record, still encoded.
    tickets: HashMap<String, HashMap<String, Vec<u8>>>,
}

impl Snapshots {
    fn take(&mut self, message: &BorrowedMessage<'_>) {
        let key = message
            .key()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let payload = message.payload().unwrap_or_default();
        let taken = if key == SNAPSHOTS_COMPLETE_KEY {
            self.complete.insert(message.partition());
            Ok(())
        } else if let Some(routing) = key.strip_prefix("i:") {
            decode::<Event>(payload).map(|event| {
                if let Event::SectionInitialized(init) = event {
                    self.inits.insert(routing.to_owned(), init);
                }
            })
        } else if let Some(routing) = key.strip_prefix("s:") {
            self.states.insert(routing.to_owned(), payload.to_vec());
            Ok(())
        } else if key.starts_with("w:") {
            decode::<StoredRoom>(payload).map(|stored| {
                self.rooms.insert(stored.event_id, stored.header);
            })
        } else if let Some(ticket) = key.strip_prefix("t:") {
            let event_id = ticket.rsplit_once('/').map_or("", |(event, _)| event);
            self.tickets
                .entry(event_id.to_owned())
                .or_default()
                .insert(ticket.to_owned(), payload.to_vec());
            Ok(())
        } else {
            Ok(())
        };
        if let Err(e) = taken {
            warn!(
                partition = message.partition(),
                offset = message.offset(),
                error = %e,
                "undecodable snapshot skipped"
            );
        }
    }

    /// Into the feed, events in creation order (the listing follows it); the sections' count.
    fn apply(&mut self, feed: &dyn ReadFeed) -> usize {
        let mut inits: Vec<(String, SectionInitialized)> = self.inits.drain().collect();
        inits.sort_by(|(_, a), (_, b)| {
            (a.at, &a.key.event_id, a.position).cmp(&(b.at, &b.key.event_id, b.position))
        });
        for (routing, init) in &inits {
            let stored = self
                .states
                .remove(routing)
                .map(|bytes| decode::<StoredSection>(&bytes));
            let state = match stored {
                Some(Ok(stored)) => stored.state,
                Some(Err(e)) => {
                    warn!(section = %routing, error = %e, "undecodable section state skipped");
                    SectionState::new(init.layout).with_rules(init.rules)
                }
                None => SectionState::new(init.layout).with_rules(init.rules),
            };
            feed.snapshot(init, state);
        }
        for (event_id, header) in self.rooms.drain() {
            let tickets = self.tickets.remove(&event_id).unwrap_or_default();
            let tickets = tickets.into_values().filter_map(|bytes| {
                decode::<StoredTicket>(&bytes)
                    .inspect_err(
                        |e| warn!(event = %event_id, error = %e, "undecodable ticket skipped"),
                    )
                    .ok()
                    .map(|stored| stored.0)
            });
            feed.room(&event_id, RoomState::restore(header, tickets));
        }
        inits.len()
    }
}

/// Read `section-snapshots` to the ends it has now; `None` when stopped first.
fn read_snapshots(
    consumer: &BaseConsumer,
    names: &Names,
    stop: &CancellationToken,
) -> Result<Option<Snapshots>, KafkaError> {
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for partition in 0..names.partitions {
        let (low, high) =
            consumer.fetch_watermarks(&names.snapshots, partition, WATERMARK_LIMIT)?;
        if high > low {
            assignment.add_partition_offset(&names.snapshots, partition, Offset::Offset(low))?;
            ends.insert(partition, high);
        }
    }
    let mut snapshots = Snapshots::default();
    if ends.is_empty() {
        return Ok(Some(snapshots));
    }
    consumer.assign(&assignment)?;
    while !ends.is_empty() {
        if stop.is_cancelled() {
            return Ok(None);
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => forget_reached_ends(consumer, &mut ends)?,
            Some(Err(e)) => return Err(e),
            Some(Ok(message)) => {
                snapshots.take(&message);
                let partition = message.partition();
                if ends
                    .get(&partition)
                    .is_some_and(|end| message.offset() + 1 >= *end)
                {
                    ends.remove(&partition);
                }
            }
        }
    }
    Ok(Some(snapshots))
}
