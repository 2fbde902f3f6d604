//! `herd serve`'s hand on the run history ([`crate::store`]): one thread owns the store and
//! takes its work in order from a bounded queue. In order, so a run's end is never written
//! before its acceptance; on its own thread, so no actix arbiter waits on SQLite.
//!
//! The history is a record: the journal in the state folder is what makes runs durable. A
//! write that fails — or that finds the queue full — is logged and counted, and the run goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use messages::outcome::RunCompleted;

use crate::store::{Accepted, Finished, RunStore, StoreError};

/// Writes waiting for the store at most; past it, a write is dropped (and counted) rather than
/// holding up a run.
pub const QUEUE: usize = 1024;
/// How often runs past their retention are pruned (also once at start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);

type Job = Box<dyn FnOnce(&dyn RunStore) -> Result<(), StoreError> + Send>;

#[derive(Clone)]
pub struct History {
    tx: SyncSender<(&'static str, Job)>,
    failures: Arc<AtomicU64>,
}

impl History {
    /// Starts the store's thread: it prunes past `retention` (None keeps runs forever) at
    /// start and every [`PRUNE_EVERY`], and ends when every `History` is dropped.
    pub fn start(
        store: Box<dyn RunStore>,
        retention: Option<Duration>,
    ) -> std::io::Result<History> {
        let (tx, rx) = sync_channel::<(&'static str, Job)>(QUEUE);
        let failures = Arc::new(AtomicU64::new(0));
        let counted = failures.clone();
        std::thread::Builder::new()
            .name("herd-history".into())
            .spawn(move || {
                let mut next_prune = Instant::now();
                loop {
                    if Instant::now() >= next_prune {
                        if let Some(keep) = retention {
                            prune(store.as_ref(), keep, &counted);
                        }
                        next_prune = Instant::now() + PRUNE_EVERY;
                    }
                    let wait = next_prune.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok((what, job)) => {
                            if let Err(e) = job(store.as_ref()) {
                                failed(&counted, what, &e);
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(History { tx, failures })
    }

    /// Writes that did not reach the history since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn submit(&self, what: &'static str, job: Job) {
        let why = match self.tx.try_send((what, job)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "the history's queue is full",
            Err(TrySendError::Disconnected(_)) => "the history's thread is gone",
        };
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(failures = n, what, "run history not written: {why}");
    }

    /// Runs `f` on the store's thread, after every write queued before it (so a caller sees
    /// the runs it was just told were accepted), and answers with its result. A full queue
    /// answers [`Call::Busy`] at once rather than waiting: the API says 503, writes keep room.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn RunStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Call> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |s| {
            let _ = tx.send(f(s));
            Ok(())
        });
        match self.tx.try_send(("call", job)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Call::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(Call::Gone),
        }
        match rx.await {
            Ok(r) => r.map_err(Call::Store),
            Err(_) => Err(Call::Gone),
        }
    }

    /// A run accepted (or taken back after a restart: its row is already there).
    pub fn accepted(&self, run: Accepted) {
        self.submit("accepted", Box::new(move |s| s.record_accepted(&run)));
    }

    /// A run not yet ended waits in the queue, or has started.
    pub fn status(&self, run_id: &str, status: crate::store::RunStatus) {
        let run_id = run_id.to_string();
        self.submit(
            "status",
            Box::new(move |s| s.record_status(&run_id, status)),
        );
    }

    /// A run ended, as announced in `note`; `summary` is its `summary.json` as JSON text.
    pub fn ended(&self, note: &RunCompleted, ended_at_ms: u64, summary: String) {
        let run = Finished {
            run_id: note.run_id.clone(),
            ended_at_ms,
            state: note.state,
            reason: note.reason.clone(),
            verdict: note.verdict,
            requests: note.requests,
            errors: note.errors,
            rps: note.rps,
            p95_ms: note.p95_ms,
            p99_ms: note.p99_ms,
            agents_lost: note.agents_lost,
            results: note.results.clone(),
            results_error: note.results_error.clone(),
            summary,
        };
        self.submit("ended", Box::new(move |s| s.record_ended(&run)));
    }
}

/// The history the config names: the DynamoDB table (`[history] dynamodb_table`, AWS profile)
/// or `<state_dir>/history.sqlite3`.
pub fn open_store(cfg: &crate::config::ServeConfig) -> Result<Box<dyn RunStore>, StoreError> {
    match (&cfg.history.dynamodb_table, &cfg.aws) {
        (Some(table), Some(aws)) => {
            let s = crate::store::DynamoStore::connect(
                table,
                &aws.region,
                aws.endpoint_url.as_deref(),
            )?;
            tracing::info!(table = %s.table(), retention_days = cfg.history.retention_days, "run history (DynamoDB)");
            Ok(Box::new(s))
        }
        _ => {
            let dir = cfg.state_dir();
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::Open {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
            let s = crate::store::SqliteStore::open_in(&dir)?;
            tracing::info!(file = %s.path().display(), retention_days = cfg.history.retention_days, "run history");
            Ok(Box::new(s))
        }
    }
}

/// Why [`History::call`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum Call {
    #[error("the run history is busy: try again")]
    Busy,
    #[error("the run history's thread is gone")]
    Gone,
    #[error(transparent)]
    Store(StoreError),
}

fn failed(count: &AtomicU64, what: &str, e: &StoreError) {
    let n = count.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(failures = n, what, error = %e, "run history not written (the run goes on)");
}

fn prune(store: &dyn RunStore, keep: Duration, count: &AtomicU64) {
    let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    let cutoff = crate::clock::unix_ms().saturating_sub(keep_ms);
    match store.prune(cutoff) {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "pruned runs past the history's retention"),
        Err(e) => failed(count, "prune", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunFilter, SqliteStore};

    #[test]
    fn writes_reach_the_store_in_order_and_old_runs_are_pruned_at_start() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open_in(dir.path()).expect("open");
        let old = Accepted {
            run_id: "old".into(),
            spec: "s".into(),
            source: "inbox/s.yaml".into(),
            correlation_id: None,
            accepted_at_ms: 1,
            agents: 1,
            spec_text: "name: s\n".into(),
        };
        store.record_accepted(&old).expect("old");
        let h = History::start(Box::new(store), Some(Duration::from_secs(86_400))).expect("start");
        let new = Accepted {
            run_id: "new".into(),
            accepted_at_ms: crate::clock::unix_ms(),
            ..old
        };
        h.accepted(new);
        let note: RunCompleted = serde_json::from_value(serde_json::json!({
            "run_id": "new", "spec": "s", "correlation_id": null, "source": "inbox/s.yaml",
            "state": "failed", "reason": "no agents", "verdict": "failed", "requests": 0,
            "errors": 0, "rps": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "agents_lost": 0,
            "thresholds": [], "results": null, "results_error": "no results: no agents"
        }))
        .expect("note");
        h.ended(&note, 5, "{}".into());
        // A write for a run never accepted fails, and is counted.
        h.ended(
            &RunCompleted {
                run_id: "ghost".into(),
                ..note
            },
            5,
            "{}".into(),
        );
        let failures = h.failures.clone();
        drop(h);
        let deadline = Instant::now() + Duration::from_secs(10);
        let store = loop {
            // The thread drops its connection when it ends; until then the rows may be in flight.
            let s = SqliteStore::open_in(dir.path()).expect("reopen");
            let page = s.list(&RunFilter::default(), None, 10).expect("list");
            let ended = page.rows.iter().any(|r| r.finished.is_some());
            let counted = failures.load(Ordering::Relaxed) == 1;
            if (page.rows.len() == 1 && ended && counted) || Instant::now() > deadline {
                break page;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(store.rows.len(), 1, "old pruned: {store:?}");
        assert_eq!(failures.load(Ordering::Relaxed), 1, "the ghost's end");
        let row = &store.rows[0];
        assert_eq!(row.accepted.run_id, "new");
        let f = row.finished.as_ref().expect("ended");
        assert_eq!(f.results_error.as_deref(), Some("no results: no agents"));
    }
}
