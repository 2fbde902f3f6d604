//! `RunMachine`: a run's lifecycle as a plain state machine — no actors, no I/O, time passed
//! in. [`RunMachine::on`] takes one [`Event`] and the time, changes the state in one place and
//! returns the [`Effect`]s to carry out; the `RunSupervisor` actor only turns messages into
//! events and effects into messages. So every transition and every deadline is tested without
//! a process or a sleep, and the events — plain serializable values — are what a journal
//! records to rebuild a run.
//!
//! ```text
//! Accepted → Launching → WaitingForAgents → Running → Draining → Completed
//!     └──────────┴──────────────┴──────────────┴─────────┴─→ Failed(reason) | Cancelled(reason)
//! ```

use messages::outcome::EndState;
use serde::{Deserialize, Serialize};

pub use super::reasons::{AgentLoss, Reason};

/// The deadlines a run keeps, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Agents have this long from the launcher's reply to report Ready.
    pub ready_timeout_ms: u64,
    /// A running agent silent this long is lost.
    pub heartbeat_timeout_ms: u64,
    /// Extra time past planned duration + graceful stop before a run counts as overrunning.
    pub overrun_grace_ms: u64,
    /// Between all agents Ready and the common start instant: long enough for Start to reach
    /// every agent before it is due.
    pub start_lead_ms: u64,
    /// After an agent's Finished, how long its batches may take to arrive.
    pub drain_timeout_ms: u64,
    /// After an agent's process ended, how long its Finished may still take: the exit is seen
    /// locally at once, the messages go through the broker.
    pub exit_grace_ms: u64,
    /// After a cancel, how long past the graceful stop agents have to finish.
    pub stop_extra_ms: u64,
    /// An Assign not answered this long is offered again (it may have raced the agent's
    /// subscription).
    pub assign_retry_ms: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            ready_timeout_ms: 60_000,
            heartbeat_timeout_ms: 10_000,
            // The agents' own ceiling uses the same grace (`agent::orphan`).
            overrun_grace_ms: messages::wire::OVERRUN_GRACE_MS,
            start_lead_ms: 1_000,
            drain_timeout_ms: 10_000,
            exit_grace_ms: 5_000,
            stop_extra_ms: 10_000,
            assign_retry_ms: 3_000,
        }
    }
}

/// What the machine needs to know of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineConfig {
    pub agents: u32,
    pub planned_ms: u64,
    pub graceful_stop_ms: u64,
    /// `min_healthy_agents` in percent: with it, losses are tolerated down to that share.
    pub min_healthy_pct: Option<u32>,
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    Accepted,
    Launching,
    WaitingForAgents,
    Running,
    Draining,
    Completed,
    Failed(Reason),
    Cancelled(String),
}

impl RunState {
    pub fn is_terminal(&self) -> bool {
        self.end_state().is_some()
    }

    pub fn end_state(&self) -> Option<EndState> {
        match self {
            RunState::Completed => Some(EndState::Completed),
            RunState::Failed(_) => Some(EndState::Failed),
            RunState::Cancelled(_) => Some(EndState::Cancelled),
            _ => None,
        }
    }

    /// Why a failed or cancelled run ended, for people.
    pub fn reason(&self) -> Option<String> {
        match self {
            RunState::Failed(r) => Some(r.to_string()),
            RunState::Cancelled(r) => Some(r.clone()),
            _ => None,
        }
    }

    fn loading(&self) -> bool {
        matches!(self, RunState::Running | RunState::Draining)
    }

    fn before_start(&self) -> bool {
        matches!(self, RunState::Launching | RunState::WaitingForAgents)
    }
}

/// One agent's place in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotState {
    Launched,
    /// An Assign was published at this instant.
    Assigned {
        at_ms: u64,
    },
    Ready,
    Running,
    Finished,
    /// The aggregator holds every batch it said it sent (final).
    Drained,
    /// Its process ended before its Finished arrived; that may still be on its way.
    Exited(String),
    /// Final.
    Lost(AgentLoss),
    /// It reported a failure (final).
    Failed(AgentLoss),
}

impl SlotState {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            SlotState::Drained | SlotState::Lost(_) | SlotState::Failed(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub state: SlotState,
    pub last_seen_ms: u64,
    /// When its load started (from its Finished; coordinator clock, as the agent corrects it).
    pub started_at_ms: Option<u64>,
    /// When it sent its Finished (coordinator clock, as the agent corrects it).
    pub finished_at_ms: Option<u64>,
    /// Batches it could not queue (from its Finished).
    pub dropped: u64,
    /// Why the aggregator rejected the first of its batches that it rejected, if any.
    pub rejected: Option<String>,
}

/// Deadlines the machine arms ([`Effect::Arm`]); each is checked again when it fires, so a
/// timer that became moot does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Timer {
    Ready,
    Run,
    Drain {
        agent: u32,
    },
    ExitGrace {
        agent: u32,
    },
    Stop,
    /// After the run deadline stopped overrunning agents: their last batches have had time.
    OverrunGrace,
}

/// Everything that can happen to a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Begin,
    /// The launcher started every agent (processes or tasks).
    Launched,
    LaunchFailed {
        reason: String,
    },
    Heartbeat {
        agent: u32,
    },
    Ready {
        agent: u32,
    },
    Finished {
        agent: u32,
        started_at_ms: u64,
        sent_at_ms: u64,
        batches_sent: u64,
        batches_dropped: u64,
    },
    Failed {
        agent: u32,
        reason: String,
    },
    /// The agent's process or task ended.
    Exited {
        agent: u32,
        reason: String,
    },
    /// The aggregator holds every batch the agent said it sent.
    Drained {
        agent: u32,
    },
    /// The aggregator rejected a batch of the agent (the first one: `reason`). Its data is not
    /// exact, so it will not be drained; the drain deadline says why.
    BatchesRejected {
        agent: u32,
        reason: String,
    },
    Cancel {
        reason: String,
    },
    /// A threshold with `abort_on_fail` failed while the run went: stop the agents as a cancel
    /// does, but the run completes (its verdict is the thresholds').
    EndEarly {
        reason: String,
    },
    Timer(Timer),
    /// Once a second while the load runs: the liveness check.
    Tick,
    /// Batches of each agent (by index) handed to the aggregator and not folded yet: the
    /// deadlines count them (`machine_liveness.rs`). Told when it changed, before a `Tick` or
    /// a `Timer`.
    Backlog {
        queued: Vec<u64>,
    },
    /// The coordinator itself stood still this long (SIGSTOP, a paused VM): what its agents
    /// sent meanwhile is only now arriving. Not journaled: it only touches liveness, which a
    /// replay does not judge again.
    Stalled {
        ms: u64,
    },
    /// A restarted coordinator took the run back from its journal.
    Resumed,
    /// What a [`Event::Tick`] found, as the journal keeps it: these agents were not heard from
    /// for `ms`. A Tick itself is not journaled — replayed without the heartbeats it was
    /// judged against (not journaled either), it would find more agents silent than it did.
    Silent {
        agents: Vec<u32>,
        ms: u64,
    },
}

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Launch,
    Assign {
        agent: u32,
    },
    Start {
        at_ms: u64,
    },
    Stop {
        reason: String,
    },
    ExpectBatches {
        agent: u32,
        batches: u64,
    },
    Arm {
        timer: Timer,
        at_ms: u64,
    },
    /// The run reached its end state: stop what is left, fold, write and report the results.
    End,
}

pub struct RunMachine {
    cfg: MachineConfig,
    state: RunState,
    slots: Vec<Slot>,
    start_at_ms: Option<u64>,
    cancel_reason: Option<String>,
    effects: Vec<Effect>,
    /// `Event::Backlog` as last told.
    backlog: Vec<u64>,
    /// After a stall of the coordinator: no drain deadline loses an agent before this.
    grace_until: Option<u64>,
    /// Agents overran the run's deadline and were told to stop: the run waits for
    /// [`Timer::OverrunGrace`] before it ends, so what they measured until then still arrives.
    overrun_grace: bool,
    /// When the launch began, and how long it then took until every agent was Ready.
    begun_at_ms: Option<u64>,
    ready_ms: Option<u64>,
}

impl RunMachine {
    pub fn new(cfg: MachineConfig, now_ms: u64) -> RunMachine {
        let slots = (0..cfg.agents)
            .map(|_| Slot {
                state: SlotState::Launched,
                last_seen_ms: now_ms,
                started_at_ms: None,
                finished_at_ms: None,
                dropped: 0,
                rejected: None,
            })
            .collect();
        RunMachine {
            cfg,
            state: RunState::Accepted,
            slots,
            start_at_ms: None,
            cancel_reason: None,
            effects: Vec::new(),
            backlog: Vec::new(),
            grace_until: None,
            overrun_grace: false,
            begun_at_ms: None,
            ready_ms: None,
        }
    }

    pub fn state(&self) -> &RunState {
        &self.state
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The common start instant, once Start was sent.
    pub fn start_at_ms(&self) -> Option<u64> {
        self.start_at_ms
    }

    /// From the launch to every agent Ready, once the start was set (not for a run resumed
    /// after its start: its launch was another process's).
    pub fn ready_ms(&self) -> Option<u64> {
        self.ready_ms
    }

    /// Feeds one event; returns what to do, in order.
    pub fn on(&mut self, event: Event, now: u64) -> Vec<Effect> {
        if self.state.is_terminal() {
            return Vec::new();
        }
        match event {
            Event::Begin => {
                if self.state == RunState::Accepted {
                    self.state = RunState::Launching;
                    self.begun_at_ms = Some(now);
                    self.effects.push(Effect::Launch);
                }
            }
            Event::Launched => {
                if self.state == RunState::Launching {
                    self.state = RunState::WaitingForAgents;
                    self.arm(Timer::Ready, now + self.cfg.timing.ready_timeout_ms);
                }
            }
            Event::LaunchFailed { reason } => self.fail(Reason::LaunchFailed(reason)),
            Event::Heartbeat { agent } => self.heartbeat(agent, now),
            Event::Ready { agent } => self.ready(agent, now),
            Event::Finished {
                agent,
                started_at_ms,
                sent_at_ms,
                batches_sent,
                batches_dropped,
            } => {
                let Some(slot) = self.seen(agent, now) else {
                    return self.take();
                };
                slot.started_at_ms = Some(started_at_ms);
                slot.finished_at_ms = Some(sent_at_ms);
                slot.dropped = batches_dropped;
                if !slot.state.is_terminal() {
                    slot.state = SlotState::Finished;
                }
                // The first agent done ends the load phase: the rest is draining.
                if self.state == RunState::Running {
                    self.state = RunState::Draining;
                }
                self.effects.push(Effect::ExpectBatches {
                    agent,
                    batches: batches_sent,
                });
                self.arm(
                    Timer::Drain { agent },
                    now + self.cfg.timing.drain_timeout_ms,
                );
            }
            Event::Failed { agent, reason } => self.agent_failed(agent, reason, now),
            Event::Exited { agent, reason } => {
                let Some(slot) = self.slots.get_mut(agent as usize) else {
                    return self.take();
                };
                // Exiting after Finished is the normal end; its batches are on their way.
                if slot.state == SlotState::Finished || slot.state.is_terminal() {
                    return self.take();
                }
                // Before the start too: its Failed (the reason) may still be on its way.
                slot.state = SlotState::Exited(reason);
                self.arm(
                    Timer::ExitGrace { agent },
                    now + self.cfg.timing.exit_grace_ms,
                );
            }
            Event::Drained { agent } => {
                if let Some(slot) = self.slots.get_mut(agent as usize) {
                    if slot.state == SlotState::Finished {
                        slot.state = SlotState::Drained;
                    }
                }
                self.check_done();
            }
            Event::BatchesRejected { agent, reason } => {
                if let Some(slot) = self.slots.get_mut(agent as usize) {
                    slot.rejected.get_or_insert(reason);
                }
            }
            Event::Cancel { reason } => self.cancel(reason, now),
            Event::EndEarly { reason } => self.end_early(reason, now),
            Event::Resumed => self.resumed(now),
            Event::Silent { agents, ms } => {
                for agent in agents {
                    self.lose(agent, AgentLoss::NoHeartbeat { ms });
                }
                self.check_done();
            }
            Event::Timer(t) => self.timer(t, now),
            Event::Tick => self.tick(now),
            Event::Backlog { queued } => self.set_backlog(queued),
            Event::Stalled { ms } => self.stalled(ms, now),
        }
        self.take()
    }

    fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn arm(&mut self, timer: Timer, at_ms: u64) {
        self.effects.push(Effect::Arm { timer, at_ms });
    }

    /// The agent's slot, marked as heard from now.
    fn seen(&mut self, agent: u32, now: u64) -> Option<&mut Slot> {
        let slot = self.slots.get_mut(agent as usize)?;
        slot.last_seen_ms = now;
        Some(slot)
    }

    fn heartbeat(&mut self, agent: u32, now: u64) {
        let retry = self.cfg.timing.assign_retry_ms;
        let before_start = self.state.before_start();
        let Some(slot) = self.seen(agent, now) else {
            return;
        };
        let offer = match slot.state {
            SlotState::Launched => true,
            SlotState::Assigned { at_ms } => now.saturating_sub(at_ms) > retry,
            _ => false,
        };
        if offer && before_start {
            slot.state = SlotState::Assigned { at_ms: now };
            self.effects.push(Effect::Assign { agent });
        }
    }

    fn ready(&mut self, agent: u32, now: u64) {
        let Some(slot) = self.seen(agent, now) else {
            return;
        };
        if matches!(slot.state, SlotState::Launched | SlotState::Assigned { .. }) {
            slot.state = SlotState::Ready;
        }
        // Launching too: agents may all be Ready before the launcher's reply arrives.
        if self.state.before_start() && self.ready_to_start() {
            self.start(now);
        }
    }

    fn agent_failed(&mut self, agent: u32, reason: String, now: u64) {
        let before_start = self.state.before_start();
        let Some(slot) = self.seen(agent, now) else {
            return;
        };
        if slot.state.is_terminal() {
            return;
        }
        if before_start {
            let why = AgentLoss::FailedBeforeStart(reason);
            slot.state = SlotState::Failed(why.clone());
            self.lost_before_start(agent, why, now);
        } else {
            slot.state = SlotState::Failed(AgentLoss::Failed(reason));
            self.check_done();
        }
    }

    fn cancel(&mut self, reason: String, now: u64) {
        match self.state {
            RunState::Running | RunState::Draining => {
                self.cancel_reason = Some(reason.clone());
                self.effects.push(Effect::Stop { reason });
                self.state = RunState::Draining;
                // Spec values are within their limits; saturate all the same, never wrap.
                let wait =
                    (self.cfg.graceful_stop_ms).saturating_add(self.cfg.timing.stop_extra_ms);
                self.arm(Timer::Stop, now.saturating_add(wait));
            }
            RunState::Accepted | RunState::Launching | RunState::WaitingForAgents => {
                self.effects.push(Effect::Stop {
                    reason: reason.clone(),
                });
                self.finalize(RunState::Cancelled(reason));
            }
            _ => {}
        }
    }

    fn start(&mut self, now: u64) {
        let at_ms = now + self.cfg.timing.start_lead_ms;
        self.start_at_ms = Some(at_ms);
        self.ready_ms = self.begun_at_ms.map(|b| now.saturating_sub(b));
        self.effects.push(Effect::Start { at_ms });
        for s in self
            .slots
            .iter_mut()
            .filter(|s| s.state == SlotState::Ready)
        {
            s.state = SlotState::Running;
            s.last_seen_ms = now;
        }
        self.state = RunState::Running;
        let t = &self.cfg.timing;
        // Spec values are within their limits; saturate all the same, never wrap.
        let end = [
            self.cfg.planned_ms,
            self.cfg.graceful_stop_ms,
            t.overrun_grace_ms,
        ]
        .into_iter()
        .fold(at_ms, u64::saturating_add);
        self.arm(Timer::Run, end);
    }

    fn lose(&mut self, agent: u32, why: AgentLoss) {
        if let Some(s) = self.slots.get_mut(agent as usize) {
            if !s.state.is_terminal() {
                tracing::warn!(agent, reason = %why, "agent lost");
                s.state = SlotState::Lost(why);
            }
        }
    }

    /// Every agent still in the run is Ready (and at least one is).
    fn ready_to_start(&self) -> bool {
        let mut live = self.slots.iter().filter(|s| !s.state.is_terminal());
        let mut any = false;
        live.all(|s| {
            any = true;
            s.state == SlotState::Ready
        }) && any
    }

    /// `Some(reason)` when fewer agents are healthy than the spec's `min_healthy_agents`.
    fn below_min_healthy(&self) -> Option<Reason> {
        let pct = self.cfg.min_healthy_pct?;
        let total = self.slots.len() as u32;
        let unhealthy: Vec<(u32, String)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.state {
                SlotState::Lost(r) | SlotState::Failed(r) => Some((i as u32, r.to_string())),
                _ => None,
            })
            .collect();
        let healthy = total - unhealthy.len() as u32;
        (u64::from(healthy) * 100 < u64::from(pct) * u64::from(total)).then(|| {
            Reason::BelowMinHealthy {
                healthy,
                total,
                pct,
                examples: unhealthy.into_iter().take(5).collect(),
            }
        })
    }

    /// An agent dropped out before the start: fatal unless the spec tolerates losses.
    fn lost_before_start(&mut self, agent: u32, why: AgentLoss, now: u64) {
        if self.cfg.min_healthy_pct.is_none() {
            self.fail(Reason::AgentBeforeStart { agent, why });
            return;
        }
        self.lose(agent, why);
        self.after_loss_before_start(now);
    }

    fn after_loss_before_start(&mut self, now: u64) {
        if let Some(why) = self.below_min_healthy() {
            self.fail(why);
        } else if self.ready_to_start() {
            self.start(now);
        } else if self.slots.iter().all(|s| s.state.is_terminal()) {
            // min_healthy_agents: 0% and nobody left: nothing will ever start.
            self.fail(Reason::EveryAgentLost);
        }
    }

    /// Only a run that is loading ends early; the agents finish what they started (graceful
    /// stop) and send everything, so the result is as exact as a full run's.
    fn end_early(&mut self, reason: String, now: u64) {
        if self.state == RunState::Running {
            self.effects.push(Effect::Stop { reason });
            self.state = RunState::Draining;
            let wait = (self.cfg.graceful_stop_ms).saturating_add(self.cfg.timing.stop_extra_ms);
            self.arm(Timer::Stop, now.saturating_add(wait));
        }
    }

    fn check_done(&mut self) {
        if !self.state.loading() {
            return;
        }
        if let Some(why) = self.below_min_healthy() {
            self.fail(why);
            return;
        }
        if self.overrun_grace {
            return;
        }
        if self.slots.iter().all(|s| s.state.is_terminal()) {
            let end = match self.cancel_reason.take() {
                Some(r) => RunState::Cancelled(r),
                None if self.slots.iter().all(|s| s.state != SlotState::Drained) => {
                    RunState::Failed(Reason::EveryAgentLost)
                }
                None => RunState::Completed,
            };
            self.finalize(end);
        }
    }

    fn fail(&mut self, reason: Reason) {
        if self.state.is_terminal() {
            return;
        }
        self.effects.push(Effect::Stop {
            reason: reason.to_string(),
        });
        self.finalize(RunState::Failed(reason));
    }

    fn finalize(&mut self, end: RunState) {
        if self.state.is_terminal() {
            return;
        }
        self.state = end;
        self.effects.push(Effect::End);
    }
}

#[path = "machine_resume.rs"]
mod resume;
pub use resume::{replay, Replayed};

#[path = "machine_liveness.rs"]
mod liveness;

#[path = "machine_timers.rs"]
mod timers;

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "machine_deadline_tests.rs"]
mod deadline_tests;
