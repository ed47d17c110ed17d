//! The server's connections as a hostile client uses them: silent sockets, half-sent heads and
//! bodies, a declared 1 GiB body, more connections than the server takes. Each ends with an
//! answer or a close within its bound; a long poll is never cut by the idle bound.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_with, test_config};

async fn spawn(idle_secs: u64, max_connections: usize) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = test_config(dir.path());
    config.http.idle_timeout_secs = idle_secs;
    config.http.max_connections = max_connections;
    (spawn_with(config).await, dir)
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Everything the server sends until it closes, and how long that took (None: still open
/// after `within`).
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) => {
                return (
                    String::from_utf8_lossy(&received).into(),
                    Some(started.elapsed()),
                );
            }
            Ok(Err(e)) => {
                let mut text: String = String::from_utf8_lossy(&received).into();
                text.push_str(&format!("[{e}]"));
                return (text, Some(started.elapsed()));
            }
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into(), None),
        }
    }
}

#[tokio::test]
async fn silent_and_half_sent_connections_are_closed_after_the_idle_bound() {
    let (app, _dir) = spawn(1, 1000).await;
    let opened = Instant::now();
    let mut silent = connect(&app).await;
    let mut half_head = connect(&app).await;
    half_head
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let mut kept_alive = connect(&app).await;
    kept_alive
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    for (name, stream) in [
        ("silent", &mut silent),
        ("half-sent head", &mut half_head),
        ("idle keep-alive", &mut kept_alive),
    ] {
        let (_, closed) = until_closed(stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "{name}: still open after 5 s");
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(900),
            "{name}: closed early, {after:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_long_poll_outlives_the_idle_bound() {
    let (app, _dir) = spawn(1, 1000).await;
    // A fresh id may be on its way from another gateway: it is waited for, here 2.5 s.
    let id = uuid::Uuid::now_v7();
    let started = Instant::now();
    let (status, body) = app.get(&format!("/api/reservations/{id}?wait=2500")).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_too_large_or_too_slow_is_refused() {
    let (app, _dir) = spawn(30, 1000).await;
    let mut declared = connect(&app).await;
    declared
        .write_all(
            b"POST /api/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 1073741824\r\n\r\n{",
        )
        .await
        .expect("write");
    let (answer, closed) = until_closed(&mut declared, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert!(closed.is_some(), "not waited for: {answer}");

    let mut slow = connect(&app).await;
    slow.write_all(
        b"POST /api/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"name\":",
    )
    .await
    .expect("write");
    let (answer, _) = until_closed(&mut slow, Duration::from_secs(15)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn a_connection_over_the_bound_is_answered_503_and_closed() {
    let (app, _dir) = spawn(30, 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&app).await);
    }
    // The start-up's readiness check may still hold a connection of its own when these open:
    // one more is taken while the server is below its bound, none once it is at it.
    let mut refused = None;
    for _ in 0..3 {
        let mut extra = connect(&app).await;
        match until_closed(&mut extra, Duration::from_secs(1)).await {
            (answer, Some(_)) => {
                refused = Some(answer);
                break;
            }
            (_, None) => held.push(extra),
        }
    }
    let answer = refused.expect("a connection over the bound is answered and closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // Once one closes, a new one is served again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect(&app).await;
        again
            .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let (answer, _) = until_closed(&mut again, Duration::from_secs(3)).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        // The server may not have seen the close yet.
        assert!(Instant::now() < deadline, "never served again: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
    app.stop().await;
}

/// A Server-Sent Events stream is an answer still being given: the idle bound never cuts it
/// (a buyer may wait in a room for an hour), whatever the client does not send meanwhile.
#[tokio::test]
async fn a_live_stream_outlives_the_idle_bound() {
    let (app, _dir) = spawn(1, 100).await;
    let event = app.create_event(&[("A", 1, 10)]).await;
    let path = format!("/api/events/{event}/availability/stream");
    let mut stream = crate::queue::SseReader::open(&app, &path, &[]).await;
    stream
        .next(Duration::from_secs(2))
        .await
        .expect("the snapshot");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (status, body) = app.reserve(&event, "A", "late-buyer", 1).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let (_, update) = stream
        .next(Duration::from_secs(2))
        .await
        .expect("the stream is still open after 2.5 idle bounds");
    assert_eq!(update["sections"][0]["available"], 9, "{update}");
}
