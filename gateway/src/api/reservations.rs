//! Reservations: reserve, read one (long poll), cancel, a user's history.

use std::time::{Duration, Instant};

use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use seatflow_aggregates::room::TicketStatus;
use seatflow_aggregates::{ReservationId, Seat, SectionKey, Status};
use seatflow_commands::text::normalized;
use seatflow_commands::{CommandError, ReserveRequest};
use seatflow_projections::Found;
use seatflow_telemetry::metrics;

use super::model::{ConfirmDto, ReservationDto, ReserveDto, UuidText};
use super::{AppState, Tag, default_limit, now_millis};
use crate::admission::Refused;
use crate::auth::{Caller, USER_HEADER};

/// The header a reservation carries its admission in.
const ADMISSION_HEADER: &str = "X-Admission-Token";
use crate::body::{JsonBody, OptionalJsonBody};
use crate::error::ApiError;

#[derive(Debug, ApiResponse)]
pub enum ReservationAnswer {
    /// The outcome is decided: HELD with seats until `expiresAt` (an event with `holdSeconds`),
    /// CONFIRMED with seats, REJECTED with a reason (`sold_out`, `user_limit_exceeded`, ...),
    /// or, for a retry, what became of the first reservation (CANCELLED, EXPIRED).
    #[oai(status = 200)]
    Decided(Json<ReservationDto>),
    /// Accepted and durable, not yet decided (or `wait` was 0): poll
    /// `GET /api/reservations/{reservationId}?wait=`.
    #[oai(status = 202)]
    Pending(Json<ReservationDto>),
}

#[derive(Debug)]
pub struct ReservationsApi {
    pub state: AppState,
}

#[OpenApi(tag = "Tag::Reservations")]
impl ReservationsApi {
    /// Reserve seats. Answers 202 once the request is durable, or, with `wait` > 0, 200 with the
    /// outcome as soon as it is decided (202 if the wait ends first). A request the section
    /// cannot satisfy by its current count is refused at once with 409. A retry by the same user
    /// for the same event and section within the hour returns the first reservation while it
    /// holds seats; a request repeating an `Idempotency-Key` returns the reservation that key
    /// made, whatever its status.
    #[oai(
        path = "/api/reservations",
        method = "post",
        operation_id = "reserveSeats"
    )]
    async fn reserve(
        &self,
        caller: Data<&Caller>,
        body: JsonBody<ReserveDto>,
        /// Milliseconds to wait for the outcome.
        #[oai(default, validator(maximum(value = "30000")))]
        wait: Query<u64>,
        /// A key of the client's choosing that makes retries of this request safe for an hour.
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 128))]
        idempotency_key: Header<Option<String>>,
        /// For an event with a waiting room: the `admissionToken` of the caller's ADMITTED
        /// ticket (`GET /api/events/{eventId}/queue/{ticketId}`).
        #[oai(name = "X-Admission-Token", validator(max_length = 4096))]
        admission_token: Header<Option<String>>,
    ) -> Result<ReservationAnswer, ApiError> {
        let wait = Duration::from_millis(wait.0);
        // One wait for the whole request: what submitting the command waited (on Kafka, for
        // the seat processor's reply) is not waited again for the outcome.
        let deadline = Instant::now() + wait;
        let request = self.reserve_request(&caller, body.0, idempotency_key.0)?;
        self.admitted(&request, admission_token.0.as_deref())?;
        let accepted = match self.state.commands.reserve(request.clone(), wait).await {
            Ok(accepted) => accepted,
            Err(e) => {
                metrics().reservation(refusal(&e));
                return Err(e.into());
            }
        };
        if accepted.deduplicated {
            metrics().dedup_hit();
        }
        let outcome = match accepted.outcome {
            Some(outcome) => Some(Found::Here(outcome)),
            None if !wait.is_zero() => {
                let left = deadline.saturating_duration_since(Instant::now());
                self.state
                    .queries
                    .reservation(accepted.reservation_id, left)
                    .await
            }
            None => None,
        };
        Ok(match outcome {
            Some(found) if !wait.is_zero() && !found.is_pending() => {
                metrics().reservation(if accepted.deduplicated {
                    "deduplicated"
                } else {
                    match found.status() {
                        Status::Held => "held",
                        Status::Waitlisted => "waitlisted",
                        Status::Confirmed => "confirmed",
                        Status::Cancelled | Status::Expired => "cancelled",
                        Status::Rejected | Status::Pending => "rejected",
                    }
                });
                ReservationAnswer::Decided(Json(ReservationDto::from(&found)))
            }
            _ => {
                // Asked to wait and still undecided: the timeout HighTimeoutRate watches.
                metrics().reservation(if wait.is_zero() { "pending" } else { "timeout" });
                ReservationAnswer::Pending(Json(ReservationDto::pending(
                    accepted.reservation_id,
                    &request,
                )))
            }
        })
    }

    /// A reservation's outcome. With `wait` > 0 an undecided reservation is waited for (long
    /// poll) up to that many milliseconds; 202 if it is still pending then.
    #[oai(
        path = "/api/reservations/:reservationId",
        method = "get",
        operation_id = "getReservation"
    )]
    async fn get_reservation(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "reservationId")] reservation_id: Path<UuidText>,
        /// Milliseconds to wait for an undecided reservation.
        #[oai(default, validator(maximum(value = "30000")))]
        wait: Query<u64>,
    ) -> Result<ReservationAnswer, ApiError> {
        let id = parse_reservation_id(&reservation_id.0)?;
        let wait = Duration::from_millis(wait.0);
        let found = self.state.queries.reservation(id, wait).await;
        // Someone else's reservation is not revealed to exist.
        match found.filter(|found| caller.may_act_for(found.user_id())) {
            Some(found) if found.is_pending() => Ok(ReservationAnswer::Pending(Json(
                ReservationDto::from(&found),
            ))),
            Some(found) => Ok(ReservationAnswer::Decided(Json(ReservationDto::from(
                &found,
            )))),
            None => Err(unknown_reservation()),
        }
    }

    /// Cancel a HELD, CONFIRMED or WAITLISTED reservation; only its user (or an `admin`) may:
    /// someone else's answers 404. The seats are free again at once. Cancelling a cancelled reservation answers it again; one whose hold
    /// expired is 409 `not_cancellable`.
    #[oai(
        path = "/api/reservations/:reservationId",
        method = "delete",
        operation_id = "cancelReservation"
    )]
    async fn cancel_reservation(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "reservationId")] reservation_id: Path<UuidText>,
        /// The user cancelling: required without authentication, otherwise the authenticated
        /// user (may be left out).
        #[oai(name = "X-User-Id", validator(min_length = 1, max_length = 128))]
        user_id: Header<Option<String>>,
    ) -> Result<Json<ReservationDto>, ApiError> {
        let id = parse_reservation_id(&reservation_id.0)?;
        let (key, user) = self.to_change(id, &caller, user_id.0).await?;
        let cancelled = self.state.commands.cancel(id, key, &user).await?;
        if cancelled.status == Status::Expired {
            // Its hold ended before the cancellation came: the expiry was recorded instead.
            return Err(ApiError::conflict(
                "not_cancellable",
                "the reservation's hold expired; its seats are back on sale",
            ));
        }
        Ok(Json(ReservationDto::from(&cancelled)))
    }

    /// Confirm a HELD reservation (its checkout is done); only its user (or an `admin`) may:
    /// someone else's answers 404.
    /// Confirming again answers the same. If its hold ended first (the section's owner decides
    /// which came first): 409 `hold_expired`; a cancelled or rejected reservation: 409
    /// `not_confirmable`.
    #[oai(
        path = "/api/reservations/:reservationId/confirm",
        method = "post",
        operation_id = "confirmReservation"
    )]
    async fn confirm_reservation(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "reservationId")] reservation_id: Path<UuidText>,
        /// The user confirming: required without authentication, otherwise the authenticated
        /// user (may be left out).
        #[oai(name = "X-User-Id", validator(min_length = 1, max_length = 128))]
        user_id: Header<Option<String>>,
        body: OptionalJsonBody<ConfirmDto>,
    ) -> Result<Json<ReservationDto>, ApiError> {
        let id = parse_reservation_id(&reservation_id.0)?;
        let (key, user) = self.to_change(id, &caller, user_id.0).await?;
        let answer = self
            .state
            .commands
            .confirm(id, key, &user, body.0.payment_ref.as_deref())
            .await?;
        match answer.status {
            Status::Confirmed => Ok(Json(ReservationDto::from(&answer))),
            Status::Expired => Err(ApiError::conflict(
                "hold_expired",
                "the reservation's hold expired before it was confirmed; its seats are back on sale",
            )),
            other => Err(ApiError::conflict(
                "not_confirmable",
                format!("a {} reservation cannot be confirmed", other.as_str()),
            )),
        }
    }

    /// A user's reservations, newest first: one's own (or anyone's, for an `admin`); another
    /// user's answers 404.
    #[oai(
        path = "/api/users/:userId/reservations",
        method = "get",
        operation_id = "listUserReservations"
    )]
    async fn user_reservations(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "userId")] user_id: Path<String>,
        /// How many reservations to skip.
        #[oai(default)]
        offset: Query<u32>,
        /// How many reservations to answer at most.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
    ) -> Result<Json<Vec<ReservationDto>>, ApiError> {
        let user = normalized(&user_id.0);
        if !caller.may_act_for(&user) {
            return Err(ApiError::not_found(
                "unknown_user",
                "no such user",
                Some("userId"),
            ));
        }
        let history = self
            .state
            .queries
            .user_history(&user, offset.0 as usize, limit.0 as usize)
            .await;
        Ok(Json(history.iter().map(ReservationDto::from).collect()))
    }
}

impl ReservationsApi {
    /// The section a reservation to change is in (its owner decides the change), and the user
    /// the change is made as: the caller's own reservation, or, for an `admin`, anyone's.
    /// Without authentication the user is the one `X-User-Id` names (the owner checks it).
    /// Any gateway may be asked, right after another one answered the reservation.
    async fn to_change(
        &self,
        id: ReservationId,
        caller: &Caller,
        named: Option<String>,
    ) -> Result<(SectionKey, String), ApiError> {
        let found = self
            .state
            .queries
            .reservation_to_change(id)
            .await
            .filter(|found| caller.may_act_for(found.user_id()))
            .ok_or_else(unknown_reservation)?;
        let user = match caller {
            Caller::Anyone => caller.acting_as(named, USER_HEADER)?,
            // An admin acts as the reservation's user; a user as themself.
            Caller::User { id, .. } => {
                let named = named.as_deref().map(normalized);
                if named.is_some_and(|named| named != id.as_str() && named != found.user_id()) {
                    return Err(ApiError::forbidden(
                        "user_mismatch",
                        format!("{USER_HEADER} must be the authenticated user or be left out"),
                        Some(USER_HEADER),
                    ));
                }
                found.user_id().to_owned()
            }
        };
        Ok((found.key(), user))
    }

    /// The command a reservation body asks for, its seats checked to be seat numbers.
    /// In an event with a waiting room, a reservation needs the token of a session that still
    /// runs: signed by a gateway, for this user and event, not expired, and (as far as this
    /// gateway's replica of the room knows) not ended by a confirmation or a leave.
    fn admitted(&self, request: &ReserveRequest, token: Option<&str>) -> Result<(), ApiError> {
        let rules = self.state.read.event_rules(&request.event_id);
        let Some(rules) = rules.filter(|rules| rules.waiting_room) else {
            return Ok(());
        };
        // The room's on-sale (the organizer may have moved it), else the event's.
        let opens_at = self
            .state
            .read
            .room_rules(&request.event_id)
            .map(|room| room.on_sale_at)
            .or(rules.on_sale_at);
        if let Some(opens_at) = opens_at.filter(|at| now_millis() < *at) {
            return Err(CommandError::SaleNotStarted { opens_at }.into());
        }
        let refused =
            |code: &str, message: &str| ApiError::forbidden(code, message, Some(ADMISSION_HEADER));
        let token = token.ok_or_else(|| {
            refused(
                "admission_required",
                "this event has a waiting room: join it (POST /api/events/{eventId}/queue) \
                 and reserve with the admission token of your admitted ticket",
            )
        })?;
        let user = normalized(&request.user_id);
        let admission = self
            .state
            .admission
            .check(token, &user, &request.event_id)
            .map_err(|why| {
                refused(
                    why.code(),
                    match why {
                        Refused::Expired => "the admission ran out",
                        Refused::Invalid => "not an admission to this event for this user",
                    },
                )
            })?;
        let ticket = uuid::Uuid::parse_str(&admission.tkt)
            .map_err(|_| refused("admission_invalid", "not an admission ticket"))?;
        match self
            .state
            .read
            .ticket(&request.event_id, ticket, now_millis())
            .map(|view| view.ticket.status)
        {
            Some(TicketStatus::Ended { .. }) => Err(refused(
                "admission_expired",
                "the session of this admission ended (confirmed, left or ran out)",
            )),
            // Admitted, or not in this gateway's replica yet (another gateway admitted it a
            // moment ago): the signature is the proof.
            _ => Ok(()),
        }
    }

    fn reserve_request(
        &self,
        caller: &Caller,
        body: ReserveDto,
        idempotency_key: Option<String>,
    ) -> Result<ReserveRequest, ApiError> {
        let seats = match body.seats {
            None => None,
            Some(seats) => Some(
                seats
                    .iter()
                    .enumerate()
                    .map(|(i, seat)| {
                        Ok(Seat::new(
                            seat_number(format!("seats[{i}].row"), seat.row)?,
                            seat_number(format!("seats[{i}].seat"), seat.seat)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?,
            ),
        };
        let seat_count = match body.seat_count {
            None => None,
            Some(n) => Some(u16::try_from(n).map_err(|_| {
                ApiError::unprocessable(
                    "seatCount",
                    format!(
                        "must be between 1 and {}",
                        self.state.commands.limits().max_seats_per_reservation
                    ),
                )
            })?),
        };
        Ok(ReserveRequest {
            event_id: body.event_id.0,
            section: body.section,
            user_id: caller.acting_as(body.user_id, "userId")?,
            seat_count,
            seats,
            idempotency_key,
            waitlist: body.waitlist.unwrap_or(false),
        })
    }
}

fn unknown_reservation() -> ApiError {
    ApiError::not_found(
        "unknown_reservation",
        "no such reservation",
        Some("reservationId"),
    )
}

/// How a refused reservation request is counted.
fn refusal(error: &CommandError) -> &'static str {
    match error {
        CommandError::PreFiltered(_) => "prefiltered",
        CommandError::Refused(_) => "rejected",
        CommandError::Unavailable(_) => "error",
        CommandError::SaleNotStarted { .. } => "rejected",
        CommandError::Invalid { .. }
        | CommandError::UnknownTicket
        | CommandError::UnknownEvent(_)
        | CommandError::UnknownSection(_)
        | CommandError::UnknownReservation(_) => "invalid",
    }
}

/// A reservation id from the path: 400 naming the parameter when it is not one (poem-openapi's
/// own parse error of a path parameter does not name it).
fn parse_reservation_id(id: &UuidText) -> Result<ReservationId, ApiError> {
    uuid::Uuid::parse_str(&id.0)
        .map(ReservationId)
        .map_err(|_| ApiError::bad_request("reservationId", "not a reservation id (a UUID)"))
}

/// A row or seat number: 1 to 65535 here; the section's own bounds are the domain's to check.
fn seat_number(field: String, value: i64) -> Result<u16, ApiError> {
    u16::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::unprocessable_owned(field, "must be a positive number"))
}
