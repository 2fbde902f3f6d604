//! Open-model executors: iterations start on schedule, whatever the target does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use messages::spec::Executor;
use tokio::sync::{mpsc, watch};

use super::schedule::Arrivals;
use super::{drain, stopped, Env};
use crate::scenario::{Outcome, Vu};

/// An iteration handed to an idle VU, with the instant it should have started.
struct Job {
    intended: Instant,
}

/// Returns (interrupted, stopped_early).
pub async fn run(executor: &Executor, env: &Env, mut stop: watch::Receiver<bool>) -> (bool, bool) {
    let (arrivals, pre, max) = match executor {
        Executor::ConstantArrivalRate {
            rate,
            time_unit_ms,
            duration_ms,
            pre_allocated_vus,
            max_vus,
        } => (
            Arrivals::constant(*rate, *time_unit_ms, *duration_ms),
            *pre_allocated_vus,
            *max_vus,
        ),
        Executor::RampingArrivalRate {
            start_rate,
            time_unit_ms,
            stages,
            pre_allocated_vus,
            max_vus,
        } => (
            Arrivals::ramping(*start_rate, *time_unit_ms, stages),
            *pre_allocated_vus,
            *max_vus,
        ),
        _ => return (false, false),
    };
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<usize>();
    let busy = env.recorder.active_vus.clone();
    let mut senders: Vec<mpsc::Sender<Job>> = Vec::new();
    let mut handles = Vec::new();
    let mut idle: Vec<usize> = Vec::new();
    let spawn = |senders: &mut Vec<mpsc::Sender<Job>>, handles: &mut Vec<_>| {
        let i = senders.len();
        let (tx, rx) = mpsc::channel(1);
        handles.push(tokio::spawn(vu_loop(
            env.vu(i as u64),
            i,
            rx,
            idle_tx.clone(),
            busy.clone(),
        )));
        senders.push(tx);
        i
    };
    for _ in 0..pre.min(max) {
        let i = spawn(&mut senders, &mut handles);
        idle.push(i);
    }
    // The dispatcher's own buffer carries dropped-iteration counts to the recorder.
    let mut dropped = env.recorder.buf();
    let start = Instant::now();
    let mut stopped_early = false;
    for offset in arrivals {
        let due = start + offset;
        if due > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {}
                _ = stopped(&mut stop) => { stopped_early = true; break; }
            }
        }
        while let Ok(i) = idle_rx.try_recv() {
            idle.push(i);
        }
        let vu = match idle.pop() {
            Some(i) => Some(i),
            None if (senders.len() as u64) < max => Some(spawn(&mut senders, &mut handles)),
            None => None,
        };
        match vu {
            Some(i) => {
                if senders[i].try_send(Job { intended: due }).is_err() {
                    // Cannot happen: an idle VU's one-slot queue is empty. Count it rather than lose it.
                    dropped.dropped(Instant::now(), 1);
                }
            }
            None => dropped.dropped(Instant::now(), 1),
        }
    }
    drop(dropped);
    // Closing the job queues lets each VU finish its iteration and leave.
    drop(senders);
    let interrupted = drain(handles, env.graceful_stop).await;
    (interrupted, stopped_early)
}

async fn vu_loop(
    mut vu: Vu,
    index: usize,
    mut jobs: mpsc::Receiver<Job>,
    idle: mpsc::UnboundedSender<usize>,
    busy: Arc<AtomicU64>,
) {
    loop {
        // An idle VU hands over what it measured instead of holding it until its next job.
        let job = match tokio::time::timeout(Duration::from_millis(100), jobs.recv()).await {
            Ok(j) => j,
            Err(_) => {
                vu.buf.flush();
                jobs.recv().await
            }
        };
        let Some(job) = job else { break };
        busy.fetch_add(1, Ordering::Relaxed);
        let lag = Instant::now().saturating_duration_since(job.intended);
        let outcome = vu.iteration(lag).await;
        busy.fetch_sub(1, Ordering::Relaxed);
        if let Outcome::DataExhausted = outcome {
            break;
        }
        if idle.send(index).is_err() {
            break;
        }
    }
}
