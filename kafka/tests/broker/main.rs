//! Against a real Apache Kafka broker, started by the test command (`ops/test` runs
//! `ops/kafka/start single` and sets SEATFLOW_TEST_KAFKA_BROKERS).

mod seat_processor;

use seatflow_kafka::{
    Cleanup, TopicError, TopicStatus, TopicsConfig, create_topics, describe_topic,
};

pub(crate) fn brokers() -> String {
    std::env::var("SEATFLOW_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "SEATFLOW_TEST_KAFKA_BROKERS is not set: run the tests with ops/test, which starts a \
             local Kafka (ops/kafka/start single) and sets it"
        )
    })
}

pub(crate) fn unique_prefix() -> String {
    format!("test-{}-", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn topics_are_created_once_with_their_partitions_and_policies() {
    let brokers = brokers();
    let config = TopicsConfig {
        prefix: unique_prefix(),
        partitions: 4,
        replication: 1,
        min_insync_replicas: 1,
    };
    let specs = config.specs();
    let created = create_topics(&brokers, &specs).await.expect("created");
    assert_eq!(created.len(), 7);
    assert!(
        created
            .iter()
            .all(|(_, status)| *status == TopicStatus::Created),
        "{created:?}"
    );

    for spec in &specs {
        let described = describe_topic(&brokers, &spec.name)
            .await
            .expect("described");
        assert_eq!(described.partitions, 4, "{}", spec.name);
        assert_eq!(described.replication, 1, "{}", spec.name);
        let policy = if spec.cleanup == Cleanup::Compact {
            "compact"
        } else {
            "delete"
        };
        assert_eq!(
            described.configs.get("cleanup.policy").map(String::as_str),
            Some(policy),
            "{}",
            spec.name
        );
        assert_eq!(
            described
                .configs
                .get("min.insync.replicas")
                .map(String::as_str),
            Some("1")
        );
        for (name, value) in &spec.configs {
            assert_eq!(
                described.configs.get(*name),
                Some(value),
                "{} {name}",
                spec.name
            );
        }
    }
    let compacted: Vec<&str> = specs
        .iter()
        .filter(|s| s.cleanup == Cleanup::Compact)
        .map(|s| s.name.strip_prefix(&config.prefix).unwrap_or(&s.name))
        .collect();
    assert_eq!(
        compacted,
        [
            "section-status",
            "seat-state-changelog",
            "section-snapshots"
        ]
    );

    // Idempotent: a second run finds them all.
    let again = create_topics(&brokers, &specs).await.expect("idempotent");
    assert!(
        again
            .iter()
            .all(|(_, status)| *status == TopicStatus::AlreadyExists),
        "{again:?}"
    );

    // A different partition count for an existing topic is refused, not silently ignored.
    let resized = TopicsConfig {
        partitions: 8,
        ..config
    };
    match create_topics(&brokers, &resized.specs()).await {
        Err(TopicError::PartitionMismatch {
            actual: 4,
            wanted: 8,
            ..
        }) => {}
        other => panic!("expected a partition mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_replication_the_cluster_cannot_give_is_an_error_naming_the_topic() {
    let config = TopicsConfig {
        prefix: unique_prefix(),
        partitions: 1,
        replication: 3, // one broker
        min_insync_replicas: 2,
    };
    match create_topics(&brokers(), &config.specs()).await {
        Err(TopicError::Create { topic, .. }) => {
            assert!(topic.ends_with("reservation-commands"), "{topic}")
        }
        other => panic!("expected a creation error, got {other:?}"),
    }
}
