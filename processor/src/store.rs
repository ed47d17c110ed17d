//! The RocksDB store of a seat processor: section states, the outcome of every reservation id
//! (the de-duplication table), the decided-event log (embedded only) and each partition's
//! position, one column family per table. It is the [`PartitionStore`] that batches are decided
//! against, in both runtimes. A worker writes everything one decision batch
//! changed in ONE atomic write batch, so a crash at any moment leaves either all of a batch or
//! none of it.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions,
};
use seatflow_aggregates::{
    Completed, Event, PartitionStore, Reservation, ReservationId, SectionKey, SectionState,
};
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

    /// The sequence number of the last record in the partition's log (0 when it is empty).
    pub fn last_log_seq(&self, partition: u32) -> Result<u64, StoreError> {
        self.position(keys::last_log_seq(partition))
    }

    /// The next offset of the partition's input topic this store has applied (Kafka; 0 when
    /// nothing was).
    pub fn input_offset(&self, partition: u32) -> Result<u64, StoreError> {
        self.position(keys::input_offset(partition))
    }

    fn position(&self, key: Vec<u8>) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(META), key)?
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
        for completed in &batch.outcomes {
            write.put_cf(
                self.cf(RESERVATIONS),
                keys::reservation(completed.reservation.id),
                encode(completed)?,
            );
        }
        match &batch.position {
            Position::Log(records) => {
                for record in records {
                    write.put_cf(
                        self.cf(LOG),
                        keys::log(record.partition, record.seq),
                        encode(&record.event)?,
                    );
                }
                if let Some(last) = records.last() {
                    write.put_cf(
                        self.cf(META),
                        keys::last_log_seq(batch.partition),
                        last.seq.to_be_bytes(),
                    );
                }
            }
            Position::InputOffset(next) => write.put_cf(
                self.cf(META),
                keys::input_offset(batch.partition),
                next.to_be_bytes(),
            ),
        }
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

impl PartitionStore for Store {
    type Error = StoreError;

    fn section(&self, key: &SectionKey) -> Result<Option<SectionState>, StoreError> {
        Store::section(self, key)
    }

    fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Store::reservation(self, id)
    }
}

/// What one decision batch of one partition writes.
#[derive(Debug)]
pub struct CommitBatch {
    pub partition: u32,
    /// The new state of every section the batch changed.
    pub sections: Vec<(SectionKey, SectionState)>,
    /// The outcome of every reservation the batch decided.
    pub outcomes: Vec<Completed>,
    /// Where the partition stands once the batch is written.
    pub position: Position,
}

/// A partition's position, in the log that is the source of truth of its runtime.
#[derive(Debug)]
pub enum Position {
    /// Embedded: the store's log is THE log. These records are appended; the last one's
    /// sequence number is the new position.
    Log(Vec<LogRecord>),
    /// Kafka: the log is the topic. The next input offset to read (the records are in Kafka).
    InputOffset(u64),
}
