//! Part of the machine, in a file of its own: signs of life. When the coordinator must say it
//! is alive, and what counts as an agent's: a status message, or batches of it queued for the
//! aggregator (`Event::Backlog`, from `crate::bus::BatchQueue`). An aggregator that falls
//! behind must not make the deadlines call agents lost whose batches are already here.

use super::{AgentLoss, RunMachine, RunState, SlotState};

impl RunState {
    /// Launching to Draining: agents may be up and waiting for this coordinator, so it says
    /// every second that it is alive (`Alive` on the control topic; agents that hear none
    /// stop by themselves).
    pub fn sends_alive(&self) -> bool {
        matches!(
            self,
            RunState::Launching
                | RunState::WaitingForAgents
                | RunState::Running
                | RunState::Draining
        )
    }
}

impl RunMachine {
    /// Batches of `agent` handed to the aggregator and not folded yet, as last told.
    pub fn queued(&self, agent: u32) -> u64 {
        self.backlog.get(agent as usize).copied().unwrap_or(0)
    }

    /// The backlog as last told, by agent (empty until told).
    pub fn backlog(&self) -> &[u64] {
        &self.backlog
    }

    pub(super) fn set_backlog(&mut self, queued: Vec<u64>) {
        self.backlog = queued;
    }

    /// Finished, with batches still queued: its drain deadline decides, no other.
    pub(super) fn finished_and_queued(&self, agent: u32) -> bool {
        self.slots
            .get(agent as usize)
            .is_some_and(|s| s.state == SlotState::Finished)
            && self.queued(agent) > 0
    }

    /// Once a second while the load runs: a `Running` agent silent for longer than the
    /// heartbeat timeout is lost, unless batches of it are queued (it was heard; its status
    /// may simply not be the latest thing it sent).
    pub(super) fn tick(&mut self, now: u64) {
        if !self.state.loading() {
            return;
        }
        let limit = self.cfg.timing.heartbeat_timeout_ms;
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.state == SlotState::Running
                && now.saturating_sub(s.last_seen_ms) > limit
                && self.queued(i as u32) == 0
            {
                self.lose(i as u32, AgentLoss::NoHeartbeat { ms: limit });
            }
        }
        self.check_done();
    }
}
