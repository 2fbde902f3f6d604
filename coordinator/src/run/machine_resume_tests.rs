//! Replaying a journal and resuming: the run a restarted coordinator takes back.

use super::*;

const T0: u64 = 1_000_000;

fn cfg(agents: u32) -> MachineConfig {
    MachineConfig {
        agents,
        planned_ms: 10_000,
        graceful_stop_ms: 2_000,
        min_healthy_pct: None,
        timing: Timing::default(),
    }
}

/// Two agents, started at T0 + 1_100 (Ready at T0 + 100).
fn running_journal() -> Vec<(u64, Event)> {
    vec![
        (T0, Event::Begin),
        (T0 + 10, Event::Launched),
        (T0 + 50, Event::Heartbeat { agent: 0 }),
        (T0 + 50, Event::Heartbeat { agent: 1 }),
        (T0 + 100, Event::Ready { agent: 0 }),
        (T0 + 100, Event::Ready { agent: 1 }),
    ]
}

#[test]
fn replay_rebuilds_the_state_and_keeps_only_unfired_deadlines() {
    let r = replay(cfg(2), T0, running_journal());
    assert_eq!(r.machine.state(), &RunState::Running);
    assert_eq!(r.machine.start_at_ms(), Some(T0 + 1_100));
    // The Ready deadline was armed, but the run started: what matters is the Run deadline.
    let run_deadline = T0 + 1_100 + 10_000 + 2_000 + 30_000;
    assert!(
        r.timers.contains(&(Timer::Run, run_deadline)),
        "{:?}",
        r.timers
    );
    let mut j = running_journal();
    j.push((run_deadline, Event::Timer(Timer::Run)));
    let r = replay(cfg(2), T0, j.clone());
    assert!(
        !r.timers.iter().any(|(t, _)| *t == Timer::Run),
        "fired: gone"
    );
    // The overrunning agents are stopped; the grace for their last batches is still to come
    // (and is armed again on resume).
    let grace = run_deadline + 2_000 + 10_000;
    assert!(
        r.timers.contains(&(Timer::OverrunGrace, grace)),
        "{:?}",
        r.timers
    );
    assert!(!r.machine.state().is_terminal());
    j.push((grace, Event::Timer(Timer::OverrunGrace)));
    let r = replay(cfg(2), T0, j);
    assert!(r.machine.state().is_terminal());
    assert!(r.timers.is_empty(), "an ended run arms nothing");
}

#[test]
fn a_run_resumed_in_time_goes_on_and_tells_its_agents_the_start_again() {
    let mut r = replay(cfg(2), T0, running_journal()).machine;
    // Back 30 s after the last heartbeat: without the reset both agents would be lost at once.
    let now = T0 + 30_000;
    let fx = r.on(Event::Resumed, now);
    assert_eq!(fx, vec![Effect::Start { at_ms: T0 + 1_100 }]);
    assert_eq!(r.on(Event::Tick, now + 1_000), vec![]);
    assert!(r.lost().is_empty());
    assert_eq!(r.state(), &RunState::Running);
}

#[test]
fn a_cancel_the_agents_may_have_missed_is_sent_again() {
    let mut j = running_journal();
    j.push((T0 + 5_000, Event::Cancel { reason: "c".into() }));
    let mut r = replay(cfg(2), T0, j).machine;
    let fx = r.on(Event::Resumed, T0 + 6_000);
    assert!(fx.contains(&Effect::Stop { reason: "c".into() }), "{fx:?}");
}

#[test]
fn a_run_whose_time_is_over_ends_from_what_arrived() {
    let mut j = running_journal();
    j.push((
        T0 + 12_000,
        Event::Finished {
            agent: 0,
            started_at_ms: T0 + 1_100,
            sent_at_ms: T0 + 12_000,
            batches_sent: 11,
            batches_dropped: 0,
        },
    ));
    j.push((T0 + 12_100, Event::Drained { agent: 0 }));
    let mut r = replay(cfg(2), T0, j).machine;
    let fx = r.on(Event::Resumed, T0 + 3_600_000);
    assert!(fx.contains(&Effect::End), "{fx:?}");
    assert_eq!(
        r.state(),
        &RunState::Completed,
        "agent 0's batches all arrived"
    );
    assert_eq!(
        r.slots()[1].state,
        SlotState::Lost(AgentLoss::CoordinatorRestarted)
    );
}

#[test]
fn a_run_found_launching_fails_rather_than_launching_twice() {
    let mut r = replay(cfg(2), T0, vec![(T0, Event::Begin)]).machine;
    let fx = r.on(Event::Resumed, T0 + 5_000);
    assert!(fx.contains(&Effect::End), "{fx:?}");
    assert_eq!(
        r.state(),
        &RunState::Failed(Reason::RestartedWhileLaunching)
    );
}

#[test]
fn a_liveness_loss_replays_as_the_agents_it_found_silent_and_no_more() {
    // Agent 1 went silent; agent 0's heartbeats kept it alive, but heartbeats are not
    // journaled: the loss is kept as `Silent`, so replay loses agent 1 only.
    let mut j = running_journal();
    j.push((
        T0 + 20_000,
        Event::Silent {
            agents: vec![1],
            ms: 10_000,
        },
    ));
    let r = replay(cfg(2), T0, j).machine;
    assert_eq!(r.lost(), vec![1]);
    assert_eq!(r.slots()[0].state, SlotState::Running);
}

#[test]
fn what_the_aggregator_was_told_of_finished_agents_is_told_again() {
    let mut j = running_journal();
    j.push((
        T0 + 12_000,
        Event::Finished {
            agent: 1,
            started_at_ms: T0 + 1_100,
            sent_at_ms: T0 + 12_000,
            batches_sent: 11,
            batches_dropped: 0,
        },
    ));
    let r = replay(cfg(2), T0, j);
    assert_eq!(r.expected, vec![(1, 11)]);
    assert!(
        r.timers
            .iter()
            .any(|(t, _)| *t == Timer::Drain { agent: 1 }),
        "its drain deadline is still pending: {:?}",
        r.timers
    );
}
