//! The RocksDB store of a seat processor: section states (each as it was initialised, and the
//! rows a batch changed since, so that a batch writes a few bytes per section, not the
//! section), the outcome of every reservation id
//! (the de-duplication table), the decided-event log (embedded only) and each partition's
//! position, one column family per table. Both runtimes keep here what an owner reads at start
//! instead of its whole history: the live holds by end time, each section's waitlist in order
//! and each user's quota in a limited event. The embedded runtime also keeps the commands a
//! partition handed on to another until they are decided (the outbox), and two indexes of its
//! log: the catalogue (every section's initialisation) and each user's reservation ids (their
//! history, read on demand instead of kept in memory). It is the [`PartitionStore`] that
//! batches are decided against, in both runtimes. A worker writes everything one decision batch
//! changed in ONE atomic write batch, so a crash at any moment leaves either all of a batch or
//! none of it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction,
    IteratorMode, Options, ReadOptions, SliceTransform, WriteBatch, WriteOptions,
};
use seatflow_aggregates::room::{RoomHeader, RoomState, Ticket};
use seatflow_aggregates::{
    Command, Completed, Event, Hold, Millis, PartitionStore, QuotaKey, QuotaState, Reservation,
    ReservationId, RoomRequest, SectionChange, SectionInitialized, SectionKey, SectionState,
    Status, Waiting,
};
use seatflow_avro::{StoredQuota, StoredRoom, StoredSection, StoredTicket, decode, encode};

use crate::keys;

const SECTIONS: &str = "sections";
/// The rows of each section changed since its state in `sections` was written (see
/// `keys::section_row`): a section is read as that state with these rows laid over it.
const SECTION_ROWS: &str = "section_rows";
const RESERVATIONS: &str = "reservations";
const LOG: &str = "log";
const META: &str = "meta";
const CATALOGUE: &str = "catalogue";
/// How much write-ahead log a start after a crash may have to replay.
const MAX_TOTAL_WAL_BYTES: u64 = 64 << 20;
/// The block cache: data blocks, and the tables' indexes and filters.
const BLOCK_CACHE_BYTES: usize = 128 << 20;

/// The bloom filter a table has: none (read by scans), on whole keys (point lookups) or on the
/// key's fixed prefix (the user index).
#[derive(Clone, Copy)]
enum Filter {
    None,
    WholeKey,
    Prefix,
}
const BY_USER: &str = "by_user";
/// The reservations still HELD, by partition and end of hold: what a partition's clock reads
/// at start (without a pass over its reservations).
const HOLDS: &str = "holds";
/// Each user's quota in each event that limits users (both runtimes).
const QUOTAS: &str = "quotas";
/// The WAITLISTED reservations of each section in order (both runtimes), with the seats they
/// ask for: what an owner reads with a section.
const WAITLISTS: &str = "waitlists";
/// Commands a partition handed on to another, until the batch that decides them (embedded; on
/// Kafka the commands topic holds them).
const OUTBOX: &str = "outbox";
/// The waiting rooms of each partition: a header per room and a record per ticket (see
/// `keys::room`), so a join or an admission writes one ticket, not the line.
const ROOMS: &str = "rooms";
/// The embedded runtime's webhooks, their deliveries and the delivery projection's positions,
/// laid out by the webhook store of the root crate (`src/embedded_webhooks.rs`).
const WEBHOOKS: &str = "webhooks";

/// Where a handed-on command waits in the outbox (see `keys::outbox`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutboxKey([u8; 21]);

impl OutboxKey {
    /// The key of `command` handed on to partition `target`; None for a command that is never
    /// handed on (it has no reservation id).
    pub fn of(target: u32, command: &Command) -> Option<Self> {
        let kind = match command {
            Command::InitSection(_) => return None,
            Command::Reserve(_) => 1,
            Command::Cancel(_) => 2,
            Command::Confirm(_) => 3,
            Command::ClaimQuota(_) => 4,
            Command::ReleaseQuota(_) => 5,
            // A session's end is handed on once per confirmed reservation.
            Command::Room(room) => match &room.request {
                RoomRequest::EndSession { reservation_id, .. } => {
                    return Some(Self(keys::outbox(target, *reservation_id, 6)));
                }
                _ => return None,
            },
        };
        let id = command.reservation_id()?;
        Some(Self(keys::outbox(target, id, kind)))
    }
}

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
    #[error("a stored outcome is a record of another kind")]
    NotAnOutcome,
    #[error("a stored row of section {section} does not fit its layout ({bytes} bytes)")]
    BadRow { section: String, bytes: usize },
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

/// Every column family, in the order they are opened.
const FAMILIES: [&str; 13] = [
    SECTIONS,
    RESERVATIONS,
    QUOTAS,
    SECTION_ROWS,
    OUTBOX,
    WAITLISTS,
    LOG,
    META,
    CATALOGUE,
    BY_USER,
    ROOMS,
    WEBHOOKS,
    HOLDS,
];

/// What the store holds in memory, by kind, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMemory {
    /// Every column family's memtables (written, not yet flushed to a table file).
    pub memtables: u64,
    /// The one block cache: data blocks, and the tables' indexes and filters.
    pub block_cache: u64,
    /// Of the block cache, what is pinned (the top levels of indexes and filters, and blocks
    /// in use).
    pub block_cache_pinned: u64,
    /// Table readers outside the cache.
    pub table_readers: u64,
}

/// Shared handle to the store (RocksDB is safe to use from several threads).
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    cache: Cache,
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
        // A write-ahead log file is kept until every column family flushed what it holds; the
        // small tables (positions, catalogue) rarely fill a memtable and would keep every file,
        // which a start after a crash then replays (gigabytes after a million decisions).
        // Past this total the tables holding the oldest file are flushed: a crash replays at
        // most about this much.
        options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // The tables' indexes and filters live in one bounded block cache, partitioned so that
        // only their small top level stays pinned: by default every table file's whole index and
        // filter is held in memory outside any cache, which grows with the data (~7 MB per
        // million reservations).
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let table = |filter: Filter| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_pin_top_level_index_and_filter(true);
            table.set_metadata_block_size(4096);
            match filter {
                Filter::None => {}
                Filter::WholeKey => {
                    table.set_bloom_filter(10.0, false);
                    table.set_partition_filters(true);
                }
                Filter::Prefix => {
                    table.set_bloom_filter(10.0, false);
                    table.set_partition_filters(true);
                    table.set_whole_key_filtering(false);
                }
            }
            table
        };
        let mut point_lookup = Options::default();
        point_lookup.set_block_based_table_factory(&table(Filter::WholeKey));
        // A user's keys share an 8-byte prefix: the bloom filter is built on it, so asking for a
        // user who has no reservations (most requests of a sale) rarely touches a data block.
        let mut user_index = Options::default();
        user_index.set_block_based_table_factory(&table(Filter::Prefix));
        user_index.set_prefix_extractor(SliceTransform::create_fixed_prefix(8));
        user_index.set_memtable_prefix_bloom_ratio(0.1);
        let mut scanned = Options::default();
        scanned.set_block_based_table_factory(&table(Filter::None));
        // A store from before holds (quotas) existed gets the family empty, which is right: it
        // has no HELD reservation (no event that limits users).
        let families = vec![
            ColumnFamilyDescriptor::new(SECTIONS, point_lookup.clone()),
            ColumnFamilyDescriptor::new(RESERVATIONS, point_lookup.clone()),
            ColumnFamilyDescriptor::new(QUOTAS, point_lookup),
            ColumnFamilyDescriptor::new(SECTION_ROWS, scanned.clone()),
            ColumnFamilyDescriptor::new(OUTBOX, scanned.clone()),
            ColumnFamilyDescriptor::new(WAITLISTS, scanned.clone()),
            ColumnFamilyDescriptor::new(LOG, scanned.clone()),
            ColumnFamilyDescriptor::new(META, scanned.clone()),
            ColumnFamilyDescriptor::new(CATALOGUE, scanned.clone()),
            ColumnFamilyDescriptor::new(BY_USER, user_index),
            ColumnFamilyDescriptor::new(ROOMS, scanned.clone()),
            ColumnFamilyDescriptor::new(WEBHOOKS, scanned.clone()),
            ColumnFamilyDescriptor::new(HOLDS, scanned),
        ];
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let store = Self {
            db: Arc::new(db),
            cache,
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
                // A new store: its indexes are written with its log from the first batch on.
                let mut new = WriteBatch::default();
                new.put_cf(meta, keys::PARTITION_COUNT, configured.to_be_bytes());
                new.put_cf(meta, keys::INDEXES_BUILT, []);
                let mut options = WriteOptions::default();
                options.set_sync(true);
                self.db.write_opt(new, &options)?;
            }
        }
        Ok(())
    }

    /// What the store holds in memory now, by kind.
    pub fn memory(&self) -> Result<StoreMemory, StoreError> {
        let mut memory = StoreMemory {
            block_cache: self.cache.get_usage() as u64,
            block_cache_pinned: self.cache.get_pinned_usage() as u64,
            ..StoreMemory::default()
        };
        for family in FAMILIES {
            let cf = self.cf(family);
            let property = |name| self.db.property_int_value_cf(cf, name);
            memory.memtables +=
                property(rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES)?.unwrap_or(0);
            memory.table_readers +=
                property(rocksdb::properties::ESTIMATE_TABLE_READERS_MEM)?.unwrap_or(0);
        }
        Ok(memory)
    }

    /// Put what the store holds in memory into the process's metrics
    /// (`seatflow_rocksdb_memory_bytes`).
    pub fn report_memory(&self) -> Result<(), StoreError> {
        let memory = self.memory()?;
        let metrics = seatflow_telemetry::metrics();
        metrics.store_memory("memtables", memory.memtables);
        metrics.store_memory("block_cache", memory.block_cache);
        metrics.store_memory("block_cache_pinned", memory.block_cache_pinned);
        metrics.store_memory("table_readers", memory.table_readers);
        Ok(())
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is created at open"))
    }

    /// A section's state: as it was last written whole, with the rows written since laid over.
    pub fn section(&self, key: &SectionKey) -> Result<Option<SectionState>, StoreError> {
        let Some(bytes) = self
            .db
            .get_pinned_cf(self.cf(SECTIONS), keys::section(key))?
        else {
            return Ok(None);
        };
        let mut state = decode::<StoredSection>(&bytes)?.state;
        let prefix = keys::section_rows_prefix(key);
        for item in self.db.iterator_cf(
            self.cf(SECTION_ROWS),
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (row_key, bits) = item?;
            if !row_key.starts_with(&prefix) {
                break;
            }
            let fits = keys::decode_section_row(&row_key, prefix.len())
                .is_some_and(|row| state.set_row_bits(row, &bits));
            if !fits {
                return Err(StoreError::BadRow {
                    section: key.to_string(),
                    bytes: bits.len(),
                });
            }
        }
        Ok(Some(state))
    }

    pub fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        match self
            .db
            .get_pinned_cf(self.cf(RESERVATIONS), keys::reservation(id))?
        {
            None => Ok(None),
            Some(bytes) => decode_outcome(&bytes).map(Some),
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
        for section in &batch.sections {
            self.write_section(write, section)?;
        }
        // The log's records are encoded first: an outcome that is the last record of its
        // reservation in this batch is stored as that record's bytes (encoded once, not twice:
        // the encoding was ~13 % of the server's CPU when every request is decided).
        let records: &[LogRecord] = match &batch.position {
            Position::Log(records) => records,
            Position::InputOffset(_) => &[],
        };
        let logged = records
            .iter()
            .map(|record| encode(&record.event))
            .collect::<Result<Vec<_>, _>>()?;
        let last_record: HashMap<ReservationId, usize> = records
            .iter()
            .enumerate()
            .filter_map(|(at, record)| match &record.event {
                Event::ReservationCompleted(completed) => Some((completed.reservation.id, at)),
                Event::SectionInitialized(_) | Event::Room(_) => None,
            })
            .collect();
        for completed in &batch.outcomes {
            let reservation = &completed.reservation;
            let recorded = last_record.get(&reservation.id).filter(|at| {
                matches!(&records[**at].event, Event::ReservationCompleted(last) if last == completed)
            });
            let value = match recorded {
                Some(at) => std::borrow::Cow::Borrowed(&logged[*at][..]),
                None => std::borrow::Cow::Owned(encode(completed)?),
            };
            write.put_cf(
                self.cf(RESERVATIONS),
                keys::reservation(reservation.id),
                value,
            );
            // A reservation keeps its place when it moves on: the waitlist entry goes then.
            if let Some(place) = reservation.checkout.waitlisted {
                let key = keys::waitlist(batch.partition, &reservation.key, place, reservation.id);
                if reservation.status == Status::Waitlisted {
                    write.put_cf(
                        self.cf(WAITLISTS),
                        key,
                        reservation.requested_seats.to_be_bytes(),
                    );
                } else {
                    write.delete_cf(self.cf(WAITLISTS), key);
                }
            }
            // A reservation keeps its hold's end when it moves on: the index entry goes then.
            if let Some(expires_at) = reservation.checkout.expires_at {
                let key = keys::hold(batch.partition, expires_at, reservation.id);
                if reservation.status == Status::Held {
                    write.put_cf(self.cf(HOLDS), key, keys::section(&reservation.key));
                } else {
                    write.delete_cf(self.cf(HOLDS), key);
                }
            }
        }
        for (key, state) in &batch.quotas {
            if state.is_empty() {
                write.delete_cf(self.cf(QUOTAS), keys::quota(key));
            } else {
                let record = StoredQuota {
                    key: key.clone(),
                    state: state.clone(),
                };
                write.put_cf(self.cf(QUOTAS), keys::quota(key), encode(&record)?);
            }
        }
        for room in &batch.rooms {
            let header = StoredRoom {
                event_id: room.event_id.clone(),
                header: room.header,
            };
            write.put_cf(
                self.cf(ROOMS),
                keys::room(batch.partition, &room.event_id, None),
                encode(&header)?,
            );
            for ticket in &room.tickets {
                write.put_cf(
                    self.cf(ROOMS),
                    keys::room(batch.partition, &room.event_id, Some(ticket.id)),
                    encode(&StoredTicket(ticket.clone()))?,
                );
            }
        }
        for (key, command) in &batch.handed_on {
            write.put_cf(self.cf(OUTBOX), key.0, encode(command)?);
        }
        for key in &batch.delivered {
            write.delete_cf(self.cf(OUTBOX), key.0);
        }
        match &batch.position {
            Position::Log(_) => {
                for (record, encoded) in records.iter().zip(&logged) {
                    self.index(write, &record.event, encoded);
                    write.put_cf(
                        self.cf(LOG),
                        keys::log(record.partition, record.seq),
                        encoded,
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

    /// Add a section's change to `write`: the rows it names, or the whole state (which replaces
    /// every row written before it).
    fn write_section(
        &self,
        write: &mut WriteBatch,
        section: &SectionWrite,
    ) -> Result<(), StoreError> {
        let SectionWrite { key, state, change } = section;
        match change {
            SectionChange::Whole => {
                let record = StoredSection {
                    key: key.clone(),
                    state: state.clone(),
                };
                write.put_cf(self.cf(SECTIONS), keys::section(key), encode(&record)?);
                let prefix = keys::section_rows_prefix(key);
                let mut end = prefix.clone();
                end.extend_from_slice(&[0xff, 0xff, 0xff]);
                write.delete_range_cf(self.cf(SECTION_ROWS), prefix, end);
            }
            SectionChange::Rows(rows) => {
                for row in rows {
                    if let Some(bits) = state.row_bits(*row) {
                        write.put_cf(self.cf(SECTION_ROWS), keys::section_row(key, *row), bits);
                    }
                }
            }
        }
        Ok(())
    }

    /// Add what `event` (encoded as `encoded`) changes in the log's indexes to `write`.
    fn index(&self, write: &mut WriteBatch, event: &Event, encoded: &[u8]) {
        match event {
            Event::SectionInitialized(init) => {
                write.put_cf(self.cf(CATALOGUE), keys::section(&init.key), encoded);
            }
            Event::ReservationCompleted(completed) => {
                let reservation = &completed.reservation;
                write.put_cf(
                    self.cf(BY_USER),
                    keys::user_reservation(&reservation.user_id, reservation.id),
                    [],
                );
                write.put_cf(
                    self.cf(BY_USER),
                    keys::user_marker(&reservation.user_id),
                    [],
                );
            }
            Event::Room(_) => {}
        }
    }

    /// Build the catalogue and user indexes from the whole log, once: a store written before
    /// they existed gets them at its first start with this version. Returns the records read
    /// (0 when the indexes were already there).
    pub fn ensure_indexes(&self, partitions: u32) -> Result<u64, StoreError> {
        if self
            .db
            .get_cf(self.cf(META), keys::INDEXES_BUILT)?
            .is_some()
        {
            return Ok(0);
        }
        let mut read = 0u64;
        for partition in 0..partitions {
            let mut write = WriteBatch::default();
            let start = keys::log(partition, 1);
            for item in self
                .db
                .iterator_cf(self.cf(LOG), IteratorMode::From(&start, Direction::Forward))
            {
                let (key, encoded) = item?;
                if keys::decode_log(&key).is_none_or(|(p, _)| p != partition) {
                    break;
                }
                // The stored bytes are the encoded event: indexed as they are, not re-encoded.
                self.index(&mut write, &decode::<Event>(&encoded)?, &encoded);
                read += 1;
                if write.len() >= 10_000 {
                    self.db.write(std::mem::take(&mut write))?;
                }
                if read.is_multiple_of(1_000_000) {
                    tracing::info!(
                        records = read,
                        "indexing the log (once, a store from an earlier version)"
                    );
                }
            }
            self.db.write(write)?;
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .put_cf_opt(self.cf(META), keys::INDEXES_BUILT, [], &options)?;
        Ok(read)
    }

    /// Every section ever initialised, with its state now: the catalogue a start reads.
    pub fn catalogue(&self) -> Result<Vec<(SectionInitialized, SectionState)>, StoreError> {
        let mut sections = Vec::new();
        for item in self.db.iterator_cf(self.cf(CATALOGUE), IteratorMode::Start) {
            let (_, value) = item?;
            let Event::SectionInitialized(init) = decode::<Event>(&value)? else {
                continue;
            };
            let state = self
                .section(&init.key)?
                .unwrap_or_else(|| SectionState::new(init.layout));
            sections.push((init, state));
        }
        Ok(sections)
    }

    /// A user's reservations, newest (by request time) first, `limit` of them after `offset`.
    pub fn user_reservations(
        &self,
        user_id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Reservation>, StoreError> {
        let newest = ReservationId(uuid::Uuid::max());
        let ids = self.user_ids(user_id, newest, Direction::Reverse, offset + limit)?;
        self.reservations(ids.into_iter().skip(offset))
    }

    /// A user's reservations requested at or after `since`, oldest first.
    pub fn user_reservations_since(
        &self,
        user_id: &str,
        since: Millis,
    ) -> Result<Vec<Reservation>, StoreError> {
        // Asked for every reservation request (is it a retry?): a user who has none is answered
        // by one point read, mostly by the bloom filters alone.
        if self
            .db
            .get_pinned_cf(self.cf(BY_USER), keys::user_marker(user_id))?
            .is_none()
        {
            return Ok(Vec::new());
        }
        // Ids are UUID v7: their first 48 bits are the milliseconds they were made at, a moment
        // before the request time. A second of slack; the request time decides.
        let earliest = u128::try_from(since.saturating_sub(1_000).max(0)).unwrap_or(0) << 80;
        let from = ReservationId(uuid::Uuid::from_u128(earliest));
        let ids = self.user_ids(user_id, from, Direction::Forward, usize::MAX)?;
        let mut reservations = self.reservations(ids.into_iter())?;
        reservations.retain(|r| r.requested_at >= since);
        Ok(reservations)
    }

    /// Up to `most` of the user's reservation ids from `from` on, in `direction` (by id).
    fn user_ids(
        &self,
        user_id: &str,
        from: ReservationId,
        direction: Direction,
        most: usize,
    ) -> Result<Vec<ReservationId>, StoreError> {
        let prefix = keys::user_prefix(user_id);
        let start = keys::user_reservation(user_id, from);
        let mut ids = Vec::new();
        for item in self.db.iterator_cf_opt(
            self.cf(BY_USER),
            same_prefix(),
            IteratorMode::From(&start, direction),
        ) {
            let (key, _) = item?;
            if ids.len() >= most || !key.starts_with(&prefix[..8]) {
                break;
            }
            // Another user may share the 8-byte hash.
            if let Some(id) = keys::decode_user_reservation(&prefix, &key) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn reservations(
        &self,
        ids: impl Iterator<Item = ReservationId>,
    ) -> Result<Vec<Reservation>, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(reservation) = self.reservation(id)? {
                out.push(reservation);
            }
        }
        Ok(out)
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

/// A key and its value, as stored.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The webhook table: keys and values as its one user (the embedded webhook store) lays them out.
impl Store {
    pub fn webhook_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(WEBHOOKS), key)?)
    }

    /// Up to `limit` entries whose keys start with `prefix`, in key order from `from` (or the
    /// prefix's first key), or in reverse order from the last key before `from` (or the
    /// prefix's last key) when `reverse`.
    pub fn webhook_scan(
        &self,
        prefix: &[u8],
        from: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let mut past_prefix = prefix.to_vec();
        past_prefix.extend_from_slice(&[0xff; 9]);
        let mode = match (from, reverse) {
            (Some(from), false) => IteratorMode::From(from, Direction::Forward),
            (None, false) => IteratorMode::From(prefix, Direction::Forward),
            (Some(from), true) => IteratorMode::From(from, Direction::Reverse),
            (None, true) => IteratorMode::From(&past_prefix, Direction::Reverse),
        };
        let mut found = Vec::new();
        for item in self.db.iterator_cf(self.cf(WEBHOOKS), mode) {
            let (key, value) = item?;
            if !key.starts_with(prefix) || found.len() >= limit {
                break;
            }
            // A reverse scan from `from` starts at it when it exists: it is excluded.
            if reverse && from.is_some_and(|from| *key == *from) {
                continue;
            }
            found.push((key.to_vec(), value.to_vec()));
        }
        Ok(found)
    }

    /// Write (`Some`) and delete (`None`) entries in one atomic write, synced as the store is.
    pub fn webhook_write(&self, changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let table = self.cf(WEBHOOKS);
        let mut batch = WriteBatch::default();
        for (key, value) in changes {
            match value {
                Some(value) => batch.put_cf(table, key, value),
                None => batch.delete_cf(table, key),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }
}

/// Reads of the user index stay within one user's 8-byte prefix (and so may use its bloom filter).
fn same_prefix() -> ReadOptions {
    let mut options = ReadOptions::default();
    options.set_prefix_same_as_start(true);
    options
}

impl Store {
    /// The commands handed on to `partition` and not decided yet, in key order.
    pub fn outbox(&self, partition: u32) -> Result<Vec<(OutboxKey, Command)>, StoreError> {
        let mut waiting = Vec::new();
        self.scan_partition(OUTBOX, partition, |key, value| {
            if let Ok(key) = <[u8; 21]>::try_from(key) {
                waiting.push((OutboxKey(key), decode::<Command>(value)?));
            }
            Ok(())
        })?;
        Ok(waiting)
    }

    /// Every entry of a table whose keys start with `partition`, in key order.
    fn scan_partition(
        &self,
        table: &str,
        partition: u32,
        mut entry: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let prefix = partition.to_be_bytes();
        for item in self.db.iterator_cf(
            self.cf(table),
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            entry(&key, &value)?;
        }
        Ok(())
    }
}

impl PartitionStore for Store {
    type Error = StoreError;

    fn waitlist(&self, partition: u32, key: &SectionKey) -> Result<Vec<Waiting>, StoreError> {
        let prefix = keys::waitlist_prefix(partition, key);
        let mut waiting = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(WAITLISTS),
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (entry, seats) = item?;
            if !entry.starts_with(&prefix) {
                break;
            }
            if let (Some((place, id)), Ok(seats)) = (
                keys::decode_waitlist(&entry, prefix.len()),
                <[u8; 2]>::try_from(&seats[..]),
            ) {
                waiting.push(Waiting {
                    place,
                    id,
                    seats: u16::from_be_bytes(seats),
                });
            }
        }
        Ok(waiting)
    }

    fn quota(&self, key: &QuotaKey) -> Result<Option<QuotaState>, StoreError> {
        match self.db.get_pinned_cf(self.cf(QUOTAS), keys::quota(key))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode::<StoredQuota>(&bytes)?.state)),
        }
    }

    fn section(&self, key: &SectionKey) -> Result<Option<SectionState>, StoreError> {
        Store::section(self, key)
    }

    fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Store::reservation(self, id)
    }

    fn rooms(&self, partition: u32) -> Result<Vec<(String, RoomState)>, StoreError> {
        let mut rooms = Vec::new();
        let mut current: Option<(StoredRoom, Vec<Ticket>)> = None;
        // A room's header sorts before its tickets (see `keys::room`).
        self.scan_partition(ROOMS, partition, |key, value| {
            if keys::is_room_header(key) {
                let header = decode::<StoredRoom>(value)?;
                if let Some((done, tickets)) = current.replace((header, Vec::new())) {
                    rooms.push((done.event_id, RoomState::restore(done.header, tickets)));
                }
            } else if let Some((_, tickets)) = current.as_mut() {
                tickets.push(decode::<StoredTicket>(value)?.0);
            }
            Ok(())
        })?;
        if let Some((done, tickets)) = current {
            rooms.push((done.event_id, RoomState::restore(done.header, tickets)));
        }
        Ok(rooms)
    }

    fn holds(&self, partition: u32) -> Result<Vec<Hold>, StoreError> {
        let mut holds = Vec::new();
        self.scan_partition(HOLDS, partition, |key, value| {
            if let (Some((expires_at, id)), Some(section)) =
                (keys::decode_hold(key), keys::decode_section(value))
            {
                holds.push(Hold {
                    expires_at,
                    id,
                    key: section,
                });
            }
            Ok(())
        })?;
        Ok(holds)
    }
}

/// A stored outcome: a `Completed`, or the log record (an `Event`) that decided it, whose bytes
/// the embedded runtime stores instead of encoding the same reservation twice.
fn decode_outcome(bytes: &[u8]) -> Result<Reservation, StoreError> {
    match decode::<Completed>(bytes) {
        Ok(completed) => Ok(completed.reservation),
        Err(seatflow_avro::DecodeError::UnknownSchema { .. }) => match decode::<Event>(bytes)? {
            Event::ReservationCompleted(completed) => Ok(completed.reservation),
            Event::SectionInitialized(_) | Event::Room(_) => Err(StoreError::NotAnOutcome),
        },
        Err(e) => Err(e.into()),
    }
}

/// What one decision batch of one partition writes.
#[derive(Debug)]
pub struct CommitBatch {
    pub partition: u32,
    /// Every section the batch changed.
    pub sections: Vec<SectionWrite>,
    /// The outcome of every reservation the batch decided.
    pub outcomes: Vec<Completed>,
    /// The state of every quota the batch changed (an empty one is deleted).
    pub quotas: Vec<(QuotaKey, QuotaState)>,
    /// Commands the batch handed on to other partitions, kept until decided (embedded).
    pub handed_on: Vec<(OutboxKey, Command)>,
    /// Handed-on commands the batch decided: out of the outbox (embedded).
    pub delivered: Vec<OutboxKey>,
    /// The waiting rooms the batch changed: headers and changed tickets.
    pub rooms: Vec<RoomChange>,
    /// Where the partition stands once the batch is written.
    pub position: Position,
}

/// A section a batch changed: its state at the end of the batch and what of it changed (what is
/// written).
#[derive(Debug)]
pub struct SectionWrite {
    pub key: SectionKey,
    pub state: SectionState,
    pub change: SectionChange,
}

impl SectionWrite {
    /// All of a section's state (a section read from elsewhere, e.g. Kafka's snapshots).
    pub fn whole(key: SectionKey, state: SectionState) -> Self {
        Self {
            key,
            state,
            change: SectionChange::Whole,
        }
    }
}

/// A waiting room a batch changed.
#[derive(Debug)]
pub struct RoomChange {
    pub event_id: String,
    pub header: RoomHeader,
    pub tickets: Vec<Ticket>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use seatflow_aggregates::test_util::{MemoryPartition, NOW, cancel_of, init, key, reserve};
    use seatflow_aggregates::{Action, Layout, Outcome, Partition, Seat, SeatRequest, Status};

    /// A store holding one section and three reservations (zoe's two, amy's one).
    fn store_with_history(dir: &Path) -> Store {
        let store = Store::open(dir, 1, false).expect("open");
        let mut partition = MemoryPartition::default();
        partition.handle(&init("A", 2, 5), NOW);
        for user in ["zoe", "amy", "zoe"] {
            partition.handle(&reserve("A", user, SeatRequest::Adjacent(1)), NOW);
        }
        let records: Vec<LogRecord> = partition
            .log()
            .iter()
            .enumerate()
            .map(|(at, event)| LogRecord {
                partition: 0,
                seq: at as u64 + 1,
                event: event.clone(),
            })
            .collect();
        let outcomes = records
            .iter()
            .filter_map(|record| match &record.event {
                Event::ReservationCompleted(completed) => Some(completed.clone()),
                Event::SectionInitialized(_) | Event::Room(_) => None,
            })
            .collect();
        let state = PartitionStore::section(&partition.store, &key("A"))
            .expect("memory")
            .expect("section");
        store
            .commit(&CommitBatch {
                partition: 0,
                sections: vec![SectionWrite::whole(key("A"), state)],
                outcomes,
                quotas: Vec::new(),
                rooms: Vec::new(),
                handed_on: Vec::new(),
                delivered: Vec::new(),
                position: Position::Log(records),
            })
            .expect("commit");
        store
    }

    /// Users' histories and the catalogue as the indexes answer them.
    fn answers(store: &Store) -> (Vec<Vec<ReservationId>>, Vec<(SectionKey, u32)>) {
        let ids = |found: Vec<Reservation>| found.iter().map(|r| r.id).collect::<Vec<_>>();
        let histories = vec![
            ids(store.user_reservations("zoe", 0, 10).expect("zoe")),
            ids(store.user_reservations("zoe", 1, 1).expect("page")),
            ids(store.user_reservations("amy", 0, 10).expect("amy")),
            ids(store
                .user_reservations("zo", 0, 10)
                .expect("a prefix of zoe")),
            ids(store.user_reservations_since("zoe", NOW).expect("since")),
            ids(store
                .user_reservations_since("zoe", NOW + 1)
                .expect("later")),
        ];
        let catalogue = store
            .catalogue()
            .expect("catalogue")
            .into_iter()
            .map(|(init, state)| (init.key, state.available()))
            .collect();
        (histories, catalogue)
    }

    #[test]
    fn the_indexes_answer_histories_and_the_catalogue_and_an_old_store_gets_them_once() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store_with_history(dir.path());
        assert_eq!(
            store.ensure_indexes(1).expect("indexes"),
            0,
            "a new store has them"
        );
        let (histories, catalogue) = answers(&store);
        let zoe = &histories[0];
        assert_eq!(zoe.len(), 2);
        assert!(zoe[0] > zoe[1], "newest first");
        assert_eq!(histories[1], vec![zoe[1]]);
        assert_eq!(histories[2].len(), 1);
        assert!(histories[3].is_empty(), "another user's keys are not read");
        assert_eq!(histories[4].len(), 2);
        assert!(histories[5].is_empty(), "requested before `since`");
        assert_eq!(catalogue, vec![(key("A"), 7)]);
        let zoe_status: Vec<Status> = store
            .user_reservations("zoe", 0, 10)
            .expect("zoe")
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(zoe_status, vec![Status::Confirmed, Status::Confirmed]);

        // A store from before the indexes: the log only.
        for family in [CATALOGUE, BY_USER] {
            let keys: Vec<Box<[u8]>> = store
                .db
                .iterator_cf(store.cf(family), IteratorMode::Start)
                .map(|item| item.expect("read").0)
                .collect();
            for key in keys {
                store.db.delete_cf(store.cf(family), key).expect("delete");
            }
        }
        store
            .db
            .delete_cf(store.cf(META), keys::INDEXES_BUILT)
            .expect("delete");
        assert_eq!(answers(&store).1, vec![]);
        assert_eq!(
            store.ensure_indexes(1).expect("indexes"),
            4,
            "the log, read once"
        );
        assert_eq!(answers(&store), (histories.clone(), catalogue.clone()));
        assert_eq!(store.ensure_indexes(1).expect("indexes"), 0);

        // A store indexed by the version before the users' markers: indexed again, once.
        for user in ["zoe", "amy"] {
            store
                .db
                .delete_cf(store.cf(BY_USER), keys::user_marker(user))
                .expect("delete");
        }
        store
            .db
            .delete_cf(store.cf(META), keys::INDEXES_BUILT)
            .expect("delete");
        store
            .db
            .put_cf(store.cf(META), b"indexes/v1", [])
            .expect("v1");
        assert!(
            answers(&store).0[4].is_empty(),
            "without its marker a user looks new"
        );
        assert_eq!(store.ensure_indexes(1).expect("indexes"), 4);
        assert_eq!(answers(&store), (histories, catalogue));
    }

    #[test]
    fn an_outcome_decided_with_its_log_record_is_stored_as_the_records_bytes_and_reads_back() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store_with_history(dir.path());
        let zoe = store.user_reservations("zoe", 0, 10).expect("zoe");
        assert_eq!(zoe.len(), 2);
        let stored = |family: &str, key: &[u8]| {
            store
                .db
                .get_cf(store.cf(family), key)
                .expect("read")
                .expect("stored")
        };
        // The fourth record of the log is zoe's second reservation (init, zoe, amy, zoe).
        assert_eq!(
            stored(RESERVATIONS, &keys::reservation(zoe[0].id)),
            stored(LOG, &keys::log(0, 4)),
            "the log record's bytes, encoded once"
        );
        assert_eq!(
            store.reservation(zoe[0].id).expect("read"),
            Some(zoe[0].clone())
        );
        // An outcome stored on its own (Kafka: no log here) is a `Completed`, read the same.
        let completed = Completed {
            reservation: zoe[1].clone(),
            available: 7,
        };
        store
            .db
            .put_cf(
                store.cf(RESERVATIONS),
                keys::reservation(zoe[1].id),
                encode(&completed).expect("encode"),
            )
            .expect("write");
        assert_eq!(
            store.reservation(zoe[1].id).expect("read"),
            Some(zoe[1].clone())
        );
    }

    #[test]
    fn the_memory_it_reports_grows_with_what_it_holds() {
        let dir = tempfile::tempdir().expect("dir");
        let empty = Store::open(dir.path(), 1, false)
            .expect("open")
            .memory()
            .expect("memory");
        let dir = tempfile::tempdir().expect("dir");
        let store = store_with_history(dir.path());
        let memory = store.memory().expect("memory");
        assert!(
            memory.memtables > empty.memtables,
            "{memory:?} against {empty:?}"
        );
        assert!(memory.block_cache >= memory.block_cache_pinned);
    }

    /// Carry out a batch's stores (sections and outcomes) as a worker does.
    fn commit_stores(store: &Store, actions: Vec<Action>, offset: u64) {
        let mut sections = Vec::new();
        let mut outcomes = Vec::new();
        for action in actions {
            match action {
                Action::StoreSection { key, state, change } => {
                    sections.push(SectionWrite { key, state, change });
                }
                Action::StoreOutcome(completed) => outcomes.push(completed),
                _ => {}
            }
        }
        store
            .commit(&CommitBatch {
                partition: 0,
                sections,
                outcomes,
                quotas: Vec::new(),
                rooms: Vec::new(),
                handed_on: Vec::new(),
                delivered: Vec::new(),
                position: Position::InputOffset(offset),
            })
            .expect("commit");
    }

    fn rows_stored(store: &Store) -> usize {
        store
            .db
            .iterator_cf(store.cf(SECTION_ROWS), IteratorMode::Start)
            .count()
    }

    #[test]
    fn a_batch_writes_the_rows_it_moved_seats_in_and_the_section_reads_back_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = Store::open(dir.path(), 1, false).expect("open");
        let mut owner = Partition::new(0);
        let decided = owner
            .decide_batch(&store, &[init("A", 4, 10)], NOW)
            .expect("init");
        commit_stores(&store, decided, 1);
        let batch = [
            reserve("A", "ann", SeatRequest::Adjacent(4)),
            reserve("A", "bob", SeatRequest::Picked(vec![Seat::new(3, 5)])),
        ];
        let decided = owner.decide_batch(&store, &batch, NOW).expect("reserve");
        let ann = decided
            .iter()
            .find_map(|a| match a {
                Action::Reply {
                    input: 0,
                    outcome: Outcome::Reservation(r),
                    ..
                } => Some(r.clone()),
                _ => None,
            })
            .expect("ann's answer");
        commit_stores(&store, decided, 2);
        assert_eq!(rows_stored(&store), 2, "rows 1 and 3, not the section");
        let header = store
            .db
            .get_cf(store.cf(SECTIONS), keys::section(&key("A")))
            .expect("read")
            .expect("stored");
        assert_eq!(
            decode::<StoredSection>(&header)
                .expect("decodes")
                .state
                .available(),
            40,
            "the whole state is as initialised"
        );
        assert_eq!(
            ann.seats.iter().map(|s| s.row).collect::<Vec<_>>(),
            vec![1; 4]
        );
        let expected = SectionState::with_held(
            Layout::new(4, 10).expect("layout"),
            ann.seats.iter().copied().chain([Seat::new(3, 5)]),
        );
        let state = store.section(&key("A")).expect("read").expect("section");
        assert_eq!(state.available(), 35);
        assert_eq!(state, expected);

        // Ann cancels: row 1 is written again, empty; a restart reads the same.
        let decided = owner
            .decide_batch(&store, &[cancel_of(&ann, "ann")], NOW)
            .expect("cancel");
        commit_stores(&store, decided, 3);
        drop(store);
        store = Store::open(dir.path(), 1, false).expect("open again");
        let state = store.section(&key("A")).expect("read").expect("section");
        assert_eq!(state.available(), 39);
        assert!(state.is_held(Seat::new(3, 5)) && !state.is_held(Seat::new(1, 1)));

        // A whole state replaces the rows written before it.
        let whole =
            SectionState::with_held(Layout::new(4, 10).expect("layout"), [Seat::new(4, 10)]);
        store
            .commit(&CommitBatch {
                partition: 0,
                sections: vec![SectionWrite::whole(key("A"), whole.clone())],
                outcomes: Vec::new(),
                quotas: Vec::new(),
                rooms: Vec::new(),
                handed_on: Vec::new(),
                delivered: Vec::new(),
                position: Position::InputOffset(4),
            })
            .expect("commit");
        assert_eq!(rows_stored(&store), 0);
        assert_eq!(store.section(&key("A")).expect("read"), Some(whole));
    }
}
