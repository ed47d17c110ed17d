//! One partition's batch of decisions, as data.
//!
//! [`Partition::decide_batch`] is the whole work of a partition owner: given the commands of a
//! batch (in order), the decision time and read access to what is stored ([`PartitionStore`]),
//! it returns the [`Action`]s that must happen, in order, and does none of them. The embedded
//! worker interprets them as one RocksDB write batch followed by the answers to its callers; the
//! Kafka seat processor as records produced in one transaction. [`MemoryStore`] is a third
//! interpreter, in memory, for tests and replays. A rule is written once, here, and every runtime
//! follows it.
//!
//! `now` is an input like the commands: the batch machinery is the place where decisions made
//! on the partition's own clock (a hold that expires) are taken, with the same actions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::cache::Generations;
use crate::decision::{Decision, decide, evolve, expire, promote, waitlist};
use crate::model::{
    ClaimQuota, Command, Completed, Event, Millis, Outcome, QuotaKey, QuotaVerdict, Rejection,
    ReleaseQuota, Reservation, ReservationId, RoomCommand, RoomRecorded, RoomRequest, SectionKey,
    Status,
};
use crate::quota::{self, QuotaState};
use crate::room::{JoinRefused, RoomEvent, RoomHeader, RoomState, SessionEnd, Ticket, TicketId};
use crate::section::SectionState;

/// Read access to what a partition has stored: the last committed state of its sections and
/// quotas, the outcome of every reservation id it decided, and its reservations still HELD.
pub trait PartitionStore {
    type Error;
    fn section(&self, key: &SectionKey) -> Result<Option<SectionState>, Self::Error>;
    fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Self::Error>;
    /// Every HELD reservation of `partition`, as stored (any order).
    fn holds(&self, partition: u32) -> Result<Vec<Hold>, Self::Error>;
    fn quota(&self, key: &QuotaKey) -> Result<Option<QuotaState>, Self::Error>;
    /// The WAITLISTED reservations of a section of `partition`, as stored (any order).
    fn waitlist(&self, partition: u32, key: &SectionKey) -> Result<Vec<Waiting>, Self::Error>;
    /// Every waiting room of `partition`, by event id, as stored.
    fn rooms(&self, partition: u32) -> Result<Vec<(String, RoomState)>, Self::Error>;
}

/// A WAITLISTED reservation in its section's order: what promotion looks at first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Its place in the section's waitlist (smaller is earlier).
    pub place: u64,
    pub id: ReservationId,
    /// The seats it asked for.
    pub seats: u16,
}

impl Waiting {
    /// The place of a WAITLISTED reservation; None for any other.
    pub fn of(reservation: &Reservation) -> Option<Self> {
        (reservation.status == Status::Waitlisted)
            .then_some(reservation.checkout.waitlisted)
            .flatten()
            .map(|place| Self {
                place,
                id: reservation.id,
                seats: reservation.requested_seats,
            })
    }
}

/// How many requests may wait in one section unless configured otherwise.
pub const DEFAULT_WAITLIST_PER_SECTION: u32 = 10_000;

/// About how many sections a partition keeps between batches unless configured otherwise: a
/// section is a bit per seat (a 250 x 200 floor ~6.5 KB), so ~13 MB per partition at most.
pub const DEFAULT_CACHED_SECTIONS: usize = 2_048;

/// About how many per-user quotas a partition keeps between batches unless configured
/// otherwise (~400 bytes each with one reservation counted: ~6.5 MB per partition). A user's
/// claim and its release come close together, so the quotas in use are those of recent
/// requests.
pub const DEFAULT_CACHED_QUOTAS: usize = 16_384;

/// How a partition owner is set up (what the runtimes read from their configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionSettings {
    /// Most requests waiting in one section.
    pub waitlist_per_section: u32,
    /// About how many sections it keeps between batches.
    pub cached_sections: usize,
    /// About how many per-user quotas it keeps between batches.
    pub cached_quotas: usize,
}

impl Default for PartitionSettings {
    fn default() -> Self {
        Self {
            waitlist_per_section: DEFAULT_WAITLIST_PER_SECTION,
            cached_sections: DEFAULT_CACHED_SECTIONS,
            cached_quotas: DEFAULT_CACHED_QUOTAS,
        }
    }
}

/// A HELD reservation and when its hold ends: what a partition's clock watches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hold {
    pub expires_at: Millis,
    pub id: ReservationId,
    pub key: SectionKey,
}

impl Hold {
    /// The hold of a HELD reservation; None for any other.
    pub fn of(reservation: &Reservation) -> Option<Self> {
        (reservation.status == Status::Held)
            .then_some(reservation.checkout.expires_at)
            .flatten()
            .map(|expires_at| Self {
                expires_at,
                id: reservation.id,
                key: reservation.key.clone(),
            })
    }
}

/// What of a section's state a batch changed: what a store must write of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionChange {
    /// All of it: the section was initialised by the batch.
    Whole,
    /// The seats of these rows (1-based, ascending, each once): a reservation took or gave back
    /// seats there. The rest of the section, its layout and rules are as stored.
    Rows(Vec<u16>),
}

impl SectionChange {
    /// Add what `event` changes in its section.
    fn add(&mut self, event: &Event) {
        let Self::Rows(rows) = self else {
            return;
        };
        match event {
            Event::SectionInitialized(_) => *self = Self::Whole,
            Event::ReservationCompleted(completed) => {
                let reservation = &completed.reservation;
                let moves_seats = matches!(
                    reservation.status,
                    Status::Held | Status::Confirmed | Status::Cancelled | Status::Expired
                );
                if moves_seats {
                    rows.extend(reservation.seats.iter().map(|seat| seat.row));
                }
            }
            Event::Room(_) => {}
        }
    }

    /// Whether there is anything to write.
    fn is_empty(&self) -> bool {
        matches!(self, Self::Rows(rows) if rows.is_empty())
    }

    fn sorted(mut self) -> Self {
        if let Self::Rows(rows) = &mut self {
            rows.sort_unstable();
            rows.dedup();
        }
        self
    }
}

/// What a batch makes happen, in the order it must happen. The input index refers to the
/// command slice given to [`Partition::decide_batch`]; `None` for a decision taken on the
/// partition's own clock (a hold that expired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A decided fact: append it to the partition's log (embedded) or to
    /// `reservation-completed` (Kafka). `input` is the command it came from.
    Record { input: Option<usize>, event: Event },
    /// The section's available count after a fact: the pre-filter and `section-status` follow it.
    PublishStatus {
        input: Option<usize>,
        key: SectionKey,
        available: u32,
    },
    /// Hand `command` on to the partition that decides it, once everything before is durable
    /// (on Kafka: produce it to the commands in this transaction). `input` is the command it
    /// came from; with `with_caller`, the caller of `input` is answered by the handed-on
    /// command (a reservation on its way from its user's quota to its section) and gets no
    /// [`Action::Reply`] here.
    Forward {
        input: Option<usize>,
        command: Command,
        with_caller: bool,
    },
    /// Answer the caller of `input`, once everything before is durable.
    Reply {
        input: usize,
        outcome: Outcome,
        /// The section's available count when the answer was made (0 for an unknown section).
        available: u32,
    },
    /// The state of a section the batch changed, as it is at the end of the batch, and what of
    /// it changed (a store may write only that).
    StoreSection {
        key: SectionKey,
        state: SectionState,
        change: SectionChange,
    },
    /// The outcome of a reservation the batch decided, as it is at the end of the batch (the
    /// de-duplication table: a redelivered command is answered with it).
    StoreOutcome(Completed),
    /// The state of a quota the batch changed, as it is at the end of the batch (empty: no
    /// reservation counted; it may be deleted).
    StoreQuota { key: QuotaKey, state: QuotaState },
    /// A waiting room the batch changed, as it is at the end of the batch: its header, and the
    /// tickets the batch changed (each stored under its own key).
    StoreRoom {
        key: SectionKey,
        header: RoomHeader,
        tickets: Vec<Ticket>,
    },
}

/// What a partition owner keeps between batches: the sections it has read or decided lately (a
/// cache of the store, valid while every batch it decided was committed; bounded, see
/// [`crate::cache`]) with their waitlists, and its holds by end time.
#[derive(Debug, Clone)]
pub struct Partition {
    number: u32,
    sections: Generations<SectionKey, SectionState>,
    /// Each cached section's WAITLISTED reservations by place, with the seats they ask for
    /// (read with the section, dropped with it). A place is unique among those waiting; it may
    /// be given again once its holder moved on, so an entry is known by place and id together.
    waitlists: HashMap<SectionKey, BTreeMap<(u64, ReservationId), u16>>,
    /// Most requests waiting in one section.
    waitlist_limit: u32,
    /// The quotas it has read or decided lately (a cache of the store, like `sections`).
    quotas: Generations<QuotaKey, QuotaState>,
    /// Holds of reservations that may still be HELD, by end time. An entry whose reservation
    /// moved on (confirmed, cancelled) is dropped when it comes due.
    holds: BTreeSet<Hold>,
    /// Whether `holds` and `rooms` were read from the store (at the first batch, and after an
    /// abandon).
    holds_loaded: bool,
    /// The waiting rooms of the events that fall on this partition, by event id (all of them:
    /// their clocks run here).
    rooms: BTreeMap<String, RoomState>,
    /// Mixed into each shuffle's seed (drawn by the runtime, so a seed cannot be guessed
    /// before the on-sale); the seed itself is recorded.
    entropy: u64,
}

/// A batch's decisions so far.
#[derive(Default)]
struct Batch {
    actions: Vec<Action>,
    /// Sections the batch decided in, with what it changed of each (in first-touch order).
    touched: Vec<(SectionKey, SectionChange)>,
    touched_quotas: Vec<QuotaKey>,
    /// Sections whose seats came back in the last decision: their waitlists move.
    freed: Vec<SectionKey>,
    decided: Vec<Completed>,
    decided_index: HashMap<ReservationId, usize>,
    /// Rooms the batch changed, with the tickets it changed.
    touched_rooms: BTreeMap<String, BTreeSet<TicketId>>,
}

impl Batch {
    /// The reservation's outcome as the batch left it, else as stored.
    fn prior<S: PartitionStore>(
        &self,
        store: &S,
        id: ReservationId,
    ) -> Result<Option<Reservation>, S::Error> {
        match self.decided_index.get(&id) {
            Some(&at) => Ok(Some(self.decided[at].reservation.clone())),
            None => store.reservation(id),
        }
    }

    fn note(&mut self, completed: &Completed) {
        match self.decided_index.get(&completed.reservation.id) {
            Some(&at) => self.decided[at] = completed.clone(),
            None => {
                self.decided_index
                    .insert(completed.reservation.id, self.decided.len());
                self.decided.push(completed.clone());
            }
        }
    }
}

impl Default for Partition {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Partition {
    /// The owner of partition `number`, with nothing loaded yet.
    pub fn new(number: u32) -> Self {
        Self {
            number,
            sections: Generations::new(DEFAULT_CACHED_SECTIONS),
            waitlists: HashMap::new(),
            waitlist_limit: DEFAULT_WAITLIST_PER_SECTION,
            quotas: Generations::new(DEFAULT_CACHED_QUOTAS),
            holds: BTreeSet::new(),
            holds_loaded: false,
            rooms: BTreeMap::new(),
            entropy: 0,
        }
    }

    /// The owner of partition `number` set up with `settings`.
    pub fn configured(number: u32, settings: &PartitionSettings) -> Self {
        Self::new(number)
            .with_waitlist_limit(settings.waitlist_per_section)
            .with_cache(settings.cached_sections, settings.cached_quotas)
    }

    /// The same owner drawing its shuffles' seeds with `entropy` (random in the runtimes).
    pub fn with_entropy(mut self, entropy: u64) -> Self {
        self.entropy = entropy;
        self
    }

    /// The same owner keeping about `sections` sections and `quotas` quotas between batches
    /// (those it used last; the others are read from the store again when needed).
    pub fn with_cache(mut self, sections: usize, quotas: usize) -> Self {
        self.sections = Generations::new(sections);
        self.quotas = Generations::new(quotas);
        self
    }

    /// Sections and quotas kept between batches now.
    pub fn cached(&self) -> (usize, usize) {
        (self.sections.len(), self.quotas.len())
    }

    /// The same owner with at most `limit` requests waiting per section.
    pub fn with_waitlist_limit(mut self, limit: u32) -> Self {
        self.waitlist_limit = limit;
        self
    }

    /// When the partition's clock next has something to do (a hold ends, a waiting room
    /// shuffles, admits or ends a session), if anything: the runtime decides an empty batch
    /// then (a tick). Known once the holds are loaded ([`Partition::load_holds`], or any batch).
    pub fn next_expiry(&self) -> Option<Millis> {
        let hold = self.holds.first().map(|hold| hold.expires_at);
        let room = self.rooms.values().filter_map(RoomState::next_due).min();
        [hold, room].into_iter().flatten().min()
    }

    /// Read the partition's holds and waiting rooms from the store, unless they are in memory
    /// already (a new owner, or one that abandoned a batch).
    pub fn load_holds<S: PartitionStore>(&mut self, store: &S) -> Result<(), S::Error> {
        if !self.holds_loaded {
            self.holds = store.holds(self.number)?.into_iter().collect();
            self.rooms = store.rooms(self.number)?.into_iter().collect();
            self.holds_loaded = true;
        }
        Ok(())
    }

    /// The waiting room of `event_id`, if this partition has it.
    pub fn room(&self, event_id: &str) -> Option<&RoomState> {
        self.rooms.get(event_id)
    }

    /// Decide a batch of commands at `now`: first every hold that ended at or before `now`
    /// expires and the waiting rooms do what is due (shuffle, end sessions, admit), then each
    /// command in order. Every command gets exactly one [`Action::Reply`], or an
    /// [`Action::Forward`] with its caller, except a [`ReleaseQuota`] and a room's
    /// `EndSession` (no one waits for them); the stores come last, once per changed section,
    /// quota, room and reservation. With no commands this is the partition's clock.
    pub fn decide_batch<S: PartitionStore>(
        &mut self,
        store: &S,
        commands: &[Command],
        now: Millis,
    ) -> Result<Vec<Action>, S::Error> {
        let mut batch = Batch {
            actions: Vec::with_capacity(commands.len() * 3),
            ..Batch::default()
        };
        self.turn_caches();
        self.expire_due(store, now, &mut batch)?;
        self.advance_rooms(now, &mut batch);
        for (input, command) in commands.iter().enumerate() {
            match command {
                Command::Room(room) => {
                    self.decide_room(input, room, now, &mut batch);
                    continue;
                }
                Command::ClaimQuota(claim) => {
                    self.decide_claim(store, input, claim, &mut batch)?;
                    continue;
                }
                Command::ReleaseQuota(release) => {
                    self.decide_release(store, release, &mut batch)?;
                    continue;
                }
                _ => {}
            }
            let key = command.key();
            self.load(store, key)?;
            let prior = match command.reservation_id() {
                None => None,
                Some(id) => batch.prior(store, id)?,
            };
            let section = self.sections.get(key);
            let outcome = match decide(section, prior.as_ref(), command, now) {
                Decision::Append(mut events) => {
                    if let Command::Reserve(reserve) = command {
                        self.waitlist_if_asked(reserve, &mut events);
                    }
                    let mut outcome = Outcome::SectionReady;
                    for event in events {
                        if let Event::ReservationCompleted(completed) = &event {
                            outcome = Outcome::Reservation(completed.reservation.clone());
                        }
                        self.record(Some(input), event, &mut batch);
                    }
                    outcome
                }
                Decision::AlreadyDecided(reservation) => Outcome::Reservation(reservation),
                Decision::Refused(rejection) => Outcome::Refused(rejection),
                Decision::Forward(command) => {
                    batch.actions.push(Action::Forward {
                        input: Some(input),
                        command,
                        with_caller: true,
                    });
                    continue;
                }
            };
            // A counted reservation that took no seats and will not (now, or when it was first
            // decided) gives its count back; a WAITLISTED one keeps it for its promotion.
            if let (Command::Reserve(reserve), Outcome::Reservation(reservation)) =
                (command, &outcome)
                && reserve.quota == QuotaVerdict::Granted
                && !reservation.status.is_live()
            {
                batch.actions.push(release_of(Some(input), reservation));
            }
            self.promote_waiting(store, now, &mut batch)?;
            let available = self.sections.get(key).map_or(0, SectionState::available);
            batch.actions.push(Action::Reply {
                input,
                outcome,
                available,
            });
        }
        let Batch {
            mut actions,
            touched,
            touched_quotas,
            decided,
            touched_rooms,
            ..
        } = batch;
        for (key, change) in touched {
            // A section whose seats the batch did not move (only refusals) is as stored.
            if change.is_empty() {
                continue;
            }
            if let Some(state) = self.sections.get(&key) {
                actions.push(Action::StoreSection {
                    state: state.clone(),
                    key,
                    change: change.sorted(),
                });
            }
        }
        for key in touched_quotas {
            if let Some(state) = self.quotas.get(&key) {
                actions.push(Action::StoreQuota {
                    state: state.clone(),
                    key,
                });
            }
        }
        for (event_id, tickets) in touched_rooms {
            if let Some(room) = self.rooms.get(&event_id) {
                actions.push(Action::StoreRoom {
                    key: SectionKey::room(event_id),
                    header: room.header(),
                    tickets: tickets
                        .iter()
                        .filter_map(|id| room.ticket(*id).cloned())
                        .collect(),
                });
            }
        }
        actions.extend(decided.into_iter().map(Action::StoreOutcome));
        Ok(actions)
    }

    /// Decide a waiting room's command: open (or change) it, join, leave, or end a session
    /// whose reservation was confirmed; then let the room admit whom it now may.
    fn decide_room(&mut self, input: usize, command: &RoomCommand, now: Millis, batch: &mut Batch) {
        let event_id = &command.key.event_id;
        let room = self.rooms.get(event_id);
        let mut answer_ticket = None;
        let (outcome, event) = match (&command.request, room) {
            (RoomRequest::Open(rules), None) => {
                self.rooms.insert(event_id.clone(), RoomState::new(*rules));
                let opened = RoomEvent::Opened {
                    rules: *rules,
                    at: now,
                };
                (Some(Outcome::SectionReady), Some(opened))
            }
            (RoomRequest::Open(rules), Some(room)) => {
                if room.rules() == *rules {
                    (Some(Outcome::SectionReady), None)
                } else if room.is_shuffled() {
                    (Some(Outcome::Refused(Rejection::SaleStarted)), None)
                } else {
                    let opened = RoomEvent::Opened {
                        rules: *rules,
                        at: now,
                    };
                    (Some(Outcome::SectionReady), Some(opened))
                }
            }
            (RoomRequest::EndSession { .. }, None) => (None, None),
            (_, None) => (Some(Outcome::Refused(Rejection::NoWaitingRoom)), None),
            (RoomRequest::Join { ticket, user_id }, Some(room)) => {
                match room.join(user_id, *ticket, now) {
                    Err(JoinRefused::NotOpen { opens_at }) => (
                        Some(Outcome::Refused(Rejection::QueueNotOpen { opens_at })),
                        None,
                    ),
                    Ok((id, joined)) => {
                        answer_ticket = Some(id);
                        (None, joined)
                    }
                }
            }
            (RoomRequest::Leave { ticket, user_id }, Some(room)) => match room.ticket(*ticket) {
                None => (Some(Outcome::Refused(Rejection::UnknownTicket)), None),
                Some(found) if found.user != *user_id => {
                    (Some(Outcome::Refused(Rejection::NotOwner)), None)
                }
                Some(found) => {
                    answer_ticket = Some(found.id);
                    (None, room.end(user_id, SessionEnd::Left, now))
                }
            },
            (RoomRequest::EndSession { user_id, .. }, Some(room)) => {
                let admitted = room.ticket_of(user_id).is_some_and(|ticket| {
                    matches!(ticket.status, crate::room::TicketStatus::Admitted { .. })
                });
                let ended = admitted
                    .then(|| room.end(user_id, SessionEnd::Confirmed, now))
                    .flatten();
                (None, ended)
            }
        };
        if let Some(event) = event {
            self.record_room(Some(input), event_id, event, true, batch);
        }
        self.advance_room(event_id, now, batch);
        let outcome = outcome.or_else(|| {
            let ticket = self.rooms.get(event_id)?.ticket(answer_ticket?)?;
            Some(Outcome::Ticket(ticket.clone()))
        });
        if let Some(outcome) = outcome {
            batch.actions.push(Action::Reply {
                input,
                outcome,
                available: 0,
            });
        }
    }

    /// What the clock brings to every waiting room that has something due.
    fn advance_rooms(&mut self, now: Millis, batch: &mut Batch) {
        let due: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.next_due().is_some_and(|due| due <= now))
            .map(|(event_id, _)| event_id.clone())
            .collect();
        for event_id in due {
            self.advance_room(&event_id, now, batch);
        }
    }

    fn advance_room(&mut self, event_id: &str, now: Millis, batch: &mut Batch) {
        let seed = self.seed_for(event_id, now);
        let Some(room) = self.rooms.get_mut(event_id) else {
            return;
        };
        if room.next_due().is_none_or(|due| due > now) {
            return;
        }
        for event in room.advance(now, seed) {
            self.record_room(None, event_id, event, false, batch);
        }
    }

    /// The seed of a shuffle: the runtime's entropy mixed with the room and the time.
    fn seed_for(&self, event_id: &str, now: Millis) -> u64 {
        let room = crate::routing::murmur2(event_id.as_bytes());
        crate::room::mix(self.entropy ^ u64::from(room) ^ now.cast_unsigned())
    }

    /// Log a room's decision (applying it first unless `advance` did).
    fn record_room(
        &mut self,
        input: Option<usize>,
        event_id: &str,
        event: RoomEvent,
        apply: bool,
        batch: &mut Batch,
    ) {
        if apply && let Some(room) = self.rooms.get_mut(event_id) {
            room.apply(&event);
        }
        let tickets = batch.touched_rooms.entry(event_id.to_owned()).or_default();
        tickets.extend(event.ticket());
        batch.actions.push(Action::Record {
            input,
            event: Event::Room(RoomRecorded {
                key: SectionKey::room(event_id),
                event,
            }),
        });
    }

    /// The batch could not be made durable: forget what it changed (sections and holds reload
    /// on use).
    pub fn abandon(&mut self) {
        self.sections.clear();
        self.waitlists.clear();
        self.quotas.clear();
        self.holds.clear();
        self.rooms.clear();
        self.holds_loaded = false;
    }

    /// Expire every hold that ended at or before `now` and is still HELD.
    fn expire_due<S: PartitionStore>(
        &mut self,
        store: &S,
        now: Millis,
        batch: &mut Batch,
    ) -> Result<(), S::Error> {
        self.load_holds(store)?;
        while let Some(hold) = self.holds.first().filter(|hold| hold.expires_at <= now) {
            let hold = hold.clone();
            self.holds.remove(&hold);
            let Some(reservation) = batch.prior(store, hold.id)? else {
                continue;
            };
            self.load(store, &hold.key)?;
            if let Some(expired) = expire(self.sections.get(&hold.key), &reservation, now) {
                self.record(None, expired, batch);
            }
            self.promote_waiting(store, now, batch)?;
        }
        Ok(())
    }

    /// A reservation its section had no room for waits in the section's order when it asked
    /// to (or is refused `waitlist_full`).
    fn waitlist_if_asked(&self, reserve: &crate::model::Reserve, events: &mut [Event]) {
        let Some(Event::ReservationCompleted(completed)) = events.last_mut() else {
            return;
        };
        let waiting = self.waitlists.get(&reserve.key);
        let count = waiting.map_or(0, BTreeMap::len);
        let place = (count < self.waitlist_limit as usize).then(|| {
            waiting
                .and_then(|w| w.keys().next_back())
                .map_or(1, |(last, _)| last + 1)
        });
        if let Some(waiting) = waitlist(completed, reserve, place, self.waitlist_limit) {
            *completed = waiting;
        }
    }

    /// Give the seats that came back in the sections of `batch.freed` to their waiting
    /// reservations that fit, in order.
    fn promote_waiting<S: PartitionStore>(
        &mut self,
        store: &S,
        now: Millis,
        batch: &mut Batch,
    ) -> Result<(), S::Error> {
        while let Some(key) = batch.freed.pop() {
            let candidates: Vec<(ReservationId, u16)> = self
                .waitlists
                .get(&key)
                .map(|waiting| {
                    waiting
                        .iter()
                        .map(|((_, id), seats)| (*id, *seats))
                        .collect()
                })
                .unwrap_or_default();
            for (id, seats) in candidates {
                let available = self.sections.get(&key).map_or(0, SectionState::available);
                if available == 0 {
                    break;
                }
                if u32::from(seats) > available {
                    continue;
                }
                let Some(waiting) = batch.prior(store, id)? else {
                    continue;
                };
                let promoted = self
                    .sections
                    .get(&key)
                    .and_then(|state| promote(state, &waiting, now));
                if let Some(promoted) = promoted {
                    self.record(None, promoted, batch);
                }
            }
        }
        Ok(())
    }

    /// The user's quota counts the reservation's seats if they fit; the reservation goes on to
    /// its section with the verdict, its caller with it.
    fn decide_claim<S: PartitionStore>(
        &mut self,
        store: &S,
        input: usize,
        claim: &ClaimQuota,
        batch: &mut Batch,
    ) -> Result<(), S::Error> {
        let key = claim.quota_key();
        let state = self.quota(store, &key)?;
        let (reserve, after) = quota::claim(&state, claim);
        if let Some(after) = after {
            self.change_quota(key, after, batch);
        }
        batch.actions.push(Action::Forward {
            input: Some(input),
            command: Command::Reserve(reserve),
            with_caller: true,
        });
        Ok(())
    }

    /// The reservation's seats leave its user's quota (if they were counted).
    fn decide_release<S: PartitionStore>(
        &mut self,
        store: &S,
        release: &ReleaseQuota,
        batch: &mut Batch,
    ) -> Result<(), S::Error> {
        let key = release.quota_key();
        let state = self.quota(store, &key)?;
        if let Some(after) = quota::release(&state, release) {
            self.change_quota(key, after, batch);
        }
        Ok(())
    }

    fn quota<S: PartitionStore>(
        &mut self,
        store: &S,
        key: &QuotaKey,
    ) -> Result<QuotaState, S::Error> {
        if let Some(state) = self.quotas.get_mut(key) {
            return Ok(state.clone());
        }
        let state = store.quota(key)?.unwrap_or_default();
        self.quotas.insert(key.clone(), state.clone());
        Ok(state)
    }

    fn change_quota(&mut self, key: QuotaKey, state: QuotaState, batch: &mut Batch) {
        if !batch.touched_quotas.contains(&key) {
            batch.touched_quotas.push(key.clone());
        }
        self.quotas.insert(key, state);
    }

    /// Fold a decided fact in and say what must happen for it.
    fn record(&mut self, input: Option<usize>, event: Event, batch: &mut Batch) {
        let key = event.key().clone();
        self.evolve(&event);
        let mut release = None;
        let mut session_end = None;
        if let Event::ReservationCompleted(completed) = &event {
            batch.note(completed);
            if let Some(hold) = Hold::of(&completed.reservation) {
                self.holds.insert(hold);
            }
            let reservation = &completed.reservation;
            if let Some(place) = reservation.checkout.waitlisted {
                let waiting = self.waitlists.entry(key.clone()).or_default();
                if reservation.status == Status::Waitlisted {
                    waiting.insert((place, reservation.id), reservation.requested_seats);
                } else {
                    waiting.remove(&(place, reservation.id));
                }
            }
            let seats_back = matches!(reservation.status, Status::Cancelled | Status::Expired)
                && !reservation.seats.is_empty();
            if seats_back && !batch.freed.contains(&key) {
                batch.freed.push(key.clone());
            }
            // Seats given back in an event that limits its users leave the user's quota.
            let limited = self
                .sections
                .get(&key)
                .is_some_and(|state| state.rules().max_seats_per_user.is_some());
            let given_back = matches!(
                completed.reservation.status,
                Status::Cancelled | Status::Expired
            );
            if limited && given_back {
                release = Some(release_of(input, &completed.reservation));
            }
            // A confirmed reservation ends its user's session in the event's waiting room.
            let in_room = self
                .sections
                .get(&key)
                .is_some_and(|state| state.rules().waiting_room);
            if in_room && completed.reservation.status == Status::Confirmed {
                session_end = Some(Action::Forward {
                    input,
                    command: Command::Room(RoomCommand::new(
                        &key.event_id,
                        completed.reservation.decided_at,
                        RoomRequest::EndSession {
                            user_id: completed.reservation.user_id.clone(),
                            reservation_id: completed.reservation.id,
                        },
                    )),
                    with_caller: false,
                });
            }
        }
        match batch
            .touched
            .iter_mut()
            .find(|(touched, _)| *touched == key)
        {
            Some((_, change)) => change.add(&event),
            None => {
                let mut change = SectionChange::Rows(Vec::new());
                change.add(&event);
                batch.touched.push((key.clone(), change));
            }
        }
        let available = event.available_after();
        batch.actions.push(Action::Record { input, event });
        batch.actions.push(Action::PublishStatus {
            input,
            key: key.clone(),
            available,
        });
        batch.actions.extend(release);
        batch.actions.extend(session_end);
    }

    /// Before a batch (every earlier one is in the store by now): drop the sections and quotas
    /// not used lately, a section with its waitlist.
    fn turn_caches(&mut self) {
        for key in self.sections.turn().keys() {
            self.waitlists.remove(key);
        }
        self.quotas.turn();
    }

    fn load<S: PartitionStore>(&mut self, store: &S, key: &SectionKey) -> Result<(), S::Error> {
        if !self.sections.touch(key)
            && let Some(state) = store.section(key)?
        {
            let waiting = store
                .waitlist(self.number, key)?
                .into_iter()
                .map(|w| ((w.place, w.id), w.seats))
                .collect();
            self.waitlists.insert(key.clone(), waiting);
            self.sections.insert(key.clone(), state);
        }
        Ok(())
    }

    fn evolve(&mut self, event: &Event) {
        let key = event.key();
        let mut section = self.sections.remove(key);
        evolve(&mut section, event);
        if let Some(section) = section {
            self.sections.insert(key.clone(), section);
        }
    }
}

/// The hand-on that gives a reservation's seats back to its user's quota.
fn release_of(input: Option<usize>, reservation: &Reservation) -> Action {
    Action::Forward {
        input,
        command: Command::ReleaseQuota(ReleaseQuota {
            reservation_id: reservation.id,
            key: reservation.key.clone(),
            user_id: reservation.user_id.clone(),
            requested_at: reservation.decided_at,
        }),
        with_caller: false,
    }
}

/// A partition's store in memory: tests, benchmarks and replays. It is also an interpreter of
/// the actions (everything but the replies, which are the caller's business).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    pub sections: HashMap<SectionKey, SectionState>,
    pub reservations: HashMap<ReservationId, Reservation>,
    pub quotas: HashMap<QuotaKey, QuotaState>,
    /// Each waiting room's header and tickets, by event id.
    pub rooms: BTreeMap<String, (RoomHeader, BTreeMap<TicketId, Ticket>)>,
    /// Every fact recorded, in order.
    pub log: Vec<Event>,
}

impl PartitionStore for MemoryStore {
    type Error = std::convert::Infallible;

    fn section(&self, key: &SectionKey) -> Result<Option<SectionState>, Self::Error> {
        Ok(self.sections.get(key).cloned())
    }

    fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Self::Error> {
        Ok(self.reservations.get(&id).cloned())
    }

    /// Every HELD reservation (a memory store is one partition's).
    fn holds(&self, _partition: u32) -> Result<Vec<Hold>, Self::Error> {
        Ok(self.reservations.values().filter_map(Hold::of).collect())
    }

    fn quota(&self, key: &QuotaKey) -> Result<Option<QuotaState>, Self::Error> {
        Ok(self.quotas.get(key).cloned())
    }

    fn waitlist(&self, _partition: u32, key: &SectionKey) -> Result<Vec<Waiting>, Self::Error> {
        Ok(self
            .reservations
            .values()
            .filter(|r| r.key == *key)
            .filter_map(Waiting::of)
            .collect())
    }

    fn rooms(&self, _partition: u32) -> Result<Vec<(String, RoomState)>, Self::Error> {
        Ok(self
            .rooms
            .iter()
            .map(|(event_id, (header, tickets))| {
                let room = RoomState::restore(*header, tickets.values().cloned());
                (event_id.clone(), room)
            })
            .collect())
    }
}

impl MemoryStore {
    /// Carry out a batch's actions (the replies are left to the caller).
    pub fn commit(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Record { event, .. } => self.log.push(event.clone()),
                Action::StoreSection { key, state, .. } => {
                    self.sections.insert(key.clone(), state.clone());
                }
                Action::StoreOutcome(completed) => {
                    self.reservations
                        .insert(completed.reservation.id, completed.reservation.clone());
                }
                Action::StoreQuota { key, state } => {
                    self.quotas.insert(key.clone(), state.clone());
                }
                Action::StoreRoom {
                    key,
                    header,
                    tickets,
                } => {
                    let room = self
                        .rooms
                        .entry(key.event_id.clone())
                        .or_insert_with(|| (*header, BTreeMap::new()));
                    room.0 = *header;
                    room.1
                        .extend(tickets.iter().map(|ticket| (ticket.id, ticket.clone())));
                }
                Action::PublishStatus { .. } | Action::Reply { .. } | Action::Forward { .. } => {}
            }
        }
    }

    /// A store rebuilt from recorded facts only (what a replay of the log gives).
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut store = Self::default();
        for event in events {
            store.apply(event);
        }
        store
    }

    /// Fold one recorded fact in.
    pub fn apply(&mut self, event: &Event) {
        if let Event::Room(recorded) = event {
            let event_id = &recorded.key.event_id;
            let mut room = match (self.rooms.remove(event_id), &recorded.event) {
                (Some((header, tickets)), _) => RoomState::restore(header, tickets.into_values()),
                (None, RoomEvent::Opened { rules, .. }) => RoomState::new(*rules),
                (None, _) => return,
            };
            room.apply(&recorded.event);
            let tickets = room.tickets().map(|t| (t.id, t.clone())).collect();
            self.rooms
                .insert(event_id.clone(), (room.header(), tickets));
            self.log.push(event.clone());
            return;
        }
        let mut section = self.sections.remove(event.key());
        evolve(&mut section, event);
        if let Some(section) = section {
            self.sections.insert(event.key().clone(), section);
        }
        if let Event::ReservationCompleted(completed) = event {
            self.reservations
                .insert(completed.reservation.id, completed.reservation.clone());
        }
        self.log.push(event.clone());
    }
}
