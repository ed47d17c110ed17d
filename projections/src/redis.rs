//! The Redis read models (deadpool-redis), shared by every gateway:
//!
//! | key                                  | what                                              |
//! |--------------------------------------|---------------------------------------------------|
//! | `{p}:avail:{eventId}`                | hash: section -> available count (`section-status`)|
//! | `{p}:cache:event:{eventId}`          | an event's availability as answered, 10 s TTL      |
//! | `{p}:cache:seats:{eventId}:{section}`| a section's seat map as answered, 10 s TTL         |
//! | `{p}:res:{reservationId}`            | a reservation's outcome (JSON), with a TTL         |
//! | `{p}:dedup:{userId}:{eventId}:{section}` and `{p}:dedup:idem:{userId}:{key}` | the reservation id holding the key (`SET NX EX`; written by the command side's shared de-duplication, not here) |
//! | `{p}:positions`                      | hash: `topic/partition` -> next offset projected   |
//!
//! The projector writes counts, outcomes and its positions in one `MULTI`/`EXEC`, and deletes
//! the cached event and seat map of every section whose status changed. The gateway reads the
//! caches and outcomes; its de-duplication keys go through [`RedisReads::call`] (the same
//! connection and breaker) from the command side's own module.
//!
//! Redis is a cache, not the record: when it fails, [`RedisReads`] answers errors at once for a
//! second (a circuit breaker, so a dead Redis costs no request a timeout), counts the failures,
//! warns once, and says when it is back. Callers fall back to what they hold locally.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::{Pool, Runtime};
use redis::aio::MultiplexedConnection;
use seatflow_aggregates::{SectionKey, SectionStatus};
use tracing::{info, warn};
use uuid::Uuid;

use crate::audit::AuditRow;

/// How long the event and seat-map answers are cached (the seed's 3.2).
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// How long a failing Redis is not asked again.
const BREAKER_OPEN: Duration = Duration::from_secs(1);
/// Longest one Redis call may take before it counts as a failure. Generous: in a flash sale's
/// first second, with the gateway's cores saturated, a healthy local Redis took over 250 ms to
/// answer some calls (measured). A dead Redis refuses connections at once; a hung one costs the
/// requests in flight this long, once, then the breaker answers for it.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// Redis failed recently; not asked again yet.
    #[error("Redis unavailable (failed less than a second ago)")]
    Unavailable,
    #[error("Redis: {0}")]
    Call(String),
    #[error("Redis: no answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis holds a value that is not ours under {key}: {message}")]
    Corrupt { key: String, message: String },
}

/// Whether Redis answers, as the callers saw it; the figures behind the metrics.
#[derive(Debug)]
pub struct RedisHealth {
    up: AtomicBool,
    /// Milliseconds since `epoch` until which calls are not tried.
    closed_until: AtomicU64,
    epoch: Instant,
    failures: AtomicU64,
    skipped: AtomicU64,
}

impl RedisHealth {
    fn new() -> Self {
        Self {
            up: AtomicBool::new(true),
            closed_until: AtomicU64::new(0),
            epoch: Instant::now(),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// False from a failed call until the next call that succeeds.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Calls that failed (error or timeout).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Calls not tried because Redis had just failed.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn may_try(&self) -> bool {
        let open = self.now_ms() >= self.closed_until.load(Ordering::Acquire);
        if !open {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            seatflow_telemetry::metrics().redis_skipped();
        }
        open
    }

    fn failed(&self, error: &RedisError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        seatflow_telemetry::metrics().redis_failed();
        seatflow_telemetry::metrics().redis_up(false);
        self.closed_until.store(
            self.now_ms() + BREAKER_OPEN.as_millis() as u64,
            Ordering::Release,
        );
        if self.up.swap(false, Ordering::AcqRel) {
            warn!(
                %error,
                "Redis unavailable: de-duplication is per gateway and reads skip the cache until it is back"
            );
        }
    }

    fn succeeded(&self) {
        if !self.up.load(Ordering::Acquire) && !self.up.swap(true, Ordering::AcqRel) {
            seatflow_telemetry::metrics().redis_up(true);
            info!("Redis reachable again");
        }
    }
}

/// What the projector writes in one transaction.
#[derive(Debug, Default, Clone)]
pub struct RedisBatch {
    /// Section statuses in log order (a later one for the same section wins).
    pub statuses: Vec<SectionStatus>,
    /// Reservation outcomes in log order.
    pub outcomes: Vec<AuditRow>,
}

/// The Redis read models of one key prefix.
#[derive(Clone, Debug)]
pub struct RedisReads {
    pool: Pool,
    prefix: Arc<str>,
    outcome_ttl: Duration,
    /// One multiplexed connection for the gateway's calls (it pipelines concurrent calls);
    /// taken from the pool, given back up on the first error.
    shared: Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
    health: Arc<RedisHealth>,
}

/// A part of a key: `:` and `%` percent-escaped so that parts never run into each other.
fn part(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([':', '%']) {
        std::borrow::Cow::Owned(text.replace('%', "%25").replace(':', "%3A"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

impl RedisReads {
    /// A pool for `url` (`redis://host:port/db`); connects lazily.
    pub fn new(url: &str, prefix: &str, outcome_ttl: Duration) -> Result<Self, RedisError> {
        let manager = deadpool_redis::Manager::new_with_config(
            url,
            redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CALL_TIMEOUT))
                .set_response_timeout(Some(CALL_TIMEOUT)),
        )
        .map_err(|e| RedisError::Call(e.to_string()))?;
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CALL_TIMEOUT))
            .recycle_timeout(Some(CALL_TIMEOUT))
            .build()
            .map_err(|e| RedisError::Call(e.to_string()))?;
        Ok(Self {
            pool,
            prefix: prefix.into(),
            outcome_ttl,
            shared: Arc::default(),
            health: Arc::new(RedisHealth::new()),
        })
    }

    pub fn health(&self) -> &RedisHealth {
        &self.health
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The same models under another prefix (a replay's fresh key space).
    pub fn with_prefix(&self, prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
            ..self.clone()
        }
    }

    // ---- keys ---------------------------------------------------------------------------------

    fn available_key(&self, event_id: &str) -> String {
        format!("{}:avail:{}", self.prefix, part(event_id))
    }

    fn event_cache_key(&self, event_id: &str) -> String {
        format!("{}:cache:event:{}", self.prefix, part(event_id))
    }

    fn seats_cache_key(&self, key: &SectionKey) -> String {
        format!(
            "{}:cache:seats:{}:{}",
            self.prefix,
            part(&key.event_id),
            part(&key.section)
        )
    }

    fn outcome_key(&self, id: Uuid) -> String {
        format!("{}:res:{id}", self.prefix)
    }

    fn positions_key(&self) -> String {
        format!("{}:positions", self.prefix)
    }

    // ---- calls --------------------------------------------------------------------------------

    /// The shared connection, made once (concurrent callers wait for that one rather than each
    /// asking the pool).
    async fn shared_connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut shared = self.shared.lock().await;
        if let Some(connection) = shared.as_ref() {
            return Ok(connection.clone());
        }
        let taken = self
            .pool
            .get()
            .await
            .map_err(|e| RedisError::Call(e.to_string()))?;
        let connection = deadpool_redis::Connection::take(taken);
        *shared = Some(connection.clone());
        Ok(connection)
    }

    /// Run one call on the shared connection, through the breaker and within the time limit
    /// (also for the command side's keys, which it writes itself: the gateway's shared
    /// de-duplication).
    pub async fn call<T, F>(&self, call: F) -> Result<T, RedisError>
    where
        F: AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    {
        if !self.health.may_try() {
            return Err(RedisError::Unavailable);
        }
        let mut broken = true;
        let result = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut connection = self.shared_connection().await?;
            call(&mut connection).await.map_err(|e| {
                // An error Redis answered leaves the connection fine; a transport one does not.
                broken = e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout();
                RedisError::Call(e.to_string())
            })
        })
        .await
        .unwrap_or(Err(RedisError::Timeout(CALL_TIMEOUT)));
        match &result {
            Ok(_) => self.health.succeeded(),
            Err(e) => {
                if broken {
                    // A fresh connection next time.
                    self.shared.lock().await.take();
                }
                self.health.failed(e);
            }
        }
        result
    }

    // ---- reads --------------------------------------------------------------------------------

    /// A reservation's outcome, if Redis still holds it.
    pub async fn outcome(&self, id: Uuid) -> Result<Option<AuditRow>, RedisError> {
        let key = self.outcome_key(id);
        let json: Option<String> = self
            .call(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
            .await?;
        json.map(|json| {
            AuditRow::from_json(&json).map_err(|message| RedisError::Corrupt { key, message })
        })
        .transpose()
    }

    /// Every section's available count of an event.
    pub async fn available(&self, event_id: &str) -> Result<HashMap<String, u32>, RedisError> {
        let key = self.available_key(event_id);
        self.call(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
            .await
    }

    /// The cached availability answer of an event.
    pub async fn cached_event(&self, event_id: &str) -> Result<Option<String>, RedisError> {
        let key = self.event_cache_key(event_id);
        self.call(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
            .await
    }

    /// The cached seat-map answer of a section.
    pub async fn cached_seats(&self, section: &SectionKey) -> Result<Option<String>, RedisError> {
        let key = self.seats_cache_key(section);
        self.call(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
            .await
    }

    /// Cache an event's availability answer for [`CACHE_TTL`].
    pub async fn cache_event(&self, event_id: &str, json: &str) -> Result<(), RedisError> {
        self.cache(self.event_cache_key(event_id), json).await
    }

    /// Cache a section's seat-map answer for [`CACHE_TTL`].
    pub async fn cache_seats(&self, section: &SectionKey, json: &str) -> Result<(), RedisError> {
        self.cache(self.seats_cache_key(section), json).await
    }

    async fn cache(&self, key: String, json: &str) -> Result<(), RedisError> {
        self.call(async |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(json)
                .arg("EX")
                .arg(CACHE_TTL.as_secs())
                .query_async::<()>(c)
                .await
        })
        .await
    }

    // ---- the projection -----------------------------------------------------------------------

    /// The next offset to project of every `(topic, partition)` this key space holds.
    pub async fn positions(&self) -> Result<HashMap<(String, i32), i64>, RedisError> {
        let key = self.positions_key();
        let stored: HashMap<String, i64> = self
            .pooled(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
            .await?;
        stored
            .into_iter()
            .map(|(field, next)| {
                let (topic, partition) = field
                    .rsplit_once('/')
                    .and_then(|(t, p)| Some((t.to_owned(), p.parse().ok()?)))
                    .ok_or_else(|| RedisError::Corrupt {
                        key: key.clone(),
                        message: format!("field {field:?} is not topic/partition"),
                    })?;
                Ok(((topic, partition), next))
            })
            .collect()
    }

    /// Write a batch and the positions after it atomically (`MULTI`/`EXEC`): counts, cache
    /// invalidation of every changed section, outcomes with their TTL. Answers whether the
    /// positions existed before: a projector that wrote before and finds them gone knows Redis
    /// lost its data (restarted without persistence) and must rebuild from the start.
    pub async fn apply(
        &self,
        batch: &RedisBatch,
        next: &[(String, i32, i64)],
    ) -> Result<bool, RedisError> {
        let mut latest: HashMap<&SectionKey, u32> = HashMap::new();
        for status in &batch.statuses {
            latest.insert(&status.key, status.available);
        }
        let positions = self.positions_key();
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.exists(&positions);
        for (section, available) in &latest {
            pipe.hset(
                self.available_key(&section.event_id),
                &section.section,
                *available,
            )
            .ignore();
            pipe.del(self.event_cache_key(&section.event_id)).ignore();
            pipe.del(self.seats_cache_key(section)).ignore();
        }
        let ttl = self.outcome_ttl.as_secs().max(1);
        for row in &batch.outcomes {
            pipe.set_ex(self.outcome_key(row.id), row.to_json(), ttl)
                .ignore();
        }
        for (topic, partition, offset) in next {
            pipe.hset(&positions, format!("{topic}/{partition}"), *offset)
                .ignore();
        }
        let (existed,): (bool,) = self.pooled(async |c| pipe.query_async(c).await).await?;
        Ok(existed)
    }

    /// Drop the stored positions: the next projector run starts from the beginning of the log.
    pub async fn forget_positions(&self) -> Result<(), RedisError> {
        let key = self.positions_key();
        self.pooled(async |c| redis::cmd("DEL").arg(&key).query_async::<()>(c).await)
            .await
    }

    /// Every outcome key of this prefix with its stored JSON, and every count: what `replay
    /// --verify` compares. Reads with `SCAN`, so the live models keep serving meanwhile.
    pub async fn snapshot(&self) -> Result<RedisSnapshot, RedisError> {
        let mut snapshot = RedisSnapshot::default();
        let mut cursor: u64 = 0;
        let pattern = format!("{}:*", self.prefix);
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .pooled(async |c| {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(c)
                        .await
                })
                .await?;
            let outcomes: Vec<&String> = keys
                .iter()
                .filter(|k| k[self.prefix.len()..].starts_with(":res:"))
                .collect();
            if !outcomes.is_empty() {
                let values: Vec<Option<String>> = self
                    .pooled(async |c| redis::cmd("MGET").arg(&outcomes).query_async(c).await)
                    .await?;
                for (key, value) in outcomes.iter().zip(values) {
                    if let Some(value) = value {
                        let id = key[self.prefix.len() + 5..].to_owned();
                        snapshot.outcomes.insert(id, value);
                    }
                }
            }
            for key in keys
                .iter()
                .filter(|k| k[self.prefix.len()..].starts_with(":avail:"))
            {
                let counts: HashMap<String, u32> = self
                    .pooled(async |c| redis::cmd("HGETALL").arg(key).query_async(c).await)
                    .await?;
                let event = key[self.prefix.len() + 7..].to_owned();
                for (section, count) in counts {
                    snapshot
                        .counts
                        .insert(format!("{event}:{}", part(&section)), count);
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(snapshot);
            }
        }
    }

    /// A call on a connection of its own from the pool: the projector's and the tools' calls,
    /// which may be large or slow and must not hold up the gateway's shared connection. No
    /// breaker: the projector retries with its own backoff.
    async fn pooled<T, F>(&self, call: F) -> Result<T, RedisError>
    where
        F: AsyncFnOnce(&mut deadpool_redis::Connection) -> redis::RedisResult<T>,
    {
        let mut connection = self
            .pool
            .get()
            .await
            .map_err(|e| RedisError::Call(e.to_string()))?;
        call(&mut connection)
            .await
            .map_err(|e| RedisError::Call(e.to_string()))
    }
}

/// What a key space holds of the projection: outcome JSON by reservation id, counts by
/// `eventId:section`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedisSnapshot {
    pub outcomes: std::collections::BTreeMap<String, String>,
    pub counts: std::collections::BTreeMap<String, u32>,
}

/// How a rebuilt key space compares with the live one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedisComparison {
    pub equal_outcomes: usize,
    /// Outcomes that differ (ids), the live one not being later in the log.
    pub different_outcomes: Vec<String>,
    /// Outcomes the replay holds and the live key space does not, though still inside the TTL.
    pub missing_live: Vec<String>,
    /// Outcomes only in the replay that the live key space let expire (older than the TTL).
    pub expired_live: usize,
    /// Live outcomes later in the log than the replay's end (not compared).
    pub newer_live: usize,
    pub equal_counts: usize,
    /// Sections (`eventId:section`) whose counts differ or that the live key space lacks.
    pub different_counts: Vec<String>,
}

impl RedisComparison {
    pub fn is_equal(&self) -> bool {
        self.different_outcomes.is_empty()
            && self.missing_live.is_empty()
            && self.different_counts.is_empty()
    }
}

/// Compare a rebuilt key space with the live one. `expired_before`: outcomes completed before
/// it may have expired live. A live outcome or count the replay lacks is newer than the replay
/// and not a difference; a count can only be compared where the replay ended at the same
/// place, so counts of sections with a newer live outcome are not compared either.
pub fn compare(
    rebuilt: &RedisSnapshot,
    live: &RedisSnapshot,
    expired_before: chrono::DateTime<chrono::Utc>,
) -> RedisComparison {
    let mut comparison = RedisComparison::default();
    let mut moved_on: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (id, json) in &rebuilt.outcomes {
        let row = AuditRow::from_json(json).ok();
        match live.outcomes.get(id) {
            Some(live_json) if live_json == json => comparison.equal_outcomes += 1,
            Some(live_json) => {
                let live_row = AuditRow::from_json(live_json).ok();
                let later = match (&row, &live_row) {
                    (Some(row), Some(live_row)) => {
                        (live_row.log_partition, live_row.log_offset)
                            > (row.log_partition, row.log_offset)
                            && live_row.log_partition == row.log_partition
                    }
                    _ => false,
                };
                if later {
                    comparison.newer_live += 1;
                    if let Some(row) = &row {
                        moved_on.insert(format!("{}:{}", part(&row.event_id), part(&row.section)));
                    }
                } else {
                    comparison.different_outcomes.push(id.clone());
                }
            }
            None if row
                .as_ref()
                .is_some_and(|r| r.completed_at < expired_before) =>
            {
                comparison.expired_live += 1
            }
            None => comparison.missing_live.push(id.clone()),
        }
    }
    for id in live.outcomes.keys() {
        if !rebuilt.outcomes.contains_key(id)
            && let Some(row) = live
                .outcomes
                .get(id)
                .and_then(|j| AuditRow::from_json(j).ok())
        {
            comparison.newer_live += 1;
            moved_on.insert(format!("{}:{}", part(&row.event_id), part(&row.section)));
        }
    }
    for (section, count) in &rebuilt.counts {
        if moved_on.contains(section) {
            continue;
        }
        match live.counts.get(section) {
            Some(live_count) if live_count == count => comparison.equal_counts += 1,
            _ => comparison.different_counts.push(section.clone()),
        }
    }
    comparison
}
