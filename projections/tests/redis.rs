//! The Redis read models on a real Redis (started by `ops/test`; `SEATFLOW_TEST_REDIS_URL`).
//! Every test works under a key prefix of its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use seatflow_aggregates::{SectionKey, SectionStatus};
use seatflow_projections::audit::AuditRow;
use seatflow_projections::redis::{RedisBatch, RedisError, RedisReads, compare};
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("SEATFLOW_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("SEATFLOW_TEST_REDIS_URL is not set: run the tests with ops/test (it starts Redis)")
    })
}

fn fresh() -> RedisReads {
    let prefix = format!("test-{}", Uuid::now_v7().simple());
    RedisReads::new(&redis_url(), &prefix, Duration::from_secs(3600)).expect("pool")
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}

fn outcome(event: &str, section: &str, status: &str, offset: i64, completed: i64) -> AuditRow {
    AuditRow {
        id: Uuid::now_v7(),
        user_id: format!("fan:{offset}"),
        event_id: event.into(),
        section: section.into(),
        seat_count: 2,
        seats: serde_json::json!([{"row": 1, "seat": 1}, {"row": 1, "seat": 2}]),
        status: status.into(),
        reason: None,
        reason_message: None,
        requested_at: DateTime::from_timestamp_millis(completed - 5).expect("time"),
        completed_at: DateTime::from_timestamp_millis(completed).expect("time"),
        cancelled_at: None,
        log_partition: 0,
        log_offset: offset,
        expires_at: None,
        confirmed_at: None,
        expired_at: None,
        payment_ref: None,
        waitlist_place: None,
    }
}

#[tokio::test]
async fn a_batch_writes_counts_outcomes_and_positions_and_drops_the_changed_caches() {
    let redis = fresh();
    let (a, b) = (SectionKey::new("e:1", "A"), SectionKey::new("e:1", "B"));
    redis.cache_event("e:1", "{}").await.expect("cache");
    redis.cache_seats(&a, "{\"a\":1}").await.expect("cache");
    redis.cache_seats(&b, "{\"b\":1}").await.expect("cache");
    assert_eq!(
        redis.cached_seats(&b).await.expect("get").as_deref(),
        Some("{\"b\":1}")
    );

    let confirmed = outcome("e:1", "A", "CONFIRMED", 7, 1_700_000_000_000);
    let batch = RedisBatch {
        statuses: vec![
            SectionStatus {
                key: a.clone(),
                available: 90,
            },
            SectionStatus {
                key: a.clone(),
                available: 88,
            },
        ],
        outcomes: vec![confirmed.clone()],
    };
    let next = [("status".to_owned(), 0, 2), ("completed".to_owned(), 0, 8)];
    assert!(
        !redis.apply(&batch, &next).await.expect("apply"),
        "no positions before"
    );

    // The later status of a section wins; only the changed section's caches are gone.
    let counts = redis.available("e:1").await.expect("counts");
    assert_eq!(counts.get("A"), Some(&88));
    assert_eq!(counts.len(), 1);
    assert_eq!(redis.cached_event("e:1").await.expect("get"), None);
    assert_eq!(redis.cached_seats(&a).await.expect("get"), None);
    assert!(redis.cached_seats(&b).await.expect("get").is_some());

    assert_eq!(
        redis.outcome(confirmed.id).await.expect("outcome"),
        Some(confirmed.clone())
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}:res:{}", redis.prefix(), confirmed.id))
        .query_async(&mut raw().await)
        .await
        .expect("ttl");
    assert!((3590..=3600).contains(&ttl), "ttl {ttl}");
    let positions = redis.positions().await.expect("positions");
    assert_eq!(positions.get(&("status".to_owned(), 0)), Some(&2));
    assert_eq!(positions.get(&("completed".to_owned(), 0)), Some(&8));

    // A second batch sees the positions it wrote; after they vanish it says so.
    assert!(
        redis
            .apply(&RedisBatch::default(), &next)
            .await
            .expect("apply")
    );
    redis.forget_positions().await.expect("forget");
    assert!(
        !redis
            .apply(&RedisBatch::default(), &next)
            .await
            .expect("apply")
    );
}

#[tokio::test]
async fn a_rebuilt_key_space_is_compared_outcome_by_outcome_and_count_by_count() {
    let live = fresh();
    let rebuilt = live.with_prefix(&format!("{}-replay", live.prefix()));
    let now = Utc::now().timestamp_millis();
    let statuses = vec![SectionStatus {
        key: SectionKey::new("e", "A"),
        available: 10,
    }];
    let kept = outcome("e", "A", "CONFIRMED", 1, now);
    let tampered = outcome("e", "A", "CONFIRMED", 2, now);
    let old = outcome("e", "A", "REJECTED", 3, now - 7_200_000);
    let lost = outcome("e", "A", "CONFIRMED", 4, now);
    let all = RedisBatch {
        statuses: statuses.clone(),
        outcomes: vec![kept.clone(), tampered.clone(), old.clone(), lost.clone()],
    };
    rebuilt.apply(&all, &[]).await.expect("apply");
    let mut changed = tampered.clone();
    // The same place in the log, another content.
    changed.status = "CANCELLED".into();
    live.apply(
        &RedisBatch {
            statuses,
            outcomes: vec![kept.clone(), changed],
        },
        &[],
    )
    .await
    .expect("apply");

    let horizon = Utc::now() - chrono::Duration::hours(1);
    let comparison = compare(
        &rebuilt.snapshot().await.expect("rebuilt"),
        &live.snapshot().await.expect("live"),
        horizon,
    );
    assert_eq!(comparison.equal_outcomes, 1);
    assert_eq!(comparison.different_outcomes, vec![tampered.id.to_string()]);
    assert_eq!(comparison.missing_live, vec![lost.id.to_string()]);
    assert_eq!(
        comparison.expired_live, 1,
        "the 2-hour-old outcome may expire"
    );
    assert_eq!(comparison.equal_counts, 1);
    assert!(!comparison.is_equal());

    // The same key space compares equal with itself.
    let snapshot = live.snapshot().await.expect("live");
    assert!(compare(&snapshot, &snapshot, horizon).is_equal());
}

#[tokio::test]
async fn a_dead_redis_costs_one_failure_then_answers_at_once_until_it_is_tried_again() {
    // Nothing listens on port 1.
    let redis =
        RedisReads::new("redis://127.0.0.1:1", "dead", Duration::from_secs(60)).expect("pool");
    let failed = redis.outcome(Uuid::nil()).await;
    assert!(
        matches!(failed, Err(RedisError::Call(_) | RedisError::Timeout(_))),
        "{failed:?}"
    );
    assert!(!redis.health().is_up());
    assert_eq!(redis.health().failures(), 1);

    for _ in 0..100 {
        assert!(matches!(
            redis.outcome(Uuid::nil()).await,
            Err(RedisError::Unavailable)
        ));
    }
    assert_eq!(redis.health().skipped(), 100);
    assert_eq!(redis.health().failures(), 1, "skipped calls are not tried");

    // After the breaker's second it is tried again (and fails again).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(matches!(
        redis.outcome(Uuid::nil()).await,
        Err(RedisError::Call(_) | RedisError::Timeout(_))
    ));
    assert_eq!(redis.health().failures(), 2);
}
