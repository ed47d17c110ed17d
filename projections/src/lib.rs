//! Read models built from the decided-event log: the event catalogue with each section's seat
//! map and available count, reservations by id, and each user's reservations.
//!
//! This is the in-memory projection every HTTP process holds. It is fed the log in order (per
//! partition); applying the same record twice (a start overlapping the live feed) is harmless:
//! records at or below a partition's last applied position are skipped. Memory holds the
//! catalogue and only the most recent outcomes ([`RecentOutcomes`], a configured number); an
//! outcome that is no longer there is read from the [`OutcomeStore`] that keeps every one
//! (embedded), or by the query port from the stores gateways share (Kafka).

pub mod audit;
mod queries;
mod recent;
pub mod redis;
pub mod retry;
mod waiters;
pub mod webhooks;

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::RwLock;
pub use queries::{Found, Queries};
pub use recent::RecentOutcomes;
pub use waiters::Waiters;

use seatflow_aggregates::room::{RoomEvent, RoomRules, RoomState, Ticket, TicketId};
use seatflow_aggregates::{
    Event, Layout, Millis, Reservation, ReservationId, RoomRecorded, SaleRules, SectionKey,
    SectionState, Status,
};

/// One section as readers see it.
#[derive(Clone, Debug)]
pub struct SectionView {
    pub section: String,
    pub layout: Layout,
    pub state: SectionState,
}

/// A section as an event lists it: its shape and count, not its seats (a list of events must
/// not copy every seat map it touches).
#[derive(Clone, Debug)]
pub struct SectionSummary {
    pub section: String,
    pub layout: Layout,
    pub available: u32,
}

/// One event with its sections, in creation order.
#[derive(Clone, Debug)]
pub struct EventView {
    pub event_id: String,
    pub name: String,
    pub created_at: Millis,
    /// How its reservations are decided (holds, per-user limit, seat choice).
    pub rules: SaleRules,
    /// Its waiting room's rules, if it has one.
    pub room: Option<RoomRules>,
    pub sections: Vec<SectionSummary>,
}

/// Where every decided outcome is kept beyond this process's memory, read when memory misses:
/// the embedded RocksDB store, written before the read model hears of a batch. A store that
/// cannot be read answers nothing (and says why in the log).
pub trait OutcomeStore: Send + Sync + std::fmt::Debug + 'static {
    fn reservation(&self, id: ReservationId) -> Option<Reservation>;
    /// The user's reservations, newest (by request time) first, `limit` after `offset`.
    fn user_reservations(&self, user_id: &str, offset: usize, limit: usize) -> Vec<Reservation>;
    /// The user's reservations requested at or after `since`, in any order.
    fn user_reservations_since(&self, user_id: &str, since: Millis) -> Vec<Reservation>;
}

/// How many outcomes a read model keeps in memory unless configured otherwise.
pub const DEFAULT_RECENT_OUTCOMES: usize = 100_000;

/// The in-memory read model.
#[derive(Debug)]
pub struct ReadModel {
    /// Event ids in creation order, for listing.
    event_order: RwLock<Vec<String>>,
    events: DashMap<String, EventMeta>,
    sections: DashMap<SectionKey, SectionView>,
    recent: RecentOutcomes,
    store: Option<std::sync::Arc<dyn OutcomeStore>>,
    applied: Vec<AtomicU64>,
    /// Woken whenever a section is added: event creation waits on it to answer with the event.
    section_added: tokio::sync::Notify,
    /// A replica of each event's waiting room, by event id: the same events its owner logged,
    /// applied in order (`seatflow_aggregates::room`), so any gateway answers any ticket.
    rooms: DashMap<String, RoomState>,
    /// Per room, the number of events applied: what a ticket's live stream waits on.
    room_versions: DashMap<String, tokio::sync::watch::Sender<u64>>,
}

/// A waiting-room ticket as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketView {
    pub ticket: Ticket,
    /// Tickets still waiting ahead (none before the shuffle, or once admitted or ended).
    pub ahead: Option<u32>,
    pub estimated_wait_seconds: Option<u64>,
    pub rules: RoomRules,
}

#[derive(Clone, Debug)]
struct EventMeta {
    name: String,
    created_at: Millis,
    rules: SaleRules,
    /// (position, section), sorted.
    sections: Vec<(u32, String)>,
}

impl ReadModel {
    /// An empty read model for a log of `partitions` partitions, with the default memory.
    pub fn new(partitions: u32) -> Self {
        Self::bounded(partitions, DEFAULT_RECENT_OUTCOMES, None)
    }

    /// An empty read model keeping about `recent` outcomes in memory, backed by `store` when
    /// there is one.
    pub fn bounded(
        partitions: u32,
        recent: usize,
        store: Option<std::sync::Arc<dyn OutcomeStore>>,
    ) -> Self {
        Self {
            event_order: RwLock::new(Vec::new()),
            events: DashMap::new(),
            sections: DashMap::new(),
            recent: RecentOutcomes::new(recent),
            store,
            applied: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            section_added: tokio::sync::Notify::new(),
            rooms: DashMap::new(),
            room_versions: DashMap::new(),
        }
    }

    /// Follow the changes of `event_id`'s waiting room, if this replica has it.
    pub fn watch_room(&self, event_id: &str) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.rooms.contains_key(event_id).then(|| {
            self.room_versions
                .entry(event_id.to_owned())
                .or_insert_with(|| tokio::sync::watch::channel(0).0)
                .subscribe()
        })
    }

    fn room_changed(&self, event_id: &str) {
        if let Some(version) = self.room_versions.get(event_id) {
            version.send_modify(|version| *version += 1);
        }
    }

    /// Load a waiting room as the store has it now (a start that reads state, not history).
    pub fn restore_room(&self, event_id: &str, room: RoomState) {
        self.rooms.insert(event_id.to_owned(), room);
    }

    /// A ticket of an event's waiting room as this replica has it at `now`.
    pub fn ticket(&self, event_id: &str, ticket: TicketId, now: Millis) -> Option<TicketView> {
        let room = self.rooms.get(event_id)?;
        Some(TicketView {
            ticket: room.ticket(ticket)?.clone(),
            ahead: room.ahead_of(ticket),
            estimated_wait_seconds: room.estimated_wait_seconds(ticket, now),
            rules: room.rules(),
        })
    }

    /// How an event's reservations are decided, if it exists.
    pub fn event_rules(&self, event_id: &str) -> Option<SaleRules> {
        self.events.get(event_id).map(|meta| meta.rules)
    }

    /// The rules of an event's waiting room, if it has one here.
    pub fn room_rules(&self, event_id: &str) -> Option<RoomRules> {
        self.rooms.get(event_id).map(|room| room.rules())
    }

    /// Load a section as the store has it now (a start that reads state, not history).
    pub fn restore_section(
        &self,
        init: &seatflow_aggregates::SectionInitialized,
        state: SectionState,
    ) {
        self.add_section(init);
        if let Some(mut view) = self.sections.get_mut(&init.key) {
            view.state = state;
        }
    }

    /// The log position the loaded state stands at: records up to it are not applied again.
    pub fn restore_applied(&self, partition: u32, seq: u64) {
        if let Some(applied) = self.applied.get(partition as usize) {
            applied.fetch_max(seq, Ordering::AcqRel);
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
            Event::SectionInitialized(init) => self.add_section(init),
            Event::ReservationCompleted(completed) => {
                let reservation = &completed.reservation;
                if let Some(mut view) = self.sections.get_mut(&reservation.key) {
                    view.state.apply(event);
                }
                self.recent.put(reservation, |_| true);
            }
            Event::Room(recorded) => self.apply_room(recorded),
        }
    }

    fn apply_room(&self, recorded: &RoomRecorded) {
        let event_id = &recorded.key.event_id;
        match (self.rooms.get_mut(event_id), &recorded.event) {
            (Some(mut room), event) => room.apply(event),
            (None, RoomEvent::Opened { rules, .. }) => {
                self.rooms.insert(event_id.clone(), RoomState::new(*rules));
            }
            // Rooms begin with their opening; a start restores them before following.
            (None, _) => {}
        }
        self.room_changed(event_id);
    }

    fn add_section(&self, init: &seatflow_aggregates::SectionInitialized) {
        self.sections
            .entry(init.key.clone())
            .or_insert_with(|| SectionView {
                section: init.key.section.clone(),
                layout: init.layout,
                state: SectionState::new(init.layout).with_rules(init.rules),
            });
        let mut created = false;
        let listed = (init.position, init.key.section.clone());
        self.events
            .entry(init.key.event_id.clone())
            .and_modify(|meta| {
                // Sections of one event are initialised on several partitions at once: keep
                // them in the order the event was created with.
                if let Err(at) = meta.sections.binary_search(&listed) {
                    meta.sections.insert(at, listed.clone());
                }
            })
            .or_insert_with(|| {
                created = true;
                EventMeta {
                    name: init.event_name.clone(),
                    created_at: init.at,
                    rules: init.rules,
                    sections: vec![listed.clone()],
                }
            });
        if created {
            self.event_order.write().push(init.key.event_id.clone());
        }
        self.section_added.notify_waiters();
    }

    /// Note an outcome known before its log record arrives (a reply to this gateway), so that
    /// this gateway's own reads see it at once: a cancellation replaces the confirmation it
    /// ends (a retry right after a cancel must not be answered with the cancelled seats). Only
    /// forward along a reservation's life, never back: the log is the authority, and its
    /// record of the same outcome changes nothing when it arrives.
    pub fn note_reservation(&self, reservation: &Reservation) {
        let stage = |status: Status| match status {
            Status::Pending => 0,
            Status::Waitlisted => 1,
            Status::Held => 2,
            Status::Confirmed | Status::Rejected => 3,
            Status::Cancelled | Status::Expired => 4,
        };
        self.recent.put(reservation, |known| {
            stage(known.status) < stage(reservation.status)
        });
    }

    /// The last applied log position of a partition.
    pub fn applied(&self, partition: u32) -> u64 {
        self.applied
            .get(partition as usize)
            .map(|a| a.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// The reservation `id`, from memory or else from the store behind it.
    pub fn reservation(&self, id: ReservationId) -> Option<Reservation> {
        self.recent
            .get(id)
            .or_else(|| self.store.as_ref()?.reservation(id))
    }

    /// A user's reservations, newest (by request time) first, `limit` of them after skipping
    /// `offset`: all of them from the store behind memory, or the recent ones memory holds.
    pub fn user_reservations(
        &self,
        user_id: &str,
        offset: usize,
        limit: usize,
    ) -> Vec<Reservation> {
        if let Some(store) = &self.store {
            return store.user_reservations(user_id, offset, limit);
        }
        let mut recent = self.recent.of_user(user_id);
        recent.truncate(offset.saturating_add(limit));
        recent.into_iter().skip(offset).collect()
    }

    /// The user's newest HELD, CONFIRMED or WAITLISTED reservation in `key` requested at or
    /// after `since`: the reservation a retry gets back, wherever it was decided.
    pub fn held_by(&self, user_id: &str, key: &SectionKey, since: Millis) -> Option<Reservation> {
        let holds = |r: &Reservation| {
            (r.status.takes_seats() || r.status == Status::Waitlisted)
                && r.key == *key
                && r.requested_at >= since
        };
        if let Some(held) = self.recent.newest_of_user(user_id, holds) {
            return Some(held);
        }
        self.store
            .as_ref()?
            .user_reservations_since(user_id, since)
            .into_iter()
            .filter(holds)
            .max_by_key(|r| r.id)
    }

    pub fn section(&self, key: &SectionKey) -> Option<SectionView> {
        self.sections.get(key).map(|v| v.clone())
    }

    pub fn layout(&self, key: &SectionKey) -> Option<Layout> {
        self.sections.get(key).map(|v| v.layout)
    }

    /// The rules a section's reservations are decided by.
    pub fn rules(&self, key: &SectionKey) -> Option<SaleRules> {
        self.sections.get(key).map(|v| v.state.rules())
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
            .filter_map(|(_, section)| {
                let view = self
                    .sections
                    .get(&SectionKey::new(event_id, section.as_str()))?;
                Some(SectionSummary {
                    section: view.section.clone(),
                    layout: view.layout,
                    available: view.state.available(),
                })
            })
            .collect();
        Some(EventView {
            event_id: event_id.to_owned(),
            name: meta.name,
            created_at: meta.created_at,
            rules: meta.rules,
            room: self.room_rules(event_id),
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

    /// How many outcomes are in memory.
    pub fn reservations_in_memory(&self) -> usize {
        self.recent.len()
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
        assert_eq!(model.reservations_in_memory(), 3);
        let u3 = model.user_reservations("u3", 0, 10);
        assert_eq!(u3.len(), 1);
        assert_eq!(u3[0].status, Status::Rejected);
        let event = model.event("evt-1").expect("event");
        assert_eq!(event.sections.len(), 1);
        assert_eq!(event.sections[0].available, 0);
        assert_eq!(model.section(&key).expect("section").state.held_count(), 4);
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
            checkout: Default::default(),
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
