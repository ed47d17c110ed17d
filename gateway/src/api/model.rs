//! The API's request and response bodies as the OpenAPI document shows them: the names clients
//! generate (`Reservation`, `Event`, ...), the formats (`uuid`, `date-time`) and the bounds a
//! client can check before it sends. The bounds mirror the checks of `seatflow_commands` and the
//! domain; `tests/api` compares the two.
//!
//! Absent values are left out of an answer, never `null`: the document declares them optional,
//! and generated clients (C#, Java) refuse a `null` in a field that is not declared nullable.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use poem_openapi::{Enum, Object};
use seatflow_aggregates::{Reservation, ReservationId, Seat, Status};
use seatflow_commands::ReserveRequest;
use seatflow_projections::audit::AuditRow;
use seatflow_projections::{EventView, Found, SectionSummary};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A string the document gives a `format` (`uuid`, `date-time`), so that generated clients type
/// it, while the server keeps it as the text it is (an event id given in a request is looked up
/// as it is written: one that is not a UUID is simply unknown, 404).
macro_rules! formatted_string {
    ($(#[$doc:meta])* $name:ident, $format:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = String;
            type RawElementValueType = String;

            fn name() -> Cow<'static, str> {
                concat!("string(", $format, ")").into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", $format)))
            }

            fn as_raw_value(&self) -> Option<&String> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value.unwrap_or_default() {
                    Value::String(text) => Ok(Self(text)),
                    other => Err(ParseError::expected_type(other)),
                }
            }
        }

        impl ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                Ok(Self(value.to_owned()))
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }
    };
}

formatted_string!(
    /// An id the server made: a UUID.
    UuidText,
    "uuid"
);

formatted_string!(
    /// An instant, RFC 3339 in UTC with milliseconds: `2026-11-29T10:00:00.000Z`.
    Timestamp,
    "date-time"
);

impl Timestamp {
    pub fn from_millis(millis: i64) -> Self {
        let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
        Self(humantime::format_rfc3339_millis(at).to_string())
    }

    /// The instant in Unix milliseconds, if the text is RFC 3339 (any offset) after 1970.
    pub fn to_millis(&self) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(&self.0)
            .ok()
            .map(|at| at.timestamp_millis())
            .filter(|millis| *millis >= 0)
    }
}

/// One seat, 1-based; row 1 is nearest the stage.
#[derive(Debug, Clone, Copy, Object, Deserialize)]
#[oai(rename = "Seat", rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct SeatDto {
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub row: i64,
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub seat: i64,
}

impl From<Seat> for SeatDto {
    fn from(seat: Seat) -> Self {
        Self {
            row: i64::from(seat.row),
            seat: i64::from(seat.seat),
        }
    }
}

/// A section to create.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename = "NewSection", rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSectionDto {
    /// The section's name, unique in the event.
    #[oai(validator(min_length = 1, max_length = 128))]
    pub section: String,
    /// Number of rows.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub rows: i64,
    /// Seats in each row (at most 100,000 seats per section).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub seats_per_row: i64,
}

/// An event to create.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename = "NewEvent", rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEventDto {
    /// The event's name (blanks around it are dropped).
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    #[oai(validator(min_items = 1, max_items = 1000))]
    pub sections: Vec<NewSectionDto>,
    /// Seconds a reservation is HELD awaiting confirmation (`POST
    /// /api/reservations/{id}/confirm`) before it EXPIRES and its seats go back on sale.
    /// Absent or 0: a reservation is CONFIRMED when decided.
    #[oai(validator(minimum(value = "0"), maximum(value = "3600")))]
    #[serde(default, deserialize_with = "present")]
    pub hold_seconds: Option<i64>,
    /// The most seats one user may have HELD or CONFIRMED in the event, all its sections
    /// together, whatever the requests, retries and gateways. Beyond it a reservation is
    /// REJECTED with reason `user_limit_exceeded`. Absent: only the per-request maximum
    /// applies.
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    #[serde(default, deserialize_with = "present")]
    pub max_seats_per_user: Option<i64>,
    /// Best-available seats (`seatCount`) never leave one lone free seat in a row when another
    /// placement in the same row would not. Default true.
    #[serde(default, deserialize_with = "present")]
    pub avoid_single_seats: Option<bool>,
    /// When the sale opens (RFC 3339): before it, a reservation is refused (409
    /// `sale_not_started`). Needed with `waitingRoom`.
    #[serde(default, deserialize_with = "present")]
    pub on_sale_at: Option<Timestamp>,
    /// A virtual waiting room in front of the sale: buyers join `POST
    /// /api/events/{eventId}/queue`, are put in a random order at `onSaleAt` (those who joined
    /// before) and admitted in that order; a reservation needs the admission's token
    /// (`X-Admission-Token`).
    #[serde(default, deserialize_with = "present")]
    pub waiting_room: Option<WaitingRoomDto>,
}

/// An event's waiting room.
#[derive(Debug, Clone, Copy, Object, Serialize, Deserialize)]
#[oai(rename = "WaitingRoom", rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitingRoomDto {
    /// Admissions a minute (absent: as fast as `maxActive` allows).
    #[oai(
        validator(minimum(value = "1"), maximum(value = "1000000")),
        skip_serializing_if_is_none
    )]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub admit_per_minute: Option<i64>,
    /// Most admitted buyers at once (absent: no cap but the rate).
    #[oai(
        validator(minimum(value = "1"), maximum(value = "1000000")),
        skip_serializing_if_is_none
    )]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_active: Option<i64>,
    /// How long an admission lasts, seconds (default 600).
    #[oai(
        validator(minimum(value = "30"), maximum(value = "86400")),
        skip_serializing_if_is_none
    )]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_seconds: Option<i64>,
    /// How long before `onSaleAt` the room opens, seconds (default 1800).
    #[oai(
        validator(minimum(value = "0"), maximum(value = "604800")),
        skip_serializing_if_is_none
    )]
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub opens_before_seconds: Option<i64>,
}

impl From<seatflow_aggregates::room::RoomRules> for WaitingRoomDto {
    fn from(rules: seatflow_aggregates::room::RoomRules) -> Self {
        Self {
            admit_per_minute: rules.admit_per_minute.map(i64::from),
            max_active: rules.max_active.map(i64::from),
            session_seconds: Some(i64::from(rules.session_seconds)),
            opens_before_seconds: Some(i64::from(rules.opens_before_seconds)),
        }
    }
}

/// An event's waiting room as its organizer changes it before the sale.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename = "WaitingRoomChange", rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitingRoomChangeDto {
    /// When the sale opens (RFC 3339).
    pub on_sale_at: Timestamp,
    pub waiting_room: WaitingRoomDto,
}

/// An event's waiting room as it is.
#[derive(Debug, Clone, Object)]
#[oai(rename = "WaitingRoomSettings", rename_all = "camelCase")]
pub struct WaitingRoomSettingsDto {
    pub event_id: UuidText,
    pub on_sale_at: Timestamp,
    pub waiting_room: WaitingRoomDto,
}

/// Who joins a waiting room (absent: the authenticated user).
#[derive(Debug, Clone, Default, Object, Deserialize)]
#[oai(rename = "JoinQueue", rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinQueueDto {
    /// The user joining; with authentication, the token's user (or absent).
    #[oai(validator(min_length = 1, max_length = 128))]
    #[serde(default, deserialize_with = "present")]
    pub user_id: Option<String>,
}

/// Where a waiting-room ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "TicketStatus", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatusDto {
    /// In line.
    Waiting,
    /// May reserve with `admissionToken` until `admittedUntil`.
    Admitted,
    /// The session ended: the buyer's reservation was confirmed, the admission ran out, or
    /// the buyer left (`endedBecause`).
    Ended,
}

/// Why a waiting-room session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "SessionEnd", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionEndDto {
    Confirmed,
    Expired,
    Left,
}

/// A waiting-room ticket.
#[derive(Debug, Clone, Object)]
#[oai(rename = "QueueTicket", rename_all = "camelCase")]
pub struct TicketDto {
    pub ticket_id: UuidText,
    pub event_id: UuidText,
    pub user_id: String,
    pub status: TicketStatusDto,
    /// 1-based place in line; `null` until the on-sale's random order for those who joined
    /// before it.
    #[oai(nullable)]
    pub position: Option<u32>,
    /// Buyers still waiting ahead (while WAITING with a position).
    #[oai(skip_serializing_if_is_none)]
    pub people_ahead: Option<u32>,
    /// Seconds until admission at the room's current pace (0 once admitted or ended).
    pub estimated_wait_seconds: u64,
    pub joined_at: Timestamp,
    /// When the sale (and the admissions) start.
    #[oai(skip_serializing_if_is_none)]
    pub on_sale_at: Option<Timestamp>,
    /// While ADMITTED: the `X-Admission-Token` for `POST /api/reservations` (valid until
    /// `admittedUntil`, for this user and event).
    #[oai(skip_serializing_if_is_none)]
    pub admission_token: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub admitted_until: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    pub ended_because: Option<SessionEndDto>,
}

/// A section with its current available count.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(rename = "Section", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct SectionDto {
    pub section: String,
    pub rows: u32,
    pub seats_per_row: u32,
    pub available: u32,
}

impl From<&SectionSummary> for SectionDto {
    fn from(view: &SectionSummary) -> Self {
        Self {
            section: view.section.clone(),
            rows: u32::from(view.layout.rows),
            seats_per_row: u32::from(view.layout.seats_per_row),
            available: view.available,
        }
    }
}

/// An event and its sections.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(rename = "Event", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct EventDto {
    pub event_id: UuidText,
    pub name: String,
    /// When the event was created.
    pub created_at: Timestamp,
    /// Seconds a reservation is HELD before it expires unless confirmed (0: confirmed when
    /// decided).
    pub hold_seconds: u32,
    /// The most seats one user may have HELD or CONFIRMED in the event; absent: no limit but
    /// the per-request one.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_seats_per_user: Option<u32>,
    /// Whether best-available seats never leave one lone free seat in a row when another
    /// placement would not.
    pub avoid_single_seats: bool,
    /// When the sale opens, if the event has a sale time.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub on_sale_at: Option<Timestamp>,
    /// The event's waiting room (`POST /api/events/{eventId}/queue`), if it has one.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waiting_room: Option<WaitingRoomDto>,
    pub sections: Vec<SectionDto>,
}

impl From<&EventView> for EventDto {
    fn from(view: &EventView) -> Self {
        Self {
            event_id: UuidText(view.event_id.clone()),
            name: view.name.clone(),
            created_at: Timestamp::from_millis(view.created_at),
            hold_seconds: view.rules.hold_seconds,
            max_seats_per_user: view.rules.max_seats_per_user.map(u32::from),
            avoid_single_seats: view.rules.avoid_single_seats,
            // A room's on-sale may have been moved since the sections were created.
            on_sale_at: view
                .room
                .map(|room| room.on_sale_at)
                .or(view.rules.on_sale_at)
                .map(Timestamp::from_millis),
            waiting_room: view.room.map(WaitingRoomDto::from),
            sections: view.sections.iter().map(SectionDto::from).collect(),
        }
    }
}

/// What a confirmation may carry.
#[derive(Debug, Clone, Default, Object, Deserialize)]
#[oai(rename = "Confirmation", rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfirmDto {
    /// The payment's reference in the caller's payment system, kept with the reservation.
    #[oai(validator(min_length = 1, max_length = 128))]
    #[serde(default, deserialize_with = "present")]
    pub payment_ref: Option<String>,
}

/// The seats of a section: `rowsMap[r]` describes row r+1, one character per seat,
/// `o` free and `x` held.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(rename = "SeatMap", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct SeatMapDto {
    pub event_id: UuidText,
    pub section: String,
    pub rows: u32,
    pub seats_per_row: u32,
    pub available: u32,
    pub rows_map: Vec<String>,
}

/// Ask for `seatCount` seats next to each other (best row first) or for exactly `seats`: one
/// of the two.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename = "ReservationRequest", rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveDto {
    pub event_id: UuidText,
    #[oai(validator(min_length = 1, max_length = 128))]
    pub section: String,
    /// Whose reservation it is. With authentication on it is the caller (`sub` of the token)
    /// and may be left out; a different user here is refused (403).
    #[oai(validator(min_length = 1, max_length = 128))]
    #[serde(default, deserialize_with = "present")]
    pub user_id: Option<String>,
    /// How many adjacent seats (at most the server's `max_seats_per_reservation`).
    #[oai(validator(minimum(value = "1")))]
    #[serde(default, deserialize_with = "present")]
    pub seat_count: Option<i64>,
    /// The exact seats wanted, all or nothing (at most the server's
    /// `max_seats_per_reservation`).
    #[oai(validator(min_items = 1))]
    #[serde(default, deserialize_with = "present")]
    pub seats: Option<Vec<SeatDto>>,
    /// With `seatCount`: when the section has no room, wait in its order (WAITLISTED) instead
    /// of being rejected; seats that come back go to the first waiting requests that fit, as
    /// HELD reservations with a fresh hold. Beyond the server's `waitlist_per_section`:
    /// REJECTED `waitlist_full`.
    #[serde(default, deserialize_with = "present")]
    pub waitlist: Option<bool>,
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "ReservationStatus", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusDto {
    Pending,
    Held,
    Confirmed,
    Rejected,
    Cancelled,
    Expired,
    /// Waiting in the section's order for seats to come back (asked with `"waitlist": true`);
    /// then HELD (or CONFIRMED), found by polling or `?wait=`.
    Waitlisted,
}

impl From<Status> for StatusDto {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => Self::Pending,
            Status::Held => Self::Held,
            Status::Confirmed => Self::Confirmed,
            Status::Rejected => Self::Rejected,
            Status::Cancelled => Self::Cancelled,
            Status::Expired => Self::Expired,
            Status::Waitlisted => Self::Waitlisted,
        }
    }
}

/// A reservation and where it stands.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Reservation", rename_all = "camelCase")]
pub struct ReservationDto {
    pub reservation_id: uuid::Uuid,
    pub event_id: UuidText,
    pub section: String,
    pub user_id: String,
    pub status: StatusDto,
    /// Seats taken (HELD, CONFIRMED) or given back (CANCELLED, EXPIRED).
    pub seats: Vec<SeatDto>,
    /// Why it was rejected, as a code (`sold_out`, `no_adjacent_seats`, `seat_taken`, ...; a
    /// string, not an enumeration, so that a client keeps working when a code is added).
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<String>,
    /// The rejection in words.
    #[oai(skip_serializing_if_is_none)]
    pub reason_message: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub requested_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    pub decided_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    pub cancelled_at: Option<Timestamp>,
    /// HELD: when its seats go back on sale unless it is confirmed.
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    pub confirmed_at: Option<Timestamp>,
    /// EXPIRED: when its hold ended.
    #[oai(skip_serializing_if_is_none)]
    pub expired_at: Option<Timestamp>,
    /// The payment reference its confirmation carried.
    #[oai(skip_serializing_if_is_none)]
    pub payment_ref: Option<String>,
    /// For a reservation that was WAITLISTED: its place in its section's waitlist (smaller is
    /// earlier; seats that come back go to the first places that fit). Kept once it moves on.
    #[oai(skip_serializing_if_is_none)]
    pub waitlist_place: Option<i64>,
}

impl From<&Found> for ReservationDto {
    fn from(found: &Found) -> Self {
        match found {
            Found::Here(reservation) => Self::from(reservation),
            Found::Shared(row) => Self::from(row),
        }
    }
}

impl From<&Reservation> for ReservationDto {
    fn from(r: &Reservation) -> Self {
        Self {
            reservation_id: r.id.0,
            event_id: UuidText(r.key.event_id.clone()),
            section: r.key.section.clone(),
            user_id: r.user_id.clone(),
            status: r.status.into(),
            seats: r.seats.iter().map(|s| SeatDto::from(*s)).collect(),
            reason: r.reason.map(|reason| reason.code().to_owned()),
            reason_message: r.reason.map(|reason| reason.to_string()),
            requested_at: Some(Timestamp::from_millis(r.requested_at)),
            decided_at: (r.status != Status::Pending).then(|| Timestamp::from_millis(r.decided_at)),
            cancelled_at: r.cancelled_at.map(Timestamp::from_millis),
            // A hold's end is shown while it is HELD; later its outcome's time says the rest.
            expires_at: (r.status == Status::Held)
                .then_some(r.checkout.expires_at)
                .flatten()
                .map(Timestamp::from_millis),
            confirmed_at: r.checkout.confirmed_at.map(Timestamp::from_millis),
            expired_at: r.checkout.expired_at.map(Timestamp::from_millis),
            payment_ref: r.checkout.payment_ref.clone(),
            waitlist_place: r
                .checkout
                .waitlisted
                .map(|place| i64::try_from(place).unwrap_or(i64::MAX)),
        }
    }
}

impl From<&AuditRow> for ReservationDto {
    fn from(row: &AuditRow) -> Self {
        let status = StatusDto::from(Status::from_name(&row.status).unwrap_or(Status::Pending));
        Self {
            reservation_id: row.id,
            event_id: UuidText(row.event_id.clone()),
            section: row.section.clone(),
            user_id: row.user_id.clone(),
            status,
            seats: row
                .seats
                .as_array()
                .map(|seats| {
                    seats
                        .iter()
                        .map(|s| SeatDto {
                            row: s["row"].as_i64().unwrap_or(0),
                            seat: s["seat"].as_i64().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            reason: row.reason.clone(),
            reason_message: row.reason_message.clone(),
            requested_at: Some(Timestamp::from_millis(row.requested_at.timestamp_millis())),
            decided_at: Some(Timestamp::from_millis(row.completed_at.timestamp_millis())),
            cancelled_at: row
                .cancelled_at
                .map(|at| Timestamp::from_millis(at.timestamp_millis())),
            expires_at: (status == StatusDto::Held)
                .then_some(row.expires_at)
                .flatten()
                .map(|at| Timestamp::from_millis(at.timestamp_millis())),
            confirmed_at: row
                .confirmed_at
                .map(|at| Timestamp::from_millis(at.timestamp_millis())),
            expired_at: row
                .expired_at
                .map(|at| Timestamp::from_millis(at.timestamp_millis())),
            payment_ref: row.payment_ref.clone(),
            waitlist_place: row.waitlist_place,
        }
    }
}

impl ReservationDto {
    /// A reservation accepted and not decided yet.
    pub fn pending(id: ReservationId, request: &ReserveRequest) -> Self {
        Self {
            reservation_id: id.0,
            event_id: UuidText(request.event_id.clone()),
            section: request.section.clone(),
            user_id: request.user_id.clone(),
            status: StatusDto::Pending,
            seats: Vec::new(),
            reason: None,
            reason_message: None,
            requested_at: None,
            decided_at: None,
            cancelled_at: None,
            expires_at: None,
            confirmed_at: None,
            expired_at: None,
            payment_ref: None,
            waitlist_place: None,
        }
    }
}

/// What a health probe answers.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Health")]
pub struct HealthDto {
    /// `up` (live), `ready`, or `starting` (not ready yet).
    pub status: String,
}

/// An optional request field that, when given, holds a value: `null` is refused (400 naming the
/// field) like any other value of the wrong type, as the document declares no field nullable.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
