//! Read a topic, every record decoded to one line of JSON.

use anyhow::Context;

use crate::Config;

use super::until_done_or_signalled;

/// What `seatflow log dump|tail` asks for.
#[derive(Debug, Clone)]
pub struct LogRequest {
    /// The topic, without the prefix.
    pub topic: String,
    /// Only this partition.
    pub partition: Option<i32>,
    /// `beginning`, `end`, or an offset (with `partition`).
    pub from: Option<String>,
    /// Stop after this many records.
    pub limit: Option<usize>,
}

pub async fn read_log(config: Config, args: &LogRequest, follow: bool) -> anyhow::Result<()> {
    use seatflow_kafka::LogStart;
    let start = match args.from.as_deref() {
        None if follow => LogStart::End,
        None | Some("beginning") => LogStart::Beginning,
        Some("end") => LogStart::End,
        Some(offset) => {
            let offset: i64 = offset.parse().with_context(|| {
                format!("--from must be beginning, end or an offset (got {offset:?})")
            })?;
            anyhow::ensure!(
                args.partition.is_some(),
                "--from <offset> needs --partition"
            );
            LogStart::Offset(offset)
        }
    };
    let query = seatflow_kafka::LogQuery {
        brokers: config
            .kafka
            .brokers
            .clone()
            .context("kafka.brokers is not set (SEATFLOW_KAFKA_BROKERS=host:port,...)")?,
        topics: config.topics(),
        wire: crate::wire(&config).await?,
        topic: args.topic.clone(),
        partition: args.partition,
        start,
        follow,
        limit: args.limit,
    };
    let stop = crate::shutdown_token().child_token();
    let reader = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            seatflow_kafka::read_log(&query, &stop, |record| {
                use std::io::Write;
                let _ = writeln!(out, "{record}");
            })
        })
    };
    until_done_or_signalled("log reader", reader, &stop).await
}
