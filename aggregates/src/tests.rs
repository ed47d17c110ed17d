//! Given/when/then tests of the decision rules and property tests of the invariants.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::test_util::{MemoryPartition, NOW, cancel_of, given, init, key, reserve};
use crate::{
    Action, Cancel, Checkout, Command, Completed, Decision, Event, Layout, MemoryStore, Outcome,
    Partition, Rejection, Reservation, ReservationId, SaleRules, Seat, SeatRequest, SectionChange,
    SectionInitialized, SectionState, Status,
};

fn initialized(section: &str, rows: u16, seats: u16) -> Event {
    Event::SectionInitialized(SectionInitialized {
        key: key(section),
        event_name: "Test event".into(),
        position: 0,
        layout: Layout::new(rows, seats).expect("layout"),
        rules: SaleRules::default(),
        at: NOW,
    })
}

fn outcome(decision: &Decision) -> &Reservation {
    match decision {
        Decision::Append(events) => match events.last() {
            Some(Event::ReservationCompleted(completed)) => &completed.reservation,
            other => panic!("expected a reservation outcome, got {other:?}"),
        },
        Decision::AlreadyDecided(reservation) => reservation,
        Decision::Refused(rejection) => panic!("refused: {rejection}"),
        Decision::Forward(command) => panic!("handed on: {command:?}"),
    }
}

#[test]
fn initialising_a_new_section_records_it() {
    given([])
        .when(init("A", 2, 3))
        .then(Decision::Append(vec![initialized("A", 2, 3)]));
}

#[test]
fn initialising_again_with_the_same_layout_is_a_no_op() {
    given([initialized("A", 2, 3)])
        .when(init("A", 2, 3))
        .then(Decision::Append(vec![]));
}

#[test]
fn initialising_again_with_another_layout_is_refused_not_a_reset() {
    given([initialized("A", 2, 3)])
        .when(init("A", 5, 5))
        .then(Decision::Refused(Rejection::SectionExists));
}

#[test]
fn reserving_in_an_unknown_section_is_rejected_and_recorded() {
    let decision = given([])
        .when(reserve("A", "u1", SeatRequest::Adjacent(1)))
        .decision;
    let reservation = outcome(&decision);
    assert_eq!(reservation.status, Status::Rejected);
    assert_eq!(reservation.reason, Some(Rejection::UnknownSection));
}

#[test]
fn a_confirmed_reservation_holds_its_seats_and_lowers_the_count() {
    let mut partition = MemoryPartition::default();
    partition.handle(&init("A", 2, 4), NOW);
    let decision = partition.handle(&reserve("A", "u1", SeatRequest::Adjacent(3)), NOW);
    let Decision::Append(events) = &decision else {
        panic!("expected events, got {decision:?}");
    };
    let Some(Event::ReservationCompleted(Completed {
        reservation,
        available,
    })) = events.first()
    else {
        panic!("expected a completion");
    };
    assert_eq!(reservation.status, Status::Confirmed);
    assert_eq!(
        reservation.seats,
        (1..=3).map(|s| Seat::new(1, s)).collect::<Vec<_>>()
    );
    assert_eq!(*available, 5);
    assert_eq!(partition.store.sections[&key("A")].available(), 5);
}

#[test]
fn a_redelivered_reservation_is_answered_with_its_first_outcome() {
    let mut partition = MemoryPartition::default();
    partition.handle(&init("A", 1, 2), NOW);
    let command = reserve("A", "u1", SeatRequest::Adjacent(2));
    let first = outcome(&partition.handle(&command, NOW)).clone();
    // Free the seats through another path would not matter: the id is decided.
    let again = partition.handle(&command, NOW + 5);
    assert_eq!(again, Decision::AlreadyDecided(first));
    assert_eq!(partition.log().len(), 2, "nothing new is recorded");
}

#[test]
fn a_rejected_reservation_stays_rejected_when_redelivered_after_seats_free_up() {
    let mut partition = MemoryPartition::default();
    partition.handle(&init("A", 1, 1), NOW);
    let holder =
        outcome(&partition.handle(&reserve("A", "u1", SeatRequest::Adjacent(1)), NOW)).clone();
    let late = reserve("A", "u2", SeatRequest::Adjacent(1));
    assert_eq!(
        outcome(&partition.handle(&late, NOW)).reason,
        Some(Rejection::SoldOut)
    );
    partition.handle(&cancel_of(&holder, "u1"), NOW);
    let again = partition.handle(&late, NOW);
    assert_eq!(outcome(&again).status, Status::Rejected);
}

#[test]
fn cancelling_frees_the_seats_and_is_idempotent() {
    let mut partition = MemoryPartition::default();
    partition.handle(&init("A", 1, 3), NOW);
    let held =
        outcome(&partition.handle(&reserve("A", "u1", SeatRequest::Adjacent(3)), NOW)).clone();
    let cancelled = outcome(&partition.handle(&cancel_of(&held, "u1"), NOW + 1)).clone();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(cancelled.seats, held.seats);
    assert_eq!(cancelled.cancelled_at, Some(NOW + 1));
    assert_eq!(partition.store.sections[&key("A")].available(), 3);
    assert_eq!(
        partition.handle(&cancel_of(&held, "u1"), NOW + 2),
        Decision::AlreadyDecided(cancelled)
    );
    assert_eq!(partition.store.sections[&key("A")].available(), 3);
}

#[test]
fn only_the_owner_may_cancel_and_only_a_confirmed_reservation() {
    let mut partition = MemoryPartition::default();
    partition.handle(&init("A", 1, 1), NOW);
    let held =
        outcome(&partition.handle(&reserve("A", "u1", SeatRequest::Adjacent(1)), NOW)).clone();
    assert_eq!(
        partition.handle(&cancel_of(&held, "intruder"), NOW),
        Decision::Refused(Rejection::NotOwner)
    );
    let rejected =
        outcome(&partition.handle(&reserve("A", "u2", SeatRequest::Adjacent(1)), NOW)).clone();
    assert_eq!(
        partition.handle(&cancel_of(&rejected, "u2"), NOW),
        Decision::Refused(Rejection::NotCancellable {
            status: Status::Rejected
        })
    );
    let unknown = Reservation {
        id: ReservationId::new_v7(),
        ..held
    };
    assert_eq!(
        partition.handle(&cancel_of(&unknown, "u1"), NOW),
        Decision::Refused(Rejection::UnknownReservation)
    );
}

/// A random workload on one partition of two small sections.
#[derive(Clone, Debug)]
enum Step {
    Adjacent {
        section: usize,
        user: u8,
        count: u16,
    },
    Picked {
        section: usize,
        user: u8,
        seats: Vec<(u16, u16)>,
    },
    Cancel {
        nth_confirmed: usize,
    },
    Redeliver {
        nth_command: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize, 0..5u8, 1..6u16)
            .prop_map(|(section, user, count)| Step::Adjacent { section, user, count }),
        2 => (0..2usize, 0..5u8, prop::collection::vec((1..5u16, 1..8u16), 1..4))
            .prop_map(|(section, user, seats)| Step::Picked { section, user, seats }),
        1 => any::<usize>().prop_map(|nth_confirmed| Step::Cancel { nth_confirmed }),
        1 => any::<usize>().prop_map(|nth_command| Step::Redeliver { nth_command }),
    ]
}

const SECTIONS: [&str; 2] = ["A", "B"];

fn run(steps: &[Step]) -> MemoryPartition {
    run_recording(steps).0
}

/// The partition after `steps`, decided one command per batch, and every command it decided.
fn run_recording(steps: &[Step]) -> (MemoryPartition, Vec<Command>) {
    let mut partition = MemoryPartition::default();
    let mut commands: Vec<Command> = vec![init("A", 4, 7), init("B", 3, 5)];
    for command in &commands {
        partition.handle(command, NOW);
    }
    for step in steps {
        let command = match step {
            Step::Adjacent {
                section,
                user,
                count,
            } => reserve(
                SECTIONS[*section],
                &format!("u{user}"),
                SeatRequest::Adjacent(*count),
            ),
            Step::Picked {
                section,
                user,
                seats,
            } => reserve(
                SECTIONS[*section],
                &format!("u{user}"),
                SeatRequest::Picked(seats.iter().map(|(r, s)| Seat::new(*r, *s)).collect()),
            ),
            Step::Cancel { nth_confirmed } => {
                let confirmed: Vec<&Reservation> = partition
                    .store
                    .reservations
                    .values()
                    .filter(|r| r.status == Status::Confirmed)
                    .collect();
                if confirmed.is_empty() {
                    continue;
                }
                let chosen = confirmed[nth_confirmed % confirmed.len()];
                cancel_of(chosen, &chosen.user_id.clone())
            }
            Step::Redeliver { nth_command } => {
                if commands.is_empty() {
                    continue;
                }
                commands[nth_command % commands.len()].clone()
            }
        };
        partition.handle(&command, NOW);
        commands.push(command);
    }
    (partition, commands)
}

proptest! {
    #[test]
    fn no_seat_is_ever_held_by_two_reservations(steps in prop::collection::vec(step(), 0..120)) {
        let partition = run(&steps);
        let mut holder: HashMap<(String, Seat), ReservationId> = HashMap::new();
        for reservation in partition.store.reservations.values() {
            if reservation.status != Status::Confirmed {
                continue;
            }
            for seat in &reservation.seats {
                let previous = holder.insert((reservation.key.section.clone(), *seat), reservation.id);
                prop_assert!(previous.is_none(), "{seat} held twice");
            }
        }
        for (section_key, state) in &partition.store.sections {
            for seat in state.held_seats() {
                prop_assert!(holder.contains_key(&(section_key.section.clone(), seat)),
                    "{seat} is held in the bitmap but by no confirmed reservation");
            }
        }
    }

    #[test]
    fn available_is_capacity_minus_held(steps in prop::collection::vec(step(), 0..120)) {
        let partition = run(&steps);
        for (section_key, state) in &partition.store.sections {
            let held: u32 = partition
                .store
                .reservations
                .values()
                .filter(|r| r.status == Status::Confirmed && &r.key == section_key)
                .map(|r| r.seats.len() as u32)
                .sum();
            prop_assert_eq!(state.available(), state.layout().capacity() - held);
            prop_assert_eq!(state.held_count(), state.held_seats().count() as u32);
        }
    }

    #[test]
    fn replaying_the_events_rebuilds_the_same_state(steps in prop::collection::vec(step(), 0..120)) {
        let partition = run(&steps);
        let replayed = MemoryPartition::replay(partition.log().iter());
        prop_assert_eq!(&replayed.store.sections, &partition.store.sections);
        prop_assert_eq!(&replayed.store.reservations, &partition.store.reservations);
        for state in partition.store.sections.values() {
            prop_assert_eq!(
                &SectionState::with_held(state.layout(), state.held_seats()),
                state
            );
        }
    }

    #[test]
    fn every_event_reports_the_count_its_section_has_after_it(steps in prop::collection::vec(step(), 0..80)) {
        let partition = run(&steps);
        let mut rebuilt = MemoryStore::default();
        for event in partition.log() {
            rebuilt.apply(event);
            prop_assert_eq!(rebuilt.sections[event.key()].available(), event.available_after());
        }
    }
}

// The batch decision: what a partition owner is told to do, as data.

#[test]
fn a_batch_says_what_to_record_publish_answer_and_store_in_that_order() {
    let store = MemoryStore::default();
    let mut partition = Partition::new(0);
    let first = reserve("A", "u1", SeatRequest::Adjacent(2));
    let Command::Reserve(first_reserve) = &first else {
        unreachable!()
    };
    let batch = [
        init("A", 1, 3),
        first.clone(),
        first.clone(), // redelivered inside the batch
        reserve("B", "u2", SeatRequest::Adjacent(1)),
    ];
    let actions = partition
        .decide_batch(&store, &batch, NOW)
        .expect("in memory");
    let held = Reservation {
        id: first_reserve.reservation_id,
        key: key("A"),
        user_id: "u1".into(),
        status: Status::Confirmed,
        requested_seats: 2,
        seats: vec![Seat::new(1, 1), Seat::new(1, 2)],
        reason: None,
        requested_at: NOW,
        decided_at: NOW,
        cancelled_at: None,
        checkout: Checkout {
            confirmed_at: Some(NOW),
            ..Checkout::default()
        },
    };
    let Action::Record {
        event: Event::ReservationCompleted(unknown),
        ..
    } = &actions[7]
    else {
        panic!(
            "expected the rejection of the unknown section, got {:?}",
            actions[7]
        );
    };
    assert_eq!(unknown.reservation.reason, Some(Rejection::UnknownSection));
    let confirmed = Completed {
        reservation: held.clone(),
        available: 1,
    };
    let section_after = SectionState::with_held(
        Layout::new(1, 3).expect("layout"),
        [Seat::new(1, 1), Seat::new(1, 2)],
    );
    assert_eq!(section_after.available(), 1);
    let expected = vec![
        Action::Record {
            input: Some(0),
            event: initialized("A", 1, 3),
        },
        Action::PublishStatus {
            input: Some(0),
            key: key("A"),
            available: 3,
        },
        Action::Reply {
            input: 0,
            outcome: Outcome::SectionReady,
            available: 3,
        },
        Action::Record {
            input: Some(1),
            event: Event::ReservationCompleted(confirmed.clone()),
        },
        Action::PublishStatus {
            input: Some(1),
            key: key("A"),
            available: 1,
        },
        Action::Reply {
            input: 1,
            outcome: Outcome::Reservation(held.clone()),
            available: 1,
        },
        // The redelivery is answered with the first outcome and records nothing.
        Action::Reply {
            input: 2,
            outcome: Outcome::Reservation(held),
            available: 1,
        },
        Action::Record {
            input: Some(3),
            event: Event::ReservationCompleted(unknown.clone()),
        },
        Action::PublishStatus {
            input: Some(3),
            key: key("B"),
            available: 0,
        },
        Action::Reply {
            input: 3,
            outcome: Outcome::Reservation(unknown.reservation.clone()),
            available: 0,
        },
        // Stored once per section and reservation, as they are at the end of the batch.
        Action::StoreSection {
            key: key("A"),
            state: section_after,
            change: SectionChange::Whole,
        },
        Action::StoreOutcome(confirmed),
        Action::StoreOutcome(unknown.clone()),
    ];
    assert_eq!(actions, expected);
}

#[test]
fn a_batch_on_a_stored_section_stores_the_rows_it_moved_seats_in_and_refusals_store_nothing() {
    let mut store = MemoryStore::default();
    let mut partition = Partition::new(0);
    let setup = partition
        .decide_batch(&store, &[init("A", 5, 3)], NOW)
        .expect("in memory");
    store.commit(&setup);
    let fill_two_rows = [
        reserve("A", "u1", SeatRequest::Adjacent(3)),
        reserve("A", "u2", SeatRequest::Picked(vec![Seat::new(4, 2)])),
        reserve("A", "u3", SeatRequest::Adjacent(2)),
    ];
    let actions = partition
        .decide_batch(&store, &fill_two_rows, NOW)
        .expect("in memory");
    let changes: Vec<&SectionChange> = actions
        .iter()
        .filter_map(|a| match a {
            Action::StoreSection { change, .. } => Some(change),
            _ => None,
        })
        .collect();
    assert_eq!(changes, vec![&SectionChange::Rows(vec![1, 2, 4])]);
    store.commit(&actions);
    // Only refusals: the section is as stored, nothing of it is written.
    let refused = [
        reserve("A", "u4", SeatRequest::Picked(vec![Seat::new(4, 2)])),
        reserve("A", "u5", SeatRequest::Adjacent(4)),
    ];
    let actions = partition
        .decide_batch(&store, &refused, NOW)
        .expect("in memory");
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::StoreOutcome(_)))
            .count(),
        2
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StoreSection { .. })),
        "{actions:?}"
    );
}

#[test]
fn a_reservation_decided_twice_in_a_batch_is_stored_once_as_it_ends() {
    let mut store = MemoryStore::default();
    let mut partition = Partition::new(0);
    let setup = partition
        .decide_batch(&store, &[init("A", 1, 2)], NOW)
        .expect("in memory");
    store.commit(&setup);
    let held = reserve("A", "u1", SeatRequest::Adjacent(2));
    let Command::Reserve(r) = &held else {
        unreachable!()
    };
    let cancel = Command::Cancel(Cancel {
        reservation_id: r.reservation_id,
        key: key("A"),
        user_id: "u1".into(),
        requested_at: NOW,
    });
    let actions = partition
        .decide_batch(&store, &[held, cancel], NOW + 1)
        .expect("in memory");
    let stored: Vec<&Completed> = actions
        .iter()
        .filter_map(|a| match a {
            Action::StoreOutcome(completed) => Some(completed),
            _ => None,
        })
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].reservation.status, Status::Cancelled);
    assert_eq!(stored[0].available, 2);
    store.commit(&actions);
    assert_eq!(store.sections[&key("A")].available(), 2);
}

#[test]
fn an_abandoned_batch_leaves_no_trace_in_the_next_one() {
    let mut store = MemoryStore::default();
    let mut partition = Partition::new(0);
    let setup = partition
        .decide_batch(&store, &[init("A", 1, 1)], NOW)
        .expect("in memory");
    store.commit(&setup);
    let lost = partition
        .decide_batch(&store, &[reserve("A", "u1", SeatRequest::Adjacent(1))], NOW)
        .expect("in memory");
    assert!(
        lost.iter()
            .any(|a| matches!(a, Action::StoreSection { .. }))
    );
    // The write failed: nothing of `lost` is stored.
    partition.abandon();
    let retried = partition
        .decide_batch(&store, &[reserve("A", "u2", SeatRequest::Adjacent(1))], NOW)
        .expect("in memory");
    let reply = retried.iter().find_map(|a| match a {
        Action::Reply {
            outcome: Outcome::Reservation(r),
            ..
        } => Some(r),
        _ => None,
    });
    assert_eq!(reply.map(|r| r.status), Some(Status::Confirmed));
}

proptest! {
    #[test]
    fn how_commands_are_cut_into_batches_changes_nothing(
        steps in prop::collection::vec(step(), 0..60),
        cuts in prop::collection::vec(1..8usize, 1..20),
    ) {
        let (one_by_one, commands) = run_recording(&steps);
        // The same commands again, decided in batches of the given sizes.
        let mut store = MemoryStore::default();
        let mut partition = Partition::new(0);
        let mut rest = &commands[..];
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let size = (*cut.next().expect("cycle")).min(rest.len());
            let (batch, tail) = rest.split_at(size);
            let actions = partition.decide_batch(&store, batch, NOW).expect("in memory");
            let replies = actions.iter().filter(|a| matches!(a, Action::Reply { .. })).count();
            prop_assert_eq!(replies, batch.len(), "one answer per command");
            store.commit(&actions);
            rest = tail;
        }
        prop_assert_eq!(&store.log, &one_by_one.log().to_vec());
        prop_assert_eq!(&store.sections, &one_by_one.store.sections);
        prop_assert_eq!(&store.reservations, &one_by_one.store.reservations);
    }
}
