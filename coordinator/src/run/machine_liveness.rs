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

    /// The coordinator stood still for `ms`: every agent counts as heard now (it could not have
    /// been heard meanwhile), and for a drain timeout from now no drain deadline loses an agent
    /// whose batches are still on their way in.
    pub(super) fn stalled(&mut self, ms: u64, now: u64) {
        tracing::warn!(
            ms,
            "this coordinator stood still (stopped, paused or starved): its agents get time again"
        );
        self.give_agents_time(now);
    }

    /// The coordinator could not hear its agents for a while (it stood still, or it restarted):
    /// every agent counts as heard `now`, and no drain deadline loses one for a drain timeout.
    pub(super) fn give_agents_time(&mut self, now: u64) {
        for s in &mut self.slots {
            s.last_seen_ms = s.last_seen_ms.max(now);
        }
        self.grace_until = Some(now.saturating_add(self.cfg.timing.drain_timeout_ms));
    }

    /// A drain deadline that falls inside the grace after a stall: when to look again.
    pub(super) fn in_stall_grace(&self, now: u64) -> Option<u64> {
        self.grace_until.filter(|g| now < *g)
    }
}
