//! An event's waiting room: join, see where a ticket stands, leave. The room's owner decides
//! (the partition its event falls on); any gateway answers a ticket from its replica of the
//! room, and signs the admission token of an admitted one.

use poem::web::Data;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, OpenApi};
use seatflow_aggregates::room::{SessionEnd, Ticket, TicketId, TicketStatus};
use seatflow_commands::RoomPolicy;
use seatflow_projections::TicketView;
use tokio::sync::watch;

use super::model::{
    JoinQueueDto, SessionEndDto, TicketDto, TicketStatusDto, Timestamp, UuidText,
    WaitingRoomChangeDto, WaitingRoomSettingsDto,
};
use super::{AppState, Tag, now_millis};
use crate::auth::{Caller, Role, USER_HEADER};
use crate::body::{JsonBody, OptionalJsonBody};
use crate::error::ApiError;

#[derive(Debug, ApiResponse)]
pub enum Joined {
    /// The user's ticket: new, or the one they already had (one per user and event).
    #[oai(status = 201)]
    Ticket(Json<TicketDto>),
}

#[derive(Debug)]
pub struct QueueApi {
    pub state: AppState,
}

#[OpenApi(tag = "Tag::Queue")]
impl QueueApi {
    /// Join an event's waiting room. Those who join before `onSaleAt` get a random place at
    /// the on-sale (being early gains nothing); later ones go to the back. 409
    /// `queue_not_open` before `onSaleAt - opensBeforeSeconds`.
    #[oai(
        path = "/api/events/:eventId/queue",
        method = "post",
        operation_id = "joinQueue"
    )]
    async fn join(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "eventId")] event_id: Path<UuidText>,
        body: OptionalJsonBody<JoinQueueDto>,
        /// Without authentication: the user joining (or `userId` in the body).
        #[oai(name = "X-User-Id", validator(min_length = 1, max_length = 128))]
        user_header: Header<Option<String>>,
    ) -> Result<Joined, ApiError> {
        let (named, field) = match (body.0.user_id, user_header.0) {
            (Some(named), _) => (Some(named), "userId"),
            (None, header) => (header, USER_HEADER),
        };
        let user = caller.acting_as(named, field)?;
        let event_id = event_id.0.0;
        let ticket = self.state.commands.join_queue(&event_id, &user).await?;
        Ok(Joined::Ticket(Json(self.answer(&event_id, ticket))))
    }

    /// Where a ticket stands: its place, the buyers still ahead, the estimated wait, and once
    /// ADMITTED the token a reservation needs.
    #[oai(
        path = "/api/events/:eventId/queue/:ticketId",
        method = "get",
        operation_id = "getQueueTicket"
    )]
    async fn get(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "eventId")] event_id: Path<UuidText>,
        #[oai(name = "ticketId")] ticket_id: Path<UuidText>,
    ) -> Result<Json<TicketDto>, ApiError> {
        let ticket = parse_ticket_id(&ticket_id.0)?;
        let event_id = event_id.0.0;
        let view = self
            .state
            .read
            .ticket(&event_id, ticket, now_millis())
            // Someone else's ticket is not revealed to exist.
            .filter(|view| caller.may_act_for(&view.ticket.user))
            .ok_or_else(unknown_ticket)?;
        Ok(Json(self.dto(&event_id, &view)))
    }

    /// The ticket as Server-Sent Events: its state at once, then again whenever it changes
    /// (at most once a second), a keep-alive comment every 15 s; the stream ends once the
    /// ticket's session has ended.
    #[oai(
        path = "/api/events/:eventId/queue/:ticketId/stream",
        method = "get",
        operation_id = "streamQueueTicket"
    )]
    async fn stream(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "eventId")] event_id: Path<UuidText>,
        #[oai(name = "ticketId")] ticket_id: Path<UuidText>,
    ) -> Result<EventStream<BoxStream<'static, TicketDto>>, ApiError> {
        let ticket = parse_ticket_id(&ticket_id.0)?;
        let event_id = event_id.0.0;
        let read = self.state.read.clone();
        read.ticket(&event_id, ticket, now_millis())
            .filter(|view| caller.may_act_for(&view.ticket.user))
            .ok_or_else(unknown_ticket)?;
        let changes = read.watch_room(&event_id).ok_or_else(unknown_ticket)?;
        let api = QueueApi {
            state: self.state.clone(),
        };
        let follow = TicketFollow {
            api,
            event_id,
            ticket,
            changes,
            last: None,
            done: false,
        };
        let stream = futures_util::stream::unfold(follow, TicketFollow::next).boxed();
        Ok(EventStream::new(stream).keep_alive(KEEP_ALIVE))
    }

    /// Change an event's waiting room before its sale starts (the `organizer` role): its
    /// on-sale time and its rules, as at creation. 409 `sale_started` once the line was
    /// shuffled; 404 `no_waiting_room` for an event without one.
    #[oai(
        path = "/api/events/:eventId/waiting-room",
        method = "put",
        operation_id = "changeWaitingRoom"
    )]
    async fn change(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "eventId")] event_id: Path<UuidText>,
        body: JsonBody<WaitingRoomChangeDto>,
    ) -> Result<Json<WaitingRoomSettingsDto>, ApiError> {
        caller.require(Role::Organizer, "changing a waiting room")?;
        let event_id = event_id.0.0;
        match self.state.read.event_rules(&event_id) {
            None => return Err(ApiError::unknown_event()),
            Some(rules) if !rules.waiting_room => {
                return Err(ApiError::not_found(
                    "no_waiting_room",
                    "the event has no waiting room",
                    Some("eventId"),
                ));
            }
            Some(_) => {}
        }
        let body = body.0;
        let on_sale_at = body.on_sale_at.to_millis().ok_or_else(|| {
            ApiError::bad_request("onSaleAt", "not an RFC 3339 date-time after 1970")
        })?;
        let room = body.waiting_room;
        let rules = self
            .state
            .commands
            .change_room(
                &event_id,
                on_sale_at,
                RoomPolicy {
                    admit_per_minute: room.admit_per_minute,
                    max_active: room.max_active,
                    session_seconds: room.session_seconds,
                    opens_before_seconds: room.opens_before_seconds,
                },
            )
            .await?;
        Ok(Json(WaitingRoomSettingsDto {
            event_id: UuidText(event_id),
            on_sale_at: Timestamp::from_millis(rules.on_sale_at),
            waiting_room: rules.into(),
        }))
    }

    /// Leave the waiting room: a waiting ticket leaves the line, an admitted one frees its
    /// place for the next buyer.
    #[oai(
        path = "/api/events/:eventId/queue/:ticketId",
        method = "delete",
        operation_id = "leaveQueue"
    )]
    async fn leave(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "eventId")] event_id: Path<UuidText>,
        #[oai(name = "ticketId")] ticket_id: Path<UuidText>,
        /// Without authentication: the ticket's user (the room's owner checks it).
        #[oai(name = "X-User-Id", validator(min_length = 1, max_length = 128))]
        user_header: Header<Option<String>>,
    ) -> Result<Json<TicketDto>, ApiError> {
        let ticket = parse_ticket_id(&ticket_id.0)?;
        let event_id = event_id.0.0;
        let user = match &*caller {
            Caller::Anyone => caller.acting_as(user_header.0, USER_HEADER)?,
            // An admin leaves a ticket in its user's name; a user leaves their own.
            Caller::User { id, .. } => {
                match self.state.read.ticket(&event_id, ticket, now_millis()) {
                    Some(view) if caller.may_act_for(&view.ticket.user) => view.ticket.user,
                    Some(_) => return Err(unknown_ticket()),
                    None => id.clone(),
                }
            }
        };
        let left = self
            .state
            .commands
            .leave_queue(&event_id, ticket, &user)
            .await?;
        Ok(Json(self.answer(&event_id, left)))
    }
}

impl QueueApi {
    /// The ticket a decision answered with, as the replica has it now (the embedded replica
    /// has the decision before the caller is answered; on Kafka it may be a moment behind, and
    /// the decided ticket is answered then).
    fn answer(&self, event_id: &str, decided: Ticket) -> TicketDto {
        let now = now_millis();
        match self.state.read.ticket(event_id, decided.id, now) {
            Some(view) if view.ticket.status == decided.status => self.dto(event_id, &view),
            _ => {
                let on_sale_at = self
                    .state
                    .read
                    .room_rules(event_id)
                    .map(|rules| rules.on_sale_at);
                self.ticket_dto(event_id, &decided, None, None, on_sale_at)
            }
        }
    }

    fn dto(&self, event_id: &str, view: &TicketView) -> TicketDto {
        self.ticket_dto(
            event_id,
            &view.ticket,
            view.ahead,
            view.estimated_wait_seconds,
            Some(view.rules.on_sale_at),
        )
    }

    fn ticket_dto(
        &self,
        event_id: &str,
        ticket: &Ticket,
        ahead: Option<u32>,
        estimated_wait_seconds: Option<u64>,
        on_sale_at: Option<i64>,
    ) -> TicketDto {
        let (status, admitted_until, ended_because) = match ticket.status {
            TicketStatus::Waiting => (TicketStatusDto::Waiting, None, None),
            TicketStatus::Admitted { until, .. } => (TicketStatusDto::Admitted, Some(until), None),
            TicketStatus::Ended { why, .. } => (
                TicketStatusDto::Ended,
                None,
                Some(match why {
                    SessionEnd::Confirmed => SessionEndDto::Confirmed,
                    SessionEnd::Expired => SessionEndDto::Expired,
                    SessionEnd::Left => SessionEndDto::Left,
                }),
            ),
        };
        let admission_token = admitted_until.map(|until| {
            self.state.admission.issue(
                &ticket.user,
                event_id,
                &ticket.id.to_string(),
                u64::try_from(until / 1_000).unwrap_or(0),
            )
        });
        TicketDto {
            ticket_id: UuidText(ticket.id.to_string()),
            event_id: UuidText(event_id.to_owned()),
            user_id: ticket.user.clone(),
            status,
            position: ticket.position,
            people_ahead: ahead,
            estimated_wait_seconds: estimated_wait_seconds.unwrap_or(0),
            joined_at: Timestamp::from_millis(ticket.joined_at),
            on_sale_at: on_sale_at.map(Timestamp::from_millis),
            admission_token,
            admitted_until: admitted_until.map(Timestamp::from_millis),
            ended_because,
        }
    }
}

/// How often an idle stream says it is alive (a comment line).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The least time between two messages of a ticket's stream: a line that moves with every
/// admission is sent as it stands, once a second at most.
const TICKET_COALESCE: Duration = Duration::from_secs(1);

/// One subscriber of a ticket: what it sent last, woken by its room's changes. It holds no
/// queue: a slow reader only delays its own next look at the room.
struct TicketFollow {
    api: QueueApi,
    event_id: String,
    ticket: TicketId,
    changes: watch::Receiver<u64>,
    /// What was sent last (with its token left out: the same state is not sent again).
    last: Option<(TicketStatusDto, Option<u32>, Option<u32>)>,
    done: bool,
}

impl TicketFollow {
    async fn next(mut self) -> Option<(TicketDto, Self)> {
        if self.done {
            return None;
        }
        loop {
            if self.last.is_some() {
                self.changes.changed().await.ok()?;
                tokio::time::sleep(TICKET_COALESCE).await;
            }
            self.changes.borrow_and_update();
            let view = self
                .api
                .state
                .read
                .ticket(&self.event_id, self.ticket, now_millis())?;
            let dto = self.api.dto(&self.event_id, &view);
            let seen = (dto.status, dto.position, dto.people_ahead);
            if self.last.as_ref() != Some(&seen) {
                self.done = dto.status == TicketStatusDto::Ended;
                self.last = Some(seen);
                return Some((dto, self));
            }
        }
    }
}

fn unknown_ticket() -> ApiError {
    ApiError::not_found("unknown_ticket", "no such ticket", Some("ticketId"))
}

/// A ticket id from the path: 400 naming the parameter when it is not one.
fn parse_ticket_id(id: &UuidText) -> Result<TicketId, ApiError> {
    uuid::Uuid::parse_str(&id.0)
        .map_err(|_| ApiError::bad_request("ticketId", "not a ticket id (a UUID)"))
}
