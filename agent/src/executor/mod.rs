//! Executors decide when VUs run iterations.
//!
//! - [`closed`]: constant-vus, ramping-vus, per-vu-iterations, shared-iterations — a VU starts
//!   its next iteration when the previous one ends.
//! - [`open`]: constant-arrival-rate, ramping-arrival-rate — iterations start on a schedule
//!   whatever the system under test does; latency counts from the scheduled instant and
//!   iterations no VU could take are counted as dropped.
//! - [`schedule`]: the pure arithmetic of both (ramps and arrival instants).

pub mod closed;
pub mod open;
pub mod schedule;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use messages::spec::Executor;
use tokio::sync::watch;

use crate::http::HttpConfig;
use crate::recorder::RecorderHandle;
use crate::scenario::{Plan, Vu};

/// What every executor needs.
#[derive(Clone)]
pub struct Env {
    pub plan: Arc<Plan>,
    pub http: Arc<HttpConfig>,
    pub recorder: RecorderHandle,
    /// Global number of this agent's first VU minus one.
    pub vu_offset: u64,
    pub graceful_stop: Duration,
}

impl Env {
    fn vu(&self, local_index: u64) -> Vu {
        Vu::new(
            self.vu_offset + local_index + 1,
            self.plan.clone(),
            self.http.clone(),
            self.recorder.buf(),
        )
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub started: Instant,
    pub ended: Instant,
    /// Some iterations were still running after the graceful stop and were cut off.
    pub interrupted: bool,
    /// The run was ended early by a stop request.
    pub stopped_early: bool,
    /// Each check's passes and failures (filled in by whoever ran the recorder).
    pub checks: Vec<messages::wire::CheckCount>,
    /// Connections opened, by HTTP version (native engine).
    pub http_versions: Vec<(String, u64)>,
}

/// Runs `executor` to completion. Flipping `stop` to true ends it early, gracefully.
pub async fn run(executor: &Executor, env: Env, stop: watch::Receiver<bool>) -> Report {
    let started = Instant::now();
    let (interrupted, stopped_early) = if executor.is_arrival_rate() {
        open::run(executor, &env, stop).await
    } else {
        closed::run(executor, &env, stop).await
    };
    env.recorder.active_vus.store(0, Ordering::Relaxed);
    Report {
        started,
        ended: Instant::now(),
        interrupted,
        stopped_early,
        checks: Vec::new(),
        http_versions: Vec::new(),
    }
}

/// Waits for `handles` up to the graceful stop, then aborts whatever still runs. An aborted
/// VU drops its sample buffer, which flushes what it measured; only the requests cut off
/// mid-flight are not recorded (they never completed). Returns whether anything was cut off.
async fn drain(handles: Vec<tokio::task::JoinHandle<()>>, graceful: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + graceful;
    let mut interrupted = false;
    for mut h in handles {
        if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
            interrupted = true;
            h.abort();
            let _ = h.await;
        }
    }
    interrupted
}

/// Resolves when `stop` becomes true (or its sender is gone, which never stops a run).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
