//! The HTTP operations, documented with OpenAPI.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use seatflow_aggregates::{Reservation, ReservationId, Seat, SectionKey, Status};
use seatflow_commands::{CommandService, NewSection, ReserveRequest, Waiters};
use seatflow_projections::audit::{AuditRow, AuditStore};
use seatflow_projections::redis::RedisReads;
use seatflow_projections::{EventView, ReadModel, SectionView};
use seatflow_telemetry::metrics;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::body::JsonBody;
use crate::error::ApiError;

/// Longest a request may wait for an outcome (`?wait=`), in milliseconds.
pub const MAX_WAIT_MS: u64 = 30_000;
const MAX_PAGE: u32 = 1_000;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub commands: CommandService,
    pub read: Arc<ReadModel>,
    pub waiters: Arc<Waiters>,
    /// Set once the read models are rebuilt and the workers run.
    pub ready: Arc<AtomicBool>,
    /// The Postgres audit, when configured: a user's history is read there, and a reservation
    /// this process does not hold in memory is looked up there.
    pub audit: Option<AuditStore>,
    /// The Redis read models, when configured: cached event and seat-map answers, outcomes of
    /// reservations decided through other gateways.
    pub redis: Option<RedisReads>,
}

#[derive(Tags)]
enum Tag {
    /// Events and their sections.
    Events,
    /// Reserving and cancelling seats.
    Reservations,
    /// Liveness and readiness.
    Health,
    /// Diagnostics for load tests.
    Diagnostics,
}

// ---- request and response bodies -------------------------------------------------------------

/// One seat, 1-based; row 1 is nearest the stage.
#[derive(Debug, Clone, Copy, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct SeatDto {
    pub row: i64,
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
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSectionDto {
    /// The section's name, unique in the event (1 to 128 characters).
    pub section: String,
    /// Number of rows (1 to 1000).
    pub rows: i64,
    /// Seats in each row (1 to 1000; at most 100,000 seats per section).
    pub seats_per_row: i64,
}

/// An event to create.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEventDto {
    pub name: String,
    pub sections: Vec<NewSectionDto>,
}

/// A section with its current available count.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct SectionDto {
    pub section: String,
    pub rows: u32,
    pub seats_per_row: u32,
    pub available: u32,
}

/// An event and its sections.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct EventDto {
    pub event_id: String,
    pub name: String,
    /// When the event was created (RFC 3339).
    pub created_at: String,
    pub sections: Vec<SectionDto>,
}

/// The seats of a section: `rowsMap[r]` describes row r+1, one character per seat,
/// `o` free and `x` held.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct SeatMapDto {
    pub event_id: String,
    pub section: String,
    pub rows: u32,
    pub seats_per_row: u32,
    pub available: u32,
    pub rows_map: Vec<String>,
}

/// Ask for `seatCount` seats next to each other (best row first) or for exactly `seats`.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveDto {
    pub event_id: String,
    pub section: String,
    pub user_id: String,
    /// How many adjacent seats (1 to the configured maximum, 8 by default).
    pub seat_count: Option<i64>,
    /// The exact seats wanted, all or nothing.
    pub seats: Option<Vec<SeatDto>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusDto {
    Pending,
    Confirmed,
    Rejected,
    Cancelled,
}

impl From<Status> for StatusDto {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => Self::Pending,
            Status::Confirmed => Self::Confirmed,
            Status::Rejected => Self::Rejected,
            Status::Cancelled => Self::Cancelled,
        }
    }
}

/// A reservation and where it stands.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ReservationDto {
    pub reservation_id: String,
    pub event_id: String,
    pub section: String,
    pub user_id: String,
    pub status: StatusDto,
    /// Seats held (CONFIRMED) or given back (CANCELLED).
    pub seats: Vec<SeatDto>,
    /// Why it was rejected, as a code (`sold_out`, `no_adjacent_seats`, `seat_taken`, ...).
    pub reason: Option<String>,
    /// The rejection in words.
    pub reason_message: Option<String>,
    pub requested_at: Option<String>,
    pub decided_at: Option<String>,
    pub cancelled_at: Option<String>,
}

impl From<&Reservation> for ReservationDto {
    fn from(r: &Reservation) -> Self {
        Self {
            reservation_id: r.id.to_string(),
            event_id: r.key.event_id.clone(),
            section: r.key.section.clone(),
            user_id: r.user_id.clone(),
            status: r.status.into(),
            seats: r.seats.iter().map(|s| SeatDto::from(*s)).collect(),
            reason: r.reason.map(|reason| reason.code().to_owned()),
            reason_message: r.reason.map(|reason| reason.to_string()),
            requested_at: Some(rfc3339(r.requested_at)),
            decided_at: (r.status != Status::Pending).then(|| rfc3339(r.decided_at)),
            cancelled_at: r.cancelled_at.map(rfc3339),
        }
    }
}

impl From<&AuditRow> for ReservationDto {
    fn from(row: &AuditRow) -> Self {
        let status = match row.status.as_str() {
            "CONFIRMED" => StatusDto::Confirmed,
            "REJECTED" => StatusDto::Rejected,
            "CANCELLED" => StatusDto::Cancelled,
            _ => StatusDto::Pending,
        };
        let at = rfc3339;
        Self {
            reservation_id: row.id.to_string(),
            event_id: row.event_id.clone(),
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
            requested_at: Some(at(row.requested_at.timestamp_millis())),
            decided_at: Some(at(row.completed_at.timestamp_millis())),
            cancelled_at: row.cancelled_at.map(|t| at(t.timestamp_millis())),
        }
    }
}

impl ReservationDto {
    fn pending(id: ReservationId, request: &ReserveRequest) -> Self {
        Self {
            reservation_id: id.to_string(),
            event_id: request.event_id.clone(),
            section: request.section.clone(),
            user_id: request.user_id.clone(),
            status: StatusDto::Pending,
            seats: Vec::new(),
            reason: None,
            reason_message: None,
            requested_at: None,
            decided_at: None,
            cancelled_at: None,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct HealthDto {
    pub status: String,
}

fn rfc3339(millis: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

fn section_dto(view: &SectionView) -> SectionDto {
    SectionDto {
        section: view.section.clone(),
        rows: u32::from(view.layout.rows),
        seats_per_row: u32::from(view.layout.seats_per_row),
        available: view.state.available(),
    }
}

fn event_dto(view: &EventView) -> EventDto {
    EventDto {
        event_id: view.event_id.clone(),
        name: view.name.clone(),
        created_at: rfc3339(view.created_at),
        sections: view.sections.iter().map(section_dto).collect(),
    }
}

// ---- responses -------------------------------------------------------------------------------

#[derive(Debug, ApiResponse)]
pub enum CreatedEvent {
    /// The event and its sections exist.
    #[oai(status = 201)]
    Created(Json<EventDto>),
}

#[derive(Debug, ApiResponse)]
pub enum ReservationAnswer {
    /// The outcome is decided: CONFIRMED with seats, REJECTED with a reason, or CANCELLED.
    #[oai(status = 200)]
    Decided(Json<ReservationDto>),
    /// Accepted and durable, not yet decided (or `wait` was 0): poll
    /// `GET /api/reservations/{id}?wait=`.
    #[oai(status = 202)]
    Pending(Json<ReservationDto>),
}

#[derive(Debug, ApiResponse)]
pub enum Health {
    #[oai(status = 200)]
    Up(Json<HealthDto>),
    /// Not ready: the read models are still being rebuilt from the log.
    #[oai(status = 503)]
    Starting(Json<HealthDto>),
}

/// How a refused reservation request is counted.
fn refusal(error: &seatflow_commands::CommandError) -> &'static str {
    use seatflow_commands::CommandError;
    match error {
        CommandError::PreFiltered(_) => "prefiltered",
        CommandError::Refused(_) => "rejected",
        CommandError::Unavailable(_) => "error",
        CommandError::Invalid { .. }
        | CommandError::UnknownEvent(_)
        | CommandError::UnknownSection(_)
        | CommandError::UnknownReservation(_) => "invalid",
    }
}

fn wait_duration(wait: Option<u64>) -> Result<Duration, ApiError> {
    match wait {
        None => Ok(Duration::ZERO),
        Some(ms) if ms <= MAX_WAIT_MS => Ok(Duration::from_millis(ms)),
        Some(_) => Err(ApiError::unprocessable(
            "wait",
            format!("must be between 0 and {MAX_WAIT_MS} milliseconds"),
        )),
    }
}

fn page(offset: Option<u32>, limit: Option<u32>) -> Result<(usize, usize), ApiError> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::unprocessable(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok((offset.unwrap_or(0) as usize, limit as usize))
}

fn parse_reservation_id(text: &str) -> Result<ReservationId, ApiError> {
    uuid::Uuid::parse_str(text)
        .map(ReservationId)
        .map_err(|_| ApiError::bad_request("reservationId", "not a reservation id (a UUID)"))
}

fn to_u16(field: String, value: i64) -> Result<u16, ApiError> {
    u16::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::Unprocessable(Json(crate::error::ErrorBody {
            error: "invalid_value".into(),
            message: "must be a positive number".into(),
            field: Some(field),
        }))
    })
}

// ---- operations ------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Api {
    pub state: AppState,
}

#[OpenApi]
impl Api {
    /// Create an event with its sections.
    #[oai(path = "/api/events", method = "post", tag = "Tag::Events")]
    async fn create_event(&self, body: JsonBody<CreateEventDto>) -> Result<CreatedEvent, ApiError> {
        let body = body.0;
        let sections: Vec<NewSection> = body
            .sections
            .iter()
            .map(|s| NewSection {
                section: s.section.clone(),
                rows: u32::try_from(s.rows).unwrap_or(0),
                seats_per_row: u32::try_from(s.seats_per_row).unwrap_or(0),
            })
            .collect();
        let event_id = self
            .state
            .commands
            .create_event(&body.name, &sections)
            .await?;
        // Every section is decided; on Kafka the read model may still be a moment behind.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(view) = self.state.read.event(&event_id)
                && view.sections.len() == sections.len()
            {
                return Ok(CreatedEvent::Created(Json(event_dto(&view))));
            }
            if std::time::Instant::now() > deadline {
                return Err(ApiError::Unavailable(Json(crate::error::ErrorBody {
                    error: "unavailable".into(),
                    message: format!(
                        "event {event_id} was created but is not readable yet; retry GET /api/events/{event_id}"
                    ),
                    field: None,
                })));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// List events, oldest first.
    #[oai(path = "/api/events", method = "get", tag = "Tag::Events")]
    async fn list_events(
        &self,
        offset: Query<Option<u32>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<Vec<EventDto>>, ApiError> {
        let (offset, limit) = page(offset.0, limit.0)?;
        Ok(Json(
            self.state
                .read
                .events(offset, limit)
                .iter()
                .map(event_dto)
                .collect(),
        ))
    }

    /// One event with each section's available count (cached 10 s in Redis when configured;
    /// the cache is dropped as soon as a section's count changes).
    #[oai(path = "/api/events/:event_id", method = "get", tag = "Tag::Events")]
    async fn get_event(&self, event_id: Path<String>) -> Result<Json<EventDto>, ApiError> {
        if let Some(cached) = self
            .cached(async |redis| redis.cached_event(&event_id.0).await)
            .await
        {
            return Ok(Json(cached));
        }
        let view = self.state.read.event(&event_id.0).ok_or_else(|| {
            ApiError::not_found("unknown_event", "no such event", Some("eventId"))
        })?;
        let answer = event_dto(&view);
        self.cache(&answer, async |redis, json| {
            redis.cache_event(&event_id.0, json).await
        })
        .await;
        Ok(Json(answer))
    }

    /// The seat map of a section.
    #[oai(
        path = "/api/events/:event_id/sections/:section/seats",
        method = "get",
        tag = "Tag::Events"
    )]
    async fn seat_map(
        &self,
        event_id: Path<String>,
        section: Path<String>,
    ) -> Result<Json<SeatMapDto>, ApiError> {
        let key = SectionKey::new(event_id.0, section.0);
        if let Some(cached) = self
            .cached(async |redis| redis.cached_seats(&key).await)
            .await
        {
            return Ok(Json(cached));
        }
        if !self.state.read.has_event(&key.event_id) {
            return Err(ApiError::not_found(
                "unknown_event",
                "no such event",
                Some("eventId"),
            ));
        }
        let view = self.state.read.section(&key).ok_or_else(|| {
            ApiError::not_found("unknown_section", "no such section", Some("section"))
        })?;
        let layout = view.layout;
        let rows_map = (1..=layout.rows)
            .map(|row| {
                (1..=layout.seats_per_row)
                    .map(|seat| {
                        if view.state.is_held(Seat::new(row, seat)) {
                            'x'
                        } else {
                            'o'
                        }
                    })
                    .collect()
            })
            .collect();
        let answer = SeatMapDto {
            event_id: key.event_id.clone(),
            section: key.section.clone(),
            rows: u32::from(layout.rows),
            seats_per_row: u32::from(layout.seats_per_row),
            available: view.state.available(),
            rows_map,
        };
        self.cache(&answer, async |redis, json| {
            redis.cache_seats(&key, json).await
        })
        .await;
        Ok(Json(answer))
    }

    /// Reserve seats. Answers 202 once the request is durable, or, with `wait` > 0, 200 with the
    /// outcome as soon as it is decided (202 if the wait ends first). A request the section
    /// cannot satisfy by its current count is refused at once with 409. A retry by the same user
    /// for the same event and section within the hour returns the first reservation while it
    /// holds seats; a request repeating an `Idempotency-Key` returns the reservation that key
    /// made, whatever its status.
    #[oai(path = "/api/reservations", method = "post", tag = "Tag::Reservations")]
    async fn reserve(
        &self,
        body: JsonBody<ReserveDto>,
        /// Milliseconds to wait for the outcome (0 to 30000, default 0).
        wait: Query<Option<u64>>,
        /// A key of the client's choosing (1 to 128 characters) that makes retries of this
        /// request safe for an hour.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
    ) -> Result<ReservationAnswer, ApiError> {
        let wait = wait_duration(wait.0)?;
        let body = body.0;
        let seats = match body.seats {
            None => None,
            Some(seats) => Some(
                seats
                    .iter()
                    .enumerate()
                    .map(|(i, seat)| {
                        Ok(Seat::new(
                            to_u16(format!("seats[{i}].row"), seat.row)?,
                            to_u16(format!("seats[{i}].seat"), seat.seat)?,
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
        let request = ReserveRequest {
            event_id: body.event_id,
            section: body.section,
            user_id: body.user_id,
            seat_count,
            seats,
            idempotency_key: idempotency_key.0,
        };
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
            Some(outcome) => Some(outcome),
            None if !wait.is_zero() => self.await_decision(accepted.reservation_id, wait).await,
            None => None,
        };
        Ok(match outcome {
            Some(reservation) if !wait.is_zero() && reservation.status != Status::Pending => {
                metrics().reservation(if accepted.deduplicated {
                    "deduplicated"
                } else {
                    match reservation.status {
                        Status::Confirmed => "confirmed",
                        Status::Cancelled => "cancelled",
                        _ => "rejected",
                    }
                });
                ReservationAnswer::Decided(Json(ReservationDto::from(&reservation)))
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
        path = "/api/reservations/:reservation_id",
        method = "get",
        tag = "Tag::Reservations"
    )]
    async fn get_reservation(
        &self,
        reservation_id: Path<String>,
        /// Milliseconds to wait for an undecided reservation (0 to 30000, default 0).
        wait: Query<Option<u64>>,
    ) -> Result<ReservationAnswer, ApiError> {
        let wait = wait_duration(wait.0)?;
        let id = parse_reservation_id(&reservation_id.0)?;
        let found = match self.state.read.reservation(id) {
            Some(reservation) => Some(reservation),
            None => {
                // Not in memory: Redis holds the outcomes every gateway saw decided, the audit
                // every outcome ever decided.
                // (A Redis failure is counted and warned about by its breaker.)
                if let Some(redis) = &self.state.redis
                    && let Ok(Some(row)) = redis.outcome(id.0).await
                {
                    return Ok(ReservationAnswer::Decided(Json(ReservationDto::from(&row))));
                }
                if let Some(audit) = &self.state.audit {
                    match audit.find(id.0).await {
                        Ok(Some(row)) => {
                            return Ok(ReservationAnswer::Decided(Json(ReservationDto::from(
                                &row,
                            ))));
                        }
                        Ok(None) => {}
                        Err(e) => warn!(error = %e, "audit unavailable for a reservation lookup"),
                    }
                }
                if wait.is_zero() {
                    None
                } else {
                    self.await_decision(id, wait).await
                }
            }
        };
        match found {
            Some(r) if r.status == Status::Pending => {
                Ok(ReservationAnswer::Pending(Json(ReservationDto::from(&r))))
            }
            Some(r) => Ok(ReservationAnswer::Decided(Json(ReservationDto::from(&r)))),
            None => Err(ApiError::not_found(
                "unknown_reservation",
                "no such reservation",
                Some("reservationId"),
            )),
        }
    }

    /// Cancel a confirmed reservation; only its user may (`X-User-Id`). The seats are free again
    /// at once. Cancelling a cancelled reservation answers it again.
    #[oai(
        path = "/api/reservations/:reservation_id",
        method = "delete",
        tag = "Tag::Reservations"
    )]
    async fn cancel_reservation(
        &self,
        reservation_id: Path<String>,
        /// The user cancelling (must be the reservation's user).
        #[oai(name = "X-User-Id")]
        user_id: Header<String>,
    ) -> Result<Json<ReservationDto>, ApiError> {
        let id = parse_reservation_id(&reservation_id.0)?;
        let cancelled = self.state.commands.cancel(id, &user_id.0).await?;
        Ok(Json(ReservationDto::from(&cancelled)))
    }

    /// A user's reservations, newest first.
    #[oai(
        path = "/api/users/:user_id/reservations",
        method = "get",
        tag = "Tag::Reservations"
    )]
    async fn user_reservations(
        &self,
        user_id: Path<String>,
        offset: Query<Option<u32>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<Vec<ReservationDto>>, ApiError> {
        let (offset, limit) = page(offset.0, limit.0)?;
        if let Some(audit) = &self.state.audit {
            match audit.user_history(&user_id.0, offset, limit).await {
                Ok(rows) => return Ok(Json(rows.iter().map(ReservationDto::from).collect())),
                // The sale does not depend on the audit: answer from memory meanwhile.
                Err(e) => warn!(error = %e, "audit unavailable; history answered from memory"),
            }
        }
        Ok(Json(
            self.state
                .read
                .user_reservations(&user_id.0, offset, limit)
                .iter()
                .map(ReservationDto::from)
                .collect(),
        ))
    }

    /// Liveness: the process answers.
    #[oai(path = "/health/live", method = "get", tag = "Tag::Health")]
    async fn live(&self) -> Json<HealthDto> {
        Json(HealthDto {
            status: "up".into(),
        })
    }

    /// Readiness: 503 until the read models and status cache are rebuilt from the log.
    #[oai(path = "/health/ready", method = "get", tag = "Tag::Health")]
    async fn ready(&self) -> Health {
        if self.state.ready.load(Ordering::Acquire) {
            Health::Up(Json(HealthDto {
                status: "ready".into(),
            }))
        } else {
            Health::Starting(Json(HealthDto {
                status: "starting".into(),
            }))
        }
    }

    /// The load generator's baseline: parses a reservation request and answers it as PENDING,
    /// touching no state. Shows the HTTP ceiling of the machine beside the real figure.
    #[oai(path = "/bench/echo", method = "post", tag = "Tag::Diagnostics")]
    async fn echo(&self, body: JsonBody<ReserveDto>) -> Json<ReservationDto> {
        let body = body.0;
        let request = ReserveRequest {
            event_id: body.event_id,
            section: body.section,
            user_id: body.user_id,
            seat_count: None,
            seats: None,
            idempotency_key: None,
        };
        Json(ReservationDto::pending(ReservationId::new_v7(), &request))
    }
}

impl Api {
    /// A cached answer from Redis, if configured, reachable and holding one.
    async fn cached<T, F>(&self, read: F) -> Option<T>
    where
        T: serde::de::DeserializeOwned,
        F: AsyncFnOnce(
            &RedisReads,
        ) -> Result<Option<String>, seatflow_projections::redis::RedisError>,
    {
        let redis = self.state.redis.as_ref()?;
        let found = read(redis)
            .await
            .ok()
            .flatten()
            .and_then(|json| serde_json::from_str(&json).ok());
        metrics().read_cache(found.is_some());
        found
    }

    /// Put an answer in the Redis cache, if configured (a failure only costs the next reader
    /// the work of building it again).
    async fn cache<T, F>(&self, answer: &T, write: F)
    where
        T: Serialize,
        F: AsyncFnOnce(&RedisReads, &str) -> Result<(), seatflow_projections::redis::RedisError>,
    {
        if let Some(redis) = &self.state.redis
            && let Ok(json) = serde_json::to_string(answer)
        {
            let _ = write(redis, &json).await;
        }
    }

    /// Park until the reservation is decided or the wait ends (no thread is held).
    async fn await_decision(&self, id: ReservationId, wait: Duration) -> Option<Reservation> {
        let read = self.state.read.clone();
        self.state
            .waiters
            .wait_for(id, wait, || {
                read.reservation(id).filter(|r| r.status != Status::Pending)
            })
            .await
            .or_else(|| self.state.read.reservation(id))
    }
}
