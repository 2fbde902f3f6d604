//! How a run comes back after a restart: [`replay`] feeds the journaled events to a fresh
//! machine (the effects they licensed were carried out in the coordinator's previous life;
//! only the deadlines still pending are kept, to be armed again), and [`Event::Resumed`] then
//! decides what the run does now.

use super::*;

/// A machine rebuilt from its journal, and the deadlines it still has.
pub struct Replayed {
    pub machine: RunMachine,
    /// (timer, when it fires), unfired.
    pub timers: Vec<(Timer, u64)>,
    /// What the aggregator was told of each finished agent (`Effect::ExpectBatches`): a
    /// restarted aggregator must be told again.
    pub expected: Vec<(u32, u64)>,
}

/// Rebuilds the machine `cfg` made at `created_at_ms` by feeding it `events` (each with the
/// time it happened) again.
pub fn replay(
    cfg: MachineConfig,
    created_at_ms: u64,
    events: impl IntoIterator<Item = (u64, Event)>,
) -> Replayed {
    let mut machine = RunMachine::new(cfg, created_at_ms);
    let mut timers: Vec<(Timer, u64)> = Vec::new();
    let mut expected: Vec<(u32, u64)> = Vec::new();
    for (at_ms, event) in events {
        if let Event::Timer(t) = &event {
            timers.retain(|(armed, _)| armed != t);
        }
        for effect in machine.on(event, at_ms) {
            match effect {
                Effect::Arm { timer, at_ms } => {
                    timers.retain(|(armed, _)| *armed != timer);
                    timers.push((timer, at_ms));
                }
                Effect::ExpectBatches { agent, batches } => {
                    expected.retain(|(a, _)| *a != agent);
                    expected.push((agent, batches));
                }
                _ => {}
            }
        }
    }
    if machine.state().is_terminal() {
        timers.clear();
    }
    Replayed {
        machine,
        timers,
        expected,
    }
}

impl RunMachine {
    /// After a restart: a run that was still launching cannot know what was launched and
    /// fails; one whose load phase ended while the coordinator was away ends from what arrived;
    /// any other goes on — its agents get time to reconnect, and the last control message they
    /// may have missed (Start, a cancel's Stop) goes out again (they ignore a repeat).
    pub(super) fn resumed(&mut self, now: u64) {
        match self.state {
            RunState::Accepted | RunState::Launching => {
                self.fail(Reason::RestartedWhileLaunching);
            }
            RunState::Running | RunState::Draining => {
                let t = &self.cfg.timing;
                let end = self.start_at_ms.map(|at| {
                    at.saturating_add(self.cfg.planned_ms)
                        .saturating_add(self.cfg.graceful_stop_ms)
                        .saturating_add(t.overrun_grace_ms)
                });
                if end.is_some_and(|end| now > end) {
                    for i in 0..self.slots.len() as u32 {
                        self.lose(i, AgentLoss::CoordinatorRestarted);
                    }
                    self.effects.push(Effect::Stop {
                        reason: AgentLoss::CoordinatorRestarted.to_string(),
                    });
                    self.check_done();
                    return;
                }
                self.give_agents_time(now);
                if let Some(at_ms) = self.start_at_ms {
                    self.effects.push(Effect::Start { at_ms });
                }
                if let Some(reason) = self.cancel_reason.clone() {
                    self.effects.push(Effect::Stop { reason });
                }
            }
            _ => self.give_agents_time(now),
        }
    }

    /// How long an agent may be silent before a Tick finds it lost.
    pub fn heartbeat_timeout_ms(&self) -> u64 {
        self.cfg.timing.heartbeat_timeout_ms
    }

    /// The agents lost so far, by index: what a liveness check changed is the difference.
    pub fn lost(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&i| matches!(self.slots[i as usize].state, SlotState::Lost(_)))
            .collect()
    }
}

#[cfg(test)]
#[path = "machine_resume_tests.rs"]
mod tests;
