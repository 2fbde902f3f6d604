//! `Board`: the runs `herd serve` holds right now, as its API sees them — each run's live feed
//! (for SSE streams and `/metrics`) and the service's counters. Shared memory rather than an
//! actor, so a scrape or a new stream never waits behind the registry's work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use messages::outcome::EndState;

use crate::run::live::LiveTap;

/// One run on the board.
#[derive(Clone)]
pub struct OnBoard {
    pub spec: String,
    /// Waiting in the run queue.
    pub queued: bool,
    pub agents: u32,
    pub tap: LiveTap,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    refused_logins: AtomicU64,
}

#[derive(Clone, Default)]
pub struct Board {
    runs: Arc<Mutex<HashMap<String, OnBoard>>>,
    counters: Arc<Counters>,
}

/// The service's counters since start (Prometheus counters).
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub accepted: u64,
    pub rejected: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// API requests with a token that is unknown, wrong or revoked.
    pub refused_logins: u64,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OnBoard>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run starts (or is taken back): its live feed, which its publisher writes to.
    pub fn open(&self, run_id: &str, spec: &str, agents: u32, resumed: bool) -> LiveTap {
        if !resumed {
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        }
        let tap = LiveTap::default();
        self.lock().insert(
            run_id.to_string(),
            OnBoard {
                spec: spec.to_string(),
                queued: false,
                agents,
                tap: tap.clone(),
            },
        );
        tap
    }

    pub fn set_queued(&self, run_id: &str, queued: bool) {
        if let Some(r) = self.lock().get_mut(run_id) {
            r.queued = queued;
        }
    }

    pub fn get(&self, run_id: &str) -> Option<OnBoard> {
        self.lock().get(run_id).cloned()
    }

    /// The run was announced: its feed's readers get `result`, and it leaves the board.
    pub fn close(&self, run_id: &str, state: EndState, result: Arc<str>) {
        let c = match state {
            EndState::Completed => &self.counters.completed,
            EndState::Failed => &self.counters.failed,
            EndState::Cancelled => &self.counters.cancelled,
        };
        c.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = self.lock().remove(run_id) {
            r.tap.finish(result);
        }
    }

    /// A reader of the run's live feed, if the run is on the board. Taken under the board's
    /// lock, as `close` removes under it before sending the result: a reader either subscribed
    /// in time for the result, or finds the run gone (and reads its result from the history).
    pub fn subscribe(
        &self,
        run_id: &str,
    ) -> Option<tokio::sync::broadcast::Receiver<crate::run::live::LiveEvent>> {
        self.lock().get(run_id).map(|r| r.tap.subscribe())
    }

    pub fn refused_login(&self) {
        self.counters.refused_logins.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Every run on the board, by id.
    pub fn runs(&self) -> Vec<(String, OnBoard)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn totals(&self) -> Totals {
        let c = &self.counters;
        Totals {
            accepted: c.accepted.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            refused_logins: c.refused_logins.load(Ordering::Relaxed),
        }
    }
}
