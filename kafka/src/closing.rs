//! Kafka clients that close within a bound.
//!
//! Dropping a librdkafka consumer leaves its group and commits nothing more; dropping a producer
//! flushes. Both wait for brokers, and librdkafka bounds neither wait when the group coordinator
//! is unreachable or a join is under way (a seat processor asked to stop during its start waited
//! for ever). A process asked to stop must stop: [`ClosesWithin`] drops its client on a thread
//! of its own and waits at most its limit; past that the close is left behind (the process is
//! exiting; the broker ends the session by its timeout, as after a crash).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use tracing::warn;

/// How long a client's close may take before the process stops without it.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// A client whose drop waits at most [`CLOSE_LIMIT`].
#[derive(Debug)]
pub struct ClosesWithin<T: Send + 'static> {
    client: Option<T>,
    what: &'static str,
}

impl<T: Send + 'static> ClosesWithin<T> {
    pub fn new(what: &'static str, client: T) -> Self {
        Self {
            client: Some(client),
            what,
        }
    }
}

impl<T: Send + 'static> Deref for ClosesWithin<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.client.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> DerefMut for ClosesWithin<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.client.as_mut().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for ClosesWithin<T> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            close_within(self.what, client, CLOSE_LIMIT);
        }
    }
}

/// Drop `client` on a thread of its own; wait for it at most `limit`. True if it closed.
pub fn close_within<T: Send + 'static>(what: &'static str, client: T, limit: Duration) -> bool {
    let (closed, done) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            drop(client);
            let _ = closed.send(());
        });
    if spawned.is_err() {
        warn!(
            what,
            "no thread to close the Kafka client on; leaving it open"
        );
        return false;
    }
    let finished = done.recv_timeout(limit).is_ok();
    if !finished {
        warn!(
            what,
            limit_s = limit.as_secs(),
            "the Kafka client did not close in time; stopping without it"
        );
    }
    finished
}

#[cfg(test)]
mod tests {
    use super::*;

    struct SlowToClose(Duration);

    impl Drop for SlowToClose {
        fn drop(&mut self) {
            std::thread::sleep(self.0);
        }
    }

    #[test]
    fn a_close_that_hangs_is_left_behind_after_the_limit() {
        let started = std::time::Instant::now();
        assert!(!close_within(
            "test",
            SlowToClose(Duration::from_secs(60)),
            Duration::from_millis(100)
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(close_within(
            "test",
            SlowToClose(Duration::ZERO),
            Duration::from_secs(5)
        ));
    }
}
