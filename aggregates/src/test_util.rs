//! Test helpers shared with other crates (feature `test-util`): a partition over the in-memory
//! store, deciding through the same [`Partition::decide_batch`] as every runtime, and a
//! given/when/then harness for decisions.

use crate::decision::Decision;
use crate::model::{
    Command, Event, InitSection, Layout, Millis, Outcome, Reserve, SeatRequest, SectionKey,
};
use crate::partition::{Action, MemoryStore, Partition};

/// One partition deciding one command per batch over a [`MemoryStore`].
#[derive(Debug, Default, Clone)]
pub struct MemoryPartition {
    partition: Partition,
    pub store: MemoryStore,
}

impl MemoryPartition {
    /// Decide one command as a batch of one, commit its actions, and return them.
    pub fn actions(&mut self, command: &Command, now: Millis) -> Vec<Action> {
        let actions =
            match self
                .partition
                .decide_batch(&self.store, std::slice::from_ref(command), now)
            {
                Ok(actions) => actions,
                Err(never) => match never {},
            };
        self.store.commit(&actions);
        actions
    }

    /// Decide an empty batch at `now` (the partition's clock), commit its actions, and return
    /// them.
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        let actions = match self.partition.decide_batch(&self.store, &[], now) {
            Ok(actions) => actions,
            Err(never) => match never {},
        };
        self.store.commit(&actions);
        actions
    }

    /// The partition owner that decides (its holds, its cached sections).
    pub fn owner(&self) -> &Partition {
        &self.partition
    }

    /// The same store under a new owner, as after a restart: nothing in memory.
    pub fn restarted(&self) -> Self {
        Self {
            partition: Partition::new(0),
            store: self.store.clone(),
        }
    }

    /// Decide one command and say what was decided, in the terms of [`crate::decide`].
    pub fn handle(&mut self, command: &Command, now: Millis) -> Decision {
        let actions = self.actions(command, now);
        let events: Vec<Event> = actions
            .iter()
            .filter_map(|action| match action {
                Action::Record { event, .. } => Some(event.clone()),
                _ => None,
            })
            .collect();
        let outcome = actions.into_iter().find_map(|action| match action {
            Action::Reply { outcome, .. } => Some(outcome),
            _ => None,
        });
        match outcome {
            _ if !events.is_empty() => Decision::Append(events),
            Some(Outcome::Reservation(first)) => Decision::AlreadyDecided(first),
            Some(Outcome::Refused(rejection)) => Decision::Refused(rejection),
            Some(Outcome::SectionReady) => Decision::Append(Vec::new()),
            None => panic!("a batch answers every command"),
        }
    }

    /// A partition rebuilt from recorded events only.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        Self {
            partition: Partition::new(0),
            store: MemoryStore::replay(events),
        }
    }

    /// Every fact recorded, in order.
    pub fn log(&self) -> &[Event] {
        &self.store.log
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
    init_held(section, rows, seats, 0)
}

/// An init command for a `rows x seats` section whose reservations are held `hold_seconds`.
pub fn init_held(section: &str, rows: u16, seats: u16, hold_seconds: u32) -> Command {
    Command::InitSection(InitSection {
        key: key(section),
        event_name: "Test event".into(),
        position: 0,
        layout: Layout::new(rows, seats).expect("valid test layout"),
        hold_seconds,
        requested_at: NOW,
    })
}

/// `user` cancels `reservation`.
pub fn cancel_of(reservation: &crate::model::Reservation, user: &str) -> Command {
    Command::Cancel(crate::model::Cancel {
        reservation_id: reservation.id,
        key: reservation.key.clone(),
        user_id: user.into(),
        requested_at: NOW,
    })
}

/// A reserve command with a fresh reservation id.
pub fn reserve(section: &str, user: &str, request: SeatRequest) -> Command {
    Command::Reserve(Reserve {
        reservation_id: crate::model::ReservationId::new_v7(),
        key: key(section),
        user_id: user.into(),
        request,
        requested_at: NOW,
    })
}
