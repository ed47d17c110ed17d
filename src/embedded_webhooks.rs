//! Webhooks in the embedded default: the webhook store in the process's RocksDB (its
//! `webhooks` column family), and the delivery projection that follows the process's own log
//! into it, as the embedded audit does into Postgres. The senders are the shared ones
//! (`seatflow_projections::webhooks::deliver`).
//!
//! Keys of the column family:
//! - `h` + webhook id (16 bytes): the webhook (JSON);
//! - `d` + webhook id + seq (8 bytes, big-endian): a delivery (JSON);
//! - `p` + webhook id + seq: present while that delivery is PENDING (what a sender scans);
//! - `o` + partition (4 bytes): the projection's next log position in that partition;
//! - `s`: the last seq given.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use seatflow_processor::Store;
use seatflow_projections::retry::with_retries;
use seatflow_projections::webhooks::deliver::{Queued, project};
use seatflow_projections::webhooks::{
    Delivery, DeliveryStatus, Disabled, Webhook, WebhookStore, WebhookStoreError,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;
use uuid::Uuid;

use crate::embedded_audit::read_log_batch;

const WEBHOOK: u8 = b'h';
const DELIVERY: u8 = b'd';
const PENDING: u8 = b'p';
const POSITION: u8 = b'o';
const LAST_SEQ: &[u8] = b"s";
/// Log records the projection reads per step.
const MAX_BATCH: usize = 2_000;
/// How often positions skipped without a webhook are stored.
const SKIPPED_STORED_EVERY: Duration = Duration::from_secs(10);

fn key(kind: u8, webhook: Uuid, seq: Option<u64>) -> Vec<u8> {
    let mut key = Vec::with_capacity(25);
    key.push(kind);
    key.extend_from_slice(webhook.as_bytes());
    if let Some(seq) = seq {
        key.extend_from_slice(&seq.to_be_bytes());
    }
    key
}

fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(17..25)?.try_into().ok()?))
}

fn failed(e: impl std::fmt::Display) -> WebhookStoreError {
    WebhookStoreError(e.to_string())
}

fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, WebhookStoreError> {
    serde_json::to_vec(value).map_err(failed)
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WebhookStoreError> {
    serde_json::from_slice(bytes).map_err(failed)
}

/// The webhook store of the embedded runtime.
#[derive(Clone)]
pub struct RocksWebhooks {
    store: Store,
    /// Serialises the writers of `s` (the projection) and of a webhook record (its disabling).
    write: Arc<Mutex<()>>,
}

impl std::fmt::Debug for RocksWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksWebhooks").finish_non_exhaustive()
    }
}

impl RocksWebhooks {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            write: Arc::new(Mutex::new(())),
        }
    }

    /// Run `work` on a blocking thread (RocksDB reads and synced writes block).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Self) -> Result<T, WebhookStoreError> + Send + 'static,
    ) -> Result<T, WebhookStoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&this))
            .await
            .map_err(failed)?
    }

    fn read_webhook(&self, id: Uuid) -> Result<Option<Webhook>, WebhookStoreError> {
        self.store
            .webhook_get(&key(WEBHOOK, id, None))
            .map_err(failed)?
            .map(|bytes| parse(&bytes))
            .transpose()
    }

    fn scan_deliveries(
        &self,
        prefix: Vec<u8>,
        from: Option<Vec<u8>>,
        reverse: bool,
        limit: usize,
        webhook: Uuid,
    ) -> Result<Vec<Delivery>, WebhookStoreError> {
        let entries = self
            .store
            .webhook_scan(&prefix, from.as_deref(), reverse, limit)
            .map_err(failed)?;
        let mut found = Vec::with_capacity(entries.len());
        for (entry, value) in entries {
            let record = if prefix[0] == DELIVERY {
                value
            } else {
                let seq = seq_of(&entry).ok_or_else(|| failed("a malformed pending key"))?;
                match self
                    .store
                    .webhook_get(&key(DELIVERY, webhook, Some(seq)))
                    .map_err(failed)?
                {
                    Some(record) => record,
                    None => continue,
                }
            };
            found.push(parse(&record)?);
        }
        Ok(found)
    }
}

#[async_trait::async_trait]
impl WebhookStore for RocksWebhooks {
    async fn create(&self, webhook: &Webhook) -> Result<(), WebhookStoreError> {
        let change = vec![(key(WEBHOOK, webhook.id, None), Some(json(webhook)?))];
        self.blocking(move |this| this.store.webhook_write(&change).map_err(failed))
            .await
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>, WebhookStoreError> {
        self.blocking(|this| {
            this.store
                .webhook_scan(&[WEBHOOK], None, false, usize::MAX)
                .map_err(failed)?
                .iter()
                .map(|(_, value)| parse(value))
                .collect()
        })
        .await
    }

    async fn webhook(&self, id: Uuid) -> Result<Option<Webhook>, WebhookStoreError> {
        self.blocking(move |this| this.read_webhook(id)).await
    }

    async fn disable(&self, id: Uuid, disabled: Disabled) -> Result<(), WebhookStoreError> {
        self.blocking(move |this| {
            let _writing = this.write.lock();
            let Some(mut webhook) = this.read_webhook(id)? else {
                return Ok(());
            };
            webhook.disabled = Some(disabled);
            let change = [(key(WEBHOOK, id, None), Some(json(&webhook)?))];
            this.store.webhook_write(&change).map_err(failed)
        })
        .await
    }

    async fn delete(&self, id: Uuid) -> Result<bool, WebhookStoreError> {
        self.blocking(move |this| {
            let _writing = this.write.lock();
            if this.read_webhook(id)?.is_none() {
                return Ok(false);
            }
            let mut changes = vec![(key(WEBHOOK, id, None), None)];
            for kind in [DELIVERY, PENDING] {
                let prefix = key(kind, id, None);
                for (entry, _) in this
                    .store
                    .webhook_scan(&prefix, None, false, usize::MAX)
                    .map_err(failed)?
                {
                    changes.push((entry, None));
                }
            }
            this.store.webhook_write(&changes).map_err(failed)?;
            Ok(true)
        })
        .await
    }

    async fn positions(&self, _projection: &str) -> Result<HashMap<i32, i64>, WebhookStoreError> {
        self.blocking(|this| {
            this.store
                .webhook_scan(&[POSITION], None, false, usize::MAX)
                .map_err(failed)?
                .into_iter()
                .map(|(entry, value)| {
                    let partition = i32::from_be_bytes(
                        entry
                            .get(1..5)
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(|| failed("a malformed position key"))?,
                    );
                    let next = i64::from_be_bytes(
                        value
                            .as_slice()
                            .try_into()
                            .map_err(|_| failed("a malformed position"))?,
                    );
                    Ok((partition, next))
                })
                .collect()
        })
        .await
    }

    async fn enqueue(
        &self,
        _projection: &str,
        deliveries: Vec<Delivery>,
        positions: &[(i32, i64)],
    ) -> Result<(), WebhookStoreError> {
        let positions = positions.to_vec();
        self.blocking(move |this| {
            let _writing = this.write.lock();
            let mut seq = match this.store.webhook_get(LAST_SEQ).map_err(failed)? {
                Some(bytes) => u64::from_be_bytes(
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| failed("a malformed sequence"))?,
                ),
                None => 0,
            };
            let mut changes = Vec::with_capacity(deliveries.len() * 2 + positions.len() + 1);
            for mut delivery in deliveries {
                seq += 1;
                delivery.seq = seq;
                changes.push((
                    key(DELIVERY, delivery.webhook_id, Some(seq)),
                    Some(json(&delivery)?),
                ));
                changes.push((
                    key(PENDING, delivery.webhook_id, Some(seq)),
                    Some(Vec::new()),
                ));
            }
            changes.push((LAST_SEQ.to_vec(), Some(seq.to_be_bytes().to_vec())));
            for (partition, next) in positions {
                let mut entry = vec![POSITION];
                entry.extend_from_slice(&partition.to_be_bytes());
                changes.push((entry, Some(next.to_be_bytes().to_vec())));
            }
            this.store.webhook_write(&changes).map_err(failed)
        })
        .await
    }

    async fn pending(
        &self,
        webhook: Uuid,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhookStoreError> {
        self.blocking(move |this| {
            this.scan_deliveries(key(PENDING, webhook, None), None, false, limit, webhook)
        })
        .await
    }

    async fn record(&self, delivery: &Delivery) -> Result<(), WebhookStoreError> {
        let pending = key(PENDING, delivery.webhook_id, Some(delivery.seq));
        let changes = vec![
            (
                key(DELIVERY, delivery.webhook_id, Some(delivery.seq)),
                Some(json(delivery)?),
            ),
            (
                pending,
                (delivery.status == DeliveryStatus::Pending).then(Vec::new),
            ),
        ];
        self.blocking(move |this| this.store.webhook_write(&changes).map_err(failed))
            .await
    }

    async fn deliveries(
        &self,
        webhook: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhookStoreError> {
        self.blocking(move |this| {
            let from = before.map(|seq| key(DELIVERY, webhook, Some(seq)));
            this.scan_deliveries(key(DELIVERY, webhook, None), from, true, limit, webhook)
        })
        .await
    }
}

/// Follow the log into queued deliveries until `stop`: from the stored positions, woken by the
/// workers after each commit (or every second).
pub async fn project_log(
    store: Store,
    partitions: u32,
    webhooks: RocksWebhooks,
    wake: Arc<Notify>,
    queued: Queued,
    stop: CancellationToken,
) {
    let Some(mut positions) = with_retries(&stop, "read its positions", || {
        webhooks.positions("webhooks-embedded")
    })
    .await
    else {
        return;
    };
    info!(
        resumed_partitions = positions.len(),
        "embedded webhook projection running"
    );
    // Skipped positions are stored now and then, not after every commit (each store is a
    // synced write beside the sale's): after a crash the projection reads at most that much
    // log again, and queues nothing from it that a webhook registered since wants.
    let mut skipped_stored_at = std::time::Instant::now();
    let mut skipped_unstored = false;
    while !stop.is_cancelled() {
        // With no webhook at all there is nothing to queue: skip to the log's end instead of
        // reading it (the ends are read before the list, so a webhook registered meanwhile
        // only misses what was decided before it existed, which it does not want).
        let Some(skipped) = with_retries(&stop, "check for webhooks", || {
            skip_without_webhooks(&store, partitions, &webhooks, &positions)
        })
        .await
        else {
            return;
        };
        if let Some(ends) = skipped {
            skipped_unstored |= !ends.is_empty();
            positions.extend(ends);
            if skipped_unstored && skipped_stored_at.elapsed() >= SKIPPED_STORED_EVERY {
                let all: Vec<(i32, i64)> = positions.iter().map(|(p, n)| (*p, *n)).collect();
                if with_retries(&stop, "store skipped positions", || {
                    webhooks.enqueue("webhooks-embedded", Vec::new(), &all)
                })
                .await
                .is_none()
                {
                    return;
                }
                skipped_stored_at = std::time::Instant::now();
                skipped_unstored = false;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        let read = {
            let (store, from) = (store.clone(), positions.clone());
            tokio::task::spawn_blocking(move || {
                read_log_batch(&store, partitions, &from, MAX_BATCH, |_, record| {
                    Some(record.event.clone())
                })
            })
        };
        let (events, after) = match read.await {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the webhook projection cannot read the log; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => return,
        };
        if after.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        if with_retries(&stop, "queue webhook deliveries", || {
            project(&webhooks, "webhooks-embedded", &events, &after, &queued)
        })
        .await
        .is_none()
        {
            return;
        }
        positions.extend(after);
    }
}

/// With no webhook registered: the positions after the log's current end that moved, or None
/// when there is a webhook and the log must be read.
async fn skip_without_webhooks(
    store: &Store,
    partitions: u32,
    webhooks: &RocksWebhooks,
    positions: &HashMap<i32, i64>,
) -> Result<Option<Vec<(i32, i64)>>, WebhookStoreError> {
    let mut ends = Vec::new();
    for partition in 0..partitions {
        let next = store.last_log_seq(partition).map_err(failed)? as i64 + 1;
        if positions
            .get(&(partition as i32))
            .is_none_or(|at| *at < next)
        {
            ends.push((partition as i32, next));
        }
    }
    if !webhooks.webhooks().await?.is_empty() {
        return Ok(None);
    }
    Ok(Some(ends))
}
