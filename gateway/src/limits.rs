//! Rate limits: token buckets per user and per client address, one pair for reservation
//! writes (`POST`/`DELETE` under `/api`) and one for reads (`GET`), checked on every `/api`
//! request after its caller is known. Over a limit: 429 with `Retry-After` and the JSON error
//! body, before any work is done for the request.
//!
//! The buckets live in this gateway's memory (per instance, not shared): a shared limiter would
//! put a Redis round trip in front of every request of an on-sale, and a client's requests reach
//! a few instances at most, so the bound it sees is the per-instance rate times the instances
//! its requests land on. The maps are bounded: idle buckets are swept, and when a map is full
//! a new key waits for the sweep (it is limited as if it were the busiest, never let through).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::auth::addresses::Proxies;

/// One rate: `per_sec` on average, bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Rate {
    const fn new(per_sec: f64, burst: f64) -> Self {
        Self { per_sec, burst }
    }
}

/// The `[limits]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Check the limits at all.
    pub enabled: bool,
    /// Reservation writes (reserve, confirm, cancel, create an event) per user.
    pub user_writes: Rate,
    /// Reads per user.
    pub user_reads: Rate,
    /// Writes per client address (many users may share one: a venue's Wi-Fi, a carrier NAT).
    pub address_writes: Rate,
    /// Reads per client address.
    pub address_reads: Rate,
    /// Events one organizer may create per hour (without authentication: per client address).
    pub events_per_organizer_per_hour: u32,
    /// Client addresses (or CIDR ranges) no address limit applies to; by default this machine,
    /// so that `seatflow bench` on the same host measures the server, not the limiter.
    pub exempt: Vec<String>,
    /// Most buckets kept per kind (memory bound; ~100 bytes each).
    pub max_tracked: usize,
    /// A client over a limit gets its 429 only after the time it should have waited, up to
    /// this many milliseconds (0: at once). A bot that ignores `Retry-After` and asks again the
    /// moment it is answered is held to about the rate itself on each connection, instead of
    /// making the gateway answer tens of thousands of 429s a second (measured in
    /// docs/BENCHMARK.md); a client that honours `Retry-After` waits no longer than it would
    /// have anyway.
    pub refusal_delay_max_ms: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            // A person reserves, maybe retries, confirms: a write a second with a burst of five
            // is plenty; a bot asks thousands. Measured (docs/BENCHMARK.md): at 5/s, 1,000 bot
            // accounts still took the box from the buyers; at 1/s they did not.
            user_writes: Rate::new(1.0, 5.0),
            user_reads: Rate::new(20.0, 40.0),
            address_writes: Rate::new(100.0, 200.0),
            address_reads: Rate::new(400.0, 800.0),
            events_per_organizer_per_hour: 100,
            exempt: vec!["127.0.0.0/8".into(), "::1".into()],
            max_tracked: 1_000_000,
            refusal_delay_max_ms: 1_000,
        }
    }
}

impl LimitSettings {
    /// What is wrong with these settings, in words naming the setting.
    pub fn check(&self) -> Result<(), String> {
        for (name, rate) in [
            ("limits.user_writes", self.user_writes),
            ("limits.user_reads", self.user_reads),
            ("limits.address_writes", self.address_writes),
            ("limits.address_reads", self.address_reads),
        ] {
            if !(rate.per_sec > 0.0 && rate.per_sec.is_finite() && rate.burst >= 1.0) {
                return Err(format!(
                    "{name} needs per_sec > 0 and burst >= 1 (got {} and {})",
                    rate.per_sec, rate.burst
                ));
            }
        }
        if self.events_per_organizer_per_hour == 0 {
            return Err("limits.events_per_organizer_per_hour must be at least 1".into());
        }
        if self.refusal_delay_max_ms > 60_000 {
            return Err("limits.refusal_delay_max_ms must be at most 60000".into());
        }
        if self.max_tracked < 1_000 {
            return Err("limits.max_tracked must be at least 1000".into());
        }
        Proxies::parse(&self.exempt)
            .map_err(|e| e.replace("auth.trusted_proxies", "limits.exempt"))?;
        Ok(())
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets of one kind, by key.
#[derive(Debug)]
struct Buckets<K: std::hash::Hash + Eq> {
    rate: Rate,
    map: DashMap<K, Bucket>,
    most: usize,
}

impl<K: std::hash::Hash + Eq> Buckets<K> {
    fn new(rate: Rate, most: usize) -> Self {
        Self {
            rate,
            map: DashMap::new(),
            most,
        }
    }

    /// Take a token for `key`: None when allowed, or how long until the next token. A key
    /// seen before costs no allocation.
    fn take<Q>(&self, key: &Q, now: Instant) -> Option<Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(mut bucket) = self.map.get_mut(key) {
            return self.take_from(&mut bucket, now);
        }
        if self.map.len() >= self.most {
            // Full: a new key is not let through unlimited; the sweep makes room.
            return Some(Duration::from_secs(1));
        }
        let mut bucket = self.map.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.rate.burst,
            at: now,
        });
        self.take_from(&mut bucket, now)
    }

    fn take_from(&self, bucket: &mut Bucket, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate.per_sec).min(self.rate.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.rate.per_sec,
            ))
        }
    }

    /// Forget the buckets that are full again (idle long enough to refill).
    fn sweep(&self, now: Instant) {
        let refill = Duration::from_secs_f64(self.rate.burst / self.rate.per_sec);
        self.map
            .retain(|_, bucket| now.saturating_duration_since(bucket.at) < refill);
    }
}

/// What a request is, for its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Write,
    Read,
}

/// Every bucket of this gateway.
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    user_writes: Buckets<String>,
    user_reads: Buckets<String>,
    address_writes: Buckets<IpAddr>,
    address_reads: Buckets<IpAddr>,
    organizer_events: Buckets<String>,
    address_events: Buckets<IpAddr>,
    exempt: Proxies,
    refusal_delay_max: Duration,
}

impl Limiter {
    /// The limiter of `settings` (none when disabled). Call [`Limiter::spawn_sweep`] on a
    /// runtime to keep its memory bounded.
    pub fn new(settings: &LimitSettings) -> Result<Self, String> {
        settings.check()?;
        if !settings.enabled {
            return Ok(Self::off());
        }
        let most = settings.max_tracked;
        let hourly = f64::from(settings.events_per_organizer_per_hour);
        let events = Rate::new(hourly / 3600.0, hourly);
        Ok(Self {
            inner: Some(Arc::new(Inner {
                user_writes: Buckets::new(settings.user_writes, most),
                user_reads: Buckets::new(settings.user_reads, most),
                address_writes: Buckets::new(settings.address_writes, most),
                address_reads: Buckets::new(settings.address_reads, most),
                organizer_events: Buckets::new(events, most),
                address_events: Buckets::new(events, most),
                exempt: Proxies::parse(&settings.exempt)?,
                refusal_delay_max: Duration::from_millis(settings.refusal_delay_max_ms),
            })),
        })
    }

    /// No limits.
    pub fn off() -> Self {
        Self { inner: None }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// How long a refusal of a client that should wait `wait` is held back before it is sent.
    pub fn refusal_delay(&self, wait: Duration) -> Duration {
        self.inner
            .as_ref()
            .map_or(Duration::ZERO, |inner| wait.min(inner.refusal_delay_max))
    }

    /// Sweep idle buckets every few seconds, for as long as the limiter lives.
    pub fn spawn_sweep(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        let weak = Arc::downgrade(inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let now = Instant::now();
                inner.user_writes.sweep(now);
                inner.user_reads.sweep(now);
                inner.address_writes.sweep(now);
                inner.address_reads.sweep(now);
                inner.organizer_events.sweep(now);
                inner.address_events.sweep(now);
            }
        });
    }

    /// Take a token for a request of `kind` from the client at `address`: None when allowed,
    /// or how long to wait (`Retry-After`). Checked before the caller is authenticated, so that
    /// a flood of bad tokens costs no signature checks.
    pub fn check_address(&self, kind: Kind, address: Option<IpAddr>) -> Option<Duration> {
        let inner = self.inner.as_ref()?;
        let address = address.filter(|a| !inner.exempt.trusts(*a))?;
        let addresses = match kind {
            Kind::Write => &inner.address_writes,
            Kind::Read => &inner.address_reads,
        };
        addresses.take(&address, Instant::now())
    }

    /// Take a token for a new event by `organizer` (when authenticated) or from `address`.
    pub fn check_new_event(
        &self,
        organizer: Option<&str>,
        address: Option<IpAddr>,
    ) -> Option<Duration> {
        let inner = self.inner.as_ref()?;
        match organizer {
            Some(organizer) => inner.organizer_events.take(organizer, Instant::now()),
            None => {
                let address = address.filter(|a| !inner.exempt.trusts(*a))?;
                inner.address_events.take(&address, Instant::now())
            }
        }
    }

    /// Take a token for a request of `kind` from `user`.
    pub fn check_user(&self, kind: Kind, user: &str) -> Option<Duration> {
        let inner = self.inner.as_ref()?;
        let users = match kind {
            Kind::Write => &inner.user_writes,
            Kind::Read => &inner.user_reads,
        };
        users.take(user, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(user_writes: Rate) -> Limiter {
        Limiter::new(&LimitSettings {
            user_writes,
            address_writes: Rate::new(3.0, 3.0),
            exempt: vec!["127.0.0.1".into()],
            ..LimitSettings::default()
        })
        .expect("valid")
    }

    #[test]
    fn a_user_gets_the_burst_then_the_rate() {
        let limiter = limiter(Rate::new(2.0, 4.0));
        let allowed = (0..10)
            .filter(|_| limiter.check_user(Kind::Write, "ann").is_none())
            .count();
        assert_eq!(allowed, 4, "the burst");
        let wait = limiter.check_user(Kind::Write, "ann").expect("over");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        // Another user and reads have their own buckets.
        assert!(limiter.check_user(Kind::Write, "bob").is_none());
        assert!(limiter.check_user(Kind::Read, "ann").is_none());
        std::thread::sleep(Duration::from_millis(550));
        assert!(limiter.check_user(Kind::Write, "ann").is_none(), "refilled");
    }

    #[test]
    fn an_address_is_limited_unless_exempt() {
        let limiter = limiter(Rate::new(100.0, 100.0));
        let address: IpAddr = "203.0.113.7".parse().expect("ip");
        let allowed = (0..10)
            .filter(|_| limiter.check_address(Kind::Write, Some(address)).is_none())
            .count();
        assert_eq!(allowed, 3);
        assert!(limiter.check_address(Kind::Read, Some(address)).is_none());
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        assert!((0..10).all(|_| limiter.check_address(Kind::Write, Some(local)).is_none()));
    }

    #[test]
    fn idle_buckets_are_forgotten_and_the_maps_stay_bounded() {
        let buckets = Buckets::<u32>::new(Rate::new(1000.0, 1.0), 2);
        let now = Instant::now();
        assert!(buckets.take(&1, now).is_none());
        assert!(buckets.take(&2, now).is_none());
        assert!(buckets.take(&3, now).is_some(), "full: a new key waits");
        buckets.sweep(now + Duration::from_millis(5));
        assert_eq!(buckets.map.len(), 0);
        assert!(buckets.take(&3, now + Duration::from_millis(5)).is_none());
    }

    #[test]
    fn bad_rates_are_named() {
        let bad = LimitSettings {
            user_reads: Rate::new(0.0, 1.0),
            ..LimitSettings::default()
        };
        assert!(
            bad.check()
                .expect_err("refused")
                .contains("limits.user_reads")
        );
    }
}
