//! The requests this coordinator has made into runs, by idempotency key, bounded: a key is
//! remembered in memory up to [`MAX_SEEN`] (the oldest go first), and durably beyond that — the
//! state folder (14 days) and, on AWS, the S3 markers — so forgetting one here costs a lookup,
//! never a second run.

use std::collections::{HashMap, VecDeque};

/// Keys held in memory.
pub const MAX_SEEN: usize = 100_000;

/// What an idempotency key led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Being prepared right now.
    Pending,
    Run(String),
    Rejected,
}

#[derive(Debug, Default)]
pub struct SeenKeys {
    map: HashMap<String, Seen>,
    order: VecDeque<String>,
}

impl SeenKeys {
    pub fn get(&self, key: &str) -> Option<&Seen> {
        self.map.get(key)
    }

    pub fn insert(&mut self, key: String, seen: Seen) {
        if self.map.insert(key.clone(), seen).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > MAX_SEEN {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            // A key still being prepared is not evicted: it would let a copy through.
            if self.map.get(&old) == Some(&Seen::Pending) {
                self.order.push_back(old);
                continue;
            }
            self.map.remove(&old);
        }
    }

    pub fn remove(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_keys_go_first_and_the_map_stays_bounded() {
        let mut s = SeenKeys::default();
        s.insert("pending".into(), Seen::Pending);
        for i in 0..MAX_SEEN + 10 {
            s.insert(format!("k{i}"), Seen::Run(format!("r{i}")));
        }
        assert_eq!(s.len(), MAX_SEEN);
        assert_eq!(s.get("pending"), Some(&Seen::Pending), "in flight: kept");
        assert_eq!(s.get("k0"), None);
        assert_eq!(
            s.get(&format!("k{}", MAX_SEEN + 9)),
            Some(&Seen::Run(format!("r{}", MAX_SEEN + 9)))
        );
        s.remove("pending");
        assert_eq!(s.get("pending"), None);
    }
}
