//! The waitlist: a request for a section with no room that asks to wait is WAITLISTED in the
//! section's order, and seats that come back (cancel, expiry) go to the first waiting requests
//! that fit, as fresh holds (given/when/then, and a property test that nobody waits for seats
//! that are there).

use proptest::prelude::*;

use crate::test_util::{MemoryPartition, NOW, cancel_of, init_held, key, reserve, reserve_or_wait};
use crate::{
    Action, Command, Confirm, Decision, Event, Millis, Partition, Rejection, Reservation,
    SeatRequest, Status,
};

const HOLD_SECONDS: u32 = 60;
const HOLD_MS: Millis = HOLD_SECONDS as Millis * 1_000;

fn reserved(decision: Decision) -> Reservation {
    match decision {
        Decision::Append(events) => match events.last() {
            Some(Event::ReservationCompleted(completed)) => completed.reservation.clone(),
            other => panic!("expected a reservation, got {other:?}"),
        },
        Decision::AlreadyDecided(reservation) => reservation,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

/// A 1 x 4 section held `HOLD_SECONDS`, sold out to u1.
fn sold_out() -> (MemoryPartition, Reservation) {
    let mut partition = MemoryPartition::default();
    partition.handle(&init_held("A", 1, 4, HOLD_SECONDS), NOW);
    let all = reserved(partition.handle(&reserve("A", "u1", SeatRequest::Adjacent(4)), NOW));
    assert_eq!(all.status, Status::Held);
    (partition, all)
}

fn status_of(partition: &MemoryPartition, reservation: &Reservation) -> Reservation {
    partition.store.reservations[&reservation.id].clone()
}

#[test]
fn a_request_that_asks_to_wait_is_waitlisted_in_order_and_others_are_rejected() {
    let (mut partition, _) = sold_out();
    let first = reserved(partition.handle(&reserve_or_wait("A", "w1", 2), NOW));
    assert_eq!(first.status, Status::Waitlisted);
    assert_eq!(first.reason, None);
    assert!(first.seats.is_empty());
    let second = reserved(partition.handle(&reserve_or_wait("A", "w2", 1), NOW));
    assert!(first.checkout.waitlisted < second.checkout.waitlisted);
    let plain = reserved(partition.handle(&reserve("A", "u3", SeatRequest::Adjacent(1)), NOW));
    assert_eq!(plain.reason, Some(Rejection::SoldOut));
    // Picked seats are the buyer's choice: no waiting for them.
    let Command::Reserve(mut picked) =
        reserve("A", "u4", SeatRequest::Picked(vec![crate::Seat::new(1, 1)]))
    else {
        unreachable!()
    };
    picked.waitlist = true;
    let picked = reserved(partition.handle(&Command::Reserve(picked), NOW));
    assert_eq!(picked.status, Status::Rejected);
}

#[test]
fn seats_that_come_back_go_to_the_first_waiting_requests_that_fit_as_fresh_holds() {
    let (mut partition, all) = sold_out();
    let three = reserved(partition.handle(&reserve_or_wait("A", "w1", 3), NOW));
    let two = reserved(partition.handle(&reserve_or_wait("A", "w2", 2), NOW));
    let one = reserved(partition.handle(&reserve_or_wait("A", "w3", 1), NOW));

    let later = NOW + 5_000;
    partition.handle(&cancel_of(&all, "u1"), later);
    let three = status_of(&partition, &three);
    assert_eq!(three.status, Status::Held, "the first in line fits");
    assert_eq!(three.seats.len(), 3);
    assert_eq!(
        three.checkout.expires_at,
        Some(later + HOLD_MS),
        "a fresh hold"
    );
    assert_eq!(
        status_of(&partition, &two).status,
        Status::Waitlisted,
        "two do not fit in the one seat left"
    );
    assert_eq!(
        status_of(&partition, &one).status,
        Status::Held,
        "the next that fits"
    );
    assert_eq!(partition.store.sections[&key("A")].available(), 0);
}

#[test]
fn an_expired_hold_goes_to_the_waitlist() {
    let (mut partition, _) = sold_out();
    let waiting = reserved(partition.handle(&reserve_or_wait("A", "w1", 2), NOW));
    partition.tick(NOW + HOLD_MS);
    let promoted = status_of(&partition, &waiting);
    assert_eq!(promoted.status, Status::Held);
    assert_eq!(
        promoted.checkout.expires_at,
        Some(NOW + 2 * HOLD_MS),
        "held from its promotion"
    );
    // The promotion is in the log, decided by the section's clock.
    assert!(partition.log().iter().any(|e| matches!(e,
        Event::ReservationCompleted(c) if c.reservation.id == waiting.id && c.reservation.status == Status::Held)));
}

#[test]
fn a_waitlisted_request_can_be_cancelled_and_is_not_confirmable() {
    let (mut partition, all) = sold_out();
    let left = reserved(partition.handle(&reserve_or_wait("A", "w1", 1), NOW));
    let stays = reserved(partition.handle(&reserve_or_wait("A", "w2", 1), NOW));
    let confirm = Command::Confirm(Confirm {
        reservation_id: left.id,
        key: key("A"),
        user_id: "w1".into(),
        payment_ref: None,
        requested_at: NOW,
    });
    assert_eq!(
        reserved(partition.handle(&confirm, NOW)).status,
        Status::Waitlisted
    );
    let cancelled = reserved(partition.handle(&cancel_of(&left, "w1"), NOW));
    assert_eq!(cancelled.status, Status::Cancelled);
    partition.handle(&cancel_of(&all, "u1"), NOW);
    assert_eq!(status_of(&partition, &left).status, Status::Cancelled);
    assert_eq!(status_of(&partition, &stays).status, Status::Held);
}

#[test]
fn a_full_waitlist_rejects_with_waitlist_full() {
    let (partition, _) = sold_out();
    let mut limited =
        MemoryPartition::with_owner(Partition::new(0).with_waitlist_limit(2), partition.store);
    for user in ["w1", "w2"] {
        assert_eq!(
            reserved(limited.handle(&reserve_or_wait("A", user, 1), NOW)).status,
            Status::Waitlisted
        );
    }
    let full = reserved(limited.handle(&reserve_or_wait("A", "w3", 1), NOW));
    assert_eq!(full.status, Status::Rejected);
    assert_eq!(full.reason, Some(Rejection::WaitlistFull { limit: 2 }));
}

#[test]
fn the_order_survives_a_new_owner() {
    let (mut partition, all) = sold_out();
    let first = reserved(partition.handle(&reserve_or_wait("A", "w1", 2), NOW));
    let second = reserved(partition.handle(&reserve_or_wait("A", "w2", 2), NOW));
    let third = reserved(partition.handle(&reserve_or_wait("A", "w3", 2), NOW));
    let mut restarted = partition.restarted();
    restarted.handle(&cancel_of(&all, "u1"), NOW);
    assert_eq!(status_of(&restarted, &first).status, Status::Held);
    assert_eq!(status_of(&restarted, &second).status, Status::Held);
    assert_eq!(status_of(&restarted, &third).status, Status::Waitlisted);
    // A new request after them waits behind them.
    let fourth = reserved(restarted.handle(&reserve_or_wait("A", "w4", 1), NOW));
    assert!(fourth.checkout.waitlisted > third.checkout.waitlisted);
}

// ---- nobody waits for seats that are there ---------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Reserve { user: u8, count: u16, wait: bool },
    Cancel { nth: usize },
    Wait { ms: u32 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..8, 1u16..4, any::<bool>()).prop_map(|(user, count, wait)| Step::Reserve { user, count, wait }),
        2 => any::<usize>().prop_map(|nth| Step::Cancel { nth }),
        1 => (0u32..(HOLD_MS as u32)).prop_map(|ms| Step::Wait { ms }),
    ]
}

proptest! {
    #[test]
    fn nobody_waits_for_seats_that_are_there_and_places_are_served_in_order(
        steps in prop::collection::vec(step(), 0..100)
    ) {
        let mut partition = MemoryPartition::default();
        partition.handle(&init_held("A", 2, 5, HOLD_SECONDS), NOW);
        let mut now = NOW;
        for step in &steps {
            match step {
                Step::Reserve { user, count, wait } => {
                    let user = format!("u{user}");
                    let command = if *wait {
                        reserve_or_wait("A", &user, *count)
                    } else {
                        reserve("A", &user, SeatRequest::Adjacent(*count))
                    };
                    partition.handle(&command, now);
                }
                Step::Cancel { nth } => {
                    let mut live: Vec<Reservation> = partition.store.reservations.values()
                        .filter(|r| matches!(r.status, Status::Held | Status::Waitlisted))
                        .cloned()
                        .collect();
                    live.sort_by_key(|r| r.id);
                    if !live.is_empty() {
                        let chosen = live[nth % live.len()].clone();
                        partition.handle(&cancel_of(&chosen, &chosen.user_id), now);
                    }
                }
                Step::Wait { ms } => {
                    now += Millis::from(*ms);
                    partition.tick(now);
                }
            }
            let state = &partition.store.sections[&key("A")];
            let mut waiting: Vec<&Reservation> = partition.store.reservations.values()
                .filter(|r| r.status == Status::Waitlisted)
                .collect();
            waiting.sort_by_key(|r| r.checkout.waitlisted);
            for r in &waiting {
                prop_assert!(
                    state.allocate(&SeatRequest::Adjacent(r.requested_seats)).is_err(),
                    "{:?} waits for {} seats that are free", r.id, r.requested_seats
                );
            }
            let places: Vec<_> = waiting.iter().map(|r| r.checkout.waitlisted).collect();
            let mut distinct = places.clone();
            distinct.dedup();
            prop_assert_eq!(places, distinct, "two requests at one place");
        }
    }
}

// ---- a partition that keeps little forgets nothing that matters -------------------------------

const SECTIONS: [&str; 3] = ["A", "B", "C"];

#[derive(Clone, Debug)]
enum Move {
    Reserve {
        user: u8,
        section: usize,
        count: u16,
        wait: bool,
    },
    Cancel {
        nth: usize,
    },
    Wait {
        ms: u32,
    },
}

fn moves() -> impl Strategy<Value = Move> {
    prop_oneof![
        5 => (0u8..8, 0usize..3, 1u16..4, any::<bool>())
            .prop_map(|(user, section, count, wait)| Move::Reserve { user, section, count, wait }),
        2 => any::<usize>().prop_map(|nth| Move::Cancel { nth }),
        1 => (0u32..(HOLD_MS as u32)).prop_map(|ms| Move::Wait { ms }),
    ]
}

/// Take `step` on `partition` with `command` (the one it submits, if any): the actions.
fn play(partition: &mut MemoryPartition, command: Option<&Command>, now: Millis) -> Vec<Action> {
    match command {
        Some(command) => partition.actions(command, now),
        None => partition.tick(now),
    }
}

proptest! {
    /// A partition that keeps two sections between batches (reading the others and their
    /// waitlists back from its store) decides every step as one that keeps everything: the
    /// same actions, the same store.
    #[test]
    fn a_partition_that_keeps_two_sections_decides_as_one_that_keeps_all(
        steps in prop::collection::vec(moves(), 0..120)
    ) {
        let mut roomy = MemoryPartition::default();
        for section in SECTIONS {
            roomy.actions(&init_held(section, 1, 4, HOLD_SECONDS), NOW);
        }
        let mut forgetful =
            MemoryPartition::with_owner(Partition::new(0).with_cache(2, 2), roomy.store.clone());
        let mut now = NOW;
        for step in &steps {
            let command = match step {
                Move::Reserve { user, section, count, wait } => {
                    let user = format!("u{user}");
                    Some(if *wait {
                        reserve_or_wait(SECTIONS[*section], &user, *count)
                    } else {
                        reserve(SECTIONS[*section], &user, SeatRequest::Adjacent(*count))
                    })
                }
                Move::Cancel { nth } => {
                    let mut live: Vec<Reservation> = roomy.store.reservations.values()
                        .filter(|r| matches!(r.status, Status::Held | Status::Waitlisted))
                        .cloned()
                        .collect();
                    live.sort_by_key(|r| r.id);
                    (!live.is_empty()).then(|| {
                        let chosen = &live[nth % live.len()];
                        cancel_of(chosen, &chosen.user_id)
                    })
                }
                Move::Wait { ms } => {
                    now += Millis::from(*ms);
                    None
                }
            };
            let expected = play(&mut roomy, command.as_ref(), now);
            prop_assert_eq!(play(&mut forgetful, command.as_ref(), now), expected, "{:?}", step);
        }
        prop_assert_eq!(&forgetful.store.reservations, &roomy.store.reservations);
        prop_assert_eq!(&forgetful.store.sections, &roomy.store.sections);
    }
}

#[test]
fn a_partition_keeps_about_its_capacity_of_sections_whatever_it_decided() {
    let mut partition =
        MemoryPartition::with_owner(Partition::new(0).with_cache(4, 4), Default::default());
    let sections: Vec<String> = (0..50).map(|n| format!("S{n}")).collect();
    for section in &sections {
        partition.actions(&init_held(section, 1, 4, HOLD_SECONDS), NOW);
        partition.actions(&reserve(section, "u1", SeatRequest::Adjacent(1)), NOW);
        let (cached, _) = partition.owner().cached();
        assert!(cached <= 4 + 1, "{cached} sections kept");
    }
    // The forgotten ones are read back when asked again.
    let again = partition.actions(&reserve("S0", "u2", SeatRequest::Adjacent(3)), NOW);
    assert!(
        again
            .iter()
            .any(|action| matches!(action, Action::Reply { available: 0, .. }))
    );
}
