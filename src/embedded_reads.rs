//! The embedded store as the read side's [`OutcomeStore`]: the outcomes memory no longer holds,
//! and every user's history, read from the RocksDB tables the workers write. Also the start of
//! the embedded read side: the catalogue and each section's state as the store has them now,
//! with no pass over the log's history.

use std::time::Instant;

use seatflow_aggregates::{Millis, Reservation, ReservationId};
use seatflow_commands::StatusCache;
use seatflow_processor::{Store, StoreError};
use seatflow_projections::{OutcomeStore, ReadModel};
use tracing::{info, warn};

/// The store, read on behalf of the read model.
#[derive(Debug)]
pub(crate) struct StoredOutcomes(pub(crate) Store);

/// A read that failed is answered as "not found", with the reason in the log: the same answer
/// as before the store held it, and the sale goes on.
fn or_nothing<T: Default>(what: &str, read: Result<T, StoreError>) -> T {
    read.unwrap_or_else(|e| {
        warn!(error = %e, "cannot read {what} from the store");
        T::default()
    })
}

impl OutcomeStore for StoredOutcomes {
    fn reservation(&self, id: ReservationId) -> Option<Reservation> {
        or_nothing("a reservation", self.0.reservation(id))
    }

    fn user_reservations(&self, user_id: &str, offset: usize, limit: usize) -> Vec<Reservation> {
        or_nothing(
            "a user's reservations",
            self.0.user_reservations(user_id, offset, limit),
        )
    }

    fn user_reservations_since(&self, user_id: &str, since: Millis) -> Vec<Reservation> {
        or_nothing(
            "a user's recent reservations",
            self.0.user_reservations_since(user_id, since),
        )
    }
}

/// Load the read model and the pre-filter's counts from the store: the catalogue, each
/// section's state and each partition's log position. Outcomes stay in the store until asked
/// for. A store written by a version without the indexes gets them first (once).
pub(crate) fn load(
    store: &Store,
    partitions: u32,
    read: &ReadModel,
    status: &StatusCache,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let indexed = store.ensure_indexes(partitions)?;
    if indexed > 0 {
        info!(
            records = indexed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "indexed the log once (a store from an earlier version)"
        );
    }
    let sections = store.catalogue()?;
    let count = sections.len();
    for (init, state) in sections {
        status.update(&init.key, state.available());
        read.restore_section(&init, state);
    }
    for partition in 0..partitions {
        for (event_id, room) in seatflow_aggregates::PartitionStore::rooms(store, partition)? {
            read.restore_room(&event_id, room);
        }
        read.restore_applied(partition, store.last_log_seq(partition)?);
    }
    info!(
        sections = count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "read models loaded from the store"
    );
    Ok(())
}
