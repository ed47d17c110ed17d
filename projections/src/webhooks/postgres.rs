//! The webhook store in Postgres (seatflow on Kafka): the `webhook` and `webhook_delivery`
//! tables of `sql/`, beside the audit, through its connection pool; the delivery projection's
//! positions in `projection_offset`, written in the transaction that queues its deliveries.

use std::collections::HashMap;

use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Uuid as SqlUuid};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::{Delivery, DeliveryStatus, Disabled, Webhook, WebhookStore, WebhookStoreError};
use crate::audit::{AuditError, AuditStore, store_positions};

/// Webhooks and deliveries in the audit database.
#[derive(Clone, Debug)]
pub struct PostgresWebhooks {
    audit: AuditStore,
}

impl PostgresWebhooks {
    /// Over the audit's pool (its migrations create the tables).
    pub fn new(audit: AuditStore) -> Self {
        Self { audit }
    }
}

#[derive(QueryableByName)]
struct RecordRow {
    #[diesel(sql_type = Jsonb)]
    record: Value,
}

#[derive(QueryableByName)]
struct DeliveryRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Jsonb)]
    record: Value,
}

#[derive(QueryableByName)]
struct Seq {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

fn failed(e: impl std::fmt::Display) -> WebhookStoreError {
    WebhookStoreError(e.to_string())
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Value, WebhookStoreError> {
    serde_json::to_value(value).map_err(failed)
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, WebhookStoreError> {
    serde_json::from_value(value).map_err(failed)
}

fn delivery(row: DeliveryRow) -> Result<Delivery, WebhookStoreError> {
    let mut delivery: Delivery = decode(row.record)?;
    delivery.seq = row.seq as u64;
    Ok(delivery)
}

#[async_trait::async_trait]
impl WebhookStore for PostgresWebhooks {
    async fn create(&self, webhook: &Webhook) -> Result<(), WebhookStoreError> {
        let mut connection = self.audit.connection().await.map_err(failed)?;
        sql_query("INSERT INTO webhook (id, record) VALUES ($1, $2)")
            .bind::<SqlUuid, _>(webhook.id)
            .bind::<Jsonb, _>(encode(webhook)?)
            .execute(&mut connection)
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>, WebhookStoreError> {
        let mut connection = self.audit.connection().await.map_err(failed)?;
        let rows: Vec<RecordRow> = sql_query("SELECT record FROM webhook ORDER BY id")
            .load(&mut connection)
            .await
            .map_err(failed)?;
        rows.into_iter().map(|row| decode(row.record)).collect()
    }

    async fn webhook(&self, id: Uuid) -> Result<Option<Webhook>, WebhookStoreError> {
        let mut connection = self.audit.connection().await.map_err(failed)?;
        let rows: Vec<RecordRow> = sql_query("SELECT record FROM webhook WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .load(&mut connection)
            .await
            .map_err(failed)?;
        rows.into_iter()
            .next()
            .map(|row| decode(row.record))
            .transpose()
    }

    async fn disable(&self, id: Uuid, disabled: Disabled) -> Result<(), WebhookStoreError> {
        let mut connection = self.audit.connection().await.map_err(failed)?;
        sql_query("UPDATE webhook SET record = jsonb_set(record, '{disabled}', $2) WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .bind::<Jsonb, _>(encode(&disabled)?)
            .execute(&mut connection)
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn delete(&self, id: Uuid) -> Result<bool, WebhookStoreError> {
        let mut connection = self.audit.connection().await.map_err(failed)?;
        connection
            .transaction::<_, AuditError, _>(async |connection| {
                let removed = sql_query("DELETE FROM webhook WHERE id = $1")
                    .bind::<SqlUuid, _>(id)
                    .execute(connection)
                    .await?;
                sql_query("DELETE FROM webhook_delivery WHERE webhook_id = $1")
                    .bind::<SqlUuid, _>(id)
                    .execute(connection)
                    .await?;
                Ok(removed > 0)
            })
            .await
            .map_err(failed)
    }

    async fn positions(&self, projection: &str) -> Result<HashMap<i32, i64>, WebhookStoreError> {
        self.audit.positions(projection).await.map_err(failed)
    }

    async fn enqueue(
        &self,
        projection: &str,
        deliveries: Vec<Delivery>,
        positions: &[(i32, i64)],
    ) -> Result<(), WebhookStoreError> {
        let mut connection = self.audit.connection().await.map_err(failed)?;
        let projection = projection.to_owned();
        connection
            .transaction::<_, WebhookStoreError, _>(async |connection| {
                if !deliveries.is_empty() {
                    let mut seqs: Vec<i64> = sql_query(
                        "SELECT nextval('webhook_delivery_seq') AS seq \
                         FROM generate_series(1, $1)",
                    )
                    .bind::<BigInt, _>(deliveries.len() as i64)
                    .load::<Seq>(connection)
                    .await
                    .map_err(failed)?
                    .into_iter()
                    .map(|row| row.seq)
                    .collect();
                    seqs.sort_unstable();
                    let records = deliveries
                        .iter()
                        .zip(&seqs)
                        .map(|(delivery, seq)| {
                            encode(&Delivery {
                                seq: *seq as u64,
                                ..delivery.clone()
                            })
                        })
                        .collect::<Result<Vec<Value>, _>>()?;
                    sql_query(
                        "INSERT INTO webhook_delivery (webhook_id, seq, id, pending, record) \
                         SELECT w, s, i, true, r \
                         FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::jsonb[]) \
                           AS d (w, s, i, r)",
                    )
                    .bind::<Array<SqlUuid>, _>(
                        deliveries.iter().map(|d| d.webhook_id).collect::<Vec<_>>(),
                    )
                    .bind::<Array<BigInt>, _>(seqs)
                    .bind::<Array<SqlUuid>, _>(deliveries.iter().map(|d| d.id).collect::<Vec<_>>())
                    .bind::<Array<Jsonb>, _>(records)
                    .execute(connection)
                    .await
                    .map_err(failed)?;
                }
                store_positions(connection, &projection, positions)
                    .await
                    .map_err(failed)
            })
            .await
    }

    async fn pending(
        &self,
        webhook: Uuid,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhookStoreError> {
        let mut connection = self.audit.connection().await.map_err(failed)?;
        let rows: Vec<DeliveryRow> = sql_query(
            "SELECT seq, record FROM webhook_delivery WHERE webhook_id = $1 AND pending \
             ORDER BY seq LIMIT $2",
        )
        .bind::<SqlUuid, _>(webhook)
        .bind::<BigInt, _>(limit as i64)
        .load(&mut connection)
        .await
        .map_err(failed)?;
        rows.into_iter().map(delivery).collect()
    }

    async fn record(&self, delivery: &Delivery) -> Result<(), WebhookStoreError> {
        let mut connection = self.audit.connection().await.map_err(failed)?;
        sql_query(
            "UPDATE webhook_delivery SET record = $3, pending = $4 \
             WHERE webhook_id = $1 AND seq = $2",
        )
        .bind::<SqlUuid, _>(delivery.webhook_id)
        .bind::<BigInt, _>(delivery.seq as i64)
        .bind::<Jsonb, _>(encode(delivery)?)
        .bind::<Bool, _>(delivery.status == DeliveryStatus::Pending)
        .execute(&mut connection)
        .await
        .map_err(failed)?;
        Ok(())
    }

    async fn deliveries(
        &self,
        webhook: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhookStoreError> {
        let mut connection = self.audit.connection().await.map_err(failed)?;
        let rows: Vec<DeliveryRow> = sql_query(
            "SELECT seq, record FROM webhook_delivery \
             WHERE webhook_id = $1 AND ($2::int8 IS NULL OR seq < $2) \
             ORDER BY seq DESC LIMIT $3",
        )
        .bind::<SqlUuid, _>(webhook)
        .bind::<Nullable<BigInt>, _>(before.map(|seq| seq as i64))
        .bind::<BigInt, _>(limit as i64)
        .load(&mut connection)
        .await
        .map_err(failed)?;
        rows.into_iter().map(delivery).collect()
    }
}

impl From<diesel::result::Error> for WebhookStoreError {
    fn from(e: diesel::result::Error) -> Self {
        failed(e)
    }
}
