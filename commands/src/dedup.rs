//! De-duplication of retries (the seed's 2.4): the first reservation a user made for an event
//! section is remembered for a window (1 hour by default) under `userId:eventId:section`, and a
//! retry inside the window is answered with it instead of becoming a second reservation.
//! In memory on the embedded runtime; Redis `SET NX EX` when one is configured.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use seatflow_aggregates::{ReservationId, SectionKey};

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

    /// `userId:eventId:section`.
    pub fn key(user_id: &str, section: &SectionKey) -> String {
        format!("{user_id}:{}:{}", section.event_id, section.section)
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

#[cfg(test)]
mod tests {
    use super::*;

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
