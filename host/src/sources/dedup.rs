//! The keys of the most recent records, to drop the ones delivered again: a backfilling
//! reconnect of the Twitter stream, or a producer upstream of a Kafka topic that retried.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// A bounded window of recent record keys: the oldest is forgotten when a new one would pass
/// `capacity`. Keys are kept as 64-bit hashes (no allocation per record); with a window of
/// 100,000 keys the chance that a new key collides with one of them is about 1 in 10^14.
#[derive(Debug)]
pub struct RecentKeys {
    capacity: usize,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentKeys {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
        }
    }

    /// Whether `key` was seen within the window; remembers it if not.
    pub fn repeated(&mut self, key: &[u8]) -> bool {
        if self.capacity == 0 {
            return false;
        }
        // SipHash with fixed keys: the same key hashes alike in every run.
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let id = h.finish();
        if !self.seen.insert(id) {
            return true;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(id);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_caught_and_older_ones_forgotten() {
        let mut keys = RecentKeys::new(3);
        for key in ["1", "2", "3"] {
            assert!(!keys.repeated(key.as_bytes()));
        }
        assert!(keys.repeated(b"2"));
        assert!(!keys.repeated(b"4")); // forgets 1
        assert!(!keys.repeated(b"1"));
        assert!(!keys.repeated(b"not-a-number") && keys.repeated(b"not-a-number"));
        let mut off = RecentKeys::new(0);
        assert!(!off.repeated(b"7") && !off.repeated(b"7"));
    }
}
