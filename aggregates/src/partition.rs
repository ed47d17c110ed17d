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

use std::collections::HashMap;

use crate::decision::{Decision, decide, evolve};
use crate::model::{
    Command, Completed, Event, Millis, Outcome, Reservation, ReservationId, SectionKey,
};
use crate::section::SectionState;

/// Read access to what a partition has stored: the last committed state of its sections and the
/// outcome of every reservation id it decided.
pub trait PartitionStore {
    type Error;
    fn section(&self, key: &SectionKey) -> Result<Option<SectionState>, Self::Error>;
    fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Self::Error>;
}

/// What a batch makes happen, in the order it must happen. The input index refers to the
/// command slice given to [`Partition::decide_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A decided fact: append it to the partition's log (embedded) or to
    /// `reservation-completed` (Kafka). `input` is the command it came from.
    Record { input: usize, event: Event },
    /// The section's available count after a fact: the pre-filter and `section-status` follow it.
    PublishStatus {
        input: usize,
        key: SectionKey,
        available: u32,
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
}

/// What a partition owner keeps between batches: the sections it has read or decided (a cache
/// of the store, valid while every batch it decided was committed).
#[derive(Debug, Default, Clone)]
pub struct Partition {
    sections: HashMap<SectionKey, SectionState>,
}

impl Partition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decide a batch of commands at `now`. Every command gets exactly one
    /// [`Action::Reply`]; the stores come last, once per changed section and reservation.
    pub fn decide_batch<S: PartitionStore>(
        &mut self,
        store: &S,
        commands: &[Command],
        now: Millis,
    ) -> Result<Vec<Action>, S::Error> {
        let mut actions = Vec::with_capacity(commands.len() * 3);
        let mut touched: Vec<SectionKey> = Vec::new();
        let mut decided: Vec<Completed> = Vec::new();
        let mut decided_index: HashMap<ReservationId, usize> = HashMap::new();
        for (input, command) in commands.iter().enumerate() {
            let key = command.key();
            self.load(store, key)?;
            let prior = match command.reservation_id() {
                None => None,
                Some(id) => match decided_index.get(&id) {
                    Some(&at) => Some(decided[at].reservation.clone()),
                    None => store.reservation(id)?,
                },
            };
            let section = self.sections.get(key);
            let outcome = match decide(section, prior.as_ref(), command, now) {
                Decision::Append(events) => {
                    let mut outcome = Outcome::SectionReady;
                    for event in events {
                        self.evolve(&event);
                        if !touched.contains(key) {
                            touched.push(key.clone());
                        }
                        if let Event::ReservationCompleted(completed) = &event {
                            outcome = Outcome::Reservation(completed.reservation.clone());
                            match decided_index.get(&completed.reservation.id) {
                                Some(&at) => decided[at] = completed.clone(),
                                None => {
                                    decided_index.insert(completed.reservation.id, decided.len());
                                    decided.push(completed.clone());
                                }
                            }
                        }
                        let available = event.available_after();
                        actions.push(Action::Record { input, event });
                        actions.push(Action::PublishStatus {
                            input,
                            key: key.clone(),
                            available,
                        });
                    }
                    outcome
                }
                Decision::AlreadyDecided(reservation) => Outcome::Reservation(reservation),
                Decision::Refused(rejection) => Outcome::Refused(rejection),
            };
            let available = self.sections.get(key).map_or(0, SectionState::available);
            actions.push(Action::Reply {
                input,
                outcome,
                available,
            });
        }
        for key in touched {
            if let Some(state) = self.sections.get(&key) {
                actions.push(Action::StoreSection {
                    state: state.clone(),
                    key,
                });
            }
        }
        actions.extend(decided.into_iter().map(Action::StoreOutcome));
        Ok(actions)
    }

    /// The batch could not be made durable: forget what it changed (sections reload on use).
    pub fn abandon(&mut self) {
        self.sections.clear();
    }

    fn load<S: PartitionStore>(&mut self, store: &S, key: &SectionKey) -> Result<(), S::Error> {
        if !self.sections.contains_key(key)
            && let Some(state) = store.section(key)?
        {
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

/// A partition's store in memory: tests, benchmarks and replays. It is also an interpreter of
/// the actions (everything but the replies, which are the caller's business).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    pub sections: HashMap<SectionKey, SectionState>,
    pub reservations: HashMap<ReservationId, Reservation>,
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
                Action::PublishStatus { .. } | Action::Reply { .. } => {}
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
