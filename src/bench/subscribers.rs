//! `seatflow bench --subscribers N`: live-availability readers beside the sale.
//!
//! Each subscriber holds one `GET /api/events/{id}/availability/stream` open for the whole run
//! and times every message against the `changedAt` it carries (when the gateway counted the
//! newest change in it): the delivery delay, coalescing included. With `--server-pid` the
//! report also has the server's resident memory before and after the subscribers connected
//! (memory per subscriber) and its CPU time during the sale.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde::{Deserialize, Serialize};

use super::{Latency, Target, connect};

/// What the subscribers saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubscribersReport {
    pub subscribers: u32,
    /// Subscribers whose first message (the snapshot) arrived.
    pub connected: u64,
    /// Messages after the snapshots, all subscribers together.
    pub messages: u64,
    /// From `changedAt` to arrival, over every message after the snapshots.
    pub delay_ms: Latency,
    /// Streams that failed or ended before the stop.
    pub failed: u64,
    pub error_samples: Vec<String>,
    /// The server's resident memory before the subscribers connected and after (`--server-pid`).
    pub server_rss_before_mb: Option<f64>,
    pub server_rss_connected_mb: Option<f64>,
    /// Of which per subscriber, KB.
    pub rss_per_subscriber_kb: Option<f64>,
    /// Server CPU seconds (user + system) during the sale.
    pub server_cpu_secs_during_sale: Option<f64>,
}

struct Shared {
    stop: AtomicBool,
    connected: AtomicU64,
    failed: AtomicU64,
    samples: parking_lot::Mutex<Vec<String>>,
}

/// The running subscribers; [`Subscribers::stop`] ends them and says what they saw.
pub(super) struct Subscribers {
    count: u32,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<(u64, Histogram<u64>)>>,
    rss_before: Option<f64>,
    rss_connected: Option<f64>,
}

impl Subscribers {
    /// Open `count` streams on `event_id` and wait (up to a minute) until each got its
    /// snapshot.
    pub async fn start(
        target: &Arc<Target>,
        count: u32,
        event_id: &str,
        server_pid: Option<u32>,
    ) -> anyhow::Result<Self> {
        let rss_before = server_pid.and_then(rss_mb);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            samples: parking_lot::Mutex::new(Vec::new()),
        });
        let path = format!("/api/events/{event_id}/availability/stream");
        let mut tasks = Vec::with_capacity(count as usize);
        for n in 0..count {
            let (target, shared, path) = (target.clone(), shared.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                let mut delays = Histogram::<u64>::new(3).expect("histogram");
                let mut messages = 0;
                if let Err(e) = follow(&target, &path, n, &shared, &mut delays, &mut messages).await
                {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    let mut samples = shared.samples.lock();
                    if samples.len() < 5 {
                        samples.push(e.to_string());
                    }
                }
                (messages, delays)
            }));
            // Connect in bursts the listener's backlog takes.
            if n % 500 == 499 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let started = Instant::now();
        while shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
            < u64::from(count)
            && started.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the server's memory settle before reading it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_connected = server_pid.and_then(rss_mb);
        eprintln!(
            "{} of {count} subscribers connected in {:.1} s",
            shared.connected.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
        Ok(Self {
            count,
            shared,
            tasks,
            rss_before,
            rss_connected,
        })
    }

    pub async fn stop(self) -> SubscribersReport {
        // The last changes of the sale reach the subscribers within the coalescing time.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut delays = Histogram::<u64>::new(3).expect("histogram");
        let mut messages = 0;
        for task in self.tasks {
            if let Ok(Ok((seen, histogram))) =
                tokio::time::timeout(Duration::from_secs(5), task).await
            {
                messages += seen;
                let _ = delays.add(histogram);
            }
        }
        let per_subscriber = match (self.rss_before, self.rss_connected) {
            (Some(before), Some(after)) if self.count > 0 => {
                Some((after - before) * 1024.0 / f64::from(self.count))
            }
            _ => None,
        };
        SubscribersReport {
            subscribers: self.count,
            connected: self.shared.connected.load(Ordering::Relaxed),
            messages,
            delay_ms: Latency::of(&delays, 1.0),
            failed: self.shared.failed.load(Ordering::Relaxed),
            error_samples: self.shared.samples.lock().clone(),
            server_rss_before_mb: self.rss_before,
            server_rss_connected_mb: self.rss_connected,
            rss_per_subscriber_kb: per_subscriber,
            server_cpu_secs_during_sale: None,
        }
    }
}

/// Read one stream until the stop, timing each message after the first.
async fn follow(
    target: &Target,
    path: &str,
    n: u32,
    shared: &Shared,
    delays: &mut Histogram<u64>,
    messages: &mut u64,
) -> anyhow::Result<()> {
    let mut sender = connect(target).await?;
    sender.ready().await?;
    let mut request = Request::builder()
        .method("GET")
        .uri(path)
        .header("host", &target.authority)
        .header("accept", "text/event-stream");
    if target.signer.is_some() {
        let (name, value) = target.credentials(&format!("subscriber-{n}"))?;
        request = request.header(name, value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new()))?)
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "the stream answered {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut buffer = BytesMut::new();
    let mut first = true;
    while !shared.stop.load(Ordering::Relaxed) {
        let frame = match tokio::time::timeout(Duration::from_secs(1), body.frame()).await {
            Err(_) => continue,
            Ok(None) => anyhow::bail!("the stream ended"),
            Ok(Some(frame)) => frame?,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        while let Some(end) = find(&buffer, b"\n\n") {
            let message = buffer.split_to(end + 2);
            let Some(changed_at) = changed_at(&message) else {
                continue; // a keep-alive comment
            };
            if first {
                first = false;
                shared.connected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            *messages += 1;
            let delay = SystemTime::now()
                .duration_since(changed_at)
                .unwrap_or_default();
            let _ = delays.record(delay.as_millis() as u64);
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `changedAt` of a message (RFC 3339 with milliseconds); `UNIX_EPOCH` for a message
/// without one (a snapshot before any change), None for a comment.
fn changed_at(message: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(message).ok()?;
    if !text.lines().any(|line| line.starts_with("data:")) {
        return None;
    }
    const KEY: &str = "\"changedAt\":\"";
    let Some(start) = text.find(KEY).map(|at| at + KEY.len()) else {
        return Some(SystemTime::UNIX_EPOCH);
    };
    let end = start + text[start..].find('"')?;
    humantime::parse_rfc3339(&text[start..end]).ok()
}

/// A process's resident memory, MB (Linux).
pub(super) fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// A process's CPU time so far, user + system, seconds (Linux; clock ticks of 1/100 s).
pub(super) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
