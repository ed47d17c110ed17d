//! The domain vocabulary: identifiers, commands, events, outcomes and rejections.

use std::fmt;

use uuid::Uuid;

use crate::room::{RoomEvent, RoomRules, Ticket, TicketId};

/// Milliseconds since the Unix epoch. The domain never reads a clock: times come in commands.
pub type Millis = i64;

/// Largest number of rows a section may have.
pub const MAX_ROWS: u16 = 1_000;
/// Largest number of seats in one row.
pub const MAX_SEATS_PER_ROW: u16 = 1_000;
/// Largest number of seats in one section; bounds the state record (a 12.5 KB bitmap at most).
pub const MAX_SECTION_SEATS: u32 = 100_000;
/// Longest hold of a reservation awaiting confirmation (an hour).
pub const MAX_HOLD_SECONDS: u32 = 3_600;
/// Longest payment reference a confirmation may carry.
pub const MAX_PAYMENT_REF_CHARS: usize = 128;
/// Highest per-user limit of an event.
pub const MAX_SEATS_PER_USER: u16 = 100;

/// A reservation's identity, made by the gateway (UUID v7) and carried by every command about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(pub Uuid);

impl ReservationId {
    /// A new time-ordered id.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The unit of ordering and ownership: one section of one event. All commands of a section are
/// decided by one worker, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SectionKey {
    pub event_id: String,
    pub section: String,
}

impl SectionKey {
    pub fn new(event_id: impl Into<String>, section: impl Into<String>) -> Self {
        Self {
            event_id: event_id.into(),
            section: section.into(),
        }
    }

    /// The key of an event's waiting room: its event with the empty section name, which no
    /// section has (a room is partitioned, stored and followed like a section).
    pub fn room(event_id: impl Into<String>) -> Self {
        Self::new(event_id, "")
    }

    /// Whether this is a waiting room's key.
    pub fn is_room(&self) -> bool {
        self.section.is_empty()
    }

    /// The bytes a section is partitioned and stored by: `eventId/section`.
    pub fn routing_key(&self) -> String {
        format!("{}/{}", self.event_id, self.section)
    }
}

impl fmt::Display for SectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.event_id, self.section)
    }
}

/// One user's seats in one event that limits them: the identity of a quota, decided by the
/// partition its routing key falls on (a section's key never looks like it: event ids hold no
/// `#`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuotaKey {
    pub event_id: String,
    pub user_id: String,
}

impl QuotaKey {
    pub fn new(event_id: impl Into<String>, user_id: impl Into<String>) -> Self {
        Self {
            event_id: event_id.into(),
            user_id: user_id.into(),
        }
    }

    /// The bytes a quota is partitioned and stored by: `eventId#user/userId`.
    pub fn routing_key(&self) -> String {
        format!("{}#user/{}", self.event_id, self.user_id)
    }
}

/// The rules of a sale that its sections decide by: set when the event is created, the same
/// for each of its sections, never changed after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SaleRules {
    /// How long a reservation is HELD before it expires unless confirmed; 0: confirmed when
    /// decided.
    pub hold_seconds: u32,
    /// The most seats one user may have HELD or CONFIRMED in the event, all sections together.
    pub max_seats_per_user: Option<u16>,
    /// Best-available never leaves one lone free seat in a row when another placement in the
    /// same row would not.
    pub avoid_single_seats: bool,
    /// The event has a waiting room: a reservation needs an admission, and a confirmed one ends
    /// its user's session in the room (the section's owner tells the room).
    pub waiting_room: bool,
    /// When reservations open (the gateways refuse them before); none: at once.
    pub on_sale_at: Option<Millis>,
}

/// One seat, 1-based: row 1 is the row nearest the stage, seat 1 the first seat of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seat {
    pub row: u16,
    pub seat: u16,
}

impl Seat {
    pub fn new(row: u16, seat: u16) -> Self {
        Self { row, seat }
    }
}

impl fmt::Display for Seat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} seat {}", self.row, self.seat)
    }
}

/// The shape of a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    pub rows: u16,
    pub seats_per_row: u16,
}

/// Why a layout is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("rows must be between 1 and {MAX_ROWS}")]
    Rows,
    #[error("seatsPerRow must be between 1 and {MAX_SEATS_PER_ROW}")]
    SeatsPerRow,
    #[error("a section holds at most {MAX_SECTION_SEATS} seats")]
    TooLarge,
}

impl Layout {
    /// A layout within the domain's bounds.
    pub fn new(rows: u16, seats_per_row: u16) -> Result<Self, LayoutError> {
        if rows == 0 || rows > MAX_ROWS {
            return Err(LayoutError::Rows);
        }
        if seats_per_row == 0 || seats_per_row > MAX_SEATS_PER_ROW {
            return Err(LayoutError::SeatsPerRow);
        }
        let layout = Self {
            rows,
            seats_per_row,
        };
        if layout.capacity() > MAX_SECTION_SEATS {
            return Err(LayoutError::TooLarge);
        }
        Ok(layout)
    }

    pub fn capacity(&self) -> u32 {
        u32::from(self.rows) * u32::from(self.seats_per_row)
    }

    pub fn contains(&self, seat: Seat) -> bool {
        (1..=self.rows).contains(&seat.row) && (1..=self.seats_per_row).contains(&seat.seat)
    }
}

/// What a reservation asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeatRequest {
    /// N seats next to each other in one row, the best row that has them.
    Adjacent(u16),
    /// Exactly these seats, all or nothing.
    Picked(Vec<Seat>),
}

impl SeatRequest {
    pub fn seat_count(&self) -> u16 {
        match self {
            Self::Adjacent(n) => *n,
            Self::Picked(seats) => u16::try_from(seats.len()).unwrap_or(u16::MAX),
        }
    }
}

/// Create a section of an event. Idempotent: the same section with the same layout again is a
/// no-op; with another layout it is refused (never a reset of sold seats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitSection {
    pub key: SectionKey,
    pub event_name: String,
    /// Where the section is listed in its event (0-based).
    pub position: u32,
    pub layout: Layout,
    pub rules: SaleRules,
    pub requested_at: Millis,
}

/// Ask for seats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserve {
    pub reservation_id: ReservationId,
    pub key: SectionKey,
    pub user_id: String,
    pub request: SeatRequest,
    pub requested_at: Millis,
    /// What the user's quota said, for a section of an event with a per-user limit.
    pub quota: QuotaVerdict,
    /// Wait in the section's order when it has no room (`seatCount` requests only).
    pub waitlist: bool,
}

/// Whether a reservation's seats were counted against its user's limit on their way to the
/// section (see [`ClaimQuota`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum QuotaVerdict {
    /// Not asked: sent to the section directly. A section whose event limits users sends it
    /// to the quota first.
    #[default]
    Unchecked,
    /// Counted: the seats fit the user's limit.
    Granted,
    /// Not counted: the seats would exceed the user's limit; the section rejects it.
    Exceeded,
}

/// The first step of a reservation in an event with a per-user limit, decided by the user's
/// quota: count the seats if they fit, then hand the reservation on to its section with the
/// verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimQuota {
    pub reserve: Reserve,
    /// The event's `maxSeatsPerUser`.
    pub limit: u16,
}

impl ClaimQuota {
    pub fn quota_key(&self) -> QuotaKey {
        QuotaKey::new(&self.reserve.key.event_id, &self.reserve.user_id)
    }
}

/// A counted reservation took no seats, or gave them back (rejected, cancelled, expired): its
/// seats leave its user's quota. Sent by the section's owner; idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseQuota {
    pub reservation_id: ReservationId,
    /// The reservation's section.
    pub key: SectionKey,
    pub user_id: String,
    pub requested_at: Millis,
}

impl ReleaseQuota {
    pub fn quota_key(&self) -> QuotaKey {
        QuotaKey::new(&self.key.event_id, &self.user_id)
    }
}

/// Confirm a HELD reservation (its checkout is done). The hold's expiry and the confirmation
/// race; the section's owner decides which came first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirm {
    pub reservation_id: ReservationId,
    pub key: SectionKey,
    pub user_id: String,
    /// The caller's payment reference, kept with the reservation.
    pub payment_ref: Option<String>,
    pub requested_at: Millis,
}

/// Give the seats of a held or confirmed reservation back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancel {
    pub reservation_id: ReservationId,
    pub key: SectionKey,
    pub user_id: String,
    pub requested_at: Millis,
}

/// A command for an event's waiting room, decided by the partition its room key falls on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomCommand {
    /// The room's key ([`SectionKey::room`]).
    pub key: SectionKey,
    pub requested_at: Millis,
    pub request: RoomRequest,
}

impl RoomCommand {
    pub fn new(event_id: impl Into<String>, requested_at: Millis, request: RoomRequest) -> Self {
        Self {
            key: SectionKey::room(event_id),
            requested_at,
            request,
        }
    }
}

/// What is asked of a waiting room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomRequest {
    /// Set the room up, or change its rules (until the on-sale).
    Open(RoomRules),
    /// Join the line; `ticket` is the id of the ticket if the user has none yet.
    Join { ticket: TicketId, user_id: String },
    /// Leave the room (a waiting ticket leaves the line; an admitted one frees its slot).
    Leave { ticket: TicketId, user_id: String },
    /// The user's reservation was confirmed: their admitted session ends. Handed on by the
    /// section's owner; no caller waits for it.
    EndSession {
        user_id: String,
        /// The confirmed reservation.
        reservation_id: ReservationId,
    },
}

/// Everything a seat worker decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    InitSection(InitSection),
    Reserve(Reserve),
    Cancel(Cancel),
    Confirm(Confirm),
    ClaimQuota(ClaimQuota),
    ReleaseQuota(ReleaseQuota),
    Room(RoomCommand),
}

impl Command {
    /// The section the command is about (for a quota command: the reservation's section).
    pub fn key(&self) -> &SectionKey {
        match self {
            Self::InitSection(c) => &c.key,
            Self::Reserve(c) => &c.key,
            Self::Cancel(c) => &c.key,
            Self::Confirm(c) => &c.key,
            Self::ClaimQuota(c) => &c.reserve.key,
            Self::ReleaseQuota(c) => &c.key,
            Self::Room(c) => &c.key,
        }
    }

    /// The quota that decides the command, for a quota command.
    pub fn quota_key(&self) -> Option<QuotaKey> {
        match self {
            Self::ClaimQuota(c) => Some(c.quota_key()),
            Self::ReleaseQuota(c) => Some(c.quota_key()),
            _ => None,
        }
    }

    /// The bytes that choose the partition deciding the command (and the record key on
    /// Kafka): its quota's for a quota command, else its section's.
    pub fn routing_key(&self) -> String {
        match self.quota_key() {
            Some(quota) => quota.routing_key(),
            None => self.key().routing_key(),
        }
    }

    pub fn reservation_id(&self) -> Option<ReservationId> {
        match self {
            Self::InitSection(_) | Self::Room(_) => None,
            Self::Reserve(c) => Some(c.reservation_id),
            Self::Cancel(c) => Some(c.reservation_id),
            Self::Confirm(c) => Some(c.reservation_id),
            Self::ClaimQuota(c) => Some(c.reserve.reservation_id),
            Self::ReleaseQuota(c) => Some(c.reservation_id),
        }
    }
}

/// Where a reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    /// Seats taken, awaiting confirmation until the hold expires.
    Held,
    Confirmed,
    Rejected,
    Cancelled,
    /// A hold that was not confirmed in time: its seats went back on sale.
    Expired,
    /// Waiting in its section's order for seats to come back; then HELD (or CONFIRMED).
    Waitlisted,
}

impl Status {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Held,
        Self::Confirmed,
        Self::Rejected,
        Self::Cancelled,
        Self::Expired,
        Self::Waitlisted,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Held => "HELD",
            Self::Confirmed => "CONFIRMED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
            Self::Waitlisted => "WAITLISTED",
        }
    }

    /// The status named by [`Status::as_str`], if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether the reservation's seats are taken (HELD or CONFIRMED).
    pub fn takes_seats(&self) -> bool {
        matches!(self, Self::Held | Self::Confirmed)
    }

    /// Whether the reservation holds seats or may still come to (PENDING, WAITLISTED): a
    /// retry is answered with it.
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            Self::Held | Self::Confirmed | Self::Pending | Self::Waitlisted
        )
    }
}

/// Why a command was not carried out. Typed so that callers map each to one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the section is sold out")]
    SoldOut,
    #[error("only {available} seats are left in the section")]
    NotEnoughSeats { available: u32 },
    #[error("no row has {requested} free seats next to each other")]
    NoAdjacentSeats { requested: u16 },
    #[error("{seat} is already taken")]
    SeatTaken { seat: Seat },
    #[error("{seat} is not in the section")]
    SeatOutOfRange { seat: Seat },
    #[error("{seat} is asked for twice")]
    DuplicateSeat { seat: Seat },
    #[error("{requested} is not a valid number of seats")]
    InvalidSeatCount { requested: u16 },
    #[error("the section does not exist")]
    UnknownSection,
    #[error("the reservation does not exist")]
    UnknownReservation,
    #[error("the reservation belongs to another user")]
    NotOwner,
    #[error("a {} reservation cannot be cancelled", status.as_str())]
    NotCancellable { status: Status },
    #[error("the section already exists with another layout")]
    SectionExists,
    #[error("the event allows at most {limit} seats per user")]
    UserLimitExceeded { limit: u16 },
    #[error("the section's waitlist is full ({limit} waiting)")]
    WaitlistFull { limit: u32 },
    #[error("the waiting room is not open yet")]
    QueueNotOpen { opens_at: Millis },
    #[error("the event has no waiting room")]
    NoWaitingRoom,
    #[error("the ticket does not exist")]
    UnknownTicket,
    #[error("the sale has started: the waiting room's rules can no longer change")]
    SaleStarted,
}

impl Rejection {
    /// A stable machine-readable code (used in API errors and the wire format).
    pub fn code(&self) -> &'static str {
        match self {
            Self::SoldOut => "sold_out",
            Self::NotEnoughSeats { .. } => "not_enough_seats",
            Self::NoAdjacentSeats { .. } => "no_adjacent_seats",
            Self::SeatTaken { .. } => "seat_taken",
            Self::SeatOutOfRange { .. } => "seat_out_of_range",
            Self::DuplicateSeat { .. } => "duplicate_seat",
            Self::InvalidSeatCount { .. } => "invalid_seat_count",
            Self::UnknownSection => "unknown_section",
            Self::UnknownReservation => "unknown_reservation",
            Self::NotOwner => "not_owner",
            Self::NotCancellable { .. } => "not_cancellable",
            Self::SectionExists => "section_exists",
            Self::UserLimitExceeded { .. } => "user_limit_exceeded",
            Self::WaitlistFull { .. } => "waitlist_full",
            Self::QueueNotOpen { .. } => "queue_not_open",
            Self::NoWaitingRoom => "no_waiting_room",
            Self::UnknownTicket => "unknown_ticket",
            Self::SaleStarted => "sale_started",
        }
    }
}

/// The decided state of one reservation: what the user sees and what the audit keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub key: SectionKey,
    pub user_id: String,
    pub status: Status,
    /// How many seats were asked for.
    pub requested_seats: u16,
    /// The seats held (CONFIRMED) or given back (CANCELLED); empty when REJECTED.
    pub seats: Vec<Seat>,
    pub reason: Option<Rejection>,
    pub requested_at: Millis,
    pub decided_at: Millis,
    pub cancelled_at: Option<Millis>,
    pub checkout: Checkout,
}

/// A reservation's checkout: until when its seats are held, and how the hold ended. All empty
/// for a REJECTED reservation; `confirmed_at` alone for one confirmed when decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkout {
    /// When a HELD reservation's seats go back on sale unless it is confirmed.
    pub expires_at: Option<Millis>,
    pub confirmed_at: Option<Millis>,
    pub expired_at: Option<Millis>,
    /// The payment reference its confirmation carried.
    pub payment_ref: Option<String>,
    /// Its place in its section's waitlist, for a reservation that was WAITLISTED (kept when it
    /// moves on, like `expires_at`): smaller is earlier.
    pub waitlisted: Option<u64>,
}

/// A section came into existence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInitialized {
    pub key: SectionKey,
    pub event_name: String,
    /// Where the section is listed in its event (0-based).
    pub position: u32,
    pub layout: Layout,
    pub rules: SaleRules,
    pub at: Millis,
}

/// A reservation was decided (held, confirmed or rejected), or changed (confirmed after its
/// hold, cancelled, expired); `available` is the section's count after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    pub reservation: Reservation,
    pub available: u32,
}

/// A waiting room's decision ([`RoomEvent`]), with the room's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRecorded {
    /// The room's key ([`SectionKey::room`]).
    pub key: SectionKey,
    pub event: RoomEvent,
}

/// The facts the seat workers record, in order, per section (and per waiting room).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    SectionInitialized(SectionInitialized),
    ReservationCompleted(Completed),
    Room(RoomRecorded),
}

impl Event {
    pub fn key(&self) -> &SectionKey {
        match self {
            Self::SectionInitialized(e) => &e.key,
            Self::ReservationCompleted(e) => &e.reservation.key,
            Self::Room(e) => &e.key,
        }
    }

    /// The section's available count once this event is applied (0 for a room's event).
    pub fn available_after(&self) -> u32 {
        match self {
            Self::SectionInitialized(e) => e.layout.capacity(),
            Self::ReservationCompleted(e) => e.available,
            Self::Room(_) => 0,
        }
    }
}

/// The slim status of a section (the seed's SectionStatusEvent): its available count only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionStatus {
    pub key: SectionKey,
    pub available: u32,
}

/// What the caller of a command is told.
// The reservation is the common answer; boxing it would cost an allocation per decision.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The reservation's outcome (new, or the first one for a repeated id).
    Reservation(Reservation),
    /// The section exists with the asked layout (new or already); the waiting room is set up
    /// with the asked rules.
    SectionReady,
    /// Nothing was recorded.
    Refused(Rejection),
    /// A waiting-room ticket as the room's owner left it (joined, or left).
    Ticket(Ticket),
}

/// The seat processor's answer to one command, routed back to the gateway that waits for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandReply {
    /// The reservation id, or `init:eventId/section` for a section initialisation.
    pub correlation_id: String,
    pub key: SectionKey,
    /// The section's available count when the answer was made.
    pub available: u32,
    pub outcome: Outcome,
}

impl CommandReply {
    /// The correlation id of a command.
    pub fn correlation_of(command: &Command) -> String {
        if let Command::Room(room) = command {
            return match &room.request {
                RoomRequest::Open(_) => format!("room:{}", room.key.event_id),
                RoomRequest::Join { ticket, .. } => format!("join:{ticket}"),
                RoomRequest::Leave { ticket, .. } => format!("leave:{ticket}"),
                RoomRequest::EndSession { reservation_id, .. } => format!("end:{reservation_id}"),
            };
        }
        match command.reservation_id() {
            Some(id) => id.to_string(),
            None => format!("init:{}", command.routing_key()),
        }
    }
}
