//! One partition worker: the only place the sections of its partition are decided.
//!
//! The worker takes every command waiting in its queue (up to a batch limit), asks
//! [`Partition::decide_batch`] what they make happen, and carries the actions out: the records,
//! section states and outcomes go into ONE RocksDB write batch; only once it is written are the
//! statuses and records handed to the [`CommitSink`] (read models, pre-filter cache) and the
//! callers answered. A caller is never told about a decision that is not on disk. The worker
//! owns its partition, so no lock is taken on this path.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use seatflow_aggregates::{Action, Command, Millis, Outcome, Partition, SectionStatus};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use crate::store::{CommitBatch, LogRecord, Position, Store, StoreError};

/// Why the embedded processor gave a command no outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessorError {
    #[error("the seat store failed: {0}")]
    Store(String),
    #[error("the seat processor is shutting down")]
    Stopped,
}

impl From<StoreError> for ProcessorError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

/// Receives every committed batch, in commit order per partition, before callers are answered:
/// the decided facts with their log positions, and the sections' counts after them.
pub trait CommitSink: Send + Sync + 'static {
    fn committed(&self, records: &[LogRecord], statuses: &[SectionStatus]);
}

pub(crate) type Reply = oneshot::Sender<Result<Outcome, ProcessorError>>;

/// How long an idle worker waits before it looks at its clock: the most a hold outlives its
/// end on an idle partition (a busy one expires holds at every batch).
pub const CLOCK_TICK: std::time::Duration = std::time::Duration::from_millis(100);

pub(crate) struct Submission {
    pub command: Command,
    pub reply: Reply,
}

pub(crate) struct Worker {
    id: u32,
    store: Store,
    partition: Partition,
    sink: std::sync::Arc<dyn CommitSink>,
    last_seq: u64,
    max_batch: usize,
}

impl Worker {
    pub fn new(
        id: u32,
        store: Store,
        sink: std::sync::Arc<dyn CommitSink>,
        max_batch: usize,
    ) -> Result<Self, StoreError> {
        let last_seq = store.last_log_seq(id)?;
        Ok(Self {
            id,
            store,
            partition: Partition::new(id),
            sink,
            last_seq,
            max_batch,
        })
    }

    /// Run until every sender is gone. With nothing to do for [`CLOCK_TICK`], the worker
    /// decides an empty batch: the partition's clock (holds that ended expire).
    pub fn run(mut self, mut queue: mpsc::Receiver<Submission>) {
        let clock = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(clock) => clock,
            Err(e) => {
                error!(partition = self.id, error = %e, "no timer for the partition's clock");
                return;
            }
        };
        let mut commands = Vec::with_capacity(self.max_batch);
        let mut replies = Vec::with_capacity(self.max_batch);
        loop {
            // The timer is made inside the clock's runtime (it needs its reactor).
            let waited =
                clock.block_on(async { tokio::time::timeout(CLOCK_TICK, queue.recv()).await });
            let first = match waited {
                Ok(Some(first)) => first,
                Ok(None) => break,
                Err(_) => {
                    self.process(&[], &mut replies);
                    continue;
                }
            };
            let mut next = Some(first);
            while let Some(submission) = next.take() {
                commands.push(submission.command);
                replies.push(submission.reply);
                if commands.len() < self.max_batch {
                    next = queue.try_recv().ok();
                }
            }
            self.process(&commands, &mut replies);
            commands.clear();
        }
    }

    fn process(&mut self, commands: &[Command], replies: &mut Vec<Reply>) {
        let started = Instant::now();
        let result = self
            .partition
            .decide_batch(&self.store, commands, now_millis())
            .and_then(|actions| self.carry_out(actions));
        if !commands.is_empty() {
            seatflow_telemetry::metrics().batch_decided(commands.len(), started.elapsed());
        }
        let answers = match result {
            Ok(answers) => answers,
            Err(e) => {
                error!(partition = self.id, error = %e, "batch not written; its commands are refused");
                self.partition.abandon();
                let failed = ProcessorError::from(e);
                replies.iter().map(|_| Err(failed.clone())).collect()
            }
        };
        for (reply, answer) in replies.drain(..).zip(answers) {
            // The caller may have given up waiting; the decision stands either way.
            let _ = reply.send(answer);
        }
    }

    /// Write the batch, publish it, and return the answer to each command, in input order
    /// (a batch answers every command once, in order).
    fn carry_out(
        &mut self,
        actions: Vec<Action>,
    ) -> Result<Vec<Result<Outcome, ProcessorError>>, StoreError> {
        let mut records = Vec::new();
        let mut statuses = Vec::new();
        let mut sections = Vec::new();
        let mut outcomes = Vec::new();
        let mut answers = Vec::new();
        for action in actions {
            match action {
                Action::Record { event, .. } => records.push(LogRecord {
                    partition: self.id,
                    seq: self.last_seq + records.len() as u64 + 1,
                    event,
                }),
                Action::PublishStatus { key, available, .. } => {
                    statuses.push(SectionStatus { key, available });
                }
                Action::Reply { outcome, .. } => answers.push(Ok(outcome)),
                Action::StoreSection { key, state } => sections.push((key, state)),
                Action::StoreOutcome(completed) => outcomes.push(completed),
            }
        }
        if let Some(last) = records.last() {
            let last_seq = last.seq;
            let batch = CommitBatch {
                partition: self.id,
                sections,
                outcomes,
                position: Position::Log(records),
            };
            self.store.commit(&batch)?;
            self.last_seq = last_seq;
            if let Position::Log(records) = &batch.position {
                self.sink.committed(records, &statuses);
            }
        }
        Ok(answers)
    }
}

/// Milliseconds since the Unix epoch (the decision time the runners stamp).
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
