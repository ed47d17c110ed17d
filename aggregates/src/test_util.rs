//! Test helpers shared with other crates (feature `test-util`): a partition over the in-memory
//! store, deciding through the same [`Partition::decide_batch`] as every runtime, and a
//! given/when/then harness for decisions.

use crate::decision::Decision;
use crate::model::{
    Command, Event, InitSection, Layout, Millis, Outcome, QuotaVerdict, Reserve, SaleRules,
    SeatRequest, SectionKey,
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

    /// `owner` deciding over `store`.
    pub fn with_owner(owner: Partition, store: MemoryStore) -> Self {
        Self {
            partition: owner,
            store,
        }
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
        let handed_on = actions.iter().find_map(|action| match action {
            Action::Forward {
                command,
                with_caller: true,
                ..
            } => Some(command.clone()),
            _ => None,
        });
        if let Some(command) = handed_on {
            return Decision::Forward(command);
        }
        let outcome = actions.into_iter().find_map(|action| match action {
            Action::Reply { outcome, .. } => Some(outcome),
            _ => None,
        });
        match outcome {
            _ if !events.is_empty() => Decision::Append(events),
            Some(Outcome::Reservation(first)) => Decision::AlreadyDecided(first),
            Some(Outcome::Refused(rejection)) => Decision::Refused(rejection),
            Some(Outcome::SectionReady) => Decision::Append(Vec::new()),
            Some(Outcome::Ticket(ticket)) => panic!("a section answered with a ticket: {ticket:?}"),
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

/// Several partitions over memory stores, each command decided by the partition it routes to,
/// and the commands they hand on to each other waiting in flight until delivered (in any order
/// a test chooses): the per-user limit's saga without a runtime.
#[derive(Debug, Clone)]
pub struct MemoryCluster {
    pub partitions: Vec<MemoryPartition>,
    /// Handed-on commands not delivered yet.
    pub in_flight: Vec<Command>,
}

impl MemoryCluster {
    pub fn new(partitions: u32) -> Self {
        Self {
            partitions: (0..partitions)
                .map(|number| MemoryPartition {
                    partition: Partition::new(number),
                    store: MemoryStore::default(),
                })
                .collect(),
            in_flight: Vec::new(),
        }
    }

    /// The same partitions keeping about `sections` sections and `quotas` quotas between
    /// batches (new owners over the same stores, as after a restart).
    pub fn with_cache(mut self, sections: usize, quotas: usize) -> Self {
        for (number, partition) in (0u32..).zip(&mut self.partitions) {
            partition.partition = Partition::new(number).with_cache(sections, quotas);
        }
        self
    }

    /// Decide `command` at its partition; what it hands on goes in flight. The answer, if the
    /// batch made one here.
    pub fn submit(&mut self, command: &Command, now: Millis) -> Option<Outcome> {
        let partition = crate::partition_of_command(command, self.partitions.len() as u32);
        let actions = self.partitions[partition as usize].actions(command, now);
        self.absorb(actions)
    }

    /// Deliver the `nth` command in flight (modulo their number); its answer, if any.
    pub fn deliver(&mut self, nth: usize, now: Millis) -> Option<Outcome> {
        if self.in_flight.is_empty() {
            return None;
        }
        let command = self.in_flight.remove(nth % self.in_flight.len());
        self.submit(&command, now)
    }

    /// Deliver everything in flight, first in first; the last answer made.
    pub fn settle(&mut self, now: Millis) -> Option<Outcome> {
        let mut last = None;
        while !self.in_flight.is_empty() {
            if let Some(outcome) = self.deliver(0, now) {
                last = Some(outcome);
            }
        }
        last
    }

    /// Every partition's clock at `now`.
    pub fn tick(&mut self, now: Millis) {
        for index in 0..self.partitions.len() {
            let actions = self.partitions[index].tick(now);
            self.absorb(actions);
        }
    }

    /// Every reservation decided, over all partitions.
    pub fn reservations(&self) -> impl Iterator<Item = &crate::model::Reservation> {
        self.partitions
            .iter()
            .flat_map(|partition| partition.store.reservations.values())
    }

    /// The stored quota of `user` in the test event.
    pub fn quota_used(&self, user: &str) -> u32 {
        let key = crate::model::QuotaKey::new(key("A").event_id, user);
        self.partitions
            .iter()
            .filter_map(|partition| partition.store.quotas.get(&key))
            .map(crate::quota::QuotaState::used)
            .sum()
    }

    fn absorb(&mut self, actions: Vec<Action>) -> Option<Outcome> {
        let mut answer = None;
        for action in actions {
            match action {
                Action::Forward { command, .. } => self.in_flight.push(command),
                Action::Reply { outcome, .. } => answer = Some(outcome),
                _ => {}
            }
        }
        answer
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
    init_with(
        section,
        rows,
        seats,
        SaleRules {
            hold_seconds,
            ..SaleRules::default()
        },
    )
}

/// An init command for a `rows x seats` section decided by `rules`.
pub fn init_with(section: &str, rows: u16, seats: u16, rules: SaleRules) -> Command {
    Command::InitSection(InitSection {
        key: key(section),
        event_name: "Test event".into(),
        position: 0,
        layout: Layout::new(rows, seats).expect("valid test layout"),
        rules,
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
        quota: QuotaVerdict::Unchecked,
        waitlist: false,
    })
}

/// A reserve command for `count` adjacent seats that waits when the section has no room.
pub fn reserve_or_wait(section: &str, user: &str, count: u16) -> Command {
    let Command::Reserve(mut reserve) = reserve(section, user, SeatRequest::Adjacent(count)) else {
        unreachable!("reserve makes a Reserve")
    };
    reserve.waitlist = true;
    Command::Reserve(reserve)
}
