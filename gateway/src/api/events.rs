//! Events and their sections: create, list, read one, the seat map.

use std::time::Duration;

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use seatflow_aggregates::{Seat, SectionKey};
use seatflow_commands::{NewSection, RoomPolicy, SalePolicy};

use super::model::{CreateEventDto, EventDto, SeatMapDto, UuidText};
use super::{AppState, Tag, default_limit};
use crate::auth::{Caller, Role};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::guard::ClientAddress;

/// How long creating an event waits for the read model to show it (on Kafka it may be a moment
/// behind the decision).
const READABLE_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, ApiResponse)]
pub enum CreatedEvent {
    /// The event and its sections exist.
    #[oai(status = 201)]
    Created(Json<EventDto>),
}

#[derive(Debug)]
pub struct EventsApi {
    pub state: AppState,
}

#[OpenApi(tag = "Tag::Events")]
impl EventsApi {
    /// Create an event with its sections (the `organizer` role).
    #[oai(path = "/api/events", method = "post", operation_id = "createEvent")]
    async fn create_event(
        &self,
        caller: Data<&Caller>,
        address: Data<&ClientAddress>,
        body: JsonBody<CreateEventDto>,
    ) -> Result<CreatedEvent, ApiError> {
        caller.require(Role::Organizer, "creating an event")?;
        if let Some(wait) = self
            .state
            .limiter
            .check_new_event(caller.user(), address.0.0)
        {
            return Err(ApiError::too_many_events(wait));
        }
        let body = body.0;
        let on_sale_at = body
            .on_sale_at
            .as_ref()
            .map(|at| {
                at.to_millis().ok_or_else(|| {
                    ApiError::bad_request("onSaleAt", "not an RFC 3339 date-time after 1970")
                })
            })
            .transpose()?;
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
            .create_event(
                &body.name,
                &sections,
                SalePolicy {
                    hold_seconds: body.hold_seconds,
                    max_seats_per_user: body.max_seats_per_user,
                    avoid_single_seats: body.avoid_single_seats,
                    on_sale_at,
                    waiting_room: body.waiting_room.map(|room| RoomPolicy {
                        admit_per_minute: room.admit_per_minute,
                        max_active: room.max_active,
                        session_seconds: room.session_seconds,
                        opens_before_seconds: room.opens_before_seconds,
                    }),
                },
            )
            .await?;
        match self
            .state
            .read
            .event_with_sections(&event_id, sections.len(), READABLE_WITHIN)
            .await
        {
            Some(view) => Ok(CreatedEvent::Created(Json(EventDto::from(&view)))),
            None => Err(ApiError::unavailable(format!(
                "event {event_id} was created but is not readable yet; retry GET /api/events/{event_id}"
            ))),
        }
    }

    /// List events, oldest first.
    #[oai(path = "/api/events", method = "get", operation_id = "listEvents")]
    async fn list_events(
        &self,
        /// How many events to skip.
        #[oai(default)]
        offset: Query<u32>,
        /// How many events to answer at most.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
    ) -> Result<Json<Vec<EventDto>>, ApiError> {
        let events = self.state.read.events(offset.0 as usize, limit.0 as usize);
        Ok(Json(events.iter().map(EventDto::from).collect()))
    }

    /// One event with each section's available count (cached 10 s in Redis when configured;
    /// the cache is dropped as soon as a section's count changes).
    #[oai(
        path = "/api/events/:eventId",
        method = "get",
        operation_id = "getEvent"
    )]
    async fn get_event(
        &self,
        #[oai(name = "eventId")] event_id: Path<UuidText>,
    ) -> Result<Json<EventDto>, ApiError> {
        let event_id = event_id.0.0;
        if let Some(cached) = self
            .state
            .cached(async |redis| redis.cached_event(&event_id).await)
            .await
        {
            return Ok(Json(cached));
        }
        let view = self
            .state
            .read
            .event(&event_id)
            .ok_or_else(ApiError::unknown_event)?;
        let answer = EventDto::from(&view);
        self.state
            .cache(&answer, async |redis, json| {
                redis.cache_event(&event_id, json).await
            })
            .await;
        Ok(Json(answer))
    }

    /// The seat map of a section.
    #[oai(
        path = "/api/events/:eventId/sections/:section/seats",
        method = "get",
        operation_id = "getSeatMap"
    )]
    async fn seat_map(
        &self,
        #[oai(name = "eventId")] event_id: Path<UuidText>,
        section: Path<String>,
    ) -> Result<Json<SeatMapDto>, ApiError> {
        let key = SectionKey::new(event_id.0.0, section.0);
        if let Some(cached) = self
            .state
            .cached(async |redis| redis.cached_seats(&key).await)
            .await
        {
            return Ok(Json(cached));
        }
        if !self.state.read.has_event(&key.event_id) {
            return Err(ApiError::unknown_event());
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
            event_id: UuidText(key.event_id.clone()),
            section: key.section.clone(),
            rows: u32::from(layout.rows),
            seats_per_row: u32::from(layout.seats_per_row),
            available: view.state.available(),
            rows_map,
        };
        self.state
            .cache(&answer, async |redis, json| {
                redis.cache_seats(&key, json).await
            })
            .await;
        Ok(Json(answer))
    }
}
