//! `seatflow bench --abusive-clients N`: bots beside the sale's buyers.
//!
//! Each abusive client is one user on its own connection that asks for seats back to back, as
//! fast as the server answers, for as long as the polite sale runs (the report of the sale is the
//! polite clients' own). With `auth.mode = jwt` the server knows each bot as one user and its
//! per-user limit answers most of them 429; compare a run with the limits off to see what the
//! limits buy the polite clients (their P99 and how many got an answer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{Target, connect, send_with};

/// What the abusive clients got.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AbusiveReport {
    pub clients: u32,
    /// Requests they sent while the sale ran.
    pub requests: u64,
    /// Of those, refused with 429.
    pub rate_limited: u64,
    /// Of those, accepted or decided (2xx).
    pub accepted: u64,
    /// Anything else (409 sold out, errors).
    pub other: u64,
    /// Requests they sent while the polite sale ran (they start `--abusive-lead-secs` earlier).
    pub requests_during_sale: u64,
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    rate_limited: AtomicU64,
    accepted: AtomicU64,
    other: AtomicU64,
}

/// The running abusive clients; [`Abusers::stop`] ends them and says what they got.
pub(super) struct Abusers {
    clients: u32,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Requests sent when the polite sale began.
    at_sale_start: u64,
}

impl Abusers {
    /// Start `clients` abusive users on the event's `sections`.
    pub async fn start(
        target: &Arc<Target>,
        clients: u32,
        event_id: &str,
        sections: u32,
        max_seats: u32,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let mut tasks = Vec::with_capacity(clients as usize);
        for client in 0..clients {
            let mut sender = connect(target).await?;
            let (target, stop, counts) = (target.clone(), stop.clone(), counts.clone());
            let event_id = event_id.to_owned();
            tasks.push(tokio::spawn(async move {
                let user = format!("abuser-{client}");
                let mut rng = rand::rngs::SmallRng::from_os_rng();
                while !stop.load(Ordering::Relaxed) {
                    let section = rng.random_range(0..sections);
                    let count = rng.random_range(1..=max_seats);
                    let body = format!(
                        r#"{{"eventId":"{event_id}","section":"S{section:03}","userId":"{user}","seatCount":{count}}}"#
                    );
                    counts.requests.fetch_add(1, Ordering::Relaxed);
                    let answer = send_with(
                        &mut sender,
                        &target,
                        "POST",
                        "/api/reservations",
                        Some(body.into_bytes()),
                        Some(&user),
                    )
                    .await;
                    let counter = match answer {
                        Ok((429, _)) => &counts.rate_limited,
                        Ok((status, _)) if (200..300).contains(&status) => &counts.accepted,
                        Ok(_) => &counts.other,
                        Err(_) => {
                            counts.other.fetch_add(1, Ordering::Relaxed);
                            match connect(&target).await {
                                Ok(fresh) => sender = fresh,
                                Err(_) => return,
                            }
                            continue;
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        Ok(Self {
            clients,
            stop,
            counts,
            tasks,
            at_sale_start: 0,
        })
    }

    /// The polite sale begins now.
    pub fn sale_starts(&mut self) {
        self.at_sale_start = self.counts.requests.load(Ordering::Relaxed);
    }

    /// Stop them and count.
    pub async fn stop(self) -> AbusiveReport {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let requests = self.counts.requests.load(Ordering::Relaxed);
        AbusiveReport {
            clients: self.clients,
            requests,
            requests_during_sale: requests - self.at_sale_start,
            rate_limited: self.counts.rate_limited.load(Ordering::Relaxed),
            accepted: self.counts.accepted.load(Ordering::Relaxed),
            other: self.counts.other.load(Ordering::Relaxed),
        }
    }
}
