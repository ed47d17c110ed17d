//! De-duplication of retries (the seed's 2.4): the first reservation a user made for an event
//! section is remembered for a window (1 hour by default) under `userId:eventId:section`, and a
//! retry inside the window is answered with it instead of becoming a second reservation.
//! The same store answers `Idempotency-Key` headers, under `idem:userId:key`.
//!
//! [`DedupStore`] is what the command side needs; [`Dedup`] is the in-memory store (the embedded
//! runtime, and a gateway's fallback while Redis is down); the Redis store (`SET NX EX`) is
//! wired in by the binary when Redis is configured.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use seatflow_aggregates::{ReservationId, SectionKey};

/// The future a [`DedupStore`] answers with.
pub type DedupFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where de-duplication keys live. Never fails: a store that loses its backend answers from a
/// local fallback (and says so in its metrics), because a sale must not stop for a cache.
pub trait DedupStore: Send + Sync + std::fmt::Debug + 'static {
    /// The reservation holding `key`, if its window is still open.
    fn holder<'a>(&'a self, key: &'a str) -> DedupFuture<'a, Option<ReservationId>>;
    /// Take `key` for `id` unless a live entry holds it.
    fn claim<'a>(&'a self, key: &'a str, id: ReservationId) -> DedupFuture<'a, Claim>;
    /// Hand `key` from `previous` (which no longer holds seats) to `id`.
    fn replace<'a>(
        &'a self,
        key: &'a str,
        previous: ReservationId,
        id: ReservationId,
    ) -> DedupFuture<'a, ()>;
    /// Release `key` if `id` still holds it.
    fn forget<'a>(&'a self, key: &'a str, id: ReservationId) -> DedupFuture<'a, ()>;
}

/// Escape the separator so that `a:b` + `c` and `a` + `b:c` never make the same key.
fn key_part(part: &str) -> Cow<'_, str> {
    if part.contains([':', '%']) {
        Cow::Owned(part.replace('%', "%25").replace(':', "%3A"))
    } else {
        Cow::Borrowed(part)
    }
}

/// The in-memory store.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    entries: DashMap<String, (ReservationId, Instant)>,
}

/// The result of claiming a key for a new reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: submit the reservation.
    Claimed,
    /// Another reservation holds the key.
    Existing(ReservationId),
}

impl Dedup {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: DashMap::new(),
        }
    }

    /// `userId:eventId:section` (a `:` or `%` inside a part is percent-escaped).
    pub fn key(user_id: &str, section: &SectionKey) -> String {
        format!(
            "{}:{}:{}",
            key_part(user_id),
            key_part(&section.event_id),
            key_part(&section.section)
        )
    }

    /// `idem:userId:key`: an `Idempotency-Key` is the user's own, two users may pick the same.
    pub fn idempotency_key(user_id: &str, key: &str) -> String {
        format!("idem:{}:{}", key_part(user_id), key_part(key))
    }

    /// The reservation holding the key, if its window is still open.
    pub fn get(&self, key: &str) -> Option<ReservationId> {
        let entry = self.entries.get(key)?;
        let (id, at) = *entry;
        (at.elapsed() < self.window).then_some(id)
    }

    /// Atomically take the key for `id` unless a live entry holds it.
    pub fn claim(&self, key: &str, id: ReservationId) -> Claim {
        match self.entries.entry(key.to_owned()) {
            Entry::Occupied(mut occupied) => {
                let (existing, at) = *occupied.get();
                if at.elapsed() < self.window {
                    Claim::Existing(existing)
                } else {
                    occupied.insert((id, Instant::now()));
                    Claim::Claimed
                }
            }
            Entry::Vacant(vacant) => {
                vacant.insert((id, Instant::now()));
                Claim::Claimed
            }
        }
    }

    /// Note that `id` holds the key (claimed elsewhere, e.g. in Redis), replacing any holder.
    pub fn remember(&self, key: &str, id: ReservationId) {
        self.entries.insert(key.to_owned(), (id, Instant::now()));
    }

    /// Hand the key from a reservation that no longer holds seats to a new one.
    pub fn replace(&self, key: &str, previous: ReservationId, id: ReservationId) {
        if let Some(mut entry) = self.entries.get_mut(key)
            && entry.0 == previous
        {
            *entry = (id, Instant::now());
        }
    }

    /// Release the key if `id` still holds it (rejected, cancelled or failed reservations).
    pub fn forget(&self, key: &str, id: ReservationId) {
        self.entries.remove_if(key, |_, (holder, _)| *holder == id);
    }

    /// Drop expired entries (called periodically).
    pub fn sweep(&self) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, (_, at)| at.elapsed() < self.window);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl DedupStore for Dedup {
    fn holder<'a>(&'a self, key: &'a str) -> DedupFuture<'a, Option<ReservationId>> {
        let holder = self.get(key);
        Box::pin(async move { holder })
    }

    fn claim<'a>(&'a self, key: &'a str, id: ReservationId) -> DedupFuture<'a, Claim> {
        let claim = Dedup::claim(self, key, id);
        Box::pin(async move { claim })
    }

    fn replace<'a>(
        &'a self,
        key: &'a str,
        previous: ReservationId,
        id: ReservationId,
    ) -> DedupFuture<'a, ()> {
        Dedup::replace(self, key, previous, id);
        Box::pin(async {})
    }

    fn forget<'a>(&'a self, key: &'a str, id: ReservationId) -> DedupFuture<'a, ()> {
        Dedup::forget(self, key, id);
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_requests_never_collide() {
        let section = |event: &str, name: &str| SectionKey::new(event, name);
        assert_eq!(Dedup::key("u", &section("e", "A")), "u:e:A");
        assert_ne!(
            Dedup::key("a:b", &section("c", "d")),
            Dedup::key("a", &section("b:c", "d"))
        );
        assert_ne!(
            Dedup::key("a%3Ab", &section("c", "d")),
            Dedup::key("a:b", &section("c", "d"))
        );
        assert_ne!(
            Dedup::idempotency_key("u:k", "x"),
            Dedup::idempotency_key("u", "k:x")
        );
    }

    #[test]
    fn a_key_is_held_by_one_reservation_inside_the_window() {
        let dedup = Dedup::new(Duration::from_secs(60));
        let (first, second) = (ReservationId::new_v7(), ReservationId::new_v7());
        assert_eq!(dedup.claim("k", first), Claim::Claimed);
        assert_eq!(dedup.claim("k", second), Claim::Existing(first));
        dedup.forget("k", second); // not the holder: no effect
        assert_eq!(dedup.get("k"), Some(first));
        dedup.forget("k", first);
        assert_eq!(dedup.claim("k", second), Claim::Claimed);
    }

    #[test]
    fn an_expired_entry_no_longer_deduplicates() {
        let dedup = Dedup::new(Duration::from_millis(0));
        let (first, second) = (ReservationId::new_v7(), ReservationId::new_v7());
        assert_eq!(dedup.claim("k", first), Claim::Claimed);
        assert_eq!(dedup.get("k"), None);
        assert_eq!(dedup.claim("k", second), Claim::Claimed);
        assert_eq!(dedup.sweep(), 1);
        assert!(dedup.is_empty());
    }
}
