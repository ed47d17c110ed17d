//! The query port of the read side: where a reservation or a user's history is found, whichever
//! store holds it. The HTTP handlers ask here and nowhere else.
//!
//! A reservation is looked for in this process's read model first (everything it decided or
//! followed), then in the stores every gateway shares: Redis (the outcomes every gateway saw
//! decided) and the Postgres audit (every outcome ever decided). One that is not found anywhere
//! yet may still be on its way (decided a moment ago through another gateway, the follow feed
//! behind by a few milliseconds): a caller that may wait is parked until it arrives.

use std::sync::Arc;
use std::time::Duration;

use seatflow_aggregates::{Reservation, ReservationId, SectionKey, Status};
use tracing::warn;

use crate::ReadModel;
use crate::audit::{AuditRow, AuditStore};
use crate::redis::RedisReads;
use crate::waiters::Waiters;

/// A reservation as the read side found it.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    /// From this process's read model: decided here or followed from the log, or accepted and
    /// not decided yet (PENDING).
    Here(Reservation),
    /// From a shared store (Redis or the audit), as projected there.
    Shared(AuditRow),
}

impl Found {
    /// The section that decides about the reservation (where a cancellation goes).
    pub fn key(&self) -> SectionKey {
        match self {
            Self::Here(reservation) => reservation.key.clone(),
            Self::Shared(row) => SectionKey::new(row.event_id.as_str(), row.section.as_str()),
        }
    }

    /// Where it stands (a row of a shared store with a status this version does not know is
    /// read as undecided).
    pub fn status(&self) -> Status {
        match self {
            Self::Here(reservation) => reservation.status,
            Self::Shared(row) => Status::from_name(&row.status).unwrap_or(Status::Pending),
        }
    }

    pub fn is_pending(&self) -> bool {
        self.status() == Status::Pending
    }

    /// Whose it is.
    pub fn user_id(&self) -> &str {
        match self {
            Self::Here(reservation) => &reservation.user_id,
            Self::Shared(row) => &row.user_id,
        }
    }
}

/// How long a reservation id may still be unknown to a reader although it exists: its outcome
/// may be on its way from another gateway's request. Ids are UUID v7: they say when they were
/// made.
const IN_FLIGHT: Duration = Duration::from_secs(10);

/// The read side's answers.
#[derive(Clone, Debug)]
pub struct Queries {
    read: Arc<ReadModel>,
    waiters: Arc<Waiters>,
    redis: Option<RedisReads>,
    audit: Option<AuditStore>,
}

impl Queries {
    pub fn new(
        read: Arc<ReadModel>,
        waiters: Arc<Waiters>,
        redis: Option<RedisReads>,
        audit: Option<AuditStore>,
    ) -> Self {
        Self {
            read,
            waiters,
            redis,
            audit,
        }
    }

    /// The reservation `id`. With `wait` > 0, one that is undecided (or not seen yet) is waited
    /// for up to `wait`; then the last known state (PENDING) or nothing.
    pub async fn reservation(&self, id: ReservationId, wait: Duration) -> Option<Found> {
        match self.read.reservation(id) {
            Some(pending) if pending.status == Status::Pending && !wait.is_zero() => {
                self.await_decision(id, wait).await.map(Found::Here)
            }
            Some(reservation) => Some(Found::Here(reservation)),
            None => {
                if let Some(row) = self.shared(id).await {
                    return Some(Found::Shared(row));
                }
                // An id nobody may still be deciding (not a UUID v7, or made more than a few
                // seconds ago) is not waited for: it does not exist.
                let wait = wait.min(in_flight_for(id));
                if wait.is_zero() {
                    return None;
                }
                self.await_decision(id, wait).await.map(Found::Here)
            }
        }
    }

    /// The reservation `id` that a caller wants to change (cancel, confirm): one made in the
    /// last few seconds that is not found yet is waited for until it arrives (it was answered to
    /// its client through another gateway a moment ago); an older one is answered at once.
    pub async fn reservation_to_change(&self, id: ReservationId) -> Option<Found> {
        self.reservation(id, in_flight_for(id)).await
    }

    /// A user's reservations, newest first: from the audit when there is one (every outcome
    /// ever), else from this process's memory.
    pub async fn user_history(&self, user_id: &str, offset: usize, limit: usize) -> Vec<Found> {
        if let Some(audit) = &self.audit {
            match audit.user_history(user_id, offset, limit).await {
                Ok(rows) => return rows.into_iter().map(Found::Shared).collect(),
                // The sale does not depend on the audit: answer from memory meanwhile.
                Err(e) => warn!(error = %e, "audit unavailable; history answered from memory"),
            }
        }
        self.read
            .user_reservations(user_id, offset, limit)
            .into_iter()
            .map(Found::Here)
            .collect()
    }

    /// Redis, then the audit. (A Redis failure is counted and warned about by its breaker.)
    async fn shared(&self, id: ReservationId) -> Option<AuditRow> {
        if let Some(redis) = &self.redis
            && let Ok(Some(row)) = redis.outcome(id.0).await
        {
            return Some(row);
        }
        if let Some(audit) = &self.audit {
            match audit.find(id.0).await {
                Ok(found) => return found,
                Err(e) => warn!(error = %e, "audit unavailable for a reservation lookup"),
            }
        }
        None
    }

    /// Park until the reservation is decided or the wait ends (no thread is held).
    async fn await_decision(&self, id: ReservationId, wait: Duration) -> Option<Reservation> {
        let read = self.read.clone();
        self.waiters
            .wait_for(id, wait, || {
                read.reservation(id).filter(|r| r.status != Status::Pending)
            })
            .await
            .or_else(|| self.read.reservation(id))
    }
}

/// How far ahead of this reader's clock another gateway's may be.
const CLOCK_AHEAD_AT_MOST: Duration = Duration::from_secs(5);

/// How much longer `id` may be in flight towards this reader: zero for an id seatflow did not
/// make recently (ids are UUID v7, so another version, or one from further in the future than a
/// clock can be ahead, was never made here).
fn in_flight_for(id: ReservationId) -> Duration {
    if id.0.get_version_num() != 7 {
        return Duration::ZERO;
    }
    let Some(made) = id.0.get_timestamp() else {
        return Duration::ZERO;
    };
    let (secs, nanos) = made.to_unix();
    let made = std::time::UNIX_EPOCH + Duration::new(secs, nanos);
    match std::time::SystemTime::now().duration_since(made) {
        Ok(age) => IN_FLIGHT.saturating_sub(age),
        // Made "in the future" by a clock ahead of ours: at most the whole window.
        Err(ahead) if ahead.duration() <= CLOCK_AHEAD_AT_MOST => IN_FLIGHT,
        Err(_) => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recent_id_may_still_be_in_flight() {
        let fresh = ReservationId::new_v7();
        let waited = in_flight_for(fresh);
        assert!(
            waited > Duration::from_secs(9) && waited <= IN_FLIGHT,
            "{waited:?}"
        );
        let old = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            1_600_000_000,
            0,
        ));
        assert_eq!(in_flight_for(ReservationId(old)), Duration::ZERO);
        assert_eq!(
            in_flight_for(ReservationId(uuid::Uuid::nil())),
            Duration::ZERO
        );
        // Ids seatflow never makes: a time-based v1 of now, a v7 from next year.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock");
        let gregorian_ticks = (now.as_secs() + 12_219_292_800) * 10_000_000;
        let v1 = uuid::Builder::from_gregorian_timestamp(gregorian_ticks, 0, &[1, 2, 3, 4, 5, 6])
            .into_uuid();
        assert_eq!(in_flight_for(ReservationId(v1)), Duration::ZERO);
        let later = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            now.as_secs() + 365 * 86_400,
            0,
        ));
        assert_eq!(in_flight_for(ReservationId(later)), Duration::ZERO);
    }
}
