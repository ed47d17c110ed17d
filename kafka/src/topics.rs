//! The topics seatflow owns and their creation through the Kafka admin API.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

/// Topic layout settings (from configuration).
#[derive(Debug, Clone)]
pub struct TopicsConfig {
    /// Prepended to every topic name (isolates tests or tenants sharing a cluster).
    pub prefix: String,
    /// Partitions of the command topic and everything keyed like it (the seed: 20).
    pub partitions: i32,
    /// Replicas of every partition (production: 3).
    pub replication: i32,
    /// Replicas that must have a write before it is acknowledged (production: 2).
    pub min_insync_replicas: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            partitions: 20,
            replication: 3,
            min_insync_replicas: 2,
        }
    }
}

/// How a topic's old records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Kept for the retention time (a log).
    Delete,
    /// The last record per key is kept forever (a table).
    Compact,
}

impl Cleanup {
    fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
        }
    }
}

/// One topic as seatflow wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub min_insync_replicas: i32,
    pub cleanup: Cleanup,
    /// Topic settings beyond the cleanup policy and `min.insync.replicas` (name, value).
    pub configs: Vec<(&'static str, String)>,
    /// What the topic carries.
    pub purpose: &'static str,
}

/// The settings of `section-snapshots`, which a gateway reads whole at start. Compaction keeps
/// the last state of each section, but only in closed segments, and every transaction leaves a
/// commit marker in each partition it wrote, which the cleaner removes only
/// `delete.retention.ms` later: with 8 MB segments and the default 24 h, a topic of 200 sections
/// held ~1.2 M markers after 5 M decisions and took 30 s to read. Small segments, cleaned early,
/// and markers kept a minute.
fn snapshot_configs() -> Vec<(&'static str, String)> {
    vec![
        ("segment.bytes", (1024 * 1024).to_string()),
        ("min.cleanable.dirty.ratio", "0.1".to_owned()),
        ("delete.retention.ms", "60000".to_owned()),
    ]
}

impl TopicsConfig {
    /// A topic (or consumer group) name with the configured prefix.
    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// Every topic of seatflow, in creation order.
    pub fn specs(&self) -> Vec<TopicSpec> {
        let topic = |name: &str, cleanup, purpose| TopicSpec {
            name: format!("{}{name}", self.prefix),
            partitions: self.partitions,
            replication: self.replication,
            min_insync_replicas: self.min_insync_replicas,
            cleanup,
            configs: Vec::new(),
            purpose,
        };
        vec![
            topic(
                "reservation-commands",
                Cleanup::Delete,
                "reserve / cancel / init commands, keyed eventId/section",
            ),
            topic(
                "reservation-completed",
                Cleanup::Delete,
                "decided outcomes (CONFIRMED / REJECTED / CANCELLED) and section inits",
            ),
            topic(
                "section-status",
                Cleanup::Compact,
                "the slim available count per section",
            ),
            topic(
                "seat-state-changelog",
                Cleanup::Compact,
                "the seat processor's reservation outcomes (its section states: section-snapshots)",
            ),
            TopicSpec {
                configs: snapshot_configs(),
                ..topic(
                    "section-snapshots",
                    Cleanup::Compact,
                    "each section's initialisation and latest state: where a gateway starts, \
                     and the section half of the seat processor's changelog",
                )
            },
            topic(
                "reservation-replies",
                Cleanup::Delete,
                "outcomes back to the gateway instance that waits for them",
            ),
            topic(
                "dead-letter",
                Cleanup::Delete,
                "records that could not be decoded, with the reason",
            ),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("Kafka admin client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(
        "topic {topic} exists with {actual} partitions, the configuration says {wanted}; \
         partitions decide which worker owns a section, so change them deliberately \
         (see docs/operations.md)"
    )]
    PartitionMismatch {
        topic: String,
        actual: i32,
        wanted: i32,
    },
    #[error("describing topic {topic}: {code}")]
    Describe {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic {0} is not in the cluster's metadata")]
    Missing(String),
    #[error("topic {0} was created but its partitions have no leader after {1:?}")]
    NotReady(String, Duration),
}

/// What `create_topics` did with a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicStatus {
    Created,
    /// It was there already, with the wanted partition count.
    AlreadyExists,
}

/// A topic as the cluster has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub partitions: i32,
    pub replication: i32,
    pub configs: HashMap<String, String>,
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, TopicError> {
    Ok(crate::client_config(brokers)
        .set("socket.timeout.ms", "10000")
        .create()?)
}

/// Create every topic that does not exist; check the partition count of those that do.
pub async fn create_topics(
    brokers: &str,
    specs: &[TopicSpec],
) -> Result<Vec<(String, TopicStatus)>, TopicError> {
    let admin = admin(brokers)?;
    let min_isr: Vec<String> = specs
        .iter()
        .map(|spec| spec.min_insync_replicas.to_string())
        .collect();
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&min_isr)
        .map(|(spec, min_isr)| {
            let topic = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(spec.replication),
            )
            .set("cleanup.policy", spec.cleanup.as_str())
            .set("min.insync.replicas", min_isr);
            spec.configs
                .iter()
                .fold(topic, |topic, (name, value)| topic.set(name, value))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(topics.iter(), &options).await?;
    let mut statuses = Vec::with_capacity(specs.len());
    for (spec, result) in specs.iter().zip(results) {
        match result {
            Ok(_) => {
                // Created means usable: the broker answering the next metadata request (a
                // role starting right after the topics Job, a describe) may not know the topic
                // for a moment yet (seen on a freshly started broker).
                wait_for_leaders(&admin, &spec.name, spec.partitions).await?;
                statuses.push((spec.name.clone(), TopicStatus::Created));
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let actual = describe_with(&admin, &spec.name).await?.partitions;
                if actual != spec.partitions {
                    return Err(TopicError::PartitionMismatch {
                        topic: spec.name.clone(),
                        actual,
                        wanted: spec.partitions,
                    });
                }
                statuses.push((spec.name.clone(), TopicStatus::AlreadyExists));
            }
            Err((_, code)) => {
                return Err(TopicError::Create {
                    topic: spec.name.clone(),
                    code,
                });
            }
        }
    }
    Ok(statuses)
}

/// Until `topic` is in the metadata with `partitions` partitions, each with a leader (at most
/// 30 s).
async fn wait_for_leaders(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: i32,
) -> Result<(), TopicError> {
    const LIMIT: Duration = Duration::from_secs(30);
    let started = std::time::Instant::now();
    loop {
        let ready = layout(admin, topic)?
            .is_some_and(|found| found.partitions == partitions && found.every_partition_led);
        if ready {
            return Ok(());
        }
        if started.elapsed() >= LIMIT {
            return Err(TopicError::NotReady(topic.to_owned(), LIMIT));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the cluster's metadata says of a topic's partitions.
struct Layout {
    partitions: i32,
    /// Replicas of its first partition.
    replication: i32,
    every_partition_led: bool,
}

/// `None` when the metadata does not know the topic (yet).
fn layout(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<Option<Layout>, TopicError> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|found| Layout {
            partitions: found.partitions().len() as i32,
            replication: found
                .partitions()
                .first()
                .map_or(0, |p| p.replicas().len() as i32),
            every_partition_led: found.partitions().iter().all(|p| p.leader() >= 0),
        }))
}

/// Partitions, replication and the topic-level configs of one topic.
pub async fn describe_topic(brokers: &str, topic: &str) -> Result<TopicDescription, TopicError> {
    let admin = admin(brokers)?;
    describe_with(&admin, topic).await
}

async fn describe_with(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<TopicDescription, TopicError> {
    let Layout {
        partitions,
        replication,
        ..
    } = layout(admin, topic)?.ok_or_else(|| TopicError::Missing(topic.to_owned()))?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut configs = HashMap::new();
    for resource in admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
        .await?
    {
        let resource = resource.map_err(|code| TopicError::Describe {
            topic: topic.to_owned(),
            code,
        })?;
        for entry in resource.entries {
            if let Some(value) = entry.value {
                configs.insert(entry.name, value);
            }
        }
    }
    Ok(TopicDescription {
        partitions,
        replication,
        configs,
    })
}
