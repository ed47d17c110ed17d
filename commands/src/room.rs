//! The command side of an event's waiting room: its rules as asked at the event's creation,
//! joining and leaving the line. The room's owner decides (see `seatflow_aggregates::room`);
//! this only validates and hands the commands over.

use seatflow_aggregates::room::{RoomRules, Ticket, TicketId};
use seatflow_aggregates::{Command, Millis, Outcome, Rejection, RoomCommand, RoomRequest};

use crate::{
    BusError, CommandError, CommandService, DECISION_TIMEOUT, Submitted, invalid, now_millis, text,
    unexpected,
};

/// Most admissions a minute a room may be set to.
pub const MAX_ADMIT_PER_MINUTE: i64 = 1_000_000;
/// Most admitted sessions at once a room may be set to.
pub const MAX_ACTIVE: i64 = 1_000_000;
/// Default and bounds of an admission's length.
pub const DEFAULT_SESSION_SECONDS: i64 = 600;
pub const SESSION_SECONDS: std::ops::RangeInclusive<i64> = 30..=86_400;
/// Default and most of how long before the on-sale the room opens.
pub const DEFAULT_OPENS_BEFORE_SECONDS: i64 = 1_800;
pub const MAX_OPENS_BEFORE_SECONDS: i64 = 7 * 86_400;

/// A waiting room as asked at an event's creation: raw numbers, so that a value out of range
/// is named in the error (`waitingRoom.admitPerMinute`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomPolicy {
    pub admit_per_minute: Option<i64>,
    pub max_active: Option<i64>,
    pub session_seconds: Option<i64>,
    pub opens_before_seconds: Option<i64>,
}

impl RoomPolicy {
    /// The room's rules for a sale that opens at `on_sale_at`, or the field at fault.
    pub fn rules(&self, on_sale_at: Millis) -> Result<RoomRules, CommandError> {
        let bounded = |field: &'static str,
                       value: Option<i64>,
                       range: std::ops::RangeInclusive<i64>| {
            value
                .map(|n| {
                    range
                        .contains(&n)
                        .then(|| u32::try_from(n).ok())
                        .flatten()
                        .ok_or_else(|| {
                            invalid(
                                field,
                                format!("must be between {} and {}", range.start(), range.end()),
                            )
                        })
                })
                .transpose()
        };
        let admit_per_minute = bounded(
            "waitingRoom.admitPerMinute",
            self.admit_per_minute,
            1..=MAX_ADMIT_PER_MINUTE,
        )?;
        let max_active = bounded("waitingRoom.maxActive", self.max_active, 1..=MAX_ACTIVE)?;
        let session_seconds = bounded(
            "waitingRoom.sessionSeconds",
            Some(self.session_seconds.unwrap_or(DEFAULT_SESSION_SECONDS)),
            SESSION_SECONDS,
        )?
        .unwrap_or_default();
        let opens_before_seconds = bounded(
            "waitingRoom.opensBeforeSeconds",
            Some(
                self.opens_before_seconds
                    .unwrap_or(DEFAULT_OPENS_BEFORE_SECONDS),
            ),
            0..=MAX_OPENS_BEFORE_SECONDS,
        )?
        .unwrap_or_default();
        Ok(RoomRules {
            on_sale_at,
            admit_per_minute,
            max_active,
            session_seconds,
            opens_before_seconds,
        })
    }
}

impl CommandService {
    /// Set an event's waiting room up (or change its rules before the on-sale).
    pub(crate) async fn open_room(
        &self,
        event_id: &str,
        rules: RoomRules,
    ) -> Result<(), CommandError> {
        let command = Command::Room(RoomCommand::new(
            event_id,
            now_millis(),
            RoomRequest::Open(rules),
        ));
        match self.decide_room(command).await? {
            Outcome::SectionReady => Ok(()),
            _ => Err(unexpected("a waiting room")),
        }
    }

    /// Change the rules of `event_id`'s waiting room (its on-sale time too) before the sale
    /// starts: the rules as they are now. 409 `sale_started` once the line was shuffled. The
    /// caller has checked that the event has a room (a room opened after its sections would
    /// not be asked for by them).
    pub async fn change_room(
        &self,
        event_id: &str,
        on_sale_at: Millis,
        policy: RoomPolicy,
    ) -> Result<RoomRules, CommandError> {
        let rules = policy.rules(on_sale_at)?;
        self.open_room(event_id, rules).await?;
        Ok(rules)
    }

    /// Join the waiting room of `event_id` as `user_id`: the user's ticket (the same one again
    /// for a user who joined before).
    pub async fn join_queue(&self, event_id: &str, user_id: &str) -> Result<Ticket, CommandError> {
        let user_id = text::identifier("userId", user_id)?;
        if !self.directory.event_exists(event_id) {
            return Err(CommandError::UnknownEvent(event_id.to_owned()));
        }
        let command = Command::Room(RoomCommand::new(
            event_id,
            now_millis(),
            RoomRequest::Join {
                ticket: TicketId::now_v7(),
                user_id,
            },
        ));
        match self.decide_room(command).await? {
            Outcome::Ticket(ticket) => Ok(ticket),
            _ => Err(unexpected("a join")),
        }
    }

    /// Leave the waiting room: `user_id`'s ticket as it ends.
    pub async fn leave_queue(
        &self,
        event_id: &str,
        ticket: TicketId,
        user_id: &str,
    ) -> Result<Ticket, CommandError> {
        let user_id = text::identifier("userId", user_id)?;
        let command = Command::Room(RoomCommand::new(
            event_id,
            now_millis(),
            RoomRequest::Leave { ticket, user_id },
        ));
        match self.decide_room(command).await? {
            Outcome::Ticket(ticket) => Ok(ticket),
            _ => Err(unexpected("a leave")),
        }
    }

    async fn decide_room(&self, command: Command) -> Result<Outcome, CommandError> {
        match self.bus.submit(command, DECISION_TIMEOUT).await? {
            Submitted::Decided(Outcome::Refused(rejection)) => Err(match rejection {
                Rejection::UnknownTicket | Rejection::NotOwner => CommandError::UnknownTicket,
                other => CommandError::Refused(other),
            }),
            Submitted::Decided(outcome) => Ok(outcome),
            Submitted::Accepted => Err(BusError::NotDecidedInTime.into()),
        }
    }
}
