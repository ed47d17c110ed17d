//! The HTTP operations, documented with OpenAPI: one group of operations per file (events,
//! reservations, the queue, availability, webhooks, health), the bodies they exchange in `model`.

mod availability;
mod events;
mod health;
pub mod model;
mod queue;
mod reservations;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use poem_openapi::Tags;
use seatflow_commands::CommandService;
use seatflow_projections::redis::{RedisError, RedisReads};
use seatflow_projections::{Queries, ReadModel};
use seatflow_telemetry::metrics;
use serde::Serialize;

use crate::admission::AdmissionKeys;
use crate::auth::Auth;
use crate::connections::Connections;
use crate::limits::Limiter;

pub use availability::AvailabilityApi;
pub use events::EventsApi;
pub use health::HealthApi;
pub use queue::QueueApi;
pub use reservations::ReservationsApi;
pub use webhooks::{MAX_WEBHOOKS_PER_OWNER, WebhookRegistry, WebhooksApi};

/// Longest a request may wait for an outcome (`?wait=`), in milliseconds.
pub const MAX_WAIT_MS: u64 = 30_000;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub commands: CommandService,
    /// The catalogue: events, sections, seat maps.
    pub read: Arc<ReadModel>,
    /// Reservations and histories, wherever they are held.
    pub queries: Queries,
    /// Set once the read models are rebuilt and the workers run.
    pub ready: Arc<AtomicBool>,
    /// The Redis read models, when configured: cached event and seat-map answers.
    pub redis: Option<RedisReads>,
    /// Who may call: checked on every `/api` request before its handler.
    pub auth: Auth,
    /// How fast each user and client address may call.
    pub limiter: Limiter,
    /// The open connections and their bounds (the server's acceptor keeps them).
    pub connections: Connections,
    /// Signs and checks the waiting rooms' admission tokens.
    pub admission: AdmissionKeys,
    /// Where webhooks are registered; None where there is no store for them (Kafka without
    /// `database_url`).
    pub webhooks: Option<WebhookRegistry>,
}

impl AppState {
    /// A cached answer from Redis, if configured, reachable and holding one.
    async fn cached<T, F>(&self, read: F) -> Option<T>
    where
        T: serde::de::DeserializeOwned,
        F: AsyncFnOnce(&RedisReads) -> Result<Option<String>, RedisError>,
    {
        let redis = self.redis.as_ref()?;
        let found = read(redis)
            .await
            .ok()
            .flatten()
            .and_then(|json| serde_json::from_str(&json).ok());
        metrics().read_cache(found.is_some());
        found
    }

    /// Put an answer in the Redis cache, if configured (a failure only costs the next reader
    /// the work of building it again).
    async fn cache<T, F>(&self, answer: &T, write: F)
    where
        T: Serialize,
        F: AsyncFnOnce(&RedisReads, &str) -> Result<(), RedisError>,
    {
        if let Some(redis) = &self.redis
            && let Ok(json) = serde_json::to_string(answer)
        {
            let _ = write(redis, &json).await;
        }
    }
}

#[derive(Tags)]
enum Tag {
    /// Events and their sections.
    Events,
    /// Reserving and cancelling seats.
    Reservations,
    /// An event's virtual waiting room.
    Queue,
    /// Receivers told what the sale decided.
    Webhooks,
    /// Liveness and readiness.
    Health,
}

/// Milliseconds since the Unix epoch: the time the read side's answers are computed at.
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The page size of the list operations when `limit` is not given.
fn default_limit() -> u32 {
    100
}
