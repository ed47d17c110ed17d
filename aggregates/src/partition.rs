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

use crate::decision::{Decision, decide, evolve, expire, promote, waitlist};
use crate::model::{
    ClaimQuota, Command, Completed, Event, Millis, Outcome, QuotaKey, QuotaVerdict, ReleaseQuota,
    Reservation, ReservationId, SectionKey, Status,
};
use crate::quota::{self, QuotaState};
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
    /// The state of a section the batch changed, as it is at the end of the batch.
    StoreSection {
        key: SectionKey,
        state: SectionState,
    },
    /// The outcome of a reservation the batch decided, as it is at the end of the batch (the
    /// de-duplication table: a redelivered command is answered with it).
    StoreOutcome(Completed),
    /// The state of a quota the batch changed, as it is at the end of the batch (empty: no
    /// reservation counted; it may be deleted).
    StoreQuota { key: QuotaKey, state: QuotaState },
}

/// What a partition owner keeps between batches: the sections it has read or decided (a cache
/// of the store, valid while every batch it decided was committed) with their waitlists, and
/// its holds by end time.
#[derive(Debug, Clone)]
pub struct Partition {
    number: u32,
    sections: HashMap<SectionKey, SectionState>,
    /// Each cached section's WAITLISTED reservations by place, with the seats they ask for
    /// (read with the section). A place is unique among those waiting; it may be given again
    /// once its holder moved on, so an entry is known by place and id together.
    waitlists: HashMap<SectionKey, BTreeMap<(u64, ReservationId), u16>>,
    /// Most requests waiting in one section.
    waitlist_limit: u32,
    /// The quotas it has read or decided (a cache of the store, like `sections`).
    quotas: HashMap<QuotaKey, QuotaState>,
    /// Holds of reservations that may still be HELD, by end time. An entry whose reservation
    /// moved on (confirmed, cancelled) is dropped when it comes due.
    holds: BTreeSet<Hold>,
    /// Whether `holds` was read from the store (at the first batch, and after an abandon).
    holds_loaded: bool,
}

/// A batch's decisions so far.
#[derive(Default)]
struct Batch {
    actions: Vec<Action>,
    touched: Vec<SectionKey>,
    touched_quotas: Vec<QuotaKey>,
    /// Sections whose seats came back in the last decision: their waitlists move.
    freed: Vec<SectionKey>,
    decided: Vec<Completed>,
    decided_index: HashMap<ReservationId, usize>,
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
            sections: HashMap::new(),
            waitlists: HashMap::new(),
            waitlist_limit: DEFAULT_WAITLIST_PER_SECTION,
            quotas: HashMap::new(),
            holds: BTreeSet::new(),
            holds_loaded: false,
        }
    }

    /// The same owner with at most `limit` requests waiting per section.
    pub fn with_waitlist_limit(mut self, limit: u32) -> Self {
        self.waitlist_limit = limit;
        self
    }

    /// When the next hold ends, if any: the runtime decides an empty batch then (a tick).
    /// Known once the holds are loaded ([`Partition::load_holds`], or any batch).
    pub fn next_expiry(&self) -> Option<Millis> {
        self.holds.first().map(|hold| hold.expires_at)
    }

    /// Read the partition's holds from the store, unless they are in memory already (a new
    /// owner, or one that abandoned a batch).
    pub fn load_holds<S: PartitionStore>(&mut self, store: &S) -> Result<(), S::Error> {
        if !self.holds_loaded {
            self.holds = store.holds(self.number)?.into_iter().collect();
            self.holds_loaded = true;
        }
        Ok(())
    }

    /// Decide a batch of commands at `now`: first every hold that ended at or before `now`
    /// expires, then each command in order. Every command gets exactly one [`Action::Reply`],
    /// or an [`Action::Forward`] with its caller, except a [`ReleaseQuota`] (no one waits for
    /// it); the stores come last, once per changed section, quota and reservation. With no
    /// commands this is the partition's clock: the expiries alone.
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
        self.expire_due(store, now, &mut batch)?;
        for (input, command) in commands.iter().enumerate() {
            match command {
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
            ..
        } = batch;
        for key in touched {
            if let Some(state) = self.sections.get(&key) {
                actions.push(Action::StoreSection {
                    state: state.clone(),
                    key,
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
        actions.extend(decided.into_iter().map(Action::StoreOutcome));
        Ok(actions)
    }

    /// The batch could not be made durable: forget what it changed (sections and holds reload
    /// on use).
    pub fn abandon(&mut self) {
        self.sections.clear();
        self.waitlists.clear();
        self.quotas.clear();
        self.holds.clear();
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
        if let Some(state) = self.quotas.get(key) {
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
        }
        let available = event.available_after();
        batch.actions.push(Action::Record { input, event });
        batch.actions.push(Action::PublishStatus {
            input,
            key: key.clone(),
            available,
        });
        batch.actions.extend(release);
        if !batch.touched.contains(&key) {
            batch.touched.push(key);
        }
    }

    fn load<S: PartitionStore>(&mut self, store: &S, key: &SectionKey) -> Result<(), S::Error> {
        if !self.sections.contains_key(key)
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
}

impl MemoryStore {
    /// Carry out a batch's actions (the replies are left to the caller).
    pub fn commit(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Record { event, .. } => self.log.push(event.clone()),
                Action::StoreSection { key, state } => {
                    self.sections.insert(key.clone(), state.clone());
                }
                Action::StoreOutcome(completed) => {
                    self.reservations
                        .insert(completed.reservation.id, completed.reservation.clone());
                }
                Action::StoreQuota { key, state } => {
                    self.quotas.insert(key.clone(), state.clone());
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
