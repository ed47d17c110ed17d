//! The gateway's side of Kafka.
//!
//! [`KafkaBus`] publishes commands (idempotent producer, `acks=all`, keyed and partitioned by
//! `eventId/section` with Kafka's murmur2, so one section is one partition) with a header naming
//! this gateway's reply partition, and reads ONLY that partition of `reservation-replies`: a
//! gateway never reads the other gateways' results. A command is durable when its produce is
//! acknowledged; the caller's wait ends with the reply or its timeout.
//!
//! The read side it feeds is in [`crate::follow`].

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
use seatflow_aggregates::partition_of_command;
use seatflow_aggregates::{Command, CommandReply};
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
    /// How long commands are gathered before they are sent (the producer's `linger.ms`).
    pub linger: Duration,
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
            .set("linger.ms", config.linger.as_millis().to_string())
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
        let key = command.routing_key();
        let partition = partition_of_command(&command, self.partitions) as i32;
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
