//! The `seatflow` command line: configuration errors and `topics create` against a real broker
//! (started by `ops/test`, which sets SEATFLOW_TEST_KAFKA_BROKERS).

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
