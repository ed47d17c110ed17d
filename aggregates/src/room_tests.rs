//! The waiting room decided by its partition's owner: the commands, the clock, the session a
//! confirmed reservation ends on another partition, and a restart that loses no ticket and
//! admits no one twice.

use crate::room::{RoomEvent, RoomRules, SessionEnd, Ticket, TicketId, TicketStatus};
use crate::test_util::{MemoryCluster, MemoryPartition, NOW, init_with, reserve};
use crate::{
    Action, Command, Event, Millis, Outcome, Rejection, RoomCommand, RoomRequest, SaleRules,
    SeatRequest, Status,
};

const EVENT: &str = "evt-1";
const ON_SALE: Millis = NOW + 60_000;

fn rules(admit_per_minute: Option<u32>, max_active: Option<u32>) -> RoomRules {
    RoomRules {
        on_sale_at: ON_SALE,
        admit_per_minute,
        max_active,
        session_seconds: 600,
        opens_before_seconds: 1_800,
    }
}

fn room(request: RoomRequest) -> Command {
    Command::Room(RoomCommand::new(EVENT, NOW, request))
}

fn join(user: &str) -> Command {
    room(RoomRequest::Join {
        ticket: TicketId::now_v7(),
        user_id: user.into(),
    })
}

fn answer(actions: &[Action]) -> Outcome {
    actions
        .iter()
        .find_map(|action| match action {
            Action::Reply { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .expect("an answer")
}

fn ticket(outcome: Outcome) -> Ticket {
    match outcome {
        Outcome::Ticket(ticket) => ticket,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

fn room_events(actions: &[Action]) -> Vec<RoomEvent> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Record {
                event: Event::Room(recorded),
                ..
            } => Some(recorded.event.clone()),
            _ => None,
        })
        .collect()
}

fn admitted(actions: &[Action]) -> Vec<TicketId> {
    room_events(actions)
        .into_iter()
        .filter_map(|event| match event {
            RoomEvent::Admitted { ticket, .. } => Some(ticket),
            _ => None,
        })
        .collect()
}

fn opened(partition: &mut MemoryPartition, rules: RoomRules) {
    let actions = partition.actions(&room(RoomRequest::Open(rules)), NOW);
    assert_eq!(answer(&actions), Outcome::SectionReady);
}

#[test]
fn a_join_is_a_ticket_in_the_log_and_in_the_store_and_joining_again_gives_the_same_one() {
    let mut partition = MemoryPartition::default();
    let refused = partition.actions(&join("ann"), NOW);
    assert_eq!(answer(&refused), Outcome::Refused(Rejection::NoWaitingRoom));
    opened(&mut partition, rules(Some(60), None));
    let actions = partition.actions(&join("ann"), NOW);
    let first = ticket(answer(&actions));
    assert_eq!(first.status, TicketStatus::Waiting);
    assert_eq!(
        first.position, None,
        "no position before the on-sale's shuffle"
    );
    assert!(matches!(
        room_events(&actions)[..],
        [RoomEvent::Joined { ticket, .. }] if ticket == first.id
    ));
    assert!(actions.iter().any(|action| matches!(
        action,
        Action::StoreRoom { tickets, .. } if tickets.len() == 1 && tickets[0].id == first.id
    )));
    let again = partition.actions(&join("ann"), NOW + 5);
    assert_eq!(ticket(answer(&again)).id, first.id);
    assert!(room_events(&again).is_empty(), "nothing new recorded");
}

#[test]
fn the_room_refuses_joins_before_it_opens_and_rule_changes_after_the_sale_started() {
    let mut partition = MemoryPartition::default();
    opened(&mut partition, rules(Some(60), None));
    let early = partition.actions(&join("ann"), ON_SALE - 1_800_001);
    assert_eq!(
        answer(&early),
        Outcome::Refused(Rejection::QueueNotOpen {
            opens_at: ON_SALE - 1_800_000
        })
    );
    // Before the sale the organizer may change the rules; the same rules again are a no-op.
    let faster = rules(Some(120), Some(10));
    let changed = partition.actions(&room(RoomRequest::Open(faster)), NOW + 1);
    assert_eq!(answer(&changed), Outcome::SectionReady);
    assert!(matches!(
        room_events(&changed)[..],
        [RoomEvent::Opened { .. }]
    ));
    let same = partition.actions(&room(RoomRequest::Open(faster)), NOW + 2);
    assert!(room_events(&same).is_empty());
    partition.tick(ON_SALE);
    let late = partition.actions(&room(RoomRequest::Open(rules(Some(1), None))), ON_SALE + 1);
    assert_eq!(answer(&late), Outcome::Refused(Rejection::SaleStarted));
}

#[test]
fn the_clock_shuffles_at_the_on_sale_and_admits_at_the_rate_under_the_cap() {
    let mut partition = MemoryPartition::default();
    opened(&mut partition, rules(Some(60), Some(2)));
    let tickets: Vec<TicketId> = (0..5)
        .map(|n| ticket(answer(&partition.actions(&join(&format!("u{n}")), NOW))).id)
        .collect();
    assert!(
        partition.tick(ON_SALE - 1).is_empty(),
        "nothing before the sale"
    );
    let at_sale = partition.tick(ON_SALE);
    let events = room_events(&at_sale);
    let RoomEvent::Shuffled { seed, .. } = events[0] else {
        panic!("the shuffle comes first: {events:?}");
    };
    let line = crate::room::shuffled_order(&tickets, seed);
    // One second's worth at 60 a minute: one admission, then one a second, two at most.
    assert_eq!(admitted(&at_sale), vec![line[0]]);
    assert!(admitted(&partition.tick(ON_SALE + 999)).is_empty());
    assert_eq!(admitted(&partition.tick(ON_SALE + 1_000)), vec![line[1]]);
    assert!(
        admitted(&partition.tick(ON_SALE + 5_000)).is_empty(),
        "the cap"
    );
    let owner = partition.owner().room(EVENT).expect("room");
    assert_eq!(owner.active(), 2);
    assert_eq!(owner.ahead_of(line[4]), Some(2));
}

#[test]
fn a_user_may_leave_only_their_own_ticket_and_leaving_frees_the_slot() {
    let mut partition = MemoryPartition::default();
    opened(&mut partition, rules(None, Some(1)));
    let ann = ticket(answer(&partition.actions(&join("ann"), NOW)));
    let bob = ticket(answer(&partition.actions(&join("bob"), NOW)));
    let first = admitted(&partition.tick(ON_SALE))[0];
    let (first_user, other) = if first == ann.id {
        ("ann", bob.id)
    } else {
        ("bob", ann.id)
    };
    let not_theirs = room(RoomRequest::Leave {
        ticket: first,
        user_id: "eve".into(),
    });
    assert_eq!(
        answer(&partition.actions(&not_theirs, ON_SALE + 1)),
        Outcome::Refused(Rejection::NotOwner)
    );
    let unknown = room(RoomRequest::Leave {
        ticket: TicketId::now_v7(),
        user_id: "ann".into(),
    });
    assert_eq!(
        answer(&partition.actions(&unknown, ON_SALE + 1)),
        Outcome::Refused(Rejection::UnknownTicket)
    );
    let leave = room(RoomRequest::Leave {
        ticket: first,
        user_id: first_user.into(),
    });
    let actions = partition.actions(&leave, ON_SALE + 2);
    let left = ticket(answer(&actions));
    assert!(matches!(
        left.status,
        TicketStatus::Ended {
            why: SessionEnd::Left,
            ..
        }
    ));
    assert_eq!(
        admitted(&actions),
        vec![other],
        "the freed slot goes at once"
    );
}

#[test]
fn a_confirmed_reservation_ends_its_users_session_on_the_rooms_partition() {
    // Four partitions: the room and the section may be decided by different owners.
    let mut cluster = MemoryCluster::new(4);
    let sale = SaleRules {
        waiting_room: true,
        ..SaleRules::default()
    };
    cluster.submit(&init_with("A", 10, 10, sale), NOW);
    cluster.submit(&room(RoomRequest::Open(rules(None, Some(1)))), NOW);
    for user in ["ann", "bob"] {
        cluster.submit(&join(user), NOW);
    }
    cluster.tick(ON_SALE);
    let room_partition = crate::partition_of_command(&join("x"), 4) as usize;
    let active = |cluster: &MemoryCluster| {
        let owner = cluster.partitions[room_partition].owner();
        owner.room(EVENT).expect("room").active()
    };
    assert_eq!(active(&cluster), 1);
    let owner = cluster.partitions[room_partition]
        .owner()
        .room(EVENT)
        .expect("room");
    let first = owner.ticket(owner.line()[0]).expect("first").user.clone();
    let Some(Outcome::Reservation(bought)) = cluster.submit(
        &reserve("A", &first, SeatRequest::Adjacent(2)),
        ON_SALE + 10,
    ) else {
        panic!("a reservation");
    };
    assert_eq!(bought.status, Status::Confirmed);
    assert_eq!(cluster.in_flight.len(), 1, "the session's end is handed on");
    cluster.settle(ON_SALE + 11);
    let owner = cluster.partitions[room_partition]
        .owner()
        .room(EVENT)
        .expect("room");
    let ended = owner.ticket_of(&first).expect("ticket");
    assert!(matches!(
        ended.status,
        TicketStatus::Ended {
            why: SessionEnd::Confirmed,
            ..
        }
    ));
    assert_eq!(active(&cluster), 1, "the slot went to the next in line");
}

#[test]
fn a_restarted_owner_has_every_ticket_and_admits_no_one_twice() {
    let mut partition = MemoryPartition::default();
    opened(&mut partition, rules(Some(600), Some(50)));
    for n in 0..200 {
        partition.actions(&join(&format!("u{n}")), NOW + n);
    }
    let mut admissions = admitted(&partition.tick(ON_SALE));
    for n in 200..260 {
        partition.actions(&join(&format!("u{n}")), ON_SALE + n);
    }
    admissions.extend(admitted(&partition.tick(ON_SALE + 2_000)));
    let before = partition.owner().room(EVENT).expect("room").clone();
    let mut restarted = partition.restarted();
    restarted.tick(ON_SALE + 2_000);
    let after = restarted.owner().room(EVENT).expect("room");
    assert_eq!(after, &before, "the stored room is the room");
    admissions.extend(admitted(&restarted.tick(ON_SALE + 4_000)));
    let mut unique = admissions.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), admissions.len(), "no one admitted twice");
    assert_eq!(
        admissions.len(),
        30,
        "10 a second: 10 at the sale, 20 in the next 2 s"
    );
    // A replay of the log rebuilds it too.
    let replayed = MemoryPartition::replay(partition.log().iter().chain(restarted.log()));
    let rooms = |store: &crate::MemoryStore| {
        crate::PartitionStore::rooms(store, 0).unwrap_or_else(|never| match never {})
    };
    assert!(
        rooms(&replayed.store) == rooms(&restarted.store),
        "replayed"
    );
}
