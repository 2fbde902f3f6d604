//! When the coordinator says it is alive: a fake clock, no process, no broker, no sleep.

use super::*;

#[test]
fn the_coordinator_says_alive_from_launching_to_draining_only() {
    let says = |s: RunState| s.sends_alive();
    assert!(!says(RunState::Accepted), "no agent launched yet");
    for s in [
        RunState::Launching,
        RunState::WaitingForAgents,
        RunState::Running,
        RunState::Draining,
    ] {
        assert!(says(s.clone()), "{s:?}");
    }
    for s in [
        RunState::Completed,
        RunState::Failed(Reason::EveryAgentLost),
        RunState::Cancelled("c".into()),
    ] {
        assert!(!says(s.clone()), "{s:?}: its agents were told Stop");
    }
}
