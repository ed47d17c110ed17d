//! The Avro contracts: round trips, framing, schema evolution against committed versions.

use std::path::PathBuf;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use proptest::prelude::*;
use seatflow_aggregates::room::{
    RoomEvent, RoomHeader, RoomRules, SessionEnd, Shuffle, Ticket, TicketStatus,
};
use seatflow_aggregates::{
    Cancel, Checkout, ClaimQuota, Command, CommandReply, Completed, Confirm, Event, InitSection,
    Layout, Outcome, QuotaKey, QuotaState, QuotaVerdict, Rejection, ReleaseQuota, Reservation,
    ReservationId, Reserve, SaleRules, Seat, SeatRequest, SectionInitialized, SectionKey,
    SectionState, SectionStatus, Status,
};
use seatflow_aggregates::{RoomCommand, RoomRecorded, RoomRequest};
use seatflow_avro::{
    Contract, DecodeError, StoredQuota, StoredRoom, StoredSection, StoredTicket, decode,
    decode_through_values, encode, encode_through_values,
};

fn key() -> impl Strategy<Value = SectionKey> {
    ("[a-z0-9-]{1,12}", "[A-Z][a-z0-9]{0,6}").prop_map(|(e, s)| SectionKey::new(e, s))
}

fn seat() -> impl Strategy<Value = Seat> {
    (1..200u16, 1..200u16).prop_map(|(row, seat)| Seat::new(row, seat))
}

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL.to_vec())
}

fn checkout() -> impl Strategy<Value = Checkout> {
    (
        prop::option::of(any::<i64>()),
        prop::option::of(any::<i64>()),
        prop::option::of(any::<i64>()),
        prop::option::of(".{1,128}"),
        prop::option::of(0..u64::from(u32::MAX)),
    )
        .prop_map(
            |(expires_at, confirmed_at, expired_at, payment_ref, waitlisted)| Checkout {
                expires_at,
                confirmed_at,
                expired_at,
                payment_ref,
                waitlisted,
            },
        )
}

fn rejection() -> impl Strategy<Value = Rejection> {
    prop_oneof![
        Just(Rejection::SoldOut),
        (0..10_000u32).prop_map(|available| Rejection::NotEnoughSeats { available }),
        (1..100u16).prop_map(|requested| Rejection::NoAdjacentSeats { requested }),
        seat().prop_map(|seat| Rejection::SeatTaken { seat }),
        seat().prop_map(|seat| Rejection::SeatOutOfRange { seat }),
        seat().prop_map(|seat| Rejection::DuplicateSeat { seat }),
        (0..100u16).prop_map(|requested| Rejection::InvalidSeatCount { requested }),
        Just(Rejection::UnknownSection),
        Just(Rejection::UnknownReservation),
        Just(Rejection::NotOwner),
        status().prop_map(|status| Rejection::NotCancellable { status }),
        Just(Rejection::SectionExists),
        (1..101u16).prop_map(|limit| Rejection::UserLimitExceeded { limit }),
        (0..100_000u32).prop_map(|limit| Rejection::WaitlistFull { limit }),
    ]
}

fn rules() -> impl Strategy<Value = SaleRules> {
    (
        0..3601u32,
        prop::option::of(1..101u16),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(any::<i64>()),
    )
        .prop_map(
            |(hold_seconds, max_seats_per_user, avoid_single_seats, waiting_room, on_sale_at)| {
                SaleRules {
                    hold_seconds,
                    max_seats_per_user,
                    avoid_single_seats,
                    waiting_room,
                    on_sale_at,
                }
            },
        )
}

fn room_rules() -> impl Strategy<Value = RoomRules> {
    (
        any::<i64>(),
        prop::option::of(1..1_000_000u32),
        prop::option::of(1..1_000_000u32),
        1..86_400u32,
        0..86_400u32,
    )
        .prop_map(
            |(on_sale_at, admit_per_minute, max_active, session_seconds, opens_before_seconds)| {
                RoomRules {
                    on_sale_at,
                    admit_per_minute,
                    max_active,
                    session_seconds,
                    opens_before_seconds,
                }
            },
        )
}

fn ticket_id() -> impl Strategy<Value = uuid::Uuid> {
    any::<u128>().prop_map(uuid::Uuid::from_u128)
}

fn session_end() -> impl Strategy<Value = SessionEnd> {
    prop_oneof![
        Just(SessionEnd::Confirmed),
        Just(SessionEnd::Expired),
        Just(SessionEnd::Left)
    ]
}

fn ticket() -> impl Strategy<Value = Ticket> {
    let status = prop_oneof![
        Just(TicketStatus::Waiting),
        (any::<i64>(), any::<i64>()).prop_map(|(at, until)| TicketStatus::Admitted { at, until }),
        (any::<i64>(), session_end()).prop_map(|(at, why)| TicketStatus::Ended { at, why }),
    ];
    (
        ticket_id(),
        ".{1,10}",
        any::<i64>(),
        0..1_000_000u32,
        prop::option::of(1..1_000_000u32),
        status,
    )
        .prop_map(|(id, user, joined_at, arrival, position, status)| Ticket {
            id,
            user,
            joined_at,
            arrival,
            position,
            status,
        })
}

fn room_command() -> impl Strategy<Value = Command> {
    let request = prop_oneof![
        room_rules().prop_map(RoomRequest::Open),
        (ticket_id(), ".{1,10}")
            .prop_map(|(ticket, user_id)| RoomRequest::Join { ticket, user_id }),
        (ticket_id(), ".{1,10}")
            .prop_map(|(ticket, user_id)| RoomRequest::Leave { ticket, user_id }),
        (".{1,10}", reservation_id()).prop_map(|(user_id, reservation_id)| {
            RoomRequest::EndSession {
                user_id,
                reservation_id,
            }
        }),
    ];
    ("[a-z0-9-]{1,12}", any::<i64>(), request).prop_map(|(event_id, requested_at, request)| {
        Command::Room(RoomCommand::new(event_id, requested_at, request))
    })
}

fn room_event() -> impl Strategy<Value = Event> {
    let event =
        prop_oneof![
            (room_rules(), any::<i64>()).prop_map(|(rules, at)| RoomEvent::Opened { rules, at }),
            (ticket_id(), ".{1,10}", any::<i64>())
                .prop_map(|(ticket, user, at)| RoomEvent::Joined { ticket, user, at }),
            (any::<u64>(), any::<i64>()).prop_map(|(seed, at)| RoomEvent::Shuffled { seed, at }),
            (ticket_id(), any::<i64>(), any::<i64>())
                .prop_map(|(ticket, at, until)| RoomEvent::Admitted { ticket, at, until }),
            (ticket_id(), any::<i64>(), session_end())
                .prop_map(|(ticket, at, why)| RoomEvent::Ended { ticket, at, why }),
        ];
    ("[a-z0-9-]{1,12}", event).prop_map(|(event_id, event)| {
        Event::Room(RoomRecorded {
            key: SectionKey::room(event_id),
            event,
        })
    })
}

fn room_rejection() -> impl Strategy<Value = Rejection> {
    prop_oneof![
        any::<i64>().prop_map(|opens_at| Rejection::QueueNotOpen { opens_at }),
        Just(Rejection::NoWaitingRoom),
        Just(Rejection::UnknownTicket),
        Just(Rejection::NotOwner),
        Just(Rejection::SaleStarted),
    ]
}

fn stored_room() -> impl Strategy<Value = StoredRoom> {
    let shuffle = prop::option::of(
        (any::<u64>(), any::<i64>(), 0..1_000_000u32).prop_map(|(seed, at, early)| Shuffle {
            seed,
            at,
            early,
        }),
    );
    (
        "[a-z0-9-]{1,12}",
        room_rules(),
        shuffle,
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(
            |(event_id, rules, shuffle, credit, credited_at)| StoredRoom {
                event_id,
                header: RoomHeader {
                    rules,
                    shuffle,
                    credit,
                    credited_at,
                },
            },
        )
}

fn verdict() -> impl Strategy<Value = QuotaVerdict> {
    prop::sample::select(vec![
        QuotaVerdict::Unchecked,
        QuotaVerdict::Granted,
        QuotaVerdict::Exceeded,
    ])
}

fn reserve() -> impl Strategy<Value = Reserve> {
    (
        reservation_id(),
        key(),
        ".{1,10}",
        prop_oneof![
            (1..9u16).prop_map(SeatRequest::Adjacent),
            prop::collection::vec(seat(), 1..5).prop_map(SeatRequest::Picked)
        ],
        any::<i64>(),
        verdict(),
        any::<bool>(),
    )
        .prop_map(
            |(reservation_id, key, user_id, request, requested_at, quota, waitlist)| Reserve {
                reservation_id,
                key,
                user_id,
                request,
                requested_at,
                quota,
                waitlist,
            },
        )
}

fn reservation_id() -> impl Strategy<Value = ReservationId> {
    any::<u128>().prop_map(|n| ReservationId(uuid::Uuid::from_u128(n)))
}

fn layout() -> impl Strategy<Value = Layout> {
    (1..100u16, 1..100u16).prop_map(|(r, s)| Layout::new(r, s).expect("layout"))
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            key(),
            ".{0,20}",
            0..1000u32,
            layout(),
            rules(),
            any::<i64>()
        )
            .prop_map(|(key, name, position, layout, rules, at)| {
                Command::InitSection(InitSection {
                    key,
                    event_name: name,
                    position,
                    layout,
                    rules,
                    requested_at: at,
                })
            }),
        reserve().prop_map(Command::Reserve),
        (reserve(), 1..101u16).prop_map(|(mut reserve, limit)| {
            // A claim is on its way to the quota: no verdict yet.
            reserve.quota = QuotaVerdict::Unchecked;
            Command::ClaimQuota(ClaimQuota { reserve, limit })
        }),
        (reservation_id(), key(), ".{1,10}", any::<i64>()).prop_map(
            |(reservation_id, key, user_id, requested_at)| {
                Command::ReleaseQuota(ReleaseQuota {
                    reservation_id,
                    key,
                    user_id,
                    requested_at,
                })
            }
        ),
        (reservation_id(), key(), ".{1,10}", any::<i64>()).prop_map(
            |(reservation_id, key, user_id, requested_at)| Command::Cancel(Cancel {
                reservation_id,
                key,
                user_id,
                requested_at
            })
        ),
        (
            reservation_id(),
            key(),
            ".{1,10}",
            prop::option::of(".{1,128}"),
            any::<i64>()
        )
            .prop_map(
                |(reservation_id, key, user_id, payment_ref, requested_at)| {
                    Command::Confirm(Confirm {
                        reservation_id,
                        key,
                        user_id,
                        payment_ref,
                        requested_at,
                    })
                }
            ),
        room_command(),
    ]
}

fn completed() -> impl Strategy<Value = Completed> {
    (
        (reservation_id(), key(), ".{1,10}", status(), 0..9u16),
        prop::collection::vec(seat(), 0..5),
        prop::option::of(rejection()),
        (any::<i64>(), any::<i64>(), prop::option::of(any::<i64>())),
        checkout(),
        0..100_000u32,
    )
        .prop_map(
            |(
                (id, key, user_id, status, requested_seats),
                seats,
                reason,
                (requested_at, decided_at, cancelled_at),
                checkout,
                available,
            )| Completed {
                reservation: Reservation {
                    id,
                    key,
                    user_id,
                    status,
                    requested_seats,
                    seats,
                    reason,
                    requested_at,
                    decided_at,
                    cancelled_at,
                    checkout,
                },
                available,
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            key(),
            ".{0,20}",
            0..1000u32,
            layout(),
            rules(),
            any::<i64>()
        )
            .prop_map(|(key, event_name, position, layout, rules, at)| {
                Event::SectionInitialized(SectionInitialized {
                    key,
                    event_name,
                    position,
                    layout,
                    rules,
                    at,
                })
            }),
        completed().prop_map(Event::ReservationCompleted),
        room_event(),
    ]
}

fn command_reply() -> impl Strategy<Value = CommandReply> {
    prop_oneof![
        (".{1,20}", completed()).prop_map(|(correlation_id, completed)| CommandReply {
            correlation_id,
            key: completed.reservation.key.clone(),
            available: completed.available,
            outcome: Outcome::Reservation(completed.reservation),
        }),
        (".{1,20}", key()).prop_map(|(correlation_id, key)| CommandReply {
            correlation_id,
            key,
            available: 0,
            outcome: Outcome::SectionReady,
        }),
        (".{1,20}", key(), rejection()).prop_map(|(correlation_id, key, rejection)| {
            CommandReply {
                correlation_id,
                key,
                available: 0,
                outcome: Outcome::Refused(rejection),
            }
        }),
        (".{1,20}", "[a-z0-9-]{1,12}", ticket()).prop_map(|(correlation_id, event_id, ticket)| {
            CommandReply {
                correlation_id,
                key: SectionKey::room(event_id),
                available: 0,
                outcome: Outcome::Ticket(ticket),
            }
        }),
        (".{1,20}", "[a-z0-9-]{1,12}", room_rejection()).prop_map(
            |(correlation_id, event_id, rejection)| CommandReply {
                correlation_id,
                key: SectionKey::room(event_id),
                available: 0,
                outcome: Outcome::Refused(rejection),
            }
        ),
    ]
}

fn stored_section() -> impl Strategy<Value = StoredSection> {
    (
        key(),
        layout(),
        prop::collection::vec((0..100u16, 0..100u16), 0..200),
        rules(),
    )
        .prop_map(|(key, layout, picks, rules)| {
            let held = picks
                .into_iter()
                .map(|(r, s)| Seat::new(r % layout.rows + 1, s % layout.seats_per_row + 1));
            StoredSection {
                key,
                state: SectionState::with_held(layout, held).with_rules(rules),
            }
        })
}

fn stored_quota() -> impl Strategy<Value = StoredQuota> {
    (
        "[a-z0-9-]{1,12}",
        ".{1,10}",
        prop::collection::vec((reservation_id(), 1..101u16), 0..8),
    )
        .prop_map(|(event_id, user_id, claims)| StoredQuota {
            key: QuotaKey::new(event_id, user_id),
            state: QuotaState::from_claims(claims),
        })
}

fn round_trip<T: Contract + PartialEq + std::fmt::Debug>(record: &T) -> Result<(), TestCaseError> {
    let bytes = encode(record).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&bytes[..2], &[0xC3u8, 0x01][..]);
    let back: T = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, record);
    Ok(())
}

/// The record's bytes are those of the generic writer (through its Avro value): the direct
/// writers of the decided path follow the schema by hand, and this is what holds them to it.
fn same_bytes_as_through_values<T: Contract + std::fmt::Debug>(
    record: &T,
) -> Result<(), TestCaseError> {
    let direct = encode(record).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let reference =
        encode_through_values(record).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(direct, reference, "{:?}", record);
    Ok(())
}

/// The record read from its bytes is what the generic reader (through an Avro value) makes of
/// them; from the same bytes with one byte changed or cut short, it is an error or the generic
/// reader's record, never another one. (Not "an error for both": the generic reader reads a
/// datum that ends where a union's index should be as if that union were null; this one
/// refuses a datum cut short.)
fn read_as_through_values<T: Contract + PartialEq + std::fmt::Debug>(
    record: &T,
    at: prop::sample::Index,
    byte: u8,
) -> Result<(), TestCaseError> {
    let bytes = encode(record).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let same = |bytes: &[u8], strict: bool| -> Result<(), TestCaseError> {
        let direct = decode::<T>(bytes);
        let reference = decode_through_values::<T>(bytes);
        if strict || direct.is_ok() {
            prop_assert_eq!(
                direct.as_ref().ok(),
                reference.as_ref().ok(),
                "{:?} / {:?}: {:02x?}",
                direct.as_ref().err(),
                reference.as_ref().err(),
                bytes
            );
        }
        Ok(())
    };
    same(&bytes, true)?;
    let datum = 10..bytes.len();
    let i = datum.start + at.index(datum.len());
    let mut changed = bytes.clone();
    changed[i] = byte;
    same(&changed, false)?;
    same(&bytes[..i], false)
}

proptest! {
    #[test]
    fn commands_are_written_and_read_as_the_generic_path_does(
        record in command(), at in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        same_bytes_as_through_values(&record)?;
        read_as_through_values(&record, at, byte)?;
    }

    #[test]
    fn completions_are_read_as_the_generic_reader_does(
        record in completed(), at in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        read_as_through_values(&record, at, byte)?;
    }

    #[test]
    fn log_events_are_read_as_the_generic_reader_does(
        record in event(), at in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        read_as_through_values(&record, at, byte)?;
    }

    #[test]
    fn command_replies_are_read_as_the_generic_reader_does(
        reply in command_reply(), at in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        read_as_through_values(&reply, at, byte)?;
    }

    #[test]
    fn completions_are_written_as_the_generic_writer_does(record in completed()) {
        same_bytes_as_through_values(&record)?;
    }

    #[test]
    fn log_events_are_written_as_the_generic_writer_does(record in event()) {
        same_bytes_as_through_values(&record)?;
    }

    #[test]
    fn command_replies_are_written_as_the_generic_writer_does(reply in command_reply()) {
        same_bytes_as_through_values(&reply)?;
    }

    #[test]
    fn section_statuses_are_written_as_the_generic_writer_does(
        key in key(),
        available in any::<u32>(),
    ) {
        same_bytes_as_through_values(&SectionStatus { key, available })?;
    }

    #[test]
    fn commands_round_trip(record in command()) { round_trip(&record)?; }

    #[test]
    fn completions_round_trip(record in completed()) { round_trip(&record)?; }

    #[test]
    fn log_events_round_trip(record in event()) { round_trip(&record)?; }

    #[test]
    fn section_states_round_trip(record in stored_section()) { round_trip(&record)?; }

    #[test]
    fn quotas_round_trip(record in stored_quota()) { round_trip(&record)?; }

    #[test]
    fn command_replies_round_trip(reply in command_reply()) { round_trip(&reply)?; }

    #[test]
    fn waiting_rooms_round_trip(record in stored_room()) { round_trip(&record)?; }

    #[test]
    fn room_tickets_round_trip(record in ticket()) { round_trip(&StoredTicket(record))?; }

    #[test]
    fn section_statuses_round_trip(key in key(), available in 0..100_000u32) {
        round_trip(&SectionStatus { key, available })?;
    }

    #[test]
    fn garbage_never_panics_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode::<Event>(&bytes);
        let mut framed = vec![0xC3, 0x01];
        framed.extend_from_slice(&encode(&SectionStatus {
            key: SectionKey::new("e", "s"),
            available: 1,
        }).expect("encode")[2..10]);
        framed.extend_from_slice(&bytes);
        let _ = decode::<SectionStatus>(&framed);
    }
}

#[test]
fn the_slim_status_record_is_tens_of_bytes_not_kilobytes() {
    let bytes = encode(&SectionStatus {
        key: SectionKey::new("0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b", "A12"),
        available: 4_321,
    })
    .expect("encode");
    assert!(bytes.len() < 64, "{} bytes", bytes.len());
}

#[test]
fn a_record_of_one_contract_is_refused_by_another() {
    let bytes = encode(&SectionStatus {
        key: SectionKey::new("e", "s"),
        available: 3,
    })
    .expect("encode");
    assert!(matches!(
        decode::<Event>(&bytes),
        Err(DecodeError::UnknownSchema { .. })
    ));
    assert!(matches!(
        decode::<Event>(b"{\"json\": true}"),
        Err(DecodeError::NotSingleObject)
    ));
}

// ---- schema evolution -----------------------------------------------------------------------

const CONTRACTS: [&str; 9] = [
    "CommandReply",
    "RoomTicket",
    "WaitingRoom",
    "ReservationCommand",
    "ReservationCompleted",
    "SeatEvent",
    "SectionStatusEvent",
    "SectionState",
    "UserQuota",
];

/// The crate's folder, read when the test runs: a test binary reused from a build in another
/// checkout (a shared target directory) must not read that checkout's files.
fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn parse(path: PathBuf) -> Schema {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    Schema::parse_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The committed versions of a schema, oldest first.
fn history(name: &str) -> Vec<(String, Schema)> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(crate_dir().join("schemas/history"))
        .expect("history folder")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let file = path.file_name()?.to_str()?.to_owned();
            let version = file
                .strip_prefix(&format!("{name}.v"))?
                .strip_suffix(".avsc")?
                .parse()
                .ok()?;
            Some((version, path))
        })
        .collect();
    versions.sort();
    versions
        .into_iter()
        .map(|(v, path)| (format!("v{v}"), parse(path)))
        .collect()
}

#[test]
fn every_schema_reads_data_written_with_every_committed_version() {
    for name in CONTRACTS {
        let current = parse(crate_dir().join(format!("schemas/{name}.avsc")));
        let versions = history(name);
        assert!(!versions.is_empty(), "{name} has no committed version");
        for (version, old) in &versions {
            SchemaCompatibility::can_read(old, &current).unwrap_or_else(|e| {
                panic!("{name}.avsc cannot read data written with {version}: {e}")
            });
        }
        // The newest committed version must be the current schema: a changed schema is
        // committed as a new version (and the reader keeps the old one).
        let (last_version, last) = versions.last().expect("a version");
        assert_eq!(
            last.canonical_form(),
            current.canonical_form(),
            "{name}.avsc differs from {last_version}: add it as schemas/history/{name}.v{}.avsc",
            versions.len() + 1
        );
    }
}

/// Records written by each committed version of each schema, kept as bytes in tests/data.
fn golden_records() -> Vec<(&'static str, Vec<u8>)> {
    let id = ReservationId(uuid::Uuid::from_u128(
        0x0193_a1b2_7c4d_7e8f_9a0b_1c2d_3e4f_5a6b,
    ));
    let key = SectionKey::new("evt-golden", "A");
    let confirmed = Completed {
        reservation: Reservation {
            id,
            key: key.clone(),
            user_id: "alice".into(),
            status: Status::Cancelled,
            requested_seats: 2,
            seats: vec![Seat::new(1, 3), Seat::new(1, 4)],
            reason: Some(Rejection::SeatTaken {
                seat: Seat::new(2, 2),
            }),
            requested_at: 1_764_000_000_000,
            decided_at: 1_764_000_000_005,
            cancelled_at: Some(1_764_000_100_000),
            checkout: Checkout {
                expires_at: Some(1_764_000_600_000),
                confirmed_at: Some(1_764_000_050_000),
                expired_at: None,
                payment_ref: Some("pay-1".into()),
                waitlisted: Some(7),
            },
        },
        available: 397,
    };
    let command = Command::Reserve(Reserve {
        reservation_id: id,
        key: key.clone(),
        user_id: "alice".into(),
        request: SeatRequest::Picked(vec![Seat::new(1, 3), Seat::new(1, 4)]),
        requested_at: 1_764_000_000_000,
        quota: QuotaVerdict::Granted,
        waitlist: true,
    });
    let state = StoredSection {
        key: key.clone(),
        state: SectionState::with_held(
            Layout::new(20, 20).expect("layout"),
            [Seat::new(1, 3), Seat::new(1, 4), Seat::new(20, 20)],
        )
        .with_rules(SaleRules {
            hold_seconds: 900,
            max_seats_per_user: Some(6),
            avoid_single_seats: true,
            waiting_room: true,
            on_sale_at: Some(1_764_000_000_000),
        }),
    };
    let golden_rules = RoomRules {
        on_sale_at: 1_764_000_000_000,
        admit_per_minute: Some(600),
        max_active: None,
        session_seconds: 600,
        opens_before_seconds: 1_800,
    };
    let golden_ticket = Ticket {
        id: id.0,
        user: "alice".into(),
        joined_at: 1_763_999_000_000,
        arrival: 17,
        position: Some(3),
        status: TicketStatus::Admitted {
            at: 1_764_000_000_500,
            until: 1_764_000_600_500,
        },
    };
    let quota = StoredQuota {
        key: QuotaKey::new("evt-golden", "alice"),
        state: QuotaState::from_claims([(id, 2)]),
    };
    vec![
        ("ReservationCommand", encode(&command).expect("encode")),
        ("ReservationCompleted", encode(&confirmed).expect("encode")),
        (
            "SeatEvent",
            encode(&Event::ReservationCompleted(confirmed.clone())).expect("encode"),
        ),
        (
            "SectionStatusEvent",
            encode(&SectionStatus {
                key,
                available: 397,
            })
            .expect("encode"),
        ),
        ("SectionState", encode(&state).expect("encode")),
        ("UserQuota", encode(&quota).expect("encode")),
        (
            "WaitingRoom",
            encode(&StoredRoom {
                event_id: "evt-golden".into(),
                header: RoomHeader {
                    rules: golden_rules,
                    shuffle: Some(Shuffle {
                        seed: u64::MAX - 7,
                        at: 1_764_000_000_000,
                        early: 1_500,
                    }),
                    credit: 42_000,
                    credited_at: 1_764_000_001_000,
                },
            })
            .expect("encode"),
        ),
        (
            "RoomTicket",
            encode(&StoredTicket(golden_ticket.clone())).expect("encode"),
        ),
        (
            "CommandReply",
            encode(&CommandReply {
                correlation_id: id.to_string(),
                key: confirmed.reservation.key.clone(),
                available: 397,
                outcome: Outcome::Reservation(confirmed.reservation.clone()),
            })
            .expect("encode"),
        ),
    ]
}

fn decodes(name: &str, bytes: &[u8]) -> Result<(), DecodeError> {
    match name {
        "ReservationCommand" => decode::<Command>(bytes).map(drop),
        "ReservationCompleted" => decode::<Completed>(bytes).map(drop),
        "SeatEvent" => decode::<Event>(bytes).map(drop),
        "SectionStatusEvent" => decode::<SectionStatus>(bytes).map(drop),
        "SectionState" => decode::<StoredSection>(bytes).map(drop),
        "CommandReply" => decode::<CommandReply>(bytes).map(drop),
        "UserQuota" => decode::<StoredQuota>(bytes).map(drop),
        "WaitingRoom" => decode::<StoredRoom>(bytes).map(drop),
        "RoomTicket" => decode::<StoredTicket>(bytes).map(drop),
        other => panic!("unknown contract {other}"),
    }
}

#[test]
fn data_written_with_committed_versions_still_decodes() {
    let data = crate_dir().join("tests/data");
    if std::env::var_os("SEATFLOW_WRITE_GOLDEN").is_some() {
        // Run once per new schema version to commit what that version writes.
        let version = |name: &str| history(name).len();
        for (name, bytes) in golden_records() {
            let path = data.join(format!("{name}.v{}.bin", version(name)));
            if !path.exists() {
                std::fs::write(&path, bytes).expect("write golden file");
            }
        }
    }
    for name in CONTRACTS {
        for (version, _) in history(name) {
            let path = data.join(format!("{name}.{version}.bin"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{path:?}: {e} (run with SEATFLOW_WRITE_GOLDEN=1 once to create it)")
            });
            decodes(name, &bytes).unwrap_or_else(|e| panic!("{path:?} no longer decodes: {e}"));
        }
    }
}

#[test]
fn the_current_version_writes_exactly_the_committed_bytes_of_its_version() {
    // Same schema, same record -> same bytes: the encoding of a committed version never drifts.
    for (name, bytes) in golden_records() {
        let version = history(name).len();
        let path = crate_dir().join(format!("tests/data/{name}.v{version}.bin"));
        if let Ok(committed) = std::fs::read(&path) {
            assert_eq!(bytes, committed, "{name} encodes differently from {path:?}");
        }
    }
}

#[test]
fn named_types_shared_between_files_are_defined_identically() {
    // Each .avsc file is self-contained; the types they share must not drift apart.
    let completed = parse(crate_dir().join("schemas/ReservationCompleted.avsc"));
    let seat_event = parse(crate_dir().join("schemas/SeatEvent.avsc"));
    let Schema::Record(event) = &seat_event else {
        panic!("SeatEvent is a record");
    };
    let Schema::Union(branches) = &event.fields[0].schema else {
        panic!("SeatEvent.event is a union");
    };
    let inner = branches
        .variants()
        .iter()
        .find(|s| matches!(s, Schema::Record(r) if r.name.name() == "ReservationCompleted"))
        .expect("ReservationCompleted branch");
    assert_eq!(inner.canonical_form(), completed.canonical_form());

    let reply = parse(crate_dir().join("schemas/CommandReply.avsc"));
    let Schema::Record(reply) = &reply else {
        panic!("CommandReply is a record");
    };
    let Schema::Union(branches) = &reply.fields[1].schema else {
        panic!("CommandReply.outcome is a union");
    };
    assert_eq!(
        branches.variants()[0].canonical_form(),
        completed.canonical_form()
    );
}
