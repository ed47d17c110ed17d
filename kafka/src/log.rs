//! Reading seatflow's topics for people (`seatflow log dump|tail`): every record with its
//! partition, offset and key, its value decoded from Avro into JSON in its schema's shape.

use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use seatflow_aggregates::{Command, CommandReply, Completed, Event, SectionStatus};
use seatflow_avro::{DecodeError, StoredSection, Wire};
use serde_json::{Value, json};

use crate::seat_processor::ERROR_HEADER;
use crate::topics::TopicsConfig;
use crate::{client_config, forget_reached_ends};

/// The topics `seatflow log` can read (names without the prefix).
pub const LOG_TOPICS: [&str; 7] = [
    "reservation-commands",
    "reservation-completed",
    "section-status",
    "reservation-replies",
    "seat-state-changelog",
    "section-snapshots",
    "dead-letter",
];

/// Where to start reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStart {
    Beginning,
    End,
    Offset(i64),
}

/// What to read.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub brokers: String,
    pub topics: TopicsConfig,
    pub wire: Wire,
    /// One of [`LOG_TOPICS`].
    pub topic: String,
    /// One partition, or all of them.
    pub partition: Option<i32>,
    pub start: LogStart,
    /// Keep reading new records (tail) instead of stopping at the end the topic had at start.
    pub follow: bool,
    pub limit: Option<usize>,
}

/// Read records and hand each, as JSON, to `emit`; returns how many. Stops at the end the
/// topic had when it started (unless following), at `limit`, or when `stop` is set.
pub fn read_log(
    query: &LogQuery,
    stop: &CancellationToken,
    mut emit: impl FnMut(Value),
) -> Result<usize, KafkaError> {
    let topic = query.topics.name(&query.topic);
    let consumer: BaseConsumer = client_config(&query.brokers)
        .set("group.id", query.topics.name("log-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let partitions: Vec<i32> = match query.partition {
        Some(partition) => vec![partition],
        None => (0..query.topics.partitions).collect(),
    };
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for partition in &partitions {
        let (_, high) = consumer.fetch_watermarks(&topic, *partition, Duration::from_secs(30))?;
        if high > 0 {
            ends.insert(*partition, high);
        }
        let offset = match query.start {
            LogStart::Beginning => Offset::Beginning,
            LogStart::End => Offset::End,
            LogStart::Offset(at) => Offset::Offset(at),
        };
        assignment.add_partition_offset(&topic, *partition, offset)?;
    }
    consumer.assign(&assignment)?;
    if query.start == LogStart::End && !query.follow {
        return Ok(0);
    }
    let mut count = 0;
    while !stop.is_cancelled() && query.limit.is_none_or(|limit| count < limit) {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            if query.follow {
                continue;
            }
            // Idle: done once every partition's position passed the end it had at start.
            forget_reached_ends(&consumer, &mut ends)?;
            if ends.is_empty() {
                break;
            }
            continue;
        };
        let message = message?;
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let value = message.payload().map_or(Value::Null, |payload| {
            decode(query, key.as_deref().unwrap_or(""), payload, &message)
        });
        emit(json!({
            "partition": message.partition(),
            "offset": message.offset(),
            "key": key,
            "value": value,
        }));
        count += 1;
    }
    Ok(count)
}

fn decode(query: &LogQuery, key: &str, payload: &[u8], message: &impl Message) -> Value {
    let wire = &query.wire;
    let decoded: Result<Value, DecodeError> = match query.topic.as_str() {
        "reservation-commands" => wire.decode_json::<Command>(payload),
        "reservation-completed" => wire.decode_json::<Event>(payload),
        "section-status" => wire.decode_json::<SectionStatus>(payload),
        "reservation-replies" => wire.decode_json::<CommandReply>(payload),
        "seat-state-changelog" if key.starts_with("s:") => {
            wire.decode_json::<StoredSection>(payload)
        }
        "seat-state-changelog" => wire.decode_json::<Completed>(payload),
        "section-snapshots" if key.starts_with("s:") => wire.decode_json::<StoredSection>(payload),
        "section-snapshots" if key.starts_with("i:") => wire.decode_json::<Event>(payload),
        "section-snapshots" => return json!({"marker": String::from_utf8_lossy(payload)}),
        _ => {
            // dead-letter: the bytes as received, and why they were set aside.
            let reason = message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == ERROR_HEADER)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            return json!({"error": reason, "hex": hex(payload)});
        }
    };
    decoded.unwrap_or_else(|e| json!({"undecodable": e.to_string(), "hex": hex(payload)}))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
