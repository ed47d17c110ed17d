//! The RocksDB store of the embedded seat processor: section states, the outcome of every
//! reservation id (the de-duplication table), the decided-event log and each partition's applied
//! position, one column family per table. A worker writes everything one decision batch
//! changed in ONE atomic write batch, so a crash at any moment leaves either all of a batch or
//! none of it.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions,
};
use seatflow_aggregates::{Completed, Event, Reservation, ReservationId, SectionKey, SectionState};
use seatflow_avro::{StoredSection, decode, encode};

use crate::keys;

const SECTIONS: &str = "sections";
const RESERVATIONS: &str = "reservations";
const LOG: &str = "log";
const META: &str = "meta";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored record does not decode: {0}")]
    Decode(#[from] seatflow_avro::DecodeError),
    #[error("record does not encode: {0}")]
    Encode(#[from] seatflow_avro::EncodeError),
    #[error(
        "the store at {path} was created with {stored} partitions but {configured} are configured; \
         set partitions = {stored} (SEATFLOW_PARTITIONS) or use a new data directory"
    )]
    PartitionMismatch {
        path: String,
        stored: u32,
        configured: u32,
    },
}

/// One record of the decided-event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub partition: u32,
    pub seq: u64,
    pub event: Event,
}

/// Shared handle to the store (RocksDB is safe to use from several threads).
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    sync: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

impl Store {
    /// Open (or create) the store. `sync` makes every batch reach the disk (fsync) before it is
    /// acknowledged; without it a batch survives a process crash but not a power loss.
    pub fn open(path: &Path, partitions: u32, sync: bool) -> Result<Self, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.increase_parallelism(2);
        let mut lookups = BlockBasedOptions::default();
        lookups.set_bloom_filter(10.0, false);
        let mut point_lookup = Options::default();
        point_lookup.set_block_based_table_factory(&lookups);
        let families = vec![
            ColumnFamilyDescriptor::new(SECTIONS, point_lookup.clone()),
            ColumnFamilyDescriptor::new(RESERVATIONS, point_lookup),
            ColumnFamilyDescriptor::new(LOG, Options::default()),
            ColumnFamilyDescriptor::new(META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let store = Self {
            db: Arc::new(db),
            sync,
        };
        store.check_partitions(partitions)?;
        Ok(store)
    }

    fn check_partitions(&self, configured: u32) -> Result<(), StoreError> {
        let meta = self.cf(META);
        match self.db.get_cf(meta, keys::PARTITION_COUNT)? {
            Some(bytes) => {
                let stored = keys::decode_u32(&bytes);
                if stored != configured {
                    return Err(StoreError::PartitionMismatch {
                        path: self.db.path().display().to_string(),
                        stored,
                        configured,
                    });
                }
            }
            None => {
                let mut options = WriteOptions::default();
                options.set_sync(true);
                self.db.put_cf_opt(
                    meta,
                    keys::PARTITION_COUNT,
                    configured.to_be_bytes(),
                    &options,
                )?;
            }
        }
        Ok(())
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is created at open"))
    }

    pub fn section(&self, key: &SectionKey) -> Result<Option<SectionState>, StoreError> {
        match self
            .db
            .get_pinned_cf(self.cf(SECTIONS), keys::section(key))?
        {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode::<StoredSection>(&bytes)?.state)),
        }
    }

    pub fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        match self
            .db
            .get_pinned_cf(self.cf(RESERVATIONS), keys::reservation(id))?
        {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode::<Completed>(&bytes)?.reservation)),
        }
    }

    /// The partition's applied position (0 when nothing was applied): the last log sequence
    /// number (embedded) or the next input offset (Kafka).
    pub fn applied(&self, partition: u32) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(META), keys::applied(partition))?
            .map(|bytes| keys::decode_u64(&bytes))
            .unwrap_or(0))
    }

    /// Write one decision batch atomically.
    pub fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        self.commit_all(std::slice::from_ref(batch))
    }

    /// Write the batches of several partitions atomically, with one sync.
    pub fn commit_all(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        let mut write = WriteBatch::default();
        for batch in batches {
            self.add_to(&mut write, batch)?;
        }
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        let started = std::time::Instant::now();
        self.db.write_opt(write, &options)?;
        seatflow_telemetry::metrics().rocksdb_write(started.elapsed());
        Ok(())
    }

    fn add_to(&self, write: &mut WriteBatch, batch: &CommitBatch) -> Result<(), StoreError> {
        for (key, state) in &batch.sections {
            let record = StoredSection {
                key: key.clone(),
                state: state.clone(),
            };
            write.put_cf(self.cf(SECTIONS), keys::section(key), encode(&record)?);
        }
        for record in &batch.records {
            if let Event::ReservationCompleted(completed) = &record.event {
                write.put_cf(
                    self.cf(RESERVATIONS),
                    keys::reservation(completed.reservation.id),
                    encode(completed)?,
                );
            }
            if batch.append_to_log {
                write.put_cf(
                    self.cf(LOG),
                    keys::log(record.partition, record.seq),
                    encode(&record.event)?,
                );
            }
        }
        write.put_cf(
            self.cf(META),
            keys::applied(batch.partition),
            batch.applied.to_be_bytes(),
        );
        Ok(())
    }

    /// Read a partition's log from `from_seq` (inclusive), in order.
    pub fn read_log(
        &self,
        partition: u32,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<LogRecord, StoreError>> + '_ {
        let start = keys::log(partition, from_seq);
        self.db
            .iterator_cf(self.cf(LOG), IteratorMode::From(&start, Direction::Forward))
            .map_while(move |item| match item {
                Err(e) => Some(Err(StoreError::from(e))),
                Ok((key, value)) => {
                    let (p, seq) = keys::decode_log(&key)?;
                    if p != partition {
                        return None;
                    }
                    Some(
                        decode::<Event>(&value)
                            .map(|event| LogRecord {
                                partition,
                                seq,
                                event,
                            })
                            .map_err(StoreError::from),
                    )
                }
            })
    }
}

/// What one decision batch of one partition writes.
#[derive(Debug, Default)]
pub struct CommitBatch {
    pub partition: u32,
    /// The new state of every section the batch changed.
    pub sections: Vec<(SectionKey, SectionState)>,
    /// The decided events, with their log positions.
    pub records: Vec<LogRecord>,
    /// The partition's applied position after this batch: the last log sequence number
    /// (embedded) or the next input offset (Kafka).
    pub applied: u64,
    /// Keep the records in the local log (embedded: it is THE log). On Kafka the log is the
    /// topic and only the state is written here.
    pub append_to_log: bool,
}
