//! What a coordinated agent keeps until its coordinator says it is safe: every metric batch it
//! sent, and its last word (Finished or Failed), as the exact frames that went out. A plain
//! value, time passed in; `link.rs` feeds it.
//!
//! The coordinator confirms, in each `Alive`, the highest batch seq it holds durably with none
//! missing below it; batches up to there are forgotten. The rest go out again (the same frames:
//! the fold counts a (agent, seq) once):
//! - to a **new coordinator** — an `Alive` of a later epoch: the coordinator restarted, and
//!   whatever was in flight to the old one (or its embedded broker) is gone;
//! - when **stale** — unconfirmed [`STALE_AFTER`] after it was last sent: a broker that lost
//!   the coordinator's subscription for a while (restarted without persistence) dropped it.
//!
//! Bounded: at most [`MAX_KEPT`] batches and [`MAX_KEPT_BYTES`]; past either the oldest is
//! forgotten unconfirmed and counted (it may still have arrived; if not, the coordinator
//! finds it missing when the agent is drained, and says so).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// An hour of batches at one a second.
pub const MAX_KEPT: usize = 3_600;
/// Whatever the count: a batch is ~1 KiB per label, so this is hours of a normal run.
pub const MAX_KEPT_BYTES: usize = 64 << 20;
/// Confirmation normally comes within ~2 s (the journal syncs each second, Alive follows).
pub const STALE_AFTER: Duration = Duration::from_secs(15);

/// A frame to send (again): (topic, bytes).
pub type Frame = (String, Vec<u8>);

struct Kept {
    seq: u64,
    topic: String,
    frame: Vec<u8>,
    sent_at: Instant,
}

#[derive(Default)]
pub struct Unconfirmed {
    kept: VecDeque<Kept>,
    bytes: usize,
    /// Forgotten unconfirmed to stay within the bounds.
    evicted: u64,
    /// The epoch of the coordinator heard last.
    epoch: Option<u64>,
    /// The last word, sent again to a new coordinator.
    last_word: Option<Frame>,
}

impl Unconfirmed {
    /// Keeps batch `seq`'s frame, sent (or queued) at `now`.
    pub fn keep(&mut self, seq: u64, topic: String, frame: Vec<u8>, now: Instant) {
        self.bytes = self.bytes.saturating_add(frame.len());
        self.kept.push_back(Kept {
            seq,
            topic,
            frame,
            sent_at: now,
        });
        while self.kept.len() > MAX_KEPT || self.bytes > MAX_KEPT_BYTES {
            let Some(old) = self.kept.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(old.frame.len());
            self.evicted += 1;
        }
    }

    /// The Finished or Failed that ended this agent's run.
    pub fn last_word(&mut self, topic: String, frame: Vec<u8>) {
        self.last_word = Some((topic, frame));
    }

    /// An `Alive` (already checked as newer than the last) from coordinator `epoch`, which
    /// holds this agent's batches through `confirmed` (None: it did not say). Returns what to
    /// send again now; call [`Unconfirmed::resent`] for each that went out.
    pub fn alive(&mut self, epoch: u64, confirmed: Option<u64>, now: Instant) -> Vec<(u64, Frame)> {
        if let Some(through) = confirmed {
            while self.kept.front().is_some_and(|k| k.seq <= through) {
                if let Some(k) = self.kept.pop_front() {
                    self.bytes = self.bytes.saturating_sub(k.frame.len());
                }
            }
        }
        let new_coordinator = self.epoch.is_some_and(|e| epoch > e);
        if self.epoch.is_none_or(|e| epoch > e) {
            self.epoch = Some(epoch);
        }
        let mut out: Vec<(u64, Frame)> = self
            .kept
            .iter()
            .filter(|k| new_coordinator || now.saturating_duration_since(k.sent_at) >= STALE_AFTER)
            .map(|k| (k.seq, (k.topic.clone(), k.frame.clone())))
            .collect();
        if new_coordinator {
            if let Some(w) = &self.last_word {
                // Seq 0: not a batch; `resent` ignores it.
                out.push((0, w.clone()));
            }
        }
        out
    }

    /// Batch `seq` went out again at `now`.
    pub fn resent(&mut self, seq: u64, now: Instant) {
        if let Some(k) = self.kept.iter_mut().find(|k| k.seq == seq) {
            k.sent_at = now;
        }
    }

    /// Every batch is confirmed.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Batches forgotten unconfirmed (the bounds).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Vec<u8> {
        vec![n; 10]
    }

    #[test]
    fn confirmed_batches_are_forgotten_and_the_rest_kept() {
        let t0 = Instant::now();
        let mut u = Unconfirmed::default();
        for s in 1..=5 {
            u.keep(s, "m".into(), frame(s as u8), t0);
        }
        assert!(
            u.alive(7, Some(3), t0).is_empty(),
            "nothing stale, same coordinator"
        );
        assert_eq!(u.len(), 2);
        u.alive(7, Some(5), t0);
        assert!(u.is_empty());
    }

    #[test]
    fn a_new_coordinator_gets_every_unconfirmed_batch_and_the_last_word_again() {
        let t0 = Instant::now();
        let mut u = Unconfirmed::default();
        u.alive(7, Some(0), t0);
        for s in 1..=3 {
            u.keep(s, "m".into(), frame(s as u8), t0);
        }
        u.last_word("s".into(), b"finished".to_vec());
        let again = u.alive(9, Some(1), t0);
        let seqs: Vec<u64> = again.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![2, 3, 0]);
        assert_eq!(again[2].1, ("s".to_string(), b"finished".to_vec()));
        // An older coordinator's Alive (a replay) changes nothing.
        assert!(u.alive(8, None, t0).is_empty());
    }

    #[test]
    fn a_batch_unconfirmed_for_long_is_sent_again_once_per_period() {
        let t0 = Instant::now();
        let mut u = Unconfirmed::default();
        u.alive(7, None, t0);
        u.keep(1, "m".into(), frame(1), t0);
        let later = t0 + STALE_AFTER;
        let again = u.alive(7, Some(0), later);
        assert_eq!(again.len(), 1);
        u.resent(1, later);
        assert!(u
            .alive(7, Some(0), later + Duration::from_secs(1))
            .is_empty());
        assert_eq!(u.alive(7, Some(0), later + STALE_AFTER).len(), 1);
    }

    #[test]
    fn the_bounds_forget_the_oldest_and_count_them() {
        let t0 = Instant::now();
        let mut u = Unconfirmed::default();
        for s in 1..=(MAX_KEPT as u64 + 2) {
            u.keep(s, "m".into(), frame(1), t0);
        }
        assert_eq!(u.len(), MAX_KEPT);
        assert_eq!(u.evicted(), 2);
        let mut u = Unconfirmed::default();
        u.keep(1, "m".into(), vec![0; MAX_KEPT_BYTES], t0);
        u.keep(2, "m".into(), vec![0; 10], t0);
        assert_eq!((u.len(), u.evicted()), (1, 1));
    }
}
