//! Events and their sections: create, list, read one, the seat map.

use std::time::Duration;

use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use seatflow_aggregates::{Seat, SectionKey};
use seatflow_commands::{CommandError, EventKey, NewEvent, NewSection, RoomPolicy, SalePolicy};
use seatflow_projections::EventView;

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

impl EventsApi {
    /// The creation a body asks for, validated (the field at fault named).
    fn planned(&self, body: CreateEventDto) -> Result<NewEvent, ApiError> {
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
        let policy = SalePolicy {
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
        };
        Ok(self
            .state
            .commands
            .plan_event(&body.name, &sections, policy)?)
    }
}

/// The answer to a creation under an `Idempotency-Key` whose event exists: that event if it is
/// the one asked for, else 422 naming the key. A waiting room's rules are not compared: the
/// organizer may change them after the creation.
fn same_event(asked: &NewEvent, made: EventView) -> Result<CreatedEvent, ApiError> {
    let sections_match = made.sections.len() == asked.sections.len()
        && made
            .sections
            .iter()
            .zip(&asked.sections)
            .all(|(made, (name, layout))| made.section == *name && made.layout == *layout);
    if made.name == asked.name
        && made.rules == asked.rules
        && made.room.is_some() == asked.room.is_some()
        && sections_match
    {
        Ok(CreatedEvent::Created(Json(EventDto::from(&made))))
    } else {
        Err(seatflow_commands::key_used_for(&made.event_id).into())
    }
}

#[OpenApi(tag = "Tag::Events")]
impl EventsApi {
    /// Create an event with its sections (the `organizer` role). With an `Idempotency-Key`
    /// the creation may be repeated safely: the same organizer and key answer with the event
    /// the first creation made (201 again), not a second one; the same key with other settings
    /// answers 422 naming `Idempotency-Key`.
    #[oai(path = "/api/events", method = "post", operation_id = "createEvent")]
    async fn create_event(
        &self,
        caller: Data<&Caller>,
        address: Data<&ClientAddress>,
        body: JsonBody<CreateEventDto>,
        /// A key of the organizer's choosing: a creation repeated with it (after a timeout, a
        /// 503, a lost answer) reaches the same event.
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 128))]
        idempotency_key: Header<Option<String>>,
    ) -> Result<CreatedEvent, ApiError> {
        caller.require(Role::Organizer, "creating an event")?;
        let event = self.planned(body.0)?;
        // Without authentication (`auth.mode = none`) every organizer shares one set of keys.
        let key = idempotency_key.0.as_deref().map(|key| EventKey {
            organizer: caller.user().unwrap_or_default(),
            key,
        });
        // A repeat this gateway already knows of is answered from what it knows.
        if let Some(key) = &key
            && let Some(view) = self.state.read.event(&key.event_id())
        {
            return same_event(&event, view);
        }
        if let Some(wait) = self
            .state
            .limiter
            .check_new_event(caller.user(), address.0.0)
        {
            return Err(ApiError::too_many_events(wait));
        }
        let event_id = match self.state.commands.create_event(&event, key.as_ref()).await {
            Ok(event_id) => event_id,
            // Its sections may still be made (the commands are durable): a retry with the same
            // key reaches them, one without makes another event.
            Err(CommandError::Unavailable(e)) => {
                return Err(ApiError::unavailable(format!(
                    "{e}; the event may still be created: retry with the same Idempotency-Key \
                     to reach it instead of making another"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        match self
            .state
            .read
            .event_with_sections(&event_id, event.sections.len(), READABLE_WITHIN)
            .await
        {
            Some(view) if key.is_some() => same_event(&event, view),
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
