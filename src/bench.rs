//! `seatflow bench`: a flash-sale spike against a running seatflow.
//!
//! Creates an event of `sections` sections of `rows x seats_per_row` seats, fires `requests`
//! reservations (random section, 1 to `max_seats` adjacent seats, a distinct user each) over
//! `connections` keep-alive HTTP/1.1 connections, each waiting for its outcome (`?wait=`), then
//! verifies the sale: no seat confirmed twice, seats sold == capacity when demand exceeds supply,
//! and the server's own counts agree. With `--baseline` the same load first goes to
//! `POST /bench/echo`, a trivial endpoint of the same server, so the report shows this machine's
//! HTTP ceiling beside the reservation figure. With `--hold-seconds` the client confirms a share
//! of its holds and measures how late the others expire; with `--waitlist` it also follows its
//! WAITLISTED requests to their promotion ([`waitlist`]).

mod abusive;
mod chart;
mod compare;
mod page;
mod record;
mod room;
mod show;
mod subscribers;
mod timeline;
mod waitlist;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use seatflow_gateway::auth::token::Signer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

pub use abusive::AbusiveReport;
pub use compare::{CompareArgs, run as compare};
use page::Named;
pub use record::{BenchRun, Machine, Settings};
pub use room::RoomReport;
pub use show::{ShowArgs, run as show};
pub use subscribers::SubscribersReport;
use timeline::Answered;
pub use timeline::Second;
use waitlist::Waiter;
pub use waitlist::WaitlistReport;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Base URL of the seatflow to load.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SEATFLOW_URL")]
    pub url: String,
    /// Reservations to send.
    #[arg(long, default_value_t = 100_000)]
    pub requests: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 100)]
    pub connections: u32,
    /// Sections in the event.
    #[arg(long, default_value_t = 100)]
    pub sections: u32,
    /// Rows per section.
    #[arg(long, default_value_t = 20)]
    pub rows: u32,
    /// Seats per row.
    #[arg(long, default_value_t = 20)]
    pub seats_per_row: u32,
    /// Each request asks for 1 to this many adjacent seats.
    #[arg(long, default_value_t = 4)]
    pub max_seats: u32,
    /// How long each request waits for its outcome, ms.
    #[arg(long, default_value_t = 10_000)]
    pub wait_ms: u64,
    /// Also run the same load against the trivial `/bench/echo` endpoint first.
    #[arg(long)]
    pub baseline: bool,
    /// The run as JSON (its reports, second by second, with the machine and the settings):
    /// printed instead of the text, or written to FILE (what `seatflow bench compare` reads).
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub json: Option<Option<PathBuf>>,
    /// Also write the run on one self-contained HTML page: throughput and P50/P95/P99 second by
    /// second, the baseline beside it, the sale's verification, the machine and the settings.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Also write each chart of the page to this directory as an SVG file.
    #[arg(long, value_name = "DIR")]
    pub charts: Option<PathBuf>,
    /// Create the event with this `holdSeconds`: reservations are HELD until confirmed, and
    /// expire if not (0: confirmed when decided).
    #[arg(long, default_value_t = 0)]
    pub hold_seconds: u32,
    /// Create the event with this `maxSeatsPerUser`: every reservation is counted against its
    /// user's limit first (each bench user asks once, so none is refused by it; the quotas are
    /// what the server then keeps per user).
    #[arg(long)]
    pub max_seats_per_user: Option<u32>,
    /// With `--hold-seconds`: the share of its HELD reservations a client confirms at once; the
    /// others are left to expire, then read back to measure how late their expiry came.
    #[arg(long, default_value_t = 1.0)]
    pub confirm_ratio: f64,
    /// Every request asks to wait when its section has no room (`"waitlist": true`); after the
    /// sale the client follows its WAITLISTED requests, confirms or leaves their holds like the
    /// others, and checks the promotions came in order and none was lost.
    #[arg(long)]
    pub waitlist: bool,
    /// A server with `auth.mode = jwt`: sign each user's token with this HMAC secret (the
    /// server's `auth.hmac_secret`); the event is created by an organizer.
    #[arg(long, env = "SEATFLOW_AUTH_HMAC_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Also run this many abusive clients: each one user on its own connection asking for
    /// seats back to back while the sale runs (reported apart; the sale's figures are the
    /// polite clients').
    #[arg(long, default_value_t = 0)]
    pub abusive_clients: u32,
    /// The abusive clients start this many seconds before the polite sale (at an on-sale the
    /// bots are there first), so the sale meets them after their bursts, at their steady rate.
    #[arg(long, default_value_t = 2)]
    pub abusive_lead_secs: u64,
    /// With `--token-secret`: the `iss` to write (the server's `auth.issuer`).
    #[arg(long, env = "SEATFLOW_AUTH_ISSUER")]
    pub token_issuer: Option<String>,
    /// With `--token-secret`: the `aud` to write (the server's `auth.audience`).
    #[arg(long, env = "SEATFLOW_AUTH_AUDIENCE")]
    pub token_audience: Option<String>,
    /// An on-sale behind a waiting room instead: `--requests` buyers join, are admitted at
    /// `--admit-per-minute` (at most `--max-active` at once) and reserve once admitted
    /// (`docs/BENCHMARK.md`, "A waiting room").
    #[arg(long)]
    pub waiting_room: bool,
    /// With `--waiting-room`: the seconds before the on-sale the buyers have to join.
    #[arg(long, default_value_t = 10)]
    pub join_secs: u64,
    /// With `--waiting-room`: how long the buyers follow their tickets after the on-sale.
    #[arg(long, default_value_t = 120)]
    pub room_secs: u64,
    /// With `--waiting-room`: the room's admissions a minute.
    #[arg(long, default_value_t = 6_000)]
    pub admit_per_minute: u32,
    /// With `--waiting-room`: the room's most admitted buyers at once.
    #[arg(long)]
    pub max_active: Option<u32>,
    /// Also hold this many live-availability streams open on the event through the sale, and
    /// time their messages (`docs/BENCHMARK.md`, "Live availability").
    #[arg(long, default_value_t = 0)]
    pub subscribers: u32,
    /// The server's process id (same host): its memory and CPU time go into the report.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub target: String,
    pub requests: u64,
    pub connections: u32,
    pub elapsed_secs: f64,
    pub throughput_per_sec: f64,
    pub confirmed: u64,
    pub rejected: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub duplicate_seats: u64,
    pub seats_sold: u64,
    pub capacity: u64,
    pub sold_out: bool,
    pub server_available: Option<u64>,
    /// When the server's count disagreed right after the last answer: how long it was read
    /// again (until it agreed, or gave up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_count_settled_ms: Option<u64>,
    pub latency_ms: Latency,
    pub rejection_reasons: HashMap<String, u64>,
    pub error_samples: Vec<String>,
    /// With holds: what became of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<CheckoutReport>,
    /// With `--waitlist`: what became of the waiting requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waitlist: Option<WaitlistReport>,
    /// With `--abusive-clients`: what the bots got while the sale ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abusive: Option<AbusiveReport>,
    /// With `--subscribers` or `--server-pid`: the live-availability readers and the server's
    /// cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<SubscribersReport>,
    /// The run second by second (answers and their latency).
    #[serde(default)]
    pub timeline: Vec<Second>,
}

/// A sale with holds: confirmations, expiries and how late the expiries came.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckoutReport {
    pub hold_seconds: u32,
    pub confirm_ratio: f64,
    /// HELD answers.
    pub held: u64,
    /// Confirmed by the client (CONFIRMED answers to a confirmation).
    pub confirmed: u64,
    /// Confirmations that came too late (`hold_expired`).
    pub confirm_too_late: u64,
    /// Holds the client left to expire.
    pub left_to_expire: u64,
    /// Of those, read back EXPIRED.
    pub expired: u64,
    /// Of those, still HELD or anything else when read back after their end: a failure.
    pub not_expired: u64,
    /// Seats held again by another reservation after the hold that had them expired.
    pub resold_seats: u64,
    /// `expiredAt - expiresAt` of the expired holds, by the server's clock.
    pub expiry_lag_ms: Latency,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// The percentiles of a histogram of values in units of `1 / per_ms` ms (1,000 for
    /// microseconds, 1 for milliseconds), in milliseconds.
    pub(crate) fn of(histogram: &Histogram<u64>, per_ms: f64) -> Self {
        let ms = |v: u64| v as f64 / per_ms;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

impl Report {
    /// The `--baseline` run against `/bench/echo`, not a sale.
    pub fn is_baseline(&self) -> bool {
        self.target.starts_with("baseline")
    }

    /// Whether the sale was correct: no seat confirmed twice, no error, counts agree, every
    /// hold left alone expired.
    pub fn verified(&self) -> bool {
        self.duplicate_seats == 0
            && self.errors == 0
            && self.checkout.as_ref().is_none_or(|c| c.not_expired == 0)
            && self
                .waitlist
                .as_ref()
                .is_none_or(|w| w.out_of_order == 0 && w.lost == 0 && w.stranded == 0)
            // The bots' seats are not tallied: with them, the server's count cannot be checked
            // against the polite clients' seats.
            && (self.abusive.is_some()
                || self
                    .server_available
                    .is_none_or(|available| available + self.seats_sold == self.capacity))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    status: String,
    #[serde(default)]
    reservation_id: String,
    #[serde(default)]
    seats: Vec<SeatOut>,
    reason: Option<String>,
    expires_at: Option<String>,
    expired_at: Option<String>,
    decided_at: Option<String>,
    waitlist_place: Option<i64>,
}

/// An RFC 3339 time as epoch milliseconds.
fn millis_of(at: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339(at).ok()?;
    Some(at.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// A hold the client left to expire.
struct Left {
    user: String,
    reservation_id: String,
    expires_at: String,
}

#[derive(Debug, Deserialize)]
struct SeatOut {
    row: u32,
    seat: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorOut {
    error: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventOut {
    event_id: String,
    sections: Vec<SectionOut>,
}

#[derive(Debug, Deserialize)]
struct SectionOut {
    section: String,
    available: u64,
}

/// What one connection task saw.
#[derive(Default)]
struct Tally {
    confirmed: u64,
    rejected: u64,
    errors: u64,
    timeouts: u64,
    seats: Vec<(u32, u32, u32)>,
    reasons: HashMap<String, u64>,
    error_samples: Vec<String>,
    latency: Option<Histogram<u64>>,
    /// Every answer, when it came and how long it took: the run second by second.
    answered: Vec<Answered>,
    /// With holds.
    held: u64,
    confirm_too_late: u64,
    /// Every seat a HELD answer gave, (section, row, seat): a seat in it twice was sold again.
    held_seats: Vec<(u32, u32, u32)>,
    left: Vec<Left>,
    /// With `--waitlist`: the requests answered WAITLISTED.
    waiters: Vec<Waiter>,
}

struct Target {
    host: String,
    authority: String,
    /// Signs each user's token when the server wants one.
    signer: Option<Signer>,
}

/// The user who creates the bench's event (the `organizer` role when tokens are signed).
const ORGANIZER: &str = "bench-organizer";

impl Target {
    /// How a request says who it is for: a bearer token for `user` when tokens are signed,
    /// `X-User-Id` otherwise.
    fn credentials(&self, user: &str) -> anyhow::Result<(&'static str, String)> {
        let Some(signer) = &self.signer else {
            return Ok(("x-user-id", user.to_owned()));
        };
        let roles = if user == ORGANIZER {
            vec!["organizer".to_owned()]
        } else {
            Vec::new()
        };
        let token = signer.sign(user, &roles, Duration::from_secs(3600))?;
        Ok(("authorization", format!("Bearer {token}")))
    }
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .context("--url must start with http://")?;
    let authority = rest.trim_end_matches('/').to_owned();
    if authority.is_empty() || authority.contains('/') {
        bail!("--url must be http://host:port");
    }
    let host = if authority.contains(':') {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        host,
        authority,
        signer: None,
    })
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(&target.host)
        .await
        .with_context(|| format!("cannot connect to {}", target.host))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn send(
    sender: &mut Sender,
    target: &Target,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(u16, Bytes)> {
    send_with(sender, target, method, path, body, None).await
}

/// A request without a body on behalf of `user`.
async fn send_as(
    sender: &mut Sender,
    target: &Target,
    method: &str,
    path: &str,
    user: &str,
) -> anyhow::Result<(u16, Bytes)> {
    send_with(sender, target, method, path, None, Some(user)).await
}

async fn send_with(
    sender: &mut Sender,
    target: &Target,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    user: Option<&str>,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &target.authority);
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    if let Some(user) = user {
        let (name, value) = target.credentials(user)?;
        request = request.header(name, value);
    }
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// A reservation carrying an admission token, on behalf of `user`.
async fn send_admitted(
    sender: &mut Sender,
    target: &Target,
    path: &str,
    body: Vec<u8>,
    user: &str,
    token: &str,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let (name, value) = target.credentials(user)?;
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", &target.authority)
        .header("content-type", "application/json")
        .header(name, value)
        .header("x-admission-token", token)
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

async fn wait_ready(target: &Target) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut sender) = connect(target).await
            && let Ok((200, _)) = send(&mut sender, target, "GET", "/health/ready", None).await
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} did not become ready within 60 s", target.authority);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_event(target: &Target, args: &BenchArgs) -> anyhow::Result<String> {
    let sections: Vec<serde_json::Value> = (0..args.sections)
        .map(|i| {
            serde_json::json!({
                "section": format!("S{i:03}"),
                "rows": args.rows,
                "seatsPerRow": args.seats_per_row,
            })
        })
        .collect();
    let mut event = serde_json::json!({
        "name": "seatflow bench on-sale",
        "sections": sections,
        "holdSeconds": args.hold_seconds,
    });
    if let Some(limit) = args.max_seats_per_user {
        event["maxSeatsPerUser"] = limit.into();
    }
    let body = serde_json::to_vec(&event)?;
    post_event(target, body).await
}

/// How long the event's creation is retried while the server answers 503 (on Kafka, a seat
/// processor that has not taken its partitions yet).
const CREATE_EVENT_WITHIN: Duration = Duration::from_secs(60);

/// Create an event from its JSON `body` as the organizer: its id. Every attempt carries the
/// same `Idempotency-Key`, so a retry after a 503 reaches the event the first attempt may still
/// have made instead of making a second one.
async fn post_event(target: &Target, body: Vec<u8>) -> anyhow::Result<String> {
    let key = uuid::Uuid::now_v7().to_string();
    let deadline = Instant::now() + CREATE_EVENT_WITHIN;
    loop {
        let mut sender = connect(target).await?;
        sender.ready().await?;
        let (name, value) = target.credentials(ORGANIZER)?;
        let request = Request::builder()
            .method("POST")
            .uri("/api/events")
            .header("host", &target.authority)
            .header("content-type", "application/json")
            .header("idempotency-key", &key)
            .header(name, value)
            .body(Full::new(Bytes::from(body.clone())))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        match status {
            201 => {
                let event: EventOut = serde_json::from_slice(&bytes)?;
                return Ok(event.event_id);
            }
            503 if Instant::now() < deadline => {
                eprintln!(
                    "creating the event answered 503 ({}); retrying with the same Idempotency-Key",
                    String::from_utf8_lossy(&bytes)
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => bail!(
                "creating the event answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

/// Run the load against `path` and tally the answers.
async fn fire(
    target: Arc<Target>,
    args: &BenchArgs,
    event_id: Arc<String>,
    path: Arc<String>,
    label: &str,
) -> anyhow::Result<(Vec<Tally>, f64)> {
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(args.connections as usize);
    for _ in 0..args.connections {
        senders.push(connect(&target).await?);
    }
    let started = Instant::now();
    let progress = {
        let done = done.clone();
        let total = args.requests;
        let label = label.to_owned();
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                eprintln!(
                    "[{label}] {now}/{total} answered ({:.0}/s, {:.1} s)",
                    (now - last) as f64,
                    started.elapsed().as_secs_f64()
                );
                last = now;
                if now >= total {
                    break;
                }
            }
        })
    };
    let mut tasks = Vec::with_capacity(senders.len());
    for mut sender in senders {
        let target = target.clone();
        let issued = issued.clone();
        let done = done.clone();
        let event_id = event_id.clone();
        let path = path.clone();
        let (requests, sections, max_seats) = (args.requests, args.sections, args.max_seats);
        let confirm_ratio = args.confirm_ratio;
        let waitlist = if args.waitlist {
            r#","waitlist":true"#
        } else {
            ""
        };
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                latency: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
                ..Tally::default()
            };
            let mut rng = rand::rngs::SmallRng::from_os_rng();
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let section = rng.random_range(0..sections);
                let count = rng.random_range(1..=max_seats);
                let body = format!(
                    r#"{{"eventId":"{event_id}","section":"S{section:03}","userId":"bench-user-{i}","seatCount":{count}{waitlist}}}"#
                );
                let sent = Instant::now();
                let user = format!("bench-user-{i}");
                let answer =
                    send_with(&mut sender, &target, "POST", &path, Some(body.into_bytes()), Some(&user))
                        .await;
                let micros = sent.elapsed().as_micros() as u64;
                if let Some(histogram) = tally.latency.as_mut() {
                    let _ = histogram.record(micros.max(1));
                }
                tally.answered.push(Answered {
                    at_ms: started.elapsed().as_millis() as u32,
                    took_us: micros.min(u64::from(u32::MAX)) as u32,
                });
                done.fetch_add(1, Ordering::Relaxed);
                match answer {
                    Err(e) => {
                        tally.errors += 1;
                        if tally.error_samples.len() < 3 {
                            tally.error_samples.push(e.to_string());
                        }
                        // The connection may be gone: open a new one.
                        match connect(&target).await {
                            Ok(fresh) => sender = fresh,
                            Err(_) => break,
                        }
                    }
                    Ok((status, bytes)) => match tally.record(status, &bytes, section) {
                        Some(held) if held.status == "HELD" => {
                            let confirm = rng.random_bool(confirm_ratio.clamp(0.0, 1.0));
                            tally
                                .settle_hold(&mut sender, &target, held, &user, section, confirm)
                                .await;
                        }
                        Some(waiting) => tally.waiters.push(Waiter {
                            user,
                            section,
                            seats: count,
                            place: waiting.waitlist_place.unwrap_or_default(),
                            waitlisted_at: waiting
                                .decided_at
                                .as_deref()
                                .and_then(millis_of)
                                .unwrap_or_default(),
                            reservation_id: waiting.reservation_id,
                        }),
                        None => {}
                    },
                }
            }
            tally
        }));
    }
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();
    Ok((tallies, elapsed))
}

/// What the holds left to expire became, read back once their end passed.
struct Expiries {
    expired: u64,
    not_expired: u64,
    lag: Histogram<u64>,
    samples: Vec<String>,
}

/// Wait until the last hold left alone has ended (and the 1 s an expiry may take, and a
/// margin), then read each back over up to 64 connections.
async fn read_back_expiries(
    target: &Arc<Target>,
    connections: u32,
    left: Vec<Left>,
) -> anyhow::Result<Expiries> {
    let end_of = |at: &str| humantime::parse_rfc3339(at).ok();
    if let Some(last) = left.iter().filter_map(|l| end_of(&l.expires_at)).max() {
        let due = last + Duration::from_millis(2_000);
        if let Ok(wait) = due.duration_since(SystemTime::now()) {
            eprintln!(
                "[expiry] waiting {:.1} s for the last of {} holds left alone to end",
                wait.as_secs_f64(),
                left.len()
            );
            tokio::time::sleep(wait).await;
        }
    }
    let left = Arc::new(left);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.clamp(1, 64) {
        let (target, left, next) = (target.clone(), left.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Expiries {
                expired: 0,
                not_expired: 0,
                lag: Histogram::new_with_bounds(1, 3_600_000, 3)?,
                samples: Vec::new(),
            };
            let mut sender = connect(&target).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(hold) = left.get(i) else {
                    break;
                };
                let path = format!("/api/reservations/{}", hold.reservation_id);
                let (status, bytes) =
                    send_as(&mut sender, &target, "GET", &path, &hold.user).await?;
                let outcome = serde_json::from_slice::<Outcome>(&bytes).ok();
                let lag = outcome
                    .as_ref()
                    .filter(|o| o.status == "EXPIRED")
                    .and_then(|o| {
                        let expired_at = end_of(o.expired_at.as_deref()?)?;
                        Some(
                            expired_at
                                .duration_since(end_of(&hold.expires_at)?)
                                .unwrap_or_default(),
                        )
                    });
                match lag {
                    Some(lag) if status == 200 => {
                        seen.expired += 1;
                        let _ = seen.lag.record((lag.as_millis() as u64).max(1));
                    }
                    _ => {
                        seen.not_expired += 1;
                        if seen.samples.len() < 3 {
                            seen.samples.push(format!(
                                "hold {} read back as HTTP {status}: {}",
                                hold.reservation_id,
                                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                            ));
                        }
                    }
                }
            }
            anyhow::Ok(seen)
        }));
    }
    let mut all = Expiries {
        expired: 0,
        not_expired: 0,
        lag: Histogram::new_with_bounds(1, 3_600_000, 3)?,
        samples: Vec::new(),
    };
    for task in tasks {
        let seen = task.await??;
        all.expired += seen.expired;
        all.not_expired += seen.not_expired;
        let _ = all.lag.add(seen.lag);
        all.samples.extend(seen.samples);
    }
    Ok(all)
}

impl Tally {
    /// Confirm a HELD reservation (`confirm`) or leave it to expire.
    async fn settle_hold(
        &mut self,
        sender: &mut Sender,
        target: &Target,
        held: Outcome,
        user: &str,
        section: u32,
        confirm: bool,
    ) {
        if confirm {
            let path = format!("/api/reservations/{}/confirm", held.reservation_id);
            match send_as(sender, target, "POST", &path, user).await {
                Ok((status, bytes)) => self.confirmed_hold(status, &bytes, section),
                Err(e) => self.error(format!("confirm: {e}")),
            }
        } else {
            self.left.push(Left {
                user: user.to_owned(),
                reservation_id: held.reservation_id,
                expires_at: held.expires_at.unwrap_or_default(),
            });
        }
    }

    /// Count an answer to a reservation; a HELD one (for the client to confirm or leave) or a
    /// WAITLISTED one (to follow) is returned.
    fn record(&mut self, status: u16, bytes: &[u8], section: u32) -> Option<Outcome> {
        match status {
            200 => match serde_json::from_slice::<Outcome>(bytes) {
                Ok(outcome) if outcome.status == "CONFIRMED" => {
                    self.confirmed += 1;
                    self.seats
                        .extend(outcome.seats.iter().map(|s| (section, s.row, s.seat)));
                }
                Ok(outcome) if outcome.status == "HELD" => {
                    self.held += 1;
                    self.held_seats
                        .extend(outcome.seats.iter().map(|s| (section, s.row, s.seat)));
                    return Some(outcome);
                }
                Ok(outcome) if outcome.status == "WAITLISTED" => return Some(outcome),
                Ok(outcome) if outcome.status == "REJECTED" => {
                    self.rejected += 1;
                    *self
                        .reasons
                        .entry(outcome.reason.unwrap_or_default())
                        .or_default() += 1;
                }
                Ok(outcome) if outcome.status == "PENDING" => self.timeouts += 1,
                Ok(outcome) => self.error(format!("unexpected status {}", outcome.status)),
                Err(e) => self.error(format!("bad outcome body: {e}")),
            },
            202 => {
                // Either still pending after the wait, or the echo baseline's answer.
                self.timeouts += 1;
            }
            409 => {
                self.rejected += 1;
                let code = serde_json::from_slice::<ErrorOut>(bytes)
                    .map(|e| e.error)
                    .unwrap_or_else(|_| "conflict".into());
                *self.reasons.entry(code).or_default() += 1;
            }
            other => self.error(format!(
                "HTTP {other}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )),
        }
        None
    }

    /// Count the answer to a confirmation of a hold.
    fn confirmed_hold(&mut self, status: u16, bytes: &[u8], section: u32) {
        match (status, serde_json::from_slice::<Outcome>(bytes)) {
            (200, Ok(outcome)) if outcome.status == "CONFIRMED" => {
                self.confirmed += 1;
                self.seats
                    .extend(outcome.seats.iter().map(|s| (section, s.row, s.seat)));
            }
            (409, _) if String::from_utf8_lossy(bytes).contains("hold_expired") => {
                self.confirm_too_late += 1;
            }
            (status, _) => self.error(format!(
                "confirm answered HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )),
        }
    }

    fn error(&mut self, sample: String) {
        self.errors += 1;
        if self.error_samples.len() < 3 {
            self.error_samples.push(sample);
        }
    }
}

fn summarize(
    label: &str,
    args: &BenchArgs,
    tallies: Vec<Tally>,
    elapsed: f64,
    server_available: Option<u64>,
) -> Report {
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut seats = Vec::new();
    let mut report = Report {
        target: label.to_owned(),
        requests: args.requests,
        connections: args.connections,
        elapsed_secs: elapsed,
        throughput_per_sec: args.requests as f64 / elapsed.max(1e-9),
        confirmed: 0,
        rejected: 0,
        errors: 0,
        timeouts: 0,
        duplicate_seats: 0,
        seats_sold: 0,
        capacity: u64::from(args.sections) * u64::from(args.rows) * u64::from(args.seats_per_row),
        sold_out: false,
        server_available,
        server_count_settled_ms: None,
        latency_ms: Latency::default(),
        rejection_reasons: HashMap::new(),
        error_samples: Vec::new(),
        checkout: None,
        waitlist: None,
        abusive: None,
        subscribers: None,
        timeline: Vec::new(),
    };
    let mut checkout = CheckoutReport {
        hold_seconds: args.hold_seconds,
        confirm_ratio: args.confirm_ratio,
        ..CheckoutReport::default()
    };
    let mut held_seats = Vec::new();
    let mut answered = Vec::new();
    for mut tally in tallies {
        answered.append(&mut tally.answered);
        checkout.held += tally.held;
        checkout.confirm_too_late += tally.confirm_too_late;
        checkout.left_to_expire += tally.left.len() as u64;
        held_seats.append(&mut tally.held_seats);
        report.confirmed += tally.confirmed;
        report.rejected += tally.rejected;
        report.errors += tally.errors;
        report.timeouts += tally.timeouts;
        seats.extend(tally.seats);
        for (reason, n) in tally.reasons {
            *report.rejection_reasons.entry(reason).or_default() += n;
        }
        for sample in tally.error_samples {
            if report.error_samples.len() < 5 {
                report.error_samples.push(sample);
            }
        }
        if let Some(h) = tally.latency {
            let _ = latency.add(h);
        }
    }
    let total = seats.len() as u64;
    seats.sort_unstable();
    seats.dedup();
    report.seats_sold = seats.len() as u64;
    report.duplicate_seats = total - report.seats_sold;
    report.sold_out = report.seats_sold == report.capacity;
    if args.hold_seconds > 0 {
        checkout.confirmed = report.confirmed;
        let held = held_seats.len() as u64;
        held_seats.sort_unstable();
        held_seats.dedup();
        checkout.resold_seats = held - held_seats.len() as u64;
        report.checkout = Some(checkout);
    }
    report.latency_ms = Latency::of(&latency, 1000.0);
    report.timeline = timeline::seconds(answered);
    report
}

/// The seats the server says are left in the event: the sum of its sections' counts.
fn available_in(sections: Option<&[SectionOut]>) -> Option<u64> {
    sections.map(|sections| sections.iter().map(|s| s.available).sum())
}

/// The event's sections as the server counts them; None when the event cannot be read.
async fn event_sections(
    target: &Target,
    event_id: &str,
) -> anyhow::Result<Option<Vec<SectionOut>>> {
    let mut sender = connect(target).await?;
    let (status, bytes) = send_with(
        &mut sender,
        target,
        "GET",
        &format!("/api/events/{event_id}"),
        None,
        Some(ORGANIZER),
    )
    .await?;
    if status != 200 {
        return Ok(None);
    }
    let event: EventOut = serde_json::from_slice(&bytes)?;
    Ok(Some(event.sections))
}

/// How long a server's count may trail the sale's last answer before the sale is called
/// unverified.
const COUNT_SETTLE: Duration = Duration::from_secs(5);

/// Read the server's count again until it agrees with the seats sold, for at most
/// [`COUNT_SETTLE`]: a gateway's counts follow the decisions (on Kafka through the status
/// feed, measured up to ~0.5 k seats behind right after 1,000 connections' last answers), so a
/// count read at once may trail. A disagreement that lasts is left in the report. Returns the
/// sections last read, when they were read again.
async fn settle_server_count(
    report: &mut Report,
    target: &Target,
    event_id: &str,
) -> anyhow::Result<Option<Vec<SectionOut>>> {
    let agrees = |report: &Report| {
        report.server_available.map(|a| a + report.seats_sold) == Some(report.capacity)
    };
    if report.server_available.is_none() || agrees(report) {
        return Ok(None);
    }
    let started = Instant::now();
    let mut sections = None;
    while !agrees(report) && started.elapsed() < COUNT_SETTLE {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sections = event_sections(target, event_id).await?;
        report.server_available = available_in(sections.as_deref());
    }
    report.server_count_settled_ms = Some(started.elapsed().as_millis() as u64);
    Ok(sections)
}

/// Run the benchmark and print its report(s). Fails when a sale is not verified.
pub async fn run(args: BenchArgs) -> anyhow::Result<Vec<Report>> {
    if args.connections == 0 || args.requests == 0 || args.sections == 0 || args.max_seats == 0 {
        bail!("--requests, --connections, --sections and --max-seats must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.confirm_ratio) {
        bail!("--confirm-ratio must be between 0 and 1");
    }
    let mut target = parse_url(&args.url)?;
    if let Some(secret) = &args.token_secret {
        target.signer = Some(Signer::new(
            secret,
            args.token_issuer.clone(),
            args.token_audience.clone(),
        )?);
    }
    let target = Arc::new(target);
    wait_ready(&target).await?;
    let started_at = SystemTime::now();
    if args.waiting_room {
        if args.report.is_some() || args.charts.is_some() {
            bail!("--report and --charts draw a sale; a --waiting-room run has --json only");
        }
        let report = room::run(target, &args).await?;
        match &args.json {
            Some(None) => println!("{}", serde_json::to_string_pretty(&report)?),
            Some(Some(path)) => {
                write_file(path, &serde_json::to_vec_pretty(&report)?)?;
                print_room(&report);
            }
            None => print_room(&report),
        }
        return Ok(Vec::new());
    }
    let mut reports = Vec::new();

    let event_id = Arc::new(create_event(&target, &args).await?);
    if args.baseline {
        let (tallies, elapsed) = fire(
            target.clone(),
            &args,
            event_id.clone(),
            Arc::new("/bench/echo".into()),
            "baseline",
        )
        .await?;
        let mut report = summarize("baseline /bench/echo", &args, tallies, elapsed, None);
        // The echo answers every request as PENDING (202): those are answers, not timeouts.
        report.timeouts = 0;
        reports.push(report);
    }
    let path = Arc::new(format!("/api/reservations?wait={}", args.wait_ms));
    let mut abusers = if args.abusive_clients > 0 {
        Some(
            abusive::Abusers::start(
                &target,
                args.abusive_clients,
                &event_id,
                args.sections,
                args.max_seats,
            )
            .await?,
        )
    } else {
        None
    };
    if let Some(abusers) = &mut abusers {
        tokio::time::sleep(Duration::from_secs(args.abusive_lead_secs)).await;
        abusers.sale_starts();
    }
    let readers = if args.subscribers > 0 || args.server_pid.is_some() {
        Some(
            subscribers::Subscribers::start(&target, args.subscribers, &event_id, args.server_pid)
                .await?,
        )
    } else {
        None
    };
    let cpu_before = args.server_pid.and_then(subscribers::cpu_secs);
    let (mut tallies, elapsed) =
        fire(target.clone(), &args, event_id.clone(), path, "reserve").await?;
    let cpu_during_sale = match (args.server_pid.and_then(subscribers::cpu_secs), cpu_before) {
        (Some(after), Some(before)) => Some(after - before),
        _ => None,
    };
    let readers = match readers {
        Some(readers) => {
            let mut report = readers.stop().await;
            report.server_cpu_secs_during_sale = cpu_during_sale;
            Some(report)
        }
        None => None,
    };
    let abusive = match abusers {
        Some(abusers) => Some(abusers.stop().await),
        None => None,
    };
    let mut left: Vec<Left> = tallies
        .iter_mut()
        .flat_map(|tally| std::mem::take(&mut tally.left))
        .collect();
    let mut followed = None;
    if args.waitlist {
        let waiters: Arc<Vec<Waiter>> = Arc::new(
            tallies
                .iter_mut()
                .flat_map(|tally| std::mem::take(&mut tally.waiters))
                .collect(),
        );
        let holds_end = left
            .iter()
            .filter_map(|l| humantime::parse_rfc3339(&l.expires_at).ok())
            .max();
        let mut follow = waitlist::follow(
            &target,
            args.connections,
            args.hold_seconds,
            args.confirm_ratio,
            waiters.clone(),
            holds_end,
        )
        .await?;
        for tally in &mut follow.tallies {
            left.append(&mut tally.left);
        }
        tallies.append(&mut follow.tallies);
        followed = Some((follow, waiters));
    }
    let left_to_expire = left.len() as u64;
    let expiries = if args.hold_seconds > 0 {
        Some(read_back_expiries(&target, args.connections, left).await?)
    } else {
        None
    };
    let mut sections = event_sections(&target, &event_id).await?;
    let mut report = summarize(
        "reserve /api/reservations",
        &args,
        tallies,
        elapsed,
        available_in(sections.as_deref()),
    );
    if args.abusive_clients == 0
        && let Some(settled) = settle_server_count(&mut report, &target, &event_id).await?
    {
        sections = Some(settled);
    }
    if let (Some(checkout), Some(expiries)) = (report.checkout.as_mut(), expiries) {
        checkout.left_to_expire = left_to_expire;
        checkout.expired = expiries.expired;
        checkout.not_expired = expiries.not_expired;
        checkout.expiry_lag_ms = Latency::of(&expiries.lag, 1.0);
        report.error_samples.extend(expiries.samples);
    }
    report.abusive = abusive;
    report.subscribers = readers;
    if let Some((mut follow, waiters)) = followed {
        // Sections are named S000, S001, ...: their number is the bench's section index.
        let available: HashMap<u32, u64> = sections
            .iter()
            .flatten()
            .filter_map(|s| Some((s.section.strip_prefix('S')?.parse().ok()?, s.available)))
            .collect();
        follow.check_stranded(&waiters, &available);
        report.waitlist = Some(follow.report);
    }
    reports.push(report);

    let run = BenchRun::new(&args, started_at, reports);
    match &args.json {
        Some(None) => println!("{}", serde_json::to_string_pretty(&run)?),
        Some(Some(path)) => {
            write_file(path, &serde_json::to_vec_pretty(&run)?)?;
            run.reports.iter().for_each(print_report);
        }
        None => run.reports.iter().for_each(print_report),
    }
    write_pictures(
        &format!(
            "seatflow bench: {} requests over {} connections",
            page::number(args.requests as f64, 0),
            page::number(f64::from(args.connections), 0)
        ),
        &[Named {
            name: "this run",
            run: &run,
        }],
        args.report.as_deref(),
        args.charts.as_deref(),
    )?;
    let reservation = run.sale().context("a reservation report")?;
    if !reservation.verified() {
        bail!("the sale did not verify (duplicates, errors or counts that disagree)");
    }
    Ok(run.reports)
}

/// Write the page of `runs` to `report` and each of its charts into `charts`, where asked.
fn write_pictures(
    title: &str,
    runs: &[Named<'_>],
    report: Option<&Path>,
    charts: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(path) = report {
        write_file(path, page::render(title, runs)?.as_bytes())?;
        eprintln!("report: {}", path.display());
    }
    if let Some(dir) = charts {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        for (name, svg) in page::charts(runs)? {
            write_file(&dir.join(name), svg.as_bytes())?;
        }
        eprintln!("charts: {}", dir.display());
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn print_room(r: &RoomReport) {
    println!(
        "waiting room: {} buyers over {} connections",
        r.buyers, r.connections
    );
    println!(
        "  joins: {:.0}/s  P50 {:.1} ms  P99 {:.1} ms  errors {}",
        r.join_per_sec, r.join_p50_ms, r.join_p99_ms, r.join_errors
    );
    println!(
        "  admissions: {} at {}/min (max active {:?}); per minute {:?}; worst minute {}",
        r.admitted,
        r.admit_per_minute,
        r.max_active,
        r.admitted_per_minute,
        r.worst_minute_deviation_pct
            .map_or("-".to_owned(), |gap| format!("{gap:.1} % off"))
    );
    let busiest = r.reservations_per_sec.iter().max().copied().unwrap_or(0);
    println!(
        "  reservations: {} sent, at most {busiest} in one second; per second {:?}",
        r.reserved, r.reservations_per_sec
    );
    println!(
        "  refused for their admission: {}  ticket polls: {} (P99 {:.1} ms)",
        r.refused_admissions, r.polls, r.poll_p99_ms
    );
}

fn print_report(r: &Report) {
    println!("== {} ==", r.target);
    println!(
        "  {} requests over {} connections in {:.2} s: {:.0} req/s",
        r.requests, r.connections, r.elapsed_secs, r.throughput_per_sec
    );
    println!(
        "  latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99, r.latency_ms.max
    );
    if r.target.starts_with("reserve") {
        println!(
            "  confirmed {}  rejected {}  errors {}  timeouts {}",
            r.confirmed, r.rejected, r.errors, r.timeouts
        );
        let mut reasons: Vec<_> = r.rejection_reasons.iter().collect();
        reasons.sort();
        println!("  rejections: {reasons:?}");
        println!(
            "  seats sold {} of {} (sold out: {})  duplicate seats: {}  server says available: {}",
            r.seats_sold,
            r.capacity,
            r.sold_out,
            r.duplicate_seats,
            r.server_available
                .map(|a| a.to_string())
                .unwrap_or_else(|| "?".into())
        );
        if let Some(ms) = r.server_count_settled_ms {
            println!("  the server's count trailed the last answer: read again for {ms} ms");
        }
        if let Some(c) = &r.checkout {
            println!(
                "  holds of {} s: held {}  confirmed {} (ratio {})  confirmed too late {}  left to expire {}",
                c.hold_seconds,
                c.held,
                c.confirmed,
                c.confirm_ratio,
                c.confirm_too_late,
                c.left_to_expire
            );
            println!(
                "  expired {}  not expired {}  seats sold again after an expiry {}",
                c.expired, c.not_expired, c.resold_seats
            );
            println!(
                "  expiry lag ms (expiredAt - expiresAt): p50 {:.0}  p95 {:.0}  p99 {:.0}  max {:.0}",
                c.expiry_lag_ms.p50, c.expiry_lag_ms.p95, c.expiry_lag_ms.p99, c.expiry_lag_ms.max
            );
        }
        if let Some(a) = &r.abusive {
            println!(
                "  abusive clients {}: {} requests ({} while the sale ran), {} rate-limited (429), \
                 {} accepted, {} other",
                a.clients, a.requests, a.requests_during_sale, a.rate_limited, a.accepted, a.other
            );
        }
        if let Some(s) = &r.subscribers {
            let mb = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.1}"));
            // `--server-pid` alone measures the server, with no subscriber to report on.
            if s.subscribers > 0 {
                println!(
                    "  availability subscribers {}: {} connected, {} failed, {} messages after the snapshots",
                    s.subscribers, s.connected, s.failed, s.messages
                );
                println!(
                    "  delivery delay ms (arrival - changedAt): p50 {:.0}  p95 {:.0}  p99 {:.0}  max {:.0}",
                    s.delay_ms.p50, s.delay_ms.p95, s.delay_ms.p99, s.delay_ms.max
                );
                println!(
                    "  server RSS MB before {} connected {} ({} KB per subscriber), CPU s during the sale {}",
                    mb(s.server_rss_before_mb),
                    mb(s.server_rss_connected_mb),
                    mb(s.rss_per_subscriber_kb),
                    mb(s.server_cpu_secs_during_sale)
                );
            } else {
                println!(
                    "  server RSS MB before the sale {}, CPU s during the sale {}",
                    mb(s.server_rss_before_mb),
                    mb(s.server_cpu_secs_during_sale)
                );
            }
            for sample in &s.error_samples {
                println!("  subscriber error sample: {sample}");
            }
        }
        if let Some(w) = &r.waitlist {
            println!(
                "  waitlist: waitlisted {}  promoted {}  still waiting {}  ({} rounds of polling)",
                w.waitlisted, w.promoted, w.still_waiting, w.rounds
            );
            println!(
                "  promotions out of order {}  lost {}  one-seat requests stranded beside a free seat {}",
                w.out_of_order, w.lost, w.stranded
            );
        }
        println!("  verified: {}", r.verified());
    } else {
        println!("  errors {}", r.errors);
    }
    for sample in &r.error_samples {
        println!("  error sample: {sample}");
    }
}
