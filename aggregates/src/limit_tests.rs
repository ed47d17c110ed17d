//! The exact per-user limit: a reservation's way through its user's quota to its section and
//! back (given/when/then over several partitions), and the limit under any interleaving of the
//! hand-ons (property tests).

use proptest::prelude::*;

use crate::test_util::{MemoryCluster, NOW, cancel_of, init_with, reserve, reserve_or_wait};
use crate::{
    ClaimQuota, Command, Confirm, Millis, Outcome, QuotaVerdict, Rejection, Reservation, SaleRules,
    SeatRequest, Status,
};

const LIMIT: u16 = 4;
const HOLD_SECONDS: u32 = 600;
const HOLD_MS: Millis = HOLD_SECONDS as Millis * 1_000;
const SECTIONS: [&str; 4] = ["A", "B", "C", "D"];

fn limited(limit: u16) -> SaleRules {
    SaleRules {
        hold_seconds: HOLD_SECONDS,
        max_seats_per_user: Some(limit),
        ..SaleRules::default()
    }
}

/// Four partitions, an event of four 2 x 5 sections limited to `LIMIT` seats per user.
fn cluster() -> MemoryCluster {
    let mut cluster = MemoryCluster::new(4);
    for section in SECTIONS {
        cluster.submit(&init_with(section, 2, 5, limited(LIMIT)), NOW);
    }
    cluster
}

/// Ask for `count` seats in `section` for `user` and let every hand-on arrive: the answer.
fn reserve_settled(
    cluster: &mut MemoryCluster,
    section: &str,
    user: &str,
    count: u16,
) -> Reservation {
    let command = reserve(section, user, SeatRequest::Adjacent(count));
    answered(
        cluster
            .submit(&command, NOW)
            .or_else(|| cluster.settle(NOW)),
    )
}

fn answered(outcome: Option<Outcome>) -> Reservation {
    match outcome {
        Some(Outcome::Reservation(reservation)) => reservation,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

fn seats_taken(cluster: &MemoryCluster, user: &str) -> u32 {
    cluster
        .reservations()
        .filter(|r| r.user_id == user && r.status.takes_seats())
        .map(|r| r.seats.len() as u32)
        .sum()
}

#[test]
fn a_reservation_goes_through_its_users_quota_and_is_counted() {
    let mut cluster = cluster();
    let command = reserve("A", "u1", SeatRequest::Adjacent(3));
    assert_eq!(
        cluster.submit(&command, NOW),
        None,
        "handed on, not answered"
    );
    assert!(matches!(
        cluster.in_flight.as_slice(),
        [Command::ClaimQuota(ClaimQuota { limit: LIMIT, .. })]
    ));
    let held = answered(cluster.settle(NOW));
    assert_eq!(held.status, Status::Held);
    assert_eq!(cluster.quota_used("u1"), 3);
}

#[test]
fn seats_beyond_the_limit_in_another_section_are_rejected_and_not_counted() {
    let mut cluster = cluster();
    reserve_settled(&mut cluster, "A", "u1", 3);
    let over = reserve_settled(&mut cluster, "B", "u1", 2);
    assert_eq!(over.status, Status::Rejected);
    assert_eq!(
        over.reason,
        Some(Rejection::UserLimitExceeded { limit: LIMIT })
    );
    assert_eq!(cluster.quota_used("u1"), 3);
    let fits = reserve_settled(&mut cluster, "C", "u1", 1);
    assert_eq!(fits.status, Status::Held);
    assert_eq!(seats_taken(&cluster, "u1"), 4);
    // Another user's quota is their own.
    assert_eq!(
        reserve_settled(&mut cluster, "B", "u2", 4).status,
        Status::Held
    );
}

#[test]
fn cancelled_expired_and_rejected_seats_give_the_quota_back() {
    let mut cluster = cluster();
    let held = reserve_settled(&mut cluster, "A", "u1", 3);
    cluster.submit(&cancel_of(&held, "u1"), NOW);
    cluster.settle(NOW);
    assert_eq!(cluster.quota_used("u1"), 0, "cancelled");

    reserve_settled(&mut cluster, "B", "u1", 4);
    assert_eq!(cluster.quota_used("u1"), 4);
    cluster.tick(NOW + HOLD_MS);
    cluster.settle(NOW + HOLD_MS);
    assert_eq!(cluster.quota_used("u1"), 0, "expired");

    // Counted by the quota, then rejected by its section (one seat is left of ten).
    reserve_settled(&mut cluster, "C", "u1", 4);
    reserve_settled(&mut cluster, "C", "u2", 4);
    reserve_settled(&mut cluster, "C", "u4", 1);
    let no_room = reserve_settled(&mut cluster, "C", "u3", 2);
    assert_eq!(
        no_room.reason,
        Some(Rejection::NotEnoughSeats { available: 1 })
    );
    cluster.settle(NOW);
    assert_eq!(cluster.quota_used("u3"), 0, "rejected by its section");
}

#[test]
fn a_confirmed_reservation_stays_counted() {
    let mut cluster = cluster();
    let held = reserve_settled(&mut cluster, "A", "u1", 4);
    let confirm = Command::Confirm(Confirm {
        reservation_id: held.id,
        key: held.key.clone(),
        user_id: "u1".into(),
        payment_ref: None,
        requested_at: NOW,
    });
    let confirmed = answered(cluster.submit(&confirm, NOW));
    assert_eq!(confirmed.status, Status::Confirmed);
    cluster.tick(NOW + HOLD_MS);
    cluster.settle(NOW + HOLD_MS);
    assert_eq!(cluster.quota_used("u1"), 4);
    let over = reserve_settled(&mut cluster, "D", "u1", 1);
    assert_eq!(over.status, Status::Rejected);
}

#[test]
fn a_claim_delivered_twice_counts_once_and_a_late_copy_is_given_back() {
    let mut cluster = cluster();
    cluster.submit(&reserve("A", "u1", SeatRequest::Adjacent(3)), NOW);
    let claim = cluster.in_flight[0].clone();
    let held = answered(cluster.settle(NOW));

    // Again while it is held: counted once, answered with the same reservation.
    let again = answered(cluster.submit(&claim, NOW).or_else(|| cluster.settle(NOW)));
    assert_eq!(again, held);
    assert_eq!(cluster.quota_used("u1"), 3);

    // Again after it was cancelled: the quota counts it for a moment, its section answers
    // CANCELLED and gives the count back.
    cluster.submit(&cancel_of(&held, "u1"), NOW);
    cluster.settle(NOW);
    let late = answered(cluster.submit(&claim, NOW).or_else(|| cluster.settle(NOW)));
    assert_eq!(late.status, Status::Cancelled);
    cluster.settle(NOW);
    assert_eq!(cluster.quota_used("u1"), 0);
}

#[test]
fn a_reservation_that_says_it_exceeded_is_rejected_by_its_section() {
    let mut cluster = cluster();
    let Command::Reserve(mut exceeded) = reserve("A", "u1", SeatRequest::Adjacent(1)) else {
        unreachable!()
    };
    exceeded.quota = QuotaVerdict::Exceeded;
    let rejected = answered(cluster.submit(&Command::Reserve(exceeded), NOW));
    assert_eq!(
        rejected.reason,
        Some(Rejection::UserLimitExceeded { limit: LIMIT })
    );
    assert!(
        cluster.in_flight.is_empty(),
        "nothing counted, nothing to give back"
    );
}

#[test]
fn a_section_without_a_limit_asks_no_quota() {
    let mut cluster = MemoryCluster::new(4);
    cluster.submit(
        &init_with(
            "A",
            2,
            5,
            SaleRules {
                max_seats_per_user: None,
                ..limited(LIMIT)
            },
        ),
        NOW,
    );
    let held = answered(cluster.submit(&reserve("A", "u1", SeatRequest::Adjacent(5)), NOW));
    assert_eq!(held.status, Status::Held);
    assert!(cluster.in_flight.is_empty());
}

#[test]
fn a_waiting_request_keeps_its_count_until_it_is_held_or_cancelled() {
    let mut cluster = MemoryCluster::new(4);
    cluster.submit(&init_with("A", 1, 2, limited(LIMIT)), NOW);
    cluster.submit(&init_with("B", 1, 5, limited(LIMIT)), NOW);
    let fan = reserve_settled(&mut cluster, "A", "fan", 2);
    cluster.submit(&reserve_or_wait("A", "u1", 2), NOW);
    let waiting = answered(cluster.settle(NOW));
    assert_eq!(waiting.status, Status::Waitlisted);
    assert_eq!(cluster.quota_used("u1"), 2, "counted while it waits");
    reserve_settled(&mut cluster, "B", "u1", 2);
    let over = reserve_settled(&mut cluster, "B", "u1", 1);
    assert_eq!(
        over.reason,
        Some(Rejection::UserLimitExceeded { limit: LIMIT })
    );
    // The fan's seats come back: the waiting request is held, still counted once.
    cluster.submit(&cancel_of(&fan, "fan"), NOW);
    cluster.settle(NOW);
    assert_eq!(seats_taken(&cluster, "u1"), 4);
    assert_eq!(cluster.quota_used("u1"), 4);
}

// ---- the limit under any interleaving ----------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Reserve {
        user: u8,
        section: usize,
        count: u16,
        wait: bool,
    },
    Confirm {
        nth: usize,
    },
    Cancel {
        nth: usize,
    },
    /// One hand-on in flight arrives (any of them: the runtimes order only within a partition).
    Deliver {
        nth: usize,
    },
    Wait {
        ms: u32,
        tick: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3, 0usize..4, 1u16..4, any::<bool>())
            .prop_map(|(user, section, count, wait)| Step::Reserve { user, section, count, wait }),
        1 => any::<usize>().prop_map(|nth| Step::Confirm { nth }),
        1 => any::<usize>().prop_map(|nth| Step::Cancel { nth }),
        5 => any::<usize>().prop_map(|nth| Step::Deliver { nth }),
        1 => (0u32..(HOLD_MS as u32), any::<bool>()).prop_map(|(ms, tick)| Step::Wait { ms, tick }),
    ]
}

/// The command a step submits (a HELD reservation to confirm or cancel picked from `cluster`),
/// if it submits one.
fn command_of(cluster: &MemoryCluster, step: &Step, now: Millis) -> Option<Command> {
    match step {
        Step::Reserve {
            user,
            section,
            count,
            wait,
        } => {
            let user = format!("u{user}");
            Some(if *wait {
                reserve_or_wait(SECTIONS[*section], &user, *count)
            } else {
                reserve(SECTIONS[*section], &user, SeatRequest::Adjacent(*count))
            })
        }
        Step::Confirm { nth } => pick(cluster, *nth).map(|held| {
            Command::Confirm(Confirm {
                reservation_id: held.id,
                key: held.key.clone(),
                user_id: held.user_id.clone(),
                payment_ref: None,
                requested_at: now,
            })
        }),
        Step::Cancel { nth } => pick(cluster, *nth).map(|held| cancel_of(&held, &held.user_id)),
        Step::Deliver { .. } | Step::Wait { .. } => None,
    }
}

/// Take `step` on `cluster` (`command`: the one it submits, if any): the answer it made.
fn take(
    cluster: &mut MemoryCluster,
    step: &Step,
    command: Option<&Command>,
    now: &mut Millis,
) -> Option<Outcome> {
    match step {
        Step::Deliver { nth } => cluster.deliver(*nth, *now),
        Step::Wait { ms, tick } => {
            *now += Millis::from(*ms);
            if *tick {
                cluster.tick(*now);
            }
            None
        }
        _ => command.and_then(|command| cluster.submit(command, *now)),
    }
}

fn apply(cluster: &mut MemoryCluster, step: &Step, now: &mut Millis) -> Option<Outcome> {
    let command = command_of(cluster, step, *now);
    take(cluster, step, command.as_ref(), now)
}

fn pick(cluster: &MemoryCluster, nth: usize) -> Option<Reservation> {
    let mut held: Vec<Reservation> = cluster
        .reservations()
        .filter(|r| r.status == Status::Held)
        .cloned()
        .collect();
    held.sort_by_key(|r| r.id);
    (!held.is_empty()).then(|| held[nth % held.len()].clone())
}

proptest! {
    #[test]
    fn no_user_ever_holds_more_than_the_limit_and_the_count_returns(
        steps in prop::collection::vec(step(), 0..120)
    ) {
        let mut cluster = cluster();
        let mut now = NOW;
        for step in &steps {
            apply(&mut cluster, step, &mut now);
            for user in ["u0", "u1", "u2"] {
                let taken = seats_taken(&cluster, user);
                prop_assert!(taken <= u32::from(LIMIT), "{} holds {}", user, taken);
                prop_assert!(taken <= cluster.quota_used(user), "{} holds seats not counted", user);
            }
        }
        cluster.settle(now);
        for user in ["u0", "u1", "u2"] {
            // A waiting request keeps its count for its promotion.
            let waiting: u32 = cluster
                .reservations()
                .filter(|r| r.user_id == user && r.status == Status::Waitlisted)
                .map(|r| u32::from(r.requested_seats))
                .sum();
            prop_assert_eq!(cluster.quota_used(user), seats_taken(&cluster, user) + waiting);
        }
    }
}

proptest! {
    /// Partitions that keep two sections and two quotas between batches (reading the others
    /// back from their stores) answer every step as partitions that keep everything, and leave
    /// the same stores: the bounded cache forgets nothing that matters.
    #[test]
    fn partitions_that_keep_little_decide_as_those_that_keep_everything(
        steps in prop::collection::vec(step(), 0..150)
    ) {
        let mut roomy = cluster();
        let mut forgetful = cluster().with_cache(2, 2);
        let (mut now_roomy, mut now_forgetful) = (NOW, NOW);
        for step in &steps {
            let command = command_of(&roomy, step, now_roomy);
            let answer = take(&mut roomy, step, command.as_ref(), &mut now_roomy);
            prop_assert_eq!(
                take(&mut forgetful, step, command.as_ref(), &mut now_forgetful),
                answer,
                "answer to {:?}", step
            );
            prop_assert_eq!(&forgetful.in_flight, &roomy.in_flight);
        }
        for (kept, forgot) in roomy.partitions.iter().zip(&forgetful.partitions) {
            prop_assert_eq!(&forgot.store.reservations, &kept.store.reservations);
            prop_assert_eq!(&forgot.store.sections, &kept.store.sections);
            prop_assert_eq!(&forgot.store.quotas, &kept.store.quotas);
        }
    }
}
