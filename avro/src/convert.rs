//! Conversions between domain types and Avro values, one contract per schema file.

use apache_avro::types::Value;
use seatflow_aggregates::{
    Cancel, Checkout, ClaimQuota, Command, CommandReply, Completed, Confirm, Event, InitSection,
    Layout, Millis, Outcome, QuotaKey, QuotaState, QuotaVerdict, Rejection, ReleaseQuota,
    Reservation, ReservationId, Reserve, RoomCommand, SaleRules, Seat, SeatRequest,
    SectionInitialized, SectionKey, SectionState, SectionStatus, Status,
};

use crate::codec::{
    Contract, DecodeError, EncodeError, Versions, read_through_values, versions,
    write_through_values,
};
use crate::direct;

impl Contract for Command {
    const NAME: &'static str = "ReservationCommand";

    fn versions() -> &'static Versions {
        versions!("ReservationCommand", ["v1", "v2", "v3", "v4", "v5"])
    }

    fn to_value(&self) -> Value {
        let key = self.key();
        let (requested_at, branch, command) = match self {
            Command::Room(room) => {
                let (branch, command) = crate::room::command_value(&room.request);
                (room.requested_at, branch, command)
            }
            Command::InitSection(init) => (
                init.requested_at,
                0,
                record(vec![
                    ("eventName", string(&init.event_name)),
                    ("position", count_value(init.position)),
                    ("rows", Value::Int(i32::from(init.layout.rows))),
                    (
                        "seatsPerRow",
                        Value::Int(i32::from(init.layout.seats_per_row)),
                    ),
                    ("holdSeconds", count_value(init.rules.hold_seconds)),
                    (
                        "maxSeatsPerUser",
                        limit_value(init.rules.max_seats_per_user),
                    ),
                    (
                        "avoidSingleSeats",
                        Value::Boolean(init.rules.avoid_single_seats),
                    ),
                    ("waitingRoom", Value::Boolean(init.rules.waiting_room)),
                    ("onSaleAt", optional_time(init.rules.on_sale_at)),
                ]),
            ),
            Command::Reserve(reserve) => {
                let mut fields = reserve_fields(reserve);
                fields.push(("quota", verdict_value(reserve.quota)));
                fields.push(("waitlist", Value::Boolean(reserve.waitlist)));
                (reserve.requested_at, 1, record(fields))
            }
            Command::ClaimQuota(claim) => {
                let mut fields = reserve_fields(&claim.reserve);
                fields.push(("limit", Value::Int(i32::from(claim.limit))));
                fields.push(("waitlist", Value::Boolean(claim.reserve.waitlist)));
                (claim.reserve.requested_at, 4, record(fields))
            }
            Command::ReleaseQuota(release) => (
                release.requested_at,
                5,
                record(vec![
                    ("reservationId", string(&release.reservation_id.to_string())),
                    ("userId", string(&release.user_id)),
                ]),
            ),
            Command::Cancel(cancel) => (
                cancel.requested_at,
                2,
                record(vec![
                    ("reservationId", string(&cancel.reservation_id.to_string())),
                    ("userId", string(&cancel.user_id)),
                ]),
            ),
            Command::Confirm(confirm) => (
                confirm.requested_at,
                3,
                record(vec![
                    ("reservationId", string(&confirm.reservation_id.to_string())),
                    ("userId", string(&confirm.user_id)),
                    (
                        "paymentRef",
                        optional_string(confirm.payment_ref.as_deref()),
                    ),
                ]),
            ),
        };
        record(vec![
            ("eventId", string(&key.event_id)),
            ("section", string(&key.section)),
            ("requestedAt", Value::TimestampMillis(requested_at)),
            ("command", Value::Union(branch, Box::new(command))),
        ])
    }

    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Command::Reserve(reserve) => {
                direct::reserve_command(out, reserve);
                Ok(())
            }
            // The other commands are a request's later steps or an organizer's: the generic path.
            _ => write_through_values(self, out),
        }
    }

    fn read_from(datum: &[u8]) -> Result<Self, DecodeError> {
        match direct::Reader::new(Self::NAME, datum).reserve_command()? {
            Some(command) => Ok(command),
            None => read_through_values(datum),
        }
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut fields = Fields::of(Self::NAME, value)?;
        let key = SectionKey::new(fields.string("eventId")?, fields.string("section")?);
        let requested_at = fields.long("requestedAt")?;
        let (branch, command) = fields.union("command")?;
        let mut command = Fields::of(Self::NAME, command)?;
        Ok(match branch {
            0 => {
                let layout = Layout::new(command.u16("rows")?, command.u16("seatsPerRow")?)
                    .map_err(|e| field_error(Self::NAME, "rows", e.to_string()))?;
                Command::InitSection(InitSection {
                    key,
                    event_name: command.string("eventName")?,
                    position: command.u32("position")?,
                    layout,
                    rules: command.rules()?,
                    requested_at,
                })
            }
            1 => {
                let mut reserve = command.reserve(key, requested_at)?;
                reserve.quota = command.verdict("quota")?;
                Command::Reserve(reserve)
            }
            4 => {
                let reserve = command.reserve(key, requested_at)?;
                Command::ClaimQuota(ClaimQuota {
                    reserve,
                    limit: command.u16("limit")?,
                })
            }
            5 => Command::ReleaseQuota(ReleaseQuota {
                reservation_id: command.reservation_id("reservationId")?,
                key,
                user_id: command.string("userId")?,
                requested_at,
            }),
            2 => Command::Cancel(Cancel {
                reservation_id: command.reservation_id("reservationId")?,
                key,
                user_id: command.string("userId")?,
                requested_at,
            }),
            3 => Command::Confirm(Confirm {
                reservation_id: command.reservation_id("reservationId")?,
                key,
                user_id: command.string("userId")?,
                payment_ref: command.optional_string("paymentRef")?,
                requested_at,
            }),
            6..=9 => Command::Room(RoomCommand {
                key,
                requested_at,
                request: crate::room::command_from(branch, command)?,
            }),
            other => {
                return Err(field_error(
                    Self::NAME,
                    "command",
                    format!("unknown branch {other}"),
                ));
            }
        })
    }
}

impl Contract for Completed {
    const NAME: &'static str = "ReservationCompleted";

    fn versions() -> &'static Versions {
        versions!("ReservationCompleted", ["v1", "v2", "v3", "v4"])
    }

    fn to_value(&self) -> Value {
        completed_value(self)
    }

    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        direct::completed(out, &self.reservation, self.available);
        Ok(())
    }

    fn read_from(datum: &[u8]) -> Result<Self, DecodeError> {
        direct::Reader::new(Self::NAME, datum).completed()
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        completed_from(Self::NAME, value)
    }
}

impl Contract for Event {
    const NAME: &'static str = "SeatEvent";

    fn versions() -> &'static Versions {
        versions!("SeatEvent", ["v1", "v2", "v3", "v4", "v5"])
    }

    fn to_value(&self) -> Value {
        let (branch, event) = match self {
            Event::SectionInitialized(init) => (
                0,
                record(vec![
                    ("eventId", string(&init.key.event_id)),
                    ("section", string(&init.key.section)),
                    ("eventName", string(&init.event_name)),
                    ("position", count_value(init.position)),
                    ("rows", Value::Int(i32::from(init.layout.rows))),
                    (
                        "seatsPerRow",
                        Value::Int(i32::from(init.layout.seats_per_row)),
                    ),
                    ("at", Value::TimestampMillis(init.at)),
                    ("holdSeconds", count_value(init.rules.hold_seconds)),
                    (
                        "maxSeatsPerUser",
                        limit_value(init.rules.max_seats_per_user),
                    ),
                    (
                        "avoidSingleSeats",
                        Value::Boolean(init.rules.avoid_single_seats),
                    ),
                    ("waitingRoom", Value::Boolean(init.rules.waiting_room)),
                    ("onSaleAt", optional_time(init.rules.on_sale_at)),
                ]),
            ),
            Event::ReservationCompleted(completed) => (1, completed_value(completed)),
            Event::Room(recorded) => (2, crate::room::recorded_value(recorded)),
        };
        record(vec![("event", Value::Union(branch, Box::new(event)))])
    }

    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Event::ReservationCompleted(completed) => {
                direct::long(out, 1);
                direct::completed(out, &completed.reservation, completed.available);
                Ok(())
            }
            // A section's initialisation and a room's records are rare: the generic path.
            Event::SectionInitialized(_) | Event::Room(_) => write_through_values(self, out),
        }
    }

    fn read_from(datum: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = direct::Reader::new(Self::NAME, datum);
        match reader.long()? {
            1 => Ok(Event::ReservationCompleted(reader.completed()?)),
            _ => read_through_values(datum),
        }
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut fields = Fields::of(Self::NAME, value)?;
        let (branch, event) = fields.union("event")?;
        match branch {
            0 => {
                let mut init = Fields::of(Self::NAME, event)?;
                let key = SectionKey::new(init.string("eventId")?, init.string("section")?);
                let event_name = init.string("eventName")?;
                let position = init.u32("position")?;
                let layout = Layout::new(init.u16("rows")?, init.u16("seatsPerRow")?)
                    .map_err(|e| field_error(Self::NAME, "rows", e.to_string()))?;
                Ok(Event::SectionInitialized(SectionInitialized {
                    key,
                    event_name,
                    position,
                    layout,
                    at: init.long("at")?,
                    rules: init.rules()?,
                }))
            }
            1 => Ok(Event::ReservationCompleted(completed_from(
                Self::NAME,
                event,
            )?)),
            2 => Ok(Event::Room(crate::room::recorded_from(event)?)),
            other => Err(field_error(
                Self::NAME,
                "event",
                format!("unknown branch {other}"),
            )),
        }
    }
}

impl Contract for SectionStatus {
    const NAME: &'static str = "SectionStatusEvent";

    fn versions() -> &'static Versions {
        versions!("SectionStatusEvent", ["v1"])
    }

    fn to_value(&self) -> Value {
        record(vec![
            ("eventId", string(&self.key.event_id)),
            ("section", string(&self.key.section)),
            ("availableCount", count_value(self.available)),
        ])
    }

    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        direct::string(out, &self.key.event_id);
        direct::string(out, &self.key.section);
        direct::count(out, self.available);
        Ok(())
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut fields = Fields::of(Self::NAME, value)?;
        Ok(SectionStatus {
            key: SectionKey::new(fields.string("eventId")?, fields.string("section")?),
            available: fields.u32("availableCount")?,
        })
    }
}

impl Contract for CommandReply {
    const NAME: &'static str = "CommandReply";

    fn versions() -> &'static Versions {
        versions!("CommandReply", ["v1", "v2", "v3", "v4", "v5"])
    }

    fn to_value(&self) -> Value {
        let (branch, outcome) = match &self.outcome {
            Outcome::Reservation(reservation) => (
                0,
                completed_value(&Completed {
                    reservation: reservation.clone(),
                    available: self.available,
                }),
            ),
            Outcome::SectionReady => (
                1,
                record(vec![
                    ("eventId", string(&self.key.event_id)),
                    ("section", string(&self.key.section)),
                ]),
            ),
            Outcome::Refused(rejection) if self.key.is_room() => {
                (4, crate::room::refused_value(&self.key, rejection))
            }
            Outcome::Ticket(ticket) => (
                3,
                record(vec![
                    ("eventId", string(&self.key.event_id)),
                    ("ticket", crate::room::ticket_value(ticket)),
                ]),
            ),
            Outcome::Refused(rejection) => (
                2,
                record(vec![
                    ("eventId", string(&self.key.event_id)),
                    ("section", string(&self.key.section)),
                    ("reason", rejection_value(rejection)),
                ]),
            ),
        };
        record(vec![
            ("correlationId", string(&self.correlation_id)),
            ("outcome", Value::Union(branch, Box::new(outcome))),
        ])
    }

    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match &self.outcome {
            Outcome::Reservation(reservation) => {
                direct::string(out, &self.correlation_id);
                direct::long(out, 0);
                direct::completed(out, reservation, self.available);
                Ok(())
            }
            // A section's readiness, a refusal and a room's answers: the generic path.
            Outcome::SectionReady | Outcome::Refused(_) | Outcome::Ticket(_) => {
                write_through_values(self, out)
            }
        }
    }

    fn read_from(datum: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = direct::Reader::new(Self::NAME, datum);
        let correlation_id = reader.str()?.to_owned();
        match reader.long()? {
            0 => {
                let completed = reader.completed()?;
                Ok(CommandReply {
                    correlation_id,
                    key: completed.reservation.key.clone(),
                    available: completed.available,
                    outcome: Outcome::Reservation(completed.reservation),
                })
            }
            _ => read_through_values(datum),
        }
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut fields = Fields::of(Self::NAME, value)?;
        let correlation_id = fields.string("correlationId")?;
        let (branch, outcome) = fields.union("outcome")?;
        match branch {
            0 => {
                let completed = completed_from(Self::NAME, outcome)?;
                Ok(CommandReply {
                    correlation_id,
                    key: completed.reservation.key.clone(),
                    available: completed.available,
                    outcome: Outcome::Reservation(completed.reservation),
                })
            }
            1 => {
                let mut ready = Fields::of(Self::NAME, outcome)?;
                Ok(CommandReply {
                    correlation_id,
                    key: SectionKey::new(ready.string("eventId")?, ready.string("section")?),
                    available: 0,
                    outcome: Outcome::SectionReady,
                })
            }
            2 => {
                let mut refused = Fields::of(Self::NAME, outcome)?;
                let key = SectionKey::new(refused.string("eventId")?, refused.string("section")?);
                let reason = rejection_from(Self::NAME, refused.take("reason")?)?;
                Ok(CommandReply {
                    correlation_id,
                    key,
                    available: 0,
                    outcome: Outcome::Refused(reason),
                })
            }
            3 => {
                let mut answer = Fields::of(Self::NAME, outcome)?;
                let key = SectionKey::room(answer.string("eventId")?);
                let ticket = crate::room::ticket_from(Self::NAME, answer.take("ticket")?)?;
                Ok(CommandReply {
                    correlation_id,
                    key,
                    available: 0,
                    outcome: Outcome::Ticket(ticket),
                })
            }
            4 => {
                let (key, reason) = crate::room::refused_from(outcome)?;
                Ok(CommandReply {
                    correlation_id,
                    key,
                    available: 0,
                    outcome: Outcome::Refused(reason),
                })
            }
            other => Err(field_error(
                Self::NAME,
                "outcome",
                format!("unknown branch {other}"),
            )),
        }
    }
}

/// A section's state as stored by a seat worker, with the key it is stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSection {
    pub key: SectionKey,
    pub state: SectionState,
}

impl Contract for StoredSection {
    const NAME: &'static str = "SectionState";

    fn versions() -> &'static Versions {
        versions!("SectionState", ["v1", "v2", "v3", "v4"])
    }

    fn to_value(&self) -> Value {
        let layout = self.state.layout();
        let bitmap = self.state.to_bitmap();
        record(vec![
            ("eventId", string(&self.key.event_id)),
            ("section", string(&self.key.section)),
            ("rows", Value::Int(i32::from(layout.rows))),
            ("seatsPerRow", Value::Int(i32::from(layout.seats_per_row))),
            ("availableCount", count_value(self.state.available())),
            ("held", Value::Bytes(bitmap)),
            ("holdSeconds", count_value(self.state.rules().hold_seconds)),
            (
                "maxSeatsPerUser",
                limit_value(self.state.rules().max_seats_per_user),
            ),
            (
                "avoidSingleSeats",
                Value::Boolean(self.state.rules().avoid_single_seats),
            ),
            (
                "waitingRoom",
                Value::Boolean(self.state.rules().waiting_room),
            ),
            ("onSaleAt", optional_time(self.state.rules().on_sale_at)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut fields = Fields::of(Self::NAME, value)?;
        let key = SectionKey::new(fields.string("eventId")?, fields.string("section")?);
        let layout = Layout::new(fields.u16("rows")?, fields.u16("seatsPerRow")?)
            .map_err(|e| field_error(Self::NAME, "rows", e.to_string()))?;
        let available = fields.u32("availableCount")?;
        let bitmap = match fields.take("held")? {
            Value::Bytes(bytes) => bytes,
            other => return Err(type_error(Self::NAME, "held", "bytes", &other)),
        };
        let rules = fields.rules()?;
        let state = SectionState::from_bitmap(layout, &bitmap).ok_or_else(|| {
            field_error(
                Self::NAME,
                "held",
                format!(
                    "{} bytes do not fit {} seats",
                    bitmap.len(),
                    layout.capacity()
                ),
            )
        })?;
        if state.available() != available {
            return Err(field_error(
                Self::NAME,
                "availableCount",
                format!(
                    "{available} does not match the bitmap ({} free)",
                    state.available()
                ),
            ));
        }
        Ok(StoredSection {
            key,
            state: state.with_rules(rules),
        })
    }
}

/// A quota as stored by a seat worker: the reservations counted against one user's limit in
/// one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredQuota {
    pub key: QuotaKey,
    pub state: QuotaState,
}

impl Contract for StoredQuota {
    const NAME: &'static str = "UserQuota";

    fn versions() -> &'static Versions {
        versions!("UserQuota", ["v1"])
    }

    fn to_value(&self) -> Value {
        let claims = self
            .state
            .claims()
            .map(|(id, seats)| {
                record(vec![
                    ("reservationId", string(&id.to_string())),
                    ("seats", Value::Int(i32::from(seats))),
                ])
            })
            .collect();
        record(vec![
            ("eventId", string(&self.key.event_id)),
            ("userId", string(&self.key.user_id)),
            ("claims", Value::Array(claims)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut fields = Fields::of(Self::NAME, value)?;
        let key = QuotaKey::new(fields.string("eventId")?, fields.string("userId")?);
        let claims = match fields.take("claims")? {
            Value::Array(items) => items
                .into_iter()
                .map(|item| {
                    let mut claim = Fields::of(Self::NAME, item)?;
                    Ok((claim.reservation_id("reservationId")?, claim.u16("seats")?))
                })
                .collect::<Result<Vec<_>, DecodeError>>()?,
            other => return Err(type_error(Self::NAME, "claims", "array", &other)),
        };
        Ok(StoredQuota {
            key,
            state: QuotaState::from_claims(claims),
        })
    }
}

fn completed_value(completed: &Completed) -> Value {
    let r = &completed.reservation;
    record(vec![
        ("reservationId", string(&r.id.to_string())),
        ("eventId", string(&r.key.event_id)),
        ("section", string(&r.key.section)),
        ("userId", string(&r.user_id)),
        ("status", status_value(r.status)),
        ("requestedSeats", Value::Int(i32::from(r.requested_seats))),
        ("seats", seats_value(&r.seats)),
        (
            "reason",
            match &r.reason {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(rejection) => Value::Union(1, Box::new(rejection_value(rejection))),
            },
        ),
        ("requestedAt", Value::TimestampMillis(r.requested_at)),
        ("decidedAt", Value::TimestampMillis(r.decided_at)),
        ("cancelledAt", optional_time(r.cancelled_at)),
        ("expiresAt", optional_time(r.checkout.expires_at)),
        ("confirmedAt", optional_time(r.checkout.confirmed_at)),
        ("expiredAt", optional_time(r.checkout.expired_at)),
        (
            "paymentRef",
            optional_string(r.checkout.payment_ref.as_deref()),
        ),
        ("availableCount", count_value(completed.available)),
        (
            "waitlistedPlace",
            match r.checkout.waitlisted {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(place) => Value::Union(
                    1,
                    Box::new(Value::Long(i64::try_from(place).unwrap_or(i64::MAX))),
                ),
            },
        ),
    ])
}

fn completed_from(contract: &'static str, value: Value) -> Result<Completed, DecodeError> {
    let mut fields = Fields::of(contract, value)?;
    let id = fields.reservation_id("reservationId")?;
    let key = SectionKey::new(fields.string("eventId")?, fields.string("section")?);
    let user_id = fields.string("userId")?;
    let status = fields.status("status")?;
    let requested_seats = fields.u16("requestedSeats")?;
    let seats = fields.seats("seats")?;
    let reason = match fields.optional("reason")? {
        None => None,
        Some(reason) => Some(rejection_from(contract, reason)?),
    };
    let requested_at = fields.long("requestedAt")?;
    let decided_at = fields.long("decidedAt")?;
    let cancelled_at = fields.optional_time("cancelledAt")?;
    let checkout = Checkout {
        expires_at: fields.optional_time("expiresAt")?,
        confirmed_at: fields.optional_time("confirmedAt")?,
        expired_at: fields.optional_time("expiredAt")?,
        payment_ref: fields.optional_string("paymentRef")?,
        waitlisted: match fields.optional("waitlistedPlace")? {
            None => None,
            Some(value) => Some(
                u64::try_from(as_long(contract, "waitlistedPlace", value)?)
                    .map_err(|_| field_error(contract, "waitlistedPlace", "negative".into()))?,
            ),
        },
    };
    let available = fields.u32("availableCount")?;
    Ok(Completed {
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
    })
}

/// The symbols of `RejectionCode`, in schema order.
const REJECTION_CODES: [&str; 14] = [
    "SOLD_OUT",
    "NOT_ENOUGH_SEATS",
    "NO_ADJACENT_SEATS",
    "SEAT_TAKEN",
    "SEAT_OUT_OF_RANGE",
    "DUPLICATE_SEAT",
    "INVALID_SEAT_COUNT",
    "UNKNOWN_SECTION",
    "UNKNOWN_RESERVATION",
    "NOT_OWNER",
    "NOT_CANCELLABLE",
    "SECTION_EXISTS",
    "USER_LIMIT_EXCEEDED",
    "WAITLIST_FULL",
];

/// A rejection as its `RejectionReason` fields: the code's index, the seat, the count and the
/// status (what each code carries).
pub(crate) fn rejection_parts(
    rejection: &Rejection,
) -> (usize, Option<Seat>, Option<u32>, Option<Status>) {
    match *rejection {
        Rejection::SoldOut => (0, None, None, None),
        Rejection::NotEnoughSeats { available } => (1, None, Some(available), None),
        Rejection::NoAdjacentSeats { requested } => (2, None, Some(requested.into()), None),
        Rejection::SeatTaken { seat } => (3, Some(seat), None, None),
        Rejection::SeatOutOfRange { seat } => (4, Some(seat), None, None),
        Rejection::DuplicateSeat { seat } => (5, Some(seat), None, None),
        Rejection::InvalidSeatCount { requested } => (6, None, Some(requested.into()), None),
        Rejection::UnknownSection => (7, None, None, None),
        Rejection::UnknownReservation => (8, None, None, None),
        Rejection::NotOwner => (9, None, None, None),
        Rejection::NotCancellable { status } => (10, None, None, Some(status)),
        Rejection::SectionExists => (11, None, None, None),
        Rejection::UserLimitExceeded { limit } => (12, None, Some(limit.into()), None),
        Rejection::WaitlistFull { limit } => (13, None, Some(limit), None),
        // A room's refusals are never a reservation's reason: they travel in
        // `CommandReply.RoomRefused` (see `room::refused_value`).
        Rejection::QueueNotOpen { .. }
        | Rejection::NoWaitingRoom
        | Rejection::UnknownTicket
        | Rejection::SaleStarted => (7, None, None, None),
    }
}

fn rejection_value(rejection: &Rejection) -> Value {
    let (code, seat, count, status) = rejection_parts(rejection);
    record(vec![
        (
            "code",
            Value::Enum(code as u32, REJECTION_CODES[code].to_string()),
        ),
        (
            "seat",
            match seat {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(seat) => Value::Union(1, Box::new(seat_value(seat))),
            },
        ),
        (
            "count",
            match count {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(count) => Value::Union(1, Box::new(count_value(count))),
            },
        ),
        (
            "status",
            match status {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(status) => Value::Union(1, Box::new(status_value(status))),
            },
        ),
    ])
}

fn rejection_from(contract: &'static str, value: Value) -> Result<Rejection, DecodeError> {
    let mut fields = Fields::of(contract, value)?;
    // By symbol: data of an older schema version is resolved by name.
    let code = match fields.take("code")? {
        Value::Enum(_, symbol) => REJECTION_CODES
            .iter()
            .position(|code| *code == symbol)
            .ok_or_else(|| field_error(contract, "code", format!("unknown code {symbol}")))?,
        other => return Err(type_error(contract, "code", "enum", &other)),
    };
    let seat = match fields.optional("seat")? {
        None => None,
        Some(value) => Some(seat_from(contract, value)?),
    };
    let count = match fields.optional("count")? {
        None => None,
        Some(Value::Int(count)) => Some(count),
        Some(other) => return Err(type_error(contract, "count", "int", &other)),
    };
    let status = match fields.optional("status")? {
        None => None,
        Some(value) => Some(status_from(contract, value)?),
    };
    rejection_of(contract, code, seat, count, status)
}

/// A rejection from its `RejectionReason` fields: `code` is the symbol's index.
pub(crate) fn rejection_of(
    contract: &'static str,
    code: usize,
    seat: Option<Seat>,
    count: Option<i32>,
    status: Option<Status>,
) -> Result<Rejection, DecodeError> {
    let need_seat = || seat.ok_or_else(|| field_error(contract, "seat", "missing".into()));
    let need_count = || {
        count
            .and_then(|c| u32::try_from(c).ok())
            .ok_or_else(|| field_error(contract, "count", "missing or negative".into()))
    };
    let small = |c: u32| u16::try_from(c).unwrap_or(u16::MAX);
    // The indices of REJECTION_CODES, as `rejection_parts` writes them.
    Ok(match code {
        0 => Rejection::SoldOut,
        1 => Rejection::NotEnoughSeats {
            available: need_count()?,
        },
        2 => Rejection::NoAdjacentSeats {
            requested: small(need_count()?),
        },
        3 => Rejection::SeatTaken { seat: need_seat()? },
        4 => Rejection::SeatOutOfRange { seat: need_seat()? },
        5 => Rejection::DuplicateSeat { seat: need_seat()? },
        6 => Rejection::InvalidSeatCount {
            requested: small(need_count()?),
        },
        7 => Rejection::UnknownSection,
        8 => Rejection::UnknownReservation,
        9 => Rejection::NotOwner,
        10 => Rejection::NotCancellable {
            status: status.ok_or_else(|| field_error(contract, "status", "missing".into()))?,
        },
        11 => Rejection::SectionExists,
        12 => Rejection::UserLimitExceeded {
            limit: small(need_count()?),
        },
        13 => Rejection::WaitlistFull {
            limit: need_count()?,
        },
        other => {
            return Err(field_error(
                contract,
                "code",
                format!("unknown code index {other}"),
            ));
        }
    })
}

/// The symbols of `ReservationStatus`, in schema order (new ones are appended).
const STATUSES: [(Status, &str); 7] = [
    (Status::Pending, "PENDING"),
    (Status::Confirmed, "CONFIRMED"),
    (Status::Rejected, "REJECTED"),
    (Status::Cancelled, "CANCELLED"),
    (Status::Held, "HELD"),
    (Status::Expired, "EXPIRED"),
    (Status::Waitlisted, "WAITLISTED"),
];

pub(crate) fn optional_time(at: Option<Millis>) -> Value {
    match at {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(at) => Value::Union(1, Box::new(Value::TimestampMillis(at))),
    }
}

pub(crate) fn optional_string(text: Option<&str>) -> Value {
    match text {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(text) => Value::Union(1, Box::new(string(text))),
    }
}

/// The status of a symbol's index in `ReservationStatus`.
pub(crate) fn status_at(index: usize) -> Option<Status> {
    STATUSES.get(index).map(|(status, _)| *status)
}

/// The index of a status's symbol in `ReservationStatus`.
pub(crate) fn status_index(status: Status) -> usize {
    STATUSES.iter().position(|(s, _)| *s == status).unwrap_or(0)
}

fn status_value(status: Status) -> Value {
    let index = status_index(status);
    Value::Enum(index as u32, STATUSES[index].1.to_string())
}

fn status_from(contract: &'static str, value: Value) -> Result<Status, DecodeError> {
    match value {
        Value::Enum(_, symbol) => STATUSES
            .iter()
            .find(|(_, name)| *name == symbol)
            .map(|(status, _)| *status)
            .ok_or_else(|| field_error(contract, "status", format!("unknown status {symbol}"))),
        other => Err(type_error(contract, "status", "enum", &other)),
    }
}

/// The fields a reservation request writes (Reserve and ClaimQuota share them).
fn reserve_fields(reserve: &Reserve) -> Vec<(&'static str, Value)> {
    let (count, seats) = match &reserve.request {
        SeatRequest::Adjacent(count) => (*count, Vec::new()),
        SeatRequest::Picked(seats) => (reserve.request.seat_count(), seats.clone()),
    };
    vec![
        ("reservationId", string(&reserve.reservation_id.to_string())),
        ("userId", string(&reserve.user_id)),
        ("seatCount", Value::Int(i32::from(count))),
        ("seats", seats_value(&seats)),
    ]
}

/// The symbols of `QuotaVerdict`, in schema order.
const VERDICTS: [(QuotaVerdict, &str); 3] = [
    (QuotaVerdict::Unchecked, "UNCHECKED"),
    (QuotaVerdict::Granted, "GRANTED"),
    (QuotaVerdict::Exceeded, "EXCEEDED"),
];

/// The index of a verdict's symbol in `QuotaVerdict`.
pub(crate) fn verdict_index(verdict: QuotaVerdict) -> usize {
    VERDICTS
        .iter()
        .position(|(v, _)| *v == verdict)
        .unwrap_or(0)
}

/// The verdict of a symbol's index in `QuotaVerdict`.
pub(crate) fn verdict_at(index: usize) -> Option<QuotaVerdict> {
    VERDICTS.get(index).map(|(verdict, _)| *verdict)
}

fn verdict_value(verdict: QuotaVerdict) -> Value {
    let index = verdict_index(verdict);
    Value::Enum(index as u32, VERDICTS[index].1.to_string())
}

pub(crate) fn limit_value(limit: Option<u16>) -> Value {
    match limit {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(limit) => Value::Union(1, Box::new(Value::Int(i32::from(limit)))),
    }
}

fn seat_value(seat: Seat) -> Value {
    record(vec![
        ("row", Value::Int(i32::from(seat.row))),
        ("seat", Value::Int(i32::from(seat.seat))),
    ])
}

fn seats_value(seats: &[Seat]) -> Value {
    Value::Array(seats.iter().map(|seat| seat_value(*seat)).collect())
}

fn seat_from(contract: &'static str, value: Value) -> Result<Seat, DecodeError> {
    let mut fields = Fields::of(contract, value)?;
    Ok(Seat::new(fields.u16("row")?, fields.u16("seat")?))
}

pub(crate) fn count_value(count: u32) -> Value {
    Value::Int(i32::try_from(count).unwrap_or(i32::MAX))
}

pub(crate) fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

pub(crate) fn record(fields: Vec<(&'static str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

pub(crate) fn field_error(
    contract: &'static str,
    field: &'static str,
    problem: String,
) -> DecodeError {
    DecodeError::Field {
        contract,
        field,
        problem,
    }
}

pub(crate) fn type_error(
    contract: &'static str,
    field: &'static str,
    expected: &str,
    got: &Value,
) -> DecodeError {
    field_error(contract, field, format!("expected {expected}, got {got:?}"))
}

pub(crate) fn as_long(
    contract: &'static str,
    field: &'static str,
    value: Value,
) -> Result<i64, DecodeError> {
    match value {
        Value::Long(v) | Value::TimestampMillis(v) => Ok(v),
        Value::Int(v) => Ok(i64::from(v)),
        other => Err(type_error(contract, field, "long", &other)),
    }
}

/// The fields of a decoded record, taken out by name.
pub(crate) struct Fields {
    contract: &'static str,
    fields: Vec<(String, Value)>,
}

impl Fields {
    pub(crate) fn of(contract: &'static str, value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Record(fields) => Ok(Self { contract, fields }),
            other => Err(type_error(contract, "(record)", "record", &other)),
        }
    }

    pub(crate) fn take(&mut self, field: &'static str) -> Result<Value, DecodeError> {
        let index = self
            .fields
            .iter()
            .position(|(name, _)| name == field)
            .ok_or_else(|| field_error(self.contract, field, "missing".into()))?;
        Ok(std::mem::replace(&mut self.fields[index].1, Value::Null))
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        match self.take(field)? {
            Value::String(s) => Ok(s),
            other => Err(type_error(self.contract, field, "string", &other)),
        }
    }

    pub(crate) fn long(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let value = self.take(field)?;
        as_long(self.contract, field, value)
    }

    pub(crate) fn int(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        match self.take(field)? {
            Value::Int(v) => Ok(v),
            other => Err(type_error(self.contract, field, "int", &other)),
        }
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let v = self.int(field)?;
        u16::try_from(v).map_err(|_| field_error(self.contract, field, format!("{v} out of range")))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let v = self.int(field)?;
        u32::try_from(v).map_err(|_| field_error(self.contract, field, format!("{v} is negative")))
    }

    pub(crate) fn union(&mut self, field: &'static str) -> Result<(u32, Value), DecodeError> {
        match self.take(field)? {
            Value::Union(branch, value) => Ok((branch, *value)),
            other => Err(type_error(self.contract, field, "union", &other)),
        }
    }

    pub(crate) fn optional(&mut self, field: &'static str) -> Result<Option<Value>, DecodeError> {
        match self.take(field)? {
            Value::Union(_, value) if *value == Value::Null => Ok(None),
            Value::Union(_, value) => Ok(Some(*value)),
            Value::Null => Ok(None),
            other => Ok(Some(other)),
        }
    }

    pub(crate) fn optional_time(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Millis>, DecodeError> {
        match self.optional(field)? {
            None => Ok(None),
            Some(value) => Ok(Some(as_long(self.contract, field, value)?)),
        }
    }

    pub(crate) fn optional_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, DecodeError> {
        match self.optional(field)? {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(type_error(self.contract, field, "string", &other)),
        }
    }

    pub(crate) fn reservation_id(
        &mut self,
        field: &'static str,
    ) -> Result<ReservationId, DecodeError> {
        let text = self.string(field)?;
        uuid::Uuid::parse_str(&text)
            .map(ReservationId)
            .map_err(|e| field_error(self.contract, field, format!("{text:?}: {e}")))
    }

    fn status(&mut self, field: &'static str) -> Result<Status, DecodeError> {
        let value = self.take(field)?;
        status_from(self.contract, value)
    }

    /// A sale's rules: `holdSeconds`, `maxSeatsPerUser`, `avoidSingleSeats`, `waitingRoom`.
    fn rules(&mut self) -> Result<SaleRules, DecodeError> {
        let hold_seconds = self.u32("holdSeconds")?;
        let max_seats_per_user = match self.optional("maxSeatsPerUser")? {
            None => None,
            Some(Value::Int(limit)) => Some(u16::try_from(limit).map_err(|_| {
                field_error(
                    self.contract,
                    "maxSeatsPerUser",
                    format!("{limit} out of range"),
                )
            })?),
            Some(other) => return Err(type_error(self.contract, "maxSeatsPerUser", "int", &other)),
        };
        let avoid_single_seats = match self.take("avoidSingleSeats")? {
            Value::Boolean(avoid) => avoid,
            other => {
                return Err(type_error(
                    self.contract,
                    "avoidSingleSeats",
                    "boolean",
                    &other,
                ));
            }
        };
        let waiting_room = match self.take("waitingRoom")? {
            Value::Boolean(room) => room,
            other => return Err(type_error(self.contract, "waitingRoom", "boolean", &other)),
        };
        let on_sale_at = self.optional_time("onSaleAt")?;
        Ok(SaleRules {
            hold_seconds,
            max_seats_per_user,
            avoid_single_seats,
            waiting_room,
            on_sale_at,
        })
    }

    /// A reservation request's fields (see `reserve_fields`), unchecked by any quota.
    fn reserve(&mut self, key: SectionKey, requested_at: Millis) -> Result<Reserve, DecodeError> {
        let reservation_id = self.reservation_id("reservationId")?;
        let user_id = self.string("userId")?;
        let count = self.u16("seatCount")?;
        let seats = self.seats("seats")?;
        let request = if seats.is_empty() {
            SeatRequest::Adjacent(count)
        } else {
            SeatRequest::Picked(seats)
        };
        let waitlist = match self.take("waitlist")? {
            Value::Boolean(waitlist) => waitlist,
            other => return Err(type_error(self.contract, "waitlist", "boolean", &other)),
        };
        Ok(Reserve {
            reservation_id,
            key,
            user_id,
            request,
            requested_at,
            quota: QuotaVerdict::Unchecked,
            waitlist,
        })
    }

    fn verdict(&mut self, field: &'static str) -> Result<QuotaVerdict, DecodeError> {
        match self.take(field)? {
            Value::Enum(_, symbol) => VERDICTS
                .iter()
                .find(|(_, name)| *name == symbol)
                .map(|(verdict, _)| *verdict)
                .ok_or_else(|| {
                    field_error(self.contract, field, format!("unknown verdict {symbol}"))
                }),
            other => Err(type_error(self.contract, field, "enum", &other)),
        }
    }

    fn seats(&mut self, field: &'static str) -> Result<Vec<Seat>, DecodeError> {
        match self.take(field)? {
            Value::Array(items) => items
                .into_iter()
                .map(|item| seat_from(self.contract, item))
                .collect(),
            other => Err(type_error(self.contract, field, "array", &other)),
        }
    }
}
