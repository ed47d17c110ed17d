//! Kafka transport of seatflow: the project's topics (names, partitions, replication,
//! `min.insync.replicas`, cleanup policy) and their idempotent creation (production assumes
//! `auto.create.topics.enable=false`, so nothing else creates them), the exactly-once seat
//! processor, the gateway's bus, the Schema Registry side of the wire format, and the projector
//! into the Postgres audit.

use std::collections::HashMap;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset};

mod gateway;
mod log;
mod projector;
mod registry;
mod seat_processor;
mod topics;

pub use gateway::{GatewayKafkaConfig, KafkaBus, ReadFeed, follow};

pub use log::{LOG_TOPICS, LogQuery, LogStart, read_log};
pub use projector::{
    AUDIT_PROJECTION, ProjectorConfig, ProjectorError, run as run_projector,
    run_redis as run_redis_projector,
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
