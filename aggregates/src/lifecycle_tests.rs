//! The checkout lifecycle: holds, confirmation, cancellation and expiry, decided by the
//! section's owner (given/when/then), and its invariants under any sequence (property tests).

use std::collections::HashMap;

use proptest::prelude::*;

use crate::test_util::{MemoryPartition, NOW, cancel_of, init_held, key, reserve};
use crate::{
    Action, Command, Confirm, Decision, Event, Millis, Rejection, Reservation, ReservationId, Seat,
    SeatRequest, Status,
};

const HOLD_SECONDS: u32 = 600;
const HOLD_MS: Millis = HOLD_SECONDS as Millis * 1_000;

fn confirm_of(reservation: &Reservation, user: &str, payment_ref: Option<&str>) -> Command {
    Command::Confirm(Confirm {
        reservation_id: reservation.id,
        key: reservation.key.clone(),
        user_id: user.into(),
        payment_ref: payment_ref.map(str::to_owned),
        requested_at: NOW,
    })
}

/// A partition with a 2 x 4 section "A" held `HOLD_SECONDS`, and u1's HELD pair in it.
fn with_a_hold() -> (MemoryPartition, Reservation) {
    let mut partition = MemoryPartition::default();
    partition.handle(&init_held("A", 2, 4, HOLD_SECONDS), NOW);
    let held = reserved(partition.handle(&reserve("A", "u1", SeatRequest::Adjacent(2)), NOW));
    (partition, held)
}

fn reserved(decision: Decision) -> Reservation {
    match decision {
        Decision::Append(events) => match events.last() {
            Some(Event::ReservationCompleted(completed)) => completed.reservation.clone(),
            other => panic!("expected a reservation, got {other:?}"),
        },
        Decision::AlreadyDecided(reservation) => reservation,
        Decision::Refused(rejection) => panic!("refused: {rejection}"),
        Decision::Forward(command) => panic!("handed on: {command:?}"),
    }
}

fn available(partition: &MemoryPartition) -> u32 {
    partition.store.sections[&key("A")].available()
}

#[test]
fn a_reservation_in_a_section_with_holds_is_held_until_its_hold_ends() {
    let (partition, held) = with_a_hold();
    assert_eq!(held.status, Status::Held);
    assert_eq!(held.checkout.expires_at, Some(NOW + HOLD_MS));
    assert_eq!(held.checkout.confirmed_at, None);
    assert_eq!(held.seats, [Seat::new(1, 1), Seat::new(1, 2)]);
    assert_eq!(available(&partition), 6, "held seats are taken");
}

#[test]
fn a_section_without_holds_confirms_when_it_decides() {
    let mut partition = MemoryPartition::default();
    partition.handle(&init_held("A", 2, 4, 0), NOW);
    let confirmed = reserved(partition.handle(&reserve("A", "u1", SeatRequest::Adjacent(1)), NOW));
    assert_eq!(confirmed.status, Status::Confirmed);
    assert_eq!(confirmed.checkout.confirmed_at, Some(NOW));
    assert_eq!(confirmed.checkout.expires_at, None);
}

#[test]
fn confirming_a_hold_in_time_confirms_it_once_and_keeps_its_payment_reference() {
    let (mut partition, held) = with_a_hold();
    let at = NOW + HOLD_MS - 1;
    let confirmed = reserved(partition.handle(&confirm_of(&held, "u1", Some("pay-42")), at));
    assert_eq!(confirmed.status, Status::Confirmed);
    assert_eq!(confirmed.checkout.confirmed_at, Some(at));
    assert_eq!(confirmed.checkout.payment_ref.as_deref(), Some("pay-42"));
    assert_eq!(confirmed.seats, held.seats);
    assert_eq!(available(&partition), 6);
    // Again (a retry): the same answer, nothing recorded.
    let log = partition.log().len();
    assert_eq!(
        partition.handle(&confirm_of(&held, "u1", Some("pay-43")), at + 5),
        Decision::AlreadyDecided(confirmed)
    );
    assert_eq!(partition.log().len(), log);
    // Its hold's end passes: nothing expires.
    assert!(partition.tick(NOW + HOLD_MS + 1).is_empty());
}

#[test]
fn a_confirmation_at_or_after_the_holds_end_loses_to_the_expiry() {
    for late in [0, 1, 60_000] {
        let (mut partition, held) = with_a_hold();
        let at = NOW + HOLD_MS + late;
        // The clock has not ticked: the confirmation itself records the expiry.
        let answer = reserved(partition.handle(&confirm_of(&held, "u1", None), at));
        assert_eq!(answer.status, Status::Expired, "{late} ms late");
        assert_eq!(answer.checkout.expired_at, Some(at));
        assert_eq!(answer.checkout.confirmed_at, None);
        assert_eq!(available(&partition), 8, "the seats are back");
        // Asked again: still expired, recorded once.
        let again = partition.handle(&confirm_of(&held, "u1", None), at + 1);
        assert_eq!(again, Decision::AlreadyDecided(answer));
        let expiries = partition
            .log()
            .iter()
            .filter(|e| matches!(e, Event::ReservationCompleted(c) if c.reservation.status == Status::Expired))
            .count();
        assert_eq!(expiries, 1);
    }
}

#[test]
fn the_clock_expires_a_hold_at_its_end_and_not_before() {
    let (mut partition, held) = with_a_hold();
    assert!(partition.tick(NOW + HOLD_MS - 1).is_empty(), "not yet");
    assert_eq!(partition.owner().next_expiry(), Some(NOW + HOLD_MS));
    let actions = partition.tick(NOW + HOLD_MS);
    let mut expired = held.clone();
    expired.status = Status::Expired;
    expired.checkout.expired_at = Some(NOW + HOLD_MS);
    let completed = crate::Completed {
        reservation: expired.clone(),
        available: 8,
    };
    assert_eq!(
        actions[..2],
        [
            Action::Record {
                input: None,
                event: Event::ReservationCompleted(completed.clone()),
            },
            Action::PublishStatus {
                input: None,
                key: key("A"),
                available: 8,
            },
        ]
    );
    assert!(
        matches!(&actions[2], Action::StoreSection { key: k, state, .. } if *k == key("A") && state.available() == 8)
    );
    assert_eq!(actions[3], Action::StoreOutcome(completed));
    assert_eq!(actions.len(), 4);
    assert_eq!(partition.store.reservations[&held.id], expired);
    assert!(
        partition.tick(NOW + HOLD_MS + 1_000).is_empty(),
        "never twice"
    );
    assert_eq!(partition.owner().next_expiry(), None);
}

#[test]
fn a_hold_whose_end_passed_while_its_owner_was_away_expires_at_the_first_batch_back() {
    let (partition, held) = with_a_hold();
    // A new owner (a restart, a rebalance) knows nothing but the store.
    let mut back = partition.restarted();
    let actions = back.tick(NOW + HOLD_MS + 30_000);
    assert!(
        actions.iter().any(|a| matches!(a, Action::StoreOutcome(c) if c.reservation.id == held.id && c.reservation.status == Status::Expired)),
        "{actions:?}"
    );
    assert_eq!(available(&back), 8);
    assert!(back.restarted().tick(NOW + HOLD_MS + 60_000).is_empty());
}

#[test]
fn cancelling_a_hold_frees_its_seats_at_once_and_it_never_expires() {
    let (mut partition, held) = with_a_hold();
    let cancelled = reserved(partition.handle(&cancel_of(&held, "u1"), NOW + 1));
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(available(&partition), 8);
    assert!(partition.tick(NOW + HOLD_MS).is_empty());
    // A cancelled hold is not confirmable: the caller is told its status.
    assert_eq!(
        partition.handle(&confirm_of(&held, "u1", None), NOW + 2),
        Decision::AlreadyDecided(cancelled)
    );
}

#[test]
fn an_expired_hold_cannot_be_cancelled() {
    let (mut partition, held) = with_a_hold();
    partition.tick(NOW + HOLD_MS);
    assert_eq!(
        partition.handle(&cancel_of(&held, "u1"), NOW + HOLD_MS + 1),
        Decision::Refused(Rejection::NotCancellable {
            status: Status::Expired
        })
    );
}

#[test]
fn only_the_holder_confirms_and_only_in_its_section() {
    let (mut partition, held) = with_a_hold();
    assert_eq!(
        partition.handle(&confirm_of(&held, "u2", None), NOW + 1),
        Decision::Refused(Rejection::NotOwner)
    );
    let mut elsewhere = held.clone();
    elsewhere.key = key("B");
    assert_eq!(
        partition.handle(&confirm_of(&elsewhere, "u1", None), NOW + 1),
        Decision::Refused(Rejection::UnknownReservation)
    );
    let mut unknown = held;
    unknown.id = ReservationId::new_v7();
    assert_eq!(
        partition.handle(&confirm_of(&unknown, "u1", None), NOW + 1),
        Decision::Refused(Rejection::UnknownReservation)
    );
}

#[test]
fn expired_seats_are_sold_again() {
    let mut partition = MemoryPartition::default();
    partition.handle(&init_held("A", 1, 2, HOLD_SECONDS), NOW);
    let first = reserved(partition.handle(&reserve("A", "u1", SeatRequest::Adjacent(2)), NOW));
    let refused =
        reserved(partition.handle(&reserve("A", "u2", SeatRequest::Adjacent(2)), NOW + 1));
    assert_eq!(refused.reason, Some(Rejection::SoldOut));
    partition.tick(NOW + HOLD_MS);
    let second = reserved(partition.handle(
        &reserve("A", "u2", SeatRequest::Adjacent(2)),
        NOW + HOLD_MS + 1,
    ));
    assert_eq!(second.status, Status::Held);
    assert_eq!(second.seats, first.seats);
}

// ---- invariants under any sequence ----------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Reserve {
        user: u8,
        count: u16,
    },
    Confirm {
        nth: usize,
    },
    Cancel {
        nth: usize,
    },
    /// Time passes (ms), with or without a tick of the clock.
    Wait {
        ms: u32,
        tick: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..6, 1u16..4).prop_map(|(user, count)| Step::Reserve { user, count }),
        2 => any::<usize>().prop_map(|nth| Step::Confirm { nth }),
        1 => any::<usize>().prop_map(|nth| Step::Cancel { nth }),
        2 => (0u32..(HOLD_MS as u32), any::<bool>()).prop_map(|(ms, tick)| Step::Wait { ms, tick }),
    ]
}

/// Run the steps on a 3 x 5 section with holds; check after each that the section's bitmap
/// is exactly the seats of its HELD and CONFIRMED reservations, each seat at most once.
fn run_checked(steps: &[Step]) -> Result<MemoryPartition, TestCaseError> {
    let mut partition = MemoryPartition::default();
    partition.handle(&init_held("A", 3, 5, HOLD_SECONDS), NOW);
    let mut now = NOW;
    for step in steps {
        let pick = |partition: &MemoryPartition, nth: usize, status: Status| {
            let mut candidates: Vec<Reservation> = partition
                .store
                .reservations
                .values()
                .filter(|r| r.status == status)
                .cloned()
                .collect();
            candidates.sort_by_key(|r| r.id);
            (!candidates.is_empty()).then(|| candidates[nth % candidates.len()].clone())
        };
        match step {
            Step::Reserve { user, count } => {
                partition.handle(
                    &reserve("A", &format!("u{user}"), SeatRequest::Adjacent(*count)),
                    now,
                );
            }
            Step::Confirm { nth } => {
                if let Some(held) = pick(&partition, *nth, Status::Held) {
                    let answer =
                        reserved(partition.handle(&confirm_of(&held, &held.user_id, None), now));
                    let in_time = now < held.checkout.expires_at.expect("held");
                    let expected = if in_time {
                        Status::Confirmed
                    } else {
                        Status::Expired
                    };
                    prop_assert_eq!(answer.status, expected);
                }
            }
            Step::Cancel { nth } => {
                if let Some(held) = pick(&partition, *nth, Status::Held) {
                    partition.handle(&cancel_of(&held, &held.user_id), now);
                }
            }
            Step::Wait { ms, tick } => {
                now += Millis::from(*ms);
                if *tick {
                    partition.tick(now);
                    for reservation in partition.store.reservations.values() {
                        if reservation.status == Status::Held {
                            prop_assert!(
                                reservation.checkout.expires_at.expect("held") > now,
                                "a hold past its end survived a tick"
                            );
                        }
                    }
                }
            }
        }
        let state = &partition.store.sections[&key("A")];
        let mut holder: HashMap<Seat, ReservationId> = HashMap::new();
        for reservation in partition.store.reservations.values() {
            if reservation.status.takes_seats() {
                for seat in &reservation.seats {
                    prop_assert!(
                        holder.insert(*seat, reservation.id).is_none(),
                        "{} taken twice",
                        seat
                    );
                }
            }
        }
        let mut held: Vec<Seat> = holder.keys().copied().collect();
        held.sort_unstable();
        prop_assert_eq!(state.held_seats().collect::<Vec<_>>(), held);
        prop_assert_eq!(
            state.available() + state.held_count(),
            state.layout().capacity()
        );
    }
    Ok(partition)
}

proptest! {
    #[test]
    fn held_plus_confirmed_plus_free_is_the_capacity_at_every_step(steps in prop::collection::vec(step(), 0..80)) {
        run_checked(&steps)?;
    }

    #[test]
    fn a_replay_of_the_lifecycle_rebuilds_the_same_state(steps in prop::collection::vec(step(), 0..80)) {
        let partition = run_checked(&steps)?;
        let replayed = crate::MemoryStore::replay(partition.log());
        prop_assert_eq!(&replayed.sections, &partition.store.sections);
        prop_assert_eq!(&replayed.reservations, &partition.store.reservations);
    }
}
