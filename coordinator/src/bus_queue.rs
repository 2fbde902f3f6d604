//! The hand-over from the bus to a run's aggregator, counted and bounded (issue 11, item 5).
//!
//! The bus decodes on the session's task and hands each batch to the aggregator's mailbox at
//! once: it must not wait there, or the session would stop reading, pinging and publishing
//! (`Alive` included, and agents would stop by themselves). So the mailbox is where an
//! aggregator that falls behind piles up work. This queue makes that pile visible and bounded:
//!
//! - **Counted.** Each batch handed over carries a [`Queued`] ticket; dropping it (after the
//!   fold, or with a message that never arrives) takes it off the count. The supervisor reads
//!   [`BatchQueue::queued`] per agent and the run's deadlines count what is queued: an agent
//!   whose batches are waiting to be folded is neither lost for want of heartbeats nor for
//!   batches missing at the drain deadline (`RunMachine`, `Event::Backlog`).
//! - **Bounded.** At most [`MAX_QUEUED_BYTES`] of encoded batches per run wait at once. A
//!   batch past that is refused whole, counted per agent ([`BatchQueue::overflowed`]) and
//!   reported like a rejected batch: its agent's results are not exact, and the run says so,
//!   rather than the coordinator growing without limit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// How many bytes of encoded batches one run may hold between the bus and its aggregator.
/// The decode + fold rate is tens of thousands of batches a second (`examples/fold_rate.rs`),
/// and a batch is ~1 KiB per label: 256 MiB is minutes of a large fleet's batches, far past
/// any hiccup, yet a bound a coordinator's memory can afford per run.
pub const MAX_QUEUED_BYTES: u64 = 256 << 20;

/// One run's batches handed to its aggregator and not yet folded.
#[derive(Debug)]
pub struct BatchQueue {
    per_agent: Vec<AtomicU64>,
    bytes: AtomicU64,
    max_bytes: u64,
    overflowed: Vec<AtomicU64>,
    warned: AtomicBool,
}

/// One queued batch: counted until dropped.
#[derive(Debug)]
pub struct Queued {
    queue: Arc<BatchQueue>,
    agent: usize,
    bytes: u64,
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(n) = self.queue.per_agent.get(self.agent) {
            n.fetch_sub(1, Ordering::AcqRel);
        }
        self.queue.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl BatchQueue {
    /// A queue for agents `0..agents` bounded at [`MAX_QUEUED_BYTES`].
    pub fn new(agents: u32) -> Arc<BatchQueue> {
        BatchQueue::with_limit(agents, MAX_QUEUED_BYTES)
    }

    /// The same with another bound (tests).
    pub fn with_limit(agents: u32, max_bytes: u64) -> Arc<BatchQueue> {
        Arc::new(BatchQueue {
            per_agent: (0..agents).map(|_| AtomicU64::new(0)).collect(),
            bytes: AtomicU64::new(0),
            max_bytes,
            overflowed: (0..agents).map(|_| AtomicU64::new(0)).collect(),
            warned: AtomicBool::new(false),
        })
    }

    /// Takes a batch of `bytes` from `agent`: its ticket, or `None` when the queue is full
    /// (then counted in [`BatchQueue::overflowed`] and logged once per run) or the agent is
    /// not of the run.
    pub fn admit(self: &Arc<Self>, agent: u32, bytes: u64) -> Option<Queued> {
        let i = agent as usize;
        let count = self.per_agent.get(i)?;
        let before = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > self.max_bytes {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            if let Some(n) = self.overflowed.get(i) {
                n.fetch_add(1, Ordering::Relaxed);
            }
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    agent,
                    queued_bytes = before,
                    max = self.max_bytes,
                    "the aggregator fell so far behind that its queue is full: batches are \
                     refused and counted (rejected_batches), their agents' results not exact"
                );
            }
            return None;
        }
        count.fetch_add(1, Ordering::AcqRel);
        Some(Queued {
            queue: self.clone(),
            agent: i,
            bytes,
        })
    }

    /// Batches queued now, by agent index.
    pub fn queued(&self) -> Vec<u64> {
        self.per_agent
            .iter()
            .map(|n| n.load(Ordering::Acquire))
            .collect()
    }

    /// Bytes queued now, all agents.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Batches of `agent` refused so far because the queue was full.
    pub fn overflowed(&self, agent: u32) -> u64 {
        self.overflowed
            .get(agent as usize)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_count_until_dropped() {
        let q = BatchQueue::with_limit(2, 1_000);
        let a = q.admit(0, 100).expect("room");
        let b = q.admit(1, 100).expect("room");
        let c = q.admit(1, 100).expect("room");
        assert_eq!(q.queued(), vec![1, 2]);
        assert_eq!(q.bytes(), 300);
        drop((a, c));
        assert_eq!(q.queued(), vec![0, 1]);
        drop(b);
        assert_eq!((q.queued(), q.bytes()), (vec![0, 0], 0));
    }

    #[test]
    fn a_full_queue_refuses_and_counts_per_agent() {
        let q = BatchQueue::with_limit(2, 250);
        let kept: Vec<_> = (0..2).filter_map(|_| q.admit(0, 100)).collect();
        assert_eq!(kept.len(), 2);
        assert!(q.admit(1, 100).is_none(), "300 > 250");
        assert_eq!((q.overflowed(0), q.overflowed(1)), (0, 1));
        assert_eq!(q.bytes(), 200, "a refused batch is not counted as queued");
        drop(kept);
        assert!(q.admit(1, 100).is_some(), "room again once folded");
        assert!(q.admit(7, 1).is_none(), "no such agent");
        assert_eq!(q.overflowed(7), 0);
    }
}
