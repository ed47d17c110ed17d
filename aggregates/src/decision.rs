//! The partition-level decision: a command against its section and the reservation's prior
//! outcome, with the rule that one reservation id is decided once.

use crate::model::{
    Checkout, ClaimQuota, Command, Completed, Event, Millis, QuotaVerdict, Rejection, Reservation,
    Reserve, SeatRequest, SectionInitialized, Status,
};
use crate::section::SectionState;

/// What a seat worker does with one command.
// The reservation is the common answer; boxing it would cost an allocation per decision.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// New facts to record, in order. Empty for a repeated, identical section initialisation.
    Append(Vec<Event>),
    /// The reservation id was decided before: answer with that outcome, record nothing.
    AlreadyDecided(Reservation),
    /// Refused with nothing to record: no reservation came into being (cancel of an unknown
    /// reservation, cancel by another user, a conflicting section initialisation).
    Refused(Rejection),
    /// Not this owner's to decide yet: hand this command on (a reservation in an event with a
    /// per-user limit that did not pass its user's quota goes there first).
    Forward(Command),
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
                rules: init.rules,
                at: now,
            })]),
            Some(existing)
                if existing.layout() == init.layout && existing.rules() == init.rules =>
            {
                Decision::Append(Vec::new())
            }
            Some(_) => Decision::Refused(Rejection::SectionExists),
        },
        Command::Reserve(reserve) => {
            if let Some(prior) = prior {
                return Decision::AlreadyDecided(prior.clone());
            }
            let limit = section.and_then(|state| state.rules().max_seats_per_user);
            if let (Some(limit), QuotaVerdict::Unchecked) = (limit, reserve.quota) {
                return Decision::Forward(Command::ClaimQuota(ClaimQuota {
                    reserve: reserve.clone(),
                    limit,
                }));
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
                checkout: Checkout::default(),
            };
            let available = match section {
                None => {
                    reservation.reason = Some(Rejection::UnknownSection);
                    0
                }
                Some(state) if reserve.quota == QuotaVerdict::Exceeded => {
                    reservation.reason = Some(Rejection::UserLimitExceeded {
                        limit: limit.unwrap_or(0),
                    });
                    state.available()
                }
                Some(state) => match state.allocate(&reserve.request) {
                    Ok(seats) => {
                        if state.hold_seconds() > 0 {
                            reservation.status = Status::Held;
                            reservation.checkout.expires_at =
                                Some(now + i64::from(state.hold_seconds()) * 1_000);
                        } else {
                            reservation.status = Status::Confirmed;
                            reservation.checkout.confirmed_at = Some(now);
                        }
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
            if let Some(expired) = expire(section, prior, now) {
                return Decision::Append(vec![expired]);
            }
            match prior.status {
                Status::Cancelled => Decision::AlreadyDecided(prior.clone()),
                Status::Rejected | Status::Pending | Status::Expired => {
                    Decision::Refused(Rejection::NotCancellable {
                        status: prior.status,
                    })
                }
                Status::Held | Status::Confirmed | Status::Waitlisted => {
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
        Command::ClaimQuota(_) | Command::ReleaseQuota(_) | Command::Room(_) => {
            // Decided by the quota's owner (see `crate::quota`) or the room's
            // (`crate::room`), never against a section.
            Decision::Refused(Rejection::UnknownSection)
        }
        Command::Confirm(confirm) => {
            let Some(prior) = prior.filter(|p| p.key == confirm.key) else {
                return Decision::Refused(Rejection::UnknownReservation);
            };
            if prior.user_id != confirm.user_id {
                return Decision::Refused(Rejection::NotOwner);
            }
            // A hold past its time has expired, whether or not its expiry was recorded yet:
            // the confirmation records it and is answered with it.
            if let Some(expired) = expire(section, prior, now) {
                return Decision::Append(vec![expired]);
            }
            if prior.status != Status::Held {
                // CONFIRMED again: the same answer; EXPIRED, CANCELLED, REJECTED: the caller
                // is told the status (not confirmable).
                return Decision::AlreadyDecided(prior.clone());
            }
            let Some(state) = section else {
                return Decision::Refused(Rejection::UnknownSection);
            };
            let mut reservation = prior.clone();
            reservation.status = Status::Confirmed;
            reservation.checkout.confirmed_at = Some(now);
            reservation.checkout.payment_ref = confirm.payment_ref.clone();
            Decision::Append(vec![Event::ReservationCompleted(Completed {
                reservation,
                available: state.available(),
            })])
        }
    }
}

/// A reservation its section had no room for, WAITLISTED instead when it asked to wait (a
/// `seatCount` request): at `place` in the section's waitlist, or REJECTED `waitlist_full` when
/// there is none (`place` None; `limit` entries wait). None when it does not apply.
pub fn waitlist(
    completed: &Completed,
    reserve: &Reserve,
    place: Option<u64>,
    limit: u32,
) -> Option<Completed> {
    let no_room = matches!(
        completed.reservation.reason,
        Some(
            Rejection::SoldOut
                | Rejection::NotEnoughSeats { .. }
                | Rejection::NoAdjacentSeats { .. }
        )
    );
    if !reserve.waitlist
        || !matches!(reserve.request, SeatRequest::Adjacent(_))
        || completed.reservation.status != Status::Rejected
        || !no_room
    {
        return None;
    }
    let mut waiting = completed.clone();
    match place {
        Some(place) => {
            waiting.reservation.status = Status::Waitlisted;
            waiting.reservation.reason = None;
            waiting.reservation.checkout.waitlisted = Some(place);
        }
        None => waiting.reservation.reason = Some(Rejection::WaitlistFull { limit }),
    }
    Some(waiting)
}

/// A WAITLISTED reservation given the seats it asked for if they fit now: HELD with a fresh
/// hold, or CONFIRMED in a section without holds. None when they do not fit.
pub fn promote(section: &SectionState, waiting: &Reservation, now: Millis) -> Option<Event> {
    if waiting.status != Status::Waitlisted {
        return None;
    }
    let seats = section
        .allocate(&SeatRequest::Adjacent(waiting.requested_seats))
        .ok()?;
    let mut promoted = waiting.clone();
    promoted.decided_at = now;
    if section.hold_seconds() > 0 {
        promoted.status = Status::Held;
        promoted.checkout.expires_at = Some(now + i64::from(section.hold_seconds()) * 1_000);
    } else {
        promoted.status = Status::Confirmed;
        promoted.checkout.confirmed_at = Some(now);
    }
    let available = section.available() - seats.len() as u32;
    promoted.seats = seats;
    Some(Event::ReservationCompleted(Completed {
        reservation: promoted,
        available,
    }))
}

/// The expiry of a HELD reservation whose hold ended at or before `now`: its seats go back.
/// None for anything else (not held, or still in time).
pub fn expire(
    section: Option<&SectionState>,
    reservation: &Reservation,
    now: Millis,
) -> Option<Event> {
    let due = reservation.checkout.expires_at?;
    if reservation.status != Status::Held || due > now {
        return None;
    }
    let state = section?;
    let mut expired = reservation.clone();
    expired.status = Status::Expired;
    expired.checkout.expired_at = Some(now);
    Some(Event::ReservationCompleted(Completed {
        available: state.available() + expired.seats.len() as u32,
        reservation: expired,
    }))
}

/// Fold one event into the optional state of its section (used by runners and replays).
pub fn evolve(section: &mut Option<SectionState>, event: &Event) {
    match event {
        Event::SectionInitialized(init) => {
            if section.is_none() {
                *section = Some(SectionState::new(init.layout).with_rules(init.rules));
            }
        }
        Event::ReservationCompleted(_) => {
            if let Some(state) = section {
                state.apply(event);
            }
        }
        // A room's decision changes no section.
        Event::Room(_) => {}
    }
}
