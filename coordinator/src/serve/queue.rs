//! The run queue: `[queue]` caps how many runs go at once, in all and per spec. A run over a
//! cap is accepted — kept durably, in the history as `queued`, visible and cancellable — and
//! starts, first come first served, when a run ends and the caps allow it. A run whose spec is
//! at its own cap does not hold up the runs of other specs behind it.
//!
//! Pure: the registry owns one and tells it what is running.

use std::collections::{HashMap, VecDeque};

pub use crate::config::QueueConfig;

/// What runs now: run id → spec name.
#[derive(Debug, Default)]
pub struct Going(HashMap<String, String>);

impl Going {
    pub fn insert(&mut self, run_id: &str, spec: &str) {
        self.0.insert(run_id.to_string(), spec.to_string());
    }

    pub fn remove(&mut self, run_id: &str) {
        self.0.remove(run_id);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn of_spec(&self, spec: &str) -> usize {
        self.0.values().filter(|s| *s == spec).count()
    }
}

/// A run waiting for room; `T` is what the registry needs to start it.
pub struct Waiting<T> {
    pub run_id: String,
    pub spec: String,
    pub item: T,
}

pub struct RunQueue<T> {
    cfg: QueueConfig,
    waiting: VecDeque<Waiting<T>>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the run queue is full ({0} runs waiting): try again later")]
pub struct Full(pub u32);

impl<T> RunQueue<T> {
    pub fn new(cfg: QueueConfig) -> RunQueue<T> {
        RunQueue {
            cfg,
            waiting: VecDeque::new(),
        }
    }

    /// Whether a run of `spec` may start now, beside `going`.
    pub fn room_for(&self, spec: &str, going: &Going) -> bool {
        let cap = |c: u32, n: usize| c == 0 || n < c as usize;
        cap(self.cfg.max_active_runs, going.len())
            && cap(self.cfg.max_active_per_spec, going.of_spec(spec))
    }

    /// Whether a run of `spec` arriving now must wait: no room, or runs ahead of it that
    /// could take the room first (first come, first served).
    pub fn must_wait(&self, spec: &str, going: &Going) -> bool {
        !self.room_for(spec, going) || self.waiting.iter().any(|w| self.room_for(&w.spec, going))
    }

    pub fn push(&mut self, w: Waiting<T>) -> Result<(), Full> {
        if self.waiting.len() >= self.cfg.max_queued as usize {
            return Err(Full(self.cfg.max_queued));
        }
        self.waiting.push_back(w);
        Ok(())
    }

    pub fn is_full(&self) -> bool {
        self.waiting.len() >= self.cfg.max_queued as usize
    }

    /// The first waiting run that has room beside `going`, taken off the queue.
    pub fn next(&mut self, going: &Going) -> Option<Waiting<T>> {
        let at = self
            .waiting
            .iter()
            .position(|w| self.room_for(&w.spec, going))?;
        self.waiting.remove(at)
    }

    pub fn remove(&mut self, run_id: &str) -> Option<Waiting<T>> {
        let at = self.waiting.iter().position(|w| w.run_id == run_id)?;
        self.waiting.remove(at)
    }

    pub fn peek(&self, run_id: &str) -> Option<&T> {
        self.waiting
            .iter()
            .find(|w| w.run_id == run_id)
            .map(|w| &w.item)
    }

    pub fn contains(&self, run_id: &str) -> bool {
        self.waiting.iter().any(|w| w.run_id == run_id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.waiting.iter().map(|w| w.run_id.as_str())
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(active: u32, per_spec: u32, queued: u32) -> RunQueue<()> {
        RunQueue::new(QueueConfig {
            max_active_runs: active,
            max_active_per_spec: per_spec,
            max_queued: queued,
        })
    }

    fn w(id: &str, spec: &str) -> Waiting<()> {
        Waiting {
            run_id: id.into(),
            spec: spec.into(),
            item: (),
        }
    }

    #[test]
    fn the_global_cap_queues_and_the_first_waiting_starts_when_room_is_made() {
        let mut queue = q(2, 0, 10);
        let mut going = Going::default();
        going.insert("a", "s");
        assert!(!queue.must_wait("s", &going));
        going.insert("b", "s");
        assert!(queue.must_wait("s", &going));
        queue.push(w("c", "s")).unwrap();
        queue.push(w("d", "t")).unwrap();
        assert!(queue.next(&going).is_none(), "no room");
        going.remove("a");
        assert_eq!(
            queue.next(&going).unwrap().run_id,
            "c",
            "first come, first served"
        );
        // A newcomer waits behind a run that could take the room.
        assert!(queue.must_wait("t", &going));
    }

    #[test]
    fn a_spec_at_its_cap_does_not_hold_up_other_specs() {
        let mut queue = q(0, 1, 10);
        let mut going = Going::default();
        going.insert("a", "slow");
        queue.push(w("b", "slow")).unwrap();
        assert!(
            !queue.must_wait("fast", &going),
            "fast has room and nothing ahead can take it"
        );
        queue.push(w("c", "fast")).unwrap();
        assert_eq!(queue.next(&going).unwrap().run_id, "c");
        assert!(queue.next(&going).is_none());
        going.remove("a");
        assert_eq!(queue.next(&going).unwrap().run_id, "b");
    }

    #[test]
    fn the_queue_is_bounded_and_a_waiting_run_can_be_removed() {
        let mut queue = q(1, 0, 2);
        queue.push(w("a", "s")).unwrap();
        queue.push(w("b", "s")).unwrap();
        assert_eq!(queue.push(w("c", "s")), Err(Full(2)));
        assert!(queue.contains("a"));
        assert_eq!(queue.remove("a").unwrap().run_id, "a");
        assert!(!queue.contains("a"));
        assert_eq!(queue.ids().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn zero_means_no_cap() {
        let queue = q(0, 0, 1);
        let mut going = Going::default();
        for i in 0..100 {
            going.insert(&i.to_string(), "s");
        }
        assert!(!queue.must_wait("s", &going));
    }
}
