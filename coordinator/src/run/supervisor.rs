//! `RunSupervisor`: one per run, the actor around [`RunMachine`]. It turns messages (agent
//! status, launcher replies, the aggregator's `Drained` and `BatchesRejected`, cancels,
//! timers) into machine events and the machine's effects into messages (control to agents,
//! deadlines, the end). It decides nothing itself: what a run does is in `machine.rs`, tested
//! without a runtime. Every second it also ticks the machine and, while the machine says agents
//! may be waiting (`RunState::sends_alive`), publishes `Alive` with what each agent may forget
//! (the aggregator's confirmations): the heartbeat agents stop without.
//!
//! Under `herd serve` each event that changes the run is journaled ([`EventJournal`]) before
//! any of its effects is carried out, so a restarted coordinator replays the run to where it
//! was (`machine::resume`) and goes on from there ([`Resume`]).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use messages::policy::TargetPolicy;
use messages::wire::{Alive, Assign, Body, Start, Stop, ALIVE_EVERY_MS};
use tokio::sync::oneshot;

use super::aggregator::{Aggregator, Finish};
use super::clocks::Clocks;
use super::durable::EventJournal;
use super::live::LivePublisher;
use super::machine::{Effect, Event, RunMachine, RunState};
use super::outcome::{build, FinalResult, RunFacts};
use super::protocol::{
    AgentExited, BatchesRejected, Confirmed, Drained, ExpectBatches, LaunchAgents, Started,
    StopAgents,
};
use super::results::{ResultsError, ResultsWriter, WriteResults};
use super::RunPlan;
use crate::bus::{BatchQueue, FromAgent, RunBus};
use crate::clock::unix_ms;

/// What the run's owner gets back at the end.
pub struct Outcome {
    pub result: FinalResult,
    /// Where the results were written, or why they were not (the folder has no `summary.json`).
    pub dir: Result<std::path::PathBuf, ResultsError>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Begin;

/// A restarted coordinator takes the run back: the machine was replayed from the journal;
/// `timers` are the deadlines it still had.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume {
    pub timers: Vec<(super::machine::Timer, u64)>,
}

/// The earliest a deadline replayed after a restart fires: the agents get this long to
/// reconnect and send what they kept before a deadline that passed while the coordinator was
/// away can count against them.
pub const RESUME_GRACE_MS: u64 = 10_000;

/// Ctrl-C, API or pipeline cancel: stop gracefully, keep partial results.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel {
    pub reason: String,
}

/// A deadline the machine armed has come.
#[derive(Message)]
#[rtype(result = "()")]
struct Fire(super::machine::Timer);

pub struct Deps {
    pub bus: RunBus,
    pub launcher: Recipient<LaunchAgents>,
    pub stop_agents: Recipient<StopAgents>,
    pub aggregator: Addr<Aggregator>,
    /// The bus's hand-over to the aggregator: what is queued counts for the deadlines.
    pub queue: Arc<BatchQueue>,
    pub live: Addr<LivePublisher>,
    pub results: Addr<ResultsWriter>,
}

pub struct RunSupervisor {
    plan: Arc<RunPlan>,
    /// Sent with every Assign.
    policy: TargetPolicy,
    machine: RunMachine,
    /// The agents' clock probes and measured offsets.
    clocks: Clocks,
    /// The first message of each kind of failed request, from the agents' `Finished`.
    error_samples: std::collections::BTreeMap<String, String>,
    /// Per-check counts and HTTP versions, from the agents' `Finished`.
    tallies: super::tallies::Tallies,
    launch: LaunchAgents,
    deps: Deps,
    /// Sequence numbers of this coordinator's control messages.
    seq: u64,
    done: Option<oneshot::Sender<Outcome>>,
    /// `herd serve`'s journal of the run's events; `herd run` keeps none.
    journal: Option<EventJournal>,
    /// A journal write failed: logged once (the run goes on, but could not be resumed).
    journal_failed: bool,
    /// Per agent, the batches it may forget (from the aggregator), sent in `Alive`.
    confirmed: Vec<u64>,
    /// When the last Tick was handled (monotonic): a late one means this process stood still.
    last_tick: Option<std::time::Instant>,
}

/// A tick this late (they come every second) means the coordinator itself stood still.
const STALL: Duration = Duration::from_secs(3);

impl RunSupervisor {
    pub fn new(
        plan: Arc<RunPlan>,
        policy: TargetPolicy,
        machine: RunMachine,
        launch: LaunchAgents,
        deps: Deps,
        done: oneshot::Sender<Outcome>,
        journal: Option<EventJournal>,
    ) -> RunSupervisor {
        RunSupervisor {
            journal,
            journal_failed: false,
            confirmed: Vec::new(),
            last_tick: None,
            clocks: Clocks::new(plan.agents()),
            error_samples: Default::default(),
            tallies: Default::default(),
            plan,
            policy,
            machine,
            launch,
            deps,
            seq: 0,
            done: Some(done),
        }
    }

    /// The one way in: an event for the machine, journaled if it changed anything, then its
    /// effects.
    fn apply(&mut self, event: Event, ctx: &mut Context<Self>) {
        if matches!(event, Event::Tick | Event::Timer(_)) {
            // The tick comes each second: much later, and this process stood still.
            let now = std::time::Instant::now();
            let gap = self
                .last_tick
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            if gap >= STALL {
                self.apply_one(
                    Event::Stalled {
                        ms: gap.as_millis() as u64,
                    },
                    ctx,
                );
            }
            if matches!(event, Event::Tick) || gap >= STALL {
                self.last_tick = Some(now);
            }
        }
        // A deadline counts what is queued for the aggregator: tell the machine first.
        if matches!(event, Event::Tick | Event::Timer(_)) {
            let queued = self.deps.queue.queued();
            if queued.as_slice() != self.machine.backlog() {
                self.apply_one(Event::Backlog { queued }, ctx);
            }
        }
        self.apply_one(event, ctx);
    }

    fn apply_one(&mut self, event: Event, ctx: &mut Context<Self>) {
        let now = unix_ms();
        let before = self.machine.state().clone();
        // Only a Tick is judged against what is not journaled (heartbeats): what it found is
        // kept instead of it, as `Silent`.
        let lost_before = matches!(event, Event::Tick).then(|| self.machine.lost());
        let kept = match &event {
            // A heartbeat matters to the journal only when it got the agent its Assign (below).
            // A Backlog is kept: the deadlines it held off replay the same way (after a restart
            // the next Tick tells the machine the new, empty queue).
            Event::Tick | Event::Heartbeat { .. } | Event::Stalled { .. } => None,
            e => Some(e.clone()),
        };
        let heartbeat = match &event {
            Event::Heartbeat { agent } => Some(*agent),
            _ => None,
        };
        let effects = self.machine.on(event, now);
        let kept = kept
            .or_else(|| {
                let lost_before = lost_before?;
                let agents: Vec<u32> = self
                    .machine
                    .lost()
                    .into_iter()
                    .filter(|a| !lost_before.contains(a))
                    .collect();
                (!agents.is_empty()).then(|| Event::Silent {
                    agents,
                    ms: self.machine.heartbeat_timeout_ms(),
                })
            })
            .or_else(|| {
                let agent = heartbeat.filter(|_| !effects.is_empty())?;
                Some(Event::Heartbeat { agent })
            });
        if let (Some(event), Some(journal)) = (kept, self.journal.as_mut()) {
            if let Err(e) = journal.record(now, &event) {
                if !std::mem::replace(&mut self.journal_failed, true) {
                    tracing::error!(run = %self.plan.run_id, error = %e, "the run's journal could not be written: the run goes on, but a restart could not resume it");
                }
            }
        }
        if *self.machine.state() != before {
            tracing::info!(run = %self.plan.run_id, from = ?before, to = ?self.machine.state(), "run state");
        }
        for e in effects {
            self.perform(e, now, ctx);
        }
    }

    fn control(&mut self, body: Body) {
        self.seq += 1;
        self.deps.bus.control(self.seq, body);
    }

    /// The coordinator's heartbeat, while agents may be waiting for it.
    fn alive(&mut self) {
        if self.machine.state().sends_alive() {
            let mut alive = Alive::new(self.deps.bus.epoch());
            alive.confirmed = self.confirmed.clone();
            self.control(Body::Alive(alive));
        }
    }

    fn perform(&mut self, effect: Effect, now: u64, ctx: &mut Context<Self>) {
        match effect {
            Effect::Launch => {
                let launch = self.launch.clone();
                ctx.spawn(
                    self.deps
                        .launcher
                        .send(launch)
                        .into_actor(self)
                        .map(|res, s, ctx| {
                            let event = match res {
                                Ok(Ok(())) => Event::Launched,
                                Ok(Err(e)) => Event::LaunchFailed {
                                    reason: e.to_string(),
                                },
                                Err(e) => Event::LaunchFailed {
                                    reason: format!("launcher unreachable: {e}"),
                                },
                            };
                            s.apply(event, ctx);
                        }),
                );
            }
            Effect::Assign { agent } => {
                let Some(share) = self.plan.shares.get(agent as usize).cloned() else {
                    return;
                };
                let mut assign = Assign {
                    agent,
                    region: self.plan.region_of(agent).to_string(),
                    spec: self.plan.spec.clone(),
                    share,
                    data: self.plan.data.clone(),
                    policy: self.policy.clone(),
                    clock: None,
                };
                // C2 as late as it can be: after the copies, just before it goes out.
                assign.clock = self.clocks.probe(agent, unix_ms());
                self.control(Body::Assign(assign));
            }
            Effect::Start { at_ms } => {
                self.control(Body::Start(Start { at_ms }));
                self.deps.live.do_send(Started { at_ms });
                self.deps.aggregator.do_send(Started { at_ms });
            }
            Effect::Stop { reason } => self.control(Body::Stop(Stop { reason })),
            Effect::ExpectBatches { agent, batches } => {
                self.deps.aggregator.do_send(ExpectBatches {
                    agent,
                    batches,
                    queued: self.deps.queue.admit(agent, 0),
                });
            }
            Effect::Arm { timer, at_ms } => {
                ctx.notify_later(
                    Fire(timer),
                    Duration::from_millis(at_ms.saturating_sub(now)),
                );
            }
            Effect::End => self.end(now, ctx),
        }
    }

    /// Stops what is left, has the aggregator finish, builds the result once, writes it.
    fn end(&mut self, ended_at_ms: u64, ctx: &mut Context<Self>) {
        self.deps.stop_agents.do_send(StopAgents);
        let plan = self.plan.clone();
        let state = self.machine.state().clone();
        let slots = self.machine.slots().to_vec();
        let clocks = self.clocks.synced().to_vec();
        let error_samples = std::mem::take(&mut self.error_samples);
        let tallies = std::mem::take(&mut self.tallies);
        let refused = self.deps.bus.refused();
        let start_at_ms = self.machine.start_at_ms();
        let ready_ms = self.machine.ready_ms();
        let aggregator = self.deps.aggregator.clone();
        let results = self.deps.results.clone();
        let done = self.done.take();
        // The last Alive: what the fold holds at the end, so agents waiting to hear their last
        // batches are safe can leave.
        self.seq += 1;
        let (bus, last_seq) = (self.deps.bus.clone(), self.seq);
        ctx.spawn(
            async move {
                let folded = match aggregator.send(Finish).await {
                    Ok(f) => f,
                    Err(e) => {
                        // The aggregator is gone: the result says so rather than inventing numbers.
                        tracing::error!(error = %e, "aggregator unreachable at the end of the run");
                        Default::default()
                    }
                };
                let mut alive = Alive::new(bus.epoch());
                alive.confirmed = folded.confirmed.clone();
                bus.last_alive(last_seq, alive);
                let mut result = build(
                    RunFacts {
                        run_id: &plan.run_id,
                        spec: &plan.spec,
                        regions: &plan.regions,
                        state: &state,
                        slots: &slots,
                        start_at_ms,
                        ready_ms,
                        ended_at_ms,
                        refused: &refused,
                        clocks: &clocks,
                        baseline: plan.baseline.as_deref(),
                    },
                    folded,
                );
                result.error_samples = error_samples;
                result.checks = tallies.checks();
                result.http_versions = tallies.http_versions();
                let dir = match results.send(WriteResults(result.clone())).await {
                    Ok(r) => r,
                    Err(e) => Err(ResultsError::Writer {
                        dir: plan.dir.display().to_string(),
                        why: e.to_string(),
                    }),
                };
                if let Some(done) = done {
                    let _ = done.send(Outcome { result, dir });
                }
            }
            .into_actor(self)
            // The run is over: nothing is left for this actor to do.
            .map(|(), _, ctx: &mut Context<Self>| ctx.stop()),
        );
    }

    pub fn state(&self) -> &RunState {
        self.machine.state()
    }
}

impl Actor for RunSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(ALIVE_EVERY_MS), |s, ctx| {
            s.apply(Event::Tick, ctx);
            s.alive();
        });
    }
}

impl Handler<Begin> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, _msg: Begin, ctx: &mut Context<Self>) {
        self.apply(Event::Begin, ctx);
    }
}

impl Handler<Resume> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) {
        let now = unix_ms();
        tracing::info!(run = %self.plan.run_id, state = ?self.machine.state(), "resuming the run from its journal");
        if self.machine.state().is_terminal() {
            // It ended before the restart, its result not yet announced: build it again.
            self.end(now, ctx);
            return;
        }
        for (timer, at_ms) in msg.timers {
            let at_ms = at_ms.max(now.saturating_add(RESUME_GRACE_MS));
            ctx.notify_later(
                Fire(timer),
                Duration::from_millis(at_ms.saturating_sub(now)),
            );
        }
        self.apply(Event::Resumed, ctx);
    }
}

impl Handler<Confirmed> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Confirmed, _ctx: &mut Context<Self>) {
        self.confirmed = msg.through;
    }
}

impl Handler<FromAgent> for RunSupervisor {
    type Result = ();

    fn handle(&mut self, msg: FromAgent, ctx: &mut Context<Self>) {
        if msg.env.run_id != self.plan.run_id {
            return;
        }
        let agent = msg.agent;
        let event = match msg.env.body {
            Body::Heartbeat(_) => {
                // C1 for the probe of the Assign this heartbeat may bring (A1: its sent_at_ms).
                self.clocks.heartbeat(agent, msg.env.sent_at_ms, unix_ms());
                Event::Heartbeat { agent }
            }
            Body::Ready(r) => {
                tracing::info!(agent = r.agent, host = %r.host, "agent ready");
                self.clocks.ready(agent, r.clock);
                Event::Ready { agent }
            }
            Body::Finished(f) => {
                // Why requests failed, in words: the first sample of each kind any agent saw,
                // bounded whatever the agent sent.
                for (k, m) in messages::wire::bounded_samples(&f.error_samples) {
                    if self.error_samples.len() < messages::wire::MAX_ERROR_SAMPLES {
                        self.error_samples.entry(k).or_insert(m);
                    }
                }
                self.tallies.finished(agent, &f);
                Event::Finished {
                    agent,
                    started_at_ms: f.started_at_ms,
                    sent_at_ms: msg.env.sent_at_ms,
                    batches_sent: f.batches_sent,
                    batches_dropped: f.batches_dropped,
                }
            }
            Body::Failed(f) => Event::Failed {
                agent,
                reason: f.reason,
            },
            other => {
                tracing::warn!(kind = other.kind(), "unexpected message on a status topic");
                return;
            }
        };
        self.apply(event, ctx);
    }
}

impl Handler<Drained> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Drained, ctx: &mut Context<Self>) {
        self.apply(Event::Drained { agent: msg.agent }, ctx);
    }
}

impl Handler<BatchesRejected> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: BatchesRejected, ctx: &mut Context<Self>) {
        self.apply(
            Event::BatchesRejected {
                agent: msg.agent,
                reason: msg.reason,
            },
            ctx,
        );
    }
}

impl Handler<AgentExited> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: AgentExited, ctx: &mut Context<Self>) {
        self.apply(
            Event::Exited {
                agent: msg.agent,
                reason: msg.reason,
            },
            ctx,
        );
    }
}

impl Handler<Cancel> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) {
        self.apply(Event::Cancel { reason: msg.reason }, ctx);
    }
}

impl Handler<super::protocol::ThresholdCrossed> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: super::protocol::ThresholdCrossed, ctx: &mut Context<Self>) {
        self.apply(Event::EndEarly { reason: msg.reason }, ctx);
    }
}

impl Handler<crate::bus::Heard> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: crate::bus::Heard, ctx: &mut Context<Self>) {
        self.apply(Event::Heartbeat { agent: msg.agent }, ctx);
    }
}

impl Handler<Fire> for RunSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Fire, ctx: &mut Context<Self>) {
        self.apply(Event::Timer(msg.0), ctx);
    }
}
