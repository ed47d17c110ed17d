//! When a webhook's deliveries are tried: which of its pending deliveries may be posted now
//! (in order per reservation), and when a failed one is tried again (exponential back-off,
//! given up after the retry period).

use std::collections::HashSet;

use seatflow_aggregates::Millis;

use super::{Delivery, DeliveryStatus};

/// How retries are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; doubled after each further one.
    pub first_retry_ms: u64,
    /// The longest wait between two attempts.
    pub max_retry_ms: u64,
    /// How long after its creation a delivery is still tried (a day by default).
    pub give_up_after_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_retry_ms: 1_000,
            max_retry_ms: 3_600_000,
            give_up_after_ms: 24 * 3_600_000,
        }
    }
}

impl RetryPolicy {
    /// When a delivery that failed its `attempts`-th attempt at `now` is tried again; None once
    /// that would be past its retry period (it is given up).
    pub fn next_attempt(&self, delivery: &Delivery, now: Millis) -> Option<Millis> {
        let doublings = delivery.attempts.saturating_sub(1).min(40);
        let wait = self
            .first_retry_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_retry_ms);
        let at = now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
        let last = delivery
            .created_at
            .saturating_add(i64::try_from(self.give_up_after_ms).unwrap_or(i64::MAX));
        (at <= last).then_some(at)
    }
}

/// What a sender does with a window of its webhook's oldest pending deliveries (in `seq`
/// order): the ones to post now, and when to look again if none is due.
#[derive(Debug, PartialEq, Eq)]
pub struct Round {
    /// Indexes into the window.
    pub due: Vec<usize>,
    /// The earliest retry among the deliveries that may go next (each key's first).
    pub next_due: Option<Millis>,
}

/// Each ordering key's first pending delivery may go, if its time has come; the ones behind it
/// wait until it is delivered or given up.
pub fn round(window: &[Delivery], now: Millis) -> Round {
    let mut ahead = HashSet::new();
    let mut due = Vec::new();
    let mut next_due: Option<Millis> = None;
    for (index, delivery) in window.iter().enumerate() {
        if delivery.status != DeliveryStatus::Pending
            || !ahead.insert(delivery.ordering_key.as_str())
        {
            continue;
        }
        if delivery.next_attempt_at <= now {
            due.push(index);
        } else {
            next_due = Some(next_due.map_or(delivery.next_attempt_at, |at| {
                at.min(delivery.next_attempt_at)
            }));
        }
    }
    Round { due, next_due }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::webhooks::Topic;

    fn pending(key: &str, next_attempt_at: Millis) -> Delivery {
        Delivery {
            id: Uuid::now_v7(),
            webhook_id: Uuid::nil(),
            seq: 0,
            topic: Topic::ReservationHeld,
            ordering_key: key.into(),
            body: "{}".into(),
            created_at: 0,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at,
            last_attempt: None,
            delivered_at: None,
        }
    }

    #[test]
    fn a_reservation_s_later_notifications_wait_for_its_first() {
        let window = [
            pending("r1", 100), // waiting for a retry
            pending("r2", 0),
            pending("r1", 0), // behind r1's first
            pending("r3", 0),
            pending("r2", 0), // behind r2's first
        ];
        assert_eq!(
            round(&window, 50),
            Round {
                due: vec![1, 3],
                next_due: Some(100)
            }
        );
        assert_eq!(round(&window, 100).due, [0, 1, 3]);
    }

    #[test]
    fn retries_double_up_to_the_cap_and_stop_after_the_period() {
        let policy = RetryPolicy {
            first_retry_ms: 1_000,
            max_retry_ms: 8_000,
            give_up_after_ms: 60_000,
        };
        let mut delivery = pending("r1", 0);
        let mut waits = Vec::new();
        for attempts in 1..=6 {
            delivery.attempts = attempts;
            waits.push(policy.next_attempt(&delivery, 10_000).map(|at| at - 10_000));
        }
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000].map(Some));
        delivery.attempts = 3;
        assert_eq!(policy.next_attempt(&delivery, 56_000), Some(60_000));
        assert_eq!(
            policy.next_attempt(&delivery, 56_001),
            None,
            "past a minute"
        );
    }
}
