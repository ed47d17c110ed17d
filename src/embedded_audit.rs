//! The audit projection of the embedded runtime: with `database_url` set, the all-in-one process
//! projects its own decided-event log (RocksDB) into the Postgres audit, exactly as the Kafka
//! projector does from `reservation-completed`: batches of rows written with the log positions
//! after them in one transaction (projection `audit-embedded`), so a crash or a Postgres outage
//! loses and doubles nothing. It starts from the positions stored in the database, which makes
//! it the tool that "replays the embedded log into Postgres later" too: point a seatflow that
//! ran without a database at one, and it catches up from the first record.
//!
//! The sale never waits for it: the workers only wake it (a `Notify`) after each commit. It
//! holds the store, so the process waits for it to stop before closing the store.

use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use seatflow_aggregates::Event;
use seatflow_processor::{LogRecord, Store};
use seatflow_projections::audit::{AuditRow, AuditStore};
use seatflow_projections::retry::with_retries;
use tokio::sync::Notify;
use tracing::info;

/// The name under which the embedded audit stores its positions (the embedded log's sequence
/// numbers are not Kafka offsets: the two never share positions).
pub const EMBEDDED_AUDIT_PROJECTION: &str = "audit-embedded";
const MAX_BATCH: usize = 5_000;

/// What was kept of a stretch of the log, and the (partition, next sequence number) after it.
pub(crate) type LogBatch<T> = (Vec<T>, Vec<(i32, i64)>);
type AuditBatch = LogBatch<AuditRow>;

/// What `keep` makes of the log records after `next` (partition -> next sequence number), up
/// to `max` kept in all, and the positions after the records read. Shared by the embedded
/// projections (the audit, the webhook deliveries).
pub(crate) fn read_log_batch<T>(
    store: &Store,
    partitions: u32,
    next: &HashMap<i32, i64>,
    max: usize,
    mut keep: impl FnMut(i32, &LogRecord) -> Option<T>,
) -> Result<LogBatch<T>, seatflow_processor::StoreError> {
    let mut kept = Vec::new();
    let mut positions = Vec::new();
    for partition in 0..partitions {
        let key = partition as i32;
        let from = next.get(&key).copied().unwrap_or(1).max(1) as u64;
        let mut after = None;
        for record in store.read_log(partition, from) {
            let record = record?;
            after = Some(record.seq as i64 + 1);
            kept.extend(keep(key, &record));
            if kept.len() >= max {
                break;
            }
        }
        if let Some(after) = after {
            positions.push((key, after));
        }
        if kept.len() >= max {
            break;
        }
    }
    Ok((kept, positions))
}

/// Rows read from the log after `next`, up to `MAX_BATCH` in all, and the positions after them.
fn read_batch(
    store: &Store,
    partitions: u32,
    next: &HashMap<i32, i64>,
) -> Result<AuditBatch, seatflow_processor::StoreError> {
    read_log_batch(
        store,
        partitions,
        next,
        MAX_BATCH,
        |partition, record| match &record.event {
            Event::ReservationCompleted(completed) => Some(AuditRow::from_reservation(
                &completed.reservation,
                partition,
                record.seq as i64,
            )),
            _ => None,
        },
    )
}

/// The next batch, read on a blocking thread (RocksDB reads block).
async fn next_batch(
    store: &Store,
    partitions: u32,
    from: &HashMap<i32, i64>,
) -> Result<AuditBatch, String> {
    let (store, from) = (store.clone(), from.clone());
    tokio::task::spawn_blocking(move || read_batch(&store, partitions, &from))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Project until `stop` is set: migrate, read the positions, then follow the log. Every store
/// call is retried with back-off (the same as the Kafka projector's) until it succeeds.
pub async fn run(
    store: Store,
    partitions: u32,
    audit: AuditStore,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    if with_retries(&stop, "apply the migrations", || audit.migrate())
        .await
        .is_none()
    {
        return;
    }
    let Some(mut positions) = with_retries(&stop, "read its positions", || {
        audit.positions(EMBEDDED_AUDIT_PROJECTION)
    })
    .await
    else {
        return;
    };
    info!(
        resumed_partitions = positions.len(),
        "embedded audit projection running"
    );
    while !stop.is_cancelled() {
        let Some((rows, after)) = with_retries(&stop, "read the log", || {
            next_batch(&store, partitions, &positions)
        })
        .await
        else {
            return;
        };
        if after.is_empty() {
            // Caught up: sleep until the workers commit something (or a second passes).
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        if with_retries(&stop, "write a batch", || {
            audit.apply(EMBEDDED_AUDIT_PROJECTION, &rows, &after)
        })
        .await
        .is_none()
        {
            return;
        }
        positions.extend(after);
    }
}
