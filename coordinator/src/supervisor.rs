//! `RunSupervisor`: one per run, the run's state machine. Every transition is a message and
//! every wait has a deadline message; state changes in one place ([`RunSupervisor::transition`]).
//!
//! ```text
//! Accepted → Launching → WaitingForAgents → Running → Draining → Completed
//!     └──────────┴──────────────┴──────────────┴─────────┴─→ Failed(reason) | Cancelled(reason)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use messages::spec::Spec;
use messages::split::Share;
use messages::topics;
use messages::wire::{Assign, Body, DataFile, Start, Stop};
use tokio::sync::oneshot;

use crate::aggregator::{Aggregator, Finish};
use crate::bus::Bus;
use crate::clock::unix_ms;
use crate::live::{LivePublisher, Started};
use crate::protocol::{AgentExited, Drained, ExpectBatches, FromAgent, LaunchAgents, StopAgents};
use crate::results::{AgentSummary, FinalResult, ResultsWriter, WriteResults};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Accepted,
    Launching,
    WaitingForAgents,
    Running,
    Draining,
    Completed,
    Failed(String),
    Cancelled(String),
}

impl RunState {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RunState::Completed | RunState::Failed(_) | RunState::Cancelled(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Launched,
    Assigned(Instant),
    Ready,
    Running,
    Finished,
    Drained,
    /// The process ended before its Finished arrived; it may still be on its way.
    Exited(String),
    Lost(String),
    Failed(String),
}

impl Slot {
    fn is_terminal(&self) -> bool {
        matches!(self, Slot::Drained | Slot::Lost(_) | Slot::Failed(_))
    }
}

struct AgentRec {
    slot: Slot,
    last_seen: Instant,
    region: String,
    started_at_ms: Option<u64>,
    finished_at_ms: Option<u64>,
    dropped: u64,
}

/// How long agents have to come up and report Ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// An agent silent this long while running is lost.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time past planned duration + graceful stop before a run counts as overrunning.
pub const OVERRUN_GRACE: Duration = Duration::from_secs(30);
/// Lead time between all agents Ready and the common start instant.
pub const START_LEAD: Duration = Duration::from_millis(1000);

/// What `herd run` gets back.
pub struct Outcome {
    pub result: FinalResult,
    pub dir: Result<std::path::PathBuf, String>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Begin;

/// Ctrl-C, API or pipeline cancel: stop gracefully, keep partial results.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel {
    pub reason: String,
}

#[derive(Message)]
#[rtype(result = "()")]
struct ReadyDeadline;

#[derive(Message)]
#[rtype(result = "()")]
struct RunDeadline;

#[derive(Message)]
#[rtype(result = "()")]
struct DrainDeadline {
    agent: u32,
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopDeadline;

#[derive(Message)]
#[rtype(result = "()")]
struct ExitGrace {
    agent: u32,
}

/// How long after an agent's process ended its Finished (and batches) may still arrive: the
/// exit is reported locally at once, the messages go through the broker.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

pub struct Deps {
    pub bus: Bus,
    pub launcher: Recipient<LaunchAgents>,
    pub stop_agents: Recipient<StopAgents>,
    pub aggregator: Addr<Aggregator>,
    pub live: Addr<LivePublisher>,
    pub results: Addr<ResultsWriter>,
}

pub struct RunSupervisor {
    run_id: String,
    spec: Arc<Spec>,
    data: Vec<DataFile>,
    shares: Vec<Share>,
    agents: Vec<AgentRec>,
    state: RunState,
    launch: LaunchAgents,
    deps: Deps,
    seq: u64,
    start_at_ms: Option<u64>,
    cancel_reason: Option<String>,
    done: Option<oneshot::Sender<Outcome>>,
}

impl RunSupervisor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_id: String,
        spec: Arc<Spec>,
        data: Vec<DataFile>,
        shares: Vec<Share>,
        launch: LaunchAgents,
        deps: Deps,
        done: oneshot::Sender<Outcome>,
    ) -> RunSupervisor {
        let now = Instant::now();
        let agents = (0..shares.len() as u32)
            .map(|i| AgentRec {
                slot: Slot::Launched,
                last_seen: now,
                region: spec.agents.region_of(i),
                started_at_ms: None,
                finished_at_ms: None,
                dropped: 0,
            })
            .collect();
        RunSupervisor {
            run_id,
            spec,
            data,
            shares,
            agents,
            state: RunState::Accepted,
            launch,
            deps,
            seq: 0,
            start_at_ms: None,
            cancel_reason: None,
            done: Some(done),
        }
    }

    /// The one place the run's state changes. Returns the previous state.
    fn transition(&mut self, to: RunState) -> RunState {
        tracing::info!(run = %self.run_id, from = ?self.state, to = ?to, "run state");
        std::mem::replace(&mut self.state, to)
    }

    fn control(&mut self, body: Body) {
        self.seq += 1;
        self.deps
            .bus
            .publish_body(topics::control(&self.run_id), &self.run_id, self.seq, body);
    }

    fn send_assign(&mut self, agent: u32) {
        let Some(share) = self.shares.get(agent as usize).cloned() else {
            return;
        };
        let region = self.agents[agent as usize].region.clone();
        let body = Body::Assign(Assign {
            agent,
            region,
            spec: (*self.spec).clone(),
            share,
            data: self.data.clone(),
        });
        self.control(body);
        self.agents[agent as usize].slot = Slot::Assigned(Instant::now());
    }

    fn all(&self, f: impl Fn(&Slot) -> bool) -> bool {
        self.agents.iter().all(|a| f(&a.slot))
    }

    fn start(&mut self, ctx: &mut Context<Self>) {
        let at_ms = unix_ms() + START_LEAD.as_millis() as u64;
        self.start_at_ms = Some(at_ms);
        self.control(Body::Start(Start { at_ms }));
        for a in self.agents.iter_mut().filter(|a| a.slot == Slot::Ready) {
            a.slot = Slot::Running;
            a.last_seen = Instant::now();
        }
        self.deps.live.do_send(Started { at_ms });
        self.transition(RunState::Running);
        let budget = START_LEAD
            + Duration::from_millis(
                self.spec.load.executor.planned_ms() + self.spec.load.graceful_stop_ms,
            )
            + OVERRUN_GRACE;
        ctx.notify_later(RunDeadline, budget);
    }

    fn lose(&mut self, agent: u32, reason: String) {
        if let Some(a) = self.agents.get_mut(agent as usize) {
            if !a.slot.is_terminal() {
                tracing::warn!(run = %self.run_id, agent, %reason, "agent lost");
                a.slot = Slot::Lost(reason);
            }
        }
    }

    /// Every agent still in the run is Ready (and at least one is).
    fn ready_to_start(&self) -> bool {
        let live = self.agents.iter().filter(|a| !a.slot.is_terminal());
        let mut any = false;
        for a in live {
            if a.slot != Slot::Ready {
                return false;
            }
            any = true;
        }
        any
    }

    /// `Some(reason)` when fewer agents are healthy than the spec's `min_healthy_agents`.
    fn below_min_healthy(&self) -> Option<String> {
        let pct = self.spec.min_healthy_agents?;
        let total = self.agents.len();
        let healthy = self
            .agents
            .iter()
            .filter(|a| !matches!(a.slot, Slot::Lost(_) | Slot::Failed(_)))
            .count();
        (healthy * 100 < pct as usize * total).then(|| {
            let why: Vec<String> = self
                .agents
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match &a.slot {
                    Slot::Lost(r) | Slot::Failed(r) => Some(format!("agent {i}: {r}")),
                    _ => None,
                })
                .take(5)
                .collect();
            format!(
                "healthy agents {healthy}/{total} fell below min_healthy_agents {pct}% ({})",
                why.join("; ")
            )
        })
    }

    /// An agent dropped out before the start: fatal unless the spec tolerates losses.
    fn lost_before_start(&mut self, agent: u32, reason: String, ctx: &mut Context<Self>) {
        if self.spec.min_healthy_agents.is_none() {
            self.fail(format!("agent {agent} {reason}"), ctx);
            return;
        }
        self.lose(agent, reason);
        if let Some(why) = self.below_min_healthy() {
            self.fail(why, ctx);
        } else if self.ready_to_start() {
            self.start(ctx);
        }
    }

    fn check_done(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.state, RunState::Running | RunState::Draining) {
            if let Some(why) = self.below_min_healthy() {
                self.fail(why, ctx);
                return;
            }
        }
        if matches!(self.state, RunState::Running | RunState::Draining)
            && self.all(Slot::is_terminal)
        {
            let end = match self.cancel_reason.clone() {
                Some(r) => RunState::Cancelled(r),
                None if self.agents.iter().all(|a| a.slot != Slot::Drained) => {
                    RunState::Failed("every agent was lost".into())
                }
                None => RunState::Completed,
            };
            self.finalize(end, ctx);
        }
    }

    fn fail(&mut self, reason: String, ctx: &mut Context<Self>) {
        self.control(Body::Stop(Stop {
            reason: reason.clone(),
        }));
        self.finalize(RunState::Failed(reason), ctx);
    }

    /// Ends the run: stops leftover agents, collects the aggregate, writes results, reports.
    fn finalize(&mut self, end: RunState, ctx: &mut Context<Self>) {
        if self.state.is_terminal() {
            return;
        }
        self.transition(end.clone());
        self.deps.stop_agents.do_send(StopAgents);
        let (state, reason) = match &end {
            RunState::Completed => ("completed", None),
            RunState::Failed(r) => ("failed", Some(r.clone())),
            RunState::Cancelled(r) => ("cancelled", Some(r.clone())),
            _ => ("failed", Some("ended in a non-final state".to_string())),
        };
        let ended_at_ms = unix_ms();
        let load_end = self
            .agents
            .iter()
            .filter_map(|a| a.finished_at_ms)
            .max()
            .unwrap_or(ended_at_ms);
        let seconds = self
            .start_at_ms
            .map_or(0.0, |s| load_end.saturating_sub(s) as f64 / 1000.0);
        // Batches received are filled in from the aggregator below.
        let mut agents: Vec<AgentSummary> = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (st, why) = match &a.slot {
                    Slot::Drained => ("finished", None),
                    Slot::Lost(r) => ("lost", Some(r.clone())),
                    Slot::Failed(r) => ("failed", Some(r.clone())),
                    other => ("lost", Some(format!("still {other:?} at the end"))),
                };
                AgentSummary {
                    index: i as u32,
                    region: a.region.clone(),
                    state: st.to_string(),
                    reason: why,
                    started_at_ms: a.started_at_ms,
                    batches_received: 0,
                    batches_dropped_by_agent: a.dropped,
                }
            })
            .collect();
        let run_id = self.run_id.clone();
        let spec = self.spec.clone();
        let start_at_ms = self.start_at_ms;
        let aggregator = self.deps.aggregator.clone();
        let results = self.deps.results.clone();
        let done = self.done.take();
        ctx.spawn(
            async move {
                let folded = match aggregator.send(Finish).await {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!(error = %e, "aggregator unreachable at the end of the run");
                        return;
                    }
                };
                let totals = agent::report::Totals {
                    labels: folded.totals,
                    iterations: folded.iterations,
                    dropped: folded.dropped,
                };
                let verdicts = totals.judge(&spec.thresholds, seconds).unwrap_or_else(|e| {
                    // Unjudgeable is not passed: every threshold fails, with the reason logged.
                    tracing::error!(error = %e, "judging thresholds failed");
                    spec.thresholds
                        .iter()
                        .map(|t| messages::threshold::Verdict {
                            expr: t.expr.clone(),
                            label: t.label.clone(),
                            observed: f64::NAN,
                            passed: false,
                        })
                        .collect()
                });
                for a in &mut agents {
                    a.batches_received = folded.batches.get(&a.index).copied().unwrap_or(0);
                }
                let total = totals.total().unwrap_or_else(|e| {
                    tracing::error!(error = %e, "summing labels failed: totals are empty");
                    Default::default()
                });
                let result = FinalResult {
                    run_id,
                    state: state.to_string(),
                    reason,
                    start_at_ms,
                    ended_at_ms,
                    seconds,
                    totals: totals.labels,
                    total,
                    by_region: folded.by_region,
                    verdicts,
                    agents,
                    iterations: folded.iterations,
                    dropped: folded.dropped,
                    late_batches: folded.late_batches,
                    rows: folded.rows,
                };
                let dir = match results.send(WriteResults(result.clone())).await {
                    Ok(r) => r,
                    Err(e) => Err(format!("results writer unreachable: {e}")),
                };
                if let Some(done) = done {
                    let _ = done.send(Outcome { result, dir });
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for RunSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(1), |s, ctx| {
            if !matches!(s.state, RunState::Running | RunState::Draining) {
                return;
            }
            let silent: Vec<u32> = s
                .agents
                .iter()
                .enumerate()
                .filter(|(_, a)| {
                    matches!(a.slot, Slot::Running) && a.last_seen.elapsed() > HEARTBEAT_TIMEOUT
                })
                .map(|(i, _)| i as u32)
                .collect();
            for i in silent {
                s.lose(i, format!("no heartbeat for {HEARTBEAT_TIMEOUT:?}"));
            }
            s.check_done(ctx);
        });
    }
}

impl Handler<Begin> for RunSupervisor {
    type Result = ();

    fn handle(&mut self, _msg: Begin, ctx: &mut Context<Self>) {
        self.transition(RunState::Launching);
        let launch = self.launch.clone();
        ctx.spawn(
            self.deps
                .launcher
                .send(launch)
                .into_actor(self)
                .map(|res, s, ctx| {
                    let err = match res {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(e) => Some(format!("launcher unreachable: {e}")),
                    };
                    match err {
                        Some(e) => s.fail(format!("launching agents failed: {e}"), ctx),
                        None => {
                            if s.state == RunState::Launching {
                                s.transition(RunState::WaitingForAgents);
                                ctx.notify_later(ReadyDeadline, READY_TIMEOUT);
                            }
                        }
                    }
                }),
        );
    }
}

impl Handler<FromAgent> for RunSupervisor {
    type Result = ();

    fn handle(&mut self, msg: FromAgent, ctx: &mut Context<Self>) {
        let i = msg.agent as usize;
        if i >= self.agents.len() || msg.env.run_id != self.run_id {
            return;
        }
        self.agents[i].last_seen = Instant::now();
        match msg.env.body {
            Body::Heartbeat(_) => {
                let resend = match self.agents[i].slot {
                    Slot::Launched => true,
                    // The Assign may have raced the agent's subscription: offer it again.
                    Slot::Assigned(at) => at.elapsed() > Duration::from_secs(3),
                    _ => false,
                };
                if resend && matches!(self.state, RunState::Launching | RunState::WaitingForAgents)
                {
                    self.send_assign(msg.agent);
                }
            }
            Body::Ready(r) => {
                tracing::info!(agent = r.agent, host = %r.host, "agent ready");
                if matches!(self.agents[i].slot, Slot::Launched | Slot::Assigned(_)) {
                    self.agents[i].slot = Slot::Ready;
                }
                // Launching too: agents may all be Ready before the launcher's reply arrives.
                if matches!(self.state, RunState::Launching | RunState::WaitingForAgents)
                    && self.ready_to_start()
                {
                    self.start(ctx);
                }
            }
            Body::Finished(f) => {
                let a = &mut self.agents[i];
                a.started_at_ms = Some(f.started_at_ms);
                a.finished_at_ms = Some(msg.env.sent_at_ms);
                a.dropped = f.batches_dropped;
                if !a.slot.is_terminal() {
                    a.slot = Slot::Finished;
                }
                // The first agent done ends the load phase: the rest is draining.
                if self.state == RunState::Running {
                    self.transition(RunState::Draining);
                }
                self.deps.aggregator.do_send(ExpectBatches {
                    agent: msg.agent,
                    batches: f.batches_sent,
                });
                ctx.notify_later(DrainDeadline { agent: msg.agent }, Duration::from_secs(10));
            }
            Body::Failed(f) => {
                if matches!(self.state, RunState::Launching | RunState::WaitingForAgents) {
                    let reason = format!("failed before the start: {}", f.reason);
                    self.agents[i].slot = Slot::Failed(reason.clone());
                    self.lost_before_start(msg.agent, reason, ctx);
                } else {
                    self.agents[i].slot = Slot::Failed(f.reason);
                    self.check_done(ctx);
                }
            }
            other => tracing::warn!(kind = other.kind(), "unexpected message on a status topic"),
        }
    }
}

impl Handler<Drained> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Drained, ctx: &mut Context<Self>) {
        if let Some(a) = self.agents.get_mut(msg.agent as usize) {
            if a.slot == Slot::Finished {
                a.slot = Slot::Drained;
            }
        }
        self.check_done(ctx);
    }
}

impl Handler<DrainDeadline> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: DrainDeadline, ctx: &mut Context<Self>) {
        if self
            .agents
            .get(msg.agent as usize)
            .is_some_and(|a| a.slot == Slot::Finished)
        {
            self.lose(
                msg.agent,
                "finished, but some of its batches never arrived".into(),
            );
            self.check_done(ctx);
        }
    }
}

impl Handler<AgentExited> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: AgentExited, ctx: &mut Context<Self>) {
        let Some(a) = self.agents.get_mut(msg.agent as usize) else {
            return;
        };
        // Exiting after Finished is the normal end; the batches are already on their way.
        if matches!(a.slot, Slot::Finished) || a.slot.is_terminal() {
            return;
        }
        // Before the start too: the agent's Failed message (its reason) may still be on its way
        // through the broker.
        a.slot = Slot::Exited(msg.reason);
        ctx.notify_later(ExitGrace { agent: msg.agent }, EXIT_GRACE);
    }
}

impl Handler<ExitGrace> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: ExitGrace, ctx: &mut Context<Self>) {
        if let Some(Slot::Exited(reason)) =
            self.agents.get(msg.agent as usize).map(|a| a.slot.clone())
        {
            if matches!(self.state, RunState::Launching | RunState::WaitingForAgents) {
                let reason = format!("ended before it was ready: {reason}");
                self.lost_before_start(msg.agent, reason, ctx);
                return;
            }
            self.lose(msg.agent, reason);
            self.check_done(ctx);
        }
    }
}

impl Handler<ReadyDeadline> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, _msg: ReadyDeadline, ctx: &mut Context<Self>) {
        if self.state == RunState::WaitingForAgents {
            let missing: Vec<String> = self
                .agents
                .iter()
                .enumerate()
                .filter(|(_, a)| a.slot != Slot::Ready && !a.slot.is_terminal())
                .map(|(i, _)| i.to_string())
                .collect();
            if self.spec.min_healthy_agents.is_some() {
                for i in &missing {
                    if let Ok(i) = i.parse::<u32>() {
                        self.lose(i, format!("not Ready within {READY_TIMEOUT:?}"));
                    }
                }
                if let Some(why) = self.below_min_healthy() {
                    self.fail(why, ctx);
                } else if self.ready_to_start() {
                    self.start(ctx);
                }
                return;
            }
            self.fail(
                format!(
                    "agents {} did not report Ready within {READY_TIMEOUT:?}",
                    missing.join(", ")
                ),
                ctx,
            );
        }
    }
}

impl Handler<RunDeadline> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, _msg: RunDeadline, ctx: &mut Context<Self>) {
        if matches!(self.state, RunState::Running | RunState::Draining) {
            for i in 0..self.agents.len() as u32 {
                self.lose(i, "overran the planned duration".into());
            }
            self.control(Body::Stop(Stop {
                reason: "overran the planned duration".into(),
            }));
            self.check_done(ctx);
        }
    }
}

impl Handler<Cancel> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) {
        match self.state {
            RunState::Running | RunState::Draining => {
                self.cancel_reason = Some(msg.reason.clone());
                self.control(Body::Stop(Stop { reason: msg.reason }));
                if self.state == RunState::Running {
                    self.transition(RunState::Draining);
                }
                let wait = Duration::from_millis(self.spec.load.graceful_stop_ms)
                    + Duration::from_secs(10);
                ctx.notify_later(StopDeadline, wait);
            }
            RunState::Accepted | RunState::Launching | RunState::WaitingForAgents => {
                self.control(Body::Stop(Stop {
                    reason: msg.reason.clone(),
                }));
                self.finalize(RunState::Cancelled(msg.reason), ctx);
            }
            _ => {}
        }
    }
}

impl Handler<StopDeadline> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, _msg: StopDeadline, ctx: &mut Context<Self>) {
        if self.state == RunState::Draining {
            for i in 0..self.agents.len() as u32 {
                self.lose(i, "did not stop within the graceful stop".into());
            }
            self.check_done(ctx);
        }
    }
}
