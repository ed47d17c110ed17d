//! The Redis read models with real processes on the real broker and a real Redis: retries find
//! their first reservation on any gateway, the projector keeps counts and outcomes and drops
//! the caches of changed sections, a replay equals the live models, and a sale goes on while
//! Redis restarts (losing its data) and the models are rebuilt after.

use std::collections::HashMap;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use seatflow_aggregates::SectionKey;
use seatflow_kafka::TopicsConfig;
use seatflow_projections::redis::RedisReads;

use super::{
    Children, ONE_AT_A_TIME, PARTITIONS, Sale, brokers, create_event, create_event_from, free_port,
    gateway_ready_with_event, gateway_with, kill, post, wait_ready,
};

pub(super) fn redis_url() -> String {
    std::env::var("SEATFLOW_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("SEATFLOW_TEST_REDIS_URL is not set: run the tests with ops/test (it starts Redis)")
    })
}

/// The environment that points a process at a Redis and a key prefix.
pub(super) fn redis_env(url: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SEATFLOW_REDIS_URL", url.to_owned()),
        ("SEATFLOW_REDIS_KEY_PREFIX", prefix.to_owned()),
    ]
}

pub(super) fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub(super) fn seatflow_with(topics: &TopicsConfig, env: &[(&'static str, String)]) -> Process {
    let mut process = Process::new(env!("CARGO_BIN_EXE_seatflow"));
    process
        .env("SEATFLOW_METRICS_BIND", "127.0.0.1:0") // several on one machine
        .envs(borrowed(env))
        .env("SEATFLOW_KAFKA_BROKERS", brokers())
        .env("SEATFLOW_KAFKA_TOPIC_PREFIX", &topics.prefix)
        .env("SEATFLOW_KAFKA_PARTITIONS", PARTITIONS.to_string())
        .env(
            "RUST_LOG",
            std::env::var("SEATFLOW_TEST_PROCESSOR_LOG").unwrap_or_else(|_| "warn".into()),
        );
    process
}

/// A projector writing the Redis read models only.
pub(super) fn redis_projector(topics: &TopicsConfig, env: &[(&'static str, String)]) -> Child {
    seatflow_with(topics, env)
        .arg("projector")
        .spawn()
        .expect("seatflow projector starts")
}

async fn reserve_with_key(
    client: &reqwest::Client,
    base: &str,
    body: serde_json::Value,
    key: &str,
) -> (u16, serde_json::Value) {
    let response = client
        .post(format!("{base}/api/reservations?wait=10000"))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    let response = client.get(url).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("json")
}

/// One value of the gateway's `/metrics`.
async fn metric(client: &reqwest::Client, base: &str, name: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// SIGTERM, then wait for the exit (at most 30 s: a role that ignores SIGTERM is a bug).
fn terminate(child: &mut Child) {
    Process::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `/metrics` lines starting with `prefix`.
async fn metric_lines(client: &reqwest::Client, base: &str, prefix: &str) -> Vec<String> {
    let Ok(response) = client.get(format!("{base}/metrics")).send().await else {
        return Vec::new();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Wait (at most a minute: a liveness bound, not a timing claim) until `check` holds.
pub(super) async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each section's available count as the gateway answers it.
async fn counts(client: &reqwest::Client, base: &str, event_id: &str) -> HashMap<String, u32> {
    let event = get_json(client, format!("{base}/api/events/{event_id}")).await;
    event["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .map(|s| {
            (
                s["section"].as_str().expect("name").to_owned(),
                s["available"].as_u64().expect("count") as u32,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_find_their_first_reservation_on_any_gateway_and_redis_follows_the_sale() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("redis").await;
    let topics = sale.topics.clone();
    let url = redis_url();
    let prefix = format!("it-{}", uuid::Uuid::now_v7().simple());
    let env = redis_env(&url, &prefix);
    let redis = RedisReads::new(&url, &prefix, Duration::from_secs(3600)).expect("pool");
    let disk = tempfile::tempdir().expect("dir");
    let (port_a, port_b) = (free_port(), free_port());
    let (processor_metrics, projector_metrics) = (free_port(), free_port());
    let mut projector_env = env.clone();
    projector_env.push((
        "SEATFLOW_METRICS_BIND",
        format!("127.0.0.1:{projector_metrics}"),
    ));
    let _children = Children(vec![
        sale.processor_with(
            disk.path(),
            "p0",
            &[(
                "SEATFLOW_METRICS_BIND",
                format!("127.0.0.1:{processor_metrics}").as_str(),
            )],
        ),
        gateway_with(&topics, "gw-a", 0, port_a, &borrowed(&env)),
        gateway_with(&topics, "gw-b", 1, port_b, &borrowed(&env)),
        redis_projector(&topics, &projector_env),
    ]);
    let (a, b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &a).await;
    wait_ready(&client, &b).await;
    let event_id = create_event(
        &client,
        &a,
        "Redis night",
        serde_json::json!([
            {"section": "A", "rows": 2, "seatsPerRow": 5},
            {"section": "B", "rows": 2, "seatsPerRow": 5}
        ]),
    )
    .await;
    let reservations = |base: &str| format!("{base}/api/reservations?wait=10000");

    // A retry on the other gateway (which never saw the first request) gets the first one.
    let request =
        serde_json::json!({"eventId": event_id, "section": "A", "userId": "fan:1", "seatCount": 2});
    let (status, first) = post(&client, reservations(&a), request.clone()).await;
    assert_eq!(
        (status, &first["status"]),
        (200, &"CONFIRMED".into()),
        "{first}"
    );
    let (status, retry) = post(&client, reservations(&b), request).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry["reservationId"], first["reservationId"]);
    assert_eq!(retry["seats"], first["seats"]);

    // The same Idempotency-Key on either gateway answers the same reservation; the key reused
    // for another request is refused, naming the header.
    let keyed =
        serde_json::json!({"eventId": event_id, "section": "B", "userId": "fan:2", "seatCount": 1});
    let (status, original) = reserve_with_key(&client, &a, keyed.clone(), "order-77").await;
    assert_eq!(status, 200, "{original}");
    let (status, again) = reserve_with_key(&client, &b, keyed, "order-77").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["reservationId"], original["reservationId"]);
    let other =
        serde_json::json!({"eventId": event_id, "section": "A", "userId": "fan:2", "seatCount": 1});
    let (status, refused) = reserve_with_key(&client, &b, other, "order-77").await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "Idempotency-Key");
    assert_eq!(metric(&client, &b, "seatflow_dedup_hits_total").await, 2);
    assert_eq!(metric(&client, &b, "seatflow_redis_up").await, 1);

    // The projector keeps the counts and the outcomes.
    let section_a = SectionKey::new(event_id.as_str(), "A");
    eventually(
        "Redis holds section A's count after the first sale",
        async || redis.available(&event_id).await.expect("counts").get("A") == Some(&8),
    )
    .await;
    let first_id =
        uuid::Uuid::parse_str(first["reservationId"].as_str().expect("id")).expect("uuid");
    let stored = redis
        .outcome(first_id)
        .await
        .expect("outcome")
        .expect("stored");
    assert_eq!(stored.status, "CONFIRMED");
    assert_eq!(stored.user_id, "fan:1");

    // Seat maps are answered from the cache while nothing changes ...
    let seats_url = format!("{b}/api/events/{event_id}/sections/A/seats");
    eventually("a seat map answered from the cache", async || {
        assert_eq!(get_json(&client, seats_url.clone()).await["available"], 8);
        metric(&client, &b, "seatflow_read_cache_hits_total").await > 0
    })
    .await;
    assert!(redis.cached_seats(&section_a).await.expect("get").is_some());

    // ... and dropped by the projector as soon as the section's count changes, not 10 s later.
    let (status, more) = post(
        &client,
        reservations(&a),
        serde_json::json!({"eventId": event_id, "section": "A", "userId": "fan:3", "seatCount": 3}),
    )
    .await;
    assert_eq!(
        (status, &more["status"]),
        (200, &"CONFIRMED".into()),
        "{more}"
    );
    eventually("Redis holds section A's new count", async || {
        redis.available(&event_id).await.expect("counts").get("A") == Some(&5)
    })
    .await;
    assert_eq!(
        redis.cached_seats(&section_a).await.expect("get"),
        None,
        "the stale seat map was dropped with the count change"
    );
    eventually("gateway B's seat map shows the new sale", async || {
        get_json(&client, seats_url.clone()).await["available"] == 5
    })
    .await;

    // The roles without an HTTP API serve their metrics: the seat processor decided 5 commands
    // (2 sections created, 3 reservations: the retries never became commands) in committed
    // transactions and reports its lag; the projector reports how far behind it is.
    let processor = format!("http://127.0.0.1:{processor_metrics}");
    let decided = metric(
        &client,
        &processor,
        "seatflow_seat_processor_decision_seconds_count",
    )
    .await;
    assert_eq!(decided, 5, "2 sections created + 3 reservations decided");
    assert!(
        metric(
            &client,
            &processor,
            "seatflow_transaction_commit_seconds_count"
        )
        .await
            >= 1
    );
    eventually(
        "the seat processor reports no lag on each of its 4 partitions (every 5 s)",
        async || {
            let lines = metric_lines(&client, &processor, "seatflow_consumer_lag_records{").await;
            lines.len() == PARTITIONS as usize
                && lines
                    .iter()
                    .all(|l| l.contains("group=\"seat-processor\"") && l.ends_with(" 0"))
        },
    )
    .await;
    let projector = format!("http://127.0.0.1:{projector_metrics}");
    for base in [&processor, &projector] {
        let live = client
            .get(format!("{base}/health/live"))
            .send()
            .await
            .expect("live");
        assert_eq!(live.status(), 200, "{base}: the liveness probe's endpoint");
    }
    eventually("the Redis projector reports its lag", async || {
        !metric_lines(
            &client,
            &projector,
            "seatflow_projector_lag_seconds{projection=\"redis\"}",
        )
        .await
        .is_empty()
    })
    .await;

    // A replay into a fresh prefix equals the live models.
    let replay = seatflow_with(&topics, &env)
        .args([
            "replay",
            "redis",
            "--into",
            &format!("{prefix}-replay"),
            "--verify",
        ])
        .stdout(Stdio::piped())
        .output()
        .expect("replay runs");
    let printed = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{printed}");
    assert!(
        printed.contains("3 outcomes equal, 0 different"),
        "{printed}"
    );
    assert!(
        printed.contains("counts: 2 equal, 0 different"),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sale_goes_on_while_redis_restarts_and_the_read_models_are_rebuilt_after() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("redis-restart").await;
    let topics = sale.topics.clone();
    let redis_port = free_port();
    let url = format!("redis://127.0.0.1:{redis_port}");
    let start_redis = || {
        let child = Process::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts (installed by ops/setup)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    };
    let env = redis_env(&url, "live");
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut children = Children(vec![
        start_redis(),
        sale.processor(disk.path(), "p0"),
        gateway_with(&topics, "gw-a", 0, port, &borrowed(&env)),
        redis_projector(&topics, &env),
    ]);
    let (client, base, event_id) = gateway_ready_with_event(
        port,
        "Restart night",
        serde_json::json!([
            {"section": "A", "rows": 10, "seatsPerRow": 10},
            {"section": "B", "rows": 10, "seatsPerRow": 10}
        ]),
    )
    .await;

    // Every request is answered: seats (200) or refused by the pre-filter (409), never a 5xx.
    let mut decided: HashMap<String, serde_json::Value> = HashMap::new();
    let reserve = async |decided: &mut HashMap<String, serde_json::Value>,
                         user: String,
                         section: &str| {
        let (status, outcome) = post(
            &client,
            format!("{base}/api/reservations?wait=10000"),
            serde_json::json!({"eventId": event_id, "section": section, "userId": user, "seatCount": 2}),
        )
        .await;
        assert!(status == 200 || status == 409, "HTTP {status}: {outcome}");
        if status == 200 {
            decided.insert(
                outcome["reservationId"].as_str().expect("id").to_owned(),
                outcome.clone(),
            );
        }
        outcome
    };
    for i in 0..15 {
        reserve(
            &mut decided,
            format!("early-{i}"),
            if i % 2 == 0 { "A" } else { "B" },
        )
        .await;
    }

    // Redis dies mid-sale.
    kill(&mut children.0[0], "-KILL");
    let mut during = Vec::new();
    for i in 0..15 {
        during.push(
            reserve(
                &mut decided,
                format!("during-{i}"),
                if i % 2 == 0 { "A" } else { "B" },
            )
            .await,
        );
    }
    assert_eq!(metric(&client, &base, "seatflow_redis_up").await, 0);
    assert!(metric(&client, &base, "seatflow_redis_failures_total").await >= 1);
    // De-duplication is degraded to this gateway's memory, which still answers its retries.
    let retried = reserve(&mut decided, "during-0".into(), "A").await;
    assert_eq!(retried["reservationId"], during[0]["reservationId"]);
    let seat_map = get_json(
        &client,
        format!("{base}/api/events/{event_id}/sections/A/seats"),
    )
    .await;
    assert!(seat_map["available"].as_u64().is_some());

    // Redis comes back empty; the gateway recovers by itself and the projector rebuilds.
    children.0[0] = start_redis();
    for i in 0..15 {
        reserve(
            &mut decided,
            format!("late-{i}"),
            if i % 2 == 0 { "A" } else { "B" },
        )
        .await;
    }
    let event_url = format!("{base}/api/events/{event_id}");
    eventually("the gateway sees Redis up again", async || {
        // An event read asks the Redis cache.
        get_json(&client, event_url.clone()).await;
        metric(&client, &base, "seatflow_redis_up").await == 1
    })
    .await;
    let redis = RedisReads::new(&url, "live", Duration::from_secs(3600)).expect("pool");
    eventually(
        "Redis holds every count and every outcome again",
        async || {
            let answered = counts(&client, &base, &event_id).await;
            let Ok(snapshot) = redis.snapshot().await else {
                return false;
            };
            let Ok(stored) = redis.available(&event_id).await else {
                return false;
            };
            stored == answered && snapshot.outcomes.len() == decided.len()
        },
    )
    .await;
    for (id, told) in &decided {
        let stored = redis
            .outcome(uuid::Uuid::parse_str(id).expect("uuid"))
            .await
            .expect("outcome")
            .expect("stored");
        assert_eq!(
            stored.status,
            told["status"].as_str().expect("status"),
            "{id}"
        );
    }
    // The projector stops when asked.
    terminate(&mut children.0[3]);
}

/// Redis follows the checkout: a HELD outcome with its end, then EXPIRED with `expired_at` when
/// the processor's clock expires it, and the section's count back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_follows_a_hold_until_it_expires() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let sale = Sale::without_event("redis-holds").await;
    let topics = sale.topics.clone();
    let url = redis_url();
    let prefix = format!("it-{}", uuid::Uuid::now_v7().simple());
    let env = redis_env(&url, &prefix);
    let redis = RedisReads::new(&url, &prefix, Duration::from_secs(3600)).expect("pool");
    let disk = tempfile::tempdir().expect("dir");
    let port = free_port();
    let _children = Children(vec![
        sale.processor(disk.path(), "p0"),
        gateway_with(&topics, "gw-redis-holds", 0, port, &borrowed(&env)),
        redis_projector(&topics, &env),
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let event_id = create_event_from(
        &client,
        &base,
        serde_json::json!({"name": "Redis checkout", "holdSeconds": 3,
            "sections": [{"section": "A", "rows": 1, "seatsPerRow": 4}]}),
    )
    .await;
    let (status, held) = post(
        &client,
        format!("{base}/api/reservations?wait=10000"),
        serde_json::json!({"eventId": event_id, "section": "A", "userId": "fan:h", "seatCount": 3}),
    )
    .await;
    assert_eq!((status, &held["status"]), (200, &"HELD".into()), "{held}");
    let id = uuid::Uuid::parse_str(held["reservationId"].as_str().expect("id")).expect("uuid");

    eventually("Redis holds the HELD outcome with its end", async || {
        redis
            .outcome(id)
            .await
            .expect("outcome")
            .is_some_and(|row| row.status == "HELD" && row.expires_at.is_some())
    })
    .await;
    eventually("Redis holds the EXPIRED outcome", async || {
        redis
            .outcome(id)
            .await
            .expect("outcome")
            .is_some_and(|row| row.status == "EXPIRED" && row.expired_at.is_some())
    })
    .await;
    eventually("Redis holds the section's count back at 4", async || {
        redis.available(&event_id).await.expect("counts").get("A") == Some(&4)
    })
    .await;
}
