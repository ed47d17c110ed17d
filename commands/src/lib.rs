//! The command side: everything between an accepted HTTP request and the seat worker.
//!
//! A reservation request is validated (seat count, known section, picked seats inside it),
//! answered from the de-duplication table when it is a retry, rejected at once by the
//! pre-filter when the section's cached available count is below the request (it never becomes
//! a command), and otherwise handed to the worker owning its section. The caller gets the
//! outcome once the decision is on disk.

mod dedup;
mod event_key;
mod room;
mod status;
pub mod text;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use seatflow_aggregates::{
    Cancel, ClaimQuota, Command, Confirm, InitSection, Layout, LayoutError, MAX_HOLD_SECONDS,
    MAX_PAYMENT_REF_CHARS, MAX_SEATS_PER_USER, Millis, Outcome, QuotaVerdict, Rejection,
    Reservation, ReservationId, Reserve, SaleRules, Seat, SeatRequest, SectionKey, Status,
};

/// The future a [`CommandBus`] answers with.
pub type SubmitFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Submitted, BusError>> + Send + 'a>>;

/// Why a bus gave a command no outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The owner of the section could not decide (its store failed).
    #[error("the seat processor could not decide: {0}")]
    Unavailable(String),
    #[error("the seat processor is shutting down")]
    Stopped,
    /// The command could not be made durable (the broker did not take it).
    #[error("the command could not be handed over: {0}")]
    Transport(String),
    /// The command is durable but its outcome did not arrive while the caller waited.
    #[error("no decision arrived in time; the command is recorded and will be decided")]
    NotDecidedInTime,
}

/// Where commands go to be decided: the embedded workers, or Kafka.
pub trait CommandBus: Send + Sync + 'static {
    /// Hand a command over. `wait` is how long the caller will wait for the outcome; the
    /// answer is `Decided` if the outcome is known in that time, `Accepted` if the command is
    /// durable but not decided yet.
    fn submit(&self, command: Command, wait: Duration) -> SubmitFuture<'_>;
}

/// The future a [`ReadBarrier`] answers with.
pub type BarrierFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;

/// Where this process's read model may be behind decisions made through other processes
/// (several gateways on Kafka), the way to wait until it has every outcome of a section
/// committed before the call. The embedded runtime has none: its read model is updated
/// before any caller is answered.
pub trait ReadBarrier: Send + Sync + 'static {
    /// Wait (bounded) until the read side has every outcome committed for `key` so far; false
    /// if it could not tell in time (the read model then answers as it is).
    fn caught_up<'a>(&'a self, key: &'a SectionKey) -> BarrierFuture<'a>;
}

/// What a bus says about a submitted command.
// A decided outcome is the common answer; boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Decided(Outcome),
    Accepted,
}

/// How long event creation and cancellation wait for their outcome.
pub const DECISION_TIMEOUT: Duration = Duration::from_secs(10);
use tracing::instrument;

pub use dedup::{Claim, Dedup, DedupFuture, DedupStore, Held};
pub use event_key::{EventKey, NewEvent};
pub use room::RoomPolicy;
pub use status::StatusCache;

/// Where the command side looks up what sections exist (the catalogue read model).
pub trait SectionDirectory: Send + Sync + 'static {
    fn layout(&self, key: &SectionKey) -> Option<Layout>;
    /// The rules the section's reservations are decided by.
    fn rules(&self, key: &SectionKey) -> Option<SaleRules>;
    fn event_exists(&self, event_id: &str) -> bool;
    fn reservation(&self, id: ReservationId) -> Option<Reservation>;
    /// The user's newest CONFIRMED reservation in `key` requested at or after `since`.
    fn held_by(&self, user_id: &str, key: &SectionKey, since: Millis) -> Option<Reservation>;
    /// A reservation accepted (durable) but not decided when its request stopped waiting: a
    /// poll of it must find it PENDING, not unknown, until its outcome arrives.
    fn note_accepted(&self, pending: &Reservation);
}

/// Limits applied to requests.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most seats one reservation may ask for.
    pub max_seats_per_reservation: u16,
    /// How long a retry of the same user, event and section returns the first reservation.
    pub dedup_window: Duration,
    /// Most sections one event may have.
    pub max_sections_per_event: usize,
    /// Most seats one event may have, all sections together (each costs memory for good).
    pub max_seats_per_event: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_seats_per_reservation: 8,
            dedup_window: Duration::from_secs(3600),
            max_sections_per_event: 1_000,
            max_seats_per_event: 200_000,
        }
    }
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The request is well-formed but a value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("event {0} does not exist")]
    UnknownEvent(String),
    #[error("section {0} does not exist")]
    UnknownSection(SectionKey),
    #[error("reservation {0} does not exist")]
    UnknownReservation(ReservationId),
    /// No such ticket in the event's waiting room, or not the caller's.
    #[error("the ticket does not exist")]
    UnknownTicket,
    /// The event has a sale time and it has not come yet.
    #[error("the sale opens at {opens_at} (Unix ms)")]
    SaleNotStarted { opens_at: Millis },
    /// Refused before becoming a command: the cached count is below the request.
    #[error("{0}")]
    PreFiltered(Rejection),
    /// Decided by the seat worker and refused with nothing recorded.
    #[error("{0}")]
    Refused(Rejection),
    /// The seat processor could not decide (store failure, shutdown): retry later.
    #[error("{0}")]
    Unavailable(#[from] BusError),
}

/// A bus answered a command with an outcome of another kind of command.
fn unexpected(what: &str) -> CommandError {
    CommandError::Unavailable(BusError::Unavailable(format!(
        "unexpected outcome for {what}"
    )))
}

/// 422 for an organizer's `Idempotency-Key` that made `event_id` with other settings (as a
/// reservation's key used for another section is).
pub fn key_used_for(event_id: &str) -> CommandError {
    invalid(
        "Idempotency-Key",
        format!("was used for event {event_id} with other settings; use a new key for a new event"),
    )
}

fn invalid(field: &'static str, message: impl Into<String>) -> CommandError {
    CommandError::Invalid {
        field,
        message: message.into(),
    }
}

/// A reservation request as the gateway parsed it.
#[derive(Clone, Debug)]
pub struct ReserveRequest {
    pub event_id: String,
    pub section: String,
    pub user_id: String,
    pub seat_count: Option<u16>,
    pub seats: Option<Vec<Seat>>,
    /// The client's `Idempotency-Key`: the same key again answers with the same reservation.
    pub idempotency_key: Option<String>,
    /// Wait in the section's order if it has no room (`seatCount` requests only).
    pub waitlist: bool,
}

/// A section of an event to create.
#[derive(Clone, Debug)]
pub struct NewSection {
    pub section: String,
    pub rows: u32,
    pub seats_per_row: u32,
}

/// The answer to a reservation request.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub reservation_id: ReservationId,
    /// The decided outcome when known at acceptance (always, on the embedded runtime).
    pub outcome: Option<Reservation>,
    /// The request was a retry answered with the first reservation.
    pub deduplicated: bool,
}

/// The command side, shared by every HTTP handler.
#[derive(Clone)]
pub struct CommandService {
    bus: Arc<dyn CommandBus>,
    directory: Arc<dyn SectionDirectory>,
    status: Arc<StatusCache>,
    dedup: Arc<dyn DedupStore>,
    limits: Limits,
    barrier: Option<Arc<dyn ReadBarrier>>,
}

impl std::fmt::Debug for CommandService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandService")
            .field("limits", &self.limits)
            .finish()
    }
}

impl CommandService {
    pub fn new(
        bus: Arc<dyn CommandBus>,
        directory: Arc<dyn SectionDirectory>,
        status: Arc<StatusCache>,
        dedup: Arc<dyn DedupStore>,
        limits: Limits,
    ) -> Self {
        Self {
            bus,
            directory,
            status,
            dedup,
            limits,
            barrier: None,
        }
    }

    /// Read after `barrier` before answering a retry with seats held (a read model that may
    /// lag behind other gateways).
    pub fn with_read_barrier(mut self, barrier: Arc<dyn ReadBarrier>) -> Self {
        self.barrier = Some(barrier);
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The sections' counts as the pre-filter has them (what live availability follows).
    pub fn status(&self) -> &Arc<StatusCache> {
        &self.status
    }

    /// Reserve seats: validate, honour the `Idempotency-Key`, de-duplicate, pre-filter, decide.
    // Debug spans (here and below): at info, every request paid for a span and its formatted
    // fields, and with traces exported each became a root trace of its own.
    #[instrument(level = "debug", skip(self, request), fields(event = %request.event_id, section = %request.section))]
    pub async fn reserve(
        &self,
        mut request: ReserveRequest,
        wait: Duration,
    ) -> Result<Accepted, CommandError> {
        request.user_id = text::identifier("userId", &request.user_id)?;
        request.event_id = text::identifier("eventId", &request.event_id)?;
        request.section = text::identifier("section", &request.section)?;
        if let Some(key) = &request.idempotency_key {
            request.idempotency_key = Some(text::identifier("Idempotency-Key", key)?);
        }
        let seat_request = self.validate_reserve(&request)?;
        let reservation_id = ReservationId::new_v7();
        let Some(idempotency_key) = &request.idempotency_key else {
            return self
                .reserve_once(request, seat_request, reservation_id, wait)
                .await;
        };
        // The same key again answers with the reservation it made, whatever its status.
        let key = Dedup::idempotency_key(&request.user_id, idempotency_key);
        if let Claim::Existing(first) = self.dedup.claim(&key, reservation_id).await {
            return self.answer_again(first, &request);
        }
        let mut held = Held::new(self.dedup.clone(), key, reservation_id);
        // A request dropped from here on may have sent its command: its retry must find the key.
        held.in_flight();
        let result = self
            .reserve_once(request, seat_request, reservation_id, wait)
            .await;
        // The key names the reservation answered (the first one, for a retry); nothing was
        // recorded on an error, and the same key may try again.
        held.settle(result.as_ref().ok().map(|accepted| accepted.reservation_id))
            .await;
        result
    }

    /// The reservation an `Idempotency-Key` made, if the request is the same one.
    fn answer_again(
        &self,
        first: ReservationId,
        request: &ReserveRequest,
    ) -> Result<Accepted, CommandError> {
        match self.directory.reservation(first) {
            Some(reservation)
                if reservation.key.event_id != request.event_id
                    || reservation.key.section != request.section =>
            {
                Err(invalid(
                    "Idempotency-Key",
                    format!(
                        "was used for reservation {first} in another event or section; use a new key for a new request"
                    ),
                ))
            }
            outcome => Ok(Accepted {
                reservation_id: first,
                // Unknown yet: its request is still in flight; the caller waits for it.
                outcome,
                deduplicated: true,
            }),
        }
    }

    /// One reservation attempt under the `userId:eventId:section` de-duplication key.
    async fn reserve_once(
        &self,
        request: ReserveRequest,
        seat_request: SeatRequest,
        reservation_id: ReservationId,
        wait: Duration,
    ) -> Result<Accepted, CommandError> {
        let key = SectionKey::new(request.event_id, request.section);
        let dedup_key = Dedup::key(&request.user_id, &key);

        // A retry is answered before the pre-filter (a sold-out section still gives a user the
        // seats they hold). Both looks are local: the key claimed here, or a reservation decided
        // anywhere that this process's read model has seen. A retry of a request still in
        // flight elsewhere is caught by the claim below, the one shared (Redis) call, made only
        // by requests that pass the pre-filter.
        if let Some(first) = self
            .read_after_barrier(&key, || {
                self.known_retry(&dedup_key, &request.user_id, &key)
            })
            .await
        {
            return Ok(first);
        }

        // A request that asks to wait goes to the section's owner even when it has no room.
        let wanted = u32::from(seat_request.seat_count());
        match self.status.available(&key) {
            _ if request.waitlist => {}
            Some(0) => return Err(CommandError::PreFiltered(Rejection::SoldOut)),
            Some(available) if available < wanted => {
                return Err(CommandError::PreFiltered(Rejection::NotEnoughSeats {
                    available,
                }));
            }
            _ => {}
        }

        match self.dedup.claim(&dedup_key, reservation_id).await {
            Claim::Claimed => {}
            Claim::Existing(existing) => {
                if let Some(first) = self
                    .read_after_barrier(&key, || async { self.live_reservation(existing) })
                    .await
                {
                    return Ok(first);
                }
                self.dedup
                    .replace(&dedup_key, existing, reservation_id)
                    .await;
            }
        }
        let mut held = Held::new(self.dedup.clone(), dedup_key, reservation_id);

        let requested_at = now_millis();
        let pending = Reservation {
            id: reservation_id,
            key: key.clone(),
            user_id: request.user_id.clone(),
            status: Status::Pending,
            requested_seats: seat_request.seat_count(),
            seats: Vec::new(),
            reason: None,
            requested_at,
            decided_at: requested_at,
            cancelled_at: None,
            checkout: Default::default(),
        };
        let limit = self
            .directory
            .rules(&key)
            .and_then(|rules| rules.max_seats_per_user);
        let reserve = Reserve {
            reservation_id,
            key,
            user_id: request.user_id,
            request: seat_request,
            requested_at,
            quota: QuotaVerdict::Unchecked,
            waitlist: request.waitlist,
        };
        // In an event that limits its users the reservation goes to the user's quota first
        // (a section that gets it unchecked would send it there itself, one hop later).
        let command = match limit {
            Some(limit) => Command::ClaimQuota(ClaimQuota { reserve, limit }),
            None => Command::Reserve(reserve),
        };
        held.in_flight();
        let submitted = self.bus.submit(command, wait).await;
        // Only a reservation that holds seats, or may still come to, keeps the key.
        let holds = match &submitted {
            Ok(Submitted::Accepted) => true,
            Ok(Submitted::Decided(Outcome::Reservation(reservation))) => {
                reservation.status.is_live()
            }
            Ok(Submitted::Decided(_)) | Err(_) => false,
        };
        held.settle(holds.then_some(reservation_id)).await;
        match submitted? {
            Submitted::Accepted => {
                self.directory.note_accepted(&pending);
                Ok(Accepted {
                    reservation_id,
                    outcome: None,
                    deduplicated: false,
                })
            }
            Submitted::Decided(Outcome::Reservation(reservation)) => Ok(Accepted {
                reservation_id,
                outcome: Some(reservation),
                deduplicated: false,
            }),
            Submitted::Decided(Outcome::Refused(rejection)) => {
                Err(CommandError::Refused(rejection))
            }
            Submitted::Decided(Outcome::SectionReady | Outcome::Ticket(_)) => {
                Err(unexpected("a reservation"))
            }
        }
    }

    /// What this process knows of a retry: the reservation holding its de-duplication key, or
    /// one the user holds in the section by the read model, if it still holds seats (or is
    /// undecided).
    async fn known_retry(
        &self,
        dedup_key: &str,
        user_id: &str,
        key: &SectionKey,
    ) -> Option<Accepted> {
        if let Some(existing) = self.dedup.holder(dedup_key).await
            && let Some(first) = self.live_reservation(existing)
        {
            return Some(first);
        }
        let window_start = now_millis().saturating_sub(
            i64::try_from(self.limits.dedup_window.as_millis()).unwrap_or(i64::MAX),
        );
        self.directory
            .held_by(user_id, key, window_start)
            .map(|held| Accepted {
                reservation_id: held.id,
                outcome: Some(held),
                deduplicated: true,
            })
    }

    /// `read` answered with seats held is read again once the read side has every outcome of
    /// the section committed so far, where it may lag behind other processes (several gateways):
    /// a cancellation made through another gateway a moment ago must not be answered as seats
    /// the user holds.
    async fn read_after_barrier<F, R>(&self, key: &SectionKey, read: F) -> Option<Accepted>
    where
        F: Fn() -> R,
        R: std::future::Future<Output = Option<Accepted>>,
    {
        let first = read().await?;
        let holds_seats = first
            .outcome
            .as_ref()
            .is_some_and(|r| r.status.takes_seats());
        match &self.barrier {
            Some(barrier) if holds_seats => {
                barrier.caught_up(key).await;
                read().await
            }
            _ => Some(first),
        }
    }

    /// The first reservation of a retry, if it still holds seats (or is undecided).
    fn live_reservation(&self, id: ReservationId) -> Option<Accepted> {
        match self.directory.reservation(id) {
            Some(first) if first.status.is_live() => Some(Accepted {
                reservation_id: id,
                outcome: Some(first),
                deduplicated: true,
            }),
            Some(_) => None,
            // Claimed by a request still in flight: the retry waits for the same reservation.
            None => Some(Accepted {
                reservation_id: id,
                outcome: None,
                deduplicated: true,
            }),
        }
    }

    /// The seats a request asks for (its text is normalized and bounded already).
    fn validate_reserve(&self, request: &ReserveRequest) -> Result<SeatRequest, CommandError> {
        let max = self.limits.max_seats_per_reservation;
        let seat_request = match (&request.seat_count, &request.seats) {
            (Some(_), Some(_)) => {
                return Err(invalid("seats", "give either seatCount or seats, not both"));
            }
            (None, None) => return Err(invalid("seatCount", "give seatCount or seats")),
            (Some(count), None) => {
                if *count == 0 || *count > max {
                    return Err(invalid("seatCount", format!("must be between 1 and {max}")));
                }
                SeatRequest::Adjacent(*count)
            }
            (None, Some(seats)) => {
                if seats.is_empty() || seats.len() > usize::from(max) {
                    return Err(invalid(
                        "seats",
                        format!("must list between 1 and {max} seats"),
                    ));
                }
                if request.waitlist {
                    return Err(invalid(
                        "waitlist",
                        "waiting is for seatCount requests, not for picked seats",
                    ));
                }
                SeatRequest::Picked(seats.clone())
            }
        };
        if !self.directory.event_exists(&request.event_id) {
            return Err(CommandError::UnknownEvent(request.event_id.clone()));
        }
        let key = SectionKey::new(request.event_id.as_str(), request.section.as_str());
        let Some(layout) = self.directory.layout(&key) else {
            return Err(CommandError::UnknownSection(key));
        };
        // With a waiting room the room gates the start (no admission before its on-sale, which
        // the organizer may move); without one, the sections' sale time does.
        if let Some(rules) = self.directory.rules(&key)
            && !rules.waiting_room
            && let Some(opens_at) = rules.on_sale_at
            && now_millis() < opens_at
        {
            return Err(CommandError::SaleNotStarted { opens_at });
        }
        if let SeatRequest::Picked(seats) = &seat_request {
            for (i, seat) in seats.iter().enumerate() {
                if !layout.contains(*seat) {
                    return Err(invalid(
                        "seats",
                        format!(
                            "{seat} is outside the section ({} rows x {} seats)",
                            layout.rows, layout.seats_per_row
                        ),
                    ));
                }
                if seats[..i].contains(seat) {
                    return Err(invalid("seats", format!("{seat} is listed twice")));
                }
            }
        } else if u32::from(seat_request.seat_count()) > u32::from(layout.seats_per_row) {
            return Err(invalid(
                "seatCount",
                format!("a row of this section has {} seats", layout.seats_per_row),
            ));
        }
        Ok(seat_request)
    }

    /// Cancel reservation `id` of section `key` (where the read side found it) for `user_id`;
    /// the section's owner checks that it is the user's and that it holds seats.
    #[instrument(level = "debug", skip(self), fields(reservation = %id))]
    pub async fn cancel(
        &self,
        id: ReservationId,
        key: SectionKey,
        user_id: &str,
    ) -> Result<Reservation, CommandError> {
        let user_id = text::identifier("X-User-Id", user_id)?;
        let command = Command::Cancel(Cancel {
            reservation_id: id,
            key: key.clone(),
            user_id,
            requested_at: now_millis(),
        });
        self.change(command, id, key, "a cancellation").await
    }

    /// Confirm a HELD reservation. The answer is the reservation as its section's owner left
    /// it: CONFIRMED (now, or before: a confirmation is idempotent), EXPIRED (its hold ended
    /// first: the seats are back on sale), or another status that cannot be confirmed.
    pub async fn confirm(
        &self,
        id: ReservationId,
        key: SectionKey,
        user_id: &str,
        payment_ref: Option<&str>,
    ) -> Result<Reservation, CommandError> {
        let user_id = text::identifier("X-User-Id", user_id)?;
        let payment_ref = payment_ref
            .map(|payment_ref| text::bounded("paymentRef", payment_ref, MAX_PAYMENT_REF_CHARS))
            .transpose()?;
        let command = Command::Confirm(Confirm {
            reservation_id: id,
            key: key.clone(),
            user_id,
            payment_ref,
            requested_at: now_millis(),
        });
        self.change(command, id, key, "a confirmation").await
    }

    /// Submit a change of reservation `id` and answer with the reservation as its section's
    /// owner left it. One that no longer takes seats (cancelled, expired) frees the
    /// de-duplication key: a retry of the same request gets new seats.
    async fn change(
        &self,
        command: Command,
        id: ReservationId,
        key: SectionKey,
        what: &'static str,
    ) -> Result<Reservation, CommandError> {
        let outcome = match self.bus.submit(command, DECISION_TIMEOUT).await? {
            Submitted::Decided(outcome) => outcome,
            Submitted::Accepted => return Err(BusError::NotDecidedInTime.into()),
        };
        match outcome {
            Outcome::Reservation(reservation) => {
                if !reservation.status.is_live() {
                    self.dedup
                        .forget(&Dedup::key(&reservation.user_id, &key), reservation.id)
                        .await;
                }
                Ok(reservation)
            }
            Outcome::Refused(Rejection::UnknownReservation) => {
                Err(CommandError::UnknownReservation(id))
            }
            Outcome::Refused(rejection) => Err(CommandError::Refused(rejection)),
            Outcome::SectionReady | Outcome::Ticket(_) => Err(unexpected(what)),
        }
    }

    /// Validate an event's creation: its name, sections and rules as they will be submitted
    /// (and as a repeated creation under the same `Idempotency-Key` is compared with).
    pub fn plan_event(
        &self,
        name: &str,
        sections: &[NewSection],
        policy: SalePolicy,
    ) -> Result<NewEvent, CommandError> {
        let rules = policy.rules()?;
        let room = policy.room_rules()?;
        let name = text::bounded("name", name, 200)?;
        if sections.is_empty() || sections.len() > self.limits.max_sections_per_event {
            return Err(invalid(
                "sections",
                format!(
                    "must list between 1 and {} sections",
                    self.limits.max_sections_per_event
                ),
            ));
        }
        let mut planned: Vec<(String, Layout)> = Vec::with_capacity(sections.len());
        let mut seats_in_event = 0u64;
        for section in sections {
            let name = text::section_name("sections[].section", &section.section)?;
            if planned.iter().any(|(listed, _)| *listed == name) {
                return Err(invalid(
                    "sections[].section",
                    format!("{name:?} is listed twice"),
                ));
            }
            let rows = u16::try_from(section.rows).unwrap_or(u16::MAX);
            let seats = u16::try_from(section.seats_per_row).unwrap_or(u16::MAX);
            let layout = Layout::new(rows, seats).map_err(|e| match e {
                LayoutError::Rows => invalid("sections[].rows", e.to_string()),
                LayoutError::SeatsPerRow => invalid("sections[].seatsPerRow", e.to_string()),
                LayoutError::TooLarge => invalid("sections[]", e.to_string()),
            })?;
            seats_in_event += u64::from(layout.rows) * u64::from(layout.seats_per_row);
            if seats_in_event > self.limits.max_seats_per_event {
                return Err(invalid(
                    "sections",
                    format!(
                        "the event may have at most {} seats in all its sections",
                        self.limits.max_seats_per_event
                    ),
                ));
            }
            planned.push((name, layout));
        }
        Ok(NewEvent {
            name,
            sections: planned,
            rules,
            room,
        })
    }

    /// Create `event`; returns its id once every section exists. With `key` (an organizer's
    /// `Idempotency-Key`, see [`event_id_for_key`]) the id is the key's: a repeat reaches the
    /// sections the first creation made, whose owners take an identical initialisation as
    /// done, and refuse one with other seats or rules ([`key_used_for`]).
    #[instrument(level = "debug", skip_all, fields(sections = event.sections.len()))]
    pub async fn create_event(
        &self,
        event: &NewEvent,
        key: Option<&EventKey<'_>>,
    ) -> Result<String, CommandError> {
        let NewEvent {
            name,
            sections,
            rules,
            room,
        } = event;
        let (rules, room) = (*rules, *room);
        let event_id = key.map_or_else(|| uuid::Uuid::now_v7().to_string(), EventKey::event_id);
        // The room exists before any section says it has one.
        if let Some(room) = room {
            self.open_room(&event_id, room).await?;
        }
        let requested_at = now_millis();
        let mut submissions = tokio::task::JoinSet::new();
        for (position, (section, layout)) in sections.iter().enumerate() {
            let bus = self.bus.clone();
            let command = Command::InitSection(InitSection {
                key: SectionKey::new(event_id.as_str(), section.as_str()),
                event_name: name.clone(),
                position: position as u32,
                layout: *layout,
                rules,
                requested_at,
            });
            submissions.spawn(async move { bus.submit(command, DECISION_TIMEOUT).await });
        }
        while let Some(joined) = submissions.join_next().await {
            let submitted = joined.map_err(|e| BusError::Unavailable(e.to_string()))?;
            let outcome = match submitted? {
                Submitted::Decided(outcome) => outcome,
                Submitted::Accepted => return Err(BusError::NotDecidedInTime.into()),
            };
            match outcome {
                Outcome::SectionReady => {}
                Outcome::Refused(Rejection::SectionExists) if key.is_some() => {
                    return Err(key_used_for(&event_id));
                }
                Outcome::Refused(rejection) => {
                    tracing::warn!(event = %event_id, %rejection, "section initialisation refused");
                    return Err(CommandError::Refused(rejection));
                }
                Outcome::Reservation(_) | Outcome::Ticket(_) => {
                    return Err(unexpected("a section"));
                }
            }
        }
        Ok(event_id)
    }
}

/// How an event's reservations are sold, as asked at its creation. Raw numbers, so that a
/// value out of range is named in the error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SalePolicy {
    /// Seconds a reservation is HELD awaiting confirmation before it expires (0..=3600; absent
    /// or 0: confirmed when decided).
    pub hold_seconds: Option<i64>,
    /// The most seats one user may have HELD or CONFIRMED in the event (1..=100; absent: no
    /// limit but the per-request one).
    pub max_seats_per_user: Option<i64>,
    /// Best-available never leaves a lone free seat when another placement in the row would
    /// not (absent: true).
    pub avoid_single_seats: Option<bool>,
    /// When reservations open (absent: at once).
    pub on_sale_at: Option<Millis>,
    /// The event's waiting room (needs `on_sale_at`).
    pub waiting_room: Option<RoomPolicy>,
}

impl SalePolicy {
    /// The rules the policy asks for, or the field at fault.
    pub fn rules(&self) -> Result<SaleRules, CommandError> {
        let hold_seconds = match self.hold_seconds {
            None => 0,
            Some(seconds) => u32::try_from(seconds)
                .ok()
                .filter(|seconds| *seconds <= MAX_HOLD_SECONDS)
                .ok_or_else(|| {
                    invalid(
                        "holdSeconds",
                        format!("must be between 0 and {MAX_HOLD_SECONDS}"),
                    )
                })?,
        };
        let max_seats_per_user = match self.max_seats_per_user {
            None => None,
            Some(limit) => Some(
                u16::try_from(limit)
                    .ok()
                    .filter(|limit| (1..=MAX_SEATS_PER_USER).contains(limit))
                    .ok_or_else(|| {
                        invalid(
                            "maxSeatsPerUser",
                            format!("must be between 1 and {MAX_SEATS_PER_USER}"),
                        )
                    })?,
            ),
        };
        // Validated here so that a bad room is refused before anything is created.
        self.room_rules()?;
        Ok(SaleRules {
            hold_seconds,
            max_seats_per_user,
            avoid_single_seats: self.avoid_single_seats.unwrap_or(true),
            waiting_room: self.waiting_room.is_some(),
            on_sale_at: self.on_sale_at,
        })
    }

    /// The waiting room's rules, if the event has one, or the field at fault.
    pub fn room_rules(&self) -> Result<Option<seatflow_aggregates::room::RoomRules>, CommandError> {
        match (self.waiting_room, self.on_sale_at) {
            (None, _) => Ok(None),
            (Some(_), None) => Err(invalid(
                "onSaleAt",
                "an event with a waiting room needs the time its sale opens",
            )),
            (Some(room), Some(on_sale_at)) => room.rules(on_sale_at).map(Some),
        }
    }
}

fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
