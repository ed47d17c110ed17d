//! `seatflow bench --waitlist`: the client side of a waitlist, and its verification.
//!
//! Every request of the sale asks to wait. Once the sale is over, the client follows its
//! WAITLISTED reservations the way a buyer's app would: it polls them, and when one is promoted
//! (HELD with a fresh hold) it confirms it or leaves it to expire (`--confirm-ratio`), which gives
//! the seats to the next in line. It stops when nothing is held any more and a last look found
//! no new promotion. Then it checks what the server promised:
//! - **in order**: for two waiting requests of a section, the earlier one asking for no more
//!   seats than the later one, the later one is never promoted while the earlier one still
//!   waits (whatever fits the later request fits the earlier one);
//! - **none lost**: every waiting request reads back as WAITLISTED or promoted (HELD,
//!   CONFIRMED, EXPIRED), and no one-seat request is left waiting in a section with a free seat.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{Outcome, Tally, Target, connect, millis_of, send_as};

/// A request the sale answered WAITLISTED.
#[derive(Debug, Clone)]
pub(super) struct Waiter {
    pub reservation_id: String,
    pub user: String,
    pub section: u32,
    pub seats: u32,
    /// Its place in the section's waitlist.
    pub place: i64,
    /// When the server waitlisted it (ms): places start again at 1 in a section whose waitlist
    /// emptied, so the order is (waitlisted at, place).
    pub waitlisted_at: i64,
}

/// What became of one waiting request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Waiting,
    /// Given seats; when (ms, the server's clock) if it was seen HELD.
    Promoted(Option<i64>),
    /// Read back as anything else: a request the server lost.
    Lost,
}

/// The waitlist part of a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WaitlistReport {
    /// Requests answered WAITLISTED.
    pub waitlisted: u64,
    /// Of those, given seats when seats came back.
    pub promoted: u64,
    /// Still waiting at the end (the seats that came back did not reach them).
    pub still_waiting: u64,
    /// Promotions that overtook an earlier request that asked for no more seats: a failure.
    pub out_of_order: u64,
    /// Waiting requests read back as neither waiting nor promoted: a failure.
    pub lost: u64,
    /// One-seat requests still waiting in a section with a free seat at the end: a failure.
    pub stranded: u64,
    /// Rounds the client polled its waiting requests.
    pub rounds: u32,
}

/// Everything the follow-up saw.
pub(super) struct Followed {
    pub report: WaitlistReport,
    /// Confirmations and holds left alone, as the sale's tallies count them.
    pub tallies: Vec<Tally>,
    fates: Vec<Fate>,
}

/// Follow the waiting requests until nothing is held and no new promotion comes.
/// `holds_end`: when the last hold of the sale itself ends (their expiries feed the waitlist).
pub(super) async fn follow(
    target: &Arc<Target>,
    connections: u32,
    hold_seconds: u32,
    confirm_ratio: f64,
    waiters: Arc<Vec<Waiter>>,
    mut holds_end: Option<SystemTime>,
) -> anyhow::Result<Followed> {
    let mut fates = vec![Fate::Waiting; waiters.len()];
    let mut tallies = Vec::new();
    let mut rounds = 0u32;
    // Far beyond any sane cascade of holds; a server that keeps promoting forever is reported
    // as still waiting, not waited for.
    let give_up = Instant::now() + Duration::from_secs(600);
    let hold_ms = i64::from(hold_seconds) * 1_000;
    loop {
        let started = Instant::now();
        let waiting: Vec<usize> = (0..fates.len())
            .filter(|&i| fates[i] == Fate::Waiting)
            .collect();
        if waiting.is_empty() {
            break;
        }
        rounds += 1;
        let seen = poll(
            target,
            connections,
            confirm_ratio,
            &waiters,
            waiting,
            hold_ms,
        )
        .await?;
        let mut new_promotions = 0usize;
        for (i, fate, expires_at, tally) in seen {
            if matches!(fate, Fate::Promoted(_)) {
                new_promotions += 1;
            }
            if let Some(end) = expires_at {
                holds_end = holds_end.max(Some(end));
            }
            fates[i] = fate;
            if let Some(tally) = tally {
                tallies.push(tally);
            }
        }
        let settled = holds_end.is_none_or(|end| SystemTime::now() > end + Duration::from_secs(2));
        eprintln!(
            "[waitlist] round {rounds}: {new_promotions} promoted, {} still waiting",
            fates.iter().filter(|f| **f == Fate::Waiting).count()
        );
        if (new_promotions == 0 && settled) || Instant::now() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500).saturating_sub(started.elapsed())).await;
    }
    let report = WaitlistReport {
        waitlisted: waiters.len() as u64,
        promoted: count(&fates, |f| matches!(f, Fate::Promoted(_))),
        still_waiting: count(&fates, |f| *f == Fate::Waiting),
        out_of_order: out_of_order(&waiters, &fates),
        lost: count(&fates, |f| *f == Fate::Lost),
        stranded: 0,
        rounds,
    };
    Ok(Followed {
        report,
        tallies,
        fates,
    })
}

impl Followed {
    /// Count the one-seat requests left waiting in a section the server says has a free seat.
    pub fn check_stranded(&mut self, waiters: &[Waiter], available: &HashMap<u32, u64>) {
        self.report.stranded = waiters
            .iter()
            .zip(&self.fates)
            .filter(|(w, fate)| {
                **fate == Fate::Waiting
                    && w.seats == 1
                    && available.get(&w.section).is_some_and(|free| *free > 0)
            })
            .count() as u64;
    }
}

fn count(fates: &[Fate], which: impl Fn(&Fate) -> bool) -> u64 {
    fates.iter().filter(|f| which(f)).count() as u64
}

/// One look at each waiting request over up to 64 connections: what it became, when a hold
/// it got ends, and the tally of the confirmations made.
async fn poll(
    target: &Arc<Target>,
    connections: u32,
    confirm_ratio: f64,
    waiters: &Arc<Vec<Waiter>>,
    waiting: Vec<usize>,
    hold_ms: i64,
) -> anyhow::Result<Vec<(usize, Fate, Option<SystemTime>, Option<Tally>)>> {
    let waiting = Arc::new(waiting);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.clamp(1, 64) {
        let (target, waiters, waiting, next) = (
            target.clone(),
            waiters.clone(),
            waiting.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&target).await?;
            let mut rng = rand::rngs::SmallRng::from_os_rng();
            let mut tally = Tally::default();
            let mut seen = Vec::new();
            while let Some(&i) = waiting.get(next.fetch_add(1, Ordering::Relaxed)) {
                let waiter = &waiters[i];
                let path = format!("/api/reservations/{}", waiter.reservation_id);
                let (status, bytes) =
                    send_as(&mut sender, &target, "GET", &path, &waiter.user).await?;
                let outcome = serde_json::from_slice::<Outcome>(&bytes).ok();
                let (fate, expires_at) = match outcome {
                    Some(o) if status == 200 && o.status == "WAITLISTED" => (Fate::Waiting, None),
                    Some(o) if status == 200 && o.status == "HELD" => {
                        let end = o.expires_at.as_deref().and_then(millis_of);
                        let at = end.map(|end| end - hold_ms);
                        let ends = end.map(|end| {
                            SystemTime::UNIX_EPOCH + Duration::from_millis(end.max(0) as u64)
                        });
                        let confirm = rng.random_bool(confirm_ratio);
                        tally.held += 1;
                        tally
                            .held_seats
                            .extend(o.seats.iter().map(|s| (waiter.section, s.row, s.seat)));
                        tally
                            .settle_hold(
                                &mut sender,
                                &target,
                                o,
                                &waiter.user,
                                waiter.section,
                                confirm,
                            )
                            .await;
                        (Fate::Promoted(at), ends)
                    }
                    // Promoted and already confirmed or expired before this look.
                    Some(o)
                        if status == 200 && (o.status == "CONFIRMED" || o.status == "EXPIRED") =>
                    {
                        (Fate::Promoted(None), None)
                    }
                    _ => {
                        tally.error(format!(
                            "waiting request {} read back as HTTP {status}: {}",
                            waiter.reservation_id,
                            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                        ));
                        (Fate::Lost, None)
                    }
                };
                seen.push((i, fate, expires_at));
            }
            anyhow::Ok((seen, tally))
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let (seen, tally) = task.await??;
        let mut tally = Some(tally);
        for (i, fate, expires_at) in seen {
            all.push((i, fate, expires_at, tally.take()));
        }
    }
    Ok(all)
}

/// Promotions that overtook a request waiting before them in their section that asked for no
/// more seats: it was not promoted at all, or promoted later.
fn out_of_order(waiters: &[Waiter], fates: &[Fate]) -> u64 {
    let mut by_section: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, w) in waiters.iter().enumerate() {
        by_section.entry(w.section).or_default().push(i);
    }
    let mut overtaken = 0;
    for line in by_section.values_mut() {
        line.sort_by_key(|&i| (waiters[i].waitlisted_at, waiters[i].place));
        let most = line.iter().map(|&i| waiters[i].seats).max().unwrap_or(0) as usize;
        // For each seat count k, among the requests seen so far asking for k seats: whether one
        // is still waiting, and the latest promotion time.
        let mut still_waiting = vec![false; most + 1];
        let mut latest = vec![i64::MIN; most + 1];
        for &i in line.iter() {
            let k = waiters[i].seats as usize;
            if let Fate::Promoted(at) = fates[i] {
                let earlier_waits = still_waiting[..=k].iter().any(|w| *w);
                let earlier_later = at.is_some_and(|at| latest[..=k].iter().any(|l| *l > at));
                if earlier_waits || earlier_later {
                    overtaken += 1;
                }
                if let Some(at) = at {
                    latest[k] = latest[k].max(at);
                }
            } else {
                still_waiting[k] = true;
            }
        }
    }
    overtaken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(section: u32, seats: u32, place: i64) -> Waiter {
        Waiter {
            reservation_id: format!("r{section}-{place}"),
            user: "u".into(),
            section,
            seats,
            place,
            waitlisted_at: 1_000,
        }
    }

    #[test]
    fn promotions_that_follow_the_line_are_in_order() {
        let waiters = [
            waiter(0, 2, 1),
            waiter(0, 4, 2),
            waiter(0, 1, 3),
            waiter(1, 1, 1),
        ];
        // The four-seat request did not fit, the one-seat request behind it did: allowed.
        let fates = [
            Fate::Promoted(Some(10)),
            Fate::Waiting,
            Fate::Promoted(Some(10)),
            Fate::Waiting,
        ];
        assert_eq!(out_of_order(&waiters, &fates), 0);
    }

    #[test]
    fn a_promotion_past_a_smaller_earlier_request_is_counted() {
        let waiters = [waiter(0, 1, 1), waiter(0, 2, 2), waiter(0, 2, 3)];
        let skipped = [Fate::Waiting, Fate::Promoted(Some(10)), Fate::Waiting];
        assert_eq!(out_of_order(&waiters, &skipped), 1);
        let later = [
            Fate::Promoted(Some(20)),
            Fate::Promoted(Some(10)),
            Fate::Waiting,
        ];
        assert_eq!(out_of_order(&waiters, &later), 1);
        let unknown_time = [
            Fate::Promoted(None),
            Fate::Promoted(Some(10)),
            Fate::Waiting,
        ];
        assert_eq!(out_of_order(&waiters, &unknown_time), 0);
    }

    #[test]
    fn the_line_is_by_waiting_time_then_place() {
        // The section's waitlist emptied and its places started again at 1.
        let mut again = waiter(0, 1, 1);
        again.waitlisted_at = 2_000;
        let waiters = [waiter(0, 1, 5), again];
        let fates = [Fate::Promoted(Some(10)), Fate::Waiting];
        assert_eq!(out_of_order(&waiters, &fates), 0);
    }
}
