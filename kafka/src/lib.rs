//! Kafka transport of seatflow. So far: the project's topics (names, partitions, replication,
//! `min.insync.replicas`, cleanup policy) and their idempotent creation; production assumes
//! `auto.create.topics.enable=false`, so nothing else creates them.

mod topics;

pub use topics::{
    Cleanup, TopicDescription, TopicError, TopicSpec, TopicStatus, TopicsConfig, create_topics,
    describe_topic,
};
