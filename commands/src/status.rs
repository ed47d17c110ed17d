//! The pre-filter's section-status cache: each section's available count as last published.
//!
//! Fed by the section-status stream (on the embedded runtime: every committed event, which
//! carries its section's count after it). A request asking for more seats than the cache says
//! are left is answered at once and never becomes a command. The cache may lag the worker by a
//! batch; it only ever rejects requests that the worker would reject too, because a section's
//! count only rises through a cancellation, which is published like any other change.

use std::collections::HashMap;

use dashmap::DashMap;
use seatflow_aggregates::SectionKey;
use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct StatusCache {
    counts: DashMap<SectionKey, u32>,
    /// Per event, what its live-availability subscribers follow.
    changes: DashMap<String, EventChanges>,
}

/// An event's counts as they changed: each section's count with the change number that set
/// it, and the last change number, watched by the subscribers (a subscriber holds no queue:
/// it reads what changed since what it sent, so a slow one costs nothing but itself).
#[derive(Debug)]
struct EventChanges {
    version: watch::Sender<u64>,
    sections: HashMap<String, (u32, u64)>,
    /// When the last change was counted (Unix milliseconds; 0 before the first).
    changed_at: i64,
}

impl EventChanges {
    fn new() -> Self {
        Self {
            version: watch::channel(0).0,
            sections: HashMap::new(),
            changed_at: 0,
        }
    }
}

/// The counts of an event's sections that changed after a change number, and the number of
/// the last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountsSince {
    pub version: u64,
    /// (section, available), sorted by section.
    pub sections: Vec<(String, u32)>,
    /// When the last change was counted (Unix milliseconds; 0 if none was).
    pub changed_at: i64,
}

impl StatusCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&self, key: &SectionKey, available: u32) {
        let changed = match self.counts.get_mut(key) {
            Some(mut count) => {
                let changed = *count != available;
                *count = available;
                changed
            }
            None => {
                self.counts.insert(key.clone(), available);
                true
            }
        };
        if changed {
            self.note_change(key, available);
        }
    }

    /// Number the change and wake the event's subscribers (no allocation once the event and
    /// the section are known: this runs for every count that moves).
    fn note_change(&self, key: &SectionKey, available: u32) {
        let mut changes = match self.changes.get_mut(&key.event_id) {
            Some(changes) => changes,
            None => self
                .changes
                .entry(key.event_id.clone())
                .or_insert_with(EventChanges::new),
        };
        let version = *changes.version.borrow() + 1;
        match changes.sections.get_mut(&key.section) {
            Some(section) => *section = (available, version),
            None => {
                changes
                    .sections
                    .insert(key.section.clone(), (available, version));
            }
        }
        changes.changed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        changes.version.send_replace(version);
    }

    /// Follow the changes of `event_id`'s counts: woken with the last change number.
    pub fn watch_event(&self, event_id: &str) -> watch::Receiver<u64> {
        self.changes
            .entry(event_id.to_owned())
            .or_insert_with(EventChanges::new)
            .version
            .subscribe()
    }

    /// The counts of `event_id`'s sections that changed after change number `since` (0: every
    /// section this cache has counted).
    pub fn counts_since(&self, event_id: &str, since: u64) -> CountsSince {
        let Some(changes) = self.changes.get(event_id) else {
            return CountsSince {
                version: 0,
                sections: Vec::new(),
                changed_at: 0,
            };
        };
        let mut sections: Vec<(String, u32)> = changes
            .sections
            .iter()
            .filter(|(_, (_, version))| *version > since)
            .map(|(section, (available, _))| (section.clone(), *available))
            .collect();
        sections.sort();
        CountsSince {
            version: *changes.version.borrow(),
            sections,
            changed_at: changes.changed_at,
        }
    }

    pub fn available(&self, key: &SectionKey) -> Option<u32> {
        self.counts.get(key).map(|count| *count)
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_reads_only_what_changed_since_what_it_saw() {
        let cache = StatusCache::new();
        let a = SectionKey::new("e", "A");
        let b = SectionKey::new("e", "B");
        cache.update(&a, 10);
        cache.update(&b, 20);
        let watching = cache.watch_event("e");
        let all = cache.counts_since("e", 0);
        assert_eq!(all.sections, vec![("A".into(), 10), ("B".into(), 20)]);
        cache.update(&b, 20);
        assert!(
            !watching.has_changed().expect("open"),
            "the same count is no change"
        );
        cache.update(&b, 19);
        assert!(watching.has_changed().expect("open"));
        let delta = cache.counts_since("e", all.version);
        assert_eq!(delta.sections, vec![("B".into(), 19)]);
        assert_eq!(cache.counts_since("other", 0).sections, vec![]);
    }
}
