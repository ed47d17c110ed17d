//! Where webhooks and their deliveries are kept: RocksDB in the embedded default, Postgres on
//! Kafka. The gateway registers and lists through it; the projection queues through it; the
//! senders read and record through it.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Delivery, Disabled, Webhook};

#[derive(Debug, thiserror::Error)]
#[error("webhook store: {0}")]
pub struct WebhookStoreError(pub String);

#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug {
    async fn create(&self, webhook: &Webhook) -> Result<(), WebhookStoreError>;

    /// Every webhook, enabled or not.
    async fn webhooks(&self) -> Result<Vec<Webhook>, WebhookStoreError>;

    async fn webhook(&self, id: Uuid) -> Result<Option<Webhook>, WebhookStoreError>;

    async fn disable(&self, id: Uuid, disabled: Disabled) -> Result<(), WebhookStoreError>;

    /// Remove a webhook and its deliveries; false if there was none.
    async fn delete(&self, id: Uuid) -> Result<bool, WebhookStoreError>;

    /// Where the delivery projection stopped in each log partition: the next position to read.
    async fn positions(&self, projection: &str) -> Result<HashMap<i32, i64>, WebhookStoreError>;

    /// Queue `deliveries` (their `seq` is given here, in the order given) and store the
    /// positions after them, in one write: a crash keeps both or neither.
    async fn enqueue(
        &self,
        projection: &str,
        deliveries: Vec<Delivery>,
        positions: &[(i32, i64)],
    ) -> Result<(), WebhookStoreError>;

    /// A webhook's oldest PENDING deliveries, at most `limit`, in `seq` order.
    async fn pending(
        &self,
        webhook: Uuid,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhookStoreError>;

    /// Store a delivery's new state (after an attempt).
    async fn record(&self, delivery: &Delivery) -> Result<(), WebhookStoreError>;

    /// A webhook's deliveries, newest first: at most `limit`, before `before` (a `seq`) when
    /// given.
    async fn deliveries(
        &self,
        webhook: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhookStoreError>;
}
