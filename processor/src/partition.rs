//! The decision state of one partition: its sections (cached from the store) and what the batch
//! being decided has changed so far. The embedded worker and the Kafka seat processor both decide
//! through it, then write the batch their own way and call [`PartitionState::committed`] or
//! [`PartitionState::abandon`].

use std::collections::HashMap;

use seatflow_aggregates::{
    Command, Decision, Event, Millis, Outcome, Reservation, ReservationId, SectionKey,
    SectionState, decide, evolve,
};
use tracing::warn;

use crate::store::{Store, StoreError};

/// One command decided: the answer for its caller and the facts to record (possibly none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub outcome: Outcome,
    pub events: Vec<Event>,
}

#[derive(Debug)]
pub struct PartitionState {
    partition: u32,
    store: Store,
    sections: HashMap<SectionKey, SectionState>,
    touched: Vec<SectionKey>,
    decided: HashMap<ReservationId, Reservation>,
}

impl PartitionState {
    pub fn new(partition: u32, store: Store) -> Self {
        Self {
            partition,
            store,
            sections: HashMap::new(),
            touched: Vec::new(),
            decided: HashMap::new(),
        }
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Decide one command against the state including everything decided earlier in the batch.
    pub fn decide(&mut self, command: &Command, now: Millis) -> Result<Decided, StoreError> {
        let key = command.key();
        if !self.sections.contains_key(key)
            && let Some(state) = self.store.section(key)?
        {
            self.sections.insert(key.clone(), state);
        }
        let prior = match command.reservation_id() {
            None => None,
            Some(id) => match self.decided.get(&id) {
                Some(reservation) => Some(reservation.clone()),
                None => self.store.reservation(id)?,
            },
        };
        let decided = match decide(self.sections.get(key), prior.as_ref(), command, now) {
            Decision::Append(events) => {
                let mut outcome = Outcome::SectionReady;
                for event in &events {
                    let mut section = self.sections.remove(key);
                    evolve(&mut section, event);
                    if let Some(section) = section {
                        self.sections.insert(key.clone(), section);
                    }
                    if let Event::ReservationCompleted(completed) = event {
                        self.decided
                            .insert(completed.reservation.id, completed.reservation.clone());
                        outcome = Outcome::Reservation(completed.reservation.clone());
                    }
                }
                if !events.is_empty() && !self.touched.contains(key) {
                    self.touched.push(key.clone());
                }
                Decided { outcome, events }
            }
            Decision::AlreadyDecided(reservation) => Decided {
                outcome: Outcome::Reservation(reservation),
                events: Vec::new(),
            },
            Decision::Refused(rejection) => {
                if matches!(command, Command::InitSection(_)) {
                    warn!(section = %key, %rejection, "section initialisation refused");
                }
                Decided {
                    outcome: Outcome::Refused(rejection),
                    events: Vec::new(),
                }
            }
        };
        Ok(decided)
    }

    /// The current state of every section the batch changed.
    pub fn changed_sections(&self) -> Vec<(SectionKey, SectionState)> {
        self.touched
            .iter()
            .filter_map(|key| {
                self.sections
                    .get(key)
                    .map(|state| (key.clone(), state.clone()))
            })
            .collect()
    }

    /// Every reservation outcome the batch decided.
    pub fn changed_reservations(&self) -> Vec<Reservation> {
        self.decided.values().cloned().collect()
    }

    /// The available count of a section as this partition knows it.
    pub fn available(&mut self, key: &SectionKey) -> Result<Option<u32>, StoreError> {
        if let Some(state) = self.sections.get(key) {
            return Ok(Some(state.available()));
        }
        Ok(self.store.section(key)?.map(|state| state.available()))
    }

    /// The batch is on disk: start the next one.
    pub fn committed(&mut self) {
        self.touched.clear();
        self.decided.clear();
    }

    /// The batch could not be written: forget everything not on disk (sections reload on use).
    pub fn abandon(&mut self) {
        self.sections.clear();
        self.committed();
    }
}
