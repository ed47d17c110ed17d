//! The gateway's side of Kafka.
//!
//! [`KafkaBus`] publishes commands (idempotent producer, `acks=all`, keyed and partitioned by
//! `eventId/section` with Kafka's murmur2, so one section is one partition) with a header naming
//! this gateway's reply partition, and reads ONLY that partition of `reservation-replies`: a
//! gateway never reads the other gateways' results. A command is durable when its produce is
//! acknowledged; the caller's wait ends with the reply or its timeout.
//!
//! [`follow`] feeds the read side: `section-status` into the pre-filter cache and
//! `reservation-completed` into the read model, both from the earliest offset, and reports when
//! it has caught up with the ends it saw at start (the readiness of the gateway).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use seatflow_aggregates::partition_of;
use seatflow_aggregates::{Command, CommandReply, Event, SectionStatus};
use seatflow_avro::Wire;
use seatflow_commands::{BusError, CommandBus, SubmitFuture, Submitted};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::client_config;
use crate::closing::ClosesWithin;
use crate::seat_processor::REPLY_PARTITION_HEADER;
use crate::topics::TopicsConfig;

/// Settings of a gateway on Kafka.
#[derive(Debug, Clone)]
pub struct GatewayKafkaConfig {
    pub brokers: String,
    pub topics: TopicsConfig,
    /// The `reservation-replies` partition this gateway reads.
    pub reply_partition: i32,
    /// Record framing (the Confluent wire format when a Schema Registry is configured).
    pub wire: Wire,
}

type Pending = Arc<Mutex<HashMap<String, Vec<oneshot::Sender<CommandReply>>>>>;

/// Commands to Kafka, replies from this gateway's reply partition.
pub struct KafkaBus {
    producer: ClosesWithin<FutureProducer>,
    commands_topic: String,
    partitions: u32,
    reply_partition: i32,
    wire: Wire,
    pending: Pending,
    stop: CancellationToken,
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("commands_topic", &self.commands_topic)
            .field("reply_partition", &self.reply_partition)
            .finish()
    }
}

impl Drop for KafkaBus {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl KafkaBus {
    /// Connect, and start reading this gateway's reply partition from its end. `on_reply` sees
    /// every reply (e.g. to note outcomes for this gateway's own reads).
    pub fn start(
        config: &GatewayKafkaConfig,
        on_reply: Arc<dyn Fn(&CommandReply) + Send + Sync>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let producer: FutureProducer = client_config(&config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("batch.size", "262144")
            .set("compression.type", "lz4")
            .set("partitioner", "murmur2_random")
            .create()?;
        let producer = ClosesWithin::new("gateway producer", producer);
        let replies: BaseConsumer = client_config(&config.brokers)
            .set("group.id", config.topics.name("gateway-replies"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "5")
            .create()?;
        let replies = ClosesWithin::new("gateway replies consumer", replies);
        let pending: Pending = Arc::default();
        let stop = CancellationToken::new();
        let ready = Arc::new(AtomicBool::new(false));
        let replies_topic = config.topics.name("reservation-replies");
        let reply_partition = config.reply_partition;
        {
            let (pending, stop, ready) = (pending.clone(), stop.clone(), ready.clone());
            let wire = config.wire.clone();
            std::thread::Builder::new()
                .name("gateway-replies".into())
                .spawn(move || {
                    // Start at the end as it is NOW (not "End", which is resolved later and
                    // could skip a reply produced in between). Retry until the broker answers
                    // (topics just created have no leader for a moment).
                    while !stop.is_cancelled() {
                        let assigned = replies
                            .fetch_watermarks(
                                &replies_topic,
                                reply_partition,
                                Duration::from_secs(5),
                            )
                            .and_then(|(_, end)| {
                                let mut assignment = TopicPartitionList::new();
                                assignment.add_partition_offset(
                                    &replies_topic,
                                    reply_partition,
                                    Offset::Offset(end),
                                )?;
                                replies.assign(&assignment)
                            });
                        match assigned {
                            Ok(()) => break,
                            Err(e) => {
                                warn!(error = %e, "reply partition not readable yet; retrying");
                                std::thread::sleep(Duration::from_millis(500));
                            }
                        }
                    }
                    ready.store(true, Ordering::Release);
                    while !stop.is_cancelled() {
                        let Some(message) = replies.poll(Duration::from_millis(100)) else {
                            continue;
                        };
                        let message = match message {
                            Ok(message) => message,
                            Err(e) => {
                                warn!(error = %e, "reply consumer");
                                continue;
                            }
                        };
                        let Some(reply) = message
                            .payload()
                            .and_then(|bytes| wire.decode::<CommandReply>(bytes).ok())
                        else {
                            warn!(
                                offset = message.offset(),
                                trace_id =
                                    crate::trace::trace_id(crate::trace::traceparent(&message)),
                                "undecodable reply skipped"
                            );
                            continue;
                        };
                        on_reply(&reply);
                        if let Some(waiting) = pending.lock().remove(&reply.correlation_id) {
                            for sender in waiting {
                                let _ = sender.send(reply.clone());
                            }
                        }
                    }
                })
                .map_err(|e| rdkafka::error::KafkaError::ClientCreation(e.to_string()))?;
        }
        info!(reply_partition = config.reply_partition, "gateway on Kafka");
        Ok(Self {
            producer,
            commands_topic: config.topics.name("reservation-commands"),
            partitions: u32::try_from(config.topics.partitions).unwrap_or(1),
            reply_partition: config.reply_partition,
            wire: config.wire.clone(),
            pending,
            stop,
            ready,
        })
    }

    /// Set once this gateway reads its reply partition.
    pub fn ready(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    async fn publish(&self, command: Command, wait: Duration) -> Result<Submitted, BusError> {
        let correlation = CommandReply::correlation_of(&command);
        let receiver = if wait.is_zero() {
            None
        } else {
            let (sender, receiver) = oneshot::channel();
            self.pending
                .lock()
                .entry(correlation.clone())
                .or_default()
                .push(sender);
            Some(receiver)
        };
        let key = command.key().routing_key();
        let partition = partition_of(command.key(), self.partitions) as i32;
        let value = self
            .wire
            .encode(&command)
            .map_err(|e| BusError::Transport(e.to_string()))?;
        let reply_to = self.reply_partition.to_string();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: REPLY_PARTITION_HEADER,
            value: Some(reply_to.as_bytes()),
        });
        // The request's trace continues in the seat processor and the projectors.
        let traceparent = crate::trace::current_traceparent();
        if let Some(traceparent) = &traceparent {
            headers = headers.insert(Header {
                key: crate::trace::TRACEPARENT,
                value: Some(traceparent.as_bytes()),
            });
        }
        let record = FutureRecord::to(&self.commands_topic)
            .partition(partition)
            .key(key.as_bytes())
            .payload(value.as_slice())
            .headers(headers);
        if let Err((e, _)) = self.producer.send(record, Duration::from_secs(10)).await {
            self.pending.lock().remove(&correlation);
            return Err(BusError::Transport(e.to_string()));
        }
        let Some(receiver) = receiver else {
            return Ok(Submitted::Accepted);
        };
        match tokio::time::timeout(wait, receiver).await {
            Ok(Ok(reply)) => Ok(Submitted::Decided(reply.outcome)),
            _ => {
                self.pending.lock().remove(&correlation);
                Ok(Submitted::Accepted)
            }
        }
    }
}

impl CommandBus for KafkaBus {
    fn submit(&self, command: Command, wait: Duration) -> SubmitFuture<'_> {
        Box::pin(self.publish(command, wait))
    }
}

/// What the read side is fed.
pub trait ReadFeed: Send + Sync + 'static {
    fn status(&self, status: &SectionStatus);
    fn event(&self, partition: u32, offset: i64, event: &Event);
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

/// Release the barriers whose partition the consumer has read to their end (positions, not
/// records: transaction markers take offsets too).
fn release_barriers(consumer: &BaseConsumer, topic: &str, waiting: &mut Waiting) {
    if waiting.is_empty() {
        return;
    }
    let Ok(position) = consumer.position() else {
        return;
    };
    let reached: HashMap<i32, i64> = position
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .filter_map(|e| match e.offset() {
            Offset::Offset(at) => Some((e.partition(), at)),
            _ => None,
        })
        .collect();
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

/// Follow `section-status` and `reservation-completed` from the earliest offset until `stop`;
/// `caught_up` is set once both reached the ends they had when this started. The barrier
/// waits for the loop to reach the current end of one section's partition.
pub fn follow(
    brokers: &str,
    topics: &TopicsConfig,
    wire: Wire,
    feed: Arc<dyn ReadFeed>,
    also_ready: Arc<AtomicBool>,
    caught_up: Arc<AtomicBool>,
    stop: CancellationToken,
) -> Result<(std::thread::JoinHandle<()>, FeedBarrier), rdkafka::error::KafkaError> {
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
    let status_topic = topics.name("section-status");
    let completed_topic = topics.name("reservation-completed");
    let partitions = topics.partitions;
    let handle = std::thread::Builder::new()
        .name("gateway-read".into())
        .spawn(move || {
            // The ends to catch up with, as they are now; retried until the broker answers.
            let mut ends: HashMap<(String, i32), i64> = HashMap::new();
            let mut assignment = TopicPartitionList::new();
            'connect: while !stop.is_cancelled() {
                ends.clear();
                assignment = TopicPartitionList::new();
                for topic in [&status_topic, &completed_topic] {
                    for partition in 0..partitions {
                        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
                            Ok((_, high)) => {
                                ends.insert((topic.clone(), partition), high);
                                let _ = assignment.add_partition_offset(
                                    topic,
                                    partition,
                                    Offset::Beginning,
                                );
                            }
                            Err(e) => {
                                warn!(error = %e, "read topics not readable yet; retrying");
                                std::thread::sleep(Duration::from_millis(500));
                                continue 'connect;
                            }
                        }
                    }
                }
                break;
            }
            if let Err(e) = consumer.assign(&assignment) {
                warn!(error = %e, "cannot assign the read topics");
                return;
            }
            let mut behind: HashMap<(String, i32), i64> =
                ends.into_iter().filter(|(_, high)| *high > 0).collect();
            let mark = |behind: &HashMap<(String, i32), i64>| {
                if behind.is_empty()
                    && also_ready.load(Ordering::Acquire)
                    && !caught_up.load(Ordering::Acquire)
                {
                    info!("read side caught up with Kafka");
                    caught_up.store(true, Ordering::Release);
                }
            };
            let mut waiting: Waiting = Vec::new();
            while !stop.is_cancelled() {
                mark(&behind);
                take_barriers(&consumer, &completed_topic, &barriers, &mut waiting);
                release_barriers(&consumer, &completed_topic, &mut waiting);
                // Short polls while a barrier waits: its end is often a transaction marker,
                // which only an empty poll moves the position past.
                let wait = if waiting.is_empty() { 100 } else { 2 };
                let Some(message) = consumer.poll(Duration::from_millis(wait)) else {
                    if !behind.is_empty() {
                        // Transaction markers take offsets too: compare positions, not records.
                        if let Ok(position) = consumer.position() {
                            for element in position.elements() {
                                if let Offset::Offset(at) = element.offset() {
                                    let slot = (element.topic().to_owned(), element.partition());
                                    if behind.get(&slot).is_some_and(|end| at >= *end) {
                                        behind.remove(&slot);
                                    }
                                }
                            }
                        }
                    }
                    continue;
                };
                let Ok(message) = message else { continue };
                let payload = message.payload().unwrap_or_default();
                let decoded = if message.topic() == status_topic {
                    wire.decode::<SectionStatus>(payload)
                        .map(|status| feed.status(&status))
                } else {
                    wire.decode::<Event>(payload).map(|event| {
                        feed.event(message.partition() as u32, message.offset(), &event)
                    })
                };
                if let Err(e) = decoded {
                    warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        trace_id = crate::trace::trace_id(crate::trace::traceparent(&message)),
                        error = %e,
                        "undecodable record skipped"
                    );
                }
                let slot = (message.topic().to_owned(), message.partition());
                if behind
                    .get(&slot)
                    .is_some_and(|end| message.offset() + 1 >= *end)
                {
                    behind.remove(&slot);
                }
            }
        })
        .map_err(|e| rdkafka::error::KafkaError::ClientCreation(e.to_string()))?;
    Ok((handle, barrier))
}
