//! The `seatflow` command line: configuration errors, `topics create` against a real broker
//! (started by `ops/test`, which sets SEATFLOW_TEST_KAFKA_BROKERS), and what a running server
//! writes to its logs; `bench` keeps a run as JSON and draws it (`bench.rs`).

mod bench;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run seatflow with only the given SEATFLOW_* settings; a run that does not end in 60 s fails.
fn seatflow(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seatflow"));
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("SEATFLOW_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("seatflow runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("seatflow {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn topics_create_makes_every_topic_once() {
    let brokers = std::env::var("SEATFLOW_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "SEATFLOW_TEST_KAFKA_BROKERS is not set: run the tests with ops/test (it starts Kafka)"
        )
    });
    let prefix = format!("cli-{}-", std::process::id());
    let env = [
        ("SEATFLOW_KAFKA_BROKERS", brokers.as_str()),
        ("SEATFLOW_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("SEATFLOW_KAFKA_PARTITIONS", "3"),
        ("SEATFLOW_KAFKA_REPLICATION", "1"),
        ("SEATFLOW_KAFKA_MIN_INSYNC_REPLICAS", "1"),
    ];
    let first = seatflow(&["topics", "create"], &env);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("created")).count(),
        7,
        "{out}"
    );
    assert!(out.contains(&format!("{prefix}section-status")), "{out}");
    assert!(out.contains("cleanup=Compact"), "{out}");

    let second = seatflow(&["topics", "create"], &env);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(
        text(&second.stdout)
            .lines()
            .filter(|l| l.starts_with("exists"))
            .count(),
        7
    );
}

#[test]
fn topics_create_without_brokers_says_which_setting_is_missing() {
    let output = seatflow(&["topics", "create"], &[]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("SEATFLOW_KAFKA_BROKERS"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_bad_setting_stops_the_start_with_its_name() {
    let output = seatflow(
        &["--bind", "127.0.0.1:0"],
        &[("SEATFLOW_KAFKA_MIN_INSYNC_REPLICAS", "5")],
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("kafka.min_insync_replicas"),
        "{}",
        text(&output.stderr)
    );
}

/// An embedded seatflow serving on `port` from `data`, with none of this environment's
/// SEATFLOW_* settings.
fn server_command(port: u16, data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seatflow"));
    command
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data);
    for (key, _) in std::env::vars() {
        if key.starts_with("SEATFLOW_") {
            command.env_remove(key);
        }
    }
    command
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn the_hmac_secret_never_reaches_the_logs() {
    const SECRET: &str = "cli-test-secret-that-must-never-print-7f3a9c";
    let data = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut command = server_command(port, data.path());
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("SEATFLOW_AUTH_MODE", "jwt")
        .env("SEATFLOW_AUTH_HMAC_SECRET", SECRET)
        .env(
            "SEATFLOW_METRICS_BIND",
            format!("127.0.0.1:{}", free_port()),
        )
        // Everything seatflow logs, at every level.
        .env("RUST_LOG", "seatflow=trace,seatflow_gateway=trace,info");
    let child = command.spawn().expect("seatflow runs");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({"sub": "olga", "roles": ["organizer"], "exp": now + 600});
    let good = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret-but-32-bytes-long!!"),
    )
    .expect("token");
    let event = serde_json::json!({"name": "Logged", "sections": [{"section": "A", "rows": 2, "seatsPerRow": 2}]});
    for (token, expected) in [(&good, 201), (&forged, 401)] {
        let status = client
            .post(format!("{base}/api/events"))
            .bearer_auth(token)
            .json(&event)
            .send()
            .await
            .expect("request")
            .status();
        assert_eq!(status, expected);
    }
    for path in ["/metrics", "/openapi.json", "/api/events"] {
        let text = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text");
        assert!(!text.contains(SECRET), "{path}");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("output");
    let logs = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        logs.lines().count() > 3,
        "the server logged something: {logs}"
    );
    assert!(!logs.contains(SECRET), "the secret is in the logs:\n{logs}");

    // A secret refused at start is not echoed in the refusal either.
    let refused = seatflow(
        &["--bind", "127.0.0.1:0"],
        &[
            ("SEATFLOW_AUTH_MODE", "jwt"),
            ("SEATFLOW_AUTH_HMAC_SECRET", "short-XQ7"),
        ],
    );
    assert!(!refused.status.success());
    let said = text(&refused.stderr);
    assert!(said.contains("auth.hmac_secret"), "{said}");
    assert!(!said.contains("short-XQ7"), "{said}");
}
