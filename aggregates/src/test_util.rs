//! Test helpers shared with other crates (feature `test-util`): an in-memory partition and a
//! given/when/then harness for decisions.

use std::collections::HashMap;

use crate::decision::{Decision, decide, evolve};
use crate::model::{
    Command, Event, InitSection, Layout, Millis, Reservation, ReservationId, Reserve, SeatRequest,
    SectionKey,
};
use crate::section::SectionState;

/// One partition's state kept in maps: sections and the outcome of every reservation id.
#[derive(Debug, Default, Clone)]
pub struct MemoryPartition {
    pub sections: HashMap<SectionKey, SectionState>,
    pub reservations: HashMap<ReservationId, Reservation>,
    /// Every event recorded, in order.
    pub log: Vec<Event>,
}

impl MemoryPartition {
    /// Decide a command and record what it decided.
    pub fn handle(&mut self, command: &Command, now: Millis) -> Decision {
        let prior = command
            .reservation_id()
            .and_then(|id| self.reservations.get(&id));
        let decision = decide(self.sections.get(command.key()), prior, command, now);
        if let Decision::Append(events) = &decision {
            for event in events {
                self.apply(event);
            }
        }
        decision
    }

    /// Apply one recorded event.
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

    /// A partition rebuilt from recorded events only.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut partition = Self::default();
        for event in events {
            partition.apply(event);
        }
        partition
    }
}

/// `given(events).when(command).then(decision)`.
pub fn given(events: impl IntoIterator<Item = Event>) -> Given {
    Given {
        partition: MemoryPartition::replay(events.into_iter().collect::<Vec<_>>().iter()),
    }
}

#[derive(Debug)]
pub struct Given {
    partition: MemoryPartition,
}

impl Given {
    pub fn when(mut self, command: Command) -> When {
        let decision = self.partition.handle(&command, NOW);
        When { decision }
    }
}

#[derive(Debug)]
pub struct When {
    pub decision: Decision,
}

impl When {
    #[track_caller]
    pub fn then(self, expected: Decision) {
        assert_eq!(self.decision, expected);
    }
}

/// The decision time the harness stamps.
pub const NOW: Millis = 1_700_000_000_000;

/// A section key in the test event.
pub fn key(section: &str) -> SectionKey {
    SectionKey::new("evt-1", section)
}

/// An init command for a `rows x seats` section.
pub fn init(section: &str, rows: u16, seats: u16) -> Command {
    Command::InitSection(InitSection {
        key: key(section),
        event_name: "Test event".into(),
        position: 0,
        layout: Layout::new(rows, seats).expect("valid test layout"),
        requested_at: NOW,
    })
}

/// A reserve command with a fresh reservation id.
pub fn reserve(section: &str, user: &str, request: SeatRequest) -> Command {
    Command::Reserve(Reserve {
        reservation_id: ReservationId::new_v7(),
        key: key(section),
        user_id: user.into(),
        request,
        requested_at: NOW,
    })
}
