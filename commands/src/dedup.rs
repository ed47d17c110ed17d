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
use std::sync::Arc;
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

/// A key taken for a reservation: released when dropped unless it was settled or its command
/// may already be durable. Every exit of a request that claimed a key goes through here, so
/// no arm has to remember to give it back.
#[must_use = "a claimed key is released when dropped"]
pub struct Held {
    store: Arc<dyn DedupStore>,
    key: String,
    id: ReservationId,
    /// What dropping it does: release (nothing was sent) or keep (the command may be durable
    /// and decided later: a retry must find the key and wait for that reservation).
    release_on_drop: bool,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("key", &self.key)
            .field("id", &self.id)
            .finish()
    }
}

impl Held {
    /// `key`, just claimed by `id` in `store`.
    pub fn new(store: Arc<dyn DedupStore>, key: String, id: ReservationId) -> Self {
        Self {
            store,
            key,
            id,
            release_on_drop: true,
        }
    }

    /// The reservation's command is about to be handed over: from now on a request that is
    /// dropped (its client gone) keeps the key.
    pub fn in_flight(&mut self) {
        self.release_on_drop = false;
    }

    /// The request is answered: `holder` is the reservation the key now names (kept; handed
    /// over when it is another one, e.g. the first reservation of a retry), or none (released:
    /// nothing holds seats under it).
    pub async fn settle(mut self, holder: Option<ReservationId>) {
        self.release_on_drop = false;
        match holder {
            Some(holder) if holder == self.id => {}
            Some(holder) => self.store.replace(&self.key, self.id, holder).await,
            None => self.store.forget(&self.key, self.id).await,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.release_on_drop {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, key, id) = (self.store.clone(), std::mem::take(&mut self.key), self.id);
            runtime.spawn(async move { store.forget(&key, id).await });
        }
    }
}

/// Escape the separator so that `a:b` + `c` and `a` + `b:c` never make the same key.
fn key_part(part: &str) -> Cow<'_, str> {
    if part.contains([':', '%']) {
        Cow::Owned(part.replace('%', "%25").replace(':', "%3A"))
    } else {
        Cow::Borrowed(part)
    }
}

/// The in-memory store: the keys of the window, at most `capacity` of them (the oldest go first
/// when there are more). A key that had to go is still answered where it matters: a retry is
/// also recognised by the seats its user holds (the read side's `held_by`), which the embedded
/// store answers for the whole window.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    capacity: usize,
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
    /// Keys of the last `window`, with no other bound (tests, small tools).
    pub fn new(window: Duration) -> Self {
        Self::bounded(window, usize::MAX)
    }

    /// Keys of the last `window`, at most about `capacity` of them.
    pub fn bounded(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            entries: DashMap::new(),
        }
    }

    /// Keep the map within its capacity: expired keys go, then the oldest quarter. Called after
    /// an insert; the work is paid once per quarter of the capacity.
    fn bound(&self) {
        if self.entries.len() <= self.capacity {
            return;
        }
        self.sweep();
        let excess = self.entries.len().saturating_sub(self.capacity * 3 / 4);
        if self.entries.len() <= self.capacity || excess == 0 {
            return;
        }
        let mut ages: Vec<Instant> = self.entries.iter().map(|entry| entry.value().1).collect();
        let (_, cutoff, _) = ages.select_nth_unstable(excess - 1);
        let cutoff = *cutoff;
        self.entries.retain(|_, (_, at)| *at > cutoff);
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
        let (claim, added) = match self.entries.entry(key.to_owned()) {
            Entry::Occupied(mut occupied) => {
                let (existing, at) = *occupied.get();
                if at.elapsed() < self.window {
                    (Claim::Existing(existing), false)
                } else {
                    occupied.insert((id, Instant::now()));
                    (Claim::Claimed, false)
                }
            }
            Entry::Vacant(vacant) => {
                vacant.insert((id, Instant::now()));
                (Claim::Claimed, true)
            }
        };
        // The entry's shard lock is released here: bounding takes every shard.
        if added {
            self.bound();
        }
        claim
    }

    /// Note that `id` holds the key (claimed elsewhere, e.g. in Redis), replacing any holder.
    pub fn remember(&self, key: &str, id: ReservationId) {
        self.entries.insert(key.to_owned(), (id, Instant::now()));
        self.bound();
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

    #[tokio::test]
    async fn a_held_key_is_released_unless_settled_or_in_flight() {
        let dedup = Arc::new(Dedup::new(Duration::from_secs(60)));
        let store: Arc<dyn DedupStore> = dedup.clone();
        let (first, second) = (ReservationId::new_v7(), ReservationId::new_v7());
        // Dropped before its command was sent: released.
        assert_eq!(dedup.claim("k", first), Claim::Claimed);
        drop(Held::new(store.clone(), "k".into(), first));
        for _ in 0..100 {
            if dedup.get("k").is_none() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(dedup.get("k"), None);
        // Dropped while its command may be durable: kept.
        assert_eq!(dedup.claim("k", first), Claim::Claimed);
        let mut held = Held::new(store.clone(), "k".into(), first);
        held.in_flight();
        drop(held);
        tokio::task::yield_now().await;
        assert_eq!(dedup.get("k"), Some(first));
        // Settled: kept, handed over, or released.
        Held::new(store.clone(), "k".into(), first)
            .settle(Some(first))
            .await;
        assert_eq!(dedup.get("k"), Some(first));
        Held::new(store.clone(), "k".into(), first)
            .settle(Some(second))
            .await;
        assert_eq!(dedup.get("k"), Some(second));
        Held::new(store.clone(), "k".into(), second)
            .settle(None)
            .await;
        assert_eq!(dedup.get("k"), None);
    }

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
    fn the_keys_stay_within_the_capacity_and_the_newest_are_kept() {
        let dedup = Dedup::bounded(Duration::from_secs(60), 1_000);
        let ids: Vec<ReservationId> = (0..10_000).map(|_| ReservationId::new_v7()).collect();
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(dedup.claim(&format!("k{n}"), *id), Claim::Claimed);
            assert!(dedup.len() <= 1_000, "{} keys after {n}", dedup.len());
        }
        assert_eq!(dedup.get("k9999"), Some(ids[9_999]));
        assert_eq!(dedup.get("k0"), None);
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
