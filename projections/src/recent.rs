//! The outcomes a process keeps in memory: the most recent ones only, a configured number of
//! them, so that memory does not grow with the sale's history. Older outcomes are read from the
//! store that holds every one of them (the embedded RocksDB store; Redis and the audit on Kafka).
//!
//! Two generations: outcomes go into the current one; when it is full it becomes the previous
//! one and the previous one is dropped whole. Every outcome stays between half the capacity and
//! the whole of it after its last write, with no per-entry bookkeeping.
//!
//! The outcomes are written by the seat workers before they answer their batches: a dropped
//! generation is freed on a thread of its own, and the new one starts at its expected size,
//! so that no batch waits for tens of thousands of frees or for the table to grow.

use std::collections::HashMap;

use parking_lot::RwLock;
use seatflow_aggregates::{Reservation, ReservationId};

/// The recent outcomes, by id and by user.
#[derive(Debug)]
pub struct RecentOutcomes {
    per_generation: usize,
    generations: RwLock<[Generation; 2]>,
}

#[derive(Debug, Default)]
struct Generation {
    by_id: HashMap<ReservationId, Reservation>,
    /// Each user's ids in this generation, sorted (UUID v7: by request time).
    by_user: HashMap<String, Vec<ReservationId>>,
}

impl Generation {
    fn with_capacity(outcomes: usize) -> Self {
        Self {
            by_id: HashMap::with_capacity(outcomes),
            by_user: HashMap::with_capacity(outcomes),
        }
    }

    fn insert(&mut self, reservation: &Reservation) {
        if self
            .by_id
            .insert(reservation.id, reservation.clone())
            .is_none()
        {
            let ids = self.by_user.entry(reservation.user_id.clone()).or_default();
            if let Err(at) = ids.binary_search(&reservation.id) {
                ids.insert(at, reservation.id);
            }
        }
    }
}

const CURRENT: usize = 0;
const PREVIOUS: usize = 1;

/// The most outcomes a new generation is sized for up front (about 30 MB of address space,
/// touched only as it fills): beyond it, a larger configured capacity grows as it is written.
const PRESIZED_OUTCOMES: usize = 1 << 17;

/// From how many outcomes a dropped generation is freed on a thread of its own: a small one
/// (a small configured capacity rotates often) costs less to free than a thread to start.
const RETIRED_ON_A_THREAD_FROM: usize = 4_096;

/// Free a dropped generation away from the seat worker that filled it (measured: ~50,000
/// outcomes took milliseconds to free, on the path of a batch's answers).
fn retire(generation: Generation) {
    if generation.by_id.len() < RETIRED_ON_A_THREAD_FROM {
        return;
    }
    // Without a thread (the system refuses one), the generation is freed here, as before.
    let _ = std::thread::Builder::new()
        .name("recent-retire".into())
        .spawn(move || drop(generation));
}

impl RecentOutcomes {
    /// Room for about `capacity` outcomes (at least 2).
    pub fn new(capacity: usize) -> Self {
        Self {
            per_generation: (capacity / 2).max(1),
            generations: RwLock::new([Generation::default(), Generation::default()]),
        }
    }

    pub fn get(&self, id: ReservationId) -> Option<Reservation> {
        let generations = self.generations.read();
        generations
            .iter()
            .find_map(|generation| generation.by_id.get(&id))
            .cloned()
    }

    /// Keep `reservation`, replacing what is known of it when `replaces(known)` says so.
    pub fn put(&self, reservation: &Reservation, replaces: impl Fn(&Reservation) -> bool) {
        let retired = {
            let mut generations = self.generations.write();
            for generation in generations.iter_mut() {
                if let Some(known) = generation.by_id.get_mut(&reservation.id) {
                    if replaces(known) {
                        *known = reservation.clone();
                    }
                    return;
                }
            }
            generations[CURRENT].insert(reservation);
            if generations[CURRENT].by_id.len() < self.per_generation {
                return;
            }
            let fresh = Generation::with_capacity(self.per_generation.min(PRESIZED_OUTCOMES));
            let full = std::mem::replace(&mut generations[CURRENT], fresh);
            std::mem::replace(&mut generations[PREVIOUS], full)
        };
        retire(retired);
    }

    /// The user's recent reservations, newest (by request time) first.
    pub fn of_user(&self, user_id: &str) -> Vec<Reservation> {
        let generations = self.generations.read();
        let mut found: Vec<Reservation> = generations
            .iter()
            .filter_map(|generation| {
                let ids = generation.by_user.get(user_id)?;
                Some(ids.iter().filter_map(|id| generation.by_id.get(id)))
            })
            .flatten()
            .cloned()
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse(r.id));
        found
    }

    /// The user's newest recent reservation that `matches`.
    pub fn newest_of_user(
        &self,
        user_id: &str,
        matches: impl Fn(&Reservation) -> bool,
    ) -> Option<Reservation> {
        let generations = self.generations.read();
        generations
            .iter()
            .filter_map(|generation| {
                let ids = generation.by_user.get(user_id)?;
                ids.iter()
                    .rev()
                    .filter_map(|id| generation.by_id.get(id))
                    .find(|r| matches(r))
            })
            .max_by_key(|r| r.id)
            .cloned()
    }

    /// How many outcomes are in memory.
    pub fn len(&self) -> usize {
        let generations = self.generations.read();
        generations.iter().map(|g| g.by_id.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seatflow_aggregates::Status;
    use seatflow_aggregates::test_util::{NOW, key};

    fn reservation(n: u128, user: &str) -> Reservation {
        Reservation {
            id: ReservationId(uuid::Uuid::from_u128(n)),
            key: key("A"),
            user_id: user.into(),
            status: Status::Confirmed,
            requested_seats: 1,
            seats: Vec::new(),
            reason: None,
            requested_at: NOW,
            decided_at: NOW,
            cancelled_at: None,
            checkout: Default::default(),
        }
    }

    #[test]
    fn memory_holds_at_most_the_capacity_and_the_newest_outcomes() {
        let recent = RecentOutcomes::new(100);
        for n in 0..10_000 {
            recent.put(&reservation(n, &format!("u{}", n % 7)), |_| true);
            assert!(recent.len() <= 100, "{} after {n}", recent.len());
        }
        // The last half-capacity written are always there; the first are gone.
        for n in 9_950..10_000 {
            assert!(
                recent
                    .get(ReservationId(uuid::Uuid::from_u128(n)))
                    .is_some()
            );
        }
        assert_eq!(recent.get(ReservationId(uuid::Uuid::from_u128(0))), None);
        let u3 = recent.of_user("u3");
        assert!(!u3.is_empty() && u3.len() <= 100 / 7 + 2, "{}", u3.len());
        assert!(u3.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    }

    #[test]
    fn a_known_outcome_is_replaced_only_when_allowed() {
        let recent = RecentOutcomes::new(10);
        let first = reservation(1, "zoe");
        recent.put(&first, |_| true);
        let mut cancelled = first.clone();
        cancelled.status = Status::Cancelled;
        recent.put(&cancelled, |known| known.status == Status::Pending);
        assert_eq!(
            recent.get(first.id).map(|r| r.status),
            Some(Status::Confirmed)
        );
        recent.put(&cancelled, |_| true);
        assert_eq!(
            recent.get(first.id).map(|r| r.status),
            Some(Status::Cancelled)
        );
        assert_eq!(recent.of_user("zoe").len(), 1);
    }
}
