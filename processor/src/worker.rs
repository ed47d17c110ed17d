//! One partition worker: the only place the sections of its partition are decided.
//!
//! The worker takes every command waiting in its queue (up to a batch limit), asks
//! [`Partition::decide_batch`] what they make happen, and carries the actions out: the records,
//! section states and outcomes go into ONE RocksDB write batch; only once it is written are the
//! statuses and records handed to the [`CommitSink`] (read models, pre-filter cache) and the
//! callers answered. A caller is never told about a decision that is not on disk. The worker
//! owns its partition, so no lock is taken on this path.
//!
//! A command a batch hands on to another partition (a reservation on its way from its user's
//! quota to its section, a quota given back) is written to the outbox in the same write batch,
//! then sent to that partition's worker with its caller; the batch that decides it removes it
//! from the outbox. A command handed on before a crash is read from the outbox at the start.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use seatflow_aggregates::{
    Action, Command, Millis, Outcome, Partition, SectionStatus, partition_of_command,
};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use crate::store::{
    CommitBatch, LogRecord, OutboxKey, Position, RoomChange, SectionWrite, Store, StoreError,
};

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
    /// Who waits for the answer: none for a command handed on with no caller (a quota
    /// release), or read back from the outbox at a start.
    pub reply: Option<Reply>,
    /// Where the command waits in the outbox, if a partition handed it on: it leaves the
    /// outbox in the batch that decides it.
    pub outbox: Option<OutboxKey>,
}

/// Every worker's inbox of handed-on commands, by partition. Unbounded: a worker never waits
/// for another (two workers handing on to each other with full queues would wait forever); what
/// is in flight is bounded by the callers' queues.
pub(crate) type Router = std::sync::Arc<[mpsc::UnboundedSender<Submission>]>;

pub(crate) struct Worker {
    id: u32,
    store: Store,
    partition: Partition,
    sink: std::sync::Arc<dyn CommitSink>,
    router: Router,
    last_seq: u64,
    max_batch: usize,
    /// Read the outbox again before the next batch (at start, and after a batch failed: the
    /// handed-on commands it held are still there).
    outbox_unread: bool,
}

/// A batch's commands and, by input, who waits for each and where it waits in the outbox.
#[derive(Default)]
struct Inputs {
    commands: Vec<Command>,
    replies: Vec<Option<Reply>>,
    delivered: Vec<OutboxKey>,
}

impl Inputs {
    fn push(&mut self, submission: Submission) {
        self.commands.push(submission.command);
        self.replies.push(submission.reply);
        self.delivered.extend(submission.outbox);
    }

    fn len(&self) -> usize {
        self.commands.len()
    }

    fn clear(&mut self) {
        self.commands.clear();
        self.replies.clear();
        self.delivered.clear();
    }
}

/// What a written batch leaves to do: answers by input, commands to hand on.
struct Carried {
    answers: Vec<(usize, Outcome)>,
    handed_on: Vec<HandOn>,
}

struct HandOn {
    target: u32,
    command: Command,
    outbox: Option<OutboxKey>,
    /// The input whose caller now waits for this command's answer.
    caller_of: Option<usize>,
}

impl Worker {
    pub fn new(
        id: u32,
        store: Store,
        sink: std::sync::Arc<dyn CommitSink>,
        router: Router,
        config: &crate::ProcessorConfig,
    ) -> Result<Self, StoreError> {
        let last_seq = store.last_log_seq(id)?;
        Ok(Self {
            id,
            store,
            partition: Partition::configured(id, &config.partition).with_entropy(entropy()),
            sink,
            router,
            last_seq,
            max_batch: config.max_batch,
            outbox_unread: true,
        })
    }

    /// Run until every caller's sender is gone. With nothing to do for [`CLOCK_TICK`], the
    /// worker decides an empty batch: the partition's clock (holds that ended expire).
    /// Commands handed on by other partitions come first.
    pub fn run(
        mut self,
        mut queue: mpsc::Receiver<Submission>,
        mut inbox: mpsc::UnboundedReceiver<Submission>,
    ) {
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
        let mut inputs = Inputs::default();
        loop {
            if self.outbox_unread {
                self.read_outbox(&mut inputs);
            }
            if inputs.len() == 0 {
                // The timer is made inside the clock's runtime (it needs its reactor).
                let waited = clock.block_on(async {
                    tokio::time::timeout(CLOCK_TICK, async {
                        tokio::select! {
                            biased;
                            Some(handed_on) = inbox.recv() => Some(handed_on),
                            submission = queue.recv() => submission,
                        }
                    })
                    .await
                });
                match waited {
                    Ok(Some(first)) => inputs.push(first),
                    Ok(None) => break,
                    Err(_) => {
                        self.process(&mut inputs);
                        continue;
                    }
                }
            }
            while inputs.len() < self.max_batch {
                match inbox.try_recv().or_else(|_| queue.try_recv()) {
                    Ok(next) => inputs.push(next),
                    Err(_) => break,
                }
            }
            self.process(&mut inputs);
        }
    }

    /// Take the commands handed on to this partition that wait in the outbox (after a restart,
    /// or a failed batch): decided before anything else.
    fn read_outbox(&mut self, inputs: &mut Inputs) {
        match self.store.outbox(self.id) {
            Ok(waiting) => {
                for (key, command) in waiting {
                    inputs.push(Submission {
                        command,
                        reply: None,
                        outbox: Some(key),
                    });
                }
                self.outbox_unread = false;
            }
            Err(e) => error!(partition = self.id, error = %e, "outbox not read; trying again"),
        }
    }

    fn process(&mut self, inputs: &mut Inputs) {
        let started = Instant::now();
        let result = self
            .partition
            .decide_batch(&self.store, &inputs.commands, now_millis())
            .and_then(|actions| self.carry_out(actions, &inputs.delivered));
        if !inputs.commands.is_empty() {
            seatflow_telemetry::metrics().batch_decided(inputs.commands.len(), started.elapsed());
        }
        match result {
            Ok(Carried { answers, handed_on }) => {
                for (input, outcome) in answers {
                    // The caller may have given up waiting; the decision stands either way.
                    if let Some(reply) = inputs.replies[input].take() {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                for hand_on in handed_on {
                    let reply = hand_on
                        .caller_of
                        .and_then(|input| inputs.replies[input].take());
                    // A worker that stopped takes it from the outbox at its next start.
                    let _ = self.router[hand_on.target as usize].send(Submission {
                        command: hand_on.command,
                        reply,
                        outbox: hand_on.outbox,
                    });
                }
            }
            Err(e) => {
                error!(partition = self.id, error = %e, "batch not written; its commands are refused");
                self.partition.abandon();
                self.outbox_unread = true;
                let failed = ProcessorError::from(e);
                for reply in inputs.replies.drain(..).flatten() {
                    let _ = reply.send(Err(failed.clone()));
                }
            }
        }
        inputs.clear();
    }

    /// Write the batch (with the commands it hands on, and without those it decided that were
    /// handed on to it) and publish it; then what is left to do.
    fn carry_out(
        &mut self,
        actions: Vec<Action>,
        delivered: &[OutboxKey],
    ) -> Result<Carried, StoreError> {
        let mut records = Vec::new();
        let mut statuses = Vec::new();
        let mut sections = Vec::new();
        let mut outcomes = Vec::new();
        let mut quotas = Vec::new();
        let mut rooms = Vec::new();
        let mut carried = Carried {
            answers: Vec::new(),
            handed_on: Vec::new(),
        };
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
                Action::Reply { input, outcome, .. } => carried.answers.push((input, outcome)),
                Action::Forward {
                    input,
                    command,
                    with_caller,
                } => {
                    let target = partition_of_command(&command, self.router.len() as u32);
                    carried.handed_on.push(HandOn {
                        target,
                        outbox: OutboxKey::of(target, &command),
                        command,
                        caller_of: input.filter(|_| with_caller),
                    });
                }
                Action::StoreSection { key, state, change } => {
                    sections.push(SectionWrite { key, state, change });
                }
                Action::StoreOutcome(completed) => outcomes.push(completed),
                Action::StoreQuota { key, state } => quotas.push((key, state)),
                Action::StoreRoom {
                    key,
                    header,
                    tickets,
                } => rooms.push(RoomChange {
                    event_id: key.event_id,
                    header,
                    tickets,
                }),
            }
        }
        let handed_on: Vec<(OutboxKey, Command)> = carried
            .handed_on
            .iter()
            .filter_map(|hand_on| hand_on.outbox.map(|key| (key, hand_on.command.clone())))
            .collect();
        let changed = !records.is_empty()
            || !sections.is_empty()
            || !outcomes.is_empty()
            || !quotas.is_empty()
            || !rooms.is_empty()
            || !handed_on.is_empty()
            || !delivered.is_empty();
        if changed {
            let last_seq = records.last().map_or(self.last_seq, |last| last.seq);
            let batch = CommitBatch {
                partition: self.id,
                sections,
                outcomes,
                quotas,
                rooms,
                handed_on,
                delivered: delivered.to_vec(),
                position: Position::Log(records),
            };
            self.store.commit(&batch)?;
            self.last_seq = last_seq;
            if let Position::Log(records) = &batch.position
                && !records.is_empty()
            {
                self.sink.committed(records, &statuses);
            }
        }
        Ok(carried)
    }
}

/// 64 bits no one can guess before they are drawn (seeded by the OS per process): what a
/// partition mixes into the seeds of its waiting rooms' shuffles.
pub fn entropy() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(now_millis())
}

/// Milliseconds since the Unix epoch (the decision time the runners stamp).
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
