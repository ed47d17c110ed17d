//! Live availability: an event's section counts as Server-Sent Events, from the same counts the
//! pre-filter reads (`section-status` on Kafka, every committed batch embedded).
//!
//! A subscriber holds no queue of messages: it remembers the last change number it sent and,
//! woken by a change, sends the sections that changed since then, at most four times a second.
//! So a burst of a thousand decisions is one message, a slow reader only delays its own next
//! message (never the others', never the feed), and a reader that comes back with
//! `Last-Event-ID` gets what changed since that id, without a gap, when this gateway issued it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use poem::web::sse::Event;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::EventStream;
use poem_openapi::{Object, OpenApi};
use seatflow_commands::StatusCache;
use seatflow_projections::ReadModel;
use serde::Serialize;
use tokio::sync::watch;

use super::model::{Timestamp, UuidText};
use super::{AppState, Tag};
use crate::error::ApiError;

/// The least time between two messages of one subscriber: at most four a second. The first
/// change after a quiet spell goes out at once; changes within this time of a message wait for
/// its end and go out together.
const COALESCE: Duration = Duration::from_millis(250);
/// How often an idle stream says it is alive (a comment line).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Counts of an event's sections: every section in the first message (`full`), then the
/// sections whose count changed.
/// Serialised with serde, not through poem's JSON values: a message goes to every subscriber
/// several times a second (the value tree was a tenth of the server's time with 10,000 of them).
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "AvailabilityUpdate", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityDto {
    pub event_id: UuidText,
    /// Every section of the event (a snapshot), or only those that changed.
    pub full: bool,
    pub sections: Vec<SectionCountDto>,
    /// When the newest count in this message was counted by this gateway (absent before any
    /// count moved): how fresh the message is.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<Timestamp>,
    /// The message's SSE id (not in its data).
    #[oai(skip)]
    #[serde(skip)]
    pub id: String,
}

/// One section's available count.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "SectionCount", rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct SectionCountDto {
    pub section: String,
    pub available: u32,
}

#[derive(Debug)]
pub struct AvailabilityApi {
    pub state: AppState,
}

#[OpenApi(tag = "Tag::Events")]
impl AvailabilityApi {
    /// An event's section counts as Server-Sent Events: a snapshot of every section first,
    /// then the sections whose count changed, coalesced (at most 4 messages a second), with a
    /// keep-alive comment every 15 s. Each message has an id: sent back as `Last-Event-ID`
    /// on reconnection, the stream resumes with what changed since (a snapshot when the id is
    /// not this gateway's).
    #[oai(
        path = "/api/events/:eventId/availability/stream",
        method = "get",
        operation_id = "streamAvailability"
    )]
    async fn stream(
        &self,
        #[oai(name = "eventId")] event_id: Path<UuidText>,
        #[oai(name = "Last-Event-ID", validator(max_length = 64))] last_event_id: Header<
            Option<String>,
        >,
    ) -> Result<EventStream<BoxStream<'static, AvailabilityDto>>, ApiError> {
        let event_id = event_id.0.0;
        if self.state.read.event(&event_id).is_none() {
            return Err(ApiError::unknown_event());
        }
        let status = self.state.commands.status().clone();
        let changes = status.watch_event(&event_id);
        let resume_from = last_event_id
            .0
            .as_deref()
            .and_then(|id| resume_point(id, &status, &event_id));
        let follow = Follow {
            read: self.state.read.clone(),
            status,
            event_id,
            changes,
            sent: resume_from,
            resumed: resume_from.is_some(),
            last_sent: None,
        };
        let stream = futures_util::stream::unfold(follow, Follow::next).boxed();
        Ok(EventStream::new(stream)
            .keep_alive(KEEP_ALIVE)
            .to_event(|update| {
                let id = update.id.clone();
                Event::message(serde_json::to_string(&update).unwrap_or_default()).id(id)
            }))
    }
}

/// This process's mark in the ids it gives, so that an id from another gateway (or from
/// before a restart) is not taken for one of ours.
fn epoch() -> &'static str {
    static EPOCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    EPOCH.get_or_init(|| format!("{:x}", seatflow_processor_entropy()))
}

/// A number no other process has drawn (the process's start, well mixed).
fn seatflow_processor_entropy() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

fn changed_at(millis: i64) -> Option<Timestamp> {
    (millis > 0).then(|| Timestamp::from_millis(millis))
}

/// The change number a `Last-Event-ID` of this gateway names, if it is one we can resume from.
fn resume_point(id: &str, status: &StatusCache, event_id: &str) -> Option<u64> {
    let (mark, version) = id.split_once('.')?;
    let version: u64 = version.parse().ok()?;
    let now = status.counts_since(event_id, u64::MAX).version;
    (mark == epoch() && version <= now).then_some(version)
}

/// One subscriber: the last change number it sent.
struct Follow {
    read: Arc<ReadModel>,
    status: Arc<StatusCache>,
    event_id: String,
    changes: watch::Receiver<u64>,
    /// None until the first message (then a snapshot is sent).
    sent: Option<u64>,
    /// Resumed from a `Last-Event-ID`: the first message is what changed since.
    resumed: bool,
    /// When the last message went out.
    last_sent: Option<tokio::time::Instant>,
}

impl Follow {
    async fn next(mut self) -> Option<(AvailabilityDto, Self)> {
        loop {
            let since = match self.sent {
                None => return Some(self.snapshot()),
                Some(since) => since,
            };
            if !self.resumed {
                self.changes.changed().await.ok()?;
                if let Some(last) = self.last_sent {
                    tokio::time::sleep_until(last + COALESCE).await;
                }
            }
            self.resumed = false;
            self.changes.borrow_and_update();
            let delta = self.status.counts_since(&self.event_id, since);
            self.sent = Some(delta.version);
            if !delta.sections.is_empty() {
                let update = AvailabilityDto {
                    event_id: UuidText(self.event_id.clone()),
                    full: false,
                    sections: delta
                        .sections
                        .into_iter()
                        .map(|(section, available)| SectionCountDto { section, available })
                        .collect(),
                    changed_at: changed_at(delta.changed_at),
                    id: format!("{}.{}", epoch(), delta.version),
                };
                self.last_sent = Some(tokio::time::Instant::now());
                return Some((update, self));
            }
        }
    }

    /// Every section of the event with its count (the pre-filter's, else the catalogue's).
    fn snapshot(mut self) -> (AvailabilityDto, Self) {
        self.changes.borrow_and_update();
        let counted = self.status.counts_since(&self.event_id, 0);
        let sections = self
            .read
            .event(&self.event_id)
            .map(|view| view.sections)
            .unwrap_or_default()
            .into_iter()
            .map(|summary| {
                let available = counted
                    .sections
                    .iter()
                    .find(|(section, _)| *section == summary.section)
                    .map_or(summary.available, |(_, available)| *available);
                SectionCountDto {
                    section: summary.section,
                    available,
                }
            })
            .collect();
        self.sent = Some(counted.version);
        let update = AvailabilityDto {
            event_id: UuidText(self.event_id.clone()),
            full: true,
            sections,
            changed_at: changed_at(counted.changed_at),
            id: format!("{}.{}", epoch(), counted.version),
        };
        self.last_sent = Some(tokio::time::Instant::now());
        (update, self)
    }
}
