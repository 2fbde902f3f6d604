//! Part of the machine, in a file of its own: whether the coordinator must say it is alive.

use super::RunState;

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
