//! One partition worker: the only place the sections of its partition are decided.
//!
//! The worker takes every command waiting in its queue (up to a batch limit), decides them in
//! order against its in-memory sections, writes the whole batch in one RocksDB write batch, and
//! only then carries out the side effects: hand the committed events to the [`CommitSink`]
//! (read models, status cache) and answer each waiting caller. A caller is never told about a
//! decision that is not on disk. The worker owns its sections, so no lock is taken on this path.

use std::time::{SystemTime, UNIX_EPOCH};

use seatflow_aggregates::{Command, Millis, Outcome};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use crate::partition::PartitionState;
use crate::store::{CommitBatch, LogRecord, Store, StoreError};

/// Why a command got no outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessorError {
    #[error("the seat store failed: {0}")]
    Store(String),
    #[error("the seat processor is shutting down")]
    Stopped,
    #[error("no decision arrived in time; the command is recorded and will be decided")]
    Timeout,
    #[error("the command could not be handed over: {0}")]
    Transport(String),
}

impl From<StoreError> for ProcessorError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

/// Receives every committed batch, in commit order per partition, before callers are answered.
pub trait CommitSink: Send + Sync + 'static {
    fn committed(&self, records: &[LogRecord]);
}

pub(crate) struct Submission {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Outcome, ProcessorError>>,
}

pub(crate) struct Worker {
    store: Store,
    state: PartitionState,
    sink: std::sync::Arc<dyn CommitSink>,
    applied: u64,
    max_batch: usize,
}

impl Worker {
    pub fn new(
        partition: u32,
        store: Store,
        sink: std::sync::Arc<dyn CommitSink>,
        max_batch: usize,
    ) -> Result<Self, StoreError> {
        let applied = store.applied(partition)?;
        Ok(Self {
            state: PartitionState::new(partition, store.clone()),
            store,
            sink,
            applied,
            max_batch,
        })
    }

    /// Run until every sender is gone.
    pub fn run(mut self, mut queue: mpsc::Receiver<Submission>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
        }
    }

    fn process(&mut self, batch: &mut Vec<Submission>) {
        let started = std::time::Instant::now();
        let now = now_millis();
        let mut records = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for submission in batch.iter() {
            let decided = self.state.decide(&submission.command, now);
            outcomes.push(match decided {
                Ok(decided) => {
                    for event in decided.events {
                        records.push(LogRecord {
                            partition: self.state.partition(),
                            seq: self.applied + records.len() as u64 + 1,
                            event,
                        });
                    }
                    Ok(decided.outcome)
                }
                Err(e) => Err(ProcessorError::from(e)),
            });
        }
        let committed = if records.is_empty() {
            Ok(())
        } else {
            let commit = CommitBatch {
                partition: self.state.partition(),
                sections: self.state.changed_sections(),
                applied: self.applied + records.len() as u64,
                records,
                append_to_log: true,
            };
            self.store.commit(&commit).map(|()| {
                self.applied = commit.applied;
                self.sink.committed(&commit.records);
            })
        };
        seatflow_telemetry::metrics().batch_decided(batch.len(), started.elapsed());
        match &committed {
            Ok(()) => self.state.committed(),
            Err(e) => {
                error!(partition = self.state.partition(), error = %e, "commit failed; batch refused");
                self.state.abandon();
            }
        }
        for (submission, outcome) in batch.drain(..).zip(outcomes) {
            let answer = match (&committed, outcome) {
                (_, Err(e)) => Err(e),
                (Err(e), Ok(_)) => Err(ProcessorError::Store(e.to_string())),
                (Ok(()), Ok(outcome)) => Ok(outcome),
            };
            // The caller may have given up waiting; the decision stands either way.
            let _ = submission.reply.send(answer);
        }
    }
}

/// Milliseconds since the Unix epoch (the decision time the runners stamp).
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
