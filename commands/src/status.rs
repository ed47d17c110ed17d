//! The pre-filter's section-status cache: each section's available count as last published.
//!
//! Fed by the section-status stream (on the embedded runtime: every committed event, which
//! carries its section's count after it). A request asking for more seats than the cache says
//! are left is answered at once and never becomes a command. The cache may lag the worker by a
//! batch; it only ever rejects requests that the worker would reject too, because a section's
//! count only rises through a cancellation, which is published like any other change.

use dashmap::DashMap;
use seatflow_aggregates::SectionKey;

#[derive(Debug, Default)]
pub struct StatusCache {
    counts: DashMap<SectionKey, u32>,
}

impl StatusCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&self, key: &SectionKey, available: u32) {
        match self.counts.get_mut(key) {
            Some(mut count) => *count = available,
            None => {
                self.counts.insert(key.clone(), available);
            }
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
