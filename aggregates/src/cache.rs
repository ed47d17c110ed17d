//! What a partition owner keeps of its store between batches, bounded: the sections and quotas
//! it used lately, not every one it ever decided.
//!
//! A process that sells for months decides sections of events long over and a quota per user
//! of every event with a limit; kept for ever, they grow with history (issue 12). The cache is
//! two generations: what a batch uses is in the young one (moved there from the old one when
//! used again); when the young one holds more than half the capacity at the start of a batch,
//! the old one is dropped and the young one becomes old. So the entries used since the last
//! turn always stay, and at most about `capacity` entries (plus one batch's) are held.
//!
//! Dropping is only done between batches ([`Generations::turn`]): by then every batch decided
//! was written to the store (or abandoned, and the cache cleared), so what is dropped is read
//! back the same from the store when it is needed again.

use std::collections::HashMap;
use std::hash::Hash;

/// A map of at most about `capacity` entries, the least lately used dropped first (by halves).
#[derive(Debug, Clone)]
pub struct Generations<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V> Generations<K, V> {
    /// Room for about `capacity` entries (at least 2).
    pub fn new(capacity: usize) -> Self {
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            capacity: capacity.max(2),
        }
    }

    /// Entries held (both generations).
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.young.get(key).or_else(|| self.old.get(key))
    }

    /// The entry, moved to the young generation (it is in use).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.young.contains_key(key) {
            let value = self.old.remove(key)?;
            self.young.insert(key.clone(), value);
        }
        self.young.get_mut(key)
    }

    /// Whether `key` is held; if so it is in use now (moved to the young generation).
    pub fn touch(&mut self, key: &K) -> bool {
        self.get_mut(key).is_some()
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.old.remove(&key);
        self.young.insert(key, value);
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.young.remove(key).or_else(|| self.old.remove(key))
    }

    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }

    /// Between batches: when the young generation holds more than half the capacity, drop the
    /// old one (what was not used since the last turn) and start a new young one. What was
    /// dropped (empty when it did not turn).
    pub fn turn(&mut self) -> HashMap<K, V> {
        if self.young.len() <= self.capacity / 2 {
            return HashMap::new();
        }
        let young = std::mem::take(&mut self.young);
        std::mem::replace(&mut self.old, young)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn what_was_used_since_the_last_turn_stays_and_the_rest_goes() {
        let mut cache = Generations::new(4);
        for key in 0..3 {
            cache.insert(key, key * 10);
        }
        assert!(
            cache.turn().is_empty(),
            "3 young entries are more than half of 4: they turn old, nothing was old"
        );
        assert_eq!(cache.len(), 3);
        // 1 is used again; 3, 4 and 5 are new.
        assert!(cache.touch(&1));
        for key in 3..6 {
            cache.insert(key, key * 10);
        }
        let dropped = cache.turn();
        assert_eq!(dropped, HashMap::from([(0, 0), (2, 20)]));
        assert_eq!(cache.get(&0), None);
        assert_eq!(cache.get(&2), None);
        assert_eq!(cache.get(&1), Some(&10));
        assert_eq!(cache.get(&5), Some(&50));
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn a_young_generation_within_half_the_capacity_does_not_turn() {
        let mut cache = Generations::new(10);
        for key in 0..5 {
            cache.insert(key, ());
        }
        cache.turn();
        // Had it turned, 0..5 would be old now, and dropped by the next turn.
        for key in 5..11 {
            cache.insert(key, ());
        }
        assert!(cache.turn().is_empty(), "0..11 turn old together");
        for key in 11..17 {
            cache.insert(key, ());
        }
        assert_eq!(cache.turn().len(), 11);
        assert_eq!(cache.len(), 6);
    }

    proptest! {
        /// Whatever is inserted, used and turned, a held entry has the value last put there,
        /// and with a turn after each step the cache never holds much more than its capacity.
        #[test]
        fn values_are_the_last_put_and_the_size_is_bounded(
            steps in proptest::collection::vec((0u8..3, 0u16..200, any::<u32>()), 1..400),
            capacity in 2usize..40,
        ) {
            let mut cache = Generations::new(capacity);
            let mut last: HashMap<u16, u32> = HashMap::new();
            for (kind, key, value) in steps {
                match kind {
                    0 => {
                        cache.insert(key, value);
                        last.insert(key, value);
                    }
                    1 => {
                        cache.remove(&key);
                        last.remove(&key);
                    }
                    _ => {
                        if let Some(held) = cache.get_mut(&key) {
                            *held = value;
                            last.insert(key, value);
                        }
                    }
                }
                cache.turn();
                prop_assert!(cache.len() <= capacity + 2, "{} > {}", cache.len(), capacity + 2);
                for (key, value) in &last {
                    if let Some(held) = cache.get(key) {
                        prop_assert_eq!(held, value);
                    }
                }
            }
        }
    }
}
