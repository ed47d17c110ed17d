//! One partition worker: the only place the sections of its partition are decided.
//!
//! The worker takes every command waiting in its queue (up to a batch limit), decides them in
//! order against its in-memory sections, writes the whole batch in one RocksDB write batch, and
//! only then carries out the side effects: hand the committed events to the [`CommitSink`]
//! (read models, status cache) and answer each waiting caller. A caller is never told about a
//! decision that is not on disk. The worker owns its sections, so no lock is taken on this path.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use seatflow_aggregates::{
    Command, Decision, Event, Millis, Rejection, Reservation, ReservationId, SectionKey,
    SectionState, decide, evolve,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::store::{CommitBatch, LogRecord, Store, StoreError};

/// What a caller is told about its command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The reservation's outcome (new, or the first one for a repeated id).
    Reservation(Reservation),
    /// The section exists with the asked layout (new or already).
    SectionReady,
    /// Nothing was recorded.
    Refused(Rejection),
}

/// Why a command got no outcome.
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

/// Receives every committed batch, in commit order per partition, before callers are answered.
pub trait CommitSink: Send + Sync + 'static {
    fn committed(&self, records: &[LogRecord]);
}

pub(crate) struct Submission {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Outcome, ProcessorError>>,
}

pub(crate) struct Worker {
    partition: u32,
    store: Store,
    sink: std::sync::Arc<dyn CommitSink>,
    sections: HashMap<SectionKey, SectionState>,
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
            partition,
            store,
            sink,
            sections: HashMap::new(),
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
        let now = now_millis();
        let mut pending = PendingBatch::default();
        let mut outcomes = Vec::with_capacity(batch.len());
        for submission in batch.iter() {
            outcomes.push(self.decide_one(&submission.command, now, &mut pending));
        }
        let committed = if pending.records.is_empty() {
            Ok(())
        } else {
            let commit = CommitBatch {
                partition: self.partition,
                sections: pending
                    .touched
                    .iter()
                    .filter_map(|key| {
                        self.sections
                            .get(key)
                            .map(|state| (key.clone(), state.clone()))
                    })
                    .collect(),
                records: std::mem::take(&mut pending.records),
                applied: self.applied + pending.appended,
            };
            match self.store.commit(&commit) {
                Ok(()) => {
                    self.applied = commit.applied;
                    self.sink.committed(&commit.records);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        if let Err(e) = &committed {
            // The in-memory sections ran ahead of the disk: forget them, reload on next use.
            error!(partition = self.partition, error = %e, "commit failed; batch refused");
            self.sections.clear();
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

    fn decide_one(
        &mut self,
        command: &Command,
        now: Millis,
        pending: &mut PendingBatch,
    ) -> Result<Outcome, ProcessorError> {
        let key = command.key();
        if !self.sections.contains_key(key)
            && let Some(state) = self.store.section(key)?
        {
            self.sections.insert(key.clone(), state);
        }
        let prior = match command.reservation_id() {
            None => None,
            Some(id) => pending.prior(id, &self.store)?,
        };
        let decision = decide(self.sections.get(key), prior.as_ref(), command, now);
        Ok(match decision {
            Decision::Append(events) => {
                if events.is_empty() {
                    return Ok(Outcome::SectionReady);
                }
                let mut outcome = Outcome::SectionReady;
                for event in events {
                    let mut section = self.sections.remove(key);
                    evolve(&mut section, &event);
                    if let Some(section) = section {
                        self.sections.insert(key.clone(), section);
                    }
                    if let Event::ReservationCompleted(completed) = &event {
                        pending
                            .decided
                            .insert(completed.reservation.id, completed.reservation.clone());
                        outcome = Outcome::Reservation(completed.reservation.clone());
                    }
                    pending.appended += 1;
                    pending.records.push(LogRecord {
                        partition: self.partition,
                        seq: self.applied + pending.appended,
                        event,
                    });
                }
                if !pending.touched.contains(key) {
                    pending.touched.push(key.clone());
                }
                outcome
            }
            Decision::AlreadyDecided(reservation) => Outcome::Reservation(reservation),
            Decision::Refused(rejection) => {
                if matches!(command, Command::InitSection(_)) {
                    warn!(section = %key, %rejection, "section initialisation refused");
                }
                Outcome::Refused(rejection)
            }
        })
    }
}

/// What the batch being decided has changed so far (not yet on disk).
#[derive(Default)]
struct PendingBatch {
    records: Vec<LogRecord>,
    appended: u64,
    touched: Vec<SectionKey>,
    decided: HashMap<ReservationId, Reservation>,
}

impl PendingBatch {
    fn prior(&self, id: ReservationId, store: &Store) -> Result<Option<Reservation>, StoreError> {
        match self.decided.get(&id) {
            Some(reservation) => Ok(Some(reservation.clone())),
            None => store.reservation(id),
        }
    }
}

fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
