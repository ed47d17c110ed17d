//! Requests parked until a reservation is decided (long polls, `?wait=`): each holds a oneshot
//! receiver, not a thread. Whatever applies decided outcomes calls [`Waiters::resolve`].

use std::time::Duration;

use dashmap::DashMap;
use seatflow_aggregates::{Reservation, ReservationId};
use tokio::sync::oneshot;

#[derive(Debug, Default)]
pub struct Waiters {
    parked: DashMap<ReservationId, Vec<oneshot::Sender<Reservation>>>,
}

impl Waiters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Park until `id` is decided or `wait` passes. `lookup` is asked after parking, so an
    /// outcome that lands between the caller's own check and the parking is not missed.
    pub async fn wait_for(
        &self,
        id: ReservationId,
        wait: Duration,
        lookup: impl Fn() -> Option<Reservation>,
    ) -> Option<Reservation> {
        let (tx, rx) = oneshot::channel();
        self.parked.entry(id).or_default().push(tx);
        if let Some(decided) = lookup() {
            self.parked
                .remove_if(&id, |_, senders| senders.iter().all(|s| s.is_closed()));
            return Some(decided);
        }
        seatflow_telemetry::metrics().parked();
        let outcome = tokio::time::timeout(wait, rx)
            .await
            .ok()
            .and_then(Result::ok);
        seatflow_telemetry::metrics().unparked();
        if outcome.is_none() {
            // Timed out: drop our closed sender so the table does not grow.
            if let Some(mut senders) = self.parked.get_mut(&id) {
                senders.retain(|s| !s.is_closed());
            }
            self.parked.remove_if(&id, |_, senders| senders.is_empty());
        }
        outcome
    }

    /// Wake everyone parked on this reservation.
    pub fn resolve(&self, reservation: &Reservation) {
        if self.parked.is_empty() {
            return;
        }
        if let Some((_, senders)) = self.parked.remove(&reservation.id) {
            for sender in senders {
                let _ = sender.send(reservation.clone());
            }
        }
    }

    /// Requests parked right now.
    pub fn parked(&self) -> usize {
        self.parked.iter().map(|entry| entry.value().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seatflow_aggregates::{SectionKey, Status};
    use std::sync::Arc;

    fn reservation(id: ReservationId) -> Reservation {
        Reservation {
            id,
            key: SectionKey::new("e", "s"),
            user_id: "u".into(),
            status: Status::Confirmed,
            requested_seats: 1,
            seats: vec![],
            reason: None,
            requested_at: 0,
            decided_at: 0,
            cancelled_at: None,
            checkout: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_parked_request_wakes_when_the_outcome_arrives() {
        let waiters = Arc::new(Waiters::new());
        let id = ReservationId::new_v7();
        let parked = {
            let waiters = waiters.clone();
            tokio::spawn(async move { waiters.wait_for(id, Duration::from_secs(5), || None).await })
        };
        while waiters.parked() == 0 {
            tokio::task::yield_now().await;
        }
        waiters.resolve(&reservation(id));
        let woken = parked.await.expect("join");
        assert_eq!(woken.map(|r| r.id), Some(id));
        assert_eq!(waiters.parked(), 0);
    }

    #[tokio::test]
    async fn a_wait_ends_empty_and_leaves_nothing_parked() {
        let waiters = Waiters::new();
        let id = ReservationId::new_v7();
        assert!(
            waiters
                .wait_for(id, Duration::from_millis(10), || None)
                .await
                .is_none()
        );
        assert_eq!(waiters.parked(), 0);
    }
}
