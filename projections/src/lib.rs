//! Read models built from the decided-event log: the event catalogue with each section's seat
//! map and available count, reservations by id, and each user's reservations.
//!
//! This is the in-memory projection of the embedded default. It is fed the log in order (per
//! partition) and is rebuilt from the start of the log at every start, so it holds nothing the
//! log does not. Applying the same record twice (a replay overlapping the live feed) is harmless:
//! records at or below a partition's last applied position are skipped.

pub mod audit;
mod queries;
pub mod redis;
pub mod retry;
mod waiters;

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::RwLock;
pub use queries::{Found, Queries};
pub use waiters::Waiters;

use seatflow_aggregates::{
    Event, Layout, Millis, Reservation, ReservationId, SectionKey, SectionState, Status,
};

/// One section as readers see it.
#[derive(Clone, Debug)]
pub struct SectionView {
    pub section: String,
    pub layout: Layout,
    pub state: SectionState,
}

/// One event with its sections, in creation order.
#[derive(Clone, Debug)]
pub struct EventView {
    pub event_id: String,
    pub name: String,
    pub created_at: Millis,
    pub sections: Vec<SectionView>,
}

/// The in-memory read model.
#[derive(Debug)]
pub struct ReadModel {
    /// Event ids in creation order, for listing.
    event_order: RwLock<Vec<String>>,
    events: DashMap<String, EventMeta>,
    sections: DashMap<SectionKey, SectionView>,
    reservations: DashMap<ReservationId, Reservation>,
    by_user: DashMap<String, Vec<ReservationId>>,
    applied: Vec<AtomicU64>,
    /// Woken whenever a section is added: event creation waits on it to answer with the event.
    section_added: tokio::sync::Notify,
}

#[derive(Clone, Debug)]
struct EventMeta {
    name: String,
    created_at: Millis,
    /// (position, section), sorted.
    sections: Vec<(u32, String)>,
}

impl ReadModel {
    /// An empty read model for a log of `partitions` partitions.
    pub fn new(partitions: u32) -> Self {
        Self {
            event_order: RwLock::new(Vec::new()),
            events: DashMap::new(),
            sections: DashMap::new(),
            reservations: DashMap::new(),
            by_user: DashMap::new(),
            applied: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            section_added: tokio::sync::Notify::new(),
        }
    }

    /// The event once it shows `sections` sections, waiting up to `wait` for them to arrive.
    pub async fn event_with_sections(
        &self,
        event_id: &str,
        sections: usize,
        wait: std::time::Duration,
    ) -> Option<EventView> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check: a section added between the check and the wait
            // still wakes it.
            let added = self.section_added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(view) = self.event(event_id)
                && view.sections.len() >= sections
            {
                return Some(view);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return None;
            }
        }
    }

    /// Apply one log record. Records of a partition must arrive in sequence order.
    pub fn apply(&self, partition: u32, seq: u64, event: &Event) {
        if let Some(applied) = self.applied.get(partition as usize) {
            if seq <= applied.load(Ordering::Acquire) {
                return;
            }
            applied.store(seq, Ordering::Release);
        }
        match event {
            Event::SectionInitialized(init) => {
                self.sections
                    .entry(init.key.clone())
                    .or_insert_with(|| SectionView {
                        section: init.key.section.clone(),
                        layout: init.layout,
                        state: SectionState::new(init.layout),
                    });
                let mut created = false;
                let listed = (init.position, init.key.section.clone());
                self.events
                    .entry(init.key.event_id.clone())
                    .and_modify(|meta| {
                        // Sections of one event are initialised on several partitions at once:
                        // keep them in the order the event was created with.
                        if let Err(at) = meta.sections.binary_search(&listed) {
                            meta.sections.insert(at, listed.clone());
                        }
                    })
                    .or_insert_with(|| {
                        created = true;
                        EventMeta {
                            name: init.event_name.clone(),
                            created_at: init.at,
                            sections: vec![listed.clone()],
                        }
                    });
                if created {
                    self.event_order.write().push(init.key.event_id.clone());
                }
                self.section_added.notify_waiters();
            }
            Event::ReservationCompleted(completed) => {
                let reservation = &completed.reservation;
                if let Some(mut view) = self.sections.get_mut(&reservation.key) {
                    view.state.apply(event);
                }
                let first_time = self
                    .reservations
                    .insert(reservation.id, reservation.clone())
                    .is_none();
                if first_time {
                    // Ids are UUID v7 (time-ordered at the gateway): kept sorted, a user's list
                    // is newest-first whatever order the partitions' records arrive in.
                    let mut ids = self.by_user.entry(reservation.user_id.clone()).or_default();
                    if let Err(at) = ids.binary_search(&reservation.id) {
                        ids.insert(at, reservation.id);
                    }
                }
            }
        }
    }

    /// Note an outcome known before its log record arrives (a reply to this gateway), so that
    /// this gateway's own reads see it at once: a cancellation replaces the confirmation it
    /// ends (a retry right after a cancel must not be answered with the cancelled seats). Only
    /// forward along a reservation's life, never back: the log is the authority, and its
    /// record of the same outcome changes nothing when it arrives.
    pub fn note_reservation(&self, reservation: &Reservation) {
        let stage = |status: Status| match status {
            Status::Pending => 0,
            Status::Confirmed | Status::Rejected => 1,
            Status::Cancelled => 2,
        };
        match self.reservations.entry(reservation.id) {
            dashmap::Entry::Occupied(mut known) => {
                if stage(known.get().status) < stage(reservation.status) {
                    known.insert(reservation.clone());
                }
                return;
            }
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(reservation.clone());
            }
        }
        let mut ids = self.by_user.entry(reservation.user_id.clone()).or_default();
        if let Err(at) = ids.binary_search(&reservation.id) {
            ids.insert(at, reservation.id);
        }
    }

    /// The last applied log position of a partition.
    pub fn applied(&self, partition: u32) -> u64 {
        self.applied
            .get(partition as usize)
            .map(|a| a.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    pub fn reservation(&self, id: ReservationId) -> Option<Reservation> {
        self.reservations.get(&id).map(|r| r.clone())
    }

    /// A user's reservations, newest (by request time) first, `limit` of them after skipping `offset`.
    pub fn user_reservations(
        &self,
        user_id: &str,
        offset: usize,
        limit: usize,
    ) -> Vec<Reservation> {
        let Some(ids) = self.by_user.get(user_id).map(|ids| ids.clone()) else {
            return Vec::new();
        };
        ids.iter()
            .rev()
            .skip(offset)
            .take(limit)
            .filter_map(|id| self.reservation(*id))
            .collect()
    }

    /// The user's newest CONFIRMED reservation in `key` requested at or after `since`: the
    /// reservation a retry gets back, wherever it was decided.
    pub fn held_by(&self, user_id: &str, key: &SectionKey, since: Millis) -> Option<Reservation> {
        let ids = self.by_user.get(user_id)?.clone();
        ids.iter().rev().find_map(|id| {
            self.reservations
                .get(id)
                .filter(|r| {
                    r.status == Status::Confirmed && r.key == *key && r.requested_at >= since
                })
                .map(|r| r.clone())
        })
    }

    pub fn section(&self, key: &SectionKey) -> Option<SectionView> {
        self.sections.get(key).map(|v| v.clone())
    }

    pub fn layout(&self, key: &SectionKey) -> Option<Layout> {
        self.sections.get(key).map(|v| v.layout)
    }

    pub fn available(&self, key: &SectionKey) -> Option<u32> {
        self.sections.get(key).map(|v| v.state.available())
    }

    pub fn has_event(&self, event_id: &str) -> bool {
        self.events.contains_key(event_id)
    }

    pub fn event(&self, event_id: &str) -> Option<EventView> {
        let meta = self.events.get(event_id)?.clone();
        let sections = meta
            .sections
            .iter()
            .filter_map(|(_, section)| self.section(&SectionKey::new(event_id, section.as_str())))
            .collect();
        Some(EventView {
            event_id: event_id.to_owned(),
            name: meta.name,
            created_at: meta.created_at,
            sections,
        })
    }

    /// Events in creation order, `limit` of them after skipping `offset`.
    pub fn events(&self, offset: usize, limit: usize) -> Vec<EventView> {
        let ids: Vec<String> = self
            .event_order
            .read()
            .iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        ids.iter().filter_map(|id| self.event(id)).collect()
    }

    pub fn reservation_count(&self) -> usize {
        self.reservations.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seatflow_aggregates::test_util::{MemoryPartition, NOW, init, reserve};
    use seatflow_aggregates::{SeatRequest, Status};

    #[test]
    fn the_read_model_follows_the_log_and_ignores_repeats() {
        let mut partition = MemoryPartition::default();
        partition.handle(&init("A", 2, 2), NOW);
        for user in ["u1", "u2", "u3"] {
            partition.handle(&reserve("A", user, SeatRequest::Adjacent(2)), NOW);
        }
        let model = ReadModel::new(1);
        for (i, event) in partition.log().iter().enumerate() {
            model.apply(0, i as u64 + 1, event);
            model.apply(0, i as u64 + 1, event); // a repeat changes nothing
        }
        let key = seatflow_aggregates::test_util::key("A");
        assert_eq!(model.available(&key), Some(0));
        assert_eq!(model.reservation_count(), 3);
        let u3 = model.user_reservations("u3", 0, 10);
        assert_eq!(u3.len(), 1);
        assert_eq!(u3[0].status, Status::Rejected);
        let event = model.event("evt-1").expect("event");
        assert_eq!(event.sections.len(), 1);
        assert_eq!(event.sections[0].state.held_count(), 4);
        assert_eq!(model.applied(0), 4);
    }

    #[tokio::test]
    async fn an_event_is_answered_as_soon_as_its_last_section_is_applied() {
        let mut partition = MemoryPartition::default();
        partition.handle(&init("A", 2, 2), NOW);
        partition.handle(&init("B", 1, 1), NOW);
        let model = std::sync::Arc::new(ReadModel::new(1));
        let log = partition.log().to_vec();
        model.apply(0, 1, &log[0]);
        let waiting = {
            let model = model.clone();
            tokio::spawn(async move {
                model
                    .event_with_sections("evt-1", 2, std::time::Duration::from_secs(30))
                    .await
            })
        };
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();
        model.apply(0, 2, &log[1]);
        let view = waiting.await.expect("join").expect("answered");
        assert_eq!(view.sections.len(), 2);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Never complete: answered empty when the wait ends.
        assert!(
            model
                .event_with_sections("evt-1", 3, std::time::Duration::from_millis(20))
                .await
                .is_none()
        );
    }

    fn noted(status: Status) -> Reservation {
        Reservation {
            id: ReservationId(uuid::Uuid::from_u128(7)),
            key: seatflow_aggregates::test_util::key("A"),
            user_id: "zoe".into(),
            status,
            requested_seats: 2,
            seats: Vec::new(),
            reason: None,
            requested_at: NOW,
            decided_at: NOW,
            cancelled_at: (status == Status::Cancelled).then_some(NOW),
        }
    }

    #[test]
    fn a_noted_cancellation_ends_the_noted_confirmation_and_nothing_goes_back() {
        let model = ReadModel::new(1);
        let key = seatflow_aggregates::test_util::key("A");
        model.note_reservation(&noted(Status::Confirmed));
        assert!(model.held_by("zoe", &key, 0).is_some());
        // The cancel's reply: a retry right after it must not find the seats held.
        model.note_reservation(&noted(Status::Cancelled));
        assert_eq!(model.held_by("zoe", &key, 0), None);
        let id = ReservationId(uuid::Uuid::from_u128(7));
        assert_eq!(
            model.reservation(id).map(|r| r.status),
            Some(Status::Cancelled)
        );
        // A late reply of the confirmation does not bring it back.
        model.note_reservation(&noted(Status::Confirmed));
        assert_eq!(
            model.reservation(id).map(|r| r.status),
            Some(Status::Cancelled)
        );
        assert_eq!(model.user_reservations("zoe", 0, 10).len(), 1);
    }
}
