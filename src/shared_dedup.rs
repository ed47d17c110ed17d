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
use seatflow_projections::redis::{RedisError, RedisReads};
use uuid::Uuid;

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

    fn keys(&self) -> RedisKeys<'_> {
        RedisKeys(&self.redis)
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
            match self.keys().claim(key, id.0, self.window).await {
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
            let _ = self
                .keys()
                .replace(key, previous.0, id.0, self.window)
                .await;
            self.local.replace(key, previous, id);
        })
    }

    fn forget<'a>(&'a self, key: &'a str, id: ReservationId) -> DedupFuture<'a, ()> {
        boxed(async move {
            let _ = self.keys().release(key, id.0).await;
            self.local.forget(key, id);
        })
    }
}

/// The de-duplication keys in Redis, `{prefix}:dedup:{key}`, through the read side's connection
/// and breaker.
#[derive(Debug, Clone, Copy)]
pub struct RedisKeys<'a>(pub &'a RedisReads);

impl RedisKeys<'_> {
    fn name(&self, key: &str) -> String {
        format!("{}:dedup:{key}", self.0.prefix())
    }

    /// `SET key id NX GET EX window`: `None` if the key is now `id`'s, else who holds it.
    pub async fn claim(
        &self,
        key: &str,
        id: Uuid,
        window: Duration,
    ) -> Result<Option<Uuid>, RedisError> {
        let key = self.name(key);
        let holder: Option<String> = self
            .0
            .call(async |c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(id.to_string())
                    .arg("NX")
                    .arg("GET")
                    .arg("EX")
                    .arg(window.as_secs().max(1))
                    .query_async(c)
                    .await
            })
            .await?;
        holder.map(|text| parse_id(&key, &text)).transpose()
    }

    /// Who holds `key`, if anyone. (Requests ask the local mirror, see `holder` above; this is
    /// how a test reads Redis back.)
    #[cfg(test)]
    pub async fn holder(&self, key: &str) -> Result<Option<Uuid>, RedisError> {
        let key = self.name(key);
        let holder: Option<String> = self
            .0
            .call(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
            .await?;
        holder.map(|text| parse_id(&key, &text)).transpose()
    }

    /// Give `key` to `id` if `previous` holds it, for a new window.
    pub async fn replace(
        &self,
        key: &str,
        previous: Uuid,
        id: Uuid,
        window: Duration,
    ) -> Result<(), RedisError> {
        let key = self.name(key);
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
              end
              return false",
        );
        self.0
            .call(async |c| {
                script
                    .key(&key)
                    .arg(previous.to_string())
                    .arg(id.to_string())
                    .arg(window.as_secs().max(1))
                    .invoke_async::<redis::Value>(c)
                    .await
            })
            .await
            .map(drop)
    }

    /// Delete `key` if `id` holds it.
    pub async fn release(&self, key: &str, id: Uuid) -> Result<(), RedisError> {
        let key = self.name(key);
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                return redis.call('DEL', KEYS[1])
              end
              return 0",
        );
        self.0
            .call(async |c| {
                script
                    .key(&key)
                    .arg(id.to_string())
                    .invoke_async::<i64>(c)
                    .await
            })
            .await
            .map(drop)
    }
}

fn parse_id(key: &str, text: &str) -> Result<Uuid, RedisError> {
    Uuid::parse_str(text).map_err(|e| RedisError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis under a key prefix of its own (started by `ops/test`).
    fn fresh() -> RedisReads {
        let url = std::env::var("SEATFLOW_TEST_REDIS_URL").unwrap_or_else(|_| {
            panic!(
                "SEATFLOW_TEST_REDIS_URL is not set: run the tests with ops/test (it starts Redis)"
            )
        });
        let prefix = format!("test-{}", Uuid::now_v7().simple());
        RedisReads::new(&url, &prefix, Duration::from_secs(3600)).expect("pool")
    }

    #[tokio::test]
    async fn a_key_is_claimed_once_and_handed_on_only_by_its_holder() {
        let redis = fresh();
        let keys = RedisKeys(&redis);
        let window = Duration::from_secs(3600);
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(
            keys.claim("u:e:A", first, window).await.expect("claim"),
            None
        );
        assert_eq!(
            keys.claim("u:e:A", second, window).await.expect("claim"),
            Some(first)
        );
        assert_eq!(keys.holder("u:e:A").await.expect("get"), Some(first));

        // The window is Redis' own expiry.
        let name = keys.name("u:e:A");
        let ttl: i64 = redis
            .call(async |c| redis::cmd("TTL").arg(&name).query_async(c).await)
            .await
            .expect("ttl");
        assert!((3590..=3600).contains(&ttl), "ttl {ttl}");

        // Only the holder releases or hands on the key.
        keys.release("u:e:A", second).await.expect("release");
        assert_eq!(keys.holder("u:e:A").await.expect("get"), Some(first));
        keys.replace("u:e:A", second, Uuid::now_v7(), window)
            .await
            .expect("replace");
        assert_eq!(keys.holder("u:e:A").await.expect("get"), Some(first));
        keys.replace("u:e:A", first, second, window)
            .await
            .expect("replace");
        assert_eq!(keys.holder("u:e:A").await.expect("get"), Some(second));
        keys.release("u:e:A", second).await.expect("release");
        assert_eq!(keys.holder("u:e:A").await.expect("get"), None);
        assert!(redis.health().is_up());
        assert_eq!(redis.health().failures(), 0);
    }
}
