//! The waiting room's records: its commands and decisions in the log, its answers to callers,
//! and how its owner stores it (`WaitingRoom` once per room, `RoomTicket` per ticket).

use apache_avro::types::Value;
use seatflow_aggregates::room::{
    RoomEvent, RoomHeader, RoomRules, SessionEnd, Shuffle, Ticket, TicketId, TicketStatus,
};
use seatflow_aggregates::{Millis, Rejection, RoomRecorded, RoomRequest, SectionKey};

use crate::codec::{Contract, DecodeError, Versions, versions};
use crate::convert::{Fields, count_value, field_error, optional_time, record, string, type_error};

/// The union branches of `ReservationCommand.command` for a room.
const OPEN: u32 = 6;
const JOIN: u32 = 7;
const LEAVE: u32 = 8;
const END_SESSION: u32 = 9;

const SESSION_ENDS: [(SessionEnd, &str); 3] = [
    (SessionEnd::Confirmed, "CONFIRMED"),
    (SessionEnd::Expired, "EXPIRED"),
    (SessionEnd::Left, "LEFT"),
];

/// A room command's branch and record.
pub(crate) fn command_value(request: &RoomRequest) -> (u32, Value) {
    match request {
        RoomRequest::Open(rules) => (OPEN, record(vec![("rules", rules_value(rules))])),
        RoomRequest::Join { ticket, user_id } => (
            JOIN,
            record(vec![
                ("ticketId", string(&ticket.to_string())),
                ("userId", string(user_id)),
            ]),
        ),
        RoomRequest::Leave { ticket, user_id } => (
            LEAVE,
            record(vec![
                ("ticketId", string(&ticket.to_string())),
                ("userId", string(user_id)),
            ]),
        ),
        RoomRequest::EndSession {
            user_id,
            reservation_id,
        } => (
            END_SESSION,
            record(vec![
                ("userId", string(user_id)),
                ("reservationId", string(&reservation_id.to_string())),
            ]),
        ),
    }
}

pub(crate) fn command_from(branch: u32, mut fields: Fields) -> Result<RoomRequest, DecodeError> {
    const NAME: &str = "ReservationCommand";
    Ok(match branch {
        OPEN => RoomRequest::Open(rules_from(NAME, fields.take("rules")?)?),
        JOIN => RoomRequest::Join {
            ticket: ticket_id(&mut fields, "ticketId")?,
            user_id: fields.string("userId")?,
        },
        LEAVE => RoomRequest::Leave {
            ticket: ticket_id(&mut fields, "ticketId")?,
            user_id: fields.string("userId")?,
        },
        _ => RoomRequest::EndSession {
            user_id: fields.string("userId")?,
            reservation_id: fields.reservation_id("reservationId")?,
        },
    })
}

pub(crate) fn recorded_value(recorded: &RoomRecorded) -> Value {
    let (branch, change) = match &recorded.event {
        RoomEvent::Opened { rules, at } => (
            0,
            record(vec![
                ("rules", rules_value(rules)),
                ("at", Value::TimestampMillis(*at)),
            ]),
        ),
        RoomEvent::Joined { ticket, user, at } => (
            1,
            record(vec![
                ("ticketId", string(&ticket.to_string())),
                ("userId", string(user)),
                ("at", Value::TimestampMillis(*at)),
            ]),
        ),
        RoomEvent::Shuffled { seed, at } => (
            2,
            record(vec![
                ("seed", Value::Long(seed.cast_signed())),
                ("at", Value::TimestampMillis(*at)),
            ]),
        ),
        RoomEvent::Admitted { ticket, at, until } => (
            3,
            record(vec![
                ("ticketId", string(&ticket.to_string())),
                ("at", Value::TimestampMillis(*at)),
                ("until", Value::TimestampMillis(*until)),
            ]),
        ),
        RoomEvent::Ended { ticket, at, why } => (
            4,
            record(vec![
                ("ticketId", string(&ticket.to_string())),
                ("at", Value::TimestampMillis(*at)),
                ("why", end_value(*why)),
            ]),
        ),
    };
    record(vec![
        ("eventId", string(&recorded.key.event_id)),
        ("change", Value::Union(branch, Box::new(change))),
    ])
}

pub(crate) fn recorded_from(value: Value) -> Result<RoomRecorded, DecodeError> {
    const NAME: &str = "SeatEvent";
    let mut fields = Fields::of(NAME, value)?;
    let key = SectionKey::room(fields.string("eventId")?);
    let (branch, change) = fields.union("change")?;
    let mut change = Fields::of(NAME, change)?;
    let event = match branch {
        0 => RoomEvent::Opened {
            rules: rules_from(NAME, change.take("rules")?)?,
            at: change.long("at")?,
        },
        1 => RoomEvent::Joined {
            ticket: ticket_id(&mut change, "ticketId")?,
            user: change.string("userId")?,
            at: change.long("at")?,
        },
        2 => RoomEvent::Shuffled {
            seed: change.long("seed")?.cast_unsigned(),
            at: change.long("at")?,
        },
        3 => RoomEvent::Admitted {
            ticket: ticket_id(&mut change, "ticketId")?,
            at: change.long("at")?,
            until: change.long("until")?,
        },
        4 => RoomEvent::Ended {
            ticket: ticket_id(&mut change, "ticketId")?,
            at: change.long("at")?,
            why: end_from(NAME, change.take("why")?)?,
        },
        other => {
            return Err(field_error(
                NAME,
                "change",
                format!("unknown branch {other}"),
            ));
        }
    };
    Ok(RoomRecorded { key, event })
}

/// A room's refusal: its code, and when the room opens for `queue_not_open`.
pub(crate) fn refused_value(key: &SectionKey, rejection: &Rejection) -> Value {
    let opens_at = match rejection {
        Rejection::QueueNotOpen { opens_at } => Some(*opens_at),
        _ => None,
    };
    record(vec![
        ("eventId", string(&key.event_id)),
        ("code", string(rejection.code())),
        ("opensAt", optional_time(opens_at)),
    ])
}

pub(crate) fn refused_from(value: Value) -> Result<(SectionKey, Rejection), DecodeError> {
    const NAME: &str = "CommandReply";
    let mut fields = Fields::of(NAME, value)?;
    let key = SectionKey::room(fields.string("eventId")?);
    let code = fields.string("code")?;
    let opens_at = fields.optional_time("opensAt")?;
    let rejection = match (code.as_str(), opens_at) {
        ("queue_not_open", Some(opens_at)) => Rejection::QueueNotOpen { opens_at },
        ("no_waiting_room", _) => Rejection::NoWaitingRoom,
        ("unknown_ticket", _) => Rejection::UnknownTicket,
        ("not_owner", _) => Rejection::NotOwner,
        ("sale_started", _) => Rejection::SaleStarted,
        _ => return Err(field_error(NAME, "code", format!("unknown code {code}"))),
    };
    Ok((key, rejection))
}

fn rules_value(rules: &RoomRules) -> Value {
    let optional = |n: Option<u32>| match n {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(n) => Value::Union(1, Box::new(count_value(n))),
    };
    record(vec![
        ("onSaleAt", Value::TimestampMillis(rules.on_sale_at)),
        ("admitPerMinute", optional(rules.admit_per_minute)),
        ("maxActive", optional(rules.max_active)),
        ("sessionSeconds", count_value(rules.session_seconds)),
        (
            "opensBeforeSeconds",
            count_value(rules.opens_before_seconds),
        ),
    ])
}

fn rules_from(contract: &'static str, value: Value) -> Result<RoomRules, DecodeError> {
    let mut fields = Fields::of(contract, value)?;
    let mut optional = |field: &'static str| -> Result<Option<u32>, DecodeError> {
        match fields.optional(field)? {
            None => Ok(None),
            Some(Value::Int(n)) => u32::try_from(n)
                .map(Some)
                .map_err(|_| field_error(contract, field, format!("{n} is negative"))),
            Some(other) => Err(type_error(contract, field, "int", &other)),
        }
    };
    let admit_per_minute = optional("admitPerMinute")?;
    let max_active = optional("maxActive")?;
    Ok(RoomRules {
        on_sale_at: fields.long("onSaleAt")?,
        admit_per_minute,
        max_active,
        session_seconds: fields.u32("sessionSeconds")?,
        opens_before_seconds: fields.u32("opensBeforeSeconds")?,
    })
}

fn end_value(why: SessionEnd) -> Value {
    let index = SESSION_ENDS
        .iter()
        .position(|(w, _)| *w == why)
        .unwrap_or(0);
    Value::Enum(index as u32, SESSION_ENDS[index].1.to_owned())
}

fn end_from(contract: &'static str, value: Value) -> Result<SessionEnd, DecodeError> {
    match value {
        Value::Enum(_, symbol) => SESSION_ENDS
            .iter()
            .find(|(_, name)| *name == symbol)
            .map(|(why, _)| *why)
            .ok_or_else(|| field_error(contract, "why", format!("unknown end {symbol}"))),
        other => Err(type_error(contract, "why", "enum", &other)),
    }
}

fn ticket_id(fields: &mut Fields, field: &'static str) -> Result<TicketId, DecodeError> {
    let text = fields.string(field)?;
    uuid::Uuid::parse_str(&text)
        .map_err(|e| field_error("RoomTicket", field, format!("{text:?}: {e}")))
}

pub(crate) fn ticket_value(ticket: &Ticket) -> Value {
    let (status, admitted_at, until, ended_at, why) = match ticket.status {
        TicketStatus::Waiting => (0, None, None, None, None),
        TicketStatus::Admitted { at, until } => (1, Some(at), Some(until), None, None),
        TicketStatus::Ended { at, why } => (2, None, None, Some(at), Some(why)),
    };
    const STATUSES: [&str; 3] = ["WAITING", "ADMITTED", "ENDED"];
    record(vec![
        ("ticketId", string(&ticket.id.to_string())),
        ("userId", string(&ticket.user)),
        ("joinedAt", Value::TimestampMillis(ticket.joined_at)),
        ("arrival", count_value(ticket.arrival)),
        (
            "position",
            match ticket.position {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(position) => Value::Union(1, Box::new(count_value(position))),
            },
        ),
        (
            "status",
            Value::Enum(status, STATUSES[status as usize].to_owned()),
        ),
        ("admittedAt", optional_time(admitted_at)),
        ("until", optional_time(until)),
        ("endedAt", optional_time(ended_at)),
        (
            "endedBecause",
            match why {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(why) => Value::Union(1, Box::new(end_value(why))),
            },
        ),
    ])
}

pub(crate) fn ticket_from(contract: &'static str, value: Value) -> Result<Ticket, DecodeError> {
    let mut fields = Fields::of(contract, value)?;
    let id = ticket_id(&mut fields, "ticketId")?;
    let user = fields.string("userId")?;
    let joined_at = fields.long("joinedAt")?;
    let arrival = fields.u32("arrival")?;
    let position = match fields.optional("position")? {
        None => None,
        Some(Value::Int(n)) => u32::try_from(n).ok(),
        Some(other) => return Err(type_error(contract, "position", "int", &other)),
    };
    let symbol = match fields.take("status")? {
        Value::Enum(_, symbol) => symbol,
        other => return Err(type_error(contract, "status", "enum", &other)),
    };
    let missing = |field: &'static str| field_error(contract, field, "missing".into());
    let admitted_at = fields.optional_time("admittedAt")?;
    let until = fields.optional_time("until")?;
    let ended_at = fields.optional_time("endedAt")?;
    let why = match fields.optional("endedBecause")? {
        None => None,
        Some(value) => Some(end_from(contract, value)?),
    };
    let status = match symbol.as_str() {
        "WAITING" => TicketStatus::Waiting,
        "ADMITTED" => TicketStatus::Admitted {
            at: admitted_at.ok_or_else(|| missing("admittedAt"))?,
            until: until.ok_or_else(|| missing("until"))?,
        },
        "ENDED" => TicketStatus::Ended {
            at: ended_at.ok_or_else(|| missing("endedAt"))?,
            why: why.ok_or_else(|| missing("endedBecause"))?,
        },
        other => return Err(field_error(contract, "status", format!("unknown {other}"))),
    };
    Ok(Ticket {
        id,
        user,
        joined_at,
        arrival,
        position,
        status,
    })
}

/// A waiting room as its owner stores it, apart from its tickets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRoom {
    pub event_id: String,
    pub header: RoomHeader,
}

impl Contract for StoredRoom {
    const NAME: &'static str = "WaitingRoom";

    fn versions() -> &'static Versions {
        versions!("WaitingRoom", ["v1"])
    }

    fn to_value(&self) -> Value {
        let header = &self.header;
        let shuffle = match header.shuffle {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(shuffle) => Value::Union(
                1,
                Box::new(record(vec![
                    ("seed", Value::Long(shuffle.seed.cast_signed())),
                    ("at", Value::TimestampMillis(shuffle.at)),
                    ("early", count_value(shuffle.early)),
                ])),
            ),
        };
        record(vec![
            ("eventId", string(&self.event_id)),
            ("rules", rules_value(&header.rules)),
            ("shuffle", shuffle),
            ("credit", Value::Long(header.credit.cast_signed())),
            ("creditedAt", Value::TimestampMillis(header.credited_at)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut fields = Fields::of(Self::NAME, value)?;
        let event_id = fields.string("eventId")?;
        let rules = rules_from(Self::NAME, fields.take("rules")?)?;
        let shuffle = match fields.optional("shuffle")? {
            None => None,
            Some(value) => {
                let mut shuffle = Fields::of(Self::NAME, value)?;
                Some(Shuffle {
                    seed: shuffle.long("seed")?.cast_unsigned(),
                    at: shuffle.long("at")?,
                    early: shuffle.u32("early")?,
                })
            }
        };
        let credit = fields.long("credit")?.cast_unsigned();
        let credited_at: Millis = fields.long("creditedAt")?;
        Ok(Self {
            event_id,
            header: RoomHeader {
                rules,
                shuffle,
                credit,
                credited_at,
            },
        })
    }
}

/// One ticket of a waiting room as its owner stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTicket(pub Ticket);

impl Contract for StoredTicket {
    const NAME: &'static str = "RoomTicket";

    fn versions() -> &'static Versions {
        versions!("RoomTicket", ["v1"])
    }

    fn to_value(&self) -> Value {
        ticket_value(&self.0)
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        ticket_from(Self::NAME, value).map(Self)
    }
}
