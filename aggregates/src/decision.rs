//! The partition-level decision: a command against its section and the reservation's prior
//! outcome, with the rule that one reservation id is decided once.

use crate::model::{
    Command, Completed, Event, Millis, Rejection, Reservation, SectionInitialized, Status,
};
use crate::section::SectionState;

/// What a seat worker does with one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// New facts to record, in order. Empty for a repeated, identical section initialisation.
    Append(Vec<Event>),
    /// The reservation id was decided before: answer with that outcome, record nothing.
    AlreadyDecided(Reservation),
    /// Refused with nothing to record: no reservation came into being (cancel of an unknown
    /// reservation, cancel by another user, a conflicting section initialisation).
    Refused(Rejection),
}

/// Decide one command.
///
/// `section` is the current state of the command's section (None if it was never initialised),
/// `prior` the stored outcome of the command's reservation id (None if never decided), `now` the
/// decision time the runner stamps on the outcome.
pub fn decide(
    section: Option<&SectionState>,
    prior: Option<&Reservation>,
    command: &Command,
    now: Millis,
) -> Decision {
    match command {
        Command::InitSection(init) => match section {
            None => Decision::Append(vec![Event::SectionInitialized(SectionInitialized {
                key: init.key.clone(),
                event_name: init.event_name.clone(),
                position: init.position,
                layout: init.layout,
                at: now,
            })]),
            Some(existing) if existing.layout() == init.layout => Decision::Append(Vec::new()),
            Some(_) => Decision::Refused(Rejection::SectionExists),
        },
        Command::Reserve(reserve) => {
            if let Some(prior) = prior {
                return Decision::AlreadyDecided(prior.clone());
            }
            let mut reservation = Reservation {
                id: reserve.reservation_id,
                key: reserve.key.clone(),
                user_id: reserve.user_id.clone(),
                status: Status::Rejected,
                requested_seats: reserve.request.seat_count(),
                seats: Vec::new(),
                reason: None,
                requested_at: reserve.requested_at,
                decided_at: now,
                cancelled_at: None,
            };
            let available = match section {
                None => {
                    reservation.reason = Some(Rejection::UnknownSection);
                    0
                }
                Some(state) => match state.allocate(&reserve.request) {
                    Ok(seats) => {
                        reservation.status = Status::Confirmed;
                        let held = seats.len() as u32;
                        reservation.seats = seats;
                        state.available() - held
                    }
                    Err(rejection) => {
                        reservation.reason = Some(rejection);
                        state.available()
                    }
                },
            };
            Decision::Append(vec![Event::ReservationCompleted(Completed {
                reservation,
                available,
            })])
        }
        Command::Cancel(cancel) => {
            let Some(prior) = prior.filter(|p| p.key == cancel.key) else {
                return Decision::Refused(Rejection::UnknownReservation);
            };
            if prior.user_id != cancel.user_id {
                return Decision::Refused(Rejection::NotOwner);
            }
            match prior.status {
                Status::Cancelled => Decision::AlreadyDecided(prior.clone()),
                Status::Rejected | Status::Pending => {
                    Decision::Refused(Rejection::NotCancellable {
                        status: prior.status,
                    })
                }
                Status::Confirmed => {
                    let Some(state) = section else {
                        return Decision::Refused(Rejection::UnknownSection);
                    };
                    let mut reservation = prior.clone();
                    reservation.status = Status::Cancelled;
                    reservation.cancelled_at = Some(now);
                    let available = state.available() + reservation.seats.len() as u32;
                    Decision::Append(vec![Event::ReservationCompleted(Completed {
                        reservation,
                        available,
                    })])
                }
            }
        }
    }
}

/// Fold one event into the optional state of its section (used by runners and replays).
pub fn evolve(section: &mut Option<SectionState>, event: &Event) {
    match event {
        Event::SectionInitialized(init) => {
            if section.is_none() {
                *section = Some(SectionState::new(init.layout));
            }
        }
        Event::ReservationCompleted(_) => {
            if let Some(state) = section {
                state.apply(event);
            }
        }
    }
}
