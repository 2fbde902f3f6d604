//! The deadlines and signs of life with a fake clock: when the coordinator says it is alive,
//! and what a backlog of queued batches does to each deadline. No process, no broker, no sleep.

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

// An aggregator that falls behind: the deadlines count what is queued for it (`Event::Backlog`).

const T0: u64 = 1_000_000;

/// Two agents, Running from T0 + 100 (planned 10 s, graceful stop 2 s, default timing).
fn running() -> RunMachine {
    let mut m = RunMachine::new(
        MachineConfig {
            agents: 2,
            planned_ms: 10_000,
            graceful_stop_ms: 2_000,
            min_healthy_pct: None,
            timing: Timing::default(),
        },
        T0,
    );
    m.on(Event::Begin, T0);
    m.on(Event::Launched, T0);
    for agent in 0..2 {
        m.on(Event::Heartbeat { agent }, T0 + 50);
    }
    for agent in 0..2 {
        m.on(Event::Ready { agent }, T0 + 100);
    }
    assert_eq!(m.state(), &RunState::Running);
    m
}

fn finished(m: &mut RunMachine, agent: u32, at: u64, batches: u64) -> Vec<Effect> {
    m.on(
        Event::Finished {
            agent,
            started_at_ms: T0 + 1_100,
            sent_at_ms: at,
            batches_sent: batches,
            batches_dropped: 0,
        },
        at,
    )
}

fn backlog(m: &mut RunMachine, queued: &[u64], at: u64) {
    assert!(m
        .on(
            Event::Backlog {
                queued: queued.to_vec()
            },
            at
        )
        .is_empty());
}

#[test]
fn the_drain_deadline_starts_over_while_an_agents_batches_are_queued() {
    let mut m = running();
    finished(&mut m, 0, T0 + 13_000, 12);
    finished(&mut m, 1, T0 + 13_000, 12);
    // 10 s later the aggregator still holds 5 of agent 0's batches, none of agent 1's.
    backlog(&mut m, &[5, 0], T0 + 23_000);
    let fx = m.on(Event::Timer(Timer::Drain { agent: 0 }), T0 + 23_000);
    assert_eq!(
        fx,
        vec![Effect::Arm {
            timer: Timer::Drain { agent: 0 },
            at_ms: T0 + 33_000
        }]
    );
    assert_eq!(m.slots()[0].state, SlotState::Finished, "not lost");
    m.on(Event::Timer(Timer::Drain { agent: 1 }), T0 + 23_000);
    assert_eq!(
        m.slots()[1].state,
        SlotState::Lost(AgentLoss::BatchesMissing),
        "nothing queued: its batches never came"
    );
    // The queue is folded: drained, and the run completes.
    backlog(&mut m, &[0, 0], T0 + 25_000);
    m.on(Event::Drained { agent: 0 }, T0 + 25_000);
    assert_eq!(m.state(), &RunState::Completed);
}

#[test]
fn a_drain_deadline_with_the_queue_empty_again_loses_as_before() {
    let mut m = running();
    finished(&mut m, 0, T0 + 13_000, 12);
    backlog(&mut m, &[3, 0], T0 + 23_000);
    m.on(Event::Timer(Timer::Drain { agent: 0 }), T0 + 23_000);
    backlog(&mut m, &[0, 0], T0 + 33_000);
    m.on(Event::Timer(Timer::Drain { agent: 0 }), T0 + 33_000);
    assert_eq!(
        m.slots()[0].state,
        SlotState::Lost(AgentLoss::BatchesMissing)
    );
}

#[test]
fn a_running_agent_with_batches_queued_is_not_lost_for_want_of_heartbeats() {
    let mut m = running();
    // Neither agent heard for 11 s; agent 0's batches wait for the aggregator.
    backlog(&mut m, &[4, 0], T0 + 11_200);
    m.on(Event::Tick, T0 + 11_200);
    assert_eq!(m.slots()[0].state, SlotState::Running);
    assert_eq!(
        m.slots()[1].state,
        SlotState::Lost(AgentLoss::NoHeartbeat { ms: 10_000 })
    );
    // Once folded, silence counts again.
    backlog(&mut m, &[0, 0], T0 + 11_300);
    m.on(Event::Tick, T0 + 11_300);
    assert_eq!(
        m.slots()[0].state,
        SlotState::Lost(AgentLoss::NoHeartbeat { ms: 10_000 })
    );
}

/// `deadline` fires with agent 0 finished and 1 of its batches queued, agent 1 not finished:
/// agent 1 is lost as `lost`, agent 0 is left to its drain and the run ends as `end` once drained.
fn left_to_the_drain(mut m: RunMachine, deadline: Timer, lost: AgentLoss, end: RunState) {
    finished(&mut m, 0, T0 + 13_000, 12);
    backlog(&mut m, &[1, 0], T0 + 43_000);
    m.on(Event::Timer(deadline), T0 + 43_100);
    assert_eq!(m.slots()[0].state, SlotState::Finished, "{deadline:?}");
    assert_eq!(m.slots()[1].state, SlotState::Lost(lost));
    m.on(Event::Drained { agent: 0 }, T0 + 44_000);
    if deadline == Timer::Run {
        // The overrun agent's last batches get their grace before the run ends.
        assert!(m.state().loading(), "{:?}", m.state());
        m.on(Event::Timer(Timer::OverrunGrace), T0 + 56_100);
    }
    assert_eq!(m.state(), &end);
}

#[test]
fn the_run_and_stop_deadlines_leave_a_finished_agent_with_queued_batches_to_its_drain() {
    // Run: planned end + graceful stop + grace.
    left_to_the_drain(
        running(),
        Timer::Run,
        AgentLoss::Overran,
        RunState::Completed,
    );
    // Stop: after a cancel.
    let mut m = running();
    m.on(Event::Cancel { reason: "c".into() }, T0 + 5_000);
    left_to_the_drain(
        m,
        Timer::Stop,
        AgentLoss::StopTimeout,
        RunState::Cancelled("c".into()),
    );
}

#[test]
fn the_backlog_is_kept_as_told() {
    let mut m = running();
    assert_eq!(m.queued(0), 0, "nothing told yet");
    backlog(&mut m, &[7, 1], T0 + 200);
    assert_eq!((m.queued(0), m.queued(1), m.queued(9)), (7, 1, 0));
    assert_eq!(m.backlog(), &[7, 1]);
}

// The coordinator itself stood still (SIGSTOP): nothing it could not hear counts against agents.

#[test]
fn a_stall_of_the_coordinator_loses_no_agent_by_silence_or_by_drain() {
    let mut m = running();
    finished(&mut m, 0, T0 + 5_000, 4);
    // 15 s frozen: every deadline is past when it wakes.
    let woke = T0 + 20_000;
    assert_eq!(m.on(Event::Stalled { ms: 15_000 }, woke), vec![]);
    m.on(Event::Timer(Timer::Drain { agent: 0 }), woke);
    m.on(Event::Tick, woke);
    assert!(m.lost().is_empty(), "{:?}", m.slots());
    // The drain deadline looks again after the grace; then it holds as before.
    let again = woke + Timing::default().drain_timeout_ms;
    m.on(Event::Timer(Timer::Drain { agent: 0 }), again);
    assert_eq!(m.lost(), vec![0], "its batches never came");
    // Silence after the grace is silence again.
    m.on(
        Event::Tick,
        again + Timing::default().heartbeat_timeout_ms + 1,
    );
    assert_eq!(m.lost(), vec![0, 1]);
}

// A threshold with abort_on_fail failed while the run went.

#[test]
fn ending_early_stops_the_agents_and_the_run_completes_once_they_drained() {
    let mut m = running();
    let fx = m.on(
        Event::EndEarly {
            reason: "threshold failed".into(),
        },
        T0 + 3_000,
    );
    assert!(fx.contains(&Effect::Stop {
        reason: "threshold failed".into()
    }));
    assert!(fx.contains(&Effect::Arm {
        timer: Timer::Stop,
        at_ms: T0 + 3_000 + 2_000 + Timing::default().stop_extra_ms
    }));
    assert_eq!(m.state(), &RunState::Draining);
    // A second crossing, or one after the end, changes nothing.
    assert!(m
        .on(Event::EndEarly { reason: "x".into() }, T0 + 3_100)
        .is_empty());
    for agent in 0..2 {
        finished(&mut m, agent, T0 + 4_000, 3);
        m.on(Event::Drained { agent }, T0 + 4_100);
    }
    assert_eq!(
        m.state(),
        &RunState::Completed,
        "its verdict is the thresholds'"
    );
}
