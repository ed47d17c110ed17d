//! Tokens this gateway verified recently, so that the next request with the same token costs a
//! map lookup instead of a signature check: an RS256 or ES256 verification is tens of
//! microseconds, and in an on-sale the same user sends the same token many times (and a bot
//! that is refused 429 sends it thousands of times).
//!
//! An entry is the exact token text, the caller it proved and the generation of the keys that
//! verified it; it answers until the token's `exp` (plus the leeway), for [`KEPT_AT_MOST`] at
//! most, and only while the keys are the same (a JWKS fetch that changes them makes every
//! token be checked again, so a withdrawn key verifies nothing from then on). Tokens that fail
//! are never kept (a failure can be a key not fetched yet). The map is bounded: when full it is
//! emptied, which costs only signature checks. Used only when a public key can verify: with an
//! HMAC secret alone, remembering a token costs about what checking it does (measured in
//! docs/BENCHMARK.md, "What authentication costs").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use super::Caller;

/// How long a verified token is trusted without a new signature check, at most.
pub const KEPT_AT_MOST: Duration = Duration::from_secs(60);

/// Most tokens kept (~0.5 KiB each with the roles: ~50 MiB at most).
pub const MOST: usize = 100_000;

#[derive(Debug)]
struct Entry {
    caller: Caller,
    /// The key generation that verified it.
    keys: u64,
    /// Unix seconds after which the entry no longer answers.
    until: u64,
}

/// The recently verified tokens.
#[derive(Debug, Clone)]
pub struct VerifiedTokens {
    map: Arc<DashMap<Box<str>, Entry>>,
    /// About how many entries the map holds (`DashMap::len` locks every shard: too dear for
    /// each request).
    held: Arc<AtomicUsize>,
    most: usize,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::with_capacity(MOST)
    }
}

impl VerifiedTokens {
    pub fn with_capacity(most: usize) -> Self {
        Self {
            map: Arc::new(DashMap::new()),
            held: Arc::new(AtomicUsize::new(0)),
            most,
        }
    }

    /// Who `token` is, if it verified recently under the key generation `keys` and has not
    /// expired since.
    pub fn get(&self, token: &str, keys: u64, now: u64) -> Option<Caller> {
        let entry = self.map.get(token)?;
        if now < entry.until && entry.keys == keys {
            return Some(entry.caller.clone());
        }
        drop(entry);
        if self.map.remove(token).is_some() {
            self.held.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    /// Keep `token`, verified at `now` as `caller` with the key generation `keys`, until
    /// `expires` (its `exp` plus the leeway), or [`KEPT_AT_MOST`] from now, whichever is first.
    pub fn keep(&self, token: &str, caller: Caller, keys: u64, expires: u64, now: u64) {
        let until = expires.min(now + KEPT_AT_MOST.as_secs());
        if until <= now {
            return;
        }
        if self.held.load(Ordering::Relaxed) >= self.most {
            self.map.clear();
            self.held.store(0, Ordering::Relaxed);
        }
        let before = self.map.insert(
            token.into(),
            Entry {
                caller,
                keys,
                until,
            },
        );
        if before.is_none() {
            self.held.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Now, in Unix seconds (the unit of `exp`).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Caller {
        Caller::User {
            id: "ann".into(),
            roles: std::collections::HashSet::from(["organizer".to_owned()]),
        }
    }

    #[test]
    fn a_kept_token_answers_until_it_expires() {
        let tokens = VerifiedTokens::default();
        assert_eq!(tokens.get("t1", 0, 1_000), None);
        tokens.keep("t1", ann(), 0, 1_010, 1_000);
        assert_eq!(tokens.get("t1", 0, 1_009), Some(ann()));
        assert_eq!(tokens.get("t1", 0, 1_010), None, "expired");
        assert!(tokens.is_empty(), "an expired entry is dropped when met");
        // Another token of the same user is its own entry.
        assert_eq!(tokens.get("t2", 0, 1_000), None);
    }

    #[test]
    fn new_keys_make_every_token_be_checked_again() {
        let tokens = VerifiedTokens::default();
        tokens.keep("t1", ann(), 3, 2_000, 1_000);
        assert_eq!(tokens.get("t1", 3, 1_001), Some(ann()));
        assert_eq!(tokens.get("t1", 4, 1_001), None, "the keys changed");
    }

    #[test]
    fn no_token_is_trusted_longer_than_the_bound_and_an_expired_one_is_not_kept() {
        let tokens = VerifiedTokens::default();
        let now = 1_000;
        tokens.keep("long", ann(), 0, now + 86_400, now);
        assert!(
            tokens
                .get("long", 0, now + KEPT_AT_MOST.as_secs() - 1)
                .is_some()
        );
        assert!(
            tokens
                .get("long", 0, now + KEPT_AT_MOST.as_secs())
                .is_none()
        );
        tokens.keep("old", ann(), 0, now, now);
        assert!(tokens.is_empty());
    }

    #[test]
    fn a_full_map_is_emptied_before_it_grows() {
        let tokens = VerifiedTokens::with_capacity(3);
        for t in ["a", "b", "c", "d"] {
            tokens.keep(t, ann(), 0, 2_000, 1_000);
        }
        assert_eq!(tokens.len(), 1);
        assert!(tokens.get("d", 0, 1_000).is_some());
    }
}
