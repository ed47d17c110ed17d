//! The seat processor on Kafka, on a blocking thread of its own.

use anyhow::Context;

use crate::Config;

use super::until_done_or_signalled;

/// Run the Kafka seat processor on a blocking thread until SIGINT/SIGTERM.
pub async fn run_seat_processor(config: Config) -> anyhow::Result<()> {
    let brokers = config
        .kafka
        .brokers
        .clone()
        .context("kafka.brokers is not set (SEATFLOW_KAFKA_BROKERS=host:port,...)")?;
    let processor = seatflow_kafka::SeatProcessorConfig {
        brokers,
        topics: config.topics(),
        instance_id: config.instance_id.clone(),
        data_dir: config.processor.data_dir.clone(),
        max_batch: config.processor.max_batch,
        producers: config.kafka.seat_processor_producers as usize,
        partition: config.processor.partition(),
        sync_writes: config.processor.sync_writes,
        wire: crate::wire(&config).await?,
    };
    tracing::info!(
        instance = %processor.instance_id,
        data_dir = %processor.data_dir.display(),
        "starting the seat processor on Kafka"
    );
    let stop = crate::shutdown_token().child_token();
    let worker = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || seatflow_kafka::run_seat_processor(&processor, stop))
    };
    until_done_or_signalled("seat processor", worker, &stop).await
}
