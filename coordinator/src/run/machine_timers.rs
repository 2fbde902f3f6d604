//! Part of the machine, in a file of its own: what each deadline does when it fires. Each is
//! checked again here, so a timer that became moot does nothing. An agent that finished and
//! whose batches are still queued for the aggregator (`Event::Backlog`) is not lost by any of
//! them: its drain deadline starts over until the queue has folded them.

use super::{AgentLoss, Effect, Reason, RunMachine, RunState, SlotState, Timer};

impl RunMachine {
    pub(super) fn timer(&mut self, t: Timer, now: u64) {
        match t {
            Timer::Ready => {
                if self.state != RunState::WaitingForAgents {
                    return;
                }
                let missing: Vec<u32> = (0..self.slots.len() as u32)
                    .filter(|i| {
                        let s = &self.slots[*i as usize].state;
                        *s != SlotState::Ready && !s.is_terminal()
                    })
                    .collect();
                if self.cfg.min_healthy_pct.is_none() {
                    self.fail(Reason::NotReady {
                        agents: missing,
                        ms: self.cfg.timing.ready_timeout_ms,
                    });
                    return;
                }
                for i in missing {
                    let ms = self.cfg.timing.ready_timeout_ms;
                    self.lose(i, AgentLoss::NotReady { ms });
                }
                self.after_loss_before_start(now);
            }
            Timer::Run => {
                if self.state.loading() {
                    let mut overran = false;
                    for i in 0..self.slots.len() as u32 {
                        if !self.finished_and_queued(i)
                            && !self.slots[i as usize].state.is_terminal()
                        {
                            self.lose(i, AgentLoss::Overran);
                            overran = true;
                        }
                    }
                    self.effects.push(Effect::Stop {
                        reason: AgentLoss::Overran.to_string(),
                    });
                    if overran {
                        // They are lost (the run is flagged), but what they measured before the
                        // Stop is still on its way: give it the graceful stop and the stop
                        // allowance before the run ends and its totals are final.
                        self.overrun_grace = true;
                        let wait = self
                            .cfg
                            .graceful_stop_ms
                            .saturating_add(self.cfg.timing.stop_extra_ms);
                        self.arm(Timer::OverrunGrace, now.saturating_add(wait));
                    }
                    self.check_done();
                }
            }
            Timer::OverrunGrace => {
                self.overrun_grace = false;
                self.check_done();
            }
            Timer::Drain { agent } => {
                let Some(slot) = self.slots.get(agent as usize) else {
                    return;
                };
                if let (SlotState::Finished, Some(until)) = (&slot.state, self.in_stall_grace(now))
                {
                    self.arm(Timer::Drain { agent }, until);
                } else if slot.state == SlotState::Finished && self.queued(agent) > 0 {
                    // Its batches are here, waiting to be folded: the deadline counts them.
                    tracing::warn!(
                        agent,
                        queued = self.queued(agent),
                        "drain deadline: batches of this agent are still queued for the \
                         aggregator (it is behind); waiting another drain timeout"
                    );
                    let at = now.saturating_add(self.cfg.timing.drain_timeout_ms);
                    self.arm(Timer::Drain { agent }, at);
                } else if slot.state == SlotState::Finished {
                    let why = match &slot.rejected {
                        Some(r) => AgentLoss::BatchesRejected(r.clone()),
                        None => AgentLoss::BatchesMissing,
                    };
                    self.lose(agent, why);
                    self.check_done();
                }
            }
            Timer::ExitGrace { agent } => {
                let Some(SlotState::Exited(reason)) =
                    self.slots.get(agent as usize).map(|s| s.state.clone())
                else {
                    return;
                };
                if self.state.before_start() {
                    self.lost_before_start(agent, AgentLoss::ExitedBeforeReady(reason), now);
                } else {
                    self.lose(agent, AgentLoss::Exited(reason));
                    self.check_done();
                }
            }
            Timer::Stop => {
                if self.state == RunState::Draining {
                    for i in 0..self.slots.len() as u32 {
                        if !self.finished_and_queued(i) {
                            self.lose(i, AgentLoss::StopTimeout);
                        }
                    }
                    self.check_done();
                }
            }
        }
    }
}
