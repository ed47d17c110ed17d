//! Kafka transport of seatflow: the project's topics (names, partitions, replication,
//! `min.insync.replicas`, cleanup policy) and their idempotent creation (production assumes
//! `auto.create.topics.enable=false`, so nothing else creates them), the exactly-once seat
//! processor, the gateway's bus, the Schema Registry side of the wire format, and the projector
//! into the Postgres audit.

use std::collections::HashMap;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset};

mod closing;
mod follow;
mod gateway;
mod log;
mod projector;
mod registry;
mod seat_processor;
mod topics;
pub mod trace;

pub use closing::{CLOSE_LIMIT, ClosesWithin, close_within};
pub use follow::{FeedBarrier, ReadFeed, Warm, follow};
pub use gateway::{GatewayKafkaConfig, KafkaBus};

pub use log::{LOG_TOPICS, LogQuery, LogStart, read_log};
pub use projector::{
    AUDIT_PROJECTION, ProjectorConfig, ProjectorError, run as run_projector,
    run_redis as run_redis_projector, run_webhooks as run_webhook_projector,
};
pub use registry::{RegistryError, connect_registry};
pub use seatflow_avro::Wire;

pub use seat_processor::{
    ERROR_HEADER, REPLY_PARTITION_HEADER, SeatProcessorConfig, SeatProcessorError,
    run as run_seat_processor,
};

pub use topics::{
    Cleanup, TopicDescription, TopicError, TopicSpec, TopicStatus, TopicsConfig, create_topics,
    describe_topic,
};

/// The settings every Kafka client of seatflow starts from: the brokers, and librdkafka's debug
/// contexts when `SEATFLOW_KAFKA_DEBUG` is set (e.g. `eos,protocol`; logged at debug level under
/// the `librdkafka` target, so `RUST_LOG=info,librdkafka=debug`). A diagnostics switch, not a
/// setting: it is read from the environment only.
pub(crate) fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    if let Ok(debug) = std::env::var("SEATFLOW_KAFKA_DEBUG")
        && !debug.is_empty()
    {
        config.set("debug", debug);
    }
    config
}

/// Report a consumer's lag on each partition it is assigned into the metrics: the end of the
/// partition minus the consumer's position (one watermark query per partition: call it every
/// few seconds, off any hot path). librdkafka's own statistics were tried first: on topics
/// without committed offsets they report no lag at all.
pub(crate) fn report_lag<C: ConsumerContext>(consumer: &BaseConsumer<C>, group: &str) {
    if let Ok(positions) = consumer.position() {
        report_lag_from(
            consumer,
            group,
            &positions,
            std::time::Duration::from_secs(1),
        );
    }
}

/// The lag of each partition of `offsets` (where a consumer is, or what a group committed):
/// the partition's end minus that offset (its beginning when there is none yet).
fn report_lag_from<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    label: &str,
    offsets: &rdkafka::TopicPartitionList,
    timeout: std::time::Duration,
) {
    for element in offsets.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let Ok((low, high)) = consumer.fetch_watermarks(topic, partition, timeout) else {
            continue;
        };
        let at = match element.offset() {
            Offset::Offset(at) => at,
            _ => low,
        };
        seatflow_telemetry::metrics().consumer_lag(
            label,
            topic,
            partition,
            Some((high - at).max(0)),
        );
    }
}

/// Report a consumer group's lag (the end of each partition minus the group's committed offset)
/// every 5 s from a thread and a client of its own, until `stop`: for the seat processor, whose
/// loop must not wait for watermark queries and whose offsets are committed with its
/// transactions.
pub(crate) fn spawn_group_lag_reporter(
    brokers: &str,
    group_id: &str,
    topic: &str,
    label: &'static str,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .create()?;
    let topic = topic.to_owned();
    std::thread::Builder::new()
        .name("group-lag".into())
        .spawn(move || {
            let every = std::time::Duration::from_secs(5);
            let mut last = std::time::Instant::now() - every;
            while !stop.is_cancelled() {
                std::thread::sleep(std::time::Duration::from_millis(200));
                if last.elapsed() < every {
                    continue;
                }
                last = std::time::Instant::now();
                let Ok(metadata) = consumer.fetch_metadata(Some(&topic), every) else {
                    continue;
                };
                let mut wanted = rdkafka::TopicPartitionList::new();
                for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                    wanted.add_partition(&topic, partition.id());
                }
                if let Ok(committed) = consumer.committed_offsets(wanted, every) {
                    report_lag_from(&consumer, label, &committed, every);
                }
            }
        })
        .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
    Ok(())
}

/// Forget the partitions whose consumer position reached the end noted for them. The last
/// records of a transactional topic are commit markers, never delivered: only the position
/// shows that they were passed. (Asking for it is a round trip to librdkafka's main thread:
/// not once per record.)
pub(crate) fn forget_reached_ends<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    ends: &mut HashMap<i32, i64>,
) -> Result<(), KafkaError> {
    for element in consumer.position()?.elements() {
        if let Offset::Offset(at) = element.offset()
            && ends.get(&element.partition()).is_some_and(|end| at >= *end)
        {
            ends.remove(&element.partition());
        }
    }
    Ok(())
}
