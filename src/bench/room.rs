//! `seatflow bench --waiting-room`: an on-sale behind a waiting room, from the buyers' side.
//!
//! Creates an event whose sale opens `--join-secs` + 5 s from now behind a room
//! (`--admit-per-minute`, `--max-active`). `--requests` buyers join in a burst over
//! `--connections` connections (join throughput and latency), then each connection cycles over
//! its buyers the way their apps would: it polls each ticket (`GET .../queue/{ticketId}`), and a
//! buyer found ADMITTED reserves once with the admission token. It runs `--room-secs` after the
//! on-sale, then reports the admissions per minute against the configured rate (read from the
//! tickets: when each was admitted), the reservation requests per second the server saw (the
//! point of a room: a flat line instead of the spike of `seatflow bench` without one), and
//! checks that no reservation went through without an admission.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{BenchArgs, Target, connect, millis_of, send_with};

/// What the waiting-room run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RoomReport {
    pub buyers: u64,
    pub connections: u32,
    /// Joins a second during the burst, and their latency.
    pub join_per_sec: f64,
    pub join_p50_ms: f64,
    pub join_p99_ms: f64,
    pub join_errors: u64,
    pub admit_per_minute: u32,
    pub max_active: Option<u32>,
    /// Admissions in each whole minute after the on-sale (from the tickets' admission times).
    pub admitted_per_minute: Vec<u64>,
    /// The largest gap between a whole minute's admissions and the rate, in percent.
    pub worst_minute_deviation_pct: Option<f64>,
    pub admitted: u64,
    /// Reservation requests the buyers sent in each second after the on-sale.
    pub reservations_per_sec: Vec<u64>,
    pub reserved: u64,
    /// Reservations refused for their admission (403): should be none.
    pub refused_admissions: u64,
    /// Polls of tickets (GET) during the run, and their P99.
    pub polls: u64,
    pub poll_p99_ms: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TicketOut {
    ticket_id: String,
    status: String,
    admission_token: Option<String>,
    admitted_until: Option<String>,
}

/// One buyer as its connection follows it.
struct Buyer {
    user: String,
    ticket: String,
    /// When it was admitted (ms), once seen ADMITTED.
    admitted_at: Option<i64>,
    done: bool,
}

const SESSION_SECONDS: i64 = 600;

pub(super) async fn run(target: Arc<Target>, args: &BenchArgs) -> anyhow::Result<RoomReport> {
    let on_sale_in = Duration::from_secs(args.join_secs + 5);
    let on_sale = SystemTime::now() + on_sale_in;
    let on_sale_ms = on_sale.duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let event_id = create_event(&target, args, on_sale).await?;
    eprintln!(
        "waiting room: {} buyers join over {} connections; the sale opens in {:?}",
        args.requests, args.connections, on_sale_in
    );

    // The burst: every buyer joins, as fast as the connections go.
    let started = Instant::now();
    let mut joins = tokio::task::JoinSet::new();
    for connection in 0..args.connections {
        let target = target.clone();
        let event_id = event_id.clone();
        let users: Vec<String> = (0..args.requests)
            .filter(|n| n % u64::from(args.connections) == u64::from(connection))
            .map(|n| format!("room-buyer-{n}"))
            .collect();
        joins.spawn(async move { join_all(&target, &event_id, users).await });
    }
    let mut buyers_by_connection = Vec::new();
    let mut join_latency = Histogram::<u64>::new(3)?;
    let mut join_errors = 0;
    while let Some(joined) = joins.join_next().await {
        let (buyers, latency, errors) = joined??;
        buyers_by_connection.push(buyers);
        join_latency.add(latency)?;
        join_errors += errors;
    }
    let join_elapsed = started.elapsed();
    let joined: u64 = buyers_by_connection.iter().map(|b| b.len() as u64).sum();
    eprintln!(
        "joined {joined} in {:.1} s; following the tickets for {} s after the on-sale",
        join_elapsed.as_secs_f64(),
        args.room_secs
    );

    // After the sale opens: poll, and reserve once admitted.
    let seconds = usize::try_from(args.room_secs + 2)?;
    let reserve_counts: Arc<Vec<AtomicU64>> =
        Arc::new((0..seconds).map(|_| AtomicU64::new(0)).collect());
    let until = SystemTime::now()
        + on_sale_in.saturating_sub(started.elapsed())
        + Duration::from_secs(args.room_secs);
    let mut follows = tokio::task::JoinSet::new();
    for buyers in buyers_by_connection {
        let target = target.clone();
        let event_id = event_id.clone();
        let counts = reserve_counts.clone();
        let sections = args.sections;
        follows.spawn(async move {
            follow(
                &target, &event_id, buyers, on_sale_ms, until, counts, sections,
            )
            .await
        });
    }
    let mut admitted_at = Vec::new();
    let mut poll_latency = Histogram::<u64>::new(3)?;
    let (mut reserved, mut refused) = (0, 0);
    while let Some(followed) = follows.join_next().await {
        let followed = followed??;
        admitted_at.extend(followed.admitted_at);
        poll_latency.add(followed.polls)?;
        reserved += followed.reserved;
        refused += followed.refused;
    }

    let minutes = args.room_secs / 60;
    let mut admitted_per_minute = vec![0u64; usize::try_from(minutes)?];
    for at in &admitted_at {
        let minute = (at - on_sale_ms) / 60_000;
        if let Some(count) = usize::try_from(minute)
            .ok()
            .and_then(|m| admitted_per_minute.get_mut(m))
        {
            *count += 1;
        }
    }
    let rate = f64::from(args.admit_per_minute);
    let worst = admitted_per_minute
        .iter()
        .map(|count| ((*count as f64 - rate) / rate * 100.0).abs())
        .fold(None, |worst: Option<f64>, gap| {
            Some(worst.map_or(gap, |w| w.max(gap)))
        });
    Ok(RoomReport {
        buyers: args.requests,
        connections: args.connections,
        join_per_sec: joined as f64 / join_elapsed.as_secs_f64(),
        join_p50_ms: join_latency.value_at_quantile(0.5) as f64 / 1_000.0,
        join_p99_ms: join_latency.value_at_quantile(0.99) as f64 / 1_000.0,
        join_errors,
        admit_per_minute: args.admit_per_minute,
        max_active: args.max_active,
        admitted_per_minute,
        worst_minute_deviation_pct: worst,
        admitted: admitted_at.len() as u64,
        reservations_per_sec: reserve_counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect(),
        reserved,
        refused_admissions: refused,
        polls: poll_latency.len(),
        poll_p99_ms: poll_latency.value_at_quantile(0.99) as f64 / 1_000.0,
    })
}

async fn create_event(
    target: &Target,
    args: &BenchArgs,
    on_sale: SystemTime,
) -> anyhow::Result<String> {
    let sections: Vec<serde_json::Value> = (0..args.sections)
        .map(|i| {
            serde_json::json!({"section": format!("S{i:03}"), "rows": args.rows,
                "seatsPerRow": args.seats_per_row})
        })
        .collect();
    let mut room = serde_json::json!({"admitPerMinute": args.admit_per_minute,
        "sessionSeconds": SESSION_SECONDS});
    if let Some(most) = args.max_active {
        room["maxActive"] = most.into();
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "name": "seatflow bench waiting room",
        "onSaleAt": humantime::format_rfc3339_millis(on_sale).to_string(),
        "waitingRoom": room,
        "sections": sections,
    }))?;
    super::post_event(target, body).await
}

async fn join_all(
    target: &Target,
    event_id: &str,
    users: Vec<String>,
) -> anyhow::Result<(Vec<Buyer>, Histogram<u64>, u64)> {
    let mut sender = connect(target).await?;
    let mut latency = Histogram::<u64>::new(3)?;
    let mut buyers = Vec::with_capacity(users.len());
    let mut errors = 0;
    let path = format!("/api/events/{event_id}/queue");
    for user in users {
        let sent = Instant::now();
        let (status, bytes) =
            send_with(&mut sender, target, "POST", &path, None, Some(&user)).await?;
        latency.record(sent.elapsed().as_micros() as u64)?;
        match (status, serde_json::from_slice::<TicketOut>(&bytes)) {
            (201, Ok(ticket)) => buyers.push(Buyer {
                user,
                ticket: ticket.ticket_id,
                admitted_at: None,
                done: false,
            }),
            _ => errors += 1,
        }
    }
    Ok((buyers, latency, errors))
}

struct Followed {
    admitted_at: Vec<i64>,
    polls: Histogram<u64>,
    reserved: u64,
    refused: u64,
}

/// Poll this connection's buyers until `until`; reserve for each once it is admitted.
async fn follow(
    target: &Target,
    event_id: &str,
    mut buyers: Vec<Buyer>,
    on_sale_ms: i64,
    until: SystemTime,
    reserve_counts: Arc<Vec<AtomicU64>>,
    sections: u32,
) -> anyhow::Result<Followed> {
    let mut sender = connect(target).await?;
    let mut followed = Followed {
        admitted_at: Vec::new(),
        polls: Histogram::<u64>::new(3)?,
        reserved: 0,
        refused: 0,
    };
    // Buyers wait for the sale as a page would: not polling before it opens.
    if let Ok(wait) =
        (UNIX_EPOCH + Duration::from_millis(on_sale_ms as u64)).duration_since(SystemTime::now())
    {
        tokio::time::sleep(wait).await;
    }
    let mut next = 0;
    let count = buyers.len();
    while SystemTime::now() < until && buyers.iter().any(|b| !b.done) {
        let buyer = &mut buyers[next % count];
        next += 1;
        if buyer.done {
            continue;
        }
        let path = format!("/api/events/{event_id}/queue/{}", buyer.ticket);
        let sent = Instant::now();
        let (status, bytes) =
            send_with(&mut sender, target, "GET", &path, None, Some(&buyer.user)).await?;
        followed.polls.record(sent.elapsed().as_micros() as u64)?;
        let Ok(ticket) = serde_json::from_slice::<TicketOut>(&bytes) else {
            continue;
        };
        if status != 200 || ticket.status != "ADMITTED" {
            buyer.done = ticket.status == "ENDED";
            continue;
        }
        if buyer.admitted_at.is_none() {
            let until = ticket.admitted_until.as_deref().and_then(millis_of);
            buyer.admitted_at = until.map(|until| until - SESSION_SECONDS * 1_000);
            followed.admitted_at.extend(buyer.admitted_at);
        }
        let second =
            (SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64 - on_sale_ms) / 1_000;
        if let Some(count) = usize::try_from(second)
            .ok()
            .and_then(|s| reserve_counts.get(s))
        {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let section = (next as u32) % sections;
        let body = format!(
            r#"{{"eventId":"{event_id}","section":"S{section:03}","userId":"{}","seatCount":1}}"#,
            buyer.user
        );
        let token = ticket.admission_token.unwrap_or_default();
        let (status, _) = super::send_admitted(
            &mut sender,
            target,
            "/api/reservations?wait=5000",
            body.into_bytes(),
            &buyer.user,
            &token,
        )
        .await?;
        match status {
            200 | 409 => followed.reserved += 1,
            403 => followed.refused += 1,
            _ => {}
        }
        buyer.done = true;
    }
    Ok(followed)
}
