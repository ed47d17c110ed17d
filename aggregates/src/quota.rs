//! The exact per-user limit: one quota per (event, user), decided by the partition its key
//! falls on, like a section.
//!
//! A reservation in an event with `maxSeatsPerUser` goes to its user's quota first
//! ([`ClaimQuota`]): the quota counts its seats if they fit and hands the reservation on to its
//! section with the verdict ([`QuotaVerdict`]); the section decides it as usual (a reservation
//! whose verdict is `Exceeded` is rejected with `user_limit_exceeded`). When a counted
//! reservation takes no seats or gives them back (rejected, cancelled, expired), the section
//! hands a [`ReleaseQuota`] back. Every hand-on is a command in the log, written in the same
//! transaction (Kafka) or atomic write (embedded) as the decision that made it, so none is lost
//! or doubled.
//!
//! Why it is exact: a reservation's seats are counted before its section can give it seats, and
//! leave the count only after its section took them back; so at every instant the seats a user
//! holds in the event are at most the seats counted, and the count never exceeds the limit. It
//! errs on the safe side while a hand-on is under way (a reservation counted but not yet
//! decided, or given back but not yet released, still counts).

use std::collections::BTreeMap;

use crate::model::{ClaimQuota, QuotaVerdict, ReleaseQuota, ReservationId, Reserve};

/// The reservations counted against one user's limit in one event, with their seats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaState {
    claims: BTreeMap<ReservationId, u16>,
}

impl QuotaState {
    /// A quota counting these reservations (a stored state).
    pub fn from_claims(claims: impl IntoIterator<Item = (ReservationId, u16)>) -> Self {
        Self {
            claims: claims.into_iter().collect(),
        }
    }

    /// The counted reservations and their seats.
    pub fn claims(&self) -> impl Iterator<Item = (ReservationId, u16)> + '_ {
        self.claims.iter().map(|(id, seats)| (*id, *seats))
    }

    /// Seats counted.
    pub fn used(&self) -> u32 {
        self.claims.values().map(|seats| u32::from(*seats)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }
}

/// Decide a claim: the reservation to hand on to its section, with its verdict, and the
/// quota's new state if it changed. A reservation counted already (the claim came again) is
/// handed on again, granted: its section answers it once.
pub fn claim(state: &QuotaState, claim: &ClaimQuota) -> (Reserve, Option<QuotaState>) {
    let id = claim.reserve.reservation_id;
    let seats = claim.reserve.request.seat_count();
    let mut reserve = claim.reserve.clone();
    if state.claims.contains_key(&id) {
        reserve.quota = QuotaVerdict::Granted;
        return (reserve, None);
    }
    if state.used() + u32::from(seats) > u32::from(claim.limit) {
        reserve.quota = QuotaVerdict::Exceeded;
        return (reserve, None);
    }
    reserve.quota = QuotaVerdict::Granted;
    let mut after = state.clone();
    after.claims.insert(id, seats);
    (reserve, Some(after))
}

/// Decide a release: the quota's new state, if the reservation was counted.
pub fn release(state: &QuotaState, release: &ReleaseQuota) -> Option<QuotaState> {
    state.claims.contains_key(&release.reservation_id).then(|| {
        let mut after = state.clone();
        after.claims.remove(&release.reservation_id);
        after
    })
}
