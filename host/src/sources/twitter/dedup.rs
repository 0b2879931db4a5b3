//! The ids of the most recent tweets, to drop the ones a backfilling reconnect sends again.

use std::collections::{HashSet, VecDeque};

/// A bounded window of recent tweet ids: the oldest is forgotten when a new one would pass
/// `capacity`. Tweet ids are numbers; a key that is not one is never taken for a duplicate.
#[derive(Debug)]
pub(super) struct RecentIds {
    capacity: usize,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentIds {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
        }
    }

    /// Whether `key` was seen within the window; remembers it if not.
    pub(super) fn repeated(&mut self, key: &[u8]) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let Some(id) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.parse::<u64>().ok())
        else {
            return false;
        };
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
        let mut ids = RecentIds::new(3);
        for id in ["1", "2", "3"] {
            assert!(!ids.repeated(id.as_bytes()));
        }
        assert!(ids.repeated(b"2"));
        assert!(!ids.repeated(b"4")); // forgets 1
        assert!(!ids.repeated(b"1"));
        assert!(!ids.repeated(b"not-a-number") && !ids.repeated(b"not-a-number"));
        let mut off = RecentIds::new(0);
        assert!(!off.repeated(b"7") && !off.repeated(b"7"));
    }
}
