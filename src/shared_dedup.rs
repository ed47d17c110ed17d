//! De-duplication keys shared by every gateway through Redis (`SET NX GET EX`, made only by
//! requests that pass the pre-filter), with this gateway's own claims mirrored in memory: while
//! Redis is down, a retry that reaches this gateway is still answered with its first
//! reservation (retries reaching another gateway are not: that is the degradation, counted in
//! `seatflow_redis_*` and warned about once).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use seatflow_aggregates::ReservationId;
use seatflow_commands::{Claim, Dedup, DedupFuture, DedupStore};
use seatflow_projections::redis::RedisReads;

#[derive(Debug)]
pub struct SharedDedup {
    redis: RedisReads,
    local: Arc<Dedup>,
    window: Duration,
}

impl SharedDedup {
    /// Keys in Redis, mirrored here for at most `capacity` of them.
    pub fn new(redis: RedisReads, window: Duration, capacity: usize) -> Self {
        Self {
            redis,
            local: Arc::new(Dedup::bounded(window, capacity)),
            window,
        }
    }

    /// The in-memory mirror (swept periodically like the embedded store).
    pub fn local(&self) -> Arc<Dedup> {
        self.local.clone()
    }
}

fn boxed<'a, T>(future: impl Future<Output = T> + Send + 'a) -> DedupFuture<'a, T> {
    Box::pin(future)
}

impl DedupStore for SharedDedup {
    // Only this gateway's own keys: the look-up every request makes (sold-out ones included)
    // costs no round trip. Reservations decided through other gateways are found in the read
    // model, those still in flight there by `claim`, which is atomic in Redis. The mirror also
    // still answers after Redis restarted without its data.
    fn holder<'a>(&'a self, key: &'a str) -> DedupFuture<'a, Option<ReservationId>> {
        boxed(async move { self.local.get(key) })
    }

    fn claim<'a>(&'a self, key: &'a str, id: ReservationId) -> DedupFuture<'a, Claim> {
        boxed(async move {
            if let Some(holder) = self.local.get(key)
                && holder != id
            {
                return Claim::Existing(holder);
            }
            match self.redis.claim(key, id.0, self.window).await {
                Ok(None) => {
                    self.local.remember(key, id);
                    Claim::Claimed
                }
                Ok(Some(holder)) => Claim::Existing(ReservationId(holder)),
                Err(_) => self.local.claim(key, id),
            }
        })
    }

    fn replace<'a>(
        &'a self,
        key: &'a str,
        previous: ReservationId,
        id: ReservationId,
    ) -> DedupFuture<'a, ()> {
        boxed(async move {
            let _ = self.redis.replace(key, previous.0, id.0, self.window).await;
            self.local.replace(key, previous, id);
        })
    }

    fn forget<'a>(&'a self, key: &'a str, id: ReservationId) -> DedupFuture<'a, ()> {
        boxed(async move {
            let _ = self.redis.release(key, id.0).await;
            self.local.forget(key, id);
        })
    }
}
