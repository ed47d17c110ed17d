//! Kafka transport of seatflow: the project's topics (names, partitions, replication,
//! `min.insync.replicas`, cleanup policy) and their idempotent creation (production assumes
//! `auto.create.topics.enable=false`, so nothing else creates them), and the exactly-once seat
//! processor.

mod gateway;
mod seat_processor;
mod topics;

pub use gateway::{GatewayKafkaConfig, KafkaBus, ReadFeed, follow};

pub use seat_processor::{
    ERROR_HEADER, REPLY_PARTITION_HEADER, SeatProcessorConfig, SeatProcessorError,
    run as run_seat_processor,
};

pub use topics::{
    Cleanup, TopicDescription, TopicError, TopicSpec, TopicStatus, TopicsConfig, create_topics,
    describe_topic,
};
