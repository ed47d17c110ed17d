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
use seatflow_processor::Store;
use seatflow_projections::audit::{AuditRow, AuditStore};
use tokio::sync::Notify;
use tracing::{info, warn};

/// The name under which the embedded audit stores its positions (the embedded log's sequence
/// numbers are not Kafka offsets: the two never share positions).
pub const EMBEDDED_AUDIT_PROJECTION: &str = "audit-embedded";
const MAX_BATCH: usize = 5_000;

/// Rows to write, and the (partition, next sequence number) after them.
type AuditBatch = (Vec<AuditRow>, Vec<(i32, i64)>);

/// Rows read from the log after `next` (partition -> next sequence number), up to `MAX_BATCH`
/// in all, and the positions after them.
fn read_batch(
    store: &Store,
    partitions: u32,
    next: &HashMap<i32, i64>,
) -> Result<AuditBatch, seatflow_processor::StoreError> {
    let mut rows = Vec::new();
    let mut positions = Vec::new();
    for partition in 0..partitions {
        let key = partition as i32;
        let from = next.get(&key).copied().unwrap_or(1).max(1) as u64;
        let mut after = None;
        for record in store.read_log(partition, from) {
            let record = record?;
            after = Some(record.seq as i64 + 1);
            if let Event::ReservationCompleted(completed) = &record.event {
                rows.push(AuditRow::from_reservation(
                    &completed.reservation,
                    key,
                    record.seq as i64,
                ));
            }
            if rows.len() >= MAX_BATCH {
                break;
            }
        }
        if let Some(after) = after {
            positions.push((key, after));
        }
        if rows.len() >= MAX_BATCH {
            break;
        }
    }
    Ok((rows, positions))
}

/// Project until `stop` is set: migrate, read the positions, then follow the log.
pub async fn run(
    store: Store,
    partitions: u32,
    audit: AuditStore,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut next: Option<HashMap<i32, i64>> = None;
    while !stop.is_cancelled() {
        let step: Result<bool, String> = async {
            let positions = match &mut next {
                Some(positions) => positions,
                None => {
                    audit.migrate().await.map_err(|e| e.to_string())?;
                    let stored = audit
                        .positions(EMBEDDED_AUDIT_PROJECTION)
                        .await
                        .map_err(|e| e.to_string())?;
                    info!(
                        resumed_partitions = stored.len(),
                        "embedded audit projection running"
                    );
                    next.insert(stored)
                }
            };
            let (store, read_from) = (store.clone(), positions.clone());
            let (rows, after) =
                tokio::task::spawn_blocking(move || read_batch(&store, partitions, &read_from))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            if after.is_empty() {
                return Ok(false);
            }
            audit
                .apply(EMBEDDED_AUDIT_PROJECTION, &rows, &after)
                .await
                .map_err(|e| e.to_string())?;
            positions.extend(after);
            Ok(true)
        }
        .await;
        match step {
            Ok(true) => backoff = Duration::from_millis(100),
            // Caught up: sleep until the workers commit something (or a second passes).
            Ok(false) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            }
            Err(error) => {
                warn!(%error, retry_in_ms = backoff.as_millis() as u64, "embedded audit projection cannot write; retrying");
                // Woken early only to stop.
                let _ = tokio::time::timeout(backoff, wake.notified()).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
