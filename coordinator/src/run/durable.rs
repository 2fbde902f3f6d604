//! A run's journal, as the run core writes it: the state machine's events (each durable before
//! the effects it licenses are carried out) and the metric batches the fold accepted (durable
//! once a second, and only then confirmed to the agents, which keep everything unconfirmed and
//! send it again to a coordinator that restarted). Replaying both rebuilds the machine and the
//! fold exactly: nothing an agent sent is lost, nothing counts twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use messages::metrics::MetricBatch;
use serde::{Deserialize, Serialize};

use super::machine::Event;
use crate::journal::log::{Log, LogError};

#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{what} in {log}: {reason}")]
    Decode {
        what: &'static str,
        log: String,
        reason: String,
    },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Every record of the log at `path`, decoded as `T` (`what` names one in an error).
fn decode_all<T: serde::de::DeserializeOwned>(
    records: &[Vec<u8>],
    path: &Path,
    what: &'static str,
) -> Result<Vec<T>, DurableError> {
    records
        .iter()
        .map(|r| {
            bincode::serde::decode_from_slice::<T, _>(r, config())
                .map(|(v, _)| v)
                .map_err(|e| DurableError::Decode {
                    what,
                    log: path.display().to_string(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

/// An event and when it happened (unix ms, the coordinator's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampedEvent {
    pub at_ms: u64,
    pub event: Event,
}

/// A batch the fold accepted: which agent, its sequence number, and the second it arrived
/// (what the fold's window was checked against).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBatch {
    pub now_s: u64,
    pub agent: u32,
    pub seq: u64,
    pub batch: MetricBatch,
}

/// `events.log`.
pub struct EventJournal {
    log: Log,
}

impl EventJournal {
    /// Opens the run's event log, with what it holds.
    pub fn open(path: &Path) -> Result<(EventJournal, Vec<StampedEvent>), DurableError> {
        let (log, records) = Log::open(path)?;
        let events = decode_all(&records, path, "an event")?;
        Ok((EventJournal { log }, events))
    }

    /// Appends `event` and returns once it is on disk.
    pub fn record(&mut self, at_ms: u64, event: &Event) -> Result<(), DurableError> {
        let bytes = bincode::serde::encode_to_vec(
            &StampedEvent {
                at_ms,
                event: event.clone(),
            },
            config(),
        )
        .map_err(|e| DurableError::Decode {
            what: "an event",
            log: "events.log".into(),
            reason: e.to_string(),
        })?;
        Ok(self.log.append_durable(&bytes)?)
    }
}

/// `batches.log`, and what of it each agent may be told is safe. Without a log (`herd run`:
/// nothing outlives the process, so nothing is gained by a disk) a batch is confirmed as soon
/// as the fold took it.
pub struct BatchJournal {
    log: Option<Log>,
    /// Appended since the last sync, by agent.
    pending: BTreeMap<u32, Vec<u64>>,
    confirmed: Confirmations,
}

impl BatchJournal {
    pub fn open(path: &Path) -> Result<(BatchJournal, Vec<StoredBatch>), DurableError> {
        let (log, records) = Log::open(path)?;
        let batches: Vec<StoredBatch> = decode_all(&records, path, "a batch")?;
        let mut confirmed = Confirmations::default();
        for b in &batches {
            confirmed.add(b.agent, b.seq);
        }
        Ok((
            BatchJournal {
                log: Some(log),
                pending: BTreeMap::new(),
                confirmed,
            },
            batches,
        ))
    }

    /// A journal that keeps nothing: every batch is confirmed once recorded.
    pub fn memory() -> BatchJournal {
        BatchJournal {
            log: None,
            pending: BTreeMap::new(),
            confirmed: Confirmations::default(),
        }
    }

    /// Appends a batch the fold took (folded or rejected: either way it must not be sent
    /// again), durable at the next [`BatchJournal::sync`].
    pub fn record(&mut self, b: &StoredBatch) -> Result<(), DurableError> {
        let Some(log) = self.log.as_mut() else {
            self.confirmed.add(b.agent, b.seq);
            return Ok(());
        };
        let bytes =
            bincode::serde::encode_to_vec(b, config()).map_err(|e| DurableError::Decode {
                what: "a batch",
                log: "batches.log".into(),
                reason: e.to_string(),
            })?;
        log.append(&bytes)?;
        self.pending.entry(b.agent).or_default().push(b.seq);
        Ok(())
    }

    /// Makes every recorded batch durable; only then are they confirmed.
    pub fn sync(&mut self) -> Result<(), DurableError> {
        if let Some(log) = self.log.as_mut() {
            log.sync()?;
        }
        for (agent, seqs) in std::mem::take(&mut self.pending) {
            for s in seqs {
                self.confirmed.add(agent, s);
            }
        }
        Ok(())
    }

    /// For each agent `0..agents`, the batches it may forget: every seq up to this is durable.
    pub fn confirmed(&self, agents: u32) -> Vec<u64> {
        (0..agents).map(|a| self.confirmed.through(a)).collect()
    }
}

/// Durable batches of one agent held past a gap, at most. An agent numbers its batches without
/// gaps and keeps them until confirmed, so a gap closes within seconds; more than this many
/// ahead of it is no agent of ours (it is still folded, only not confirmed — a real agent
/// would send it again).
pub const MAX_AHEAD: usize = 100_000;

/// Per agent, the longest run of batch sequence numbers 1, 2, 3… all durable. Agents number
/// their batches without gaps, so this is exactly what they can drop.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Confirmations {
    through: BTreeMap<u32, u64>,
    /// Durable, but after a gap.
    ahead: BTreeMap<u32, BTreeSet<u64>>,
}

impl Confirmations {
    pub fn add(&mut self, agent: u32, seq: u64) {
        let through = self.through.entry(agent).or_insert(0);
        if seq <= *through {
            return;
        }
        let ahead = self.ahead.entry(agent).or_default();
        if ahead.len() >= MAX_AHEAD && seq != *through + 1 {
            return;
        }
        ahead.insert(seq);
        while ahead.remove(&(*through + 1)) {
            *through += 1;
        }
    }

    pub fn through(&self, agent: u32) -> u64 {
        self.through.get(&agent).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(agent: u32, seq: u64) -> StoredBatch {
        StoredBatch {
            now_s: 100,
            agent,
            seq,
            batch: MetricBatch {
                agent,
                second: 99,
                labels: Vec::new(),
                vus: 1,
                iterations: 0,
                dropped_iterations: 0,
            },
        }
    }

    #[test]
    fn only_a_gapless_durable_prefix_is_confirmed() {
        let mut c = Confirmations::default();
        c.add(0, 2);
        assert_eq!(c.through(0), 0, "1 is missing");
        c.add(0, 1);
        assert_eq!(c.through(0), 2);
        c.add(0, 2);
        c.add(0, 4);
        assert_eq!(c.through(0), 2);
        assert_eq!(c.through(1), 0);
    }

    #[test]
    fn seqs_held_past_a_gap_are_bounded() {
        let mut c = Confirmations::default();
        // A hostile agent: never seq 1, ever more seqs after the gap.
        for seq in 2..(MAX_AHEAD as u64 + 1_000) {
            c.add(0, seq);
        }
        assert_eq!(c.ahead.get(&0).map(|a| a.len()), Some(MAX_AHEAD));
        assert_eq!(c.through(0), 0);
        // The gap closing still confirms what is held.
        c.add(0, 1);
        assert_eq!(c.through(0), MAX_AHEAD as u64 + 1);
    }

    #[test]
    fn batches_are_confirmed_after_sync_and_come_back_after_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("batches.log");
        let (mut j, none) = BatchJournal::open(&p).expect("open");
        assert!(none.is_empty());
        j.record(&batch(0, 1)).expect("1");
        j.record(&batch(1, 1)).expect("1");
        assert_eq!(j.confirmed(2), vec![0, 0], "not durable yet");
        j.sync().expect("sync");
        assert_eq!(j.confirmed(2), vec![1, 1]);
        j.record(&batch(0, 2)).expect("2");
        j.sync().expect("sync");
        drop(j);
        let (j, back) = BatchJournal::open(&p).expect("reopen");
        assert_eq!(back, vec![batch(0, 1), batch(1, 1), batch(0, 2)]);
        assert_eq!(j.confirmed(2), vec![2, 1]);
    }

    #[test]
    fn events_come_back_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("events.log");
        let (mut j, _) = EventJournal::open(&p).expect("open");
        j.record(1, &Event::Begin).expect("begin");
        j.record(2, &Event::Ready { agent: 3 }).expect("ready");
        drop(j);
        let (_, back) = EventJournal::open(&p).expect("reopen");
        assert_eq!(
            back,
            vec![
                StampedEvent {
                    at_ms: 1,
                    event: Event::Begin
                },
                StampedEvent {
                    at_ms: 2,
                    event: Event::Ready { agent: 3 }
                }
            ]
        );
    }
}
