//! The seat processor of the embedded default: partition-local workers that decide every
//! command of the sections they own, over a RocksDB store that holds section states, the outcome
//! of every reservation id, the decided-event log and the partitions' positions. The store is
//! also the Kafka seat processor's local state.
//!
//! Commands of one section always go to the same worker (Kafka's murmur2 partitioner over
//! `eventId/section`), and each worker is one OS thread that owns its partition's state: decisions
//! are in order per section with no lock on the hot path. What a batch decides comes from
//! [`seatflow_aggregates::Partition::decide_batch`]; see `worker` for how it is carried out.

mod keys;
mod store;
mod worker;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use seatflow_aggregates::{Command, partition_of_command};
use seatflow_commands::{BusError, CommandBus, SubmitFuture, Submitted};
use tokio::sync::{mpsc, oneshot};

pub use seatflow_aggregates::Outcome;
pub use store::{
    CommitBatch, LogRecord, OutboxKey, Position, RoomChange, SectionWrite, Store, StoreError,
    StoreMemory,
};
pub use worker::{CommitSink, ProcessorError, entropy, now_millis};

use worker::{Router, Submission, Worker};

/// Settings of the embedded seat processor.
#[derive(Clone, Debug)]
pub struct ProcessorConfig {
    /// Number of partitions, and so of worker threads.
    pub partitions: u32,
    /// Largest number of commands decided and written in one batch.
    pub max_batch: usize,
    /// Commands that may wait in one worker's queue before submitters wait (backpressure).
    pub queue_depth: usize,
    /// fsync every batch before answering.
    pub sync_writes: bool,
    /// How each partition owner is set up (waitlist limit, what it keeps between batches).
    pub partition: seatflow_aggregates::PartitionSettings,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            partitions: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(2),
            max_batch: 1024,
            queue_depth: 16 * 1024,
            sync_writes: true,
            partition: seatflow_aggregates::PartitionSettings::default(),
        }
    }
}

/// Handle to the running workers. Cloning is cheap; the workers stop when every handle is gone.
#[derive(Clone, Debug)]
pub struct Processor {
    queues: Arc<[mpsc::Sender<Submission>]>,
}

/// The worker threads, to join at shutdown.
#[derive(Debug)]
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Wait for every worker to finish its last batch (after every [`Processor`] is dropped).
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

impl Processor {
    /// Start one worker per partition over the store.
    pub fn start(
        store: Store,
        config: &ProcessorConfig,
        sink: Arc<dyn CommitSink>,
    ) -> Result<(Self, Workers), StoreError> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        let (inboxes, mut receivers): (Vec<_>, Vec<_>) = (0..config.partitions)
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let router: Router = inboxes.into();
        for partition in 0..config.partitions {
            let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
            let inbox = receivers.remove(0);
            let worker = Worker::new(
                partition,
                store.clone(),
                sink.clone(),
                router.clone(),
                config,
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("seat-worker-{partition}"))
                .spawn(move || worker.run(rx, inbox))
                .map_err(StoreError::Io)?;
            queues.push(tx);
            threads.push(thread);
        }
        Ok((
            Self {
                queues: queues.into(),
            },
            Workers { threads },
        ))
    }

    pub fn partitions(&self) -> u32 {
        self.queues.len() as u32
    }

    /// Hand a command to the worker owning its section and wait until it is decided and on disk.
    pub async fn submit(&self, command: Command) -> Result<Outcome, ProcessorError> {
        let partition = partition_of_command(&command, self.partitions());
        let (reply, answer) = oneshot::channel();
        self.queues[partition as usize]
            .send(Submission {
                command,
                reply: Some(reply),
                outbox: None,
            })
            .await
            .map_err(|_| ProcessorError::Stopped)?;
        answer.await.map_err(|_| ProcessorError::Stopped)?
    }
}

/// The embedded workers decide before they answer: always `Decided`.
impl CommandBus for Processor {
    fn submit(&self, command: Command, _wait: std::time::Duration) -> SubmitFuture<'_> {
        Box::pin(async move {
            Processor::submit(self, command)
                .await
                .map(Submitted::Decided)
                .map_err(|e| match e {
                    ProcessorError::Store(reason) => BusError::Unavailable(reason),
                    ProcessorError::Stopped => BusError::Stopped,
                })
        })
    }
}

/// Open the store under `data_dir`.
pub fn open_store(data_dir: &Path, config: &ProcessorConfig) -> Result<Store, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(StoreError::Io)?;
    Store::open(
        &data_dir.join("seats"),
        config.partitions,
        config.sync_writes,
    )
}
