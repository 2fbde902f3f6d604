//! Closed-model executors: a fixed or ramping number of VUs, each looping iterations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use messages::spec::Executor;
use tokio::sync::watch;

use super::schedule::ramp_value;
use super::{drain, stopped, Env};
use crate::scenario::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    /// VUs with a local index below this run; the others wait.
    active: u64,
    stopping: bool,
}

#[derive(Clone)]
enum Work {
    Unlimited,
    PerVu(u64),
    Shared(Arc<AtomicU64>),
}

/// Returns (interrupted, stopped_early).
pub async fn run(executor: &Executor, env: &Env, mut stop: watch::Receiver<bool>) -> (bool, bool) {
    let (vus, initial, work, duration_ms) = match executor {
        Executor::ConstantVus { vus, duration_ms } => (*vus, *vus, Work::Unlimited, *duration_ms),
        Executor::RampingVus { start_vus, stages } => {
            let max = stages
                .iter()
                .map(|s| s.target)
                .chain([*start_vus])
                .max()
                .unwrap_or(0);
            (max, *start_vus, Work::Unlimited, executor.planned_ms())
        }
        Executor::PerVuIterations {
            vus,
            iterations,
            max_duration_ms,
        } => (*vus, *vus, Work::PerVu(*iterations), *max_duration_ms),
        Executor::SharedIterations {
            vus,
            iterations,
            max_duration_ms,
        } => (
            *vus,
            *vus,
            Work::Shared(Arc::new(AtomicU64::new(*iterations))),
            *max_duration_ms,
        ),
        _ => return (false, false),
    };
    let (ctl_tx, ctl_rx) = watch::channel(Control {
        active: initial,
        stopping: false,
    });
    // Every VU holds a clone of `alive`: the channel closes when the last one leaves.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let handles: Vec<_> = (0..vus)
        .map(|i| {
            let vu = env.vu(i);
            let alive = alive_tx.clone();
            let fut = vu_loop(
                vu,
                i,
                ctl_rx.clone(),
                work.clone(),
                env.recorder.active_vus.clone(),
            );
            tokio::spawn(async move {
                fut.await;
                drop(alive);
            })
        })
        .collect();
    drop(ctl_rx);
    drop(alive_tx);

    let start = Instant::now();
    let end = tokio::time::Instant::from_std(start + Duration::from_millis(duration_ms));
    let mut stopped_early = false;
    match executor {
        Executor::RampingVus { start_vus, stages } => {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        match ramp_value(*start_vus, stages, start.elapsed()) {
                            Some(v) => {
                                let want = v.round() as u64;
                                ctl_tx.send_if_modified(|c| {
                                    let changed = c.active != want;
                                    c.active = want;
                                    changed
                                });
                            }
                            None => break,
                        }
                    }
                    _ = stopped(&mut stop) => { stopped_early = true; break; }
                }
            }
        }
        _ => {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => {}
                _ = alive_rx.recv() => {}
                _ = stopped(&mut stop) => stopped_early = true,
            }
        }
    }
    let _ = ctl_tx.send(Control {
        active: 0,
        stopping: true,
    });
    let interrupted = drain(handles, env.graceful_stop).await;
    (interrupted, stopped_early)
}

async fn vu_loop(
    mut vu: crate::scenario::Vu,
    index: u64,
    mut ctl: watch::Receiver<Control>,
    work: Work,
    active_vus: Arc<AtomicU64>,
) {
    let mut done = 0u64;
    let mut counted = false;
    let set_active = |counted: &mut bool, on: bool| {
        if *counted != on {
            if on {
                active_vus.fetch_add(1, Ordering::Relaxed);
            } else {
                active_vus.fetch_sub(1, Ordering::Relaxed);
            }
            *counted = on;
        }
    };
    let mut c = *ctl.borrow_and_update();
    loop {
        // A version check is one atomic load; borrowing takes the channel's lock.
        match ctl.has_changed() {
            Ok(false) => {}
            Ok(true) => c = *ctl.borrow_and_update(),
            Err(_) => break,
        }
        if c.stopping {
            break;
        }
        if index >= c.active {
            set_active(&mut counted, false);
            vu.buf.flush();
            if ctl.changed().await.is_err() {
                break;
            }
            // `changed` marked the new value seen: read it here, `has_changed` won't report it.
            c = *ctl.borrow_and_update();
            continue;
        }
        let take = match &work {
            Work::Unlimited => true,
            Work::PerVu(n) => done < *n,
            Work::Shared(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok(),
        };
        if !take {
            break;
        }
        set_active(&mut counted, true);
        done += 1;
        if let Outcome::DataExhausted = vu.iteration(Duration::ZERO).await {
            break;
        }
    }
    set_active(&mut counted, false);
}
