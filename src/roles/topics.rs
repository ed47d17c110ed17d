//! Create seatflow's Kafka topics.

use anyhow::Context;

use crate::Config;

pub async fn create_topics(config: &Config) -> anyhow::Result<()> {
    let brokers = config
        .kafka
        .brokers
        .as_deref()
        .context("kafka.brokers is not set (SEATFLOW_KAFKA_BROKERS=host:port,...)")?;
    let specs = config.topics().specs();
    let statuses = seatflow_kafka::create_topics(brokers, &specs).await?;
    for (spec, (_, status)) in specs.iter().zip(statuses) {
        let status = match status {
            seatflow_kafka::TopicStatus::Created => "created",
            seatflow_kafka::TopicStatus::AlreadyExists => "exists",
        };
        println!(
            "{status:8} {:40} partitions={} replication={} min.insync.replicas={} cleanup={:?}  ({})",
            spec.name,
            spec.partitions,
            spec.replication,
            spec.min_insync_replicas,
            spec.cleanup,
            spec.purpose
        );
    }
    Ok(())
}
